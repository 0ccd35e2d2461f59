package metadata

import (
	"bytes"
	"errors"
	"testing"
)

// A planned roll records the sealed segment's first unstable offset; a
// seal without one (a failover, or a command from before the field)
// leaves it unknown, and StableEnd then is the segment's base. Snapshots
// carry the value, and a snapshot without the field loads as unknown.
func TestRollRecordsFirstUnstable(t *testing.T) {
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
	roll := func(end int64, fu *int64) {
		t.Helper()
		a := activeOf(t, f)
		must(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: end,
			NextLeader: 1, NextReplicas: []int32{1, 2, 3}, FirstUnstable: fu})
	}
	at := func(v int64) *int64 { return &v }
	roll(100, at(100)) // nothing open at the end
	roll(250, at(180)) // a transaction opened at 180 is open at 250
	roll(300, nil)     // a failover seal: unknown
	roll(400, at(40))  // a transaction opened in the first segment is still open
	// A value past the end is refused before it enters the log.
	a := activeOf(t, f)
	bad := RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 500,
		NextLeader: 1, NextReplicas: []int32{1, 2, 3}, FirstUnstable: at(501)}
	if err := Validate(bad); err == nil {
		t.Fatal("a first unstable offset past the end passed validation")
	}
	check := func(f *FSM, what string) {
		t.Helper()
		segs := partOf(t, f).Segments
		want := []struct {
			fu     int64 // -1: unknown
			stable int64
		}{{100, 100}, {180, 180}, {-1, 250}, {40, 300}}
		if len(segs) != len(want)+1 {
			t.Fatalf("%s: %d segments", what, len(segs))
		}
		for i, w := range want {
			s := segs[i]
			got := int64(-1)
			if s.FirstUnstable != nil {
				got = *s.FirstUnstable
			}
			if got != w.fu || s.StableEnd() != w.stable {
				t.Fatalf("%s: segment [%d, %d): first unstable %d, stable end %d; want %d, %d", what, s.BaseOffset, s.EndOffset, got, s.StableEnd(), w.fu, w.stable)
			}
		}
		if segs[len(segs)-1].FirstUnstable != nil {
			t.Fatalf("%s: the active segment has a first unstable offset", what)
		}
	}
	check(f, "applied")
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	check(g, "restored")

	// A snapshot written before the field existed: every segment unknown.
	old := bytes.ReplaceAll(snap, []byte(`"first_unstable":`), []byte(`"x_first_unstable":`))
	if bytes.Equal(old, snap) {
		t.Fatal("the snapshot does not name first_unstable")
	}
	h := NewFSM()
	if err := h.Restore(old); err != nil {
		t.Fatal(err)
	}
	for _, s := range partOf(t, h).Segments {
		if s.FirstUnstable != nil || (s.EndOffset >= 0 && s.StableEnd() != s.BaseOffset) {
			t.Fatalf("old snapshot: segment [%d, %d) first unstable %v, stable end %d", s.BaseOffset, s.EndOffset, s.FirstUnstable, s.StableEnd())
		}
	}
}

// A merge of cleaned segments keeps the last one's first unstable
// offset: a transaction open at the first one's end (60 here) closed
// before the second one's end, which had none open.
func TestMergeKeepsLastFirstUnstable(t *testing.T) {
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
	for i, c := range []struct{ end, fu int64 }{{100, 60}, {250, 250}} {
		a := activeOf(t, f)
		fu := c.fu
		must(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: c.end,
			NextLeader: 1, NextReplicas: []int32{1, 2, 3}, Checksum: uint32(10 + i), Bytes: 1000 * int64(i+1), SealedAtMs: 5000 + int64(i), FirstUnstable: &fu})
	}
	segs := partOf(t, f).Segments
	must(cleanCmd(segs, 1, 1, 2))
	for _, n := range []int32{1, 2} {
		must(CleanReport{Topic: "c", ID: id(7), Partition: 0, Generation: 1, Node: n, OK: true, Results: results(segs, 40)})
	}
	p := partOf(t, f)
	var inputs []MergedInput
	for _, s := range p.Segments[:2] {
		inputs = append(inputs, MergedInput{ID: s.ID, Checksum: s.Checksum, Bytes: s.Bytes, Generation: s.Generation})
	}
	must(MergeSegments{Topic: "c", ID: id(7), Partition: 0, Inputs: inputs, Checksum: 5, Bytes: 90})
	m := partOf(t, f).Segments[0]
	if m.EndOffset != 250 || m.FirstUnstable == nil || *m.FirstUnstable != 250 || m.StableEnd() != 250 {
		t.Fatalf("merged segment [%d, %d) first unstable %v; want [0, 250) 250", m.BaseOffset, m.EndOffset, m.FirstUnstable)
	}
}

// SetFirstUnstable fills in the first unstable offset of a segment a
// failover sealed without one, once, and only while the segment still
// ends where the proposer saw it; it survives an encode/decode round trip
// and an out-of-range value is refused.
func TestSetFirstUnstable(t *testing.T) {
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
	a := activeOf(t, f)
	must(FenceSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch})
	must(RollSegment{Topic: "c", ID: id(7), Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 100,
		NextLeader: 2, NextReplicas: []int32{2, 3}}) // a failover seal: unknown
	set := func(end, fu int64) error {
		c := SetFirstUnstable{Topic: "c", ID: id(7), Partition: 0, Segment: a.ID, EndOffset: end, FirstUnstable: fu}
		b, err := EncodeCommand(c)
		if err != nil {
			return err
		}
		d, err := DecodeCommand(b)
		if err != nil {
			return err
		}
		return f.Apply(d)
	}
	if err := set(100, 101); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("past the end: %v", err)
	}
	if err := set(90, 40); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("another end: %v", err)
	}
	if err := set(100, 40); err != nil {
		t.Fatal(err)
	}
	if err := set(100, 100); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("twice: %v", err)
	}
	s := partOf(t, f).Segments[0]
	if s.FirstUnstable == nil || *s.FirstUnstable != 40 || s.StableEnd() != 40 {
		t.Fatalf("segment [%d, %d) first unstable %v; want 40", s.BaseOffset, s.EndOffset, s.FirstUnstable)
	}
}
