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
	// Listeners maps listener names to advertised addresses
	// (Broker.Listeners); a change re-registers the broker.
	Listeners map[string]string `json:"listeners,omitempty"`
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
	// quietScan is the applied index of the last failover scan that
	// started nothing (0: none since one did), and failoverEnded is set
	// when a failover ends (what it left is retried at the next scan):
	// while a fenced broker stays fenced, a scan with neither a new
	// entry nor an ended failover would find the same, and is skipped
	// (it scanned every partition every tick).
	quietScan     uint64
	failoverEnded bool
	// quietRestore is the applied index of the last re-replication scan
	// that found no under-replicated segment (0: none since one did).
	quietRestore uint64
	under        map[string]time.Time // under-replicated partition → since when (this term)
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
			c.reassign()
		}
	}
}

// reassign names as learners the nodes of each reassignment's target that
// the active segment lacks (AssignLearners); the leader's rolls take them
// in and drop the others (docs/replication.md, "Reassigning
// partitions"). Learners that are not alive stay named: the reassignment
// waits for them (as Kafka's does) until it is cancelled. It scans once
// every 8 ticks.
func (c *controller) reassign() {
	c.mu.Lock()
	skip := c.leaderSince.IsZero() || c.scans%8 != 0
	c.mu.Unlock()
	if skip {
		return
	}
	for _, r := range c.s.fsm.Reassignments() {
		seg := r.Segment
		if seg.State != SegmentActive {
			continue // failing over: the next pass
		}
		var want []int32
		for _, id := range r.Target {
			if !slices.Contains(seg.Replicas, id) {
				want = append(want, id)
			}
		}
		if slices.Equal(want, seg.Learners) {
			continue
		}
		ctx, cancel := context.WithTimeout(c.s.stopCtx, c.s.opts.LeaseTimeout)
		_, err := c.s.applyCommand(ctx, AssignLearners{Topic: r.Topic, ID: r.ID, Partition: r.Partition,
			ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Learners: want})
		cancel()
		key := fmt.Sprintf("%s-%d", r.Topic, r.Partition)
		if err != nil {
			c.s.log.Warn().Err(err).Str("partition", key).Msg("reassignment: assign learners")
			continue
		}
		c.s.log.Info().Str("partition", key).Ints32("replicas", seg.Replicas).Ints32("target", r.Target).Ints32("learners", want).Msg("reassignment: learners assigned")
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
		ctx, cancel := context.WithTimeout(c.s.stopCtx, c.s.opts.LeaseTimeout)
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
	// Raft's state says Leader until its leader lease runs out, also on a
	// leader cut off (or frozen) while the others elected a new one; that
	// leader's FSM lacks the new term's fences and failovers, so a lease
	// it granted (above all to itself) would let a deposed segment leader
	// append (docs/architecture.md, "Leases"). A lease is granted only
	// once a quorum confirmed this leadership after the heartbeat arrived.
	// raft.VerifyLeader may count a follower's answer to a heartbeat sent
	// just before the call: after a freeze that answer can be seconds
	// old. That is too weak for the controller's own lease (the frozen
	// and woken controller heartbeats itself at once), so that one
	// commits a barrier entry, which only answers sent after it was
	// appended can commit. Other nodes reach a deposed controller only
	// across a partition, where no answer is older than one round trip.
	confirm := c.s.verifyLeader
	if hb.ID == c.s.opts.NodeID {
		confirm = c.s.barrier
	}
	if err := confirm(ctx); err != nil {
		return Lease{}, err
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
	want := Broker{ID: hb.ID, Kafka: hb.Kafka, Internal: hb.Internal, Raft: hb.Raft, Rack: hb.Rack, State: BrokerAlive, Listeners: hb.Listeners}
	if !ok || !cur.Same(want) {
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

// LEOProbe names one partition a failover probe asks a replica about: its
// fenced active segment and that segment's epoch.
type LEOProbe struct {
	Topic     string
	Partition int32
	Segment   int64
	Epoch     int32
}

// LEOAnswer is a replica's answer to one LEOProbe: its log end offset of
// the partition, or why it has none.
type LEOAnswer struct {
	LEO int64
	Err error
}

// ReplicaProber asks a replica node for its log end offsets of the
// partitions of a failover once it has applied the Raft entry at
// fenceIndex (the fences) and stopped fetching them (failover step 3):
// one call per node carrying every partition that node answers for. The
// answers are in the order of probes; an error means the node answered
// none. The broker implements it over the internal listener.
type ReplicaProber interface {
	ReplicaLEOs(ctx context.Context, node int32, fenceIndex uint64, probes []LEOProbe) ([]LEOAnswer, error)
}

// FailoverObserver, if the ReplicaProber implements it too, hears of each
// failover round that sealed partitions: how many, and how long the round
// took from fencing to the seals committed (metrics).
type FailoverObserver interface {
	FailedOver(partitions int, took time.Duration)
}

// failoverChunk is how many entries one FenceSegments or SealSegments
// carries (a Raft entry of a few hundred KiB at most).
const failoverChunk = 1000

// failovers starts a failover for every replicated partition whose active
// segment is led by a fenced broker or is fenced already (a retry, or a
// predecessor's unfinished failover). All the partitions found in one scan
// fail over together (failover); one runs per partition at a time.
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
	applied := c.s.fsm.AppliedIndex()
	c.mu.Lock()
	c.scans++
	// Without fenced brokers only leftover fenced segments need a look;
	// scan for those every 16 ticks. Either way a scan finds something
	// new only after a new entry or an ended failover (every 128 ticks
	// regardless).
	skip := (len(fenced) == 0 && c.scans%16 != 0) || (applied == c.quietScan && !c.failoverEnded && c.scans%128 != 0)
	c.failoverEnded = false
	c.mu.Unlock()
	if skip {
		return
	}
	// Only the segments to fail over are copied, not every topic.
	found := c.s.fsm.ActiveSegments(func(_ int, seg *Segment) bool {
		return len(seg.Replicas) >= 2 && (fenced[seg.Leader] || seg.State == SegmentFenced)
	})
	var todo []ActiveSegment
	var keys []string
	c.mu.Lock()
	for _, a := range found {
		key := fmt.Sprintf("%s-%d", a.Topic, a.Partition)
		if c.failing[key] {
			continue
		}
		c.failing[key] = true
		todo = append(todo, a)
		keys = append(keys, key)
	}
	c.quietScan = 0
	if len(todo) == 0 {
		c.quietScan = applied
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	c.s.wg.Add(1)
	go func() {
		defer c.s.wg.Done()
		defer func() {
			c.mu.Lock()
			for _, k := range keys {
				delete(c.failing, k)
			}
			c.failoverEnded = true
			c.mu.Unlock()
		}()
		c.failover(todo)
	}()
}

// failover replaces the dead leaders of segs' partitions
// (docs/architecture.md, "Rotation and failover"), all of them together:
// fence the segments through Raft (FenceSegments, failoverChunk entries a
// command), ask each live replica node once for its log end offsets of all
// the partitions it holds (each answers after it applied the fences and
// stopped fetching), seal each segment at the smallest answer — at or
// above the frozen high watermark, so every acknowledged record is kept —
// and open the next segment on the least loaded of the replicas that
// answered (SealSegments). A partition no replica answered for stays
// fenced (unavailable rather than losing data); it, and any whose fence or
// seal did not commit, is retried at the controller's next scan.
func (c *controller) failover(segs []ActiveSegment) {
	began := time.Now()
	phase := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(c.s.stopCtx, 2*c.s.opts.LeaseTimeout)
	}
	name := func(a ActiveSegment) string { return fmt.Sprintf("%s-%d", a.Topic, a.Partition) }

	// 1. Fence. Segments fenced before (a retry) are covered by the
	// applied index as it is now.
	fenceIndex := c.s.fsm.AppliedIndex()
	ok := make([]bool, len(segs))
	var fences []FenceSegment
	var fenceOf []int
	for i, a := range segs {
		if a.Segment.State == SegmentFenced {
			ok[i] = true
			continue
		}
		fences = append(fences, FenceSegment{Topic: a.Topic, ID: a.ID, Partition: a.Partition, ExpectedSegment: a.Segment.ID, ExpectedEpoch: a.Segment.Epoch})
		fenceOf = append(fenceOf, i)
	}
	ctx, cancel := phase()
	var cmds []Command
	for lo := 0; lo < len(fences); lo += failoverChunk {
		cmds = append(cmds, FenceSegments{Entries: fences[lo:min(lo+failoverChunk, len(fences))]})
	}
	notFenced := 0
	var fenceErr error
	for k, r := range c.applyAll(ctx, cmds) {
		n := len(cmds[k].(FenceSegments).Entries)
		for j, err := range BatchEntryErrors(r.err, n) {
			if err != nil {
				notFenced++
				fenceErr = fmt.Errorf("fence %s segment %d: %w", name(segs[fenceOf[k*failoverChunk+j]]), segs[fenceOf[k*failoverChunk+j]].Segment.ID, err)
				continue
			}
			ok[fenceOf[k*failoverChunk+j]] = true
		}
		fenceIndex = max(fenceIndex, r.index)
	}
	cancel()
	fenced := time.Since(began)
	if notFenced > 0 {
		c.s.log.Warn().Err(fenceErr).Int("partitions", notFenced).Msg("failover: segments not fenced; retrying")
	}

	// 2. Probe each live replica node once for all its partitions.
	alive := map[int32]bool{}
	for _, b := range c.s.fsm.Brokers() {
		alive[b.ID] = b.State == BrokerAlive
	}
	byNode := map[int32][]int{}
	for i, a := range segs {
		if !ok[i] {
			continue
		}
		for _, r := range a.Segment.Replicas {
			if r != a.Segment.Leader && alive[r] {
				byNode[r] = append(byNode[r], i)
			}
		}
	}
	type probed struct {
		node    int32
		idx     []int
		answers []LEOAnswer
		err     error
	}
	ctx, cancel = phase()
	results := make(chan probed, len(byNode))
	prober := c.s.prober.Load()
	for node, idx := range byNode {
		go func() {
			probes := make([]LEOProbe, len(idx))
			for j, i := range idx {
				a := segs[i]
				probes[j] = LEOProbe{Topic: a.Topic, Partition: a.Partition, Segment: a.Segment.ID, Epoch: a.Segment.Epoch}
			}
			answers, err := prober.ReplicaLEOs(ctx, node, fenceIndex, probes)
			if err == nil && len(answers) != len(probes) {
				err = fmt.Errorf("metadata: %d answers to %d probes", len(answers), len(probes))
			}
			results <- probed{node, idx, answers, err}
		}()
	}
	end := make([]int64, len(segs))
	live := make([][]int32, len(segs))
	for range byNode {
		r := <-results
		if r.err != nil {
			c.s.log.Warn().Err(r.err).Int32("replica", r.node).Int("partitions", len(r.idx)).Msg("failover: replica did not answer")
			continue
		}
		unanswered := 0
		var answerErr error
		for j, i := range r.idx {
			a := r.answers[j]
			if a.Err != nil {
				unanswered++
				answerErr = fmt.Errorf("%s: %w", name(segs[i]), a.Err)
				continue
			}
			if len(live[i]) == 0 || a.LEO < end[i] {
				end[i] = a.LEO
			}
			live[i] = append(live[i], r.node)
		}
		if unanswered > 0 {
			c.s.log.Warn().Err(answerErr).Int32("replica", r.node).Int("partitions", unanswered).Msg("failover: replica has no log end offset for some partitions")
		}
	}
	cancel()
	probedAt := time.Since(began)

	// 3. Seal at the smallest answer and open the next segments, each on
	// the least loaded replica that answered (counting the leaderships
	// this failover hands out).
	loads := c.s.fsm.Loads()
	var seals []RollSegment
	var sealOf []int
	unanswered := 0
	var unansweredName string
	for i, a := range segs {
		if !ok[i] {
			continue
		}
		if len(live[i]) == 0 {
			unanswered++
			unansweredName = name(a)
			continue
		}
		next := live[i]
		slices.SortFunc(next, func(x, y int32) int {
			if loads[x] != loads[y] {
				return loads[x] - loads[y]
			}
			return int(x - y)
		})
		loads[next[0]]++
		seals = append(seals, RollSegment{Topic: a.Topic, ID: a.ID, Partition: a.Partition, ExpectedSegment: a.Segment.ID, ExpectedEpoch: a.Segment.Epoch,
			EndOffset: max(end[i], a.Segment.BaseOffset), NextLeader: next[0], NextReplicas: next, SealedAtMs: time.Now().UnixMilli()})
		sealOf = append(sealOf, i)
	}
	if unanswered > 0 {
		c.s.log.Warn().Err(ErrNotEnoughBrokers).Int("partitions", unanswered).Str("example", unansweredName).
			Msg("failover: no live replica answered; the segments stay fenced, retrying")
	}
	ctx, cancel = phase()
	defer cancel()
	cmds = cmds[:0]
	for lo := 0; lo < len(seals); lo += failoverChunk {
		cmds = append(cmds, SealSegments{Entries: seals[lo:min(lo+failoverChunk, len(seals))]})
	}
	sealed, notSealed := 0, 0
	var sealErr error
	leaders := map[int32]int{}
	dead := map[int32]int{}
	for k, r := range c.applyAll(ctx, cmds) {
		n := len(cmds[k].(SealSegments).Entries)
		for j, err := range BatchEntryErrors(r.err, n) {
			s := seals[k*failoverChunk+j]
			a := segs[sealOf[k*failoverChunk+j]]
			if err != nil {
				notSealed++
				sealErr = fmt.Errorf("seal %s segment %d at %d: %w", name(a), a.Segment.ID, s.EndOffset, err)
				continue
			}
			sealed++
			leaders[s.NextLeader]++
			dead[a.Segment.Leader]++
			c.s.log.Debug().Str("topic", a.Topic).Int32("partition", a.Partition).Int32("dead_leader", a.Segment.Leader).Int32("new_leader", s.NextLeader).
				Int64("sealed_at", s.EndOffset).Ints32("replicas", s.NextReplicas).Msg("failover: segment sealed, next segment opened")
		}
	}
	if notSealed > 0 {
		c.s.log.Warn().Err(sealErr).Int("partitions", notSealed).Msg("failover: segments not sealed; retrying")
	}
	if sealed > 0 {
		if p := c.s.prober.Load(); p != nil {
			if o, ok := p.ReplicaProber.(FailoverObserver); ok {
				o.FailedOver(sealed, time.Since(began))
			}
		}
		c.s.log.Warn().Int("partitions", sealed).Interface("dead_leaders", dead).Interface("new_leaders", leaders).
			Dur("fenced_after", fenced).Dur("probed_after", probedAt).Dur("took", time.Since(began)).Msg("failover: segments sealed, next segments opened")
	}
}

// applied is the outcome of one command applyAll proposed.
type applied struct {
	index uint64
	err   error
}

// applyAll proposes cmds side by side (Raft commits them in as few
// rounds as it can) and returns each one's index and error.
func (c *controller) applyAll(ctx context.Context, cmds []Command) []applied {
	out := make([]applied, len(cmds))
	var wg sync.WaitGroup
	for k, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k].index, out[k].err = c.s.applyCommand(ctx, cmd)
		}()
	}
	wg.Wait()
	return out
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
	applied := c.s.fsm.AppliedIndex()
	c.mu.Lock()
	// Which segments are under-replicated follows from the metadata
	// alone: with none at the last scan and no entry since, there are
	// none now.
	skip := wait <= 0 || c.leaderSince.IsZero() || c.scans%8 != 0 || applied == c.quietRestore
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
	c.mu.Lock()
	c.quietRestore = 0
	if len(under) == 0 {
		c.quietRestore = applied
	}
	c.mu.Unlock()
	var replicasOf map[int32]int
	if len(under) > 0 {
		replicasOf = c.s.fsm.ActiveReplicaCounts()
	}
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
		ctx, cancel := context.WithTimeout(c.s.stopCtx, c.s.opts.LeaseTimeout)
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
