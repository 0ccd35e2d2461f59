package metadata

import (
	"errors"
	"slices"
	"testing"
)

// cleanFixture is an FSM with brokers 1-3 and topic "c" (one partition,
// replicas 1,2,3) rolled twice: segments [0,100) and [100,250) sealed
// with checksums, [250,-) active.
func cleanFixture(t *testing.T) (*FSM, []Segment) {
	t.Helper()
	f := NewFSM()
	must := func(c Command) {
		t.Helper()
		if err := f.Apply(c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	for _, b := range []int32{1, 2, 3} {
		must(RegisterBroker{Broker: Broker{ID: b, Kafka: "h:1"}})
	}
	must(CreateTopic{Name: "c", ID: id(7), Partitions: 1, Assignments: [][]int32{{1, 2, 3}}})
	for i, end := range []int64{100, 250} {
		a := activeOf(t, f)
		must(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: end,
			NextLeader: 1, NextReplicas: []int32{1, 2, 3}, Checksum: uint32(10 + i), Bytes: 1000 * int64(i+1), SealedAtMs: 5000 + int64(i)})
	}
	tp, _ := f.Topic("c")
	return f, tp.Parts[0].Segments
}

func activeOf(t *testing.T, f *FSM) Segment {
	t.Helper()
	tp, ok := f.Topic("c")
	if !ok {
		t.Fatal("no topic c")
	}
	return tp.Parts[0].Active()
}

func partOf(t *testing.T, f *FSM) Partition {
	t.Helper()
	tp, _ := f.Topic("c")
	return tp.Parts[0]
}

func cleanCmd(segs []Segment, gen int32, participants ...int32) CleanPartition {
	return CleanPartition{Topic: "c", ID: id(7), Partition: 0, Generation: gen, Start: 0, FirstDirty: 0, UpTo: 250, NowMs: 9000,
		Participants: participants,
		Segments: []CleanSegment{
			{ID: segs[0].ID, Base: 0, End: 100, SealedAtMs: segs[0].SealedAtMs},
			{ID: segs[1].ID, Base: 100, End: 250, SealedAtMs: segs[1].SealedAtMs},
		}}
}

func results(segs []Segment, crc uint32) []SegmentResult {
	return []SegmentResult{{ID: segs[0].ID, Checksum: crc, Bytes: 40}, {ID: segs[1].ID, Checksum: crc + 1, Bytes: 60}}
}

// TestCleaningCommitsOnMajority: two of three agreeing reports commit the
// generation (checksums, bytes and generation of both segments change,
// Cleaned records the command), and the third report then finds nothing
// in flight.
func TestCleaningCommitsOnMajority(t *testing.T) {
	f, segs := cleanFixture(t)
	if segs[0].SealedAtMs != 5000 || segs[1].SealedAtMs != 5001 {
		t.Fatalf("seal times %d %d, want 5000 5001", segs[0].SealedAtMs, segs[1].SealedAtMs)
	}
	cmd := cleanCmd(segs, 1, 1, 2, 3)
	if err := f.Apply(cmd); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(cleanCmd(segs, 2, 1, 2, 3)); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("second cleaning in flight: %v, want precondition failure", err)
	}
	rep := func(node int32, ok bool, crc uint32) error {
		r := CleanReport{Topic: "c", ID: id(7), Partition: 0, Generation: 1, Node: node, OK: ok}
		if ok {
			r.Results = results(segs, crc)
		}
		return f.Apply(r)
	}
	if err := rep(1, true, 77); err != nil {
		t.Fatal(err)
	}
	if err := rep(1, true, 77); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("duplicate report: %v", err)
	}
	if p := partOf(t, f); p.Clean == nil || p.Cleaned != nil || p.Segments[0].Generation != 0 {
		t.Fatalf("one report committed: %+v", p)
	}
	if err := rep(2, true, 77); err != nil {
		t.Fatal(err)
	}
	p := partOf(t, f)
	if p.Clean != nil || p.Cleaned == nil || p.Cleaned.Generation != 1 || p.Cleaned.UpTo != 250 || p.CommittedGeneration() != 1 {
		t.Fatalf("after majority: clean %+v cleaned %+v", p.Clean, p.Cleaned)
	}
	for i, want := range results(segs, 77) {
		s := p.Segments[i]
		if s.Generation != 1 || s.Checksum != want.Checksum || s.Bytes != want.Bytes {
			t.Fatalf("segment %d after commit: gen %d crc %d bytes %d, want 1 %d %d", i, s.Generation, s.Checksum, s.Bytes, want.Checksum, want.Bytes)
		}
	}
	if err := rep(3, true, 77); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("late report: %v", err)
	}
	// The snapshot carries the committed cleaning.
	b, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(b); err != nil {
		t.Fatal(err)
	}
	tp, _ := g.Topic("c")
	if q := tp.Parts[0]; q.Cleaned == nil || q.Cleaned.Generation != 1 || q.CleanGen != 1 || q.Segments[1].Checksum != 78 {
		t.Fatalf("restored: %+v", q)
	}
}

// TestCleaningAbandoned: disagreeing and failed reports that leave no
// possible majority abandon the generation and change no segment; the
// next proposal takes the next generation number; AbandonCleaning ends
// one in flight.
func TestCleaningAbandoned(t *testing.T) {
	f, segs := cleanFixture(t)
	if err := f.Apply(cleanCmd(segs, 1, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	for i, r := range []CleanReport{
		{Node: 1, OK: true, Results: results(segs, 5)},
		{Node: 2, OK: true, Results: results(segs, 6)},
		{Node: 3, OK: false, Reason: "input checksum mismatch"},
	} {
		r.Topic, r.ID, r.Generation = "c", id(7), 1
		if err := f.Apply(r); err != nil {
			t.Fatal(err)
		}
		p := partOf(t, f)
		if (i < 2) != (p.Clean != nil) {
			t.Fatalf("after report %d: clean in flight %v", i, p.Clean != nil)
		}
	}
	p := partOf(t, f)
	if p.Cleaned != nil || p.Segments[0].Checksum != 10 || p.Segments[0].Generation != 0 {
		t.Fatalf("abandoned cleaning changed the chain: %+v", p)
	}
	if err := f.Apply(cleanCmd(segs, 1, 1, 2)); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("reused generation: %v", err)
	}
	if err := f.Apply(cleanCmd(segs, 2, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(AbandonCleaning{Topic: "c", ID: id(7), Partition: 0, Generation: 1}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("abandon of another generation: %v", err)
	}
	if err := f.Apply(AbandonCleaning{Topic: "c", ID: id(7), Partition: 0, Generation: 2}); err != nil {
		t.Fatal(err)
	}
	if p := partOf(t, f); p.Clean != nil || p.CleanGen != 2 {
		t.Fatalf("after abandon: %+v", p)
	}
}

// TestCleanPartitionPreconditions: the command must name exactly the
// chain's sealed segments of its range, with checksums, and participants
// that are alive replicas of each.
func TestCleanPartitionPreconditions(t *testing.T) {
	f, segs := cleanFixture(t)
	bad := map[string]func(c *CleanPartition){
		"active segment": func(c *CleanPartition) {
			a := activeOf(t, f)
			c.Segments[1] = CleanSegment{ID: a.ID, Base: 100, End: 250}
		},
		"wrong seal time":    func(c *CleanPartition) { c.Segments[1].SealedAtMs++ },
		"not a replica":      func(c *CleanPartition) { c.Participants = []int32{1, 4} },
		"start in 2nd only":  func(c *CleanPartition) { c.Segments = c.Segments[1:]; c.Start = 50 },
		"start past 1st seg": func(c *CleanPartition) { c.Start = 120; c.FirstDirty = 120 },
		"end not up to":      func(c *CleanPartition) { c.UpTo = 200 },
		"gap in segments":    func(c *CleanPartition) { c.Segments[1].Base = 101 },
		"no participants":    func(c *CleanPartition) { c.Participants = nil },
	}
	for name, mutate := range bad {
		c := cleanCmd(segs, 1, 1, 2, 3)
		mutate(&c)
		if err := f.Apply(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if p := partOf(t, f); p.Clean != nil || p.CleanGen != 0 {
		t.Fatalf("a refused command changed the partition: %+v", p)
	}
	// A fenced participant is refused.
	if err := f.Apply(SetBrokerState{ID: 3, From: BrokerAlive, To: BrokerFenced}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(cleanCmd(segs, 1, 1, 2, 3)); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("fenced participant: %v", err)
	}
	if err := f.Apply(cleanCmd(segs, 1, 1, 2)); err != nil {
		t.Fatal(err)
	}
}

// TestSetSegmentChecksum: a failover seal (no checksum) gets one once;
// a segment with one is refused.
func TestSetSegmentChecksum(t *testing.T) {
	f, segs := cleanFixture(t)
	a := activeOf(t, f)
	if err := f.Apply(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 300,
		NextLeader: 2, NextReplicas: []int32{2, 3}}); err != nil {
		t.Fatal(err)
	}
	set := func(seg int64) error {
		return f.Apply(SetSegmentChecksum{Topic: "c", ID: id(7), Partition: 0, Segment: seg, Checksum: 99, Bytes: 500})
	}
	if err := set(segs[0].ID); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("segment with a checksum: %v", err)
	}
	if err := set(a.ID); err != nil {
		t.Fatal(err)
	}
	at := f.AppliedIndex()
	if err := set(a.ID); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("twice: %v", err)
	}
	p := partOf(t, f)
	if s := p.Segments[2]; s.Checksum != 99 || s.Bytes != 500 {
		t.Fatalf("segment %+v", s)
	}
	if !slices.Equal(f.Changes(at-1).Partitions, refs("c", id(7), 0)) {
		t.Fatalf("changes: %+v", f.Changes(at-1))
	}
}

// TestMergeSegmentsPreconditions: merging needs a committed cleaning
// covering the inputs, none in flight, and inputs whose checksum, bytes
// and generation are still the ones the proposer verified; the merged
// segment keeps the inputs' epochs and their common replicas.
func TestMergeSegmentsPreconditions(t *testing.T) {
	f, segs := cleanFixture(t)
	in := func(s Segment) MergedInput {
		return MergedInput{ID: s.ID, Checksum: s.Checksum, Bytes: s.Bytes, Generation: s.Generation}
	}
	merge := func(inputs ...MergedInput) error {
		return f.Apply(MergeSegments{Topic: "c", ID: id(7), Partition: 0, Inputs: inputs, Checksum: 5, Bytes: 90})
	}
	if err := merge(in(segs[0]), in(segs[1])); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("merge before any cleaning: %v", err)
	}
	if err := f.Apply(cleanCmd(segs, 1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := merge(in(segs[0]), in(segs[1])); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("merge while cleaning: %v", err)
	}
	for _, n := range []int32{1, 2} {
		if err := f.Apply(CleanReport{Topic: "c", ID: id(7), Partition: 0, Generation: 1, Node: n, OK: true, Results: results(segs, 40)}); err != nil {
			t.Fatal(err)
		}
	}
	p := partOf(t, f)
	if err := merge(in(segs[0]), in(segs[1])); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("merge with stale checksums: %v", err)
	}
	if err := merge(in(p.Segments[0]), in(p.Segments[1]), in(p.Segments[2])); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("merge of the active segment: %v", err)
	}
	if err := merge(in(p.Segments[0]), in(p.Segments[1])); err != nil {
		t.Fatal(err)
	}
	q := partOf(t, f)
	m := q.Segments[0]
	want := []EpochStart{{Epoch: segs[0].Epoch, Start: 0, SealedAtMs: 5000}, {Epoch: segs[1].Epoch, Start: 100, SealedAtMs: 5001}}
	if len(q.Segments) != 2 || m.ID != segs[0].ID || m.BaseOffset != 0 || m.EndOffset != 250 || m.Epoch != segs[1].Epoch ||
		!slices.Equal(m.Epochs, want) || m.Checksum != 5 || m.Bytes != 90 || m.Generation != 1 || m.SealedAtMs != segs[1].SealedAtMs ||
		!slices.Equal(m.Replicas, []int32{1, 2, 3}) || !m.HasEpoch(segs[0].Epoch) || !m.HasEpoch(segs[1].Epoch) {
		t.Fatalf("merged segment %+v", m)
	}
}

// TestMergeSegmentsEmptyInput: an empty sealed segment holds no data, so
// its replica list (a roll that takes a learner in does not add it to
// empty segments) does not narrow the merged segment's replicas: merging
// cleaned segments on nodes 1-3 with an empty one sealed on nodes 1 and 2
// keeps 1, 2 and 3.
func TestMergeSegmentsEmptyInput(t *testing.T) {
	f, segs := cleanFixture(t)
	if err := f.Apply(cleanCmd(segs, 1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int32{1, 2} {
		if err := f.Apply(CleanReport{Topic: "c", ID: id(7), Partition: 0, Generation: 1, Node: n, OK: true, Results: results(segs, 40)}); err != nil {
			t.Fatal(err)
		}
	}
	a := activeOf(t, f)
	if err := f.Apply(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 250,
		SealedReplicas: []int32{1, 2}, NextLeader: 1, NextReplicas: []int32{1, 2, 3}, SealedAtMs: 6000}); err != nil {
		t.Fatal(err)
	}
	p := partOf(t, f)
	if e := p.Segments[2]; e.BaseOffset != 250 || e.EndOffset != 250 || !slices.Equal(e.Replicas, []int32{1, 2}) {
		t.Fatalf("empty sealed segment %+v", e)
	}
	var inputs []MergedInput
	for _, s := range p.Segments[:3] {
		inputs = append(inputs, MergedInput{ID: s.ID, Checksum: s.Checksum, Bytes: s.Bytes, Generation: s.Generation})
	}
	if err := f.Apply(MergeSegments{Topic: "c", ID: id(7), Partition: 0, Inputs: inputs, Checksum: 5, Bytes: 80}); err != nil {
		t.Fatal(err)
	}
	m := partOf(t, f).Segments[0]
	if m.BaseOffset != 0 || m.EndOffset != 250 || !slices.Equal(m.Replicas, []int32{1, 2, 3}) {
		t.Fatalf("merged segment [%d, %d) replicas %v, want [0, 250) on [1 2 3]", m.BaseOffset, m.EndOffset, m.Replicas)
	}
}
