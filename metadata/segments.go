package metadata

import (
	"fmt"
	"slices"
)

// RollSegment seals a partition's active segment at EndOffset and opens
// the next one at that offset with the next epoch (planned roll,
// docs/architecture.md, "Rotation and failover"). It is a compare-and-set:
// it fails unless the active segment is still ExpectedSegment at
// ExpectedEpoch. The next leader must be one of
// the sealed segment's replicas (it holds the sealed bytes and the
// producer state) and a member of NextReplicas. A proposal may leave
// NextLeader at -1 for the controller to choose by load.
type RollSegment struct {
	Topic           string  `json:"topic"`
	ID              TopicID `json:"id"`
	Partition       int32   `json:"partition"`
	ExpectedSegment int64   `json:"expected_segment"`
	ExpectedEpoch   int32   `json:"expected_epoch"`
	EndOffset       int64   `json:"end_offset"`
	NextLeader      int32   `json:"next_leader"`
	NextReplicas    []int32 `json:"next_replicas,omitempty"`
	// SealedReplicas, when set, replaces the sealed segment's replica set:
	// a roll that drops a lagging follower records that only the others
	// hold the sealed bytes (a subset of the segment's replicas).
	SealedReplicas []int32 `json:"sealed_replicas,omitempty"`
	// Checksum and Bytes describe the sealed range [base, end) as the
	// leader holds it (invariant I4); Bytes is 0 when not computed.
	Checksum uint32 `json:"checksum,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	// Joined are learners the roll takes into NextReplicas. Each holds
	// the partition from JoinedFrom (the leader's log start) up to
	// EndOffset, so it becomes a replica of every sealed segment above
	// JoinedFrom as well (re-replication); a sealed segment that then has
	// more replicas than the replication factor drops fenced members.
	Joined     []int32 `json:"joined,omitempty"`
	JoinedFrom int64   `json:"joined_from,omitempty"`
	// SealedAtMs is the proposer's wall time (ms), recorded as the
	// sealed segment's seal time (the tombstone horizon of compaction,
	// docs/compaction.md).
	SealedAtMs int64 `json:"sealed_at_ms,omitempty"`
	// FirstUnstable is the sealed segment's first unstable offset (see
	// Segment.FirstUnstable): a planned roll's leader sets it from its
	// open transactions at EndOffset; nil (a failover seal) records it
	// as unknown.
	FirstUnstable *int64 `json:"first_unstable,omitempty"`
	// DropSealed are nodes a reassignment removes (not in the
	// partition's Target): they stop being replicas of every sealed
	// segment that keeps another replica, so they may delete their copy.
	DropSealed []int32 `json:"drop_sealed,omitempty"`
}

func (RollSegment) kind() string { return "roll_segment" }

func (c RollSegment) apply(st *state) error {
	t, p, cur, err := activeSegment(st, c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch, SegmentActive, SegmentFenced)
	if err != nil {
		return err
	}
	if c.EndOffset < cur.BaseOffset {
		return fmt.Errorf("%w: end offset %d below the segment's base %d", ErrInvalidCommand, c.EndOffset, cur.BaseOffset)
	}
	sealed := cur.Replicas
	if len(c.SealedReplicas) > 0 {
		for _, r := range c.SealedReplicas {
			if !slices.Contains(cur.Replicas, r) {
				return fmt.Errorf("%w: sealed replica %d is not a replica of the segment", ErrInvalidCommand, r)
			}
		}
		sealed = c.SealedReplicas
	}
	if !slices.Contains(sealed, c.NextLeader) || !slices.Contains(c.NextReplicas, c.NextLeader) {
		return fmt.Errorf("%w: next leader %d must be a replica of the sealed segment and of the next", ErrInvalidCommand, c.NextLeader)
	}
	for _, r := range c.NextReplicas {
		if _, ok := st.Brokers[r]; !ok {
			return fmt.Errorf("%w: next replica %d is not a broker", ErrPreconditionFailed, r)
		}
	}
	for _, r := range c.Joined {
		if !slices.Contains(c.NextReplicas, r) || slices.Contains(cur.Replicas, r) {
			return fmt.Errorf("%w: joined replica %d must be a new member of the next replica set", ErrInvalidCommand, r)
		}
	}
	cur.EndOffset = c.EndOffset
	cur.State = SegmentSealed
	cur.Replicas = slices.Clone(sealed)
	cur.Checksum, cur.Bytes = c.Checksum, c.Bytes
	cur.SealedAtMs = c.SealedAtMs
	cur.FirstUnstable = nil
	if c.FirstUnstable != nil {
		fu := min(*c.FirstUnstable, c.EndOffset)
		cur.FirstUnstable = &fu
	}
	learners := slices.DeleteFunc(slices.Clone(cur.Learners), func(id int32) bool { return slices.Contains(c.NextReplicas, id) })
	cur.Learners = nil
	if len(c.Joined) > 0 {
		rf := t.ReplicationFactor()
		for i := range p.Segments {
			s := &p.Segments[i]
			if s.State != SegmentSealed || s.EndOffset <= c.JoinedFrom || s.EndOffset <= s.BaseOffset {
				continue
			}
			for _, r := range c.Joined {
				if !slices.Contains(s.Replicas, r) {
					s.Replicas = append(s.Replicas, r)
				}
			}
			for j := len(s.Replicas) - 1; j >= 0 && len(s.Replicas) > rf; j-- {
				if b, ok := st.Brokers[s.Replicas[j]]; !ok || b.State != BrokerAlive {
					s.Replicas = slices.Delete(s.Replicas, j, j+1)
				}
			}
		}
	}
	if len(c.DropSealed) > 0 {
		for i := range p.Segments {
			s := &p.Segments[i]
			if s.State != SegmentSealed {
				continue
			}
			kept := slices.DeleteFunc(slices.Clone(s.Replicas), func(id int32) bool { return slices.Contains(c.DropSealed, id) })
			if len(kept) > 0 {
				s.Replicas = kept
			}
		}
	}
	next := Segment{
		ID: st.NextSegmentID, BaseOffset: c.EndOffset, EndOffset: -1, Epoch: cur.Epoch + 1,
		Leader: c.NextLeader, Replicas: append([]int32{c.NextLeader}, without(c.NextReplicas, c.NextLeader)...), State: SegmentActive,
		Learners: learners,
	}
	st.NextSegmentID++
	p.Segments = append(p.Segments, next)
	if p.Target != nil && sameSet(next.Replicas, p.Target) {
		p.Target = nil // the reassignment is done
	}
	if p.Elect != nil && (next.Leader == *p.Elect || !slices.Contains(next.Replicas, *p.Elect)) {
		p.Elect = nil // elected, or no longer a replica to elect
	}
	return nil
}

// ElectLeader asks the leader of a partition's active segment
// (ExpectedSegment at ExpectedEpoch) to hand the next segment to Leader,
// a replica of that segment, at a roll it starts at once (ElectLeaders
// with the preferred election type).
type ElectLeader struct {
	Topic           string  `json:"topic"`
	ID              TopicID `json:"id"`
	Partition       int32   `json:"partition"`
	ExpectedSegment int64   `json:"expected_segment"`
	ExpectedEpoch   int32   `json:"expected_epoch"`
	Leader          int32   `json:"leader"`
}

func (ElectLeader) kind() string { return "elect_leader" }

func (c ElectLeader) apply(st *state) error {
	_, p, cur, err := activeSegment(st, c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch, SegmentActive)
	if err != nil {
		return err
	}
	if !slices.Contains(cur.Replicas, c.Leader) {
		return fmt.Errorf("%w: node %d is not a replica of %s-%d's active segment", ErrPreconditionFailed, c.Leader, c.Topic, c.Partition)
	}
	if cur.Leader == c.Leader {
		p.Elect = nil
		return nil
	}
	l := c.Leader
	p.Elect = &l
	return nil
}

// sameSet reports whether a and b hold the same ids.
func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}

// ReassignPartition starts, changes or (Target nil) cancels the
// reassignment of a partition to the replica set Target
// (AlterPartitionReassignments). Target must have the topic's
// replication factor and name registered brokers once each. A Target equal to the active segment's replicas
// ends any reassignment at once.
type ReassignPartition struct {
	Topic     string  `json:"topic"`
	ID        TopicID `json:"id"`
	Partition int32   `json:"partition"`
	Target    []int32 `json:"target,omitempty"`
}

func (ReassignPartition) kind() string { return "reassign_partition" }

// ErrNoReassignment is returned when a cancelled reassignment was not in
// progress (NO_REASSIGNMENT_IN_PROGRESS). It wraps ErrPreconditionFailed,
// which is what survives forwarding to the controller: a cancel refused
// with ErrPreconditionFailed is this error.
var ErrNoReassignment = fmt.Errorf("%w: no reassignment in progress", ErrPreconditionFailed)

func (c ReassignPartition) apply(st *state) error {
	t, ok := st.Topics[c.Topic]
	if !ok || t.ID != c.ID {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, c.Topic)
	}
	if c.Partition < 0 || int(c.Partition) >= len(t.Parts) || len(t.Parts[c.Partition].Segments) == 0 {
		return fmt.Errorf("%w: %s has no partition %d", ErrUnknownTopic, c.Topic, c.Partition)
	}
	p := &t.Parts[c.Partition]
	if c.Target == nil {
		if p.Target == nil {
			return fmt.Errorf("%w: %s-%d", ErrNoReassignment, c.Topic, c.Partition)
		}
		p.Target = nil
		return nil
	}
	rf := t.ReplicationFactor()
	if len(c.Target) != rf {
		return fmt.Errorf("%w: %d replicas for %s, whose replication factor is %d (a reassignment keeps it)", ErrInvalidCommand, len(c.Target), c.Topic, rf)
	}
	for _, r := range c.Target {
		if _, ok := st.Brokers[r]; !ok {
			return fmt.Errorf("%w: replica %d is not a broker", ErrPreconditionFailed, r)
		}
	}
	if sameSet(p.Active().Replicas, c.Target) {
		p.Target = nil
		return nil
	}
	// Pin the replication factor (topics of old metadata have none
	// recorded): the move's extra replicas must not raise it.
	t.RF = rf
	p.Target = slices.Clone(c.Target)
	return nil
}

// AssignLearners names the nodes that copy a partition whose active
// segment lacks replicas (re-replication, docs/architecture.md, "Rotation
// and failover"). It is a compare-and-set on the active segment and epoch
// and replaces the segment's learners.
type AssignLearners struct {
	Topic           string  `json:"topic"`
	ID              TopicID `json:"id"`
	Partition       int32   `json:"partition"`
	ExpectedSegment int64   `json:"expected_segment"`
	ExpectedEpoch   int32   `json:"expected_epoch"`
	Learners        []int32 `json:"learners"`
}

func (AssignLearners) kind() string { return "assign_learners" }

func (c AssignLearners) apply(st *state) error {
	_, _, cur, err := activeSegment(st, c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch, SegmentActive)
	if err != nil {
		return err
	}
	for i, r := range c.Learners {
		if _, ok := st.Brokers[r]; !ok {
			return fmt.Errorf("%w: learner %d is not a broker", ErrPreconditionFailed, r)
		}
		if slices.Contains(cur.Replicas, r) || slices.Contains(c.Learners[:i], r) {
			return fmt.Errorf("%w: learner %d is a replica already or listed twice", ErrInvalidCommand, r)
		}
	}
	cur.Learners = slices.Clone(c.Learners)
	return nil
}

// activeSegment is the compare-and-set preamble of the segment commands:
// it finds topic (which must still have id) and its partition, and
// returns them with the partition's last segment, which must be segment
// at epoch and in one of the states given. It fails with ErrUnknownTopic,
// ErrInvalidCommand (no such partition, or one without segments) or
// ErrPreconditionFailed.
func activeSegment(st *state, topic string, id TopicID, partition int32, segment int64, epoch int32, states ...SegmentState) (*Topic, *Partition, *Segment, error) {
	t, ok := st.Topics[topic]
	if !ok || t.ID != id {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	if partition < 0 || int(partition) >= len(t.Parts) {
		return nil, nil, nil, fmt.Errorf("%w: %s has no partition %d", ErrInvalidCommand, topic, partition)
	}
	p := &t.Parts[partition]
	if len(p.Segments) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: %s-%d has no segments", ErrInvalidCommand, topic, partition)
	}
	cur := &p.Segments[len(p.Segments)-1]
	if cur.ID != segment || cur.Epoch != epoch || !slices.Contains(states, cur.State) {
		return nil, nil, nil, fmt.Errorf("%w: %s-%d active segment is %d epoch %d (%s), expected %d epoch %d",
			ErrPreconditionFailed, topic, partition, cur.ID, cur.Epoch, cur.State, segment, epoch)
	}
	return t, p, cur, nil
}

func without(ids []int32, drop int32) []int32 {
	out := make([]int32, 0, len(ids))
	for _, id := range ids {
		if id != drop {
			out = append(out, id)
		}
	}
	return out
}

// SegmentFenced marks an active segment whose leader lost its lease: no
// node appends to it or fetches from it any more; failover seals it.
const SegmentFenced SegmentState = "fenced"

// FenceSegment fences a partition's active segment (failover step 1). It
// is a compare-and-set on the segment and epoch.
type FenceSegment struct {
	Topic           string  `json:"topic"`
	ID              TopicID `json:"id"`
	Partition       int32   `json:"partition"`
	ExpectedSegment int64   `json:"expected_segment"`
	ExpectedEpoch   int32   `json:"expected_epoch"`
}

func (FenceSegment) kind() string { return "fence_segment" }

func (c FenceSegment) apply(st *state) error {
	_, _, cur, err := activeSegment(st, c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch, SegmentActive)
	if err != nil {
		return err
	}
	cur.State = SegmentFenced
	return nil
}

// SetFirstUnstable records the first unstable offset (Segment.FirstUnstable)
// of a sealed segment sealed without one (a failover seal): the leader
// of the next segment computes it from its open transactions when it
// begins to lead, while its log ends exactly at the sealed end
// (docs/transactions.md, "Sealed segments"). It is a compare-and-set on
// the segment still ending at EndOffset and having none.
type SetFirstUnstable struct {
	Topic         string  `json:"topic"`
	ID            TopicID `json:"id"`
	Partition     int32   `json:"partition"`
	Segment       int64   `json:"segment"`
	EndOffset     int64   `json:"end_offset"`
	FirstUnstable int64   `json:"first_unstable"`
}

func (SetFirstUnstable) kind() string { return "set_first_unstable" }

func (c SetFirstUnstable) apply(st *state) error {
	t, ok := st.Topics[c.Topic]
	if !ok || t.ID != c.ID {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, c.Topic)
	}
	if c.Partition < 0 || int(c.Partition) >= len(t.Parts) {
		return fmt.Errorf("%w: %s has no partition %d", ErrInvalidCommand, c.Topic, c.Partition)
	}
	p := &t.Parts[c.Partition]
	for i := range p.Segments {
		s := &p.Segments[i]
		if s.ID != c.Segment {
			continue
		}
		if s.State != SegmentSealed || s.EndOffset != c.EndOffset || s.FirstUnstable != nil {
			return fmt.Errorf("%w: %s-%d segment %d is not a sealed segment ending at %d without a first unstable offset",
				ErrPreconditionFailed, c.Topic, c.Partition, c.Segment, c.EndOffset)
		}
		fu := c.FirstUnstable
		s.FirstUnstable = &fu
		return nil
	}
	return fmt.Errorf("%w: %s-%d has no segment %d", ErrPreconditionFailed, c.Topic, c.Partition, c.Segment)
}

func (c SetFirstUnstable) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || c.Segment < 0 || c.EndOffset < 0 || c.FirstUnstable < 0 || c.FirstUnstable > c.EndOffset {
		return fmt.Errorf("partition %d segment %d end offset %d first unstable offset %d", c.Partition, c.Segment, c.EndOffset, c.FirstUnstable)
	}
	return nil
}
