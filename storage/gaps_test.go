package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
)

// cleanedSpec describes a batch as a cleaning leaves it: offsets
// [base, base+delta], records kept only at the given offset deltas (none:
// an empty batch), timestamps ts+delta.
type cleanedSpec struct {
	base   int64
	delta  int32
	keep   []int32
	ts     int64
	epoch  int32 // partition leader epoch
	pid    int64 // -1: not idempotent
	seq    int32
	fill   byte
	valLen int
}

// makeCleanedBatch hand-encodes a v2 batch with the records of s.keep and
// LastOffsetDelta s.delta (the record count may be below delta + 1).
func makeCleanedBatch(s cleanedSpec) []byte {
	var recs []byte
	maxTs := s.ts + int64(s.delta)
	for _, d := range s.keep {
		var body []byte
		body = append(body, 0)
		body = binary.AppendVarint(body, int64(d)) // timestamp delta
		body = binary.AppendVarint(body, int64(d)) // offset delta
		body = binary.AppendVarint(body, 1)        // key: 1 byte
		body = append(body, byte(d))
		body = binary.AppendVarint(body, int64(s.valLen))
		for j := 0; j < s.valLen; j++ {
			body = append(body, s.fill+byte(int(d)+j))
		}
		body = binary.AppendVarint(body, 0)
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	pid, pepoch, seq := s.pid, int16(0), s.seq
	if pid < 0 {
		pid, pepoch, seq = -1, -1, -1
	}
	b := make([]byte, kafkaproto.BatchHeaderSize, kafkaproto.BatchHeaderSize+len(recs))
	binary.BigEndian.PutUint64(b[0:], uint64(s.base))
	binary.BigEndian.PutUint32(b[8:], uint32(kafkaproto.BatchHeaderSize-12+len(recs)))
	binary.BigEndian.PutUint32(b[12:], uint32(s.epoch))
	b[16] = 2
	binary.BigEndian.PutUint16(b[21:], 0)
	binary.BigEndian.PutUint32(b[23:], uint32(s.delta))
	binary.BigEndian.PutUint64(b[27:], uint64(s.ts))
	binary.BigEndian.PutUint64(b[35:], uint64(maxTs))
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(pepoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[57:], uint32(len(s.keep)))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// full keeps every record of a batch of n offsets.
func full(n int32) []int32 {
	k := make([]int32, n)
	for i := range k {
		k[i] = int32(i)
	}
	return k
}

// gappedFiles is a log with offset gaps and empty batches in sealed and
// active files, as cleaning (and AppendReplicaGap) leave them:
//
//	file 0:  [0,1] (2 records)  [5] (gap 2-4)  [6,9] empty
//	file 10: [12,13] (gap 10-11, only 13 kept)  [20] (gap 14-19)
//	file 21: [25,26] (gap 21-24)  [30] (gap 27-29)   (active)
func gappedFiles() (files map[int64][][]byte, all [][]byte) {
	specs := map[int64][]cleanedSpec{
		0: {
			{base: 0, delta: 1, keep: full(2), ts: 100, epoch: 1, pid: 7, seq: 0},
			{base: 5, delta: 0, keep: full(1), ts: 105, epoch: 1, pid: -1},
			{base: 6, delta: 3, keep: nil, ts: 106, epoch: 2, pid: 7, seq: 2},
		},
		10: {
			{base: 12, delta: 1, keep: []int32{1}, ts: 112, epoch: 2, pid: -1},
			{base: 20, delta: 0, keep: full(1), ts: 120, epoch: 3, pid: -1},
		},
		21: {
			{base: 25, delta: 1, keep: full(2), ts: 125, epoch: 3, pid: 7, seq: 6},
			{base: 30, delta: 0, keep: full(1), ts: 130, epoch: 4, pid: -1},
		},
	}
	files = map[int64][][]byte{}
	for _, base := range []int64{0, 10, 21} {
		for _, s := range specs[base] {
			s.valLen, s.fill = 10, byte(s.base)
			b := makeCleanedBatch(s)
			files[base] = append(files[base], b)
			all = append(all, b)
		}
	}
	return files, all
}

// writeRawLog writes segment files (no index files) durably into tp0's
// directory.
func writeRawLog(t testing.TB, fsys FS, files map[int64][][]byte) {
	t.Helper()
	dir := filepath.Join(testDir, tp0.String())
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for base, batches := range files {
		if err := writeFileSync(fsys, segName(dir, base, logSuffix), bytes.Join(batches, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, testDir, "/"} {
		if err := fsys.SyncDir(d); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBatches requires the log to hold exactly want (whole batches, in
// order) from its start to its LEO, and a read from every offset in
// [start, LEO) to return first the batch holding it or, in a gap, the
// next one.
func checkBatches(t testing.TB, l *Log, want [][]byte) {
	t.Helper()
	var got [][]byte
	start, leo := l.LogStartOffset(), l.LogEndOffset()
	for off := start; off < leo; {
		res, err := l.ReadUncommitted(off, 1, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		h, err := kafkaproto.ParseBatchHeader(res.Data)
		if err != nil || h.Size() != len(res.Data) {
			t.Fatalf("read at %d: %d bytes, header %+v, %v", off, len(res.Data), h, err)
		}
		got = append(got, res.Data)
		off = h.LastOffset() + 1
	}
	if len(got) != len(want) {
		t.Fatalf("log [%d, %d) holds %d batches, want %d", start, leo, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("batch %d: got base %d (%d bytes), want base %d (%d bytes)", i, batchBase(got[i]), len(got[i]), batchBase(want[i]), len(want[i]))
		}
	}
	for off := start; off < leo; off++ {
		res, err := l.ReadUncommitted(off, 1, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		var exp []byte
		for _, b := range want {
			h, _ := kafkaproto.ParseBatchHeader(b)
			if h.LastOffset() >= off {
				exp = b
				break
			}
		}
		if !bytes.Equal(res.Data, exp) {
			t.Fatalf("read at %d: batch at %d, want the batch at %d", off, batchBase(res.Data), batchBase(exp))
		}
	}
}

// TestRecoveryKeepsGaps: a restart over files with offset gaps and empty
// batches (sealed and active) keeps every batch, rebuilds and then trusts
// the sealed files' indexes, and reads from an offset in a gap return the
// next batch. (Before gaps were accepted, recovery took the first gap for
// corruption and truncated the log at offset 2.)
func TestRecoveryKeepsGaps(t *testing.T) {
	fsys := NewCrashFS()
	files, all := gappedFiles()
	writeRawLog(t, fsys, files)
	leo := int64(31)
	for round := 0; round < 3; round++ {
		e := openEngine(t, fsys, FsyncAlways, nil)
		l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
		if l.LogStartOffset() != 0 || l.LogEndOffset() != leo {
			t.Fatalf("round %d: log [%d, %d), want [0, %d)", round, l.LogStartOffset(), l.LogEndOffset(), leo)
		}
		checkBatches(t, l, all)
		if got := epochEntries(l); fmt.Sprint(got) != "[{1 0} {2 6} {3 20} {4 30}]" {
			t.Fatalf("round %d: epochs %v", round, got)
		}
		// Producer 7: its last batch is [25,26] with sequence 6-7; the
		// empty batch [6,9] counted sequences 2-5.
		ps := producerEntries(l)
		if len(ps) != 1 || ps[0].ProducerID != 7 || fmt.Sprint(ps[0].Batches) != "[{0 1 0 1} {2 5 6 9} {6 7 25 26}]" {
			t.Fatalf("round %d: producers %+v", round, ps)
		}
		if round == 1 {
			// Appends go on after the gapped active file.
			res, b := appendEpoch(t, l, plain(1, 4, 131, 9), 4)
			if res.BaseOffset != 31 {
				t.Fatalf("append at %d, want 31", res.BaseOffset)
			}
			all = append(all, b)
			leo = 32
			checkBatches(t, l, all)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		for _, base := range []int64{0, 10} {
			if _, err := fsys.Stat(segName(filepath.Join(testDir, tp0.String()), base, indexSuffix)); err != nil {
				t.Fatalf("round %d: index of sealed file %d: %v", round, base, err)
			}
		}
	}
}

// TestRecoveryStopsAtStaleBatch: in an active file, a batch whose offsets
// lie below the expected offset (a recycled file's earlier life) ends the
// valid data like a torn tail, gaps or not.
func TestRecoveryStopsAtStaleBatch(t *testing.T) {
	fsys := NewCrashFS()
	files, all := gappedFiles()
	stale := makeCleanedBatch(cleanedSpec{base: 3, delta: 0, keep: full(1), ts: 1, epoch: 1, pid: -1})
	files[21] = append(append([][]byte(nil), files[21]...), stale, files[21][1])
	writeRawLog(t, fsys, files)
	e := openEngine(t, fsys, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	if l.LogEndOffset() != 31 {
		t.Fatalf("leo %d, want 31", l.LogEndOffset())
	}
	checkBatches(t, l, all)
	fi, err := fsys.Stat(segName(filepath.Join(testDir, tp0.String()), 21, logSuffix))
	if err != nil || fi.Size() != int64(len(files[21][0])+len(files[21][1])) {
		t.Fatalf("active file after recovery: %v %v", fi, err)
	}
}

// TestAppendReplicaGap: a learner copies a cleaned sealed range (gaps,
// empty and partly emptied batches) byte for byte, rolling files between
// gapped batches; the copy survives a crash; AppendReplica stays strict.
func TestAppendReplicaGap(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	cfg := LogConfig{SegmentBytes: 200, RetentionBytes: -1, RetentionMs: -1, Replicated: true}
	l := openLog(t, e, cfg)
	_, all := gappedFiles()
	if _, err := l.AppendReplica(bytes.Join(all[:2], nil)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("AppendReplica over a gap: %v", err)
	}
	if _, err := l.AppendReplica(all[2]); err == nil {
		t.Fatal("AppendReplica took an empty batch")
	}
	// Decreasing offsets within b, and a first batch below the LEO.
	if _, err := l.AppendReplicaGap(bytes.Join([][]byte{all[1], all[0]}, nil)); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("decreasing: %v", err)
	}
	res, err := l.AppendReplicaGap(bytes.Join(all[:4], nil))
	if err != nil || res.BaseOffset != 0 || res.LastOffset != 13 {
		t.Fatalf("append gap: %+v %v", res, err)
	}
	if _, err := l.AppendReplicaGap(all[3]); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("below the LEO: %v", err)
	}
	if res, err := l.AppendReplicaGap(bytes.Join(all[4:], nil)); err != nil || res.BaseOffset != 20 || res.LastOffset != 30 {
		t.Fatalf("append gap: %+v %v", res, err)
	}
	if l.LogEndOffset() != 31 {
		t.Fatalf("leo %d", l.LogEndOffset())
	}
	l.mu.Lock()
	nsegs := len(l.segs)
	l.mu.Unlock()
	if nsegs < 3 {
		t.Fatalf("%d files, want rolls between gapped batches", nsegs)
	}
	checkBatches(t, l, all)
	if err := l.WaitDurable(t.Context(), 30); err != nil {
		t.Fatal(err)
	}
	crashed := fsys.Crash()
	e.Close()
	e2 := openEngine(t, crashed, FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	if l2.LogEndOffset() != 31 {
		t.Fatalf("leo after crash %d", l2.LogEndOffset())
	}
	checkBatches(t, l2, all)
}

// openGapped opens the gapped log of gappedFiles.
func openGapped(t *testing.T, fsys FS, cfg LogConfig) (*Engine, *Log, [][]byte) {
	t.Helper()
	files, all := gappedFiles()
	writeRawLog(t, fsys, files)
	e := openEngine(t, fsys, FsyncNever, nil)
	l := openLog(t, e, cfg)
	return e, l, all
}

// TestGapsLookups: timestamps, checksums, truncation and DeleteRecords on
// a log with gaps and empty batches, with exact offsets.
func TestGapsLookups(t *testing.T) {
	e, l, all := openGapped(t, NewCrashFS(), LogConfig{RetentionBytes: -1, RetentionMs: -1})
	defer e.Close()
	// Record i of a batch at base b has timestamp ts+i; the empty batch
	// [6,9] (header max timestamp 109) has no records.
	for _, c := range []struct{ ts, off, at int64 }{
		{0, 0, 100}, {101, 1, 101}, {102, 5, 105}, {106, 13, 113}, {109, 13, 113},
		{113, 13, 113}, {114, 20, 120}, {126, 26, 126}, {130, 30, 130},
	} {
		off, at, found, err := l.OffsetForTimestamp(c.ts)
		if err != nil || !found || off != c.off || at != c.at {
			t.Fatalf("offset for timestamp %d: %d@%d %v %v, want %d@%d", c.ts, off, at, found, err, c.off, c.at)
		}
	}
	if _, _, found, err := l.OffsetForTimestamp(131); found || err != nil {
		t.Fatalf("timestamp 131: %v %v", found, err)
	}
	if off, ts, found, err := l.MaxTimestamp(); err != nil || !found || off != 30 || ts != 130 {
		t.Fatalf("max timestamp: %d@%d %v %v", off, ts, found, err)
	}
	// Checksums over gapped ranges: every stored batch in [base, end).
	for _, c := range []struct {
		base, end int64
		from, to  int // batches all[from:to]
	}{{0, 10, 0, 3}, {10, 21, 3, 5}, {2, 14, 1, 4}, {0, 31, 0, 7}, {14, 25, 4, 5}, {10, 12, 3, 3}} {
		want := bytes.Join(all[c.from:c.to], nil)
		crc, n, err := l.SegmentChecksum(c.base, c.end)
		if err != nil || n != int64(len(want)) || crc != crc32.Checksum(want, castagnoli) {
			t.Fatalf("checksum [%d, %d): %08x/%d %v, want %d bytes", c.base, c.end, crc, n, err, len(want))
		}
	}
	for _, r := range [][2]int64{{1, 10}, {0, 26}, {7, 21}} {
		if _, _, err := l.SegmentChecksum(r[0], r[1]); !errors.Is(err, ErrNotBatchBoundary) {
			t.Fatalf("checksum %v: %v", r, err)
		}
	}
	// DeleteRecords to an offset in a gap: reads start at the next batch.
	if start, err := l.DeleteRecordsBefore(11); err != nil || start != 11 {
		t.Fatalf("delete records: %d %v", start, err)
	}
	if res, err := l.Read(11, 1, true); err != nil || !bytes.Equal(res.Data, all[3]) {
		t.Fatalf("read at 11: base %d %v", batchBase(res.Data), err)
	}
	if _, err := l.Read(9, 1, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read at 9: %v", err)
	}
	checkBatches(t, l, all[3:])
	if off, _, found, _ := l.OffsetForTimestamp(0); !found || off != 13 {
		t.Fatalf("first timestamp after delete: %d %v", off, found)
	}
}

// TestTruncateIntoGap: truncating to an offset inside a gap removes the
// batch after the gap and leaves the LEO at the end of the batch before
// it, as recovery computes it.
func TestTruncateIntoGap(t *testing.T) {
	for _, c := range []struct {
		off, leo int64
		keep     int
	}{{28, 27, 5 + 1}, {22, 21, 5}, {15, 14, 4}, {11, 10, 3}, {3, 2, 1}} {
		t.Run(fmt.Sprint(c.off), func(t *testing.T) {
			fsys := NewCrashFS()
			cfg := LogConfig{RetentionBytes: -1, RetentionMs: -1, Replicated: true}
			e, l, all := openGapped(t, fsys, cfg)
			if err := l.TruncateTo(c.off); err != nil {
				t.Fatal(err)
			}
			if l.LogEndOffset() != c.leo {
				t.Fatalf("leo %d, want %d", l.LogEndOffset(), c.leo)
			}
			checkBatches(t, l, all[:c.keep])
			res, b := appendEpoch(t, l, plain(1, 3, 200, 1), 9)
			if res.BaseOffset != c.leo {
				t.Fatalf("append at %d, want %d", res.BaseOffset, c.leo)
			}
			want := append(append([][]byte(nil), all[:c.keep]...), b)
			checkBatches(t, l, want)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e2 := openEngine(t, fsys, FsyncNever, nil)
			defer e2.Close()
			l2 := openLog(t, e2, cfg)
			if l2.LogEndOffset() != c.leo+1 {
				t.Fatalf("leo after reopen %d", l2.LogEndOffset())
			}
			checkBatches(t, l2, want)
		})
	}
}

// TestRetentionOverGaps: retention by size drops the oldest gapped file;
// the log start becomes the next file's base, inside a gap.
func TestRetentionOverGaps(t *testing.T) {
	fsys := NewCrashFS()
	files, all := gappedFiles()
	writeRawLog(t, fsys, files)
	e := openEngine(t, fsys, FsyncNever, nil)
	defer e.Close()
	size := int64(len(bytes.Join(all, nil)))
	l := openLog(t, e, LogConfig{RetentionBytes: size - int64(len(bytes.Join(files[0], nil))), RetentionMs: -1})
	l.retain(e.now())
	if l.LogStartOffset() != 10 {
		t.Fatalf("log start %d, want 10", l.LogStartOffset())
	}
	checkBatches(t, l, all[3:])
	if res, err := l.Read(10, 1, true); err != nil || batchBase(res.Data) != 12 {
		t.Fatalf("read at the log start: %v", err)
	}
}

// TestMaxTimestampCleaned: a batch whose records were removed keeps its
// MaxTimestamp; MaxTimestamp then answers its last offset (as Kafka), and
// the record's offset when the record is still there.
func TestMaxTimestampCleaned(t *testing.T) {
	for _, c := range []struct {
		keep    []int32
		off, ts int64
	}{{nil, 5, 503}, {[]int32{1}, 5, 503}, {[]int32{3}, 5, 503}, {[]int32{0, 3}, 5, 503}} {
		t.Run(fmt.Sprint(c.keep), func(t *testing.T) {
			fsys := NewCrashFS()
			writeRawLog(t, fsys, map[int64][][]byte{0: {
				makeCleanedBatch(cleanedSpec{base: 0, delta: 1, keep: full(2), ts: 100, pid: -1}),
				// Header max timestamp 503, records at 500+delta.
				makeCleanedBatch(cleanedSpec{base: 2, delta: 3, keep: c.keep, ts: 500, pid: -1}),
				makeCleanedBatch(cleanedSpec{base: 6, delta: 0, keep: full(1), ts: 200, pid: -1}),
			}})
			e := openEngine(t, fsys, FsyncNever, nil)
			defer e.Close()
			l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
			off, ts, found, err := l.MaxTimestamp()
			if err != nil || !found || off != c.off || ts != c.ts {
				t.Fatalf("max timestamp %d@%d %v %v, want %d@%d", ts, off, found, err, c.ts, c.off)
			}
		})
	}
}
