package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotMember refuses heartbeats from nodes outside the Raft
// configuration (not yet added, or removed).
var ErrNotMember = errors.New("metadata: node is not a cluster member")

// Heartbeat is a broker's periodic report to the controller; it carries
// the broker's current addresses, so it doubles as registration.
type Heartbeat struct {
	ID       int32  `json:"id"`
	Kafka    string `json:"kafka"`
	Internal string `json:"internal"`
	Raft     string `json:"raft"`
	Rack     string `json:"rack,omitempty"`
}

// Lease is the controller's answer to a heartbeat: the broker may act as
// alive for Timeout, counted from when it sent the heartbeat.
type Lease struct {
	Controller int32         `json:"controller"`
	Timeout    time.Duration `json:"timeout"`
	// AppliedIndex is the controller's applied Raft index; a broker
	// whose own applied index reaches it has seen every change committed
	// before its heartbeat.
	AppliedIndex uint64 `json:"applied_index"`
}

// controller is the liveness and placement logic that runs on the Raft
// leader. Heartbeats are not log entries; only liveness changes are.
type controller struct {
	s *RaftStore

	mu          sync.Mutex
	leaderSince time.Time               // zero while not leader
	heard       map[int32]time.Time     // last heartbeat received, this term
	now         func() time.Time        // tests may replace it
	registering map[int32]chan struct{} // one registration in flight per broker
	term        uint64                  // Raft term leaderSince belongs to
	removing    map[int32]bool          // nodes being removed: heartbeats refused
	failing     map[string]bool         // partitions with a failover in progress
	scans       int                     // failover scans (ticks), for pacing
	under       map[string]time.Time    // under-replicated partition → since when (this term)
}

func newController(s *RaftStore) *controller {
	return &controller{s: s, heard: map[int32]time.Time{}, now: time.Now, registering: map[int32]chan struct{}{}, removing: map[int32]bool{}, failing: map[string]bool{}, under: map[string]time.Time{}}
}

// nowLocked reads the clock under c.mu (tests replace c.now).
func (c *controller) nowLocked() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now()
}

// margin is added to the lease on the controller's side, covering clock
// drift and the heartbeat's transit (docs/architecture.md, "Leases").
func (c *controller) margin() time.Duration { return 2 * c.s.opts.LeaseRenew }

func (c *controller) run() {
	defer c.s.wg.Done()
	t := time.NewTicker(c.s.opts.LeaseRenew / 2)
	defer t.Stop()
	for {
		select {
		case <-c.s.stop:
			return
		case <-t.C:
		}
		leader := c.s.IsLeader()
		term := c.s.raft.CurrentTerm()
		c.mu.Lock()
		if leader && !c.leaderSince.IsZero() && term != c.term {
			// Lost and regained leadership between two ticks: a new term
			// starts its lease bookkeeping afresh.
			c.leaderSince = time.Time{}
		}
		switch {
		case leader && c.leaderSince.IsZero():
			c.mu.Unlock()
			// Apply everything earlier terms committed before acting on
			// the state (and before telling brokers they caught up).
			if err := c.s.raft.Barrier(c.s.opts.LeaseTimeout).Error(); err != nil {
				c.s.log.Warn().Err(err).Msg("controller barrier")
				continue
			}
			c.mu.Lock()
			c.leaderSince = c.now()
			c.term = term
			clear(c.heard)
			clear(c.under)
			c.s.log.Info().Msg("became controller")
		case !leader && !c.leaderSince.IsZero():
			c.leaderSince = time.Time{}
			c.s.log.Info().Msg("no longer controller")
		}
		c.mu.Unlock()
		if leader {
			c.fenceSilent()
			c.failovers()
			c.restoreReplicas()
		}
	}
}

// lastHeard is when broker id was last heard from, counting the start of
// this controller's term as a heartbeat (so a new controller honours the
// leases its predecessor granted). c.mu held.
func (c *controller) lastHeard(id int32) time.Time {
	if t, ok := c.heard[id]; ok && t.After(c.leaderSince) {
		return t
	}
	return c.leaderSince
}

// fenceSilent fences alive brokers whose lease has run out.
func (c *controller) fenceSilent() {
	deadline := c.s.opts.LeaseTimeout + c.margin()
	var dead []int32
	c.mu.Lock()
	now := c.now()
	if c.leaderSince.IsZero() {
		c.mu.Unlock()
		return
	}
	for _, b := range c.s.fsm.Brokers() {
		if b.State == BrokerAlive && b.ID != c.s.opts.NodeID && now.Sub(c.lastHeard(b.ID)) > deadline {
			dead = append(dead, b.ID)
		}
	}
	c.mu.Unlock()
	for _, id := range dead {
		ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.LeaseTimeout)
		_, err := c.s.applyCommand(ctx, SetBrokerState{ID: id, From: BrokerAlive, To: BrokerFenced})
		cancel()
		if err != nil {
			c.s.log.Warn().Err(err).Int32("broker", id).Msg("fence broker")
			continue
		}
		c.s.log.Warn().Int32("broker", id).Dur("silent_for", deadline).Msg("broker fenced: no heartbeat")
	}
}

// heartbeat records a broker's heartbeat, registers or unfences it when
// needed, and grants a lease.
func (c *controller) heartbeat(ctx context.Context, hb Heartbeat) (Lease, error) {
	c.mu.Lock()
	ready := !c.leaderSince.IsZero()
	c.mu.Unlock()
	if !ready || !c.s.IsLeader() {
		return Lease{}, ErrNotLeader
	}
	members, err := c.s.Members()
	if err != nil {
		return Lease{}, err
	}
	c.mu.Lock()
	removing := c.removing[hb.ID]
	c.mu.Unlock()
	if removing || !slices.ContainsFunc(members, func(m Member) bool { return m.ID == hb.ID }) {
		return Lease{}, fmt.Errorf("%w: node %d", ErrNotMember, hb.ID)
	}
	c.mu.Lock()
	c.heard[hb.ID] = c.now()
	c.mu.Unlock()
	cur, ok := c.s.fsm.Broker(hb.ID)
	want := Broker{ID: hb.ID, Kafka: hb.Kafka, Internal: hb.Internal, Raft: hb.Raft, Rack: hb.Rack, State: BrokerAlive}
	if !ok || cur != want {
		if err := c.register(ctx, want); err != nil {
			return Lease{}, err
		}
	}
	return Lease{Controller: c.s.opts.NodeID, Timeout: c.s.opts.LeaseTimeout, AppliedIndex: c.s.fsm.AppliedIndex()}, nil
}

// register commits a broker's registration, one at a time per broker.
func (c *controller) register(ctx context.Context, b Broker) error {
	c.mu.Lock()
	if ch, busy := c.registering[b.ID]; busy {
		c.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	c.registering[b.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.registering, b.ID)
		close(ch)
		c.mu.Unlock()
	}()
	_, err := c.s.applyCommand(ctx, RegisterBroker{Broker: b})
	if err == nil {
		c.s.log.Info().Int32("broker", b.ID).Str("kafka", b.Kafka).Str("internal", b.Internal).Msg("broker registered")
	}
	return err
}

func (c *controller) setRemoving(id int32, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.removing[id] = true
	} else {
		delete(c.removing, id)
	}
}

func (c *controller) forget(id int32) {
	c.mu.Lock()
	delete(c.heard, id)
	c.mu.Unlock()
}

// live returns the brokers that may be given new partitions: alive in the
// metadata and heard from within a lease. Right after an election it first
// waits two heartbeat intervals so every live broker has been heard.
func (c *controller) live(ctx context.Context) ([]Broker, error) {
	c.mu.Lock()
	since := c.leaderSince
	c.mu.Unlock()
	if since.IsZero() {
		return nil, ErrNotLeader
	}
	if wait := since.Add(2 * c.s.opts.LeaseRenew).Sub(c.nowLocked()); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var out []Broker
	for _, b := range c.s.fsm.Brokers() {
		if b.State != BrokerAlive {
			continue
		}
		if t, ok := c.heard[b.ID]; (ok && now.Sub(t) <= c.s.opts.LeaseTimeout) || b.ID == c.s.opts.NodeID {
			out = append(out, b)
		}
	}
	return out, nil
}

// resolve fills in the placement of proposals that leave it to the
// controller.
func (c *controller) resolve(ctx context.Context, cmd Command) (Command, error) {
	switch v := cmd.(type) {
	case CreateTopic:
		if len(v.Assignments) > 0 {
			return v, nil
		}
		a, err := c.place(ctx, int(v.Partitions), int(v.ReplicationFactor))
		if err != nil {
			return nil, err
		}
		v.Assignments = a
		return v, nil
	case RollSegment:
		if v.NextLeader >= 0 {
			return v, nil
		}
		next, err := c.nextLeader(ctx, v)
		if err != nil {
			return nil, err
		}
		v.NextLeader = next
		return v, nil
	case CreatePartitions:
		if len(v.Assignments) > 0 || v.Count <= v.Expected {
			return v, nil
		}
		a, err := c.place(ctx, int(v.Count-v.Expected), int(v.ReplicationFactor))
		if err != nil {
			return nil, err
		}
		v.Assignments = a
		return v, nil
	}
	return cmd, nil
}

func (c *controller) place(ctx context.Context, n, rf int) ([][]int32, error) {
	live, err := c.live(ctx)
	if err != nil {
		return nil, err
	}
	if rf == AutoReplicationFactor {
		rf = max(1, min(3, len(live)))
	}
	return Place(live, c.s.fsm.Loads(), n, rf)
}

// AutoReplicationFactor in CreateTopic or CreatePartitions leaves the
// replication factor to the controller: min(3, live brokers).
const AutoReplicationFactor = -1

// nextLeader picks the next leader of a roll: the least loaded live
// replica of the sealed segment that is also in the next replica set,
// preferring one other than the current leader, so leadership wanders.
func (c *controller) nextLeader(ctx context.Context, r RollSegment) (int32, error) {
	t, ok := c.s.fsm.Topic(r.Topic)
	if !ok || r.Partition < 0 || int(r.Partition) >= len(t.Parts) {
		return -1, fmt.Errorf("%w: %s-%d", ErrUnknownTopic, r.Topic, r.Partition)
	}
	cur := t.Parts[r.Partition].Active()
	live, err := c.live(ctx)
	if err != nil {
		return -1, err
	}
	alive := map[int32]bool{}
	for _, b := range live {
		alive[b.ID] = true
	}
	eligible := func(id int32) bool {
		return alive[id] && slices.Contains(r.NextReplicas, id) && (len(r.SealedReplicas) == 0 || slices.Contains(r.SealedReplicas, id))
	}
	if t.Internal && eligible(cur.Leader) {
		// Internal topics move only on failure (docs/architecture.md,
		// "Consumer groups"): a roll that drops a laggard or takes a
		// learner in keeps their leader.
		return cur.Leader, nil
	}
	loads := c.s.fsm.Loads()
	best := int32(-1)
	for _, id := range cur.Replicas {
		if !eligible(id) {
			continue
		}
		switch {
		case best < 0:
			best = id
		case (id != cur.Leader) != (best != cur.Leader):
			if id != cur.Leader {
				best = id
			}
		case loads[id] < loads[best] || (loads[id] == loads[best] && id < best):
			best = id
		}
	}
	if best < 0 {
		return -1, fmt.Errorf("%w: no live replica of %s-%d to lead the next segment", ErrNotEnoughBrokers, r.Topic, r.Partition)
	}
	return best, nil
}

// ReplicaProber asks a replica for its log end offset of a partition once
// it has applied a FenceSegment and stopped fetching the fenced segment
// (failover step 3). The broker implements it over the internal listener.
type ReplicaProber interface {
	ReplicaLEO(ctx context.Context, node int32, topic string, partition int32, segment int64, epoch int32, fenceIndex uint64) (int64, error)
}

// failovers starts a failover for every replicated partition whose active
// segment is led by a fenced broker or is fenced already (a retry, or a
// predecessor's unfinished failover). One runs per partition at a time.
func (c *controller) failovers() {
	if c.s.prober.Load() == nil {
		return
	}
	fenced := map[int32]bool{}
	for _, b := range c.s.fsm.Brokers() {
		if b.State == BrokerFenced {
			fenced[b.ID] = true
		}
	}
	c.mu.Lock()
	c.scans++
	// Without fenced brokers only leftover fenced segments need a look;
	// scan for those every 16 ticks.
	skip := len(fenced) == 0 && c.scans%16 != 0
	c.mu.Unlock()
	if skip {
		return
	}
	// Only the segments to fail over are copied, not every topic.
	for _, a := range c.s.fsm.ActiveSegments(func(_ int, seg *Segment) bool {
		return len(seg.Replicas) >= 2 && (fenced[seg.Leader] || seg.State == SegmentFenced)
	}) {
		t, p, seg := Topic{Name: a.Topic, ID: a.ID}, a.Partition, a.Segment
		key := fmt.Sprintf("%s-%d", t.Name, p)
		c.mu.Lock()
		busy := c.failing[key]
		c.failing[key] = true
		c.mu.Unlock()
		if busy {
			continue
		}
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			defer func() { c.mu.Lock(); delete(c.failing, key); c.mu.Unlock() }()
			if err := c.failover(t, p, seg); err != nil {
				c.s.log.Warn().Err(err).Str("partition", key).Msg("failover incomplete; retrying")
			}
		}()
	}
}

// failover replaces a dead segment leader (docs/architecture.md,
// "Rotation and failover"): fence the segment through Raft, ask the live
// replicas for their log end offsets (each answers after it stopped
// fetching), seal at the smallest one — at or above the frozen high
// watermark, so every acknowledged record is kept — and open the next
// segment on the least loaded of them. With no replica answering the
// partition stays unavailable rather than losing data.
func (c *controller) failover(t Topic, p int32, seg Segment) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.s.opts.LeaseTimeout)
	defer cancel()
	var fenceIndex uint64
	if seg.State != SegmentFenced {
		idx, err := c.s.applyCommand(ctx, FenceSegment{Topic: t.Name, ID: t.ID, Partition: p, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch})
		if err != nil {
			return fmt.Errorf("fence segment %d: %w", seg.ID, err)
		}
		fenceIndex = idx
	} else {
		fenceIndex = c.s.fsm.AppliedIndex()
	}
	alive := map[int32]bool{}
	for _, b := range c.s.fsm.Brokers() {
		alive[b.ID] = b.State == BrokerAlive
	}
	type answer struct {
		id  int32
		leo int64
		err error
	}
	var asked []int32
	for _, r := range seg.Replicas {
		if r != seg.Leader && alive[r] {
			asked = append(asked, r)
		}
	}
	answers := make(chan answer, len(asked))
	for _, r := range asked {
		go func() {
			leo, err := c.s.prober.Load().ReplicaLEO(ctx, r, t.Name, p, seg.ID, seg.Epoch, fenceIndex)
			answers <- answer{r, leo, err}
		}()
	}
	end := int64(-1)
	var live []int32
	for range asked {
		a := <-answers
		if a.err != nil {
			c.s.log.Warn().Err(a.err).Int32("replica", a.id).Str("topic", t.Name).Int32("partition", p).Msg("failover: replica did not answer")
			continue
		}
		live = append(live, a.id)
		if end < 0 || a.leo < end {
			end = a.leo
		}
	}
	if len(live) == 0 {
		return fmt.Errorf("%w: no live replica of %s-%d answered", ErrNotEnoughBrokers, t.Name, p)
	}
	end = max(end, seg.BaseOffset)
	loads := c.s.fsm.Loads()
	slices.SortFunc(live, func(a, b int32) int {
		if loads[a] != loads[b] {
			return loads[a] - loads[b]
		}
		return int(a - b)
	})
	roll := RollSegment{Topic: t.Name, ID: t.ID, Partition: p, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
		EndOffset: end, NextLeader: live[0], NextReplicas: live, SealedAtMs: time.Now().UnixMilli()}
	if _, err := c.s.applyCommand(ctx, roll); err != nil {
		return fmt.Errorf("seal segment %d at %d: %w", seg.ID, end, err)
	}
	c.s.log.Warn().Str("topic", t.Name).Int32("partition", p).Int32("dead_leader", seg.Leader).Int32("new_leader", live[0]).
		Int64("sealed_at", end).Ints32("replicas", live).Msg("failover: segment sealed, next segment opened")
	return nil
}

// restoreReplicas has live nodes copy partitions whose active segment has
// had fewer replicas than the topic's replication factor for
// ReplicaRestore (a replica died, or a lagging one was rolled out and has
// not rejoined): it names learners (AssignLearners), chosen like
// placement's followers — a rack the set lacks first, then the fewest
// replicas. Learners that are no longer alive are replaced. It scans once
// every 8 ticks (about 1 s with the default renewal).
func (c *controller) restoreReplicas() {
	wait := c.s.opts.ReplicaRestore
	c.mu.Lock()
	skip := wait <= 0 || c.leaderSince.IsZero() || c.scans%8 != 0
	c.mu.Unlock()
	if skip {
		return
	}
	brokers := map[int32]Broker{}
	for _, b := range c.s.fsm.Brokers() {
		brokers[b.ID] = b
	}
	var live []Broker
	c.mu.Lock()
	now := c.now()
	for _, b := range brokers {
		if t, ok := c.heard[b.ID]; b.State == BrokerAlive && ((ok && now.Sub(t) <= c.s.opts.LeaseTimeout) || b.ID == c.s.opts.NodeID) {
			live = append(live, b)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(live, func(a, b Broker) int { return int(a.ID - b.ID) })
	replicasOf := c.s.fsm.ActiveReplicaCounts()
	liveLearners := func(seg *Segment) []int32 {
		var learners []int32
		for _, id := range seg.Learners {
			if b, ok := brokers[id]; ok && b.State == BrokerAlive {
				learners = append(learners, id)
			}
		}
		return learners
	}
	// Only under-replicated active segments are copied, not every topic.
	under := c.s.fsm.ActiveSegments(func(rf int, seg *Segment) bool {
		if rf < 2 || seg.State != SegmentActive {
			return false
		}
		learners := liveLearners(seg)
		return len(seg.Replicas)+len(learners) < rf || len(learners) != len(seg.Learners)
	})
	slices.SortFunc(under, func(a, b ActiveSegment) int { // as by Topics: placement order is by name
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	seen := map[string]bool{}
	for _, a := range under {
		t, p, seg, rf := Topic{Name: a.Topic, ID: a.ID}, a.Partition, a.Segment, a.RF
		learners := liveLearners(&seg)
		key := fmt.Sprintf("%s-%d", t.Name, p)
		seen[key] = true
		c.mu.Lock()
		since, ok := c.under[key]
		if !ok {
			c.under[key] = now
			since = now
		}
		c.mu.Unlock()
		if now.Sub(since) < wait {
			continue
		}
		racks := map[string]bool{}
		for _, id := range append(slices.Clone(seg.Replicas), learners...) {
			racks[brokers[id].Rack] = true
		}
		for len(seg.Replicas)+len(learners) < rf {
			var best *Broker
			for i := range live {
				b := &live[i]
				if slices.Contains(seg.Replicas, b.ID) || slices.Contains(learners, b.ID) {
					continue
				}
				if best == nil || better(b, best, racks, replicasOf) {
					best = b
				}
			}
			if best == nil {
				break
			}
			learners = append(learners, best.ID)
			racks[best.Rack] = true
			replicasOf[best.ID]++
		}
		if slices.Equal(learners, seg.Learners) {
			continue // no live node to add
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.LeaseTimeout)
		_, err := c.s.applyCommand(ctx, AssignLearners{Topic: t.Name, ID: t.ID, Partition: p,
			ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Learners: learners})
		cancel()
		if err != nil {
			c.s.log.Warn().Err(err).Str("partition", key).Msg("assign learners")
			continue
		}
		c.mu.Lock()
		delete(c.under, key)
		c.mu.Unlock()
		c.s.log.Info().Str("partition", key).Ints32("replicas", seg.Replicas).Ints32("learners", learners).
			Dur("under_replicated_for", now.Sub(since)).Msg("re-replicating: learners assigned")
	}
	c.mu.Lock()
	for k := range c.under {
		if !seen[k] {
			delete(c.under, k)
		}
	}
	c.mu.Unlock()
}
