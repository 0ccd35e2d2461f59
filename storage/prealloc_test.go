package storage

import (
	"context"
	"testing"
)

// segFileSize is the length of the file of tp0's segment at base.
func segFileSize(t testing.TB, fsys FS, l *Log, base int64) int64 {
	t.Helper()
	fi, err := fsys.Stat(segName(l.dir, base, logSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestPreallocatedActiveSegment: under fsync=always the active segment's
// blocks are reserved ahead of the writes, in chunks that grow with the
// segment (16 KiB at first) and never pass segment.bytes; a roll seals a
// file that ends at its data, a crash (the zeros left past the data) and
// a clean close both reopen to exactly the appended batches, and the
// file then ends at its data.
func TestPreallocatedActiveSegment(t *testing.T) { forEachIO(t, testPreallocatedActiveSegment) }

func testPreallocatedActiveSegment(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncAlways, nil)
	cfg := LogConfig{SegmentBytes: 300 << 10, RetentionMs: -1, RetentionBytes: -1}
	l := openLog(t, e, cfg)
	st := appended{}
	last := appendSized(t, l, st, 1, 1000, 1)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	act := l.active()
	base, size, stale := act.base, act.size, act.stale
	l.mu.Unlock()
	if got := segFileSize(t, fsys, l, base); got != preallocMin || stale != preallocMin {
		t.Fatalf("after one %d-byte batch: file %d bytes, stale %d; want both %d", size, got, stale, preallocMin)
	}
	// 40 KiB batches: the chunks follow the segment's size (48 KiB at
	// 41 KiB of data...), and the segment rolls at 300 KiB.
	last = appendSized(t, l, st, 12, 40<<10, 10)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	nsegs := len(l.segs)
	act = l.active()
	base, size, stale = act.base, act.size, act.stale
	l.mu.Unlock()
	if nsegs < 2 {
		t.Fatalf("%d segments, want a roll", nsegs)
	}
	checkSealedFiles(t, fsys, l)
	if got := segFileSize(t, fsys, l, base); got != stale || got <= size || got > cfg.SegmentBytes {
		t.Fatalf("active segment: file %d bytes, stale %d, data %d; want a reserved tail within %d", got, stale, size, cfg.SegmentBytes)
	}
	checkContents(t, l, st)

	// A crash leaves the reserved zeros past the data. On CrashFS, crash
	// it; on real files, open a second engine over the same directory
	// while the first still holds it, as after a kill -9 (everything was
	// synced, the tail never cut); the first then closes without
	// writing more.
	what, after := "after the crash", fsys
	if cfs, ok := fsys.(*CrashFS); ok {
		after = cfs.Crash()
	} else {
		what = "reopened over the live files"
	}
	e2 := openEngine(t, after, FsyncAlways, nil)
	l2 := openLog(t, e2, cfg)
	if l2.LogEndOffset() != l.LogEndOffset() {
		t.Fatalf("%s: log end %d, want %d", what, l2.LogEndOffset(), l.LogEndOffset())
	}
	checkContents(t, l2, st)
	if got := segFileSize(t, after, l2, base); got != size {
		t.Fatalf("%s: active file %d bytes, want %d (the zeros cut)", what, got, size)
	}
	e2.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segFileSize(t, fsys, l, base); got != size {
		t.Fatalf("after a clean close: active file %d bytes, want %d", got, size)
	}
	e3 := openEngine(t, fsys, FsyncAlways, nil)
	defer e3.Close()
	l3 := openLog(t, e3, cfg)
	checkContents(t, l3, st)
	if l3.LogEndOffset() != 13 {
		t.Fatalf("reopened: log end %d, want 13", l3.LogEndOffset())
	}
}

// TestNoPreallocWithoutFsyncAlways: other fsync policies write as before
// (the file ends at its data).
func TestNoPreallocWithoutFsyncAlways(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncInterval, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 20, RetentionMs: -1, RetentionBytes: -1})
	appendSized(t, l, appended{}, 3, 1000, 1)
	l.mu.Lock()
	act := l.active()
	base, size, stale := act.base, act.size, act.stale
	l.mu.Unlock()
	if got := segFileSize(t, fsys, l, base); got != size || stale != 0 {
		t.Fatalf("fsync=interval: file %d bytes, stale %d; want %d and 0", got, stale, size)
	}
}
