package metadata

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// batchFSM is baseFSM (brokers 1..3, topic "a" over [1,2],[2,3],[3,1])
// with a second topic "b" of two partitions led by broker 2.
func batchFSM(t *testing.T) *FSM {
	t.Helper()
	f := baseFSM(t)
	mustApply(t, f, CreateTopic{Name: "b", ID: topicID(2), Partitions: 2, Assignments: [][]int32{{2, 1, 3}, {2, 3, 1}}})
	return f
}

func activeSeg(t *testing.T, f *FSM, topic string, p int32) Segment {
	t.Helper()
	tp, ok := f.Topic(topic)
	if !ok {
		t.Fatalf("no topic %s", topic)
	}
	return tp.Parts[p].Active()
}

func fenceOf(t *testing.T, f *FSM, topic string, tid TopicID, p int32) FenceSegment {
	s := activeSeg(t, f, topic, p)
	return FenceSegment{Topic: topic, ID: tid, Partition: p, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch}
}

// wantBatch checks that err is a *BatchError whose failed entries are
// exactly failed, each failing with ErrPreconditionFailed.
func wantBatch(t *testing.T, err error, n int, failed ...int) {
	t.Helper()
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("error %v, want a *BatchError", err)
	}
	if len(be.Errs) != n || be.Failed() != len(failed) {
		t.Fatalf("batch outcome %v: %d entries, %d failed; want %d, %v", be.Errs, len(be.Errs), be.Failed(), n, failed)
	}
	for i, e := range be.Errs {
		if slices.Contains(failed, i) != (e != nil) || (e != nil && !errors.Is(e, ErrPreconditionFailed)) {
			t.Fatalf("entry %d: %v (want failed: %v)", i, e, slices.Contains(failed, i))
		}
	}
}

// TestFenceSegmentsPerEntry: each entry of a FenceSegments is its own
// compare-and-set. A stale entry (wrong epoch, wrong segment, a segment
// an earlier entry of the same batch fenced) fails alone; the others are
// fenced, and Changes reports exactly their partitions.
func TestFenceSegmentsPerEntry(t *testing.T) {
	f := batchFSM(t)
	a0, a1, a2, b1 := fenceOf(t, f, "a", topicID(1), 0), fenceOf(t, f, "a", topicID(1), 1), fenceOf(t, f, "a", topicID(1), 2), fenceOf(t, f, "b", topicID(2), 1)
	staleEpoch := a1
	staleEpoch.ExpectedEpoch++
	staleSeg := b1
	staleSeg.ExpectedSegment += 100
	before := f.AppliedIndex()
	beforeNext := f.st.NextSegmentID
	err := f.Apply(FenceSegments{Entries: []FenceSegment{a0, staleEpoch, a2, a0, staleSeg, b1}})
	wantBatch(t, err, 6, 1, 3, 4)
	for _, c := range []struct {
		topic string
		p     int32
		want  SegmentState
	}{{"a", 0, SegmentFenced}, {"a", 1, SegmentActive}, {"a", 2, SegmentFenced}, {"b", 0, SegmentActive}, {"b", 1, SegmentFenced}} {
		if s := activeSeg(t, f, c.topic, c.p); s.State != c.want {
			t.Fatalf("%s-%d is %s, want %s", c.topic, c.p, s.State, c.want)
		}
	}
	if f.st.NextSegmentID != beforeNext {
		t.Fatalf("a fence moved the next segment id from %d to %d", beforeNext, f.st.NextSegmentID)
	}
	wantChanges(t, f, before, false, append(refs("a", topicID(1), 0, 2), refs("b", topicID(2), 1)...))

	// All entries applied: no error.
	before = f.AppliedIndex()
	if err := f.Apply(FenceSegments{Entries: []FenceSegment{a1}}); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, f, before, false, refs("a", topicID(1), 1))
}

// TestFenceSegmentsAllFail: a batch none of whose entries applies changes
// nothing (the state is byte for byte the same) and reports no partition.
func TestFenceSegmentsAllFail(t *testing.T) {
	f := batchFSM(t)
	a0 := fenceOf(t, f, "a", topicID(1), 0)
	a0.ExpectedEpoch++
	gone := fenceOf(t, f, "b", topicID(2), 0)
	gone.ID = topicID(9) // an earlier incarnation of b
	before, was := f.AppliedIndex(), snap(t, f)
	err := f.Apply(FenceSegments{Entries: []FenceSegment{a0, gone}})
	var be *BatchError
	if !errors.As(err, &be) || be.Failed() != 2 || !errors.Is(be.Errs[0], ErrPreconditionFailed) || !errors.Is(be.Errs[1], ErrUnknownTopic) {
		t.Fatalf("error %v, want both entries failed", err)
	}
	if now := snap(t, f); !bytes.Equal(now, was) {
		t.Fatalf("a batch that applied nothing changed the state:\n%s\n%s", was, now)
	}
	wantChanges(t, f, before, false, nil)
}

// TestSealSegmentsPerEntry: each entry of a SealSegments applies exactly
// as a lone RollSegment (sealed at its end offset with the proposer's seal
// time and no checksum, the next segment on NextLeader with the next
// epoch and a new segment id); a stale entry fails alone and takes no
// segment id.
func TestSealSegmentsPerEntry(t *testing.T) {
	f := batchFSM(t)
	mustApply(t, f, FenceSegments{Entries: []FenceSegment{fenceOf(t, f, "b", topicID(2), 0), fenceOf(t, f, "b", topicID(2), 1)}})
	b0, b1, a1 := activeSeg(t, f, "b", 0), activeSeg(t, f, "b", 1), activeSeg(t, f, "a", 1)
	seal := func(topic string, tid TopicID, p int32, s Segment, end int64, leader int32, replicas ...int32) RollSegment {
		return RollSegment{Topic: topic, ID: tid, Partition: p, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch,
			EndOffset: end, NextLeader: leader, NextReplicas: replicas, SealedAtMs: 1700000000000 + end}
	}
	stale := seal("b", topicID(2), 1, b1, 7, 3, 3, 1)
	stale.ExpectedEpoch++
	badLeader := seal("a", topicID(1), 1, a1, 3, 1, 1) // broker 1 holds no replica of a-1's segment
	before := f.AppliedIndex()
	next := f.st.NextSegmentID
	err := f.Apply(SealSegments{Entries: []RollSegment{
		seal("b", topicID(2), 0, b0, 40, 3, 1, 3), // fenced: sealed
		stale,
		seal("b", topicID(2), 1, b1, 7, 3, 3, 1), // fenced: sealed
		badLeader,
		seal("a", topicID(1), 1, a1, 0, 3, 3, 2), // active: a seal is also allowed (RollSegment accepts it)
	}})
	var be *BatchError
	if !errors.As(err, &be) || be.Failed() != 2 || !errors.Is(be.Errs[1], ErrPreconditionFailed) || !errors.Is(be.Errs[3], ErrInvalidCommand) {
		t.Fatalf("error %v, want entries 1 (stale) and 3 (bad leader) failed", err)
	}
	for i, c := range []struct {
		topic        string
		p            int32
		was          Segment
		end          int64
		leader       int32
		nextReplicas []int32
	}{{"b", 0, b0, 40, 3, []int32{3, 1}}, {"b", 1, b1, 7, 3, []int32{3, 1}}, {"a", 1, a1, 0, 3, []int32{3, 2}}} {
		tp, _ := f.Topic(c.topic)
		segs := tp.Parts[c.p].Segments
		if len(segs) != 2 {
			t.Fatalf("%s-%d: %d segments", c.topic, c.p, len(segs))
		}
		s, n := segs[0], segs[1]
		if s.ID != c.was.ID || s.State != SegmentSealed || s.EndOffset != c.end || s.SealedAtMs != 1700000000000+c.end || s.Checksum != 0 || s.Bytes != 0 ||
			!slices.Equal(s.Replicas, c.was.Replicas) {
			t.Fatalf("%s-%d sealed segment %+v", c.topic, c.p, s)
		}
		if n.ID != next+int64(i) || n.BaseOffset != c.end || n.EndOffset != -1 || n.Epoch != c.was.Epoch+1 || n.Leader != c.leader ||
			n.State != SegmentActive || !slices.Equal(n.Replicas, c.nextReplicas) {
			t.Fatalf("%s-%d next segment %+v, want id %d at %d epoch %d on %d %v", c.topic, c.p, n, next+int64(i), c.end, c.was.Epoch+1, c.leader, c.nextReplicas)
		}
	}
	if f.st.NextSegmentID != next+3 {
		t.Fatalf("next segment id %d, want %d (three seals)", f.st.NextSegmentID, next+3)
	}
	wantChanges(t, f, before, false, append(refs("b", topicID(2), 0, 1), refs("a", topicID(1), 1)...))

	// The same batch as lone RollSegments gives the same state.
	g := batchFSM(t)
	mustApply(t, g, FenceSegments{Entries: []FenceSegment{fenceOf(t, g, "b", topicID(2), 0), fenceOf(t, g, "b", topicID(2), 1)}})
	for _, r := range []RollSegment{seal("b", topicID(2), 0, b0, 40, 3, 1, 3), seal("b", topicID(2), 1, b1, 7, 3, 3, 1), seal("a", topicID(1), 1, a1, 0, 3, 3, 2)} {
		mustApply(t, g, r)
	}
	if !bytes.Equal(f.Dump(), g.Dump()) {
		t.Fatalf("batched seals differ from lone rolls:\n%s\n%s", f.Dump(), g.Dump())
	}
}

// TestBatchesSnapshotAndReplay: the batched commands survive encoding (a
// follower applying the decoded entries reaches the same state), and a
// snapshot taken after them restores that state.
func TestBatchesSnapshotAndReplay(t *testing.T) {
	leader, follower := batchFSM(t), batchFSM(t)
	b0, b1 := activeSeg(t, leader, "b", 0), activeSeg(t, leader, "b", 1)
	stale := fenceOf(t, leader, "a", topicID(1), 0)
	stale.ExpectedEpoch += 3
	cmds := []Command{
		FenceSegments{Entries: []FenceSegment{fenceOf(t, leader, "b", topicID(2), 0), stale, fenceOf(t, leader, "b", topicID(2), 1)}},
		SealSegments{Entries: []RollSegment{
			{Topic: "b", ID: topicID(2), Partition: 0, ExpectedSegment: b0.ID, ExpectedEpoch: b0.Epoch, EndOffset: 5, NextLeader: 1, NextReplicas: []int32{1, 3}, SealedAtMs: 11},
			{Topic: "b", ID: topicID(2), Partition: 1, ExpectedSegment: b1.ID, ExpectedEpoch: b1.Epoch, EndOffset: 6, NextLeader: 3, NextReplicas: []int32{3}, SealedAtMs: 12},
		}},
	}
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %T:\n got %#v\nwant %#v", c, got, c)
		}
		errL, errF := leader.Apply(c), follower.Apply(got)
		if (errL == nil) != (errF == nil) || (errL != nil && errL.Error() != errF.Error()) {
			t.Fatalf("%T: leader %v, follower %v", c, errL, errF)
		}
	}
	if !bytes.Equal(leader.Dump(), follower.Dump()) {
		t.Fatalf("replayed state differs:\n%s\n%s", leader.Dump(), follower.Dump())
	}
	r := NewFSM()
	if err := r.RestoreAt(snap(t, leader), leader.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Dump(), leader.Dump()) {
		t.Fatalf("restored state differs:\n%s\n%s", r.Dump(), leader.Dump())
	}
	for p, want := range []int64{5, 6} {
		s := activeSeg(t, r, "b", int32(p))
		if s.BaseOffset != want || s.State != SegmentActive {
			t.Fatalf("restored b-%d active segment %+v", p, s)
		}
	}
	if s := activeSeg(t, r, "a", 0); s.State != SegmentActive {
		t.Fatalf("a-0 (stale fence) is %s after restore", s.State)
	}
}

// TestBatchValidate: a batch is refused whole when it is empty, too long,
// or holds an invalid entry; a batched seal must name its next leader.
func TestBatchValidate(t *testing.T) {
	ok := FenceSegment{Topic: "a", ID: topicID(1), Partition: 0, ExpectedSegment: 1, ExpectedEpoch: 0}
	roll := RollSegment{Topic: "a", ID: topicID(1), ExpectedSegment: 1, EndOffset: 3, NextLeader: 2, NextReplicas: []int32{2}}
	noLeader := roll
	noLeader.NextLeader = -1
	badName := ok
	badName.Topic = "bad/name"
	for _, c := range []struct {
		cmd  Command
		want string
	}{
		{FenceSegments{}, "0 entries"},
		{FenceSegments{Entries: make([]FenceSegment, MaxBatchEntries+1)}, "entries not in"},
		{FenceSegments{Entries: []FenceSegment{ok, badName}}, "entry 1"},
		{SealSegments{}, "0 entries"},
		{SealSegments{Entries: []RollSegment{roll, noLeader}}, "entry 1: next leader -1"},
		{&SealSegments{Entries: []RollSegment{{}}}, "entry 0"},
	} {
		err := Validate(c.cmd)
		if !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Validate(%T) = %v, want ErrInvalidCommand with %q", c.cmd, err, c.want)
		}
	}
	if err := Validate(FenceSegments{Entries: []FenceSegment{ok}}); err != nil {
		t.Fatal(err)
	}
	if err := Validate(&SealSegments{Entries: []RollSegment{roll}}); err != nil {
		t.Fatal(err)
	}
	// The FSM refuses an invalid batch whole, as any invalid command.
	f := batchFSM(t)
	was := snap(t, f)
	if err := f.Apply(SealSegments{Entries: []RollSegment{roll, noLeader}}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("apply of an invalid batch: %v", err)
	}
	if !bytes.Equal(snap(t, f), was) {
		t.Fatal("an invalid batch changed the state")
	}
}

// TestBatchEntryErrors: the per-entry outcome of a batch as the
// controller reads it from the command's error.
func TestBatchEntryErrors(t *testing.T) {
	e1 := errors.New("one")
	lost := errors.New("leadership lost")
	for _, c := range []struct {
		err  error
		n    int
		want []error
	}{
		{nil, 2, []error{nil, nil}},
		{&BatchError{Errs: []error{nil, e1}}, 2, []error{nil, e1}},
		{lost, 3, []error{lost, lost, lost}},
		{&BatchError{Errs: []error{e1}}, 2, []error{&BatchError{Errs: []error{e1}}, &BatchError{Errs: []error{e1}}}}, // wrong length: all failed
	} {
		got := BatchEntryErrors(c.err, c.n)
		if len(got) != len(c.want) {
			t.Fatalf("BatchEntryErrors(%v, %d) = %v", c.err, c.n, got)
		}
		for i := range got {
			if (got[i] == nil) != (c.want[i] == nil) || (got[i] != nil && got[i].Error() != c.want[i].Error()) {
				t.Fatalf("BatchEntryErrors(%v, %d) = %v, want %v", c.err, c.n, got, c.want)
			}
		}
	}
}
