package metadata

import (
	"errors"
	"maps"
	"testing"
)

// countLoads is Loads counted from scratch over every partition.
func countLoads(f *FSM) map[int32]int {
	out := map[int32]int{}
	for _, t := range f.Topics() {
		for _, p := range t.Parts {
			out[p.Active().Leader]++
		}
	}
	return out
}

// TestLoadsKeptCurrent: Loads, kept up to date from each entry's changes
// instead of counted per call, matches a count over every partition after
// every kind of command that moves leaderships: creation, new partitions,
// fences, rolls to another leader, deletion and re-creation under the
// same name, a failed command, broker changes and a snapshot restore.
func TestLoadsKeptCurrent(t *testing.T) {
	f := NewFSM()
	check := func(step string, want map[int32]int) {
		t.Helper()
		got := f.Loads()
		if !maps.Equal(got, countLoads(f)) || !maps.Equal(got, want) {
			t.Fatalf("%s: Loads() = %v, counted %v, want %v", step, got, countLoads(f), want)
		}
	}
	apply := func(c Command) {
		t.Helper()
		if err := f.Apply(c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	check("empty", map[int32]int{})
	apply(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}})
	apply(RegisterBroker{Broker: Broker{ID: 2, Kafka: "h:2"}})
	apply(RegisterBroker{Broker: Broker{ID: 3, Kafka: "h:3"}})
	apply(CreateTopic{Name: "a", ID: id(1), Partitions: 3, Assignments: [][]int32{{1, 2}, {2, 1}, {1, 2}}})
	check("topic a", map[int32]int{1: 2, 2: 1})
	apply(CreateTopic{Name: "b", ID: id(2), Partitions: 2, Assignments: [][]int32{{3, 1}, {3, 2}}})
	check("topic b", map[int32]int{1: 2, 2: 1, 3: 2})
	apply(CreatePartitions{Name: "a", ID: id(1), Expected: 3, Count: 5, Assignments: [][]int32{{2, 1}, {3, 1}}})
	check("two more partitions of a", map[int32]int{1: 2, 2: 2, 3: 3})

	seg := func(name string, p int32) Segment { tp, _ := f.Topic(name); return tp.Parts[p].Active() }
	s := seg("a", 0)
	apply(FenceSegment{Topic: "a", ID: id(1), Partition: 0, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch})
	check("a-0 fenced (its leader still counts)", map[int32]int{1: 2, 2: 2, 3: 3})
	apply(RollSegment{Topic: "a", ID: id(1), Partition: 0, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 0, NextLeader: 2, NextReplicas: []int32{2, 1}})
	check("a-0 rolled to node 2", map[int32]int{1: 1, 2: 3, 3: 3})
	s = seg("b", 1)
	apply(RollSegment{Topic: "b", ID: id(2), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 0, NextLeader: 2, NextReplicas: []int32{2, 3}})
	check("b-1 rolled to node 2", map[int32]int{1: 1, 2: 4, 3: 2})

	if err := f.Apply(RollSegment{Topic: "b", ID: id(2), Partition: 1, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 0, NextLeader: 1, NextReplicas: []int32{1, 3}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("a roll of a sealed segment: %v", err)
	}
	check("failed roll", map[int32]int{1: 1, 2: 4, 3: 2})

	apply(SetBrokerState{ID: 3, From: BrokerAlive, To: BrokerFenced})
	check("broker 3 fenced (still leads until failover)", map[int32]int{1: 1, 2: 4, 3: 2})
	// A failover in bulk: fence and seal node 3's segments (a-4, b-0),
	// handing them to node 1.
	sa, sb := seg("a", 4), seg("b", 0)
	apply(FenceSegments{Entries: []FenceSegment{
		{Topic: "a", ID: id(1), Partition: 4, ExpectedSegment: sa.ID, ExpectedEpoch: sa.Epoch},
		{Topic: "b", ID: id(2), Partition: 0, ExpectedSegment: sb.ID, ExpectedEpoch: sb.Epoch},
	}})
	check("node 3's segments fenced", map[int32]int{1: 1, 2: 4, 3: 2})
	apply(SealSegments{Entries: []RollSegment{
		{Topic: "a", ID: id(1), Partition: 4, ExpectedSegment: sa.ID, ExpectedEpoch: sa.Epoch, EndOffset: 0, NextLeader: 1, NextReplicas: []int32{1}},
		{Topic: "b", ID: id(2), Partition: 0, ExpectedSegment: sb.ID, ExpectedEpoch: sb.Epoch, EndOffset: 0, NextLeader: 1, NextReplicas: []int32{1}},
	}})
	check("node 3's segments sealed to node 1", map[int32]int{1: 3, 2: 4})
	apply(DeleteTopic{Name: "b", ID: id(2)})
	check("b deleted", map[int32]int{1: 2, 2: 3})
	apply(CreateTopic{Name: "b", ID: id(3), Partitions: 1, Assignments: [][]int32{{1}}})
	check("b again", map[int32]int{1: 3, 2: 3})
	apply(DeleteTopic{Name: "a", ID: id(1)})
	check("a deleted", map[int32]int{1: 1})

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	apply(CreateTopic{Name: "c", ID: id(4), Partitions: 1, Assignments: [][]int32{{2}}})
	check("c", map[int32]int{1: 1, 2: 1})
	if err := f.Restore(snap); err != nil {
		t.Fatal(err)
	}
	check("restored before c", map[int32]int{1: 1})
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := g.Loads(); !maps.Equal(got, map[int32]int{1: 1}) {
		t.Fatalf("a fresh FSM restored: Loads() = %v", got)
	}
}
