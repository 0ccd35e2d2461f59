package storage

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// openRecyclingEngine opens an engine that recycles segment files, with
// FsyncAlways, the syscall or io_uring backend the FS asks for, an unpaced
// deleter and clk as its clock.
func openRecyclingEngine(t testing.TB, fsys FS, clk func() time.Time) *Engine {
	t.Helper()
	mode, fault := ioOptsOf(fsys)
	e, err := Open(Options{Dir: testDir, Fsync: FsyncAlways, FS: fsys, Logger: zerolog.Nop(), Now: clk,
		RetentionCheckInterval: time.Hour, IO: mode, ioFault: fault, RecycleSegments: true})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

// recycleCfg holds two 100 KiB batches per segment and keeps about three
// segments: every roll after the first few drops the oldest segment, whose
// file the next roll reuses.
var recycleCfg = LogConfig{SegmentBytes: 250 << 10, RetentionBytes: 600 << 10, RetentionMs: -1}

// appended maps each appended batch's base offset to its bytes as appended.
type appended map[int64][]byte

func appendBig(t testing.TB, l *Log, st appended, n int, fill byte) (last int64) {
	t.Helper()
	return appendSized(t, l, st, n, 100<<10, fill)
}

func appendSized(t testing.TB, l *Log, st appended, n, size int, fill byte) (last int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		res, b := appendSpec(t, l, plain(1, size, 1, fill+byte(i)))
		st[res.BaseOffset] = b
		last = res.LastOffset
	}
	return last
}

// checkContents reads the log from its start to its end, batch by batch,
// and requires exactly the appended batches, in order, with no gap and no
// other bytes.
func checkContents(t testing.TB, l *Log, st appended) {
	t.Helper()
	start, end := l.LogStartOffset(), l.HighWatermark()
	for off := start; off < end; {
		res, err := l.Read(off, 1, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		want, ok := st[off]
		if !ok || !bytes.Equal(res.Data, want) {
			t.Fatalf("batch at %d: %d bytes, want the %d appended (%v)", off, len(res.Data), len(want), ok)
		}
		off++ // one record per batch
	}
}

// checkSealedFiles requires every sealed segment's file to end exactly at
// the segment's size: no bytes of a recycled file's earlier life remain.
func checkSealedFiles(t testing.TB, fsys FS, l *Log) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs[:len(l.segs)-1] {
		fi, err := fsys.Stat(segName(l.dir, s.base, logSuffix))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != s.size {
			t.Fatalf("sealed segment %d: file holds %d bytes, segment %d", s.base, fi.Size(), s.size)
		}
	}
}

func spares(names []string) int {
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, deletedSuffix) {
			n++
		}
	}
	return n
}

// TestRecycleSegmentFiles: with retention dropping a segment at every roll,
// the next roll overwrites the dropped segment's file instead of creating
// one; the log reads back exactly what was appended, sealed files carry
// none of their earlier bytes, and a clean restart finds the same log.
func TestRecycleSegmentFiles(t *testing.T) { forEachIO(t, testRecycleSegmentFiles) }

func testRecycleSegmentFiles(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openRecyclingEngine(t, fsys, nil)
	l := openLog(t, e, recycleCfg)
	st := appended{}
	// Segments of two 120 KiB batches, then of two 100 KiB ones: the
	// recycled files are longer than the segments written into them.
	appendSized(t, l, st, 16, 120<<10, 1)
	last := appendBig(t, l, st, 14, 50)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	// 15 rolls; the first three or so find no spare yet.
	if got := e.Stats().SegmentsRecycled; got < 10 {
		t.Fatalf("%d segments recycled, want at least 10", got)
	}
	if l.LogStartOffset() == 0 {
		t.Fatal("retention dropped nothing")
	}
	checkContents(t, l, st)
	checkSealedFiles(t, fsys, l)
	waitDeletes(t, e)
	if n := spares(dirEntries(t, fsys, logDir)); n > 1 {
		t.Fatalf("%d *.deleted files left, want at most the one spare: %v", n, dirEntries(t, fsys, logDir))
	}
	start, leo := l.LogStartOffset(), l.LogEndOffset()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := openRecyclingEngine(t, fsys, nil)
	defer e2.Close()
	l2 := openLog(t, e2, recycleCfg)
	if l2.LogStartOffset() != start || l2.LogEndOffset() != leo {
		t.Fatalf("reopened [%d, %d), want [%d, %d)", l2.LogStartOffset(), l2.LogEndOffset(), start, leo)
	}
	checkContents(t, l2, st)
	l2.mu.Lock()
	act := l2.active()
	l2.mu.Unlock()
	fi, err := fsys.Stat(segName(l2.dir, act.base, logSuffix))
	if err != nil || fi.Size() != act.size {
		t.Fatalf("active segment file after a clean close: %v, %v; want %d bytes", fi, err, act.size)
	}
	// The spare went back to the deleter on reopen.
	waitDeletes(t, e2)
	if n := spares(dirEntries(t, fsys, logDir)); n != 0 {
		t.Fatalf("*.deleted files after reopen: %v", dirEntries(t, fsys, logDir))
	}
	// And writing on recycles again.
	last = appendBig(t, l2, st, 10, 100)
	if err := l2.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	checkContents(t, l2, st)
}

// TestRecycleCrash: a crash while the active segment is a recycled file
// (its earlier life's valid batches still past the new data) loses nothing
// acknowledged and never shows one of those old batches: recovery stops at
// the first batch that is not at the next offset.
func TestRecycleCrash(t *testing.T) {
	for seed := int64(0); seed < 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfs := NewCrashFS()
			e := openRecyclingEngine(t, cfs, nil)
			l := openLog(t, e, recycleCfg)
			st := appended{}
			last := appendBig(t, l, st, 20, 1)
			if err := l.WaitDurable(context.Background(), last); err != nil {
				t.Fatal(err)
			}
			// Roll onto a recycled file, write one durable batch into
			// it, then one more that may or may not survive.
			l.mu.Lock()
			for l.spare == nil {
				l.mu.Unlock()
				appendBig(t, l, st, 1, 50)
				l.mu.Lock()
			}
			l.mu.Unlock()
			// (stale > size alone also holds for a preallocated file,
			// prealloc.go: wait for the roll onto the spare itself.)
			before := e.Stats().SegmentsRecycled
			for {
				last = appendBig(t, l, st, 1, 60)
				l.mu.Lock()
				act := l.active()
				recycled := e.Stats().SegmentsRecycled > before && act.stale > act.size && act.size > 0
				l.mu.Unlock()
				if recycled {
					break
				}
			}
			if err := l.WaitDurable(context.Background(), last); err != nil {
				t.Fatal(err)
			}
			acked := l.LogEndOffset()
			appendBig(t, l, st, 1, 70) // not waited for
			var crashed *CrashFS
			if seed == 0 {
				crashed = cfs.Crash()
			} else {
				crashed = cfs.CrashTorn(seed)
			}
			e.Close()

			e2 := openRecyclingEngine(t, crashed, nil)
			defer e2.Close()
			l2 := openLog(t, e2, recycleCfg)
			if leo := l2.LogEndOffset(); leo < acked || leo > acked+1 {
				t.Fatalf("log end %d after the crash, want %d or %d", leo, acked, acked+1)
			}
			checkContents(t, l2, st)
		})
	}
}

// TestRecycleSkipsFileWithReader: a dropped segment that a Section still
// reads is never recycled (overwriting it would change the bytes being
// sent); it goes to the deleter, which waits for the reader.
func TestRecycleSkipsFileWithReader(t *testing.T) {
	// The OS file system: Sections need plain OS files.
	e, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncAlways, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour, RecycleSegments: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	l := openLog(t, e, recycleCfg)
	st := appended{}
	last := appendBig(t, l, st, 4, 1) // one sealed segment [0, 2), active [2, 4)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	res, err := l.ReadSection(0, 1, true)
	if err != nil || res.Section == nil {
		t.Fatalf("read section: %v %v", res.Section, err)
	}
	before := e.Stats().SegmentsRecycled
	last = appendBig(t, l, st, 12, 10) // retention drops segment 0 while the section is open
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() == 0 {
		t.Fatal("retention did not drop the first segment")
	}
	got, err := res.Section.Bytes()
	if err != nil || !bytes.Equal(got, st[0]) {
		t.Fatalf("section over the dropped segment: %d bytes, err %v; want the batch at 0", len(got), err)
	}
	// Later segments were recycled, but never segment 0's file while the
	// section held it.
	if e.Stats().SegmentsRecycled == before {
		t.Fatal("nothing recycled at all")
	}
	checkContents(t, l, st)
	got, err = res.Section.Bytes()
	if err != nil || !bytes.Equal(got, st[0]) {
		t.Fatalf("section after more rolls: %d bytes, err %v; want the batch at 0", len(got), err)
	}
	res.Section.Close()
}

// TestRecycleSpareExpires: a spare no roll has taken within a retention
// check interval goes to the deleter, so a quiet log does not keep the
// space retention freed.
func TestRecycleSpareExpires(t *testing.T) {
	clk := &fakeClock{}
	clk.ms.Store(1_000_000)
	cfs := NewCrashFS()
	e := openRecyclingEngine(t, cfs, clk.now)
	defer e.Close()
	l := openLog(t, e, recycleCfg)
	st := appended{}
	appendBig(t, l, st, 9, 1)
	l.mu.Lock()
	sp := l.spare
	l.mu.Unlock()
	if sp == nil {
		t.Fatal("no spare after retention dropped segments")
	}
	e.runRetention() // within the interval: kept
	waitDeletes(t, e)
	if _, err := cfs.Stat(sp.path); err != nil {
		t.Fatalf("spare gone before its time: %v", err)
	}
	clk.ms.Add(time.Hour.Milliseconds())
	e.runRetention()
	waitDeletes(t, e)
	if _, err := cfs.Stat(sp.path); !isNotExist(err) {
		t.Fatalf("spare still there after an idle retention interval: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare != nil {
		t.Fatal("log still holds a spare")
	}
}
