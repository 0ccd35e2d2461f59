package metadata

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tuskdb/tusk/tlsutil"
)

func raftTLSNode(t *testing.T, ca *tlsutil.CA, dir, name string, node int32) *tlsutil.Reloader {
	t.Helper()
	f, err := ca.IssueFiles(dir, name, tlsutil.CertRequest{Subject: pkix.Name{CommonName: name}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if f.CAFile, err = ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	r, err := tlsutil.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Three Raft nodes over the TLS stream layer elect a leader and replicate
// a command. A client certificate of the same CA (no node URI) is refused
// by every Raft listener; a dial to an address the configuration gives
// node 2 fails when node 3 answers there.
func TestRaftTLSTransport(t *testing.T) {
	ca, err := tlsutil.NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var addrs []string
	var lns []net.Listener
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	var voters []Voter
	for i, a := range addrs {
		voters = append(voters, Voter{ID: int32(i + 1), Addr: a})
		lns[i].Close()
	}
	var stores []*RaftStore
	for i := range addrs {
		id := int32(i + 1)
		opts := fastOpts(id)
		opts.Bind = addrs[i]
		opts.Voters = voters
		opts.TLS = raftTLSNode(t, ca, dir, fmt.Sprintf("node%d", id), id)
		s, err := OpenRaft(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	var leader *RaftStore
	eventually(t, 10*time.Second, "a leader over TLS", func() error {
		for _, s := range stores {
			if s.IsLeader() {
				leader = s
				return controllerReady(s)
			}
		}
		return fmt.Errorf("no leader")
	})
	if err := leader.Apply(ctxT(t, 10*time.Second), InitCluster{ClusterID: "tls-test"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		eventually(t, 10*time.Second, "the command replicated", func() error {
			if got := s.FSM().ClusterID(); got != "tls-test" {
				return fmt.Errorf("node %d cluster id %q", s.opts.NodeID, got)
			}
			return nil
		})
	}

	// A client certificate of the cluster CA is refused by every node.
	alice := raftTLSNode(t, ca, filepath.Join(dir), "alice", -1)
	for _, a := range addrs {
		cfg := &tls.Config{Certificates: []tls.Certificate{*alice.Certificate()}, InsecureSkipVerify: true} //nolint:gosec // the test's attacker
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a, cfg)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			if _, err = c.Write([]byte{0}); err == nil {
				_, err = c.Read(make([]byte, 1))
			}
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: ") {
			t.Errorf("raft %s with a client certificate: %v, want the server's TLS alert", a, err)
		}
	}

	// Dialling node 2's address, the layer wants node 2: node 3's
	// certificate there is refused.
	n1 := raftTLSNode(t, ca, t.TempDir(), "n1", 1)
	impostor := raftTLSNode(t, ca, t.TempDir(), "n3", 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, impostor.NodeServerConfig())
		tc.Handshake() //nolint:errcheck // the dialler's verdict is what is tested
	}()
	layer := &tlsStreamLayer{tls: n1, nodeAt: func(a raft.ServerAddress) (int32, bool) { return 2, a == raft.ServerAddress(ln.Addr().String()) }}
	if _, err := layer.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second); err == nil || !strings.Contains(err.Error(), "peer is node 3, want node 2") {
		t.Errorf("dial node 2's address answered by node 3: %v, want 'peer is node 3, want node 2'", err)
	}
}
