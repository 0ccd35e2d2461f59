package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
)

// emptied returns batch as a cleaning empties it: the same header (base
// offset, last offset delta, producer fields, timestamps, epoch) with no
// records, and a fresh CRC.
func emptied(batch []byte) []byte {
	b := bytes.Clone(batch[:kafkaproto.BatchHeaderSize])
	binary.BigEndian.PutUint32(b[8:], uint32(kafkaproto.BatchHeaderSize-12))
	binary.BigEndian.PutUint32(b[57:], 0)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// fakeClean is a deterministic stand-in for the cleaner: of the input
// batches below upTo, those whose base offset is 0 mod 3 are dropped,
// 1 mod 3 emptied, the rest copied; the last one is always kept (as the
// cleaner keeps each chain segment's last batch).
func fakeClean(in [][]byte) [][]byte {
	var out [][]byte
	for i, b := range in {
		switch base := batchBase(b); {
		case i == len(in)-1:
			out = append(out, b)
		case base%3 == 0:
		case base%3 == 1:
			out = append(out, emptied(b))
		default:
			out = append(out, b)
		}
	}
	return out
}

// rewriteCfg rolls a file every 3 batches of appendTwo.
var rewriteCfg = LogConfig{SegmentBytes: 400, RetentionBytes: -1, RetentionMs: -1}

// appendTwo appends n batches of two records (about 130 bytes each).
func appendTwo(t testing.TB, l *Log, n int, fill byte) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < n; i++ {
		_, b := appendSpec(t, l, plain(2, 20, int64(1000+i), fill+byte(i)))
		out = append(out, b)
	}
	return out
}

// runRewrite cleans [from, upTo) of l with fakeClean (reading the input
// twice, as the cleaner does) and prepares the output; it returns the
// output batches.
func runRewrite(t testing.TB, r *Rewrite, from int64) [][]byte {
	t.Helper()
	var in [][]byte
	for pass := 0; pass < 2; pass++ {
		in = nil
		if err := r.Input(from, func(b []byte, h kafkaproto.BatchHeader) error {
			if h.Size() != len(b) || h.BaseOffset != batchBase(b) {
				return fmt.Errorf("input batch %d: %d bytes, header %+v", batchBase(b), len(b), h)
			}
			in = append(in, bytes.Clone(b))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	out := fakeClean(in)
	for _, b := range out {
		if err := r.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fileBoundaries returns the log's file bases.
func fileBases(l *Log) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for _, s := range l.segs {
		out = append(out, s.base)
	}
	return out
}

// noLeftovers requires no clean-swap record and no *.cleaned file.
func noLeftovers(t testing.TB, fsys FS) {
	t.Helper()
	names, err := fsys.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == swapFile || strings.HasSuffix(n, cleanedSuffix) || strings.HasSuffix(n, ".tmp") {
			t.Fatalf("leftover %s in %v", n, names)
		}
	}
}

// TestRewriteCommit: a rewrite of [0, upTo) where upTo lies inside a
// sealed file (split) and inside the active file (rolled first), with
// appends during the rewrite; the new set is read back exactly, before
// and after a restart, with generation and no leftovers.
func TestRewriteCommit(t *testing.T) { forEachIO(t, testRewriteCommit) }

func testRewriteCommit(t *testing.T, env ioEnv) {
	for _, where := range []string{"sealed", "active"} {
		t.Run(where, func(t *testing.T) {
			fsys := env.newFS(t)
			e := openEngine(t, fsys, FsyncAlways, nil)
			l := openLog(t, e, rewriteCfg)
			all := appendTwo(t, l, 20, 0) // offsets 0..39, files of 3 batches
			bases := fileBases(l)
			// Batch 10 (offset 20) is inside file 18's range [18, 24);
			// the active file holds offsets 36..39.
			upTo := int64(20)
			if where == "active" {
				upTo = 38
			}
			if slices := bases; len(slices) < 4 {
				t.Fatalf("files %v", bases)
			}
			r, err := l.BeginRewrite(upTo)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.BeginRewrite(upTo); !errors.Is(err, ErrRewritePending) {
				t.Fatalf("second rewrite: %v", err)
			}
			out := runRewrite(t, r, 0)
			// Appended during the rewrite: untouched by it.
			more := appendTwo(t, l, 3, 100)
			if err := r.Commit(1); err != nil {
				t.Fatal(err)
			}
			want := append(append(append([][]byte(nil), out...), all[upTo/2:]...), more...)
			checkBatches(t, l, want)
			if l.CleanGeneration() != 1 || l.LogStartOffset() != 0 || l.LogEndOffset() != 46 {
				t.Fatalf("gen %d, log [%d, %d)", l.CleanGeneration(), l.LogStartOffset(), l.LogEndOffset())
			}
			if fb := fileBases(l); !containsAll(fb, upTo) {
				t.Fatalf("files %v: none at %d", fb, upTo)
			}
			noLeftovers(t, fsys)
			// The swapped-in files are durable and recovered exactly.
			if err := l.WaitDurable(t.Context(), 45); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if c, ok := fsys.(*CrashFS); ok {
				fsys = c.Crash()
			}
			e2 := openEngine(t, fsys, FsyncAlways, nil)
			defer e2.Close()
			l2 := openLog(t, e2, rewriteCfg)
			checkBatches(t, l2, want)
			if l2.CleanGeneration() != 1 {
				t.Fatalf("generation after restart %d", l2.CleanGeneration())
			}
			// The swapped-in index files pass recovery's check (they are
			// trusted, not rebuilt).
			l2.mu.Lock()
			for _, s := range l2.segs[:len(l2.segs)-1] {
				fresh := newSegment(s.base, s.f, l2.cfg.indexInterval())
				fresh.size, fresh.next = s.size, s.next
				if !l2.loadIndexes(fresh) {
					t.Errorf("index files of %d inconsistent", s.base)
				}
			}
			l2.mu.Unlock()
			// Appends and lookups go on.
			res, b := appendSpec(t, l2, plain(1, 5, 5000, 1))
			if res.BaseOffset != 46 {
				t.Fatalf("append at %d", res.BaseOffset)
			}
			checkBatches(t, l2, append(want, b))
		})
	}
}

func containsAll(list []int64, xs ...int64) bool {
	for _, x := range xs {
		found := false
		for _, y := range list {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// TestRewriteCrash crashes at every file system step from BeginRewrite
// through Commit (a durable snapshot after each operation, plain and
// torn): recovery yields exactly the old batches or exactly the new ones,
// with the data above upTo intact either way, and no leftovers; a second
// recovery changes nothing.
func TestRewriteCrash(t *testing.T) {
	for _, upTo := range []int64{20, 18} { // inside a file (split), at a file base
		t.Run(fmt.Sprint(upTo), func(t *testing.T) {
			s := &stepFS{CrashFS: NewCrashFS()}
			e := openEngine(t, s, FsyncAlways, nil)
			l := openLog(t, e, rewriteCfg)
			all := appendTwo(t, l, 20, 0)
			if err := l.WaitDurable(t.Context(), 39); err != nil {
				t.Fatal(err)
			}
			s.arm(true)
			r, err := l.BeginRewrite(upTo)
			if err != nil {
				t.Fatal(err)
			}
			// Appends during the rewrite, each durable from the crash
			// point counted once WaitDurable returned: from there on no
			// recovery may lose it.
			var more [][]byte
			var durableAt []int
			appendDurable := func(fill byte) {
				b := appendTwo(t, l, 1, fill)[0]
				if err := l.WaitDurable(t.Context(), l.LogEndOffset()-1); err != nil {
					t.Fatal(err)
				}
				s.mu.Lock()
				durableAt = append(durableAt, len(s.states))
				s.mu.Unlock()
				more = append(more, b)
			}
			appendDurable(100)
			out := runRewrite(t, r, 0)
			appendDurable(110)
			if err := r.Commit(3); err != nil {
				t.Fatal(err)
			}
			appendDurable(120)
			s.arm(false)
			e.Close()
			newSet := append(append([][]byte(nil), out...), all[upTo/2:]...)
			if len(s.states) < 20 {
				t.Fatalf("only %d crash points", len(s.states))
			}
			sawOld, sawNew := false, false
			for i, st := range s.states {
				for round := 0; round < 2; round++ {
					e2 := openEngine(t, st, FsyncAlways, nil)
					l2 := openLog(t, e2, rewriteCfg)
					got := readAllBatches(t, l2)
					// The batches appended during the rewrite come last:
					// a prefix of them, holding every one durable by then.
					full := got
					n := 0
					for k := min(len(more), len(got)); k > 0; k-- {
						if equalBatches(got[len(got)-k:], more[:k]) {
							n = k
							break
						}
					}
					for j, at := range durableAt {
						if i >= at && n <= j {
							t.Fatalf("crash point %d: appended batch %d lost (durable from crash point %d)", i, j, at)
						}
					}
					got = got[:len(got)-n]
					switch {
					case equalBatches(got, all):
						sawOld = true
						if l2.CleanGeneration() != 0 {
							t.Fatalf("crash point %d: old set with generation %d", i, l2.CleanGeneration())
						}
					case equalBatches(got, newSet):
						sawNew = true
						if l2.CleanGeneration() != 3 {
							t.Fatalf("crash point %d: new set with generation %d", i, l2.CleanGeneration())
						}
					default:
						t.Fatalf("crash point %d round %d: %d batches (bases %v), neither the old set nor the new", i, round, len(got), basesOf(got))
					}
					checkBatches(t, l2, full)
					if err := e2.Close(); err != nil {
						t.Fatal(err)
					}
					noLeftovers(t, st)
				}
			}
			if !sawOld || !sawNew {
				t.Fatalf("crash points saw old %v, new %v", sawOld, sawNew)
			}
		})
	}
}

// readAllBatches reads the log's batches from its start to its LEO.
func readAllBatches(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var got [][]byte
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		res, err := l.ReadUncommitted(off, 1, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		h, err := kafkaproto.ParseBatchHeader(res.Data)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		got = append(got, res.Data)
		off = h.LastOffset() + 1
	}
	return got
}

func equalBatches(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func basesOf(bs [][]byte) []int64 {
	var out []int64
	for _, b := range bs {
		out = append(out, batchBase(b))
	}
	return out
}

// TestRewriteSectionReader: a Section opened on an old file before Commit
// reads the old bytes completely after it (the file is renamed away, not
// shrunk, until the Section closes).
func TestRewriteSectionReader(t *testing.T) {
	e, l := openOSLog(t, rewriteCfg)
	all := appendTwo(t, l, 20, 0)
	res, err := l.ReadSection(0, 1<<20, true)
	if err != nil || res.Section == nil {
		t.Fatalf("section: %+v %v", res, err)
	}
	wantOld := bytes.Join(all[:3], nil) // the first file
	r, err := l.BeginRewrite(20)
	if err != nil {
		t.Fatal(err)
	}
	out := runRewrite(t, r, 0)
	if err := r.Commit(1); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := res.Section.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), wantOld) {
		t.Fatalf("section after commit: %d bytes, want %d (%v)", buf.Len(), len(wantOld), err)
	}
	if err := res.Section.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.deleter.waitIdle(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, l, append(out, all[10:]...))
	res, err = l.ReadSection(0, 1<<20, true)
	if err != nil || res.Section == nil {
		t.Fatalf("section: %+v %v", res, err)
	}
	defer res.Section.Close()
	got, err := res.Section.Bytes()
	if err != nil || !bytes.HasPrefix(bytes.Join(out, nil), got) || len(got) == 0 {
		t.Fatalf("section of the new file: %d bytes, %v", len(got), err)
	}
}

// TestRewritePins: while a rewrite is pending, retention and
// DeleteRecords remove no file it covers (the log start may move);
// TruncateTo into the covered files is refused; Commit drops the output
// below the log start; Abort removes the output and then the files below
// the log start.
func TestRewritePins(t *testing.T) {
	for _, end := range []string{"commit", "abort"} {
		t.Run(end, func(t *testing.T) {
			fsys := NewCrashFS()
			e := openEngine(t, fsys, FsyncNever, nil)
			defer e.Close()
			cfg := rewriteCfg
			cfg.RetentionBytes = 500
			l := openLog(t, e, LogConfig{SegmentBytes: cfg.SegmentBytes, RetentionBytes: -1, RetentionMs: -1})
			all := appendTwo(t, l, 20, 0)
			before := fileBases(l)
			r, err := l.BeginRewrite(20)
			if err != nil {
				t.Fatal(err)
			}
			out := runRewrite(t, r, 0)
			l.SetConfig(cfg)
			l.retain(e.now())
			if start, err := l.DeleteRecordsBefore(13); err != nil || start != 13 {
				t.Fatalf("delete records: %d %v", start, err)
			}
			if got := fileBases(l); !equalInts(got, before) {
				t.Fatalf("files %v while pinned, want %v", got, before)
			}
			if err := l.TruncateTo(15); !errors.Is(err, ErrRewritePending) {
				t.Fatalf("truncate into the rewrite: %v", err)
			}
			if end == "abort" {
				if err := r.Abort(); err != nil {
					t.Fatal(err)
				}
				noLeftovers(t, fsys)
				if fb := fileBases(l); fb[0] != 12 {
					t.Fatalf("files after abort %v", fb)
				}
				checkBatches(t, l, all[6:]) // the batch holding 13 is [12, 13]
				if r2, err := l.BeginRewrite(20); err != nil {
					t.Fatal(err)
				} else if err := r2.Abort(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := r.Commit(1); err != nil {
				t.Fatal(err)
			}
			if l.LogStartOffset() != 13 {
				t.Fatalf("log start %d", l.LogStartOffset())
			}
			var keep [][]byte
			for _, b := range out {
				h, _ := kafkaproto.ParseBatchHeader(b)
				if h.LastOffset() >= 13 {
					keep = append(keep, b)
				}
			}
			checkBatches(t, l, append(keep, all[10:]...))
			if fb := fileBases(l); fb[0] > 13 {
				t.Fatalf("files after commit %v", fb)
			}
			l.retain(e.now()) // retention resumes
			if fb := fileBases(l); len(fb) >= len(before) {
				t.Fatalf("retention after commit kept files %v", fb)
			}
		})
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRewriteWriteChecks: Write refuses batches out of order or outside
// [from, upTo), Prepare refuses output that does not end at upTo - 1, and
// output files roll at segment.bytes with contiguous bases.
func TestRewriteWriteChecks(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, rewriteCfg)
	all := appendTwo(t, l, 20, 0)
	r, err := l.BeginRewrite(20)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Input(4, func([]byte, kafkaproto.BatchHeader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{all[1], all[10]} { // below from, at upTo
		if err := r.Write(b); !errors.Is(err, ErrOffsetMismatch) {
			t.Fatalf("write %d: %v", batchBase(b), err)
		}
	}
	if err := r.Write(all[3]); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(all[3]); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("write again: %v", err)
	}
	if err := r.Write(emptied(all[5])); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); !errors.Is(err, ErrNotBatchBoundary) {
		t.Fatalf("prepare short output: %v", err)
	}
	for _, b := range all[6:10] {
		if err := r.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	var outBases []int64
	for _, s := range r.outs {
		outBases = append(outBases, s.base)
	}
	// from 4; [6,7] + empty [10,11] + [12,13] fill the first file
	// (about 130 + 61 + 130 bytes), the next starts after [12,13].
	if fmt.Sprint(outBases) != "[4 14]" {
		t.Fatalf("output files %v", outBases)
	}
	if err := r.Commit(2); err != nil {
		t.Fatal(err)
	}
	want := append([][]byte{all[3], emptied(all[5])}, all[6:]...)
	checkBatches(t, l, want)
	if l.LogStartOffset() != 4 {
		t.Fatalf("log start %d", l.LogStartOffset())
	}
	if _, err := fsys.Stat(filepath.Join(logDir, genFile)); err != nil {
		t.Fatal(err)
	}
}

// TestRewriteConcurrentReads: reads during a rewrite and its Commit
// return whole batches of the old set or of the new one, never other
// bytes.
func TestRewriteConcurrentReads(t *testing.T) { forEachIO(t, testRewriteConcurrentReads) }

func testRewriteConcurrentReads(t *testing.T, env ioEnv) {
	e := openEngine(t, env.newFS(t), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, rewriteCfg)
	all := appendTwo(t, l, 30, 0)
	known := map[string]bool{}
	for _, b := range all {
		known[string(b)] = true
	}
	out := fakeClean(all[:20]) // the input below 40
	for _, b := range out {
		known["new"+string(b)] = true
	}
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			off := max(int64(i*7%60), l.LogStartOffset())
			res, err := l.Read(off, 400, true)
			if err != nil {
				errc <- fmt.Errorf("read at %d: %w", off, err)
				return
			}
			if err := kafkaproto.SplitBatches(res.Data, func(b []byte, h kafkaproto.BatchHeader) error {
				if !known[string(b)] && !known["new"+string(b)] {
					return fmt.Errorf("read at %d: unknown batch at %d", off, h.BaseOffset)
				}
				return kafkaproto.VerifyCRC(b, &h)
			}); err != nil {
				errc <- err
				return
			}
		}
	}()
	r, err := l.BeginRewrite(40)
	if err != nil {
		t.Fatal(err)
	}
	var in [][]byte
	if err := r.Input(0, func(b []byte, _ kafkaproto.BatchHeader) error { in = append(in, b); return nil }); err != nil {
		t.Fatal(err)
	}
	if !equalBatches(in, all[:20]) {
		t.Fatalf("input: %d batches %v", len(in), basesOf(in))
	}
	for _, b := range out {
		if err := r.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(1); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkBatches(t, l, append(out, all[20:]...))
}

// TestRewriteCommitFaults: an I/O error before the commit point leaves the
// log as it was and usable (Abort then); one after it fences the log, and
// the next open completes the swap.
func TestRewriteCommitFaults(t *testing.T) {
	for _, c := range []struct {
		file  string
		after bool // past the commit point
	}{{swapFile + ".tmp", false}, {genFile + ".tmp", true}} {
		t.Run(c.file, func(t *testing.T) {
			cfs := NewCrashFS()
			ffs := NewFaultFS(cfs)
			e := openEngine(t, ffs, FsyncAlways, nil)
			l := openLog(t, e, rewriteCfg)
			all := appendTwo(t, l, 20, 0)
			if err := l.WaitDurable(t.Context(), 39); err != nil {
				t.Fatal(err)
			}
			r, err := l.BeginRewrite(20)
			if err != nil {
				t.Fatal(err)
			}
			out := runRewrite(t, r, 0)
			ffs.FailNextSync(c.file, errors.New("injected"))
			err = r.Commit(1)
			if err == nil || ffs.Fired() != 1 {
				t.Fatalf("commit: %v, %d faults", err, ffs.Fired())
			}
			if err := r.Abort(); err != nil {
				t.Fatal(err)
			}
			newSet := append(append([][]byte(nil), out...), all[10:]...)
			if !c.after {
				if errors.Is(err, ErrFenced) {
					t.Fatalf("fenced before the commit point: %v", err)
				}
				checkBatches(t, l, all)
				noLeftovers(t, cfs)
				appendTwo(t, l, 1, 50)
			} else if !errors.Is(err, ErrFenced) {
				t.Fatalf("not fenced after the commit point: %v", err)
			}
			e.Close()
			e2 := openEngine(t, cfs, FsyncAlways, nil)
			defer e2.Close()
			l2 := openLog(t, e2, rewriteCfg)
			got := readAllBatches(t, l2)
			if c.after {
				if !equalBatches(got, newSet) || l2.CleanGeneration() != 1 {
					t.Fatalf("after reopen: %v, generation %d", basesOf(got), l2.CleanGeneration())
				}
			} else if !equalBatches(got[:len(all)], all) || len(got) != len(all)+1 || l2.CleanGeneration() != 0 {
				t.Fatalf("after reopen: %v, generation %d", basesOf(got), l2.CleanGeneration())
			}
			noLeftovers(t, cfs)
		})
	}
}

// TestRewriteNoOutput: a rewrite that writes nothing removes the range:
// the log then starts at upTo (the split file's base).
func TestRewriteNoOutput(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	l := openLog(t, e, rewriteCfg)
	all := appendTwo(t, l, 20, 0)
	r, err := l.BeginRewrite(20)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(1); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() != 20 {
		t.Fatalf("log start %d, want 20", l.LogStartOffset())
	}
	checkBatches(t, l, all[10:])
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openEngine(t, fsys.Crash(), FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, rewriteCfg)
	if l2.LogStartOffset() != 20 || l2.CleanGeneration() != 1 {
		t.Fatalf("after restart: log start %d, generation %d", l2.LogStartOffset(), l2.CleanGeneration())
	}
	checkBatches(t, l2, all[10:])
}

// TestBeginRewriteAfterRetentionRoll: a roll forced by BeginRewrite that
// applies retention.bytes and leaves nothing below upTo is an error, not
// a panic.
func TestBeginRewriteAfterRetentionRoll(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 20, RetentionBytes: 0, RetentionMs: -1})
	for range 3 {
		appendSpec(t, l, plain(2, 10, 1000, 'a'))
	}
	if _, err := l.BeginRewrite(l.LogEndOffset()); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("BeginRewrite after a roll that dropped everything: %v, want ErrOffsetOutOfRange", err)
	}
}
