package broker

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The internal listener carries two protocols on one port
// (docs/architecture.md, "Internal RPC"): HTTP/1.1 + JSON calls
// (internal.go) and Kafka requests from other nodes, above all the
// followers' and learners' replica Fetches. A connection's first byte
// tells them apart: a Kafka frame starts with its big-endian size, whose
// first byte is 0 for any frame below 16 MiB (a client's first request is
// a small ApiVersions or Fetch), while an HTTP request starts with a
// method name. The byte is peeked with MSG_PEEK, so the Kafka side keeps
// the bare *net.TCPConn it needs for sendfile.
//
// With node TLS (internal_tls.go) the connection is a TLS one whose
// peer's certificate names a node; its first byte is read inside the TLS
// stream and handed back to whichever side serves it.
//
// Kafka connections accepted here are node traffic: only they may send a
// Fetch with ReplicaID >= 0, which moves a high watermark and registers
// learners. The same Fetch on a client listener is refused with
// CLUSTER_AUTHORIZATION_FAILED.

// sniffTimeout bounds how long an internal connection may stay silent
// before its first byte.
const sniffTimeout = 10 * time.Second

// routeInternal peeks at an internal connection's first byte and hands it
// to the Kafka connection handler or the HTTP server, on a goroutine of its
// own (the peek may wait up to sniffTimeout). It reports false once
// the node connections are stopped (Close, after the clients drained).
func (b *Broker) routeInternal(nc net.Conn) bool {
	select {
	case <-b.nodesStop: // served until the clients drained (Close)
		nc.Close()
		return false
	default:
	}
	b.serveW.Add(1)
	go func() {
		defer b.serveW.Done()
		var first byte
		var err error
		if b.nodeTLS() {
			// The handshake first, then the first byte inside TLS
			// (internal_tls.go); the Kafka side copies instead of
			// sendfile.
			var tc *nodeConn
			if tc, first, err = b.handshakeInternal(nc, sniffTimeout); err == nil {
				nc = tc
			}
		} else {
			first, err = peekFirstByte(nc, sniffTimeout)
		}
		switch {
		case err != nil:
			ev := b.log.Debug()
			if b.nodeTLS() {
				ev = b.log.Warn() // a refused peer (not a node) is worth a line
			}
			ev.Err(err).Str("remote", nc.RemoteAddr().String()).Msg("internal connection closed before its first byte")
			nc.Close()
		case first == 0:
			b.startConn(nc, b.internal)
		case !b.internalHTTP.push(nc):
			nc.Close()
		}
	}()
	return true
}

// peekFirstByte reads nc's first byte without consuming it.
func peekFirstByte(nc net.Conn, timeout time.Duration) (byte, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return 0, fmt.Errorf("broker: internal listener: not a TCP connection (%T)", nc)
	}
	if err := tc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, fmt.Errorf("broker: internal listener: %w", err)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("broker: internal listener: %w", err)
	}
	var buf [1]byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK)
		return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
	})
	if err == nil {
		err = rerr
	}
	if err == nil && n == 0 {
		err = errors.New("closed by the peer")
	}
	if err != nil {
		return 0, fmt.Errorf("broker: internal listener: peek: %w", err)
	}
	if err := tc.SetReadDeadline(time.Time{}); err != nil {
		return 0, fmt.Errorf("broker: internal listener: %w", err)
	}
	return buf[0], nil
}

// connQueue is a net.Listener fed with connections accepted elsewhere
// (the internal listener's HTTP share).
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands nc to Accept; false once the queue is closed.
func (q *connQueue) push(nc net.Conn) bool {
	select {
	case q.ch <- nc:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case nc := <-q.ch:
		return nc, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
