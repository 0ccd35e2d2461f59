package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// Test timings (ValidateRaftOptions must accept them, see
// TestValidateRaftOptions). 50ms Raft timeouts also work, but on a loaded
// two-CPU machine under -race the leader then steps down now and then
// (LeaderLeaseTimeout is the heartbeat timeout), which only slows the
// tests down.
const (
	tHeartbeat    = 100 * time.Millisecond
	tElection     = 100 * time.Millisecond
	tLeaseRenew   = 25 * time.Millisecond
	tLeaseTimeout = 400 * time.Millisecond
	tRestore      = 600 * time.Millisecond
	tMargin       = 2 * tLeaseRenew // controller.margin()
)

func testLogger() zerolog.Logger {
	if os.Getenv("TUSK_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func fastOpts(id int32) RaftOptions {
	return RaftOptions{
		NodeID:           id,
		InMemory:         true,
		HeartbeatTimeout: tHeartbeat,
		ElectionTimeout:  tElection,
		LeaseRenew:       tLeaseRenew,
		LeaseTimeout:     tLeaseTimeout,
		ReplicaRestore:   tRestore,
		Logger:           testLogger(),
	}
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func hbFor(id int32) Heartbeat {
	return Heartbeat{ID: id, Kafka: fmt.Sprintf("k%d:9092", id), Internal: fmt.Sprintf("i%d:9093", id), Raft: fmt.Sprintf("node%d:7000", id)}
}

func openSingle(t *testing.T, opts RaftOptions) *RaftStore {
	t.Helper()
	s, err := OpenRaft(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	eventually(t, 5*time.Second, "single node elects itself", func() error {
		if !s.IsLeader() || s.Leader() != opts.NodeID {
			return fmt.Errorf("state %v leader %d", s.raft.State(), s.Leader())
		}
		return controllerReady(s)
	})
	return s
}

// controllerReady reports whether s's controller has started its term (it
// answers heartbeats from then on).
func controllerReady(s *RaftStore) error {
	s.ctrl.mu.Lock()
	defer s.ctrl.mu.Unlock()
	if s.ctrl.leaderSince.IsZero() {
		return errors.New("controller term not started")
	}
	return nil
}

// testCluster runs RaftStores over raft.InmemTransport with a Forwarder that
// calls the leader's ApplyLocal directly, and heartbeat loops that mirror
// the broker's (one per node, every LeaseRenew, to the leader the node
// sees). Links are cut per node (partition) and heartbeats paused per node.
type testCluster struct {
	t      testing.TB
	mu     sync.Mutex
	nodes  map[int32]*testNode
	voters []Voter
	cut    map[int32]bool
	paused map[int32]bool
	stop   chan struct{}
	wg     sync.WaitGroup
	// tune, if set, changes each node's options (fastOpts) before it opens.
	tune func(*RaftOptions)
}

type testNode struct {
	id    int32
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	store *RaftStore
}

type testForwarder struct {
	c    *testCluster
	from int32
}

func (f testForwarder) ForwardApply(ctx context.Context, leader int32, cmd []byte) (uint64, error) {
	if !f.c.reachable(f.from, leader) {
		return 0, fmt.Errorf("%w: %d cannot reach %d", ErrUnreachable, f.from, leader)
	}
	n := f.c.node(leader)
	if n == nil {
		return 0, fmt.Errorf("%w: no node %d", ErrUnreachable, leader)
	}
	return n.store.ApplyLocal(ctx, cmd)
}

func nodeAddr(id int32) raft.ServerAddress { return raft.ServerAddress(fmt.Sprintf("node%d:7000", id)) }

func newCluster(t *testing.T, n int) *testCluster { return newTunedCluster(t, n, nil) }

// newTunedCluster is newCluster with tune applied to every node's options.
func newTunedCluster(t testing.TB, n int, tune func(*RaftOptions)) *testCluster {
	c := &testCluster{t: t, nodes: map[int32]*testNode{}, cut: map[int32]bool{}, paused: map[int32]bool{}, stop: make(chan struct{}), tune: tune}
	for id := int32(1); id <= int32(n); id++ {
		c.voters = append(c.voters, Voter{ID: id, Addr: string(nodeAddr(id))})
	}
	t.Cleanup(c.close)
	for id := int32(1); id <= int32(n); id++ {
		c.addNode(id)
	}
	return c
}

// addNode starts a node connected to every other; it bootstraps only if it
// is one of c.voters.
func (c *testCluster) addNode(id int32) *testNode {
	c.t.Helper()
	addr, trans := raft.NewInmemTransport(nodeAddr(id))
	nd := &testNode{id: id, addr: addr, trans: trans}
	c.mu.Lock()
	for _, o := range c.nodes {
		o.trans.Connect(addr, trans)
		trans.Connect(o.addr, o.trans)
	}
	c.mu.Unlock()
	opts := fastOpts(id)
	if c.tune != nil {
		c.tune(&opts)
	}
	opts.Transport = trans
	opts.Voters = c.voters
	opts.Forwarder = testForwarder{c: c, from: id}
	s, err := OpenRaft(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.store = s
	c.mu.Lock()
	c.nodes[id] = nd
	c.mu.Unlock()
	return nd
}

func (c *testCluster) close() {
	close(c.stop)
	c.wg.Wait()
	c.mu.Lock()
	nodes := make([]*testNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.store.Close() }()
	}
	wg.Wait()
}

// stopNode closes one node and forgets it.
func (c *testCluster) stopNode(id int32) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	for _, o := range c.all() {
		o.trans.Disconnect(n.addr)
	}
	n.store.Close()
}

func (c *testCluster) node(id int32) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) all() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*testNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *testNode) int { return int(a.id - b.id) })
	return out
}

func (c *testCluster) reachable(a, b int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return a == b || (!c.cut[a] && !c.cut[b])
}

// partition cuts every link of node id, both ways.
func (c *testCluster) partition(id int32) {
	c.mu.Lock()
	c.cut[id] = true
	n := c.nodes[id]
	c.mu.Unlock()
	n.trans.DisconnectAll()
	for _, o := range c.all() {
		if o.id != id {
			o.trans.Disconnect(n.addr)
		}
	}
}

func (c *testCluster) heal(id int32) {
	n := c.node(id)
	for _, o := range c.all() {
		if o.id != id {
			o.trans.Connect(n.addr, n.trans)
			n.trans.Connect(o.addr, o.trans)
		}
	}
	c.mu.Lock()
	c.cut[id] = false
	c.mu.Unlock()
}

func (c *testCluster) pause(id int32, p bool) {
	c.mu.Lock()
	c.paused[id] = p
	c.mu.Unlock()
}

// waitLeader waits until one of the given nodes (all when none given) leads
// and all of them name it.
func (c *testCluster) waitLeader(among ...int32) *testNode {
	c.t.Helper()
	if len(among) == 0 {
		for _, n := range c.all() {
			among = append(among, n.id)
		}
	}
	var leader *testNode
	eventually(c.t, 5*time.Second, "leader elected", func() error {
		leader = nil
		for _, id := range among {
			if n := c.node(id); n.store.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		if err := controllerReady(leader.store); err != nil {
			return err
		}
		for _, id := range among {
			if got := c.node(id).store.Leader(); got != leader.id {
				return fmt.Errorf("node %d names %d, not %d", id, got, leader.id)
			}
		}
		return nil
	})
	return leader
}

func (c *testCluster) followers(leader int32) []*testNode {
	var out []*testNode
	for _, n := range c.all() {
		if n.id != leader {
			out = append(out, n)
		}
	}
	return out
}

// startHeartbeats runs the broker's heartbeat loop for each node: every
// LeaseRenew, heartbeat the controller it knows of, if reachable.
func (c *testCluster) startHeartbeats(ids ...int32) {
	for _, id := range ids {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			tk := time.NewTicker(tLeaseRenew)
			defer tk.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-tk.C:
				}
				c.mu.Lock()
				self, paused := c.nodes[id], c.paused[id]
				c.mu.Unlock()
				if self == nil || paused {
					continue
				}
				l := self.store.Leader()
				if l < 0 || !c.reachable(id, l) {
					continue
				}
				ln := c.node(l)
				if ln == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 4*tLeaseRenew)
				_, _ = ln.store.Heartbeat(ctx, hbFor(id))
				cancel()
			}
		}()
	}
}

// waitBrokers waits until node n's FSM lists exactly these brokers, all in
// the given state.
func waitBrokers(t testing.TB, n *testNode, state BrokerState, ids ...int32) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("brokers %v %s on node %d", ids, state, n.id), func() error {
		bs := n.store.FSM().Brokers()
		var got []int32
		for _, b := range bs {
			if b.State != state {
				return fmt.Errorf("broker %d is %s", b.ID, b.State)
			}
			got = append(got, b.ID)
		}
		if !slices.Equal(got, ids) {
			return fmt.Errorf("brokers %v", got)
		}
		return nil
	})
}

func brokerState(n *testNode, id int32) BrokerState {
	b, ok := n.store.FSM().Broker(id)
	if !ok {
		return ""
	}
	return b.State
}

// waitConverged waits until every node's FSM snapshot is identical.
func (c *testCluster) waitConverged() []byte {
	c.t.Helper()
	var b []byte
	eventually(c.t, 5*time.Second, "FSMs converge", func() error {
		nodes := c.all()
		first, err := nodes[0].store.FSM().Snapshot()
		if err != nil {
			return err
		}
		for _, n := range nodes[1:] {
			other, err := n.store.FSM().Snapshot()
			if err != nil {
				return err
			}
			if !bytes.Equal(first, other) {
				return fmt.Errorf("node %d differs from node %d", n.id, nodes[0].id)
			}
		}
		b = first
		return nil
	})
	return b
}

func membersOf(t *testing.T, s *RaftStore) []int32 {
	t.Helper()
	ms, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, m := range ms {
		if !m.Voter {
			t.Fatalf("member %d is not a voter", m.ID)
		}
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestRaftSingleNodeInMemory(t *testing.T) {
	s := openSingle(t, fastOpts(1))
	ms, err := s.Members()
	if err != nil || len(ms) != 1 || ms[0] != (Member{ID: 1, Raft: "inmem-1", Voter: true}) || s.RaftAddr() != "inmem-1" {
		t.Fatalf("members %+v %v addr %s", ms, err, s.RaftAddr())
	}
	ctx := ctxT(t, 10*time.Second)
	if _, err := s.Heartbeat(ctx, hbFor(2)); !errors.Is(err, ErrNotMember) {
		t.Fatalf("heartbeat of a non-member: %v", err)
	}
	// Before any broker registered, placement has nothing to place on.
	if err := s.Apply(ctx, CreateTopic{Name: "early", ID: topicID(0), Partitions: 1}); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("create with no broker: %v", err)
	}
	lease, err := s.Heartbeat(ctx, Heartbeat{ID: 1, Kafka: "k1:9092", Internal: "i1:9093", Raft: "inmem-1", Rack: "r1"})
	if err != nil || lease.Controller != 1 || lease.Timeout != tLeaseTimeout || lease.AppliedIndex < s.FSM().AppliedIndex() {
		t.Fatalf("lease %+v %v (FSM applied %d)", lease, err, s.FSM().AppliedIndex())
	}
	if b, ok := s.FSM().Broker(1); !ok || !b.Same(Broker{ID: 1, Kafka: "k1:9092", Internal: "i1:9093", Raft: "inmem-1", Rack: "r1", State: BrokerAlive}) {
		t.Fatalf("registered %+v (visible when Heartbeat returns)", b)
	}
	idx := s.FSM().AppliedIndex()
	if _, err := s.Heartbeat(ctx, Heartbeat{ID: 1, Kafka: "k1:9092", Internal: "i1:9093", Raft: "inmem-1", Rack: "r1"}); err != nil {
		t.Fatal(err)
	}
	if s.FSM().AppliedIndex() != idx {
		t.Fatal("an unchanged heartbeat wrote a log entry")
	}

	if err := s.Apply(ctx, CreateTopic{Name: "t", ID: topicID(1), Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	tp, ok := s.FSM().Topic("t")
	if !ok || len(tp.Parts) != 4 {
		t.Fatalf("topic %+v", tp)
	}
	for p := range tp.Parts {
		if l, e := tp.Leader(int32(p)); l != 1 || e != 0 || !slices.Equal(tp.Parts[p].Active().Replicas, []int32{1}) {
			t.Fatalf("partition %d leader %d epoch %d replicas %v", p, l, e, tp.Parts[p].Active().Replicas)
		}
	}
	if err := s.Apply(ctx, CreatePartitions{Name: "t", ID: topicID(1), Expected: 4, Count: 6}); err != nil {
		t.Fatal(err)
	}
	if tp, _ := s.FSM().Topic("t"); tp.Partitions != 6 || tp.Parts[5].Active().Leader != 1 {
		t.Fatalf("after CreatePartitions %+v", tp)
	}
	// Errors come back without retries: precondition, and rf > brokers.
	start := time.Now()
	if err := s.Apply(ctx, CreateTopic{Name: "t", ID: topicID(2), Partitions: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.Apply(ctx, CreateTopic{Name: "rf2", ID: topicID(3), Partitions: 1, ReplicationFactor: 2}); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("rf 2 on one broker: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failed applies took %v", d)
	}
	if err := s.Apply(ctx, AllocateProducerIDs{Expected: 0, Count: 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil { // nothing new: not an error
		t.Fatal(err)
	}
	if err := s.Apply(ctx, AllocateProducerIDs{Expected: 10, Count: 10}); err != nil {
		t.Fatal(err)
	}
	if s.FSM().NextProducerID() != 20 {
		t.Fatalf("next producer id %d", s.FSM().NextProducerID())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Apply(context.Background(), AllocateProducerIDs{Expected: 20, Count: 1}); err == nil {
		t.Fatal("Apply after Close succeeded")
	}
}

func TestOpenRaftRejectsBadTimings(t *testing.T) {
	o := fastOpts(1)
	o.LeaseTimeout = 2 * o.LeaseRenew // not above any election timeout plus two renewals
	if _, err := OpenRaft(o); err == nil {
		t.Fatal("OpenRaft accepted a lease that does not outlive an election plus two renewals")
	}
}

// TestRaftSingleNodeReopen writes metadata to a node with a real data
// directory, closes it, and reopens the same directory.
func TestRaftSingleNodeReopen(t *testing.T) {
	for _, forceSnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", forceSnapshot), func(t *testing.T) {
			dir := t.TempDir()
			opts := fastOpts(1)
			opts.InMemory = false
			opts.Dir = dir
			s, err := OpenRaft(opts)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "leader", func() error {
				if !s.IsLeader() {
					return errors.New("not leader")
				}
				return controllerReady(s)
			})
			ctx := ctxT(t, 30*time.Second)
			if _, err := s.Heartbeat(ctx, hbFor(1)); err != nil {
				t.Fatal(err)
			}
			must := func(c Command) {
				t.Helper()
				if err := s.Apply(ctx, c); err != nil {
					t.Fatalf("%+v: %v", c, err)
				}
			}
			must(InitCluster{ClusterID: "reopen"})
			for i := range 60 {
				must(CreateTopic{Name: fmt.Sprintf("t%03d", i), ID: topicID(i), Partitions: int32(i%3 + 1), Configs: map[string]string{"retention.ms": fmt.Sprint(i)}})
			}
			for i := 0; i < 60; i += 4 {
				must(DeleteTopic{Name: fmt.Sprintf("t%03d", i), ID: topicID(i)})
			}
			must(SetClusterConfigs{Configs: map[string]string{"x": "y"}})
			must(AllocateProducerIDs{Expected: 0, Count: 5000})
			before, _ := s.FSM().Snapshot()
			applied := s.FSM().AppliedIndex()
			if forceSnapshot {
				if err := s.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			s2 := openSingle(t, opts)
			eventually(t, 5*time.Second, "state replayed", func() error {
				if b, _ := s2.FSM().Snapshot(); !bytes.Equal(b, before) {
					return fmt.Errorf("snapshot differs: %d vs %d bytes", len(b), len(before))
				}
				return nil
			})
			t.Logf("reopened and replayed in %v", time.Since(start))
			if got := s2.FSM().AppliedIndex(); got != applied {
				t.Errorf("AppliedIndex after reopen is %d, was %d before close (WaitApplied on the old indexes would block)", got, applied)
			}
			// Keeps working: ids continue, preconditions hold.
			if err := s2.Apply(ctx, CreateTopic{Name: "again", ID: topicID(1), Partitions: 1}); !errors.Is(err, ErrPreconditionFailed) {
				t.Fatalf("topic id reuse after reopen: %v", err)
			}
			if err := s2.Apply(ctx, AllocateProducerIDs{Expected: 5000, Count: 1}); err != nil {
				t.Fatal(err)
			}
			if err := s2.Apply(ctx, CreateTopic{Name: "new", ID: topicID(1000), Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			tp, _ := s2.FSM().Topic("new")
			if tp.Parts[0].Active().ID != s2.FSM().st.NextSegmentID-1 || tp.Parts[0].Active().ID < 60 {
				t.Fatalf("segment id after reopen %d", tp.Parts[0].Active().ID)
			}
		})
	}
}

// TestRaftClusterForwardingAndPlacement: three nodes over the in-memory
// transport; Apply from followers is forwarded and read back locally;
// placement spreads leaders over the heartbeating brokers.
func TestRaftClusterForwardingAndPlacement(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	fs := c.followers(leader.id)
	ctx := ctxT(t, 20*time.Second)

	if _, err := fs[0].store.Heartbeat(ctx, hbFor(fs[0].id)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("heartbeat to a follower: %v", err)
	}
	if _, err := fs[0].store.ApplyLocal(ctx, []byte(`{}`)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ApplyLocal on a follower: %v", err)
	}
	if err := fs[0].store.AddNode(9, "node9:7000"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddNode on a follower: %v", err)
	}
	if err := fs[0].store.RemoveNode(ctx, 1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("RemoveNode on a follower: %v", err)
	}

	c.startHeartbeats(1, 2, 3)
	for _, n := range c.all() {
		waitBrokers(t, n, BrokerAlive, 1, 2, 3)
	}
	b, _ := leader.store.FSM().Broker(2)
	if want := (Broker{ID: 2, Kafka: "k2:9092", Internal: "i2:9093", Raft: "node2:7000", State: BrokerAlive}); !b.Same(want) {
		t.Fatalf("broker 2: %+v", b)
	}

	// Forwarded from a follower; the follower reads its own write.
	if err := fs[0].store.Apply(ctx, CreateTopic{Name: "spread", ID: topicID(1), Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	tp, ok := fs[0].store.FSM().Topic("spread")
	if !ok {
		t.Fatal("follower does not see its forwarded write when Apply returns")
	}
	if got := leaderCounts(assignmentsOf(tp)); !equalCounts(got, map[int32]int{1: 2, 2: 2, 3: 2}) {
		t.Fatalf("leaders of 6 partitions: %v", got)
	}
	// Precondition errors come back through the forwarder.
	if err := fs[1].store.Apply(ctx, CreateTopic{Name: "spread", ID: topicID(2), Partitions: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("forwarded duplicate: %v", err)
	}
	// CreatePartitions placed by the controller, from the other follower.
	if err := fs[1].store.Apply(ctx, CreatePartitions{Name: "spread", ID: topicID(1), Expected: 6, Count: 9}); err != nil {
		t.Fatal(err)
	}
	tp, _ = fs[1].store.FSM().Topic("spread")
	if got := leaderCounts(assignmentsOf(tp)); tp.Partitions != 9 || !equalCounts(got, map[int32]int{1: 3, 2: 3, 3: 3}) {
		t.Fatalf("after growing to 9: %d partitions, leaders %v", tp.Partitions, got)
	}
	// rf 3: every broker holds every partition; leaders keep balancing.
	if err := fs[0].store.Apply(ctx, CreateTopic{Name: "rf3", ID: topicID(3), Partitions: 3, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	tp, _ = fs[0].store.FSM().Topic("rf3")
	a := assignmentsOf(tp)
	checkDistinct(t, a, 3)
	if got := leaderCounts(a); !equalCounts(got, map[int32]int{1: 1, 2: 1, 3: 1}) {
		t.Fatalf("rf3 leaders %v", got)
	}
	if err := leader.store.Apply(ctx, CreateTopic{Name: "rf4", ID: topicID(4), Partitions: 1, ReplicationFactor: 4}); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("rf 4 on 3 brokers: %v", err)
	}
	// Leader and followers end with identical state.
	c.waitConverged()
	for _, n := range c.all() {
		if err := n.store.Snapshot(); err != nil {
			t.Fatalf("snapshot on node %d: %v", n.id, err)
		}
	}
}

func assignmentsOf(tp Topic) [][]int32 {
	out := make([][]int32, len(tp.Parts))
	for i, p := range tp.Parts {
		out[i] = p.Active().Replicas
	}
	return out
}

func equalCounts(a, b map[int32]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRaftClusterMembership adds a fourth node, then removes it, and
// removes the controller itself.
func TestRaftClusterMembership(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	c.startHeartbeats(1, 2, 3)
	waitBrokers(t, leader, BrokerAlive, 1, 2, 3)
	ctx := ctxT(t, 30*time.Second)

	n4 := c.addNode(4) // not an initial voter: waits to be added
	if ms, _ := n4.store.Members(); len(ms) != 0 {
		t.Fatalf("un-added node has a configuration: %+v", ms)
	}
	if _, err := leader.store.Heartbeat(ctx, hbFor(4)); !errors.Is(err, ErrNotMember) {
		t.Fatalf("heartbeat before AddNode: %v", err)
	}
	if err := leader.store.AddNode(4, "no-port"); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("AddNode with a bad address: %v", err)
	}
	if err := leader.store.AddNode(4, string(n4.addr)); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.all() {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d sees 4 members", n.id), func() error {
			if got := membersOf(t, n.store); !slices.Equal(got, []int32{1, 2, 3, 4}) {
				return fmt.Errorf("members %v", got)
			}
			return nil
		})
	}
	c.startHeartbeats(4)
	waitBrokers(t, leader, BrokerAlive, 1, 2, 3, 4)
	// Under load an election may have moved the controller meanwhile:
	// node 4 must name the current one.
	leader = c.waitLeader()
	eventually(t, 5*time.Second, "node 4 names the controller", func() error {
		if got := n4.store.Leader(); got != leader.id {
			leader = c.waitLeader()
			return fmt.Errorf("node 4 names leader %d, the controller is %d", got, leader.id)
		}
		return nil
	})
	// The new node forwards too.
	if err := n4.store.Apply(ctx, CreateTopic{Name: "on4", ID: topicID(1), Partitions: 1, Assignments: [][]int32{{4}}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := n4.store.FSM().Topic("on4"); !ok {
		t.Fatal("node 4 does not see its write")
	}
	c.waitConverged()

	if err := leader.store.RemoveNode(ctx, 4); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("RemoveNode of a node leading an active segment: %v", err)
	}
	if got := membersOf(t, leader.store); len(got) != 4 {
		t.Fatalf("refused removal changed members: %v", got)
	}
	if err := leader.store.Apply(ctx, DeleteTopic{Name: "on4", ID: topicID(1)}); err != nil {
		t.Fatal(err)
	}
	c.pause(4, true) // the node is going away; see the report on heartbeats racing RemoveNode
	// An election under load may move the controller: retry on the new one.
	eventually(t, 10*time.Second, "RemoveNode(4) on the controller", func() error {
		err := leader.store.RemoveNode(ctx, 4)
		if errors.Is(err, ErrNotLeader) {
			leader = c.waitLeader()
		}
		return err
	})
	if got := membersOf(t, leader.store); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("members after removal: %v", got)
	}
	if _, ok := leader.store.FSM().Broker(4); ok {
		t.Fatal("removed node still registered")
	}
	if _, err := leader.store.Heartbeat(ctx, hbFor(4)); !errors.Is(err, ErrNotMember) {
		t.Fatalf("heartbeat of a removed node: %v", err)
	}
	if _, ok := leader.store.FSM().Broker(4); ok {
		t.Fatal("refused heartbeat registered the removed node")
	}
	c.stopNode(4)
	for _, n := range c.all() {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d sees 3 members", n.id), func() error {
			if got := membersOf(t, n.store); !slices.Equal(got, []int32{1, 2, 3}) {
				return fmt.Errorf("members %v", got)
			}
			return nil
		})
	}
	c.waitConverged()

	// Removing the controller hands leadership over first (and answers
	// ErrNotLeader, so the caller retries on the new controller).
	leader = c.waitLeader()
	old := leader.id
	if err := leader.store.RemoveNode(ctx, old); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("RemoveNode of the controller itself: %v", err)
	}
	var others []int32
	for _, n := range c.followers(old) {
		others = append(others, n.id)
	}
	eventually(t, 5*time.Second, "leadership leaves the node being removed", func() error {
		if n := c.node(old); n.store.IsLeader() {
			_ = n.store.RemoveNode(ctx, old) // regained it: hand over again
			return errors.New("still leads")
		}
		return nil
	})
	next := c.waitLeader(others...)
	c.pause(old, true)
	if err := next.store.RemoveNode(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := membersOf(t, next.store); !slices.Equal(got, others) {
		t.Fatalf("members after removing the old controller: %v", got)
	}
	if _, ok := next.store.FSM().Broker(old); ok {
		t.Fatal("old controller still registered")
	}
	// The two remaining voters still commit.
	if err := next.store.Apply(ctx, CreateTopic{Name: "two", ID: topicID(2), Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	tp, _ := next.store.FSM().Topic("two")
	for _, r := range assignmentsOf(tp) {
		if r[0] == old {
			t.Fatalf("placed on the removed node: %v", assignmentsOf(tp))
		}
	}
}
