package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/tlsutil"
)

// Node-to-node TLS (docs/security.md, "Node to node"). With tls.ca-file
// set, the internal listener serves mutual TLS against the cluster CA and
// accepts only peers whose certificate names a node (a URI SAN
// tusk://node/<id>, tlsutil.PeerNode). The handshake comes first; the
// first byte inside the TLS stream then tells Kafka from HTTP as on a
// plaintext internal listener. The node id of the certificate is the
// peer's identity: it must match the node id a heartbeat, an AddNode or a
// replica Fetch claims. Every call this node makes to another node's
// internal listener (rpc.Client, the kgo clients of forwarding, replica
// fetches and transaction markers) presents this node's certificate and
// checks that the server is the node it meant to reach.

// nodeTLS reports whether node-to-node traffic is mutual TLS.
func (b *Broker) nodeTLS() bool { return b.tls != nil && b.tls.HasCA() }

// nodeConn is an internal connection after its TLS handshake, with the
// first byte of the stream already read (it is handed back by Read
// first) and the peer's node id from its certificate.
type nodeConn struct {
	*tls.Conn
	node  int32
	first []byte // the byte read to route the connection, not yet consumed
}

func (c *nodeConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 && len(p) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handshakeInternal runs the TLS handshake of an accepted internal
// connection (bounded by timeout), reads the stream's first byte and
// returns the connection that will hand it back, the byte, and an error
// for a failed handshake or a peer that is not a node.
func (b *Broker) handshakeInternal(nc net.Conn, timeout time.Duration) (*nodeConn, byte, error) {
	tc := tls.Server(nc, b.tls.NodeServerConfig())
	if err := tc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, fmt.Errorf("broker: internal listener: %w", err)
	}
	if err := tc.Handshake(); err != nil {
		return nil, 0, fmt.Errorf("broker: internal listener: TLS handshake: %w", err)
	}
	id, ok := tlsutil.PeerNode(tc.ConnectionState())
	if !ok { // refused by tlsutil.RequireNode already; kept as a second check
		return nil, 0, errors.New("broker: internal listener: the peer certificate names no node")
	}
	var first [1]byte
	if _, err := tc.Read(first[:]); err != nil {
		return nil, 0, fmt.Errorf("broker: internal listener: node %d: read: %w", id, err)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return nil, 0, fmt.Errorf("broker: internal listener: %w", err)
	}
	return &nodeConn{Conn: tc, node: id, first: first[:]}, first[0], nil
}

// peerKey is the context key of the internal HTTP requests' peer node.
type peerKey struct{}

// peerContext is the internal HTTP server's ConnContext: a request on a
// TLS connection carries its peer's node id.
func peerContext(ctx context.Context, nc net.Conn) context.Context {
	if c, ok := nc.(*nodeConn); ok {
		return context.WithValue(ctx, peerKey{}, c.node)
	}
	return ctx
}

// peerNode is the node id of the certificate an internal HTTP request came
// with; false on a plaintext internal listener.
func peerNode(ctx context.Context) (int32, bool) {
	id, ok := ctx.Value(peerKey{}).(int32)
	return id, ok
}

// checkPeer refuses a call that claims to come from node claimed over a
// TLS connection whose certificate names another node. Without node TLS
// every claim stands.
func (b *Broker) checkPeer(ctx context.Context, what string, claimed int32) error {
	if !b.nodeTLS() {
		return nil
	}
	id, ok := peerNode(ctx)
	if !ok {
		return fmt.Errorf("%w: %s: no node certificate", rpc.ErrForbidden, what)
	}
	if id != claimed {
		return fmt.Errorf("%w: %s for node %d from node %d's certificate", rpc.ErrForbidden, what, claimed, id)
	}
	return nil
}

// replicaPeerOK reports whether a replica Fetch claiming replicaID may be
// served on c: always without node TLS, else only if c's certificate is
// that node's.
func (b *Broker) replicaPeerOK(c *conn, replicaID int32) bool {
	if !b.nodeTLS() {
		return true
	}
	nc, ok := c.nc.(*nodeConn)
	return ok && nc.node == replicaID
}

// nodeAddrs maps the internal addresses of the registered brokers to
// their ids, for calls that know only an address.
func (b *Broker) nodeOfInternal(addr string) int32 {
	for _, br := range b.store.FSM().Brokers() {
		if br.Internal == addr {
			return br.ID
		}
	}
	return -1
}

// newInternalClient is the rpc.Client of calls to other nodes: plain
// HTTP, or with node TLS HTTP inside mutual TLS, checking that the server
// is the registered node of the address called.
func (b *Broker) newInternalClient() *rpc.Client {
	if !b.nodeTLS() {
		return rpc.NewClient(nil)
	}
	return rpc.NewClient(rpc.NewTLSHTTPClient(30*time.Second, func(addr string) *tls.Config {
		return b.tls.NodeClientConfig(b.nodeOfInternal(addr))
	}))
}

// checkNodeSecurity refuses to start with the authorizer on while node
// traffic is unauthenticated, unless the internal and Raft listeners bind
// loopback addresses (docs/security.md, "Node to node"): an open
// internal listener would let anyone around the authorizer.
func (b *Broker) checkNodeSecurity() error {
	if b.nodeTLS() {
		// Other nodes refuse a certificate that does not name this
		// node; a single node never meets them, so this only warns.
		if leaf := b.tls.Certificate().Leaf; leaf != nil {
			if id, ok := tlsutil.NodeID(leaf); !ok || id != b.cfg.NodeID {
				b.log.Warn().Int32("node_id", b.cfg.NodeID).Bool("names_a_node", ok).Int32("names", id).
					Msg("tls.cert-file does not name this node (URI SAN tusk://node/<node-id>): other nodes will refuse its node-to-node connections")
			}
		}
	}
	if !b.cfg.Authorizer || b.nodeTLS() {
		return nil
	}
	for _, l := range []struct{ key, addr string }{{"internal.listen", b.cfg.Internal.Listen}, {"raft.listen", b.cfg.Raft.Listen}} {
		if l.addr == "" {
			continue // not bound (raft.listen of a single node: in memory)
		}
		if !loopbackAddr(l.addr) {
			return fmt.Errorf("broker: authorizer is on but node-to-node traffic is not authenticated: %s %q binds a non-loopback address; set tls.cert-file, tls.key-file and tls.ca-file (node certificates) or bind %s to 127.0.0.1", l.key, l.addr, l.key)
		}
	}
	return nil
}

// loopbackAddr reports whether host:port names a loopback host (an IP in
// 127.0.0.0/8 or ::1, or localhost); an empty host binds every address.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fwdTLS is the TLS configuration of the Kafka clients to node id's
// internal listener, nil without node TLS.
func (b *Broker) fwdTLS() func(node int32) *tls.Config {
	if !b.nodeTLS() {
		return nil
	}
	return func(node int32) *tls.Config { return b.tls.NodeClientConfig(node) }
}
