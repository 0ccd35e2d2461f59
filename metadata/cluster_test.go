package metadata

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// topicID returns a distinct, non-zero topic ID for any n.
func topicID(n int) TopicID {
	var t TopicID
	binary.BigEndian.PutUint64(t[:8], uint64(n)+1)
	t[15] = 0xAB
	return t
}

func snap(t *testing.T, f *FSM) []byte {
	t.Helper()
	b, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustApply(t *testing.T, f *FSM, c Command) {
	t.Helper()
	if err := f.Apply(c); err != nil {
		t.Fatalf("apply %T %+v: %v", c, c, err)
	}
}

func broker(id int32) Broker {
	return Broker{ID: id, Kafka: fmt.Sprintf("k%d:9092", id), Internal: fmt.Sprintf("i%d:9093", id), Raft: fmt.Sprintf("r%d:9094", id)}
}

// baseFSM has brokers 1..3, topic "a" (3 partitions over [1,2],[2,3],[3,1]),
// cluster configs, a cluster id and one producer-id block.
func baseFSM(t *testing.T) *FSM {
	t.Helper()
	f := NewFSM()
	mustApply(t, f, InitCluster{ClusterID: "cid"})
	for i := int32(1); i <= 3; i++ {
		mustApply(t, f, RegisterBroker{Broker: broker(i)})
	}
	mustApply(t, f, CreateTopic{Name: "a", ID: topicID(1), Partitions: 3, Configs: map[string]string{"retention.ms": "10"},
		Assignments: [][]int32{{1, 2}, {2, 3}, {3, 1}}})
	mustApply(t, f, SetClusterConfigs{Configs: map[string]string{"log.retention.ms": "1000"}})
	mustApply(t, f, AllocateProducerIDs{Expected: 0, Count: 100})
	return f
}

// TestFailedCommandsChangeNothing applies every precondition failure to the
// same state and checks both the error class and that the snapshot bytes are
// unchanged (applied index aside, which a failed entry still advances).
func TestFailedCommandsChangeNothing(t *testing.T) {
	cases := []struct {
		name string
		cmd  Command
		want error
	}{
		{"create: empty name", CreateTopic{ID: topicID(9), Partitions: 1, Assignments: [][]int32{{1}}}, ErrInvalidCommand},
		{"create: zero partitions", CreateTopic{Name: "b", ID: topicID(9), Partitions: 0}, ErrInvalidCommand},
		{"create: zero id", CreateTopic{Name: "b", Partitions: 1, Assignments: [][]int32{{1}}}, ErrInvalidCommand},
		{"create: exists", CreateTopic{Name: "a", ID: topicID(9), Partitions: 1, Assignments: [][]int32{{1}}}, ErrTopicExists},
		{"create: id reused", CreateTopic{Name: "b", ID: topicID(1), Partitions: 1, Assignments: [][]int32{{1}}}, ErrPreconditionFailed},
		{"create: no assignments", CreateTopic{Name: "b", ID: topicID(9), Partitions: 2}, ErrInvalidCommand},
		{"create: too few assignments", CreateTopic{Name: "b", ID: topicID(9), Partitions: 2, Assignments: [][]int32{{1}}}, ErrInvalidCommand},
		{"create: too many assignments", CreateTopic{Name: "b", ID: topicID(9), Partitions: 1, Assignments: [][]int32{{1}, {2}}}, ErrInvalidCommand},
		{"create: unknown broker", CreateTopic{Name: "b", ID: topicID(9), Partitions: 2, Assignments: [][]int32{{1}, {2, 7}}}, ErrPreconditionFailed},
		{"create: duplicate replica", CreateTopic{Name: "b", ID: topicID(9), Partitions: 2, Assignments: [][]int32{{1}, {2, 3, 2}}}, ErrInvalidCommand},
		{"create: empty replica set", CreateTopic{Name: "b", ID: topicID(9), Partitions: 2, Assignments: [][]int32{{1}, {}}}, ErrInvalidCommand},
		{"delete: unknown", DeleteTopic{Name: "zz", ID: topicID(1)}, ErrUnknownTopic},
		{"delete: wrong id", DeleteTopic{Name: "a", ID: topicID(2)}, ErrPreconditionFailed},
		{"partitions: unknown topic", CreatePartitions{Name: "zz", ID: topicID(1), Expected: 3, Count: 4, Assignments: [][]int32{{1}}}, ErrUnknownTopic},
		{"partitions: wrong id", CreatePartitions{Name: "a", ID: topicID(2), Expected: 3, Count: 4, Assignments: [][]int32{{1}}}, ErrPreconditionFailed},
		{"partitions: stale count", CreatePartitions{Name: "a", ID: topicID(1), Expected: 2, Count: 4, Assignments: [][]int32{{1}, {1}}}, ErrPreconditionFailed},
		{"partitions: not growing", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 3}, ErrInvalidCommand},
		{"partitions: shrinking", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 2}, ErrInvalidCommand},
		{"partitions: missing assignments", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 5, Assignments: [][]int32{{1}}}, ErrInvalidCommand},
		{"partitions: unknown broker", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 5, Assignments: [][]int32{{1}, {8}}}, ErrPreconditionFailed},
		{"partitions: duplicate replica", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 5, Assignments: [][]int32{{1}, {1, 1}}}, ErrInvalidCommand},
		{"partitions: empty replica set", CreatePartitions{Name: "a", ID: topicID(1), Expected: 3, Count: 4, Assignments: [][]int32{nil}}, ErrInvalidCommand},
		{"topic configs: unknown", SetTopicConfigs{Name: "zz", ID: topicID(1), Configs: map[string]string{"retention.ms": "5"}}, ErrUnknownTopic},
		{"topic configs: wrong id", SetTopicConfigs{Name: "a", ID: topicID(2), Expected: map[string]string{"retention.ms": "10"}, Configs: map[string]string{"retention.ms": "5"}}, ErrPreconditionFailed},
		{"topic configs: stale", SetTopicConfigs{Name: "a", ID: topicID(1), Expected: map[string]string{"retention.ms": "11"}, Configs: map[string]string{"retention.ms": "5"}}, ErrPreconditionFailed},
		{"topic configs: stale (nil)", SetTopicConfigs{Name: "a", ID: topicID(1), Configs: map[string]string{"retention.ms": "5"}}, ErrPreconditionFailed},
		{"producer ids: zero count", AllocateProducerIDs{Expected: 100, Count: 0}, ErrInvalidCommand},
		{"producer ids: negative count", AllocateProducerIDs{Expected: 100, Count: -5}, ErrInvalidCommand},
		{"producer ids: stale", AllocateProducerIDs{Expected: 0, Count: 10}, ErrPreconditionFailed},
		{"producer ids: ahead", AllocateProducerIDs{Expected: 200, Count: 10}, ErrPreconditionFailed},
		{"init cluster: empty", InitCluster{}, ErrInvalidCommand},
		{"init cluster: again", InitCluster{ClusterID: "other"}, ErrPreconditionFailed},
		{"register: negative id", RegisterBroker{Broker: Broker{ID: -1, Kafka: "h:1"}}, ErrInvalidCommand},
		{"register: no kafka address", RegisterBroker{Broker: Broker{ID: 4, Internal: "h:2"}}, ErrInvalidCommand},
		{"broker state: unknown broker", SetBrokerState{ID: 9, From: BrokerAlive, To: BrokerFenced}, ErrPreconditionFailed},
		{"broker state: wrong from", SetBrokerState{ID: 1, From: BrokerFenced, To: BrokerAlive}, ErrPreconditionFailed},
		{"broker state: bad to", SetBrokerState{ID: 1, From: BrokerAlive, To: "zombie"}, ErrInvalidCommand},
		{"broker state: empty to", SetBrokerState{ID: 1, From: BrokerAlive}, ErrInvalidCommand},
		{"unregister: unknown", UnregisterBroker{ID: 9}, ErrPreconditionFailed},
		{"unregister: leads active segment", UnregisterBroker{ID: 1}, ErrPreconditionFailed},
		{"cluster configs: stale", SetClusterConfigs{Expected: map[string]string{"log.retention.ms": "1"}, Configs: map[string]string{}}, ErrPreconditionFailed},
		{"cluster configs: stale (nil)", SetClusterConfigs{Configs: map[string]string{"a": "b"}}, ErrPreconditionFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := baseFSM(t)
			before := snap(t, f)
			idx := f.AppliedIndex()
			ch := f.Changed()
			err := f.Apply(tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := snap(t, f); !bytes.Equal(before, after) {
				t.Fatalf("failed command changed the state:\nbefore %s\nafter  %s", before, after)
			}
			if f.AppliedIndex() != idx+1 {
				t.Fatalf("failed entry not counted as applied: %d -> %d", idx, f.AppliedIndex())
			}
			select {
			case <-ch:
			default:
				t.Fatal("Changed not closed by a failed entry (waiters on its index would hang)")
			}
		})
	}
}

func TestRegisterBrokerUpsert(t *testing.T) {
	f := NewFSM()
	mustApply(t, f, RegisterBroker{Broker: Broker{ID: 2, Kafka: "a:1", Internal: "a:2", Raft: "a:3", Rack: "r1", State: BrokerFenced}})
	b, ok := f.Broker(2)
	if !ok || b.State != BrokerAlive || b.Kafka != "a:1" || b.Rack != "r1" {
		t.Fatalf("registered: %+v %v (state must be forced alive)", b, ok)
	}
	mustApply(t, f, SetBrokerState{ID: 2, From: BrokerAlive, To: BrokerFenced})
	if b, _ := f.Broker(2); b.State != BrokerFenced {
		t.Fatalf("fence: %+v", b)
	}
	mustApply(t, f, RegisterBroker{Broker: Broker{ID: 2, Kafka: "b:1", Internal: "b:2", Raft: "b:3"}})
	want := Broker{ID: 2, Kafka: "b:1", Internal: "b:2", Raft: "b:3", State: BrokerAlive}
	if b, _ := f.Broker(2); !b.Same(want) {
		t.Fatalf("upsert: %+v, want %+v", b, want)
	}
	mustApply(t, f, RegisterBroker{Broker: Broker{ID: 0, Kafka: "z:1"}}) // id 0 is valid
	if bs := f.Brokers(); len(bs) != 2 || bs[0].ID != 0 || bs[1].ID != 2 {
		t.Fatalf("Brokers not sorted by id or wrong: %+v", bs)
	}
	if _, ok := f.Broker(7); ok {
		t.Fatal("unknown broker found")
	}
}

func TestSetBrokerStateTransitions(t *testing.T) {
	f := NewFSM()
	mustApply(t, f, RegisterBroker{Broker: broker(1)})
	steps := []struct {
		from, to BrokerState
		ok       bool
	}{
		{BrokerFenced, BrokerAlive, false},
		{BrokerAlive, BrokerFenced, true},
		{BrokerAlive, BrokerFenced, false}, // already fenced: a second fence loses the CAS
		{BrokerFenced, BrokerFenced, true},
		{BrokerFenced, BrokerAlive, true},
		{BrokerAlive, BrokerAlive, true},
	}
	cur := BrokerAlive
	for i, s := range steps {
		err := f.Apply(SetBrokerState{ID: 1, From: s.from, To: s.to})
		if (err == nil) != s.ok {
			t.Fatalf("step %d %s->%s: %v", i, s.from, s.to, err)
		}
		if s.ok {
			cur = s.to
		}
		if b, _ := f.Broker(1); b.State != cur {
			t.Fatalf("step %d: state %s, want %s", i, b.State, cur)
		}
	}
}

func TestUnregisterBrokerHoldingReplicas(t *testing.T) {
	f := NewFSM()
	for i := int32(1); i <= 3; i++ {
		mustApply(t, f, RegisterBroker{Broker: broker(i)})
	}
	mustApply(t, f, CreateTopic{Name: "t", ID: topicID(1), Partitions: 2, Assignments: [][]int32{{1, 2}, {1}}})
	// 2 only follows; still refused.
	if err := f.Apply(UnregisterBroker{ID: 2}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("unregister a follower of an active segment: %v", err)
	}
	if f.activeReplicas(1) != 2 || f.activeReplicas(2) != 1 || f.activeReplicas(3) != 0 {
		t.Fatalf("activeReplicas: %d %d %d", f.activeReplicas(1), f.activeReplicas(2), f.activeReplicas(3))
	}
	mustApply(t, f, UnregisterBroker{ID: 3})
	if _, ok := f.Broker(3); ok {
		t.Fatal("3 still registered")
	}
	mustApply(t, f, DeleteTopic{Name: "t", ID: topicID(1)})
	mustApply(t, f, UnregisterBroker{ID: 2})
	mustApply(t, f, UnregisterBroker{ID: 1})
	if len(f.Brokers()) != 0 {
		t.Fatalf("brokers left: %+v", f.Brokers())
	}
}

func TestSegmentsOfNewPartitions(t *testing.T) {
	f := NewFSM()
	for i := int32(1); i <= 3; i++ {
		mustApply(t, f, RegisterBroker{Broker: broker(i)})
	}
	mustApply(t, f, CreateTopic{Name: "x", ID: topicID(1), Partitions: 3, Assignments: [][]int32{{3, 1}, {1, 2, 3}, {2}}})
	mustApply(t, f, CreateTopic{Name: "gone", ID: topicID(2), Partitions: 2, Assignments: [][]int32{{1}, {2}}})
	mustApply(t, f, DeleteTopic{Name: "gone", ID: topicID(2)})
	mustApply(t, f, CreatePartitions{Name: "x", ID: topicID(1), Expected: 3, Count: 5, Assignments: [][]int32{{2, 3}, {3}}})
	mustApply(t, f, CreateTopic{Name: "y", ID: topicID(3), Partitions: 1, Assignments: [][]int32{{1}}})

	x, ok := f.Topic("x")
	if !ok || x.Partitions != 5 || len(x.Parts) != 5 {
		t.Fatalf("x: %+v", x)
	}
	y, _ := f.Topic("y")
	wantReplicas := [][]int32{{3, 1}, {1, 2, 3}, {2}, {2, 3}, {3}}
	wantIDs := []int64{0, 1, 2, 5, 6} // 3 and 4 went to the deleted topic and are never reused
	for p, part := range x.Parts {
		if len(part.Segments) != 1 {
			t.Fatalf("partition %d: %d segments", p, len(part.Segments))
		}
		s := part.Segments[0]
		want := Segment{ID: wantIDs[p], BaseOffset: 0, EndOffset: -1, Epoch: 0, Leader: wantReplicas[p][0], Replicas: wantReplicas[p], State: SegmentActive}
		if !reflect.DeepEqual(s, want) {
			t.Fatalf("partition %d segment %+v, want %+v", p, s, want)
		}
		if !reflect.DeepEqual(part.Active(), s) {
			t.Fatalf("Active() of partition %d", p)
		}
		if l, e := x.Leader(int32(p)); l != wantReplicas[p][0] || e != 0 {
			t.Fatalf("Leader(%d) = %d,%d", p, l, e)
		}
	}
	if y.Parts[0].Segments[0].ID != 7 {
		t.Fatalf("segment id of y: %d, want 7", y.Parts[0].Segments[0].ID)
	}
	if f.st.NextSegmentID != 8 {
		t.Fatalf("NextSegmentID %d, want 8", f.st.NextSegmentID)
	}
	for _, p := range []int32{-1, 5, 100} {
		if l, e := x.Leader(p); l != -1 || e != -1 {
			t.Fatalf("Leader(%d) out of range = %d,%d", p, l, e)
		}
	}
	if a := (Partition{}).Active(); a.Leader != -1 || a.Epoch != -1 || a.EndOffset != -1 {
		t.Fatalf("Active of an empty partition: %+v", a)
	}
	// Loads: leaders of active segments only.
	want := map[int32]int{3: 2, 1: 2, 2: 2}
	if got := f.Loads(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Loads %v, want %v", got, want)
	}
	// Copies: mutating what Topic returned does not reach the FSM.
	x.Parts[0].Segments[0].Replicas[0] = 99
	x.Configs = map[string]string{"k": "v"}
	if again, _ := f.Topic("x"); again.Parts[0].Segments[0].Replicas[0] != 3 || again.Configs != nil {
		t.Fatalf("Topic returned shared memory: %+v", again.Parts[0])
	}
	if byID, ok := f.TopicByID(topicID(3)); !ok || byID.Name != "y" {
		t.Fatalf("TopicByID: %+v %v", byID, ok)
	}
	if _, ok := f.TopicByID(topicID(2)); ok {
		t.Fatal("deleted topic found by id")
	}
	if names := f.Topics(); len(names) != 2 || names[0].Name != "x" || names[1].Name != "y" {
		t.Fatalf("Topics: %+v", names)
	}
}

func TestClusterConfigsAndInit(t *testing.T) {
	f := NewFSM()
	if f.ClusterID() != "" || f.ClusterConfigs() != nil {
		t.Fatal("fresh FSM not empty")
	}
	mustApply(t, f, InitCluster{ClusterID: "c1"})
	mustApply(t, f, SetClusterConfigs{Expected: map[string]string{}, Configs: map[string]string{"a": "1"}}) // empty == nil
	mustApply(t, f, SetClusterConfigs{Expected: map[string]string{"a": "1"}, Configs: map[string]string{"a": "2", "b": "3"}})
	got := f.ClusterConfigs()
	if f.ClusterID() != "c1" || !reflect.DeepEqual(got, map[string]string{"a": "2", "b": "3"}) {
		t.Fatalf("id %q configs %v", f.ClusterID(), got)
	}
	got["a"] = "mutated"
	if f.ClusterConfigs()["a"] != "2" {
		t.Fatal("ClusterConfigs returned the FSM's map")
	}
}

func TestChangedAndWaitApplied(t *testing.T) {
	f := NewFSM()
	ch := f.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any change")
	default:
	}
	mustApply(t, f, RegisterBroker{Broker: broker(1)})
	select {
	case <-ch:
	default:
		t.Fatal("not closed by apply")
	}
	ch2 := f.Changed()
	if ch2 == ch {
		t.Fatal("channel not replaced")
	}
	b := snap(t, f)
	if err := f.Restore(b); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch2:
	default:
		t.Fatal("not closed by restore")
	}

	// WaitApplied: already applied, times out, then woken by ApplyAt.
	g := NewFSM()
	if err := g.ApplyAt(RegisterBroker{Broker: broker(1)}, 5); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 5 {
		t.Fatalf("applied %d", g.AppliedIndex())
	}
	if err := g.WaitApplied(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := g.WaitApplied(ctx, 7)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for 7: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- g.WaitApplied(ctx, 7)
	}()
	// A failed command at 6 does not satisfy 7; a failed one at 7 does.
	_ = g.ApplyAt(InitCluster{}, 6)
	select {
	case err := <-done:
		t.Fatalf("woke at 6: %v", err)
	default:
	}
	if err := g.ApplyAt(InitCluster{}, 7); !errors.Is(err, ErrInvalidCommand) {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Apply (index 0) takes the next index.
	mustApply(t, g, InitCluster{ClusterID: "x"})
	if g.AppliedIndex() != 8 {
		t.Fatalf("Apply after 7: index %d", g.AppliedIndex())
	}
}

// allCommands holds one non-trivial value of every command kind.
func allCommands() []Command {
	return []Command{
		CreateTopic{Name: "x", ID: topicID(3), Partitions: 2, Configs: map[string]string{"a": "b"}, Internal: true, ReplicationFactor: 2, Assignments: [][]int32{{1, 2}, {2, 1}}},
		DeleteTopic{Name: "x", ID: topicID(3)},
		CreatePartitions{Name: "x", ID: topicID(3), Expected: 1, Count: 3, ReplicationFactor: 1, Assignments: [][]int32{{1}, {2}}},
		SetTopicConfigs{Name: "x", ID: topicID(3), Expected: map[string]string{"a": "b"}, Configs: map[string]string{"k": "v"}},
		AllocateProducerIDs{Expected: 5, Count: 10},
		InitCluster{ClusterID: "abc"},
		RegisterBroker{Broker: Broker{ID: 3, Kafka: "h:1", Internal: "h:2", Raft: "h:3", Rack: "r", State: BrokerAlive}},
		SetBrokerState{ID: 3, From: BrokerAlive, To: BrokerFenced},
		UnregisterBroker{ID: 3},
		SetClusterConfigs{Expected: map[string]string{"a": "1"}, Configs: map[string]string{"a": "2"}},
		RollSegment{Topic: "x", ID: topicID(3), ExpectedSegment: 1, ExpectedEpoch: 2, EndOffset: 9, NextLeader: 2, NextReplicas: []int32{2, 3}, Joined: []int32{3}, JoinedFrom: 4},
		FenceSegment{Topic: "x", ID: topicID(3), ExpectedSegment: 1, ExpectedEpoch: 2},
		AssignLearners{Topic: "x", ID: topicID(3), ExpectedSegment: 1, ExpectedEpoch: 2, Learners: []int32{4}},
	}
}

func TestEncodeDecodeAllKinds(t *testing.T) {
	kinds := map[string]bool{}
	for _, c := range allCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %T:\n got %#v\nwant %#v", c, got, c)
		}
		if reflect.TypeOf(got).Kind() == reflect.Pointer {
			t.Fatalf("decoded %T is a pointer", got)
		}
		kinds[c.kind()] = true
	}
	if len(kinds) != 13 {
		t.Fatalf("%d distinct kinds", len(kinds))
	}
	// Every kind DecodeCommand knows is covered above.
	for _, k := range []string{"create_topic", "delete_topic", "create_partitions", "set_topic_configs", "allocate_producer_ids",
		"init_cluster", "register_broker", "set_broker_state", "unregister_broker", "set_cluster_configs",
		"roll_segment", "fence_segment", "assign_learners"} {
		if !kinds[k] {
			t.Fatalf("kind %s not covered", k)
		}
	}
	for _, bad := range []string{
		`not json`,
		`{"v":0,"kind":"create_topic","body":{}}`,
		`{"v":2,"kind":"create_topic","body":{}}`,
		`{"v":1,"kind":"drop_everything","body":{}}`,
		`{"v":1,"kind":"create_topic","body":{"partitions":"many"}}`,
		`{"v":1,"kind":"create_topic","body":[1,2]}`,
	} {
		if c, err := DecodeCommand([]byte(bad)); err == nil {
			t.Fatalf("%s decoded as %#v", bad, c)
		}
	}
}

// TestSnapshotRestoreLarge builds a big state (brokers, 2,000 live topics
// after creating 3,000 and deleting 1,000, configs, producer ids), restores
// it into a new FSM and compares the snapshot bytes.
func TestSnapshotRestoreLarge(t *testing.T) {
	f := NewFSM()
	mustApply(t, f, InitCluster{ClusterID: "big"})
	for i := int32(1); i <= 5; i++ {
		b := broker(i)
		b.Rack = fmt.Sprintf("rack%d", i%2)
		mustApply(t, f, RegisterBroker{Broker: b})
	}
	mustApply(t, f, SetBrokerState{ID: 4, From: BrokerAlive, To: BrokerFenced})
	for i := range 3000 {
		n := int32(i%4 + 1)
		as := make([][]int32, n)
		for p := range as {
			as[p] = []int32{int32((i+p)%5 + 1), int32((i+p+1)%5 + 1)}
		}
		var cfg map[string]string
		if i%3 == 0 {
			cfg = map[string]string{"retention.ms": fmt.Sprint(i), "cleanup.policy": "delete"}
		}
		mustApply(t, f, CreateTopic{Name: fmt.Sprintf("topic-%05d", i), ID: topicID(i), Partitions: n, Configs: cfg, Internal: i == 7, Assignments: as})
	}
	for i := 0; i < 3000; i += 3 {
		mustApply(t, f, DeleteTopic{Name: fmt.Sprintf("topic-%05d", i), ID: topicID(i)})
	}
	for i := 1; i < 3000; i += 51 { // i%3 == 1: not deleted
		tp, _ := f.Topic(fmt.Sprintf("topic-%05d", i))
		mustApply(t, f, CreatePartitions{Name: tp.Name, ID: tp.ID, Expected: tp.Partitions, Count: tp.Partitions + 1, Assignments: [][]int32{{5}}})
		mustApply(t, f, SetTopicConfigs{Name: tp.Name, ID: tp.ID, Expected: tp.Configs, Configs: map[string]string{"segment.bytes": "1024"}})
	}
	mustApply(t, f, SetClusterConfigs{Configs: map[string]string{"a": "b", "c": "d"}})
	mustApply(t, f, AllocateProducerIDs{Expected: 0, Count: 1000})
	mustApply(t, f, AllocateProducerIDs{Expected: 1000, Count: 1000})
	if n := len(f.Topics()); n != 2000 {
		t.Fatalf("%d topics", n)
	}

	b := snap(t, f)
	// Snapshots are canonical: taking one twice gives the same bytes.
	if !bytes.Equal(b, snap(t, f)) {
		t.Fatal("snapshot not deterministic")
	}
	g := NewFSM()
	mustApply(t, g, InitCluster{ClusterID: "overwritten"}) // restore replaces, not merges
	if err := g.Restore(b); err != nil {
		t.Fatal(err)
	}
	if b2 := snap(t, g); !bytes.Equal(b, b2) {
		t.Fatalf("restored snapshot differs (%d vs %d bytes)", len(b), len(b2))
	}
	if g.NextProducerID() != 2000 || g.ClusterID() != "big" || !reflect.DeepEqual(g.Topics(), f.Topics()) || !reflect.DeepEqual(g.Brokers(), f.Brokers()) {
		t.Fatal("restored accessors differ")
	}
	// The restored FSM keeps working, with ids continuing where they were.
	mustApply(t, f, CreateTopic{Name: "after", ID: topicID(100000), Partitions: 2, Assignments: [][]int32{{1}, {2}}})
	mustApply(t, g, CreateTopic{Name: "after", ID: topicID(100000), Partitions: 2, Assignments: [][]int32{{1}, {2}}})
	if !bytes.Equal(snap(t, f), snap(t, g)) {
		t.Fatal("diverged after restore")
	}
	if err := g.Apply(CreateTopic{Name: "again", ID: topicID(1), Partitions: 1, Assignments: [][]int32{{1}}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("topic id uniqueness lost after restore: %v", err)
	}
}

func TestRestoreRejects(t *testing.T) {
	f := baseFSM(t)
	before := snap(t, f)
	good := string(before)
	for _, bad := range []string{
		strings.Replace(good, `"version":2`, `"version":1`, 1),
		strings.Replace(good, `"version":2`, `"version":3`, 1),
		`{"topics":{}}`, // version missing
		`garbage`,
		``,
	} {
		if bad == good {
			t.Fatal("version field not found in snapshot")
		}
		if err := f.Restore([]byte(bad)); err == nil {
			t.Fatalf("restore accepted %.60s", bad)
		}
		if !bytes.Equal(before, snap(t, f)) {
			t.Fatal("rejected restore changed the state")
		}
	}
	// An empty (but versioned) snapshot restores to usable empty maps.
	if err := f.Restore([]byte(`{"version":2}`)); err != nil {
		t.Fatal(err)
	}
	mustApply(t, f, RegisterBroker{Broker: broker(1)})
	mustApply(t, f, CreateTopic{Name: "t", ID: topicID(1), Partitions: 1, Assignments: [][]int32{{1}}})
}

func TestDumpIsCanonicalAndIgnoresLiveness(t *testing.T) {
	f := baseFSM(t)
	d := f.Dump()
	if !bytes.Equal(d, f.Dump()) {
		t.Fatal("Dump not deterministic")
	}
	g := NewFSM()
	if err := g.Restore(snap(t, f)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d, g.Dump()) {
		t.Fatal("Dump differs after restore")
	}
	// Addresses and liveness change on every start; the dump leaves them out.
	mustApply(t, g, SetBrokerState{ID: 2, From: BrokerAlive, To: BrokerFenced})
	b := broker(3)
	b.Kafka = "elsewhere:1"
	mustApply(t, g, RegisterBroker{Broker: b})
	if !bytes.Equal(d, g.Dump()) {
		t.Fatalf("Dump changed with broker liveness or addresses:\n%s\n%s", d, g.Dump())
	}
	// Everything else shows.
	mustApply(t, g, AllocateProducerIDs{Expected: 100, Count: 1})
	if bytes.Equal(d, g.Dump()) {
		t.Fatal("Dump misses producer ids")
	}
	if strings.Contains(string(d), "k1:9092") || !strings.Contains(string(d), `"a"`) {
		t.Fatalf("Dump content:\n%s", d)
	}
}

func TestRollSegment(t *testing.T) {
	f := NewFSM()
	for _, id := range []int32{1, 2, 3} {
		if err := f.Apply(RegisterBroker{Broker: Broker{ID: id, Kafka: "h:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Apply(CreateTopic{Name: "r", ID: id(7), Partitions: 1, Assignments: [][]int32{{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	tp, _ := f.Topic("r")
	first := tp.Parts[0].Active()
	roll := RollSegment{Topic: "r", ID: id(7), Partition: 0, ExpectedSegment: first.ID, ExpectedEpoch: first.Epoch,
		EndOffset: 100, NextLeader: 2, NextReplicas: []int32{1, 2, 3}, Checksum: 0xabcd, Bytes: 4096}
	before, _ := f.Snapshot()
	for name, bad := range map[string]RollSegment{
		"stale segment":     func() RollSegment { r := roll; r.ExpectedSegment++; return r }(),
		"stale epoch":       func() RollSegment { r := roll; r.ExpectedEpoch++; return r }(),
		"end below base":    func() RollSegment { r := roll; r.EndOffset = -1; return r }(),
		"leader not repl":   func() RollSegment { r := roll; r.NextLeader = 9; return r }(),
		"unknown replica":   func() RollSegment { r := roll; r.NextReplicas = []int32{2, 9}; return r }(),
		"wrong topic id":    func() RollSegment { r := roll; r.ID = id(8); return r }(),
		"no such partition": func() RollSegment { r := roll; r.Partition = 1; return r }(),
	} {
		if err := f.Apply(bad); err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if after, _ := f.Snapshot(); string(after) != string(before) {
			t.Fatalf("%s: failed roll changed the state", name)
		}
	}
	if err := f.Apply(roll); err != nil {
		t.Fatal(err)
	}
	tp, _ = f.Topic("r")
	segs := tp.Parts[0].Segments
	if len(segs) != 2 {
		t.Fatalf("segments after roll: %+v", segs)
	}
	sealed, next := segs[0], segs[1]
	if sealed.State != SegmentSealed || sealed.EndOffset != 100 || sealed.Checksum != 0xabcd || sealed.Bytes != 4096 {
		t.Fatalf("sealed segment: %+v", sealed)
	}
	if next.State != SegmentActive || next.BaseOffset != 100 || next.EndOffset != -1 || next.Epoch != first.Epoch+1 ||
		next.Leader != 2 || next.Replicas[0] != 2 || len(next.Replicas) != 3 || next.ID <= sealed.ID {
		t.Fatalf("next segment: %+v", next)
	}
	if l, e := tp.Leader(0); l != 2 || e != first.Epoch+1 {
		t.Fatalf("leader after roll: %d epoch %d", l, e)
	}
	// The same roll again is stale now.
	if err := f.Apply(roll); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("repeated roll: %v", err)
	}
}

// TestRollJoinedRewritesSealedReplicas: learners a roll takes in become
// replicas of every sealed segment above JoinedFrom; a sealed segment with
// more replicas than the replication factor drops its fenced members, and
// learners not joined carry over to the next segment.
func TestRollJoinedRewritesSealedReplicas(t *testing.T) {
	f := NewFSM()
	for _, id := range []int32{1, 2, 3, 4, 5} {
		mustApply(t, f, RegisterBroker{Broker: Broker{ID: id, Kafka: "h:1"}})
	}
	mustApply(t, f, CreateTopic{Name: "j", ID: id(3), Partitions: 1, ReplicationFactor: 3, Assignments: [][]int32{{1, 2, 3}}})
	active := func() Segment { tp, _ := f.Topic("j"); return tp.Parts[0].Active() }
	s := active()
	mustApply(t, f, RollSegment{Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 10, NextLeader: 2, NextReplicas: []int32{1, 2, 3}})
	s = active()
	// Node 3 dies; the next roll leaves it out.
	mustApply(t, f, SetBrokerState{ID: 3, From: BrokerAlive, To: BrokerFenced})
	mustApply(t, f, RollSegment{Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 20, NextLeader: 1, NextReplicas: []int32{1, 2}, SealedReplicas: []int32{1, 2}})
	s = active()
	for name, bad := range map[string]AssignLearners{
		"replica as learner": {Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, Learners: []int32{1}},
		"unknown broker":     {Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, Learners: []int32{9}},
		"stale segment":      {Topic: "j", ID: id(3), ExpectedSegment: s.ID - 1, ExpectedEpoch: s.Epoch, Learners: []int32{4}},
		"twice":              {Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, Learners: []int32{4, 4}},
	} {
		if err := f.Apply(bad); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	mustApply(t, f, AssignLearners{Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, Learners: []int32{4, 5}})
	if a := active(); !slices.Equal(a.Learners, []int32{4, 5}) {
		t.Fatalf("learners %v", a.Learners)
	}
	bad := RollSegment{Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 30, NextLeader: 2, NextReplicas: []int32{1, 2}, Joined: []int32{4}}
	if err := f.Apply(bad); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("joined outside the next replicas: %v", err)
	}
	// Node 4 copied from offset 5 (the leader's log start) and joins.
	mustApply(t, f, RollSegment{Topic: "j", ID: id(3), ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 30, NextLeader: 2,
		NextReplicas: []int32{1, 2, 4}, Joined: []int32{4}, JoinedFrom: 5})
	tp, _ := f.Topic("j")
	segs := tp.Parts[0].Segments
	want := [][]int32{{1, 2, 4}, {1, 2, 4}, {1, 2, 4}}
	for i, w := range want {
		if !slices.Equal(segs[i].Replicas, w) {
			t.Fatalf("sealed segment %d replicas %v, want %v (fenced 3 dropped, 4 added)", i, segs[i].Replicas, w)
		}
	}
	if a := segs[3]; a.State != SegmentActive || !slices.Equal(a.Learners, []int32{5}) || len(a.Replicas) != 3 {
		t.Fatalf("next segment %+v: want learner 5 carried over", a)
	}
}
