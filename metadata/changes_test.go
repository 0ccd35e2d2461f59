package metadata

import (
	"errors"
	"slices"
	"testing"
)

// refs is a list of PartitionRefs of topic/id, partitions ps.
func refs(topic string, tid TopicID, ps ...int32) []PartitionRef {
	var out []PartitionRef
	for _, p := range ps {
		out = append(out, PartitionRef{Topic: topic, ID: tid, Partition: p})
	}
	return out
}

// wantChanges checks f.Changes(since) against an exact report.
func wantChanges(t *testing.T, f *FSM, since uint64, all bool, want []PartitionRef) Changes {
	t.Helper()
	c := f.Changes(since)
	if c.Since != since || c.Through != f.AppliedIndex() || c.All != all || !slices.Equal(c.Partitions, want) {
		t.Fatalf("Changes(%d) = %+v, want through %d, all %v, partitions %v", since, c, f.AppliedIndex(), all, want)
	}
	return c
}

// TestChangesPerCommand: every command type reports exactly the
// partitions it changed; a failed command reports nothing.
func TestChangesPerCommand(t *testing.T) {
	f := NewFSM()
	apply := func(c Command) uint64 {
		t.Helper()
		if err := f.Apply(c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		return f.AppliedIndex()
	}
	at := apply(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}})
	apply(RegisterBroker{Broker: Broker{ID: 2, Kafka: "h:2"}})
	wantChanges(t, f, at-1, true, nil) // broker registration: all
	wantChanges(t, f, 0, true, nil)    // nothing seen yet: all

	at = apply(CreateTopic{Name: "a", ID: id(1), Partitions: 3, Assignments: [][]int32{{1, 2}, {2, 1}, {1, 2}}})
	wantChanges(t, f, at-1, false, refs("a", id(1), 0, 1, 2))
	wantChanges(t, f, at, false, nil) // nothing after the last entry

	at = apply(CreateTopic{Name: "b", ID: id(2), Partitions: 1, Assignments: [][]int32{{2, 1}}})
	wantChanges(t, f, at-1, false, refs("b", id(2), 0))

	at = apply(CreatePartitions{Name: "a", ID: id(1), Expected: 3, Count: 5, Assignments: [][]int32{{1, 2}, {2, 1}}})
	wantChanges(t, f, at-1, false, refs("a", id(1), 3, 4))

	at = apply(SetTopicConfigs{Name: "b", ID: id(2), Configs: map[string]string{"retention.ms": "5"}})
	wantChanges(t, f, at-1, false, refs("b", id(2), 0))

	seg := func(name string, p int32) Segment { tp, _ := f.Topic(name); return tp.Parts[p].Active() }
	s := seg("a", 1)
	at = apply(FenceSegment{Topic: "a", ID: id(1), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch})
	wantChanges(t, f, at-1, false, refs("a", id(1), 1))
	at = apply(RollSegment{Topic: "a", ID: id(1), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 0, NextLeader: 1, NextReplicas: []int32{1}})
	wantChanges(t, f, at-1, false, refs("a", id(1), 1))
	s = seg("a", 1)
	at = apply(AssignLearners{Topic: "a", ID: id(1), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, Learners: []int32{2}})
	wantChanges(t, f, at-1, false, refs("a", id(1), 1))
	s = seg("a", 2)
	at = apply(RollSegment{Topic: "a", ID: id(1), Partition: 2, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 0, NextLeader: 2, NextReplicas: []int32{2, 1}})
	wantChanges(t, f, at-1, false, refs("a", id(1), 2))

	// Entries with nothing to report.
	at = apply(AllocateProducerIDs{Expected: 0, Count: 10})
	apply(InitCluster{ClusterID: "c"})
	wantChanges(t, f, at-1, false, nil)
	before := f.AppliedIndex()
	if err := f.Apply(DeleteTopic{Name: "a", ID: id(9)}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("delete with a stale id: %v", err)
	}
	wantChanges(t, f, before, false, nil) // a failed command changed nothing

	at = apply(DeleteTopic{Name: "a", ID: id(1)})
	wantChanges(t, f, at-1, false, refs("a", id(1), 0, 1, 2, 3, 4))

	// Over several entries: each partition once, in the order of its
	// first change; a recreated topic is another incarnation (ID).
	apply(CreateTopic{Name: "a", ID: id(3), Partitions: 1, Assignments: [][]int32{{1}}})
	apply(SetTopicConfigs{Name: "b", ID: id(2), Expected: map[string]string{"retention.ms": "5"}, Configs: nil})
	want := append(refs("a", id(1), 0, 1, 2, 3, 4), append(refs("a", id(3), 0), refs("b", id(2), 0)...)...)
	wantChanges(t, f, at-1, false, want)

	at = apply(SetClusterConfigs{Configs: map[string]string{"log.retention.ms": "1"}})
	wantChanges(t, f, at-1, true, nil)
	at = apply(SetBrokerState{ID: 2, From: BrokerAlive, To: BrokerFenced})
	wantChanges(t, f, at-1, true, nil)
	// An "all" entry anywhere in the range makes the whole report all.
	wantChanges(t, f, at-3, true, nil)
}

// TestChangesAfterRestore: a snapshot restore reports All to every reader
// that saw an earlier index, and exact changes after it.
func TestChangesAfterRestore(t *testing.T) {
	f := NewFSM()
	for _, c := range []Command{
		RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}},
		CreateTopic{Name: "a", ID: id(1), Partitions: 2, Assignments: [][]int32{{1}, {1}}},
	} {
		if err := f.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.ApplyAt(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}}, 1); err != nil {
		t.Fatal(err)
	}
	if err := g.RestoreAt(snap, 7); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 7 {
		t.Fatalf("applied %d after RestoreAt(7)", g.AppliedIndex())
	}
	wantChanges(t, g, 1, true, nil)
	wantChanges(t, g, 6, true, nil)
	wantChanges(t, g, 7, false, nil)
	if err := g.ApplyAt(CreateTopic{Name: "b", ID: id(2), Partitions: 1, Assignments: [][]int32{{1}}}, 8); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, g, 7, false, refs("b", id(2), 0))
	wantChanges(t, g, 5, true, nil)
	// The indexes are rebuilt from the snapshot.
	if tp, ok := g.TopicByID(id(1)); !ok || tp.Name != "a" {
		t.Fatalf("TopicByID after restore: %+v %v", tp, ok)
	}
	if got := g.CollidingTopic("a"); got != "" {
		t.Fatalf("CollidingTopic(a) = %q", got)
	}
	if err := g.Apply(CreateTopic{Name: "a", ID: id(1), Partitions: 1, Assignments: [][]int32{{1}}}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("recreate a after restore: %v", err)
	}
	if err := g.Apply(CreateTopic{Name: "c", ID: id(1), Partitions: 1, Assignments: [][]int32{{1}}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("reuse of a's id after restore: %v", err)
	}

	// Restore without an index counts as the next entry.
	h := NewFSM()
	if err := h.Restore(snap); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, h, 0, true, nil)
	wantChanges(t, h, 1, false, nil)
}

// TestChangesTrimmed: a reader further behind than the record reaches
// gets All.
func TestChangesTrimmed(t *testing.T) {
	f := NewFSM()
	f.maxLog = 3
	if err := f.Apply(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := f.Apply(CreateTopic{Name: string(rune('a' + i)), ID: id(byte(i + 1)), Partitions: 1, Assignments: [][]int32{{1}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Entries 1..6; the record keeps 4, 5, 6 (topics c, d, e).
	wantChanges(t, f, 3, false, append(refs("c", id(3), 0), append(refs("d", id(4), 0), refs("e", id(5), 0)...)...))
	wantChanges(t, f, 2, true, nil)
	f.maxRefs = 2
	if err := f.Apply(CreateTopic{Name: "f", ID: id(6), Partitions: 2, Assignments: [][]int32{{1}, {1}}}); err != nil {
		t.Fatal(err)
	}
	// Entry 7 alone holds 2 references: everything before is dropped.
	wantChanges(t, f, 6, false, refs("f", id(6), 0, 1))
	wantChanges(t, f, 5, true, nil)
}

// TestTopicIndexes: TopicByID, TopicNameByID and CollidingTopic follow
// creates and deletes.
func TestTopicIndexes(t *testing.T) {
	f := NewFSM()
	if err := f.Apply(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(CreateTopic{Name: "a.b", ID: id(1), Partitions: 1, Assignments: [][]int32{{1}}}); err != nil {
		t.Fatal(err)
	}
	if n, ok := f.TopicNameByID(id(1)); !ok || n != "a.b" {
		t.Fatalf("TopicNameByID = %q %v", n, ok)
	}
	if got := f.CollidingTopic("a_b"); got != "a.b" {
		t.Fatalf("CollidingTopic(a_b) = %q", got)
	}
	if err := f.Apply(CreateTopic{Name: "a_b", ID: id(2), Partitions: 1, Assignments: [][]int32{{1}}}); !errors.Is(err, ErrTopicCollision) {
		t.Fatalf("colliding create: %v", err)
	}
	if err := f.Apply(DeleteTopic{Name: "a.b", ID: id(1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.TopicByID(id(1)); ok {
		t.Fatal("TopicByID finds a deleted topic")
	}
	if got := f.CollidingTopic("a_b"); got != "" {
		t.Fatalf("CollidingTopic(a_b) after delete = %q", got)
	}
	if err := f.Apply(CreateTopic{Name: "a_b", ID: id(1), Partitions: 1, Assignments: [][]int32{{1}}}); err != nil {
		t.Fatalf("create a_b reusing the deleted topic's id: %v", err)
	}
	if tp, ok := f.TopicByID(id(1)); !ok || tp.Name != "a_b" {
		t.Fatalf("TopicByID = %+v %v", tp, ok)
	}
}

// TestActiveLeaderAndHasTopic: the no-copy accessors of the Fetch path
// agree with Topic.Leader, fenced segments included.
func TestActiveLeaderAndHasTopic(t *testing.T) {
	f := NewFSM()
	for _, c := range []Command{
		RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}},
		RegisterBroker{Broker: Broker{ID: 2, Kafka: "h:2"}},
		CreateTopic{Name: "a", ID: id(1), Partitions: 2, Assignments: [][]int32{{1, 2}, {2, 1}}},
	} {
		if err := f.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	tp, _ := f.Topic("a")
	s := tp.Parts[1].Active()
	if err := f.Apply(FenceSegment{Topic: "a", ID: id(1), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		p             int32
		leader, epoch int32
	}{{"a", 0, 1, 0}, {"a", 1, 2, 0}, {"a", 2, -1, -1}, {"a", -1, -1, -1}, {"b", 0, -1, -1}} {
		if l, e := f.ActiveLeader(c.name, c.p); l != c.leader || e != c.epoch {
			t.Fatalf("ActiveLeader(%s, %d) = %d, %d, want %d, %d", c.name, c.p, l, e, c.leader, c.epoch)
		}
	}
	if !f.HasTopic("a") || f.HasTopic("b") {
		t.Fatalf("HasTopic(a) = %v, HasTopic(b) = %v", f.HasTopic("a"), f.HasTopic("b"))
	}
}

// TestActiveSegmentsScan: the controller's scans see exactly the active
// segments they ask for, as copies, with the topic's replication factor.
func TestActiveSegmentsScan(t *testing.T) {
	f := NewFSM()
	for _, c := range []Command{
		RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}},
		RegisterBroker{Broker: Broker{ID: 2, Kafka: "h:2"}},
		CreateTopic{Name: "a", ID: id(1), Partitions: 2, Assignments: [][]int32{{1, 2}, {2, 1}}},
		CreateTopic{Name: "b", ID: id(2), Partitions: 1, Assignments: [][]int32{{1}}},
	} {
		if err := f.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	got := f.ActiveSegments(func(rf int, seg *Segment) bool { return seg.Leader == 2 })
	if len(got) != 1 || got[0].Topic != "a" || got[0].ID != id(1) || got[0].Partition != 1 || got[0].RF != 2 ||
		!slices.Equal(got[0].Segment.Replicas, []int32{2, 1}) {
		t.Fatalf("segments led by 2: %+v", got)
	}
	got[0].Segment.Replicas[0] = 9 // a copy
	if tp, _ := f.Topic("a"); tp.Parts[1].Active().Replicas[0] != 2 {
		t.Fatal("ActiveSegments returned the FSM's own replica slice")
	}
	if n := len(f.ActiveSegments(func(rf int, _ *Segment) bool { return rf == 1 })); n != 1 {
		t.Fatalf("%d segments of topics with one replica, want 1", n)
	}
	if c := f.ActiveReplicaCounts(); c[1] != 3 || c[2] != 2 || len(c) != 2 {
		t.Fatalf("ActiveReplicaCounts = %v", c)
	}
}
