package fencing

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

// seeded returns states where producer 7 (epoch 3) has accepted 6 batches of
// 2 records each: seqs 0-1, 2-3, ..., 10-11 at offsets 100+seq.
func seeded() *ProducerStates {
	s := NewProducerStates()
	for seq := int32(0); seq < 12; seq += 2 {
		s.Update(7, 3, seq, 2, 100+int64(seq), 101+int64(seq), 1000+int64(seq))
	}
	return s
}

func TestCheck(t *testing.T) {
	dup := func(first, last int32) *ProducerBatch {
		return &ProducerBatch{FirstSeq: first, LastSeq: last, FirstOffset: 100 + int64(first), LastOffset: 100 + int64(last)}
	}
	tests := []struct {
		name    string
		pid     int64
		epoch   int16
		seq     int32
		count   int32
		wantDup *ProducerBatch
		wantErr error
	}{
		{"next in order", 7, 3, 12, 5, nil, nil},
		{"dup newest", 7, 3, 10, 2, dup(10, 11), nil},
		{"dup 2nd newest", 7, 3, 8, 2, dup(8, 9), nil},
		{"dup 3rd newest", 7, 3, 6, 2, dup(6, 7), nil},
		{"dup 4th newest", 7, 3, 4, 2, dup(4, 5), nil},
		{"dup 5th newest", 7, 3, 2, 2, dup(2, 3), nil},
		{"6th oldest forgotten", 7, 3, 0, 2, nil, ErrOutOfOrderSequence},
		{"same first seq other count", 7, 3, 10, 3, nil, ErrOutOfOrderSequence},
		{"gap", 7, 3, 13, 1, nil, ErrOutOfOrderSequence},
		{"behind", 7, 3, 11, 1, nil, ErrOutOfOrderSequence},
		{"stale epoch", 7, 2, 12, 1, nil, ErrInvalidProducerEpoch},
		{"stale epoch even if dup", 7, 2, 10, 2, nil, ErrInvalidProducerEpoch},
		{"epoch bump at 0", 7, 4, 0, 3, nil, nil},
		{"epoch bump not at 0", 7, 4, 12, 1, nil, ErrOutOfOrderSequence},
		{"unknown at 0", 8, 0, 0, 1, nil, nil},
		{"unknown not at 0", 8, 0, 5, 1, nil, ErrOutOfOrderSequence},
		{"zero count", 7, 3, 12, 0, nil, ErrOutOfOrderSequence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seeded()
			d, err := s.Check(tc.pid, tc.epoch, tc.seq, tc.count)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(d, tc.wantDup) {
				t.Fatalf("dup = %+v, want %+v", d, tc.wantDup)
			}
		})
	}
}

func TestWrapAround(t *testing.T) {
	s := NewProducerStates()
	s.Update(1, 0, 0, 1, 0, 0, 0)
	// Jump the producer to near MaxInt32 by loading state.
	s.Load([]ProducerEntry{{ProducerID: 1, Epoch: 0, Batches: []ProducerBatch{{FirstSeq: math.MaxInt32 - 4, LastSeq: math.MaxInt32 - 2, FirstOffset: 10, LastOffset: 12}}}})
	// A batch of 5 starting at MaxInt32-1 ends at seq 2 after wrapping.
	if got := LastSeq(math.MaxInt32-1, 5); got != 2 {
		t.Fatalf("LastSeq wrap = %d, want 2", got)
	}
	if d, err := s.Check(1, 0, math.MaxInt32-1, 5); d != nil || err != nil {
		t.Fatalf("check = %v, %v", d, err)
	}
	s.Update(1, 0, math.MaxInt32-1, 5, 13, 17, 0)
	if d, err := s.Check(1, 0, 3, 1); d != nil || err != nil {
		t.Fatalf("after wrap: %v, %v", d, err)
	}
	if d, err := s.Check(1, 0, math.MaxInt32-1, 5); err != nil || d == nil || d.FirstOffset != 13 || d.LastOffset != 17 || d.LastSeq != 2 {
		t.Fatalf("dup across wrap: %+v, %v", d, err)
	}
	// A batch ending exactly at MaxInt32 is followed by 0.
	s.Load([]ProducerEntry{{ProducerID: 1, Batches: []ProducerBatch{{FirstSeq: math.MaxInt32 - 1, LastSeq: math.MaxInt32}}}})
	if _, err := s.Check(1, 0, 0, 1); err != nil {
		t.Fatalf("0 after MaxInt32: %v", err)
	}
	if _, err := s.Check(1, 0, math.MaxInt32, 1); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("MaxInt32 again: %v", err)
	}
}

func TestUpdateEpochBumpResetsAndKeepsFive(t *testing.T) {
	s := seeded()
	e := s.Entries()
	if len(e) != 1 || len(e[0].Batches) != 5 || e[0].Batches[0].FirstSeq != 2 || e[0].Batches[4].FirstSeq != 10 || e[0].LastTimestamp != 1010 {
		t.Fatalf("entries = %+v", e)
	}
	s.Update(7, 4, 0, 1, 200, 200, 2000)
	e = s.Entries()
	want := ProducerEntry{ProducerID: 7, Epoch: 4, Batches: []ProducerBatch{{0, 0, 200, 200}}, LastTimestamp: 2000, TxnFirstOffset: NoTxn, CoordinatorEpoch: NoTxn}
	if !reflect.DeepEqual(e, []ProducerEntry{want}) {
		t.Fatalf("after bump = %+v", e)
	}
	if _, err := s.Check(7, 3, 12, 1); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch after bump: %v", err)
	}
}

func TestEntriesLoadDeepCopy(t *testing.T) {
	s := seeded()
	s.Update(3, 1, 0, 1, 5, 5, 9)
	e := s.Entries()
	if len(e) != 2 || e[0].ProducerID != 3 || e[1].ProducerID != 7 {
		t.Fatalf("not sorted: %+v", e)
	}
	e[1].Batches[0].FirstSeq = 99 // must not alias
	if s.Entries()[1].Batches[0].FirstSeq != 2 {
		t.Fatal("Entries aliases internal state")
	}
	s2 := NewProducerStates()
	s2.Load(s.Entries())
	if s2.Len() != 2 || !reflect.DeepEqual(s2.Entries(), s.Entries()) {
		t.Fatalf("load round trip: %+v", s2.Entries())
	}
	in := s.Entries()
	s2.Load(in)
	in[0].Batches[0].LastOffset = -5
	if s2.Entries()[0].Batches[0].LastOffset != 5 {
		t.Fatal("Load aliases its input")
	}
	s2.Update(3, 1, 1, 1, 6, 6, 10) // must not write into in's array
	if len(in[0].Batches) != 1 {
		t.Fatal("Load aliases its input's array")
	}
}

func TestProducerTransactions(t *testing.T) {
	s := NewProducerStates()
	s.Update(1, 0, 0, 2, 10, 11, 100) // idempotent: no transaction
	s.UpdateTxn(2, 0, 0, 1, 12, 12, 100, true)
	s.UpdateTxn(2, 0, 1, 1, 13, 13, 100, true) // already open at 12
	s.BeginTxn(3, 5, 14)
	if got := s.OpenTxns(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}
	if got := s.FirstUnstableOffset(-1); got != 12 {
		t.Fatalf("first unstable = %d, want 12", got)
	}
	if got := s.FirstUnstableOffset(2); got != 14 {
		t.Fatalf("first unstable without 2 = %d, want 14", got)
	}
	if got, want := s.OpenTransactions(), []OpenTxn{{2, 12}, {3, 14}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("open transactions = %v, want %v", got, want)
	}
	if err := s.CheckMarker(2, 0, 7); err != nil {
		t.Fatal(err)
	}
	if first := s.EndTxn(2, 0, 7, 200); first != 12 {
		t.Fatalf("EndTxn first = %d, want 12", first)
	}
	if err := s.CheckMarker(2, 0, 6); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("older coordinator epoch: %v", err)
	}
	if err := s.CheckMarker(3, 4, 0); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("older producer epoch: %v", err)
	}
	if err := s.CheckMarker(99, 0, 0); err != nil {
		t.Fatalf("unknown producer: %v", err)
	}
	// A marker without an open transaction changes only the epochs.
	if first := s.EndTxn(1, 1, 7, 300); first != NoTxn {
		t.Fatalf("EndTxn of idempotent producer = %d", first)
	}
	if got := s.FirstUnstableOffset(-1); got != 14 || s.OpenTxns() != 1 {
		t.Fatalf("first unstable = %d open %d, want 14, 1", got, s.OpenTxns())
	}
	// Entries and Load round-trip the transaction fields.
	c := NewProducerStates()
	c.Load(s.Entries())
	if !reflect.DeepEqual(c.Entries(), s.Entries()) || c.OpenTxns() != 1 || c.FirstUnstableOffset(-1) != 14 {
		t.Fatalf("loaded = %+v", c.Entries())
	}
	e := c.Entries()
	if e[0].Epoch != 1 || len(e[0].Batches) != 0 || e[0].CoordinatorEpoch != 7 || e[1].CoordinatorEpoch != 7 || e[2].TxnFirstOffset != 14 || e[2].CoordinatorEpoch != NoTxn {
		t.Fatalf("entries = %+v", e)
	}
}
