package cleaner

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// marker is a transaction marker (COMMIT or ABORT) of producer pid at
// epoch 1, coordinator epoch 4.
func marker(tb testing.TB, base, pid int64, commit bool) []byte {
	typ := uint16(0) // ABORT
	if commit {
		typ = 1
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ)
	val := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), 4)
	return tbatch{base: base, idem: true, pid: pid, epoch: 1, control: true, txn: true,
		records: []kmsg.Record{{Key: key, Value: val}}}.build(tb)
}

// txnData is a transactional data batch of producer pid (no sequence
// numbers, as TxnOffsetCommit writes them).
func txnData(tb testing.TB, base, pid int64, recs []kmsg.Record) []byte {
	return tbatch{base: base, idem: true, pid: pid, epoch: 1, seq: -1, txn: true, records: recs}.build(tb)
}

// outBatch is an output batch for assertions: its offsets, whether it
// is a control batch, and its records.
type outBatch struct {
	Base, Last int64
	Control    bool
	Records    int32
}

func batchesOf(tb testing.TB, out [][]byte) []outBatch {
	tb.Helper()
	var bs []outBatch
	for _, b := range out {
		h := hdr(tb, b)
		bs = append(bs, outBatch{Base: h.BaseOffset, Last: h.LastOffset(), Control: h.IsControl(), Records: h.RecordCount})
	}
	return bs
}

func wantBatches(tb testing.TB, got, want []outBatch) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("batches:\n got  %+v\n want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			tb.Fatalf("batch %d:\n got  %+v\n want %+v\n(all: %+v)", i, got[i], want[i], got)
		}
	}
}

// The __consumer_offsets case: a group's plain committed offset for key
// k, then a transactional offset commit for k that is aborted. The
// aborted record must not supersede the committed one: after cleaning,
// k's value is still the plain commit, the aborted record is gone (its
// batch, the producer's last data batch, is kept empty), and the ABORT
// marker stays (a batch of its transaction remains).
func TestAbortedTxnDoesNotShadowCommitted(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("g/t/0", "offset 10")}.build(t),
		txnData(t, 1, 7, kvs("g/t/0", "offset 20 (aborted)")),
		marker(t, 2, 7, false),
		tbatch{base: 3, records: kvs("other", "x")}.build(t),
	}
	p := oneSegment(4)
	p.NowMs, p.DeleteRetentionMs = 10_000, 0 // every horizon passed
	out, _ := mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{
		{Offset: 0, Key: "g/t/0", Value: "offset 10"},
		{Offset: 3, Key: "other", Value: "x"},
	})
	wantBatches(t, batchesOf(t, out), []outBatch{
		{Base: 0, Last: 0, Records: 1},
		{Base: 1, Last: 1, Records: 0},
		{Base: 2, Last: 2, Control: true, Records: 1},
		{Base: 3, Last: 3, Records: 1},
	})
	if !bytes.Equal(out[0], in[0]) || !bytes.Equal(out[2], in[2]) {
		t.Fatal("the committed batch and the ABORT marker must be copied byte for byte")
	}
	if h := hdr(t, out[1]); !h.IsTransactional() || h.ProducerID != 7 || h.Compression() != kafkaproto.CompressionNone {
		t.Fatalf("emptied aborted batch header %+v", h)
	}
}

// replayOpen replays output batches as storage replays a log (storage/txn.go
// replayBatch): a transactional data batch with records opens its
// producer's transaction, a COMMIT/ABORT marker closes it. It returns the
// producers left with an open transaction and their first offsets.
func replayOpen(tb testing.TB, out [][]byte) map[int64]int64 {
	tb.Helper()
	ps := fencing.NewProducerStates()
	var d kafkaproto.Decompressor
	defer d.Close()
	for _, b := range out {
		h := hdr(tb, b)
		if h.ProducerID < 0 {
			continue
		}
		if h.IsControl() {
			if h.RecordCount == 0 {
				continue
			}
			rs, err := d.Records(b)
			if err != nil || len(rs) == 0 {
				continue // storage's replay skips it
			}
			var k kmsg.ControlRecordKey
			var v kmsg.EndTxnMarker
			if k.ReadFrom(rs[0].Key) != nil || v.ReadFrom(rs[0].Value) != nil || k.Type > 1 {
				continue
			}
			ps.EndTxn(h.ProducerID, h.ProducerEpoch, v.CoordinatorEpoch, h.MaxTimestamp)
			continue
		}
		if h.IsTransactional() && h.RecordCount > 0 {
			ps.BeginTxn(h.ProducerID, h.ProducerEpoch, h.BaseOffset)
		}
	}
	open := map[int64]int64{}
	for _, o := range ps.OpenTransactions() {
		open[o.ProducerID] = o.FirstOffset
	}
	return open
}

// Committed, aborted and undecided transactions of several producers on
// overlapping keys, with exact output batches: committed records are
// plain data, aborted ones go (their batches too unless a producer's
// last), undecided ones are kept as they are and supersede nothing, and
// markers go once their horizon passed and no batch of their transaction
// is left.
func TestTransactionsExactOutput(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("k1", "a")}.build(t),
		txnData(t, 1, 5, kvs("k1", "b", "k2", "b")), // [1, 2] committed at 3
		marker(t, 3, 5, true),
		txnData(t, 4, 6, kvs("k1", "c")), // aborted at 6
		txnData(t, 5, 5, kvs("k2", "x")), // aborted at 7
		marker(t, 6, 6, false),
		marker(t, 7, 5, false),
		txnData(t, 8, 5, kvs("k3", "y")), // committed at 9, superseded at 11
		marker(t, 9, 5, true),
		txnData(t, 10, 6, kvs("k1", "d")), // undecided: its marker is past UpTo
		tbatch{base: 11, records: kvs("k3", "z")}.build(t),
	}
	for _, tc := range []struct {
		name    string
		nowMs   int64
		batches []outBatch
		markers int64
	}{
		{"horizon passed", 2000, []outBatch{
			{Base: 1, Last: 2, Records: 2},
			{Base: 3, Last: 3, Control: true, Records: 1},
			{Base: 8, Last: 8, Records: 0},
			{Base: 9, Last: 9, Control: true, Records: 1},
			{Base: 10, Last: 10, Records: 1},
			{Base: 11, Last: 11, Records: 1},
		}, 2},
		{"horizon not passed", 1999, []outBatch{
			{Base: 1, Last: 2, Records: 2},
			{Base: 3, Last: 3, Control: true, Records: 1},
			{Base: 6, Last: 6, Control: true, Records: 1},
			{Base: 7, Last: 7, Control: true, Records: 1},
			{Base: 8, Last: 8, Records: 0},
			{Base: 9, Last: 9, Control: true, Records: 1},
			{Base: 10, Last: 10, Records: 1},
			{Base: 11, Last: 11, Records: 1},
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Params{UpTo: 12, NowMs: tc.nowMs, DeleteRetentionMs: 1000, Segments: []Segment{{Base: 0, End: 12, SealedAtMs: 1000}}}
			out, st := mustClean(t, in, p)
			wantRecords(t, checkOutput(t, out), []orec{
				{Offset: 1, Key: "k1", Value: "b"},
				{Offset: 2, Key: "k2", Value: "b"},
				{Offset: 10, Key: "k1", Value: "d"},
				{Offset: 11, Key: "k3", Value: "z"},
			})
			wantBatches(t, batchesOf(t, out), tc.batches)
			for _, i := range []int{0, 1, len(out) - 2, len(out) - 1} {
				if src := map[int]int{0: 1, 1: 2, len(out) - 2: 9, len(out) - 1: 10}[i]; !bytes.Equal(out[i], in[src]) {
					t.Fatalf("output batch %d is not input batch %d byte for byte", i, src)
				}
			}
			if st.MarkersRemoved != tc.markers || st.AbortedRecordsRemoved != 2 {
				t.Fatalf("stats %+v", st)
			}
			// Only the undecided transaction is open when the output is
			// replayed (its marker follows past UpTo).
			if open := replayOpen(t, out); len(open) != 1 || open[6] != 10 {
				t.Fatalf("open transactions after replay %v, want producer 6 at 10", open)
			}
		})
	}
}

// An aborted batch that is its segment's last is kept empty, and so is
// its marker in the next segment; a marker that is a segment's last
// batch is kept even past its horizon; a batch emptied by an earlier
// cleaning still belongs to its transaction.
func TestTransactionsSegmentLastAndRecleaning(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("k", "plain")}.build(t),
		txnData(t, 1, 5, kvs("k", "aborted")), // last batch of segment [0, 2)
		tbatch{base: 2, records: kvs("j", "1")}.build(t),
		marker(t, 3, 5, false),
		txnData(t, 4, 5, kvs("j", "2")), // committed at 5, producer 5's last data batch
		marker(t, 5, 5, true),           // the last batch of [2, 6)
		tbatch{base: 6, records: kvs("j", "3")}.build(t),
		marker(t, 7, 9, true), // no data: the last batch of [6, 8)
	}
	p := Params{UpTo: 8, NowMs: 5000, DeleteRetentionMs: 0, Segments: []Segment{
		{Base: 0, End: 2, SealedAtMs: 1000}, {Base: 2, End: 6, SealedAtMs: 1000}, {Base: 6, End: 8, SealedAtMs: 1000}}}
	out, st := mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{
		{Offset: 0, Key: "k", Value: "plain"},
		{Offset: 6, Key: "j", Value: "3"},
	})
	want := []outBatch{
		{Base: 0, Last: 0, Records: 1},
		{Base: 1, Last: 1, Records: 0},
		{Base: 3, Last: 3, Control: true, Records: 1},
		{Base: 4, Last: 4, Records: 0},
		{Base: 5, Last: 5, Control: true, Records: 1},
		{Base: 6, Last: 6, Records: 1},
		{Base: 7, Last: 7, Control: true, Records: 1},
	}
	wantBatches(t, batchesOf(t, out), want)
	if st.MarkersRemoved != 0 {
		t.Fatalf("stats %+v", st)
	}
	if open := replayOpen(t, out); len(open) != 0 {
		t.Fatalf("open transactions after replay %v", open)
	}
	// Cleaning the output again changes nothing.
	out2, _ := mustClean(t, out, p)
	if len(out2) != len(out) {
		t.Fatalf("second cleaning: %+v", batchesOf(t, out2))
	}
	for i := range out {
		if !bytes.Equal(out[i], out2[i]) {
			t.Fatalf("second cleaning changed batch %d", i)
		}
	}
	// A later cleaning over more data (producer 5 writes again, so its
	// emptied batches are no longer its last) removes the emptied
	// batch 4, whose COMMIT stays as its segment's last; the same over
	// the original bytes.
	more := []outBatch{
		{Base: 0, Last: 0, Records: 1},
		{Base: 1, Last: 1, Records: 0}, // still segment [0, 2)'s last
		{Base: 3, Last: 3, Control: true, Records: 1},
		{Base: 5, Last: 5, Control: true, Records: 1},
		{Base: 6, Last: 6, Records: 1},
		{Base: 7, Last: 7, Control: true, Records: 1},
		{Base: 8, Last: 8, Records: 1},
	}
	p2 := p
	p2.UpTo = 9
	p2.Segments = append(p2.Segments[:3:3], Segment{Base: 8, End: 9, SealedAtMs: 1000})
	extra := tbatch{base: 8, idem: true, pid: 5, epoch: 1, seq: 5, records: kvs("z", "1")}.build(t)
	for name, src := range map[string][][]byte{"original": in, "cleaned": out} {
		got, _ := mustClean(t, append(slices.Clone(src), extra), p2)
		wantBatches(t, batchesOf(t, got), more)
		if open := replayOpen(t, got); len(open) != 0 {
			t.Fatalf("%s: open transactions after replay %v", name, open)
		}
	}
}
