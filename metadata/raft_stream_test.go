package metadata

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// blackHole accepts connections and never answers: an RPC to it waits for
// the transport's deadline. It counts the bytes it received and the
// connections the other end closed.
type blackHole struct {
	ln       net.Listener
	mu       sync.Mutex
	received int
	closed   int
	conns    []net.Conn
}

func newBlackHole(t *testing.T) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			go func() {
				b := make([]byte, 4096)
				for {
					n, err := c.Read(b)
					h.mu.Lock()
					h.received += n
					if errors.Is(err, io.EOF) {
						h.closed++
					}
					h.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

func (h *blackHole) state() (conns, received, closed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns), h.received, h.closed
}

// TestRaftCloseSeversPeerRPC: a node whose peers accept its vote requests
// and never answer has RPCs in flight when it is closed. Close must not
// wait for their deadline (raftRPCTimeout): it severs the connections,
// so it returns well inside it and the peers see their connections end.
// Before the stream was tracked, Close took the full RPC timeout.
func TestRaftCloseSeversPeerRPC(t *testing.T) {
	holes := []*blackHole{newBlackHole(t), newBlackHole(t)}
	opts := fastOpts(1)
	opts.Bind = "127.0.0.1:0"
	opts.Voters = []Voter{{ID: 1, Addr: "127.0.0.1:1"}, {ID: 2, Addr: holes[0].ln.Addr().String()}, {ID: 3, Addr: holes[1].ln.Addr().String()}}
	s, err := OpenRaft(opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.stream == nil {
		t.Fatal("a TCP node has no tracked stream")
	}
	eventually(t, 10*time.Second, "vote requests in flight to both peers", func() error {
		for i, h := range holes {
			if n, b, _ := h.state(); n == 0 || b == 0 {
				return fmt.Errorf("peer %d: %d connections, %d bytes", i+2, n, b)
			}
		}
		return nil
	})
	if n := s.stream.open(); n < 2 {
		t.Fatalf("%d tracked connections, want at least 2", n)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(raftRPCTimeout / 2):
		t.Fatalf("Close still waiting after %v, an RPC in flight held it (the transport's timeout is %v)", time.Since(start), raftRPCTimeout)
	}
	if n := s.stream.open(); n != 0 {
		t.Fatalf("%d connections still tracked after Close", n)
	}
	eventually(t, 5*time.Second, "peers see their connections closed", func() error {
		for i, h := range holes {
			if n, _, c := h.state(); c != n {
				return fmt.Errorf("peer %d: %d of %d connections closed", i+2, c, n)
			}
		}
		return nil
	})
	// A dial after Close is refused, so no goroutine opens a new one.
	if _, err := s.stream.Dial(raft.ServerAddress(holes[0].ln.Addr().String()), time.Second); !errors.Is(err, errSevered) {
		t.Fatalf("Dial after Close: %v, want %v", err, errSevered)
	}
}
