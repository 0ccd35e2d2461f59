package metadata

import (
	"errors"
	"fmt"
	"slices"
)

// Compaction commands (docs/compaction.md, "The protocol"). A cleaning of
// a partition is proposed by its active leader (CleanPartition), run by
// every participant over the same verified bytes, and committed when a
// majority of the participants report the same (checksum, length) for
// every segment of the range (CleanReport). The FSM decides the outcome
// in the apply of the report that settles it, so every node sees the same
// commit or abandonment at the same log index.

// CleanSegment is one sealed chain segment of a cleaning's range, as the
// command fixes it.
type CleanSegment struct {
	ID         int64 `json:"id"`
	Base       int64 `json:"base"`
	End        int64 `json:"end"`
	SealedAtMs int64 `json:"sealed_at_ms"`
	// Horizons are a merged segment's parts (Segment.Epochs): where each
	// starts and when it was sealed, the tombstone horizon of its records.
	Horizons []EpochStart `json:"horizons,omitempty"`
}

// CleanPartition starts cleaning generation Generation of a partition:
// the batches in [Start, UpTo) are rewritten by every participant with
// the command's fixed NowMs (the tombstone horizon of segment s passes
// once s.SealedAtMs + delete.retention.ms <= NowMs). It is a
// compare-and-set: Generation must be one above the partition's last
// proposed generation and no cleaning may be in flight. Segments lists,
// in order, every chain segment overlapping [Start, UpTo); each must be
// sealed with a known checksum (but the first one, if Start lies inside
// it), UpTo must be the last one's end, and every participant a replica
// of each.
type CleanPartition struct {
	Topic        string         `json:"topic"`
	ID           TopicID        `json:"id"`
	Partition    int32          `json:"partition"`
	Generation   int32          `json:"generation"`
	Start        int64          `json:"start"`
	FirstDirty   int64          `json:"first_dirty"`
	UpTo         int64          `json:"up_to"`
	NowMs        int64          `json:"now_ms"`
	Participants []int32        `json:"participants"`
	Segments     []CleanSegment `json:"segments"`
}

// SegmentResult is a participant's cleaned copy of one segment: the
// CRC-32C and length of its stored batches.
type SegmentResult struct {
	ID       int64  `json:"id"`
	Checksum uint32 `json:"checksum"`
	Bytes    int64  `json:"bytes"`
}

// CleanReport is a participant's outcome of a cleaning: OK with one
// result per segment of the command (in its order), or not OK (its input
// did not verify, or the cleaner failed; Reason says why). The report
// that gives a majority of the participants identical results commits
// the generation; the one after which no majority is possible abandons
// it.
type CleanReport struct {
	Topic      string          `json:"topic"`
	ID         TopicID         `json:"id"`
	Partition  int32           `json:"partition"`
	Generation int32           `json:"generation"`
	Node       int32           `json:"node"`
	OK         bool            `json:"ok"`
	Results    []SegmentResult `json:"results,omitempty"`
	Reason     string          `json:"reason,omitempty"`
}

// AbandonCleaning ends cleaning Generation without committing it (its
// participants did not all report in time, or one was fenced).
type AbandonCleaning struct {
	Topic      string  `json:"topic"`
	ID         TopicID `json:"id"`
	Partition  int32   `json:"partition"`
	Generation int32   `json:"generation"`
}

// SetSegmentChecksum records the checksum of a sealed segment that was
// sealed without one (a failover seal), once a replica holds exactly its
// range. It is a compare-and-set on the segment having none.
type SetSegmentChecksum struct {
	Topic     string  `json:"topic"`
	ID        TopicID `json:"id"`
	Partition int32   `json:"partition"`
	Segment   int64   `json:"segment"`
	Checksum  uint32  `json:"checksum"`
	Bytes     int64   `json:"bytes"`
}

// Cleaning is a partition's cleaning in flight: its command and the
// reports received so far, by node.
type Cleaning struct {
	CleanPartition
	Reports map[int32]CleanReport `json:"reports,omitempty"`
}

// CommittedGeneration is the generation of the partition's last
// committed cleaning (0: never cleaned).
func (p Partition) CommittedGeneration() int32 {
	if p.Cleaned == nil {
		return 0
	}
	return p.Cleaned.Generation
}

func (CleanPartition) kind() string     { return "clean_partition" }
func (CleanReport) kind() string        { return "clean_report" }
func (AbandonCleaning) kind() string    { return "abandon_cleaning" }
func (SetSegmentChecksum) kind() string { return "set_segment_checksum" }

// partitionOf finds a topic's partition for the compaction commands.
func partitionOf(st *state, topic string, id TopicID, partition int32) (*Topic, *Partition, error) {
	t, ok := st.Topics[topic]
	if !ok || t.ID != id {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	if partition < 0 || int(partition) >= len(t.Parts) {
		return nil, nil, fmt.Errorf("%w: %s has no partition %d", ErrInvalidCommand, topic, partition)
	}
	return t, &t.Parts[partition], nil
}

func (c CleanPartition) apply(st *state) error {
	_, p, err := partitionOf(st, c.Topic, c.ID, c.Partition)
	if err != nil {
		return err
	}
	if p.Clean != nil {
		return fmt.Errorf("%w: %s-%d is being cleaned (generation %d)", ErrPreconditionFailed, c.Topic, c.Partition, p.Clean.Generation)
	}
	if c.Generation != p.CleanGen+1 {
		return fmt.Errorf("%w: %s-%d cleaning generation %d, expected %d", ErrPreconditionFailed, c.Topic, c.Partition, c.Generation, p.CleanGen+1)
	}
	if c.UpTo <= c.Start || len(c.Segments) == 0 || c.Segments[len(c.Segments)-1].End != c.UpTo {
		return fmt.Errorf("%w: %s-%d cleaning [%d, %d) over %d segments", ErrInvalidCommand, c.Topic, c.Partition, c.Start, c.UpTo, len(c.Segments))
	}
	// The listed segments must be exactly the chain's non-empty segments
	// that overlap [Start, UpTo), as the chain has them.
	i := slices.IndexFunc(p.Segments, func(s Segment) bool { return s.ID == c.Segments[0].ID })
	if i < 0 {
		return fmt.Errorf("%w: %s-%d cleaning names segments the chain does not hold", ErrPreconditionFailed, c.Topic, c.Partition)
	}
	if i > 0 && p.Segments[i-1].EndOffset > c.Start {
		return fmt.Errorf("%w: %s-%d cleaning leaves out segment %d overlapping its start %d", ErrInvalidCommand, c.Topic, c.Partition, p.Segments[i-1].ID, c.Start)
	}
	if c.Segments[0].Base > c.Start || c.Segments[0].End <= c.Start {
		return fmt.Errorf("%w: %s-%d cleaning start %d outside its first segment", ErrInvalidCommand, c.Topic, c.Partition, c.Start)
	}
	k := i
	for _, cs := range c.Segments {
		for k < len(p.Segments) && p.Segments[k].ID != cs.ID && p.Segments[k].EndOffset == p.Segments[k].BaseOffset && p.Segments[k].State == SegmentSealed {
			k++ // an empty sealed segment: nothing to clean
		}
		if k == len(p.Segments) {
			return fmt.Errorf("%w: %s-%d cleaning names segments the chain does not hold", ErrPreconditionFailed, c.Topic, c.Partition)
		}
		s := p.Segments[k]
		k++
		if s.ID != cs.ID || s.State != SegmentSealed || s.BaseOffset != cs.Base || s.EndOffset != cs.End || s.SealedAtMs != cs.SealedAtMs ||
			!slices.Equal(s.Epochs, cs.Horizons) {
			return fmt.Errorf("%w: %s-%d segment %d is not the sealed segment the cleaning names", ErrPreconditionFailed, c.Topic, c.Partition, cs.ID)
		}
		// The first segment may start below the range (the leader's log
		// start is inside it): its bytes below Start are gone, so it is
		// not verified and needs no checksum.
		if s.Bytes == 0 && s.EndOffset > s.BaseOffset && s.BaseOffset >= c.Start {
			return fmt.Errorf("%w: %s-%d segment %d has no checksum yet", ErrPreconditionFailed, c.Topic, c.Partition, s.ID)
		}
		for _, n := range c.Participants {
			if !slices.Contains(s.Replicas, n) {
				return fmt.Errorf("%w: participant %d is not a replica of segment %d", ErrPreconditionFailed, n, s.ID)
			}
		}
	}
	for _, n := range c.Participants {
		if b, ok := st.Brokers[n]; !ok || b.State != BrokerAlive {
			return fmt.Errorf("%w: participant %d is not an alive broker", ErrPreconditionFailed, n)
		}
	}
	p.CleanGen = c.Generation
	p.Clean = &Cleaning{CleanPartition: c.Clone()}
	return nil
}

// Clone returns a deep copy of c.
func (c CleanPartition) Clone() CleanPartition {
	c.Participants = slices.Clone(c.Participants)
	c.Segments = slices.Clone(c.Segments)
	for i := range c.Segments {
		c.Segments[i].Horizons = slices.Clone(c.Segments[i].Horizons)
	}
	return c
}

// majority is the number of agreeing reports that commits a cleaning
// with n participants.
func majority(n int) int { return n/2 + 1 }

func (c CleanReport) apply(st *state) error {
	_, p, err := partitionOf(st, c.Topic, c.ID, c.Partition)
	if err != nil {
		return err
	}
	cl := p.Clean
	if cl == nil || cl.Generation != c.Generation {
		return fmt.Errorf("%w: %s-%d is not cleaning generation %d", ErrPreconditionFailed, c.Topic, c.Partition, c.Generation)
	}
	if !slices.Contains(cl.Participants, c.Node) {
		return fmt.Errorf("%w: node %d is not a participant of %s-%d generation %d", ErrPreconditionFailed, c.Node, c.Topic, c.Partition, c.Generation)
	}
	if _, dup := cl.Reports[c.Node]; dup {
		return fmt.Errorf("%w: node %d reported %s-%d generation %d already", ErrPreconditionFailed, c.Node, c.Topic, c.Partition, c.Generation)
	}
	if c.OK {
		if len(c.Results) != len(cl.Segments) {
			return fmt.Errorf("%w: %d results for %d segments", ErrInvalidCommand, len(c.Results), len(cl.Segments))
		}
		for j, r := range c.Results {
			if r.ID != cl.Segments[j].ID {
				return fmt.Errorf("%w: result %d names segment %d, expected %d", ErrInvalidCommand, j, r.ID, cl.Segments[j].ID)
			}
		}
	}
	if cl.Reports == nil {
		cl.Reports = map[int32]CleanReport{}
	}
	c.Results = slices.Clone(c.Results)
	cl.Reports[c.Node] = c
	// Count agreeing reports; participants in order, so the outcome does
	// not depend on map iteration.
	best, bestN := CleanReport{}, 0
	for _, n := range cl.Participants {
		r, ok := cl.Reports[n]
		if !ok || !r.OK {
			continue
		}
		k := 0
		for _, m := range cl.Participants {
			if o, ok := cl.Reports[m]; ok && o.OK && slices.Equal(o.Results, r.Results) {
				k++
			}
		}
		if k > bestN {
			best, bestN = r, k
		}
	}
	need := majority(len(cl.Participants))
	if bestN >= need {
		commitCleaning(p, cl, best.Results)
		return nil
	}
	if bestN+len(cl.Participants)-len(cl.Reports) < need {
		p.Clean = nil // no majority can form any more: abandoned
	}
	return nil
}

// commitCleaning makes results the committed bytes of the cleaning's
// segments that the chain still holds.
func commitCleaning(p *Partition, cl *Cleaning, results []SegmentResult) {
	for _, r := range results {
		for i := range p.Segments {
			if s := &p.Segments[i]; s.ID == r.ID {
				s.Generation, s.Checksum, s.Bytes = cl.Generation, r.Checksum, r.Bytes
			}
		}
	}
	done := cl.CleanPartition.Clone()
	p.Cleaned = &done
	p.CleanedResults = slices.Clone(results)
	p.Clean = nil
}

func (c AbandonCleaning) apply(st *state) error {
	_, p, err := partitionOf(st, c.Topic, c.ID, c.Partition)
	if err != nil {
		return err
	}
	if p.Clean == nil || p.Clean.Generation != c.Generation {
		return fmt.Errorf("%w: %s-%d is not cleaning generation %d", ErrPreconditionFailed, c.Topic, c.Partition, c.Generation)
	}
	p.Clean = nil
	return nil
}

func (c SetSegmentChecksum) apply(st *state) error {
	_, p, err := partitionOf(st, c.Topic, c.ID, c.Partition)
	if err != nil {
		return err
	}
	for i := range p.Segments {
		s := &p.Segments[i]
		if s.ID != c.Segment {
			continue
		}
		if s.State != SegmentSealed || s.Bytes != 0 || s.EndOffset <= s.BaseOffset {
			return fmt.Errorf("%w: %s-%d segment %d is not a sealed segment without a checksum", ErrPreconditionFailed, c.Topic, c.Partition, c.Segment)
		}
		s.Checksum, s.Bytes = c.Checksum, c.Bytes
		return nil
	}
	return fmt.Errorf("%w: %s-%d has no segment %d", ErrPreconditionFailed, c.Topic, c.Partition, c.Segment)
}

func (c CleanPartition) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || c.Generation < 1 {
		return fmt.Errorf("partition %d generation %d", c.Partition, c.Generation)
	}
	if c.Start < 0 || c.UpTo <= c.Start || c.FirstDirty < c.Start || c.FirstDirty > c.UpTo {
		return fmt.Errorf("range [%d, %d) first dirty %d", c.Start, c.UpTo, c.FirstDirty)
	}
	if len(c.Participants) == 0 {
		return errors.New("no participants")
	}
	if err := brokerIDs("participants", c.Participants); err != nil {
		return err
	}
	if len(c.Segments) == 0 || len(c.Segments) > 1<<20 {
		return fmt.Errorf("%d segments", len(c.Segments))
	}
	for j, s := range c.Segments {
		if s.ID < 0 || s.End <= s.Base || (j > 0 && s.Base != c.Segments[j-1].End) {
			return fmt.Errorf("segment %d [%d, %d) out of order", s.ID, s.Base, s.End)
		}
	}
	return nil
}

func (c CleanReport) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || c.Generation < 1 || c.Node < 0 {
		return fmt.Errorf("partition %d generation %d node %d", c.Partition, c.Generation, c.Node)
	}
	if !c.OK && len(c.Results) > 0 {
		return errors.New("results in a failed report")
	}
	for _, r := range c.Results {
		if r.Bytes < 0 {
			return fmt.Errorf("segment %d: %d bytes", r.ID, r.Bytes)
		}
	}
	return nil
}

func (c AbandonCleaning) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || c.Generation < 1 {
		return fmt.Errorf("partition %d generation %d", c.Partition, c.Generation)
	}
	return nil
}

func (c SetSegmentChecksum) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || c.Segment < 0 || c.Bytes <= 0 {
		return fmt.Errorf("partition %d segment %d bytes %d", c.Partition, c.Segment, c.Bytes)
	}
	return nil
}

// EpochStart is one part of a merged segment: its epoch, the first
// offset written in it, and when it was sealed.
type EpochStart struct {
	Epoch      int32 `json:"epoch"`
	Start      int64 `json:"start"`
	SealedAtMs int64 `json:"sealed_at_ms,omitempty"`
}

// EpochList is the segment's parts: its Epochs if it was merged from
// several segments, else its one epoch from its base.
func (s Segment) EpochList() []EpochStart {
	if len(s.Epochs) > 0 {
		return s.Epochs
	}
	return []EpochStart{{Epoch: s.Epoch, Start: s.BaseOffset, SealedAtMs: s.SealedAtMs}}
}

// HasEpoch reports whether records of epoch e belong to the segment.
func (s Segment) HasEpoch(e int32) bool {
	return slices.ContainsFunc(s.EpochList(), func(es EpochStart) bool { return es.Epoch == e })
}

// MergedInput is one segment a MergeSegments replaces, with the bytes
// the proposer verified (a compare-and-set on them).
type MergedInput struct {
	ID         int64  `json:"id"`
	Checksum   uint32 `json:"checksum"`
	Bytes      int64  `json:"bytes"`
	Generation int32  `json:"generation"`
}

// MergeSegments replaces adjacent cleaned sealed segments by one, so that
// a compacted partition's chain stays bounded (docs/compaction.md,
// "Merging"). The merged segment keeps the first one's ID and base, the
// last one's end, epoch, leader and seal time, the epoch list of all of
// them with their seal times (EpochList: a tombstone keeps the horizon of
// the segment it was written in), the replicas they have in common, and takes Checksum
// and Bytes of the whole range as the proposer holds it. It is refused
// while a cleaning is in flight, for segments at or above the last
// committed cleaning's end, and when an input's checksum, bytes or
// generation moved.
type MergeSegments struct {
	Topic     string        `json:"topic"`
	ID        TopicID       `json:"id"`
	Partition int32         `json:"partition"`
	Inputs    []MergedInput `json:"inputs"`
	Checksum  uint32        `json:"checksum"`
	Bytes     int64         `json:"bytes"`
}

func (MergeSegments) kind() string { return "merge_segments" }

func (c MergeSegments) apply(st *state) error {
	_, p, err := partitionOf(st, c.Topic, c.ID, c.Partition)
	if err != nil {
		return err
	}
	if p.Clean != nil || p.Cleaned == nil {
		return fmt.Errorf("%w: %s-%d: merge while cleaning or before any cleaning", ErrPreconditionFailed, c.Topic, c.Partition)
	}
	i := slices.IndexFunc(p.Segments, func(s Segment) bool { return s.ID == c.Inputs[0].ID })
	if i < 0 || i+len(c.Inputs) > len(p.Segments)-1 { // never the active segment
		return fmt.Errorf("%w: %s-%d: merge of segments the chain does not hold", ErrPreconditionFailed, c.Topic, c.Partition)
	}
	run := p.Segments[i : i+len(c.Inputs)]
	// The merged segment's replicas hold every input's data. An empty
	// input holds none, and a roll that takes a learner in does not list
	// it on empty sealed segments, so an empty input's replicas do not
	// narrow the set.
	var replicas []int32
	held := false
	var epochs []EpochStart
	gen := int32(0)
	for j, in := range c.Inputs {
		s := run[j]
		if s.ID != in.ID || s.State != SegmentSealed || s.Checksum != in.Checksum || s.Bytes != in.Bytes || s.Generation != in.Generation {
			return fmt.Errorf("%w: %s-%d segment %d changed since the merge was proposed", ErrPreconditionFailed, c.Topic, c.Partition, in.ID)
		}
		if s.EndOffset > p.Cleaned.UpTo {
			return fmt.Errorf("%w: %s-%d segment %d is not cleaned", ErrPreconditionFailed, c.Topic, c.Partition, s.ID)
		}
		switch {
		case s.EndOffset <= s.BaseOffset:
		case !held:
			replicas, held = slices.Clone(s.Replicas), true
		default:
			replicas = slices.DeleteFunc(replicas, func(r int32) bool { return !slices.Contains(s.Replicas, r) })
		}
		for _, e := range s.EpochList() {
			if n := len(epochs); n > 0 && epochs[n-1].Epoch == e.Epoch {
				continue
			}
			epochs = append(epochs, e)
		}
		gen = max(gen, s.Generation)
	}
	last := run[len(run)-1]
	if !held {
		replicas = slices.Clone(last.Replicas)
	}
	if len(replicas) == 0 {
		return fmt.Errorf("%w: %s-%d: the merged segments have no replica in common", ErrPreconditionFailed, c.Topic, c.Partition)
	}
	merged := Segment{ID: run[0].ID, BaseOffset: run[0].BaseOffset, EndOffset: last.EndOffset, Epoch: last.Epoch, Leader: last.Leader,
		Replicas: replicas, State: SegmentSealed, Checksum: c.Checksum, Bytes: c.Bytes, Generation: gen, SealedAtMs: last.SealedAtMs, Epochs: epochs,
		// What was open at the last one's end bounds read_committed of
		// the whole run: a transaction with records below it closed
		// below the merged end (docs/transactions.md).
		FirstUnstable: last.FirstUnstable}
	p.Segments = slices.Replace(p.Segments, i, i+len(c.Inputs), merged)
	return nil
}

func (c MergeSegments) validate() error {
	if err := topicRef(c.Topic, c.ID); err != nil {
		return err
	}
	if c.Partition < 0 || c.Partition >= MaxPartitions || len(c.Inputs) < 2 || len(c.Inputs) > 1<<16 || c.Bytes < 0 {
		return fmt.Errorf("partition %d: merge of %d segments, %d bytes", c.Partition, len(c.Inputs), c.Bytes)
	}
	for j, in := range c.Inputs {
		if in.ID < 0 || in.Bytes < 0 || slices.ContainsFunc(c.Inputs[:j], func(o MergedInput) bool { return o.ID == in.ID }) {
			return fmt.Errorf("merge input %d (segment %d)", j, in.ID)
		}
	}
	return nil
}
