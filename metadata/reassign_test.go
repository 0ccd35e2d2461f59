package metadata

import (
	"errors"
	"slices"
	"testing"
)

// TestReassignPartition: a reassignment of "a"/0 from [1,2] to [2,4]
// records the target; the roll that takes node 4 in keeps the target;
// the roll whose next replicas are the target clears it and drops node 1
// from every sealed segment (keeping a segment's only replica); a cancel
// without a reassignment is refused; a target of the wrong size or naming
// an unknown broker is refused and changes nothing.
func TestReassignPartition(t *testing.T) {
	f := baseFSM(t)
	mustApply(t, f, RegisterBroker{Broker: broker(4)})
	tp, _ := f.Topic("a")
	ref := func(target []int32) ReassignPartition {
		return ReassignPartition{Topic: "a", ID: tp.ID, Partition: 0, Target: target}
	}
	before := snap(t, f)
	for _, bad := range []ReassignPartition{ref([]int32{2}), ref([]int32{2, 9}), {Topic: "a", ID: tp.ID, Partition: 7, Target: []int32{2, 4}}} {
		if err := f.Apply(bad); err == nil {
			t.Fatalf("apply %+v: no error", bad)
		}
	}
	if err := f.Apply(ref(nil)); !errors.Is(err, ErrNoReassignment) {
		t.Fatalf("cancel without a reassignment: %v", err)
	}
	if !slices.Equal(before, snap(t, f)) {
		t.Fatal("refused reassignments changed the state")
	}
	// A sealed segment held by node 1 only (a laggard was dropped) keeps it.
	seg := tp.Parts[0].Active()
	mustApply(t, f, RollSegment{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: 5,
		NextLeader: 1, NextReplicas: []int32{1, 2}, SealedReplicas: []int32{1}})
	mustApply(t, f, ref([]int32{2, 4}))
	if got := f.Reassignments(); len(got) != 1 || !slices.Equal(got[0].Target, []int32{2, 4}) || got[0].Partition != 0 {
		t.Fatalf("Reassignments = %+v", got)
	}
	tp, _ = f.Topic("a")
	seg = tp.Parts[0].Active()
	mustApply(t, f, AssignLearners{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Learners: []int32{4}})
	mustApply(t, f, RollSegment{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: 10,
		NextLeader: 1, NextReplicas: []int32{1, 2, 4}, Joined: []int32{4}, JoinedFrom: 0})
	tp, _ = f.Topic("a")
	if !slices.Equal(tp.Parts[0].Target, []int32{2, 4}) {
		t.Fatalf("target after the joining roll = %v", tp.Parts[0].Target)
	}
	seg = tp.Parts[0].Active()
	mustApply(t, f, RollSegment{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: 15,
		NextLeader: 2, NextReplicas: []int32{2, 4}, DropSealed: []int32{1}})
	tp, _ = f.Topic("a")
	p := tp.Parts[0]
	if p.Target != nil || len(f.Reassignments()) != 0 {
		t.Fatalf("target after the final roll = %v", p.Target)
	}
	var got [][]int32
	for _, s := range p.Segments {
		got = append(got, s.Replicas)
	}
	want := [][]int32{{1, 4}, {2, 4}, {2, 4}, {2, 4}}
	// Segment 0 was held by node 1 only, then node 4 joined it: node 1 goes.
	want[0] = []int32{4}
	if len(got) != len(want) {
		t.Fatalf("segments %v", got)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("segment %d replicas = %v, want %v (all %v)", i, got[i], want[i], got)
		}
	}
}

// TestElectLeader: an election of a replica records it; a roll to another
// leader keeps it while the node stays a replica; the roll that hands on
// to it clears it; electing a non-replica is refused; electing the
// current leader clears any election.
func TestElectLeader(t *testing.T) {
	f := baseFSM(t)
	tp, _ := f.Topic("a")
	seg := tp.Parts[0].Active() // replicas [1 2], leader 1
	if err := f.Apply(ElectLeader{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Leader: 3}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("electing a non-replica: %v", err)
	}
	mustApply(t, f, ElectLeader{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Leader: 2})
	tp, _ = f.Topic("a")
	if e := tp.Parts[0].Elect; e == nil || *e != 2 {
		t.Fatalf("Elect = %v", e)
	}
	mustApply(t, f, RollSegment{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: 3, NextLeader: 1, NextReplicas: []int32{1, 2}})
	tp, _ = f.Topic("a")
	if e := tp.Parts[0].Elect; e == nil || *e != 2 {
		t.Fatalf("Elect after a roll to node 1 = %v", e)
	}
	seg = tp.Parts[0].Active()
	mustApply(t, f, RollSegment{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: 6, NextLeader: 2, NextReplicas: []int32{1, 2}})
	tp, _ = f.Topic("a")
	if e := tp.Parts[0].Elect; e != nil || tp.Parts[0].Active().Leader != 2 {
		t.Fatalf("Elect after the roll to node 2 = %v, leader %d", e, tp.Parts[0].Active().Leader)
	}
	seg = tp.Parts[0].Active()
	mustApply(t, f, ElectLeader{Topic: "a", ID: tp.ID, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, Leader: 2})
	if tp, _ = f.Topic("a"); tp.Parts[0].Elect != nil {
		t.Fatal("electing the leader recorded an election")
	}
}

// TestPartitionCopy: FSM.Partition returns the topic without its
// partitions, with its replication factor, and a copy of one partition
// that later commands do not change; unknown topics and partitions are
// not found.
func TestPartitionCopy(t *testing.T) {
	f := baseFSM(t)
	top, part, ok := f.Partition("a", 1)
	if !ok || top.Parts != nil || top.RF != 2 || top.Partitions != 3 || top.Configs["retention.ms"] != "10" {
		t.Fatalf("Partition = %+v, %v", top, ok)
	}
	if a := part.Active(); !slices.Equal(a.Replicas, []int32{2, 3}) || a.Leader != 2 {
		t.Fatalf("partition 1's active segment %+v", a)
	}
	mustApply(t, f, RollSegment{Topic: "a", ID: top.ID, Partition: 1, ExpectedSegment: part.Active().ID, ExpectedEpoch: part.Active().Epoch,
		EndOffset: 4, NextLeader: 3, NextReplicas: []int32{2, 3}})
	if len(part.Segments) != 1 || part.Segments[0].State != SegmentActive {
		t.Fatalf("the copy changed with the roll: %+v", part.Segments)
	}
	if _, part2, _ := f.Partition("a", 1); len(part2.Segments) != 2 {
		t.Fatalf("after the roll: %d segments", len(part2.Segments))
	}
	for _, p := range []int32{-1, 3} {
		if _, _, ok := f.Partition("a", p); ok {
			t.Fatalf("partition %d found", p)
		}
	}
	if _, _, ok := f.Partition("nope", 0); ok {
		t.Fatal("unknown topic found")
	}
}
