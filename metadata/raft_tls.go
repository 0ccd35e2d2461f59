package metadata

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/tlsutil"
)

// tlsStreamLayer is the Raft transport's stream layer with node TLS
// (docs/security.md, "Node to node"): mutual TLS against the cluster CA.
// An accepted connection must present a certificate that chains to the CA
// and names a node (URI SAN tusk://node/<id>); a dialled one must be the
// node the Raft configuration lists at that address (its server ID), or
// any node for an address the configuration does not list yet. Every RPC
// on an accepted connection must claim the server ID of the node its
// certificate names (peerConn). The handshake of an accepted connection
// runs on raft's connection goroutine (at its first read), so a silent
// peer holds up no other.
type tlsStreamLayer struct {
	ln  net.Listener
	adv net.Addr
	tls *tlsutil.Reloader
	// nodeAt names the server ID the Raft configuration gives an
	// address (false: not listed).
	nodeAt func(raft.ServerAddress) (int32, bool)
	log    zerolog.Logger
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

func newTLSStreamLayer(bind string, r *tlsutil.Reloader, nodeAt func(raft.ServerAddress) (int32, bool), log zerolog.Logger) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("metadata: raft listen %s: %w", bind, err)
	}
	adv := ln.Addr()
	if a, ok := adv.(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("metadata: raft listen %s: not an advertisable address", bind)
	}
	return &tlsStreamLayer{ln: ln, adv: adv, tls: r, nodeAt: nodeAt, log: log}, nil
}

func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	nc, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return newPeerConn(tls.Server(nc, l.tls.NodeServerConfig()), l.nodeAt, l.log), nil
}

func (l *tlsStreamLayer) Close() error   { return l.ln.Close() }
func (l *tlsStreamLayer) Addr() net.Addr { return l.adv }

func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	want := int32(-1)
	if id, ok := l.nodeAt(address); ok {
		want = id
	}
	cfg := l.tls.NodeClientConfig(want)
	d := &net.Dialer{Timeout: timeout}
	nc, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, cfg)
	if err := tc.SetDeadline(time.Now().Add(timeout)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("metadata: raft dial %s: %w", address, err)
	}
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("metadata: raft dial %s: TLS handshake: %w", address, err)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("metadata: raft dial %s: %w", address, err)
	}
	return tc, nil
}

// raftNodeAt answers which server ID the current Raft configuration (or,
// before raft runs, the initial voters) lists at an address.
type raftNodeAt struct {
	node   atomic.Pointer[raft.Raft]
	voters []Voter
}

func (n *raftNodeAt) lookup(addr raft.ServerAddress) (int32, bool) {
	if r := n.node.Load(); r != nil {
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Address == addr {
					id, err := strconv.ParseInt(string(s.ID), 10, 32)
					return int32(id), err == nil
				}
			}
		}
		return 0, false
	}
	for _, v := range n.voters {
		if raft.ServerAddress(v.Addr) == addr {
			return v.ID, true
		}
	}
	return 0, false
}
