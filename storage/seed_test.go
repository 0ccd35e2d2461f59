package storage

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/tuskdb/tusk/fencing"
)

// TestCreateLogAtWithProducers: a learner's log created at 10 with the
// leader's transaction of producer 7 open from 4 counts it open (its LSO
// stays at the log start) across a crash, and that producer's ABORT
// closes it with an index entry from its first offset.
func TestCreateLogAtWithProducers(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	seed := []fencing.ProducerEntry{{ProducerID: 7, Epoch: 2, TxnFirstOffset: 4, CoordinatorEpoch: 3}}
	l, err := e.CreateLogAtWithProducers(tp0, replicaCfg, 10, seed)
	if err != nil {
		t.Fatal(err)
	}
	want := []fencing.OpenTxn{{ProducerID: 7, FirstOffset: 4}}
	check := func(l *Log, what string) {
		t.Helper()
		if got := l.OpenTransactions(); !slices.Equal(got, want) {
			t.Fatalf("%s: open transactions %v; want %v", what, got, want)
		}
		if fu, ok := l.FirstUnstableOffset(); !ok || fu != 10 {
			t.Fatalf("%s: first unstable offset %d, %v; want 10 (the log start)", what, fu, ok)
		}
	}
	check(l, "created")
	// A crash right after: the snapshot was durable before the log start.
	e2 := openEngine(t, fsys.Crash(), FsyncAlways, nil)
	l2 := openLog(t, e2, replicaCfg)
	if l2.LogStartOffset() != 10 || l2.LogEndOffset() != 10 {
		t.Fatalf("after a crash: start %d end %d; want 10, 10", l2.LogStartOffset(), l2.LogEndOffset())
	}
	check(l2, "after a crash")
	// The leader's ABORT at 10 (producer 7, epoch 2, coordinator epoch 3).
	marker := buildMarker(7, 2, 3, false, 1000)
	binary.BigEndian.PutUint64(marker, 10) // base offset (outside the CRC)
	if _, err := l2.AppendReplica(marker); err != nil {
		t.Fatal(err)
	}
	if got := l2.OpenTransactions(); len(got) != 0 {
		t.Fatalf("open after the ABORT: %v", got)
	}
	aborted, err := l2.AbortedTransactions(10, 11)
	if err != nil || !slices.Equal(aborted, []AbortedTxn{{ProducerID: 7, FirstOffset: 4}}) {
		t.Fatalf("aborted transactions of [10, 11): %v, %v; want producer 7 from 4", aborted, err)
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
}
