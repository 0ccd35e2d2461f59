package metadata

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Closing a node's Raft severs its connections (docs/architecture.md,
// "Internal RPC"). hashicorp/raft's Shutdown waits for every replication
// and heartbeat goroutine, and only then closes the transport; a
// goroutine in the middle of an RPC to a peer waits for that RPC's
// deadline (the transport's 5 s, plus up to 5 s more to dial). After a
// network partition heals, TCP's retransmission backoff can hold a write
// for seconds, and a stopping node then hung in Close for longer than its
// stop deadline. Every connection the transport dials is tracked here,
// and Close closes them all right after it asks raft to shut down, so a
// blocked RPC fails at once and its goroutine sees the shutdown.
// Connections peers dialled to this node are left to the transport: they
// serve the peers' RPCs, which raft's shutdown does not wait for, and
// closing them under raft's reader only logs errors.

// errSevered is returned by Dial once the stream was severed.
var errSevered = errors.New("metadata: raft stream closed")

// trackedStream wraps a stream layer and tracks the connections it dials
// until they are closed.
type trackedStream struct {
	raft.StreamLayer
	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	severed bool
}

func newTrackedStream(s raft.StreamLayer) *trackedStream {
	return &trackedStream{StreamLayer: s, conns: map[*trackedConn]struct{}{}}
}

func (t *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	nc, err := t.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	return t.track(nc)
}

// track registers nc, or closes it when the stream is already severed.
func (t *trackedStream) track(nc net.Conn) (net.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.severed {
		nc.Close()
		return nil, errSevered
	}
	c := &trackedConn{Conn: nc, s: t}
	t.conns[c] = struct{}{}
	return c, nil
}

// sever closes every dialled connection; a dial from now on fails. The
// listener is the transport's to close (its Close marks it shut down
// first, so its accept loop ends without an error).
func (t *trackedStream) sever() {
	t.mu.Lock()
	t.severed = true
	conns := t.conns
	t.conns = map[*trackedConn]struct{}{}
	t.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// open reports how many tracked connections are open (tests).
func (t *trackedStream) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

type trackedConn struct {
	net.Conn
	s *trackedStream
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// tcpStreamLayer is the plain-TCP stream layer (raft's own TCPStreamLayer
// cannot be wrapped: its constructor builds the transport too).
type tcpStreamLayer struct {
	ln  net.Listener
	adv net.Addr
}

func newTCPStreamLayer(bind string) (*tcpStreamLayer, error) {
	adv, err := net.ResolveTCPAddr("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("metadata: raft address %s: %w", bind, err)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("metadata: raft listen %s: %w", bind, err)
	}
	if adv.Port == 0 || adv.IP == nil || adv.IP.IsUnspecified() {
		a, ok := ln.Addr().(*net.TCPAddr)
		if !ok || a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("metadata: raft listen %s: not an advertisable address", bind)
		}
		adv = a
	}
	return &tcpStreamLayer{ln: ln, adv: adv}, nil
}

func (l *tcpStreamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tcpStreamLayer) Close() error              { return l.ln.Close() }
func (l *tcpStreamLayer) Addr() net.Addr            { return l.adv }

func (l *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return d.Dial("tcp", string(address))
}
