package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// dropFS wraps an FS and watches drop-behind on .log files: every
// dropCache must lie below what a completed Sync covered, a Sync can be
// held at a gate, and dropCache can be made to fail.
type dropFS struct {
	FS
	mu         sync.Mutex
	cond       *sync.Cond
	hold       bool             // guarded by mu: Syncs wait while set
	inSync     int              // guarded by mu: Syncs waiting at the gate
	written    map[string]int64 // guarded by mu: end of the furthest write per file
	synced     map[string]int64 // guarded by mu: what completed Syncs covered
	dropped    map[string]int64 // guarded by mu: bytes dropped per file
	violations []string         // guarded by mu
	dropErr    error            // guarded by mu: dropCache returns it
}

func newDropFS(inner FS) *dropFS {
	d := &dropFS{FS: inner, written: map[string]int64{}, synced: map[string]int64{}, dropped: map[string]int64{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

func (d *dropFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, logSuffix) {
		return f, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if flag&os.O_TRUNC != 0 {
		d.written[name], d.synced[name] = 0, 0
	}
	return &dropFile{File: f, d: d, name: name}, nil
}

// Rename moves a file's record with it (a recycled spare).
func (d *dropFS) Rename(o, n string) error {
	if err := d.FS.Rename(o, n); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.written[n], d.synced[n] = d.written[o], d.synced[o]
	return nil
}

func (d *dropFS) setHold(b bool) {
	d.mu.Lock()
	d.hold = b
	d.mu.Unlock()
	d.cond.Broadcast()
}

type dropFile struct {
	File
	d    *dropFS
	name string
}

func (f *dropFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.d.mu.Lock()
	f.d.written[f.name] = max(f.d.written[f.name], off+int64(n))
	f.d.mu.Unlock()
	return n, err
}

func (f *dropFile) Sync() error {
	d := f.d
	d.mu.Lock()
	// What was written when Sync was called is what it surely covers.
	covered := d.written[f.name]
	d.inSync++
	d.cond.Broadcast()
	for d.hold {
		d.cond.Wait()
	}
	d.inSync--
	d.mu.Unlock()
	if err := f.File.Sync(); err != nil {
		return err
	}
	d.mu.Lock()
	d.synced[f.name] = max(d.synced[f.name], covered)
	d.mu.Unlock()
	return nil
}

func (f *dropFile) dropCache(off, n int64) error {
	d := f.d
	d.mu.Lock()
	if off < 0 || n <= 0 || off+n > d.synced[f.name] {
		d.violations = append(d.violations, f.name+": drop beyond the synced bytes")
	}
	d.dropped[f.name] += n
	err := d.dropErr
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if inner, ok := f.File.(cacheDropper); ok {
		return inner.dropCache(off, n)
	}
	return nil
}

func (d *dropFS) totals() (dropped int64, violations []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.dropped {
		dropped += n
	}
	return dropped, append([]string(nil), d.violations...)
}

func openDropEngine(t testing.TB, fsys FS, policy FsyncPolicy, budget int64, logger zerolog.Logger) *Engine {
	t.Helper()
	mode, fault := ioOptsOf(fsys)
	e, err := Open(Options{Dir: testDir, Fsync: policy, FS: fsys, Logger: logger, RetentionCheckInterval: time.Hour,
		FsyncInterval: time.Millisecond, IO: mode, ioFault: fault, DropBehind: budget, RecycleSegments: true})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

// dropCfg: segments of twelve 256 KiB batches, no retention.
var dropCfg = LogConfig{SegmentBytes: 3 << 20, RetentionBytes: -1, RetentionMs: -1}

func appendDurable(t testing.TB, l *Log, st appended, n int, fill byte) int64 {
	t.Helper()
	last := appendSized(t, l, st, n, 256<<10, fill)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	return last
}

// TestDropBehindOnlyDurable: drop-behind drops only bytes a completed
// fdatasync covered. A group commit is held inside its Sync while 6 MiB
// more are appended; once it completes, the drops it triggers stay below
// what it synced, not the log end. Fails if planDropLocked measures the
// window from the segment's size instead of the ticket's position.
func TestDropBehindOnlyDurable(t *testing.T) {
	fsys := newDropFS(&diskFS{root: t.TempDir(), mode: IOSyscall})
	e := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 30, RetentionBytes: -1, RetentionMs: -1})
	st := appended{}
	appendDurable(t, l, st, 16, 1) // 4 MiB: drops the first 3
	waitFor(t, "the first drop", func() bool { n, _ := fsys.totals(); return n > 0 })

	fsys.setHold(true)
	last := appendSized(t, l, st, 1, 256<<10, 20) // the commit that will be held
	waitFor(t, "a sync at the gate", func() bool { fsys.mu.Lock(); defer fsys.mu.Unlock(); return fsys.inSync > 0 })
	appendSized(t, l, st, 24, 256<<10, 30) // 6 MiB the held sync does not cover
	before, _ := fsys.totals()
	fsys.setHold(false)
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	lastAll := l.LogEndOffset() - 1
	if err := l.WaitDurable(context.Background(), lastAll); err != nil {
		t.Fatal(err)
	}
	// Everything is durable now: the drops reach the end minus the window.
	want := int64(41<<18) - 1<<20 - dropBehindStep
	waitFor(t, "the drops after the last commit", func() bool { n, _ := fsys.totals(); return n >= want })
	after, violations := fsys.totals()
	if len(violations) > 0 {
		t.Fatalf("drops of bytes no completed sync covered: %v", violations)
	}
	if after <= before {
		t.Fatalf("no drop after the held commit (%d bytes before, %d after)", before, after)
	}
	checkContents(t, l, st)
}

// TestDropBehindReadsExact: with a 1 MiB budget over a log of 24 MiB in
// eight segments, the dropped pages leave the page cache (mincore, on
// disk) and every batch still reads back exactly, from the disk; across
// rolls and after a restart. Runs on every I/O environment (CrashFS has no
// page cache: nothing to drop, the plan still runs).
func TestDropBehindReadsExact(t *testing.T) { forEachIO(t, testDropBehindReadsExact) }

func testDropBehindReadsExact(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	l := openLog(t, e, dropCfg)
	st := appended{}
	for i := range 12 {
		appendDurable(t, l, st, 8, byte(i*8)) // 2 MiB per round
	}
	waitFor(t, "drops", func() bool { return e.stats.dropped.Load() > 0 })
	if env.disk {
		// The first segment was dropped whole, once the log passed it by
		// the window: none of its pages is resident.
		d := fsys.(*diskFS)
		name := d.p(segName(l.dir, 0, logSuffix))
		waitFor(t, "the first segment out of the page cache", func() bool { return resident(t, name) == 0 })
	}
	checkContents(t, l, st)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	defer e2.Close()
	l2 := openLog(t, e2, dropCfg)
	checkContents(t, l2, st)
	appendDurable(t, l2, st, 16, 200)
	checkContents(t, l2, st)
}

// resident counts the file's pages in the page cache.
func resident(t testing.TB, name string) int {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	pg := os.Getpagesize()
	vec := make([]byte, (len(m)+pg-1)/pg)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestDropBehindErrorLogged: a failing fadvise is logged once per log and
// changes nothing else: appends, durability and reads go on.
func TestDropBehindErrorLogged(t *testing.T) {
	fsys := newDropFS(&diskFS{root: t.TempDir(), mode: IOSyscall})
	fsys.dropErr = errors.New("injected EIO")
	var buf syncBuffer
	e := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.New(&buf))
	defer e.Close()
	l := openLog(t, e, dropCfg)
	st := appended{}
	appendDurable(t, l, st, 16, 1)
	waitFor(t, "the warning", func() bool { return strings.Contains(buf.String(), "drop-behind: fadvise failed") })
	appendDurable(t, l, st, 16, 50)
	waitFor(t, "a second failed drop", func() bool { return e.stats.dropped.Load() >= 2 })
	if n := strings.Count(buf.String(), "drop-behind: fadvise failed"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "injected EIO") {
		t.Fatalf("warning without its error:\n%s", buf.String())
	}
	checkContents(t, l, st)
}

// syncBuffer is a bytes.Buffer safe for a logger on another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDropBehindRecycle: drop-behind and recycling together. Recycled
// files (their pages dropped in their earlier life) take the new
// segments, every read is exact, no drop passes a sync, and a restart
// finds the same log.
func TestDropBehindRecycle(t *testing.T) {
	fsys := newDropFS(&diskFS{root: t.TempDir(), mode: IOSyscall})
	e := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	cfg := LogConfig{SegmentBytes: 3 << 20, RetentionBytes: 9 << 20, RetentionMs: -1}
	l := openLog(t, e, cfg)
	st := appended{}
	for i := range 16 {
		appendDurable(t, l, st, 8, byte(i*8))
	}
	if got := e.Stats().SegmentsRecycled; got < 5 {
		t.Fatalf("%d segments recycled, want at least 5", got)
	}
	if n, v := fsys.totals(); n == 0 || len(v) > 0 {
		t.Fatalf("dropped %d bytes; violations %v", n, v)
	}
	checkContents(t, l, st)
	checkSealedFiles(t, fsys, l)
	start, leo := l.LogStartOffset(), l.LogEndOffset()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	if l2.LogStartOffset() != start || l2.LogEndOffset() != leo {
		t.Fatalf("reopened [%d, %d), want [%d, %d)", l2.LogStartOffset(), l2.LogEndOffset(), start, leo)
	}
	checkContents(t, l2, st)
}

// TestDropBehindBudgetShared: the budget is shared by the logs synced
// within the last second, not given to each.
func TestDropBehindBudgetShared(t *testing.T) {
	var a dropActivity
	logs := make([]*Log, 4)
	for i := range logs {
		logs[i] = &Log{}
	}
	now := time.Unix(1000, 0)
	var got []int64
	for _, l := range logs {
		got = append(got, a.window(64<<20, now, l))
	}
	if want := []int64{64 << 20, 32 << 20, 64 << 20 / 3, 16 << 20}; !equalInts(got, want) {
		t.Fatalf("windows in the first period %v, want %v", got, want)
	}
	// Next period: the four of the last one still count.
	if w := a.window(64<<20, now.Add(1500*time.Millisecond), logs[0]); w != 16<<20 {
		t.Fatalf("window after a period %d, want %d", w, 16<<20)
	}
	// Two idle periods later only the logs synced since count.
	if w := a.window(64<<20, now.Add(5*time.Second), logs[1]); w != 64<<20 {
		t.Fatalf("window after idle periods %d, want %d", w, 64<<20)
	}
}

// TestSegmentFilesDropCache: the files of segments an engine on disk
// opens (through whatever wrapping the I/O backend or a descriptor pool
// adds) can drop their pages; a wrapper without dropCache would turn
// drop-behind off silently.
func TestSegmentFilesDropCache(t *testing.T) { forEachIO(t, testSegmentFilesDropCache) }

func testSegmentFilesDropCache(t *testing.T, env ioEnv) {
	if !env.disk {
		t.Skip("CrashFS has no page cache")
	}
	fsys := env.newFS(t)
	e := openDropEngine(t, fsys, FsyncAlways, 1<<20, zerolog.Nop())
	defer e.Close()
	l := openLog(t, e, dropCfg)
	appendDurable(t, l, appended{}, 16, 1) // a roll: a new segment's file too
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		d, ok := s.f.(cacheDropper)
		if !ok {
			t.Fatalf("segment %d: file %T has no dropCache (dropbehind.go)", s.base, s.f)
		}
		if err := d.dropCache(0, s.size); err != nil {
			t.Fatalf("segment %d: dropCache: %v", s.base, err)
		}
	}
}
