package storage

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/storage/cleaner"
)

// keyed is a one-record batch key=value; pid ≥ 0 makes it idempotent
// (sequence seq), txn transactional.
func keyed(key, value string, pid int64, seq int32, txn bool) []byte {
	b := kafkaproto.AppendBatch(nil, 1000, []kafkaproto.KV{{Key: []byte(key), Value: []byte(value)}})
	if pid >= 0 {
		binary.BigEndian.PutUint64(b[batchProducerIDOffset:], uint64(pid))
		binary.BigEndian.PutUint16(b[batchEpochOffset:], 0)
		binary.BigEndian.PutUint32(b[53:], uint32(seq))
	}
	attrs := int16(0)
	if txn {
		attrs = kafkaproto.AttrTransactional
	}
	return setAttrs(b, attrs)
}

func appendKeyed(t testing.TB, l *Log, b []byte, want int64) {
	t.Helper()
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := l.Append(b, h, 7); err != nil || res.BaseOffset != want {
		t.Fatalf("append at %d: %+v, %v", want, res, err)
	}
}

// cleanLog runs the cleaner over [logStart, upTo) of l (one chain
// segment sealed at 0, every horizon passed) through a rewrite and
// commits it as generation gen; it returns the output batches.
func cleanLog(t testing.TB, l *Log, upTo int64, gen int32) [][]byte {
	t.Helper()
	r, err := l.BeginRewrite(upTo)
	if err != nil {
		t.Fatal(err)
	}
	start := l.LogStartOffset()
	src := func(fn func([]byte) error) error {
		return r.Input(start, func(b []byte, _ kafkaproto.BatchHeader) error { return fn(b) })
	}
	var out [][]byte
	p := cleaner.Params{Start: start, UpTo: upTo, NowMs: 10_000, Segments: []cleaner.Segment{{Base: start, End: upTo}}}
	if _, err := cleaner.Clean(src, p, func(b []byte) error {
		out = append(out, bytes.Clone(b))
		return r.Write(b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(gen); err != nil {
		t.Fatal(err)
	}
	return out
}

// A cleaning of a log with committed, aborted and undecided transactions
// spanning files (data in one file, the marker in a later one, the last
// ABORT past the cleaned range): the rewritten files' .txnindex is what
// a fresh recovery builds from their bytes, read_committed sees the same
// aborted transactions, and replaying the output leaves open only the
// transaction whose marker follows the range.
func TestCleanedTransactionIndex(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncNever, nil)
	cfg := LogConfig{SegmentBytes: 200, RetentionBytes: -1, RetentionMs: -1}
	l := openLog(t, e, cfg)
	appendKeyed(t, l, keyed("k", "v0", -1, 0, false), 0)
	appendKeyed(t, l, keyed("k", "aborted 1", 1, 0, true), 1)
	appendKeyed(t, l, keyed("j", "committed", 2, 0, true), 2)
	appendKeyed(t, l, keyed("m", "1", -1, 0, false), 3)
	appendMarker(t, l, 1, 1, false, 4)
	appendMarker(t, l, 2, 1, true, 5)
	appendKeyed(t, l, keyed("k", "undecided", 3, 0, true), 6)
	appendKeyed(t, l, keyed("k", "aborted 2", 1, 1, true), 7)
	appendKeyed(t, l, keyed("z", "1", -1, 0, false), 8)
	appendMarker(t, l, 1, 1, false, 9)
	appendKeyed(t, l, keyed("q", "1", -1, 0, false), 10)
	appendMarker(t, l, 3, 1, false, 11) // past the cleaned range
	appendKeyed(t, l, keyed("k", "v12", -1, 0, false), 12)
	if bases := fileBases(l); len(bases) < 4 {
		t.Fatalf("files %v: the test wants transactions across files", bases)
	}
	before, err := l.AbortedTransactions(0, 13)
	if err != nil || !reflect.DeepEqual(before, []AbortedTxn{{1, 1}, {1, 7}, {3, 6}}) {
		t.Fatalf("aborted before cleaning %v, %v", before, err)
	}

	out := cleanLog(t, l, 11, 1)
	var bases []int64
	for _, b := range out {
		bases = append(bases, batchBase(b))
	}
	// 1 aborted (dropped), 4 its ABORT (removed), 7 aborted (kept empty:
	// producer 1's last data batch) and its ABORT 9 kept; 6 undecided.
	if want := []int64{0, 2, 3, 5, 6, 7, 8, 9, 10}; !reflect.DeepEqual(bases, want) {
		t.Fatalf("cleaned batches at %v, want %v", bases, want)
	}
	// 9's transaction has no data left open (7 is empty): the entry spans
	// the marker only; producer 3 was open from 6 then.
	want := []AbortedTxn{{1, 9}, {3, 6}}
	check := func(l *Log, what string) {
		t.Helper()
		got, err := l.AbortedTransactions(0, 13)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: aborted %v, %v; want %v", what, got, err, want)
		}
		checkOpen(t, l)
		if lso, hw := l.LastStableOffset(), l.HighWatermark(); lso != 13 || hw != 13 {
			t.Fatalf("%s: LSO %d, HW %d; want 13", what, lso, hw)
		}
	}
	check(l, "after the cleaning")
	written := txnIndexFiles(t, fsys)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart loads the written indexes; a fresh recovery without them
	// rebuilds the same bytes.
	e = openEngine(t, fsys, FsyncNever, nil)
	l = openLog(t, e, cfg)
	check(l, "after a restart")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := txnIndexFiles(t, fsys); !reflect.DeepEqual(got, written) {
		t.Fatalf("index files changed by a restart:\n%x\n%x", got, written)
	}
	dir := filepath.Join(testDir, tp0.String())
	for base := range written {
		if err := fsys.Remove(segName(dir, base, txnIndexSuffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	e = openEngine(t, fsys, FsyncNever, nil)
	l = openLog(t, e, cfg)
	check(l, "after a recovery that rebuilt the indexes")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := txnIndexFiles(t, fsys); !reflect.DeepEqual(got, written) {
		t.Fatalf("rebuilt index files differ from the rewrite's:\n got  %x\n want %x", got, written)
	}

	// The output alone, replayed by a replica, leaves open only producer
	// 3's transaction, whose ABORT follows the cleaned range.
	e2 := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	if _, err := l2.AppendReplicaGap(slices.Concat(out...)); err != nil {
		t.Fatal(err)
	}
	checkOpen(t, l2, fencing.OpenTxn{ProducerID: 3, FirstOffset: 6})
}

// An aborted-transaction index entry whose last stable offset is below
// its first offset (another transaction was open from earlier when the
// ABORT was written) is valid.
func TestTxnIndexEntryLSOBelowFirst(t *testing.T) {
	es := []abortedEntry{{pid: 1, first: 9, last: 10, lso: 8}, {pid: 2, first: 3, last: 11, lso: 12}}
	got, err := decodeTxnIndex(encodeTxnIndex(es), 0, 20)
	if err != nil || !reflect.DeepEqual(got, es) {
		t.Fatalf("decode: %v, %v", got, err)
	}
	for _, bad := range []abortedEntry{{pid: 1, first: 9, last: 10, lso: 12}, {pid: 1, first: 9, last: 10, lso: -1}, {pid: 1, first: 11, last: 10, lso: 11}} {
		if _, err := decodeTxnIndex(encodeTxnIndex([]abortedEntry{bad}), 0, 20); err == nil {
			t.Fatalf("entry %+v accepted", bad)
		}
	}
}
