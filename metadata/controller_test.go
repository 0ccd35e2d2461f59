package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestValidateRaftOptions(t *testing.T) {
	ok := fastOpts(1)
	if err := ValidateRaftOptions(ok); err != nil {
		t.Fatalf("test timings rejected: %v", err)
	}
	if err := ValidateRaftOptions(DefaultRaftOptions()); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	for name, mut := range map[string]func(*RaftOptions){
		"lease equals election+2 renewals": func(o *RaftOptions) { o.LeaseTimeout = o.ElectionTimeout + 2*o.LeaseRenew },
		"lease below election":             func(o *RaftOptions) { o.LeaseTimeout = o.ElectionTimeout / 2 },
		"zero renew":                       func(o *RaftOptions) { o.LeaseRenew = 0 },
		"negative lease":                   func(o *RaftOptions) { o.LeaseTimeout = -time.Second },
		"heartbeat below 5ms":              func(o *RaftOptions) { o.HeartbeatTimeout = time.Millisecond },
		"election below 5ms":               func(o *RaftOptions) { o.ElectionTimeout = time.Millisecond; o.LeaseTimeout = time.Second },
	} {
		o := ok
		mut(&o)
		if err := ValidateRaftOptions(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseVoters(t *testing.T) {
	vs, err := ParseVoters(" 1=127.0.0.1:9001, 2=host:9002,3=[::1]:9003")
	if err != nil {
		t.Fatal(err)
	}
	want := []Voter{{1, "127.0.0.1:9001"}, {2, "host:9002"}, {3, "[::1]:9003"}}
	if !slices.Equal(vs, want) {
		t.Fatalf("%+v", vs)
	}
	if vs, err := ParseVoters(""); err != nil || vs != nil {
		t.Fatalf("empty: %v %v", vs, err)
	}
	for _, bad := range []string{"1", "=h:1", "x=h:1", "-1=h:1", "1=h", "1=h:1,1=h:2", "1=h:1,", "99999999999=h:1"} {
		if _, err := ParseVoters(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeClock is the controller's clock in tests. It counts reads, so a test
// can wait until the controller's loop has looked at the time again.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	reads int
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// waitLoopPasses waits until the controller's loop has read the clock n
// more times; with no heartbeats in flight, only fenceSilent reads it, once
// per pass, so every pass but possibly the last has run to completion.
func (c *fakeClock) waitLoopPasses(t *testing.T, n int) {
	t.Helper()
	start := c.readCount()
	eventually(t, 5*time.Second, "controller loop passes", func() error {
		if got := c.readCount() - start; got < n {
			return fmt.Errorf("%d passes", got)
		}
		return nil
	})
}

// installFakeClock gives a single-node store's controller a fake clock and
// restarts its term at the clock's origin.
func installFakeClock(t *testing.T, s *RaftStore) *fakeClock {
	t.Helper()
	eventually(t, 5*time.Second, "controller term started", func() error { return controllerReady(s) })
	fc := &fakeClock{t: time.Now()}
	s.ctrl.mu.Lock()
	s.ctrl.now = fc.now
	s.ctrl.leaderSince = fc.t
	s.ctrl.mu.Unlock()
	return fc
}

// TestControllerLeasesFakeClock drives the controller's liveness logic on a
// single voter with two non-voting members (so their heartbeats are
// accepted) and a fake clock: exact fencing boundaries, unfencing, the term
// start counting as a heartbeat, and placement only on brokers heard within
// a lease.
func TestControllerLeasesFakeClock(t *testing.T) {
	s := openSingle(t, fastOpts(1))
	for _, id := range []int32{2, 3} {
		if err := s.raft.AddNonvoter(serverID(id), raft.ServerAddress(fmt.Sprintf("ghost%d:1", id)), 0, 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	fc := installFakeClock(t, s)
	ctx := ctxT(t, 20*time.Second)
	fsm := s.FSM()
	hb := func(id int32) {
		t.Helper()
		if _, err := s.Heartbeat(ctx, hbFor(id)); err != nil {
			t.Fatalf("heartbeat %d: %v", id, err)
		}
	}
	state := func(id int32) BrokerState {
		b, _ := fsm.Broker(id)
		return b.State
	}
	waitState := func(id int32, want BrokerState) {
		t.Helper()
		eventually(t, 5*time.Second, fmt.Sprintf("broker %d %s", id, want), func() error {
			if got := state(id); got != want {
				return fmt.Errorf("is %q", got)
			}
			return nil
		})
	}
	deadline := tLeaseTimeout + tMargin

	// t=0: 1, 2 and 3 register.
	hb(1)
	hb(2)
	hb(3)
	if state(2) != BrokerAlive || state(3) != BrokerAlive {
		t.Fatal("heartbeat did not register")
	}
	// t=200ms: only 3 is heard again.
	fc.advance(200 * time.Millisecond)
	hb(3)
	// t=deadline: exactly at the boundary nobody is fenced.
	fc.advance(deadline - 200*time.Millisecond)
	fc.waitLoopPasses(t, 3)
	for _, id := range []int32{1, 2, 3} {
		if state(id) != BrokerAlive {
			t.Fatalf("broker %d fenced at exactly lease timeout + margin", id)
		}
	}
	// Just past it, 2 is fenced; 3 (heard later) and 1 (the controller's own node) are not.
	fc.advance(time.Millisecond)
	waitState(2, BrokerFenced)
	fc.waitLoopPasses(t, 3)
	if state(3) != BrokerAlive || state(1) != BrokerAlive {
		t.Fatalf("3 is %s, 1 is %s", state(3), state(1))
	}
	// Later still, everyone silent: 3 goes too, the controller's node never does.
	fc.advance(200 * time.Millisecond)
	waitState(3, BrokerFenced)
	fc.waitLoopPasses(t, 3)
	if state(1) != BrokerAlive {
		t.Fatal("the controller fenced its own node")
	}

	// A heartbeat from a fenced broker unfences it before it returns.
	hb(2)
	if state(2) != BrokerAlive {
		t.Fatalf("2 is %s after its heartbeat returned", state(2))
	}
	// A fenced broker gets no partitions; one alive in the metadata but not
	// heard within a lease (between LeaseTimeout and LeaseTimeout+margin)
	// gets none either.
	hb(1)
	if err := s.Apply(ctx, CreateTopic{Name: "a", ID: topicID(1), Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	tp, _ := fsm.Topic("a")
	for _, r := range assignmentsOf(tp) {
		if r[0] == 3 {
			t.Fatalf("placed on fenced broker 3: %v", assignmentsOf(tp))
		}
	}
	hb(3)
	fc.advance(tLeaseTimeout + time.Millisecond) // 2 and 3: lease over, not yet fenced
	hb(3)
	if state(2) != BrokerAlive {
		t.Fatal("2 fenced too early")
	}
	if err := s.Apply(ctx, CreateTopic{Name: "b", ID: topicID(2), Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	tp, _ = fsm.Topic("b")
	if got := leaderCounts(assignmentsOf(tp)); got[2] != 0 || got[1]+got[3] != 6 {
		t.Fatalf("placement used broker 2, heard %v ago: %v", tLeaseTimeout+time.Millisecond, got)
	}

	// A new term honours the previous term's leases: the new controller
	// waits a full lease + margin from its own start before fencing, even
	// a broker that by then has been silent for much longer than that.
	s.ctrl.mu.Lock()
	s.ctrl.leaderSince = time.Time{} // what the loop records on losing leadership
	s.ctrl.mu.Unlock()
	eventually(t, 5*time.Second, "new term starts", func() error {
		s.ctrl.mu.Lock()
		defer s.ctrl.mu.Unlock()
		if s.ctrl.leaderSince.IsZero() {
			return errors.New("not yet")
		}
		if len(s.ctrl.heard) != 0 {
			return fmt.Errorf("heard kept across terms: %v", s.ctrl.heard)
		}
		return nil
	})
	// At the boundary 2 has been silent for 301ms + deadline.
	fc.advance(deadline)
	fc.waitLoopPasses(t, 3)
	if state(2) != BrokerAlive || state(3) != BrokerAlive {
		t.Fatalf("new term fenced before its own lease: 2 %s, 3 %s", state(2), state(3))
	}
	fc.advance(time.Millisecond)
	waitState(2, BrokerFenced)
	waitState(3, BrokerFenced)
}

// TestControllerFencesSilentBroker: real time, three nodes. A follower
// whose heartbeats stop is fenced after about a lease, gets no new
// partitions, and is unfenced when it is heard again.
func TestControllerFencesSilentBroker(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	c.startHeartbeats(1, 2, 3)
	waitBrokers(t, leader, BrokerAlive, 1, 2, 3)
	ctx := ctxT(t, 20*time.Second)
	victim := c.followers(leader.id)[0].id

	paused := time.Now()
	c.pause(victim, true)
	var fencedAfter time.Duration
	eventually(t, 5*time.Second, "silent broker fenced", func() error {
		l := c.waitLeader()
		for _, n := range c.all() {
			if n.id != victim && brokerState(l, n.id) != BrokerAlive {
				return fmt.Errorf("heartbeating broker %d is %s", n.id, brokerState(l, n.id))
			}
		}
		if brokerState(l, victim) != BrokerFenced {
			return errors.New("not fenced yet")
		}
		fencedAfter = time.Since(paused)
		return nil
	})
	t.Logf("fenced %v after its heartbeats stopped", fencedAfter)
	if fencedAfter < tLeaseTimeout {
		t.Fatalf("fenced after %v, before the lease (%v) could have run out", fencedAfter, tLeaseTimeout)
	}

	l := c.waitLeader()
	if err := l.store.Apply(ctx, CreateTopic{Name: "without", ID: topicID(1), Partitions: 4, ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	tp, _ := l.store.FSM().Topic("without")
	for _, r := range assignmentsOf(tp) {
		if slices.Contains(r, victim) {
			t.Fatalf("fenced broker %d got a replica: %v", victim, assignmentsOf(tp))
		}
	}
	if err := l.store.Apply(ctx, CreateTopic{Name: "rf3", ID: topicID(2), Partitions: 1, ReplicationFactor: 3}); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("rf 3 with a fenced broker: %v", err)
	}

	c.pause(victim, false)
	eventually(t, 5*time.Second, "broker unfenced", func() error {
		if s := brokerState(c.waitLeader(), victim); s != BrokerAlive {
			return fmt.Errorf("is %s", s)
		}
		return nil
	})
	l = c.waitLeader()
	if err := l.store.Apply(ctx, CreateTopic{Name: "with", ID: topicID(3), Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	tp, _ = l.store.FSM().Topic("with")
	if got := leaderCounts(assignmentsOf(tp)); got[victim] < 2 {
		t.Fatalf("the returning broker (leading nothing) should lead most new partitions: %v", got)
	}
	c.waitConverged()
}

// TestControllerPartitioned isolates the controller. The other two elect a
// new one, which commits, honours the leases its predecessor granted
// (fencing the isolated node only a full lease after its own election, and
// never the broker that keeps heartbeating it), while the isolated
// controller commits nothing. Healed, the old controller rejoins as a
// follower and catches up.
func TestControllerPartitioned(t *testing.T) {
	c := newCluster(t, 3)
	old := c.waitLeader()
	c.startHeartbeats(1, 2, 3)
	for _, n := range c.all() {
		waitBrokers(t, n, BrokerAlive, 1, 2, 3)
	}
	ctx := ctxT(t, 30*time.Second)
	var others []int32
	for _, n := range c.followers(old.id) {
		others = append(others, n.id)
	}

	cutAt := time.Now()
	c.partition(old.id)
	oldApply := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		oldApply <- old.store.Apply(ctx, CreateTopic{Name: "lost", ID: topicID(99), Partitions: 1, Assignments: [][]int32{{old.id}}})
	}()

	nl := c.waitLeader(others...)
	t.Logf("node %d took over from %d after %v", nl.id, old.id, time.Since(cutAt))
	var other *testNode
	for _, id := range others {
		if id != nl.id {
			other = c.node(id)
		}
	}
	// Commits through the new controller, directly and forwarded; placement
	// uses only the brokers it hears.
	if err := nl.store.Apply(ctx, CreateTopic{Name: "after", ID: topicID(1), Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	if err := other.store.Apply(ctx, CreatePartitions{Name: "after", ID: topicID(1), Expected: 4, Count: 6}); err != nil {
		t.Fatal(err)
	}
	tp, _ := other.store.FSM().Topic("after")
	if got := leaderCounts(assignmentsOf(tp)); got[old.id] != 0 || got[nl.id] != 3 || got[other.id] != 3 {
		t.Fatalf("placement after failover: %v", got)
	}

	var fencedAfter time.Duration
	eventually(t, 5*time.Second, "isolated node fenced", func() error {
		l := c.waitLeader(others...)
		for _, id := range others {
			if s := brokerState(l, id); s != BrokerAlive {
				return fmt.Errorf("broker %d, heartbeating the new controller, is %s", id, s)
			}
		}
		if brokerState(l, old.id) != BrokerFenced {
			return errors.New("not fenced yet")
		}
		fencedAfter = time.Since(cutAt)
		return nil
	})
	t.Logf("isolated node fenced %v after the cut", fencedAfter)
	if fencedAfter < tLeaseTimeout+tMargin {
		t.Fatalf("fenced %v after the cut: the new controller, elected after the cut, did not wait lease timeout + margin (%v)", fencedAfter, tLeaseTimeout+tMargin)
	}

	select {
	case err := <-oldApply:
		if err == nil {
			t.Fatal("the isolated controller committed an Apply")
		}
		t.Logf("isolated controller's Apply: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the isolated controller's Apply did not give up at its deadline")
	}
	if old.store.IsLeader() {
		t.Fatal("isolated node still believes it leads")
	}
	if _, ok := old.store.FSM().Topic("after"); ok {
		t.Fatal("isolated node applied an entry it cannot have received")
	}

	c.heal(old.id)
	eventually(t, 5*time.Second, "old controller rejoins", func() error {
		if l := old.store.Leader(); !slices.Contains(others, l) {
			return fmt.Errorf("names leader %d", l)
		}
		if s := brokerState(old, old.id); s != BrokerAlive {
			return fmt.Errorf("own broker %s in its FSM", s)
		}
		return nil
	})
	c.waitConverged()
	for _, n := range c.all() {
		if _, ok := n.store.FSM().Topic("lost"); ok {
			t.Fatalf("node %d has the isolated controller's uncommitted topic", n.id)
		}
		if tp, ok := n.store.FSM().Topic("after"); !ok || tp.Partitions != 6 {
			t.Fatalf("node %d: topic after %+v", n.id, tp)
		}
	}
}

// TestDeposedControllerGrantsNoLease: a controller cut off from the other
// nodes believes it leads until Raft's leader lease runs out, and a new
// controller may already have been elected on the other side. In that
// window it must grant no lease: a frozen controller that led a segment
// woke up, renewed its own lease from its stale state and acknowledged a
// write after the segment had failed over (TestClusterFrozenLeader).
func TestDeposedControllerGrantsNoLease(t *testing.T) {
	c := newCluster(t, 3)
	l := c.waitLeader()
	if _, err := l.store.Heartbeat(ctxT(t, 5*time.Second), hbFor(l.id)); err != nil {
		t.Fatalf("heartbeat while connected: %v", err)
	}
	c.partition(l.id)
	stillLeader := l.store.IsLeader()
	lease, err := l.store.Heartbeat(ctxT(t, 5*time.Second), hbFor(l.id))
	if err == nil {
		t.Fatalf("a controller cut off from every other node granted a lease %+v (it believed it led: %v)", lease, stillLeader)
	}
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("heartbeat on a cut-off controller: %v, want ErrNotLeader", err)
	}
}
