package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// setAttrs sets a batch's attributes and fixes its CRC.
func setAttrs(b []byte, attrs int16) []byte {
	binary.BigEndian.PutUint16(b[batchAttributesOffset:], uint16(attrs))
	binary.BigEndian.PutUint32(b[batchCRCOffset:], crc32.Checksum(b[batchAttributesOffset:], castagnoli))
	return b
}

// txnBatch is a transactional data batch of pid.
func txnBatch(pid int64, epoch int16, seq int32, records int) []byte {
	return setAttrs(makeBatch(idem(pid, epoch, seq, records)), kafkaproto.AttrTransactional)
}

func appendTxn(t testing.TB, l *Log, pid int64, epoch int16, seq int32, records int, wantBase int64) {
	t.Helper()
	b := txnBatch(pid, epoch, seq, records)
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Append(b, h, 7)
	if err != nil || res.BaseOffset != wantBase || res.LastOffset != wantBase+int64(records)-1 {
		t.Fatalf("append txn batch of %d: %+v, %v; want base %d", pid, res, err, wantBase)
	}
}

func appendMarker(t testing.TB, l *Log, pid int64, coordinatorEpoch int32, commit bool, want int64) {
	t.Helper()
	off, err := l.AppendMarker(pid, 0, coordinatorEpoch, commit, 7)
	if err != nil || off != want {
		t.Fatalf("marker of %d (commit %v): offset %d, %v; want %d", pid, commit, off, err, want)
	}
}

// ots lists open transactions: pid, first offset, ...
func ots(v ...int64) []fencing.OpenTxn {
	var out []fencing.OpenTxn
	for i := 0; i < len(v); i += 2 {
		out = append(out, fencing.OpenTxn{ProducerID: v[i], FirstOffset: v[i+1]})
	}
	return out
}

func checkLSO(t testing.TB, l *Log, want int64) {
	t.Helper()
	if got := l.LastStableOffset(); got != want {
		t.Fatalf("LSO = %d, want %d (HW %d, open %v)", got, want, l.HighWatermark(), l.OpenTransactions())
	}
}

func checkOpen(t testing.TB, l *Log, want ...fencing.OpenTxn) {
	t.Helper()
	got := l.OpenTransactions()
	if len(got) != 0 || len(want) != 0 {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("open transactions = %v, want %v", got, want)
		}
	}
}

func checkAborted(t testing.TB, l *Log, from, to int64, want ...AbortedTxn) {
	t.Helper()
	got, err := l.AbortedTransactions(from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || len(want) != 0 {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("aborted in [%d, %d) = %v, want %v", from, to, got, want)
		}
	}
}

// txnCfg rolls every two or three batches.
var txnCfg = LogConfig{SegmentBytes: 230, RetentionBytes: -1, RetentionMs: -1}

// buildTxnLog appends (offsets):
//
//	0      plain
//	1-2    txn 1 (opens 1)
//	3      txn 2 (opens 3)
//	4-5    txn 1
//	6      COMMIT 1
//	7      ABORT 2     → {2, 3, 7, lso 8}
//	8      txn 3 (opens 8)
//	9      txn 1 (opens 9)
//	10     ABORT 1     → {1, 9, 10, lso 8}
//	11     ABORT 3     → {3, 8, 11, lso 12}
//	12     txn 2 (opens 12, left open)
//
// checking the LSO as it goes when lso (the HW follows the LEO).
func buildTxnLog(t testing.TB, l *Log, lso bool) {
	t.Helper()
	check := func(want int64) {
		t.Helper()
		if lso {
			checkLSO(t, l, want)
		}
	}
	appendSpec(t, l, plain(1, 40, 1, 0))
	check(1)
	appendTxn(t, l, 1, 0, 0, 2, 1)
	check(1)
	appendTxn(t, l, 2, 0, 0, 1, 3)
	appendTxn(t, l, 1, 0, 2, 2, 4)
	check(1)
	appendMarker(t, l, 1, 5, true, 6)
	check(3)
	appendMarker(t, l, 2, 5, false, 7)
	check(8)
	appendTxn(t, l, 3, 0, 0, 1, 8)
	appendTxn(t, l, 1, 0, 4, 1, 9)
	check(8)
	appendMarker(t, l, 1, 5, false, 10)
	check(8)
	appendMarker(t, l, 3, 5, false, 11)
	check(12)
	appendTxn(t, l, 2, 0, 1, 1, 12)
	check(12)
}

// checkTxnLog checks the state buildTxnLog leaves.
func checkTxnLog(t testing.TB, l *Log) {
	t.Helper()
	checkOpen(t, l, fencing.OpenTxn{ProducerID: 2, FirstOffset: 12})
	checkAborted(t, l, 0, 13, AbortedTxn{2, 3}, AbortedTxn{1, 9}, AbortedTxn{3, 8})
	checkAborted(t, l, 0, 3)
	checkAborted(t, l, 3, 4, AbortedTxn{2, 3})
	checkAborted(t, l, 7, 8, AbortedTxn{2, 3})
	checkAborted(t, l, 8, 9, AbortedTxn{3, 8})
	checkAborted(t, l, 10, 13, AbortedTxn{1, 9}, AbortedTxn{3, 8})
	checkAborted(t, l, 12, 13)
	for _, e := range producerEntries(l) {
		if want := map[int64]int32{1: 5, 2: 5, 3: 5}[e.ProducerID]; e.CoordinatorEpoch != want {
			t.Fatalf("producer %d coordinator epoch %d, want %d", e.ProducerID, e.CoordinatorEpoch, want)
		}
	}
	l.mu.Lock()
	// The ABORT of the transaction at 3 is in a later file.
	split := l.segmentForLocked(3) != l.segmentForLocked(7)
	l.mu.Unlock()
	if !split {
		t.Fatal("offsets 3 and 7 share a file: the test needs smaller segments")
	}
}

// readCommittedBases reads the log with ReadCommitted (or the Section
// variant) from 0 and returns every batch's base offset.
func readCommittedBases(t testing.TB, l *Log, section bool) []int64 {
	t.Helper()
	var bases []int64
	for off := int64(0); ; {
		var res ReadResult
		var err error
		if section {
			res, err = l.ReadSectionCommitted(off, 1<<20, true)
		} else {
			res, err = l.ReadCommitted(off, 1<<20, true)
		}
		if err != nil {
			t.Fatal(err)
		}
		data := res.Data
		if res.Section != nil {
			data, err = res.Section.Bytes()
			res.Section.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(data) == 0 {
			return bases
		}
		if err := kafkaproto.SplitBatches(data, func(_ []byte, h kafkaproto.BatchHeader) error {
			if h.LastOffset() >= res.LastStableOffset {
				return fmt.Errorf("batch [%d, %d] at or above the LSO %d", h.BaseOffset, h.LastOffset(), res.LastStableOffset)
			}
			bases = append(bases, h.BaseOffset)
			off = h.LastOffset() + 1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func txnIndexFiles(t testing.TB, fsys FS) map[int64][]byte {
	t.Helper()
	dir := filepath.Join(testDir, tp0.String())
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]byte{}
	for _, n := range names {
		if base, suf, ok := parseSegFile(n); ok && suf == txnIndexSuffix {
			b, err := readWhole(fsys, filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			out[base] = b
		}
	}
	return out
}

func TestTransactions(t *testing.T) { forEachIO(t, testTransactions) }

func testTransactions(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncNever, nil)
	l := openLog(t, e, txnCfg)

	// ReadCommitted stops at the first open transaction.
	appendSpec(t, l, plain(1, 40, 1, 0))
	appendTxn(t, l, 1, 0, 0, 2, 1)
	for _, section := range []bool{false, true} {
		if got := readCommittedBases(t, l, section); !reflect.DeepEqual(got, []int64{0}) {
			t.Fatalf("read committed (section %v) = %v, want [0]", section, got)
		}
	}
	if res, err := l.ReadCommitted(1, 1<<20, true); err != nil || res.Data != nil || res.LastStableOffset != 1 || res.HighWatermark != 3 {
		t.Fatalf("read committed at the LSO: %+v, %v", res, err)
	}
	if res, err := l.Read(1, 1<<20, true); err != nil || len(res.Data) == 0 {
		t.Fatalf("read uncommitted at 1: %d bytes, %v", len(res.Data), err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	fsys = env.newFS(t)
	e = openEngine(t, fsys, FsyncNever, nil)
	l = openLog(t, e, txnCfg)
	buildTxnLog(t, l, true)
	checkTxnLog(t, l)
	want := []int64{0, 1, 3, 4, 6, 7, 8, 9, 10, 11}
	for _, section := range []bool{false, true} {
		if got := readCommittedBases(t, l, section); !reflect.DeepEqual(got, want) {
			t.Fatalf("read committed (section %v) = %v, want %v", section, got, want)
		}
	}
	sealed := len(l.segs) - 1
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Every sealed file has its index; together they hold the three
	// ABORTs but the last one (in the active file, in memory) if any.
	files := txnIndexFiles(t, fsys)
	if len(files) != sealed {
		t.Fatalf("%d .txnindex files for %d sealed files", len(files), sealed)
	}
	entries := 0
	for _, b := range files {
		entries += len(b) / txnIndexEntrySize
	}
	if entries < 2 || entries > 3 {
		t.Fatalf("%d index entries in files", entries)
	}

	// Reopen: the indexes are loaded, the open transaction comes back
	// from the snapshot and the replay.
	e = openEngine(t, fsys, FsyncNever, nil)
	l = openLog(t, e, txnCfg)
	checkTxnLog(t, l)
	checkLSO(t, l, 12)
	e.Close()

	// Missing and inconsistent indexes are rebuilt identically.
	dir := filepath.Join(testDir, tp0.String())
	i := 0
	for base := range files {
		name := segName(dir, base, txnIndexSuffix)
		var err error
		if i%2 == 0 {
			err = fsys.Remove(name)
		} else {
			err = writeFileSync(fsys, name, []byte("garbage"))
		}
		if err != nil {
			t.Fatal(err)
		}
		i++
	}
	e = openEngine(t, fsys, FsyncNever, nil)
	l = openLog(t, e, txnCfg)
	checkTxnLog(t, l)
	checkLSO(t, l, 12)
	e.Close()
	if got := txnIndexFiles(t, fsys); !reflect.DeepEqual(got, files) {
		t.Fatalf("rebuilt index files differ:\n%v\n%v", got, files)
	}
}

// A follower appending the leader's bytes tracks the same transactions.
func TestTransactionsReplica(t *testing.T) {
	le := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer le.Close()
	leader := openLog(t, le, txnCfg)
	fe := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer fe.Close()
	follower := openLog(t, fe, LogConfig{SegmentBytes: 400, RetentionBytes: -1, RetentionMs: -1})
	buildTxnLog(t, leader, false)
	for _, chunk := range []int{100, 1 << 20} {
		copyLog(t, leader, follower, chunk)
		if chunk == 100 {
			checkTxnLog(t, follower)
		}
	}
	checkTxnLog(t, follower)
	checkLSO(t, follower, 12)
	if lp, fp := producerEntries(leader), producerEntries(follower); !reflect.DeepEqual(lp, fp) {
		t.Fatalf("producer state differs:\nleader   %+v\nfollower %+v", lp, fp)
	}
}

// TruncateTo above and below markers rolls transactions back.
func TestTransactionsTruncate(t *testing.T) { forEachIO(t, testTransactionsTruncate) }

func testTransactionsTruncate(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncNever, nil)
	cfg := txnCfg
	cfg.Replicated = true
	l := openLog(t, e, cfg)
	buildTxnLog(t, l, false)
	checkTxnLog(t, l)
	checkLSO(t, l, 0) // HW 0

	steps := []struct {
		to      int64
		open    []fencing.OpenTxn
		aborted []AbortedTxn
	}{
		{12, nil, []AbortedTxn{{2, 3}, {1, 9}, {3, 8}}},
		{11, ots(3, 8), []AbortedTxn{{2, 3}, {1, 9}}},
		{10, ots(3, 8, 1, 9), []AbortedTxn{{2, 3}}},
		{7, ots(2, 3), nil},
		{6, ots(1, 1, 2, 3), nil},
		{2, nil, nil}, // inside the batch [1, 2]: cut at 1
	}
	for _, s := range steps {
		if err := l.TruncateTo(s.to); err != nil {
			t.Fatal(err)
		}
		checkOpen(t, l, s.open...)
		checkAborted(t, l, 0, 20, s.aborted...)
		// Reopening finds the same state.
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = openEngine(t, fsys, FsyncNever, nil)
		l = openLog(t, e, cfg)
		checkOpen(t, l, s.open...)
		checkAborted(t, l, 0, 20, s.aborted...)
	}
	if l.LogEndOffset() != 1 {
		t.Fatalf("LEO %d, want 1", l.LogEndOffset())
	}
	l.AdvanceHighWatermark(1)
	checkLSO(t, l, 1)
	// The log goes on: a new transaction and its ABORT.
	appendTxn(t, l, 4, 0, 0, 1, 1)
	appendMarker(t, l, 4, 0, false, 2)
	checkOpen(t, l)
	checkAborted(t, l, 0, 3, AbortedTxn{4, 1})
	e.Close()
}

// A crash (CrashFS) after everything was durable: recovery rebuilds the
// open transactions and the active file's index from the bytes, and a
// sealed file's index lost with it.
func TestTransactionsCrashRecovery(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	l := openLog(t, e, txnCfg)
	buildTxnLog(t, l, false)
	if err := l.WaitDurable(t.Context(), 12); err != nil {
		t.Fatal(err)
	}
	checkLSO(t, l, 12)
	// A torn .txnindex of the first file (as if written without fsync).
	dir := filepath.Join(testDir, tp0.String())
	if err := writeFileSync(fsys, segName(dir, 0, txnIndexSuffix), make([]byte, txnIndexEntrySize-1)); err != nil {
		t.Fatal(err)
	}
	crashed := fsys.Crash()
	e.Close()

	e2 := openEngine(t, crashed, FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, txnCfg)
	checkTxnLog(t, l2)
	checkLSO(t, l2, 12)
	// An ABORT after recovery is fenced by the coordinator epoch.
	if _, err := l2.AppendMarker(2, 0, 4, false, 7); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("marker from an older coordinator: %v", err)
	}
	appendMarker(t, l2, 2, 6, false, 13)
	checkOpen(t, l2)
	checkAborted(t, l2, 12, 14, AbortedTxn{2, 12})
	if err := l2.WaitDurable(t.Context(), 13); err != nil {
		t.Fatal(err)
	}
	checkLSO(t, l2, 14)
}

// An open transaction whose first offset DeleteRecords removed holds the
// LSO at the log start offset, never below it.
func TestLastStableOffsetAtLogStart(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, txnCfg)
	buildTxnLog(t, l, false)
	appendSpec(t, l, plain(1, 40, 1, 0)) // 13
	checkLSO(t, l, 12)
	if start, err := l.DeleteRecordsBefore(13); err != nil || start != 13 {
		t.Fatalf("delete records: %d, %v", start, err)
	}
	checkLSO(t, l, 13)
	if first, ok := l.FirstUnstableOffset(); !ok || first != 13 {
		t.Fatalf("first unstable offset %d, %v; want 13", first, ok)
	}
	if res, err := l.ReadCommitted(13, 1<<20, true); err != nil || res.Data != nil || res.LastStableOffset != 13 {
		t.Fatalf("read committed at the log start: %+v, %v", res, err)
	}
	if p := l.Producers(); len(p) != 3 || p[1].ProducerID != 2 || p[1].TxnFirstOffset != 12 || p[1].CoordinatorEpoch != 5 {
		t.Fatalf("producers = %+v", p)
	}
}

func TestAppendMarkerChecks(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, txnCfg)
	// A marker for an unknown producer is written.
	appendMarker(t, l, 5, 3, true, 0)
	if got := producerEntries(l); len(got) != 1 || got[0].ProducerID != 5 || got[0].CoordinatorEpoch != 3 || got[0].TxnFirstOffset != fencing.NoTxn {
		t.Fatalf("producer state after marker = %+v", got)
	}
	if _, err := l.AppendMarker(5, 0, 2, false, 7); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("older coordinator epoch: %v", err)
	}
	// A newer producer epoch fences markers of the older one.
	if first, ok := l.FirstUnstableOffset(); ok {
		t.Fatalf("first unstable offset %d without a transaction", first)
	}
	appendTxn(t, l, 6, 2, 0, 1, 1)
	if first, ok := l.FirstUnstableOffset(); !ok || first != 1 {
		t.Fatalf("first unstable offset %d, %v; want 1", first, ok)
	}
	if _, err := l.AppendMarker(6, 1, 0, false, 7); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("older producer epoch: %v", err)
	}
	if l.LogEndOffset() != 2 {
		t.Fatalf("refused markers were written: LEO %d", l.LogEndOffset())
	}
	// The marker batch as Kafka writes it.
	res, err := l.Read(0, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	h, err := kafkaproto.ParseBatchHeader(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := parseMarker(res.Data[:h.Size()], &h)
	if err != nil || !ok || !m.commit || m.coordinatorEpoch != 3 || !h.IsControl() || !h.IsTransactional() ||
		h.ProducerID != 5 || h.ProducerEpoch != 0 || h.BaseSequence != -1 || h.RecordCount != 1 || h.PartitionLeaderEpoch != 7 {
		t.Fatalf("marker batch %+v: %+v %v %v", h, m, ok, err)
	}
	// A client control batch whose record is no marker is refused.
	bad := setAttrs(makeBatch(idem(9, 0, -1, 1)), kafkaproto.AttrControl|kafkaproto.AttrTransactional)
	bh, err := kafkaproto.ValidateBatch(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(bad, bh, 7); !errors.Is(err, kafkaproto.ErrCorruptBatch) {
		t.Fatalf("bad control batch: %v", err)
	}
}

// Snapshot format version 1 (before transactions) still loads.
func TestSnapshotV1Loads(t *testing.T) {
	entries := []fencing.ProducerEntry{{ProducerID: 3, Epoch: 2, LastTimestamp: 9,
		Batches: []fencing.ProducerBatch{{FirstSeq: 0, LastSeq: 4, FirstOffset: 10, LastOffset: 14}}}}
	got, err := decodeSnapshot(encodeSnapshotVersion(entries, 1))
	if err != nil {
		t.Fatal(err)
	}
	entries[0].TxnFirstOffset, entries[0].CoordinatorEpoch = fencing.NoTxn, fencing.NoTxn
	if !reflect.DeepEqual(got, entries) {
		t.Fatalf("v1 decoded %+v, want %+v", got, entries)
	}
	entries[0].TxnFirstOffset, entries[0].CoordinatorEpoch = 12, 4
	if got, err = decodeSnapshot(encodeSnapshot(entries)); err != nil || !reflect.DeepEqual(got, entries) {
		t.Fatalf("v2 decoded %+v, %v; want %+v", got, err, entries)
	}

	// A log whose snapshots are all version 1 opens with the producers.
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncNever, nil)
	l := openLog(t, e, txnCfg)
	for i := range 6 {
		appendSpec(t, l, idem(42, 1, int32(i), 1))
	}
	want := producerEntries(l)
	e.Close()
	dir := filepath.Join(testDir, tp0.String())
	names, _ := fsys.ReadDir(dir)
	n := 0
	for _, name := range names {
		if !strings.HasSuffix(name, snapshotSuffix) {
			continue
		}
		b, err := readWhole(fsys, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		es, err := decodeSnapshot(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFileSync(fsys, filepath.Join(dir, name), encodeSnapshotVersion(es, 1)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no snapshots")
	}
	e = openEngine(t, fsys, FsyncNever, nil)
	defer e.Close()
	l = openLog(t, e, txnCfg)
	if got := producerEntries(l); !reflect.DeepEqual(got, want) {
		t.Fatalf("after v1 snapshots: %+v, want %+v", got, want)
	}
}

// Cleaned ranges (offset gaps, emptied and partly emptied batches, an
// emptied marker) keep transactions right, by recovery and by
// AppendReplicaGap:
//
//	file 0:  [0,1] txn 7  [5] ABORT 7 (gap 2-4)  [6,9] empty txn 8
//	file 10: [12] emptied marker of 8 (gap 10-11)  [14,19] txn 9, only 15 kept
//	file 20: [22] COMMIT 9  [25] txn 7 (open)
func TestTransactionsCleanedRanges(t *testing.T) {
	marker := func(base int64, pid int64, commit bool) []byte {
		b := buildMarker(pid, 0, 1, commit, 100+base)
		kafkaproto.SetBaseOffset(b, base)
		kafkaproto.SetPartitionLeaderEpoch(b, 1)
		return b
	}
	txn := func(s cleanedSpec) []byte {
		s.epoch, s.valLen, s.ts = 1, 10, 100+s.base
		return setAttrs(makeCleanedBatch(s), kafkaproto.AttrTransactional)
	}
	emptied := setAttrs(makeCleanedBatch(cleanedSpec{base: 12, pid: 8, seq: -1, epoch: 1, ts: 112}), kafkaproto.AttrControl|kafkaproto.AttrTransactional)
	binary.BigEndian.PutUint32(emptied[53:], 0xffffffff) // base sequence -1
	setAttrs(emptied, kafkaproto.AttrControl|kafkaproto.AttrTransactional)
	files := map[int64][][]byte{
		0:  {txn(cleanedSpec{base: 0, delta: 1, keep: full(2), pid: 7}), marker(5, 7, false), txn(cleanedSpec{base: 6, delta: 3, pid: 8})},
		10: {emptied, txn(cleanedSpec{base: 14, delta: 5, keep: []int32{1}, pid: 9})},
		20: {marker(22, 9, true), txn(cleanedSpec{base: 25, keep: full(1), pid: 7, seq: 2})},
	}
	check := func(l *Log) {
		t.Helper()
		checkOpen(t, l, fencing.OpenTxn{ProducerID: 7, FirstOffset: 25})
		checkAborted(t, l, 0, 26, AbortedTxn{7, 0})
		checkAborted(t, l, 5, 6, AbortedTxn{7, 0})
		checkAborted(t, l, 6, 26)
		checkLSO(t, l, 25)
	}
	fsys := NewCrashFS()
	writeRawLog(t, fsys, files)
	e := openEngine(t, fsys, FsyncNever, nil)
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1})
	check(l)
	e.Close()
	if got := txnIndexFiles(t, fsys); len(got[0]) != txnIndexEntrySize || len(got[10]) != 0 || len(got) != 2 {
		t.Fatalf("rebuilt index files %v", got)
	}

	var all []byte
	for _, base := range []int64{0, 10, 20} {
		for _, b := range files[base] {
			all = append(all, b...)
		}
	}
	e2 := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e2.Close()
	l2 := openLog(t, e2, LogConfig{SegmentBytes: 150, RetentionBytes: -1, RetentionMs: -1})
	if _, err := l2.AppendReplicaGap(all); err != nil {
		t.Fatal(err)
	}
	check(l2)
}

// A rewrite (cleaning) that keeps the markers keeps the aborted index of
// the files it replaces, in memory and on disk.
func TestTransactionsRewrite(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncNever, nil)
	l := openLog(t, e, txnCfg)
	buildTxnLog(t, l, false)
	r, err := l.BeginRewrite(12)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Input(0, func(b []byte, _ kafkaproto.BatchHeader) error {
		return r.Write(append([]byte(nil), b...))
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(1); err != nil {
		t.Fatal(err)
	}
	checkTxnLog(t, l)
	e.Close()
	e = openEngine(t, fsys, FsyncNever, nil)
	defer e.Close()
	l = openLog(t, e, txnCfg)
	checkTxnLog(t, l)
}

// BenchmarkAppendTransactional compares Append of transactional batches
// (one open transaction, as a producer inside a transaction writes) with
// idempotent ones, with 1,000 other producers (in open transactions for
// the transactional kind) and a COMMIT every 1,000 batches.
func BenchmarkAppendTransactional(b *testing.B) {
	for _, run := range []struct{ fs, kind string }{{"disk", "idempotent"}, {"disk", "transactional"}, {"mem", "idempotent"}, {"mem", "transactional"}} {
		kind := run.kind
		b.Run("fs="+run.fs+"/"+kind, func(b *testing.B) {
			// mem (CrashFS) leaves out the file system's noise.
			var e *Engine
			if run.fs == "mem" {
				e = openEngine(b, NewCrashFS(), FsyncNever, nil)
			} else {
				e = benchEngine(b, b.TempDir(), IOSyscall, FsyncNever)
			}
			defer e.Close()
			l, err := e.OpenLog(TopicPartition{Topic: "bench", Partition: 0}, LogConfig{SegmentBytes: 256 << 20, RetentionBytes: -1, RetentionMs: -1})
			if err != nil {
				b.Fatal(err)
			}
			// 1,000 other producers, each with an open transaction
			// when kind is transactional.
			for pid := int64(1); pid <= 1000; pid++ {
				s := idem(pid, 0, 0, 1)
				s.valueSize = 10
				bb := makeBatch(s)
				if kind == "transactional" {
					setAttrs(bb, kafkaproto.AttrTransactional)
				}
				h, _ := validate(bb)
				if _, err := l.Append(bb, h, 1); err != nil {
					b.Fatal(err)
				}
			}
			s := idem(5000, 0, 0, 10)
			s.valueSize = 100
			proto := makeBatch(s)
			b.SetBytes(int64(len(proto)))
			b.ResetTimer()
			for i := range b.N {
				bb := append([]byte(nil), proto...)
				binary.BigEndian.PutUint32(bb[53:], uint32(i*10)) // base sequence
				attrs := int16(0)
				if kind == "transactional" {
					attrs = kafkaproto.AttrTransactional
				}
				setAttrs(bb, attrs)
				h, _ := validate(bb)
				if _, err := l.Append(bb, h, 1); err != nil {
					b.Fatal(err)
				}
				if kind == "transactional" && i%1000 == 999 {
					if _, err := l.AppendMarker(5000, 0, 0, true, 1); err != nil {
						b.Fatal(err)
					}
				}
				if i%1000 == 999 {
					// Both kinds read the LSO as a fetch does.
					l.LastStableOffset()
				}
			}
		})
	}
}

// After a crash at any point of buildTxnLog (CrashTorn: unsynced bytes
// lost or torn), the recovered log's transaction state is what a fresh
// replica appending the surviving bytes computes.
func TestTransactionsCrashAnyPoint(t *testing.T) {
	steps := []func(l *Log){
		func(l *Log) { appendSpec(t, l, plain(1, 40, 1, 0)) },
		func(l *Log) { appendTxn(t, l, 1, 0, 0, 2, 1) },
		func(l *Log) { appendTxn(t, l, 2, 0, 0, 1, 3) },
		func(l *Log) { appendTxn(t, l, 1, 0, 2, 2, 4) },
		func(l *Log) { appendMarker(t, l, 1, 5, true, 6) },
		func(l *Log) { appendMarker(t, l, 2, 5, false, 7) },
		func(l *Log) { appendTxn(t, l, 3, 0, 0, 1, 8) },
		func(l *Log) { appendTxn(t, l, 1, 0, 4, 1, 9) },
		func(l *Log) { appendMarker(t, l, 1, 5, false, 10) },
		func(l *Log) { appendMarker(t, l, 3, 5, false, 11) },
		func(l *Log) { appendTxn(t, l, 2, 0, 1, 1, 12) },
	}
	for k := 1; k <= len(steps); k++ {
		for _, seed := range []int64{1, 2, 3} {
			fsys := NewCrashFS()
			e := openEngine(t, fsys, FsyncNever, nil)
			l := openLog(t, e, txnCfg)
			for _, step := range steps[:k] {
				step(l)
			}
			crashed := fsys.CrashTorn(seed*100 + int64(k))
			e.Close()

			e2 := openEngine(t, crashed, FsyncNever, nil)
			l2 := openLog(t, e2, txnCfg)
			re := openEngine(t, NewCrashFS(), FsyncNever, nil)
			ref := openLog(t, re, txnCfg)
			if l2.LogEndOffset() > 0 {
				copyLog(t, l2, ref, 1<<20)
			}
			leo := l2.LogEndOffset()
			what := fmt.Sprintf("crash after step %d (seed %d, LEO %d)", k, seed, leo)
			if got, want := producerEntries(l2), producerEntries(ref); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: producers\n%+v\nwant %+v", what, got, want)
			}
			got, _ := l2.AbortedTransactions(0, leo+1)
			want, _ := ref.AbortedTransactions(0, leo+1)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: aborted %v, want %v", what, got, want)
			}
			if a, b := l2.LastStableOffset(), ref.LastStableOffset(); a != b {
				t.Fatalf("%s: LSO %d, want %d", what, a, b)
			}
			e2.Close()
			re.Close()
		}
	}
}
