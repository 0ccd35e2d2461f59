package metadata

import (
	"bytes"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

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

// lockedBuffer is a log sink written by several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A peer with a valid certificate for node 2 gets no RPC to Raft that
// claims another server ID (or none), or the address the configuration
// gives another node: the accepting side drops the connection with a
// warning before raft sees the request. RPCs that
// claim 2 are delivered unchanged: single ones, pipelined AppendEntries on
// one connection, and an InstallSnapshot with its data.
func TestRaftTLSClaimedID(t *testing.T) {
	ca, err := tlsutil.NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs lockedBuffer
	// The configuration lists node 3 at node3Addr (and node 1 here).
	const node3Addr = raft.ServerAddress("127.0.0.1:3")
	var recvAddr atomic.Value
	acceptor, err := newTLSStreamLayer("127.0.0.1:0", raftTLSNode(t, ca, dir, "node1", 1), func(a raft.ServerAddress) (int32, bool) {
		switch a {
		case node3Addr:
			return 3, true
		case recvAddr.Load():
			return 1, true
		}
		return 0, false
	}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	recv := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: acceptor, MaxPool: 1, Timeout: 10 * time.Second, Logger: hclog.NewNullLogger()})
	defer recv.Close()
	recvAddr.Store(recv.LocalAddr())
	dialer, err := newTLSStreamLayer("127.0.0.1:0", raftTLSNode(t, ca, dir, "node2", 2), func(a raft.ServerAddress) (int32, bool) { return 1, a == recv.LocalAddr() }, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	send := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: dialer, MaxPool: 1, Timeout: 10 * time.Second, Logger: hclog.NewNullLogger()})
	defer send.Close()
	header := func(id string) raft.RPCHeader {
		return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(send.LocalAddr())}
	}

	// serve answers the next RPC raft would see, or fails the test when
	// none comes before sent reports the sender's result.
	serve := func(what string, sent <-chan error, answer func(raft.RPC) any) (raft.RPC, error) {
		t.Helper()
		timeout := time.NewTimer(10 * time.Second)
		defer timeout.Stop()
		select {
		case rpc := <-recv.Consumer():
			rpc.Respond(answer(rpc), nil)
			return rpc, <-sent
		case err := <-sent:
			return raft.RPC{}, err
		case <-timeout.C:
			t.Fatalf("%s: neither delivered nor refused in 10 s", what)
			return raft.RPC{}, nil
		}
	}
	forged := []struct {
		name string
		call func() error
	}{
		{"RequestVote claiming 3", func() error {
			return send.RequestVote("1", recv.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header("3"), Term: 5, LastLogIndex: 9, LastLogTerm: 4}, &raft.RequestVoteResponse{})
		}},
		{"AppendEntries claiming 3", func() error {
			return send.AppendEntries("1", recv.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: header("3"), Term: 5, PrevLogEntry: 3, PrevLogTerm: 4, Entries: []*raft.Log{{Index: 4, Term: 5, Type: raft.LogCommand, Data: []byte("forged")}}, LeaderCommitIndex: 4}, &raft.AppendEntriesResponse{})
		}},
		{"AppendEntries claiming no id", func() error {
			return send.AppendEntries("1", recv.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(send.LocalAddr())}, Term: 5}, &raft.AppendEntriesResponse{})
		}},
		{"RequestVote claiming 2 at node 3's address", func() error {
			return send.RequestVote("1", recv.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("2"), Addr: []byte(node3Addr)}, Term: 5, LastLogIndex: 9, LastLogTerm: 4}, &raft.RequestVoteResponse{})
		}},
		{"AppendEntries claiming 2 at node 1's address", func() error {
			return send.AppendEntries("1", recv.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("2"), Addr: []byte(recv.LocalAddr())}, Term: 5}, &raft.AppendEntriesResponse{})
		}},
		{"TimeoutNow claiming 3", func() error {
			return send.TimeoutNow("1", recv.LocalAddr(), &raft.TimeoutNowRequest{RPCHeader: header("3")}, &raft.TimeoutNowResponse{})
		}},
		{"InstallSnapshot claiming 3", func() error {
			return send.InstallSnapshot("1", recv.LocalAddr(), &raft.InstallSnapshotRequest{RPCHeader: header("3"), SnapshotVersion: raft.SnapshotVersionMax, Term: 5, LastLogIndex: 9, LastLogTerm: 4, Size: 4}, &raft.InstallSnapshotResponse{}, strings.NewReader("evil"))
		}},
	}
	for _, f := range forged {
		sent := make(chan error, 1)
		go func() { sent <- f.call() }()
		rpc, err := serve(f.name, sent, func(raft.RPC) any { return &raft.RequestVoteResponse{} })
		if rpc.Command != nil {
			t.Errorf("%s: delivered to raft (%T), want refused", f.name, rpc.Command)
		}
		if err == nil {
			t.Errorf("%s: the sender got an answer, want its connection dropped", f.name)
		}
	}
	if got, want := strings.Count(logs.String(), "refusing raft RPC"), len(forged); got != want {
		t.Errorf("%d warnings 'refusing raft RPC' logged, want %d:\n%s", got, want, logs.String())
	}

	// Genuine RPCs from node 2 reach raft.
	sent := make(chan error, 1)
	var vote raft.RequestVoteResponse
	go func() {
		sent <- send.RequestVote("1", recv.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: header("2"), Term: 6, LastLogIndex: 9, LastLogTerm: 4}, &vote)
	}()
	rpc, err := serve("RequestVote claiming 2", sent, func(raft.RPC) any { return &raft.RequestVoteResponse{Term: 6, Granted: true} })
	if err != nil {
		t.Fatalf("RequestVote claiming 2: %v", err)
	}
	if req, ok := rpc.Command.(*raft.RequestVoteRequest); !ok || string(req.ID) != "2" || req.Term != 6 || req.LastLogIndex != 9 {
		t.Fatalf("RequestVote claiming 2 delivered as %#v", rpc.Command)
	}
	if !vote.Granted || vote.Term != 6 {
		t.Errorf("vote answer %+v, want granted in term 6", vote)
	}

	// Pipelined AppendEntries share one connection: each is checked
	// and delivered in order.
	pipe, err := send.AppendEntriesPipeline("1", recv.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	const n = 3
	// The pipeline sends and then waits for room for the next request
	// (raft's in-flight limit), and hands answers over one at a time, so
	// the requests go from one goroutine and the answers are taken by
	// another while this one serves them.
	entry := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100000) }
	piped := make(chan error, 2) // errors only
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if _, err := pipe.AppendEntries(&raft.AppendEntriesRequest{RPCHeader: header("2"), Term: 6, PrevLogEntry: uint64(9 + i), PrevLogTerm: 4, Entries: []*raft.Log{{Index: uint64(10 + i), Term: 6, Type: raft.LogCommand, Data: entry(i)}}, LeaderCommitIndex: 9}, &raft.AppendEntriesResponse{}); err != nil {
				piped <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			f := <-pipe.Consumer()
			if err := f.Error(); err != nil || !f.Response().Success || f.Response().LastLog != uint64(10+i) {
				piped <- fmt.Errorf("answer %d: %v %+v", i, err, f.Response())
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		timeout := time.NewTimer(10 * time.Second)
		select {
		case rpc := <-recv.Consumer():
			req, ok := rpc.Command.(*raft.AppendEntriesRequest)
			if !ok || string(req.ID) != "2" || len(req.Entries) != 1 || req.Entries[0].Index != uint64(10+i) || !bytes.Equal(req.Entries[0].Data, entry(i)) {
				t.Fatalf("pipelined AppendEntries %d delivered as %T", i, rpc.Command)
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 6, LastLog: uint64(10 + i), Success: true}, nil)
		case err := <-piped:
			t.Fatalf("pipelined AppendEntries %d not delivered: %v", i, err)
		case <-timeout.C:
			t.Fatalf("pipelined AppendEntries %d not delivered in 10 s", i)
		}
		timeout.Stop()
	}
	wg.Wait()
	close(piped)
	for err := range piped {
		t.Errorf("pipelined AppendEntries: %v", err)
	}

	// An InstallSnapshot's data follows its request on the connection.
	data := bytes.Repeat([]byte("snapshot"), 100000)
	go func() {
		sent <- send.InstallSnapshot("1", recv.LocalAddr(), &raft.InstallSnapshotRequest{RPCHeader: header("2"), SnapshotVersion: raft.SnapshotVersionMax, Term: 6, LastLogIndex: 20, LastLogTerm: 6, Size: int64(len(data))}, &raft.InstallSnapshotResponse{}, bytes.NewReader(data))
	}()
	var got []byte
	_, err = serve("InstallSnapshot claiming 2", sent, func(rpc raft.RPC) any {
		got, err = io.ReadAll(rpc.Reader)
		if err != nil {
			t.Errorf("reading the snapshot: %v", err)
		}
		return &raft.InstallSnapshotResponse{Term: 6, Success: true}
	})
	if err != nil {
		t.Fatalf("InstallSnapshot claiming 2: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("snapshot data: got %d bytes, want the %d sent", len(got), len(data))
	}
	if got, want := strings.Count(logs.String(), "refusing raft RPC"), len(forged); got != want {
		t.Errorf("%d warnings 'refusing raft RPC' logged, want %d:\n%s", got, want, logs.String())
	}
}

// A peer that hangs up in the middle of a request is not refused (no
// warning): raft's read ends as it would without the check.
func TestRaftTLSPeerHangsUp(t *testing.T) {
	ca, err := tlsutil.NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs lockedBuffer
	acceptor, err := newTLSStreamLayer("127.0.0.1:0", raftTLSNode(t, ca, dir, "node1", 1), func(raft.ServerAddress) (int32, bool) { return 0, false }, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer acceptor.Close()
	dialer := &tlsStreamLayer{tls: raftTLSNode(t, ca, dir, "node2", 2), nodeAt: func(raft.ServerAddress) (int32, bool) { return 1, true }}
	var req bytes.Buffer
	req.WriteByte(rpcRequestVote)
	if err := codec.NewEncoder(&req, &codec.MsgpackHandle{}).Encode(&raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("2")}, Term: 5}); err != nil {
		t.Fatal(err)
	}
	dialed := make(chan error, 1)
	go func() {
		c, err := dialer.Dial(raft.ServerAddress(acceptor.Addr().String()), 5*time.Second)
		if err == nil {
			_, err = c.Write(req.Bytes()[:req.Len()/2])
			c.Close()
		}
		dialed <- err
	}()
	c, err := acceptor.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 4096))
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Errorf("reading half a request: %d bytes, %v; want none and an EOF", n, err)
	}
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "refusing") {
		t.Errorf("a peer hanging up was refused:\n%s", logs.String())
	}
}
