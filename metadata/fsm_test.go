package metadata

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func id(b byte) TopicID { var t TopicID; t[0] = b; t[15] = 1; return t }

func TestCommandsAndPreconditions(t *testing.T) {
	f := NewFSM()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Apply(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1"}}))
	must(f.Apply(CreateTopic{Name: "a", ID: id(1), Partitions: 3, Configs: map[string]string{"retention.ms": "10"}, Assignments: [][]int32{{1}, {1}, {1}}}))
	if err := f.Apply(CreateTopic{Name: "a", ID: id(2), Partitions: 1, Assignments: [][]int32{{1}}}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := f.Apply(CreatePartitions{Name: "a", ID: id(1), Expected: 2, Count: 5}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale expected count: %v", err)
	}
	must(f.Apply(CreatePartitions{Name: "a", ID: id(1), Expected: 3, Count: 5, Assignments: [][]int32{{1}, {1}}}))
	if err := f.Apply(SetTopicConfigs{Name: "a", ID: id(1), Expected: nil, Configs: map[string]string{}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale configs: %v", err)
	}
	must(f.Apply(SetTopicConfigs{Name: "a", ID: id(1), Expected: map[string]string{"retention.ms": "10"}, Configs: map[string]string{"retention.ms": "20"}}))
	must(f.Apply(AllocateProducerIDs{Expected: 0, Count: 1000}))
	if err := f.Apply(AllocateProducerIDs{Expected: 0, Count: 1000}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale producer block: %v", err)
	}
	tp, ok := f.Topic("a")
	if !ok || tp.Partitions != 5 || tp.Configs["retention.ms"] != "20" || f.NextProducerID() != 1000 {
		t.Fatalf("state: %+v next=%d", tp, f.NextProducerID())
	}
	if v, set, internal, ok := f.TopicConfigValue("a", "retention.ms"); !ok || !set || v != "20" || internal {
		t.Fatalf("TopicConfigValue(a, retention.ms) = %q %v %v %v", v, set, internal, ok)
	}
	if v, set, _, ok := f.TopicConfigValue("a", "segment.ms"); !ok || set || v != "" {
		t.Fatalf("TopicConfigValue(a, segment.ms) = %q %v %v", v, set, ok)
	}
	if _, _, _, ok := f.TopicConfigValue("nope", "retention.ms"); ok {
		t.Fatal("TopicConfigValue of a missing topic: ok")
	}
	if err := f.Apply(DeleteTopic{Name: "a", ID: id(9)}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("delete with wrong id: %v", err)
	}
	must(f.Apply(DeleteTopic{Name: "a", ID: id(1)}))
	if _, ok := f.Topic("a"); ok {
		t.Fatal("topic still present")
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cmds := []Command{
		CreateTopic{Name: "x", ID: id(3), Partitions: 2, Configs: map[string]string{"a": "b"}},
		DeleteTopic{Name: "x", ID: id(3)},
		CreatePartitions{Name: "x", ID: id(3), Expected: 1, Count: 2},
		SetTopicConfigs{Name: "x", ID: id(3), Configs: map[string]string{"k": "v"}},
		AllocateProducerIDs{Expected: 5, Count: 10},
	}
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := EncodeCommand(got)
		if string(b) != string(b2) {
			t.Fatalf("round trip: %s != %s", b, b2)
		}
	}
	if _, err := DecodeCommand([]byte(`{"v":2,"kind":"create_topic","body":{}}`)); err == nil {
		t.Fatal("future version accepted")
	}
}

// TestRepeatedRequestAppliedOnce: an entry repeating an applied request ID
// (an Apply retried after its leader was lost mid-commit) changes nothing
// and answers the first outcome, also after a snapshot and restore; the
// oldest IDs are forgotten beyond maxRequests.
func TestRepeatedRequestAppliedOnce(t *testing.T) {
	f := NewFSM()
	alloc := AllocateProducerIDs{Expected: 0, Count: 10}
	if err := f.applyAt(alloc, 0, "req-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.applyAt(alloc, 0, "req-1"); err != nil {
		t.Fatalf("repeat of req-1: %v, want the first outcome (nil)", err)
	}
	if got := f.NextProducerID(); got != 10 {
		t.Fatalf("next producer id %d after a repeated request, want 10", got)
	}
	// Without an ID (or with another) the same command is a new one.
	if err := f.applyAt(alloc, 0, "req-2"); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("req-2: %v, want a precondition failure", err)
	}
	if err := f.applyAt(alloc, 0, "req-2"); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("repeat of req-2: %v, want its first outcome (precondition failure)", err)
	}
	applied := f.AppliedIndex()
	if applied != 4 {
		t.Fatalf("applied index %d, want 4 (repeats count as applied entries)", applied)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if err := g.applyAt(alloc, 0, "req-1"); err != nil {
		t.Fatalf("repeat of req-1 after restore: %v", err)
	}
	if err := g.applyAt(alloc, 0, "req-2"); err == nil || !strings.Contains(err.Error(), "expected 0") {
		t.Fatalf("repeat of req-2 after restore: %v, want its first error message", err)
	}
	if got := g.NextProducerID(); got != 10 {
		t.Fatalf("next producer id %d after restore and repeats, want 10", got)
	}

	// Past maxRequests newer IDs, req-1 is forgotten: applied again (and
	// failing its precondition now).
	for i := range maxRequests {
		if err := g.applyAt(AllocateProducerIDs{Expected: g.NextProducerID(), Count: 1}, 0, fmt.Sprintf("fill-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.applyAt(alloc, 0, "req-1"); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("req-1 after %d newer requests: %v, want it applied again (precondition failure)", maxRequests, err)
	}
	if n := len(g.st.Requests); n != maxRequests {
		t.Fatalf("%d requests remembered, want %d", n, maxRequests)
	}
}
