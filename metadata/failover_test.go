package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeProber answers failover probes with fixed log end offsets (per node,
// or per node and partition in leoOf); nodes listed in down do not answer.
type fakeProber struct {
	mu     sync.Mutex
	leos   map[int32]int64
	leoOf  map[int32]map[int32]int64 // node → partition → LEO
	noLog  map[int32]map[int32]bool  // node → partitions it has no log of
	down   map[int32]bool
	probed []int32
	calls  map[int32][]int // node → probes per call
}

func (p *fakeProber) ReplicaLEOs(_ context.Context, node int32, _ uint64, probes []LEOProbe) ([]LEOAnswer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probed = append(p.probed, node)
	if p.calls == nil {
		p.calls = map[int32][]int{}
	}
	p.calls[node] = append(p.calls[node], len(probes))
	if p.down[node] {
		return nil, fmt.Errorf("%w: node %d", ErrUnreachable, node)
	}
	out := make([]LEOAnswer, len(probes))
	for i, pr := range probes {
		out[i].LEO = p.leos[node]
		if leo, ok := p.leoOf[node][pr.Partition]; ok {
			out[i].LEO = leo
		}
		if p.noLog[node][pr.Partition] {
			out[i] = LEOAnswer{Err: fmt.Errorf("%w: no log of %s-%d", ErrUnknownTopic, pr.Topic, pr.Partition)}
		}
	}
	return out, nil
}

// TestControllerFailover: the leader of a replicated partition stops
// heartbeating; the controller fences its segment, probes the other
// replicas, seals at the smallest answer and opens the next segment on a
// survivor with the survivors as replicas. The dead leader is never
// probed, and a partition led by a live broker is left alone.
func TestControllerFailover(t *testing.T) {
	c, leader, victim, survivors := failoverCluster(t)
	prober := &fakeProber{leos: map[int32]int64{survivors[0]: 120, survivors[1]: 95}}
	for _, n := range c.all() {
		n.store.SetProber(prober)
	}
	ctx := ctxT(t, 20*time.Second)
	// Partition 0 led by the victim, partition 1 by a survivor.
	all := append([]int32{victim}, survivors...)
	other := append([]int32{survivors[0]}, victim, survivors[1])
	if err := leader.store.Apply(ctx, CreateTopic{Name: "fo", ID: topicID(9), Partitions: 2, Assignments: [][]int32{all, other}}); err != nil {
		t.Fatal(err)
	}
	before, _ := leader.store.FSM().Topic("fo")
	first := before.Parts[0].Active()

	c.pause(victim, true)
	var tp Topic
	eventually(t, 10*time.Second, "failover of partition 0", func() error {
		l := c.waitLeader()
		tp, _ = l.store.FSM().Topic("fo")
		if n := len(tp.Parts[0].Segments); n != 2 {
			return fmt.Errorf("%d segments", n)
		}
		return nil
	})
	sealed, next := tp.Parts[0].Segments[0], tp.Parts[0].Segments[1]
	if sealed.ID != first.ID || sealed.State != SegmentSealed || sealed.EndOffset != 95 {
		t.Fatalf("sealed segment %+v, want segment %d sealed at 95 (the smallest survivor LEO)", sealed, first.ID)
	}
	if next.State != SegmentActive || next.BaseOffset != 95 || next.Epoch != first.Epoch+1 ||
		!slices.Contains(survivors, next.Leader) || len(next.Replicas) != 2 || slices.Contains(next.Replicas, victim) {
		t.Fatalf("next segment %+v, want active at 95, epoch %d, led and replicated by %v", next, first.Epoch+1, survivors)
	}
	if n := len(tp.Parts[1].Segments); n != 1 {
		t.Fatalf("partition 1 (live leader) has %d segments", n)
	}
	prober.mu.Lock()
	probedVictim := slices.Contains(prober.probed, victim)
	prober.mu.Unlock()
	if probedVictim {
		t.Fatal("the dead leader was probed")
	}
}

// TestControllerFailoverInBulk: a dead node's leaderships fail over
// together: each surviving replica is probed once for all of them, each
// partition is sealed at its own smallest answer (a survivor without a log
// of a partition does not count, nor join its next segment), and the next
// leaders are spread over the survivors by load.
func TestControllerFailoverInBulk(t *testing.T) {
	c, leader, victim, survivors := failoverCluster(t)
	s0, s1 := survivors[0], survivors[1]
	const n = 6
	prober := &fakeProber{
		leoOf: map[int32]map[int32]int64{s0: {}, s1: {}},
		noLog: map[int32]map[int32]bool{s1: {4: true}},
	}
	want := map[int32]int64{}
	for p := int32(0); p < n; p++ {
		prober.leoOf[s0][p], prober.leoOf[s1][p] = 100+int64(p), 100+int64(n-p)
		want[p] = min(100+int64(p), 100+int64(n-p))
	}
	want[4] = prober.leoOf[s0][4] // s1 has no log of partition 4
	for _, node := range c.all() {
		node.store.SetProber(prober)
	}
	ctx := ctxT(t, 20*time.Second)
	assign := make([][]int32, n)
	for p := range assign {
		assign[p] = []int32{victim, s0, s1}
	}
	if err := leader.store.Apply(ctx, CreateTopic{Name: "bulk", ID: topicID(12), Partitions: n, Assignments: assign}); err != nil {
		t.Fatal(err)
	}
	if err := leader.store.Apply(ctx, CreateTopic{Name: "other", ID: topicID(13), Partitions: 1, Assignments: [][]int32{{s0, victim, s1}}}); err != nil {
		t.Fatal(err)
	}
	before, _ := leader.store.FSM().Topic("bulk")
	since := leader.store.FSM().AppliedIndex()

	c.pause(victim, true)
	var tp Topic
	var fsm *FSM
	eventually(t, 10*time.Second, "failover of every partition", func() error {
		fsm = c.waitLeader().store.FSM()
		tp, _ = fsm.Topic("bulk")
		for p := range tp.Parts {
			if k := len(tp.Parts[p].Segments); k != 2 {
				return fmt.Errorf("partition %d has %d segments", p, k)
			}
		}
		return nil
	})
	newLeaders := map[int32]int{}
	for p := int32(0); p < n; p++ {
		first := before.Parts[p].Active()
		sealed, next := tp.Parts[p].Segments[0], tp.Parts[p].Segments[1]
		if sealed.ID != first.ID || sealed.State != SegmentSealed || sealed.EndOffset != want[p] || sealed.Checksum != 0 || sealed.SealedAtMs == 0 {
			t.Fatalf("partition %d: sealed segment %+v, want %d sealed at %d", p, sealed, first.ID, want[p])
		}
		replicas := []int32{s0, s1}
		if p == 4 {
			replicas = []int32{s0}
		}
		got := slices.Sorted(slices.Values(next.Replicas))
		if next.State != SegmentActive || next.BaseOffset != want[p] || next.Epoch != first.Epoch+1 || !slices.Equal(got, replicas) || next.Leader != next.Replicas[0] {
			t.Fatalf("partition %d: next segment %+v, want active at %d on %v", p, next, want[p], replicas)
		}
		newLeaders[next.Leader]++
	}
	// "other" (led by s0) counts in the loads: the survivors end up
	// leading 3 and 4 partitions in some order.
	if o, _ := leader.store.FSM().Topic("other"); len(o.Parts[0].Segments) != 1 {
		t.Fatalf("other-0 (live leader) has %d segments", len(o.Parts[0].Segments))
	}
	if a, b := newLeaders[s0]+1, newLeaders[s1]; a+b != n+1 || a-b > 1 || b-a > 1 {
		t.Fatalf("new leaders %v (and %d leads other-0): not spread by load", newLeaders, s0)
	}
	// Three entries changed something: the broker's fence, one
	// FenceSegments and one SealSegments for all six partitions.
	fsm.mu.RLock()
	var kinds []string
	for _, e := range fsm.log {
		if e.index > since {
			kinds = append(kinds, fmt.Sprintf("all=%v refs=%d", e.all, len(e.refs)))
		}
	}
	fsm.mu.RUnlock()
	if want := []string{"all=true refs=0", "all=false refs=6", "all=false refs=6"}; !slices.Equal(kinds, want) {
		t.Fatalf("entries applied during the failover: %v, want %v", kinds, want)
	}
	prober.mu.Lock()
	defer prober.mu.Unlock()
	if !slices.Equal(prober.calls[s0], []int{n}) || !slices.Equal(prober.calls[s1], []int{n}) || len(prober.calls) != 2 {
		t.Fatalf("probes per node and call %v, want one call of %d partitions to each of %d and %d", prober.calls, n, s0, s1)
	}
}

// TestControllerFailoverNoReplicaAnswers: with no survivor answering, the
// segment stays fenced (unavailable) instead of being sealed at a guess.
func TestControllerFailoverNoReplicaAnswers(t *testing.T) {
	c, leader, victim, survivors := failoverCluster(t)
	prober := &fakeProber{down: map[int32]bool{survivors[0]: true, survivors[1]: true}}
	for _, n := range c.all() {
		n.store.SetProber(prober)
	}
	ctx := ctxT(t, 20*time.Second)
	if err := leader.store.Apply(ctx, CreateTopic{Name: "fo2", ID: topicID(10), Partitions: 1, Assignments: [][]int32{append([]int32{victim}, survivors...)}}); err != nil {
		t.Fatal(err)
	}
	c.pause(victim, true)
	eventually(t, 10*time.Second, "segment fenced", func() error {
		tp, _ := c.waitLeader().store.FSM().Topic("fo2")
		if s := tp.Parts[0].Active(); s.State != SegmentFenced {
			return errors.New(string(s.State))
		}
		return nil
	})
	eventually(t, 5*time.Second, "survivors probed", func() error {
		prober.mu.Lock()
		defer prober.mu.Unlock()
		if len(prober.probed) < 2 {
			return fmt.Errorf("%d probes", len(prober.probed))
		}
		return nil
	})
	tp, _ := c.waitLeader().store.FSM().Topic("fo2")
	if n := len(tp.Parts[0].Segments); n != 1 {
		t.Fatalf("segment sealed without any replica answering: %+v", tp.Parts[0].Segments)
	}
	if l, _, _ := c.waitLeader().store.FSM().PartitionLeader("fo2", 0); l != -1 {
		t.Fatalf("fenced segment reports leader %d, want -1", l)
	}
}

// TestControllerRestoresReplicas: a partition whose active segment has
// fewer replicas than its replication factor gets a learner once it has
// been short for ReplicaRestore: a live node outside the replica set, never
// a fenced one. A roll that takes the learner in makes it a replica of the
// sealed segments too.
func TestControllerRestoresReplicas(t *testing.T) {
	c := newCluster(t, 4)
	leader := c.waitLeader()
	c.startHeartbeats(1, 2, 3, 4)
	waitBrokers(t, leader, BrokerAlive, 1, 2, 3, 4)
	others := c.followers(leader.id)
	dead, spare := others[0].id, others[1].id
	holders := []int32{leader.id, others[2].id}
	c.pause(dead, true)
	eventually(t, 5*time.Second, "dead node fenced", func() error {
		if st := brokerState(leader, dead); st != BrokerFenced {
			return fmt.Errorf("broker %d is %s", dead, st)
		}
		return nil
	})
	ctx := ctxT(t, 20*time.Second)
	began := time.Now()
	if err := leader.store.Apply(ctx, CreateTopic{Name: "rr", ID: topicID(11), Partitions: 1, Assignments: [][]int32{append(slices.Clone(holders), dead)}}); err != nil {
		t.Fatal(err)
	}
	// The leader rolls without the dead follower (a laggard).
	tp, _ := leader.store.FSM().Topic("rr")
	first := tp.Parts[0].Active()
	if err := leader.store.Apply(ctx, RollSegment{Topic: "rr", ID: topicID(11), ExpectedSegment: first.ID, ExpectedEpoch: first.Epoch,
		EndOffset: 20, NextLeader: holders[0], NextReplicas: holders, SealedReplicas: holders}); err != nil {
		t.Fatal(err)
	}
	var seg Segment
	eventually(t, 10*time.Second, "learner assigned", func() error {
		tp, _ := leader.store.FSM().Topic("rr")
		seg = tp.Parts[0].Active()
		if len(seg.Learners) == 0 {
			return errors.New("no learners")
		}
		return nil
	})
	if took := time.Since(began); took < tRestore {
		t.Fatalf("learner assigned after %v, before replica.restore (%v)", took, tRestore)
	}
	if !slices.Equal(seg.Learners, []int32{spare}) {
		t.Fatalf("learners %v, want [%d] (the live non-replica; %d is fenced)", seg.Learners, spare, dead)
	}
	// The leader's roll takes the learner in.
	roll := RollSegment{Topic: "rr", ID: topicID(11), Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
		EndOffset: 50, NextLeader: holders[1], NextReplicas: append(slices.Clone(holders), spare), Joined: []int32{spare}}
	if err := leader.store.Apply(ctx, roll); err != nil {
		t.Fatal(err)
	}
	tp, _ = leader.store.FSM().Topic("rr")
	segs := tp.Parts[0].Segments
	sealed, next := segs[1], segs[2]
	if !slices.Contains(sealed.Replicas, spare) || len(sealed.Replicas) != 3 || len(next.Replicas) != 3 || len(next.Learners) != 0 ||
		!slices.Equal(segs[0].Replicas, append(slices.Clone(holders), spare)) {
		t.Fatalf("after the roll: sealed %+v, next %+v", sealed, next)
	}
	// Full now: no more learners, even after another restore period.
	time.Sleep(2 * tRestore) // waiting for something not to happen
	tp, _ = leader.store.FSM().Topic("rr")
	if a := tp.Parts[0].Active(); len(a.Learners) != 0 || len(tp.Parts[0].Segments) != 3 {
		t.Fatalf("a fully replicated partition got learners: %+v", tp.Parts[0].Segments)
	}
}

// blockingProber holds every failover probe until its context ends;
// entered is closed at the first probe.
type blockingProber struct {
	once    sync.Once
	entered chan struct{}
}

func (p *blockingProber) ReplicaLEOs(ctx context.Context, _ int32, _ uint64, _ []LEOProbe) ([]LEOAnswer, error) {
	p.once.Do(func() { close(p.entered) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCloseEndsFailover: Close does not wait for a failover in progress
// to run out its phases (each bounded by twice lease.timeout, a minute
// here): the probe of a replica that does not answer ends when Close
// begins. A node shutting down while its peers stop too (their leases
// run out, the controller fences them and probes the others) waited so.
func TestCloseEndsFailover(t *testing.T) {
	opts := fastOpts(1)
	opts.LeaseTimeout = 30 * time.Second
	opts.Voters = []Voter{{ID: 1, Addr: "node1:7000"}}
	s, err := OpenRaft(opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-closed:
		default:
			s.Close()
		}
	})
	prober := &blockingProber{entered: make(chan struct{})}
	s.SetProber(prober)
	ctx := ctxT(t, 30*time.Second)
	eventually(t, 10*time.Second, "controller", func() error {
		if !s.IsLeader() {
			return errors.New("not the leader yet")
		}
		return nil
	})
	for _, id := range []int32{1, 2} {
		if err := s.Apply(ctx, RegisterBroker{Broker: Broker{ID: id, Kafka: fmt.Sprintf("127.0.0.1:%d", id), Internal: fmt.Sprintf("127.0.0.1:%d", 100+id)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(ctx, CreateTopic{Name: "fo", ID: topicID(31), Partitions: 1, Assignments: [][]int32{{2, 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, SetBrokerState{ID: 2, From: BrokerAlive, To: BrokerFenced}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-prober.entered:
	case <-ctx.Done():
		t.Fatal("the controller did not probe node 1 for the failover of node 2's partition")
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		close(closed)
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Close has not returned 20s after it began, with a failover probe held (its phase lasts %v)", 2*opts.LeaseTimeout)
	}
}

// TestControllerFailoverRetriesAfterQuietScans: while a fenced broker
// stays fenced the controller skips scans that could find nothing new
// (no new entry, no failover ended), but a failover that found no replica
// answering is retried, and succeeds once one answers, with no new entry
// in between.
func TestControllerFailoverRetriesAfterQuietScans(t *testing.T) {
	c, leader, victim, survivors := failoverCluster(t)
	prober := &fakeProber{leos: map[int32]int64{survivors[0]: 0, survivors[1]: 0}, down: map[int32]bool{survivors[0]: true, survivors[1]: true}}
	for _, n := range c.all() {
		n.store.SetProber(prober)
	}
	ctx := ctxT(t, 20*time.Second)
	if err := leader.store.Apply(ctx, CreateTopic{Name: "fo3", ID: topicID(12), Partitions: 1, Assignments: [][]int32{append([]int32{victim}, survivors...)}}); err != nil {
		t.Fatal(err)
	}
	c.pause(victim, true)
	eventually(t, 10*time.Second, "survivors probed twice (a retry)", func() error {
		prober.mu.Lock()
		defer prober.mu.Unlock()
		if len(prober.probed) < 4 {
			return fmt.Errorf("%d probes", len(prober.probed))
		}
		return nil
	})
	prober.mu.Lock()
	prober.down = nil
	prober.mu.Unlock()
	eventually(t, 10*time.Second, "failed over", func() error {
		tp, _ := c.waitLeader().store.FSM().Topic("fo3")
		if s := tp.Parts[0].Active(); s.State != SegmentActive || s.Leader == victim {
			return fmt.Errorf("active segment %s led by %d", s.State, s.Leader)
		}
		return nil
	})
}

// failoverCluster starts three heartbeating nodes, all alive, and picks a
// follower of the controller as the victim; survivors are the other two,
// sorted.
func failoverCluster(t *testing.T) (c *testCluster, leader *testNode, victim int32, survivors []int32) {
	t.Helper()
	c = newCluster(t, 3)
	leader = c.waitLeader()
	c.startHeartbeats(1, 2, 3)
	waitBrokers(t, leader, BrokerAlive, 1, 2, 3)
	victim = c.followers(leader.id)[0].id
	for _, n := range c.all() {
		if n.id != victim {
			survivors = append(survivors, n.id)
		}
	}
	slices.Sort(survivors)
	return c, leader, victim, survivors
}
