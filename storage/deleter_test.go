package storage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// waitDeletes waits until the engine's deleter has nothing left to do.
func waitDeletes(t testing.TB, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.deleter.waitIdle(ctx); err != nil {
		t.Fatalf("deleter still busy after 10s: %v", err)
	}
}

// opFS records the namespace and size changes made through it.
type opFS struct {
	FS
	mu  sync.Mutex
	ops []string
}

func (o *opFS) record(format string, args ...any) {
	o.mu.Lock()
	o.ops = append(o.ops, fmt.Sprintf(format, args...))
	o.mu.Unlock()
}

func (o *opFS) log() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.ops)
}

func (o *opFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := o.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &opFile{File: f, fs: o, name: name}, nil
}

func (o *opFS) Remove(name string) error {
	o.record("remove %s", name)
	return o.FS.Remove(name)
}

func (o *opFS) RemoveAll(name string) error {
	o.record("removeall %s", name)
	return o.FS.RemoveAll(name)
}

func (o *opFS) Rename(oldname, newname string) error {
	o.record("rename %s %s", oldname, newname)
	return o.FS.Rename(oldname, newname)
}

func (o *opFS) SyncDir(name string) error {
	o.record("syncdir %s", name)
	return o.FS.SyncDir(name)
}

type opFile struct {
	File
	fs   *opFS
	name string
}

func (f *opFile) Truncate(size int64) error {
	f.fs.record("truncate %s %d", f.name, size)
	return f.File.Truncate(size)
}

// openBgEngine opens an engine on fsys whose deleter frees step bytes at a
// time at rate bytes/s of clk's time.
func openBgEngine(t testing.TB, fsys FS, clk ioClock, step, rate int64) *Engine {
	t.Helper()
	e, err := Open(Options{Dir: testDir, Fsync: FsyncAlways, FS: fsys, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour,
		IO: IOSyscall, DeleteRate: rate, deleteStep: step, clock: clk})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

// bigBatches appends n batches of about 100 KiB each to l and waits for
// them to be durable; it returns them.
func bigBatches(t testing.TB, l *Log, n int) [][]byte {
	t.Helper()
	var out [][]byte
	var last int64
	for i := 0; i < n; i++ {
		res, b := appendSpec(t, l, plain(1, 100<<10, 1, byte(i)))
		out = append(out, b)
		last = res.LastOffset
	}
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	return out
}

// dirEntries lists dir, failing the test on error.
func dirEntries(t testing.TB, fsys FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// waitingForReaders counts the queued deletions that wait for a Section
// to be closed.
func waitingForReaders(e *Engine) int {
	e.deleter.mu.Lock()
	defer e.deleter.mu.Unlock()
	n := 0
	for _, j := range e.deleter.queue {
		if !readersGone(j.readers) {
			n++
		}
	}
	return n
}

func hasDeleted(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, deletedSuffix) })
}

// TestDeleterShrinksInPacedSteps: retention's segment deletion renames
// each file away durably before touching it, then frees it from its end
// in step-sized ftruncates, one paced step at a time, and unlinks what is
// left: N bytes at R bytes/s take N/R of the deleter's (fake) time. After
// it, the files are gone and the counters add up.
func TestDeleterShrinksInPacedSteps(t *testing.T) {
	const step, rate = 256 << 10, 1 << 20
	ofs := &opFS{FS: NewCrashFS()}
	clk := newFakeIOClock()
	e := openBgEngine(t, ofs, clk, step, rate)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1})
	batches := bigBatches(t, l, 40)
	l.mu.Lock()
	var sizes []int64
	var bases []int64
	for _, s := range l.segs[:len(l.segs)-1] {
		sizes = append(sizes, s.size)
		bases = append(bases, s.base)
	}
	activeBase := l.active().base
	l.mu.Unlock()
	if len(sizes) < 3 {
		t.Fatalf("only %d sealed segments", len(sizes))
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	if _, err := l.DeleteRecordsBefore(activeBase); err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e)

	// The directory holds the active segment alone, nothing *.deleted.
	if got := segFiles(t, ofs, logSuffix); !slices.Equal(got, []int64{activeBase}) {
		t.Fatalf("segments after delete %v, want [%d]", got, activeBase)
	}
	if names := dirEntries(t, ofs, logDir); hasDeleted(names) {
		t.Fatalf("tombstones left: %v", names)
	}
	// Each segment: renamed, the rename made durable, shrunk by step from
	// its end, then unlinked.
	ops := ofs.log()
	for i, base := range bases {
		name := segName(logDir, base, logSuffix)
		ri := slices.IndexFunc(ops, func(op string) bool { return strings.HasPrefix(op, "rename "+name+" ") })
		if ri < 0 {
			t.Fatalf("segment %d never renamed: %v", base, ops)
		}
		gone := strings.Fields(ops[ri])[2]
		if !strings.HasSuffix(gone, deletedSuffix) {
			t.Fatalf("renamed to %s", gone)
		}
		var mine []string
		synced := false
		for _, op := range ops[ri+1:] {
			if op == "syncdir "+logDir && len(mine) == 0 {
				synced = true
			}
			if strings.Contains(op, gone) {
				mine = append(mine, op)
			}
		}
		if !synced {
			t.Fatalf("segment %d shrunk before its rename was durable: %v", base, ops)
		}
		var want []string
		for sz := sizes[i]; sz > step; {
			sz -= step
			want = append(want, fmt.Sprintf("truncate %s %d", gone, sz))
		}
		want = append(want, "remove "+gone)
		if !slices.Equal(mine, want) {
			t.Fatalf("segment %d (%d bytes): ops %v, want %v", base, sizes[i], mine, want)
		}
	}
	// N bytes at R bytes/s: N/R of fake time, up to float rounding (a
	// nanosecond a sleep).
	n, slept := clk.slept()
	if want := time.Duration(float64(total) / rate * float64(time.Second)); slept < want-time.Duration(n) || slept > want+time.Duration(n) {
		t.Fatalf("deleting %d bytes at %d B/s slept %v in %d sleeps, want %v", total, rate, slept, n, want)
	}
	st := e.BackgroundStats()
	if st.BytesDeleted != total || st.BytesPendingDeletion != 0 || st.Throttled != slept {
		t.Fatalf("stats %+v, want %d deleted, 0 pending, %v throttled", st, total, slept)
	}
	// The log is intact above its new start.
	r, err := l.Read(activeBase, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	first := int(activeBase)
	if want := bytes.Join(batches[first:], nil); !bytes.Equal(r.Data, want) {
		t.Fatalf("read %d bytes after the delete, want %d", len(r.Data), len(want))
	}
}

// TestDeleterCrashMidDelete: a crash while the deleter is part way through
// a segment leaves that segment under its *.deleted name only, never as a
// segment of the log; reopening finishes the delete and the log is whole
// above its start. Likewise for a whole log deleted by DeleteLog.
func TestDeleterCrashMidDelete(t *testing.T) {
	const step, rate = 256 << 10, 1 << 20
	cfs := NewCrashFS()
	clk := newFakeIOClock()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	clk.hook = func(ctx context.Context, n int) error {
		if n == 3 { // the third step of the first segment
			once.Do(func() { close(entered) })
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	e := openBgEngine(t, cfs, clk, step, rate)
	cfg := LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1}
	l := openLog(t, e, cfg)
	batches := bigBatches(t, l, 30)
	other := TopicPartition{Topic: "other", Partition: 0}
	lo, err := e.OpenLog(other, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bigBatches(t, lo, 15)
	l.mu.Lock()
	start := l.active().base
	l.mu.Unlock()
	if _, err := l.DeleteRecordsBefore(start); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteLog(other); err != nil {
		t.Fatal(err)
	}
	within(t, "the deleter's third step", entered)
	// The deleter has truncated the first segment twice by now.
	crashed := cfs.Crash()
	close(release)
	waitDeletes(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// In the crash image, the log's segment files are exactly those of
	// segments at or above the log start; the rest are *.deleted.
	for _, n := range dirEntries(t, crashed, logDir) {
		base, suf, ok := parseSegFile(n)
		if ok && suf == logSuffix && base < start {
			t.Fatalf("crash image holds segment %d below the log start %d: %v", base, start, dirEntries(t, crashed, logDir))
		}
	}
	top := dirEntries(t, crashed, testDir)
	if slices.Contains(top, other.String()) || !hasDeleted(top) {
		t.Fatalf("crash image top level %v: want the other log as a tombstone", top)
	}

	// Reopening (unpaced) queues the leftovers and finishes them.
	ofs := &opFS{FS: crashed}
	e2 := openBgEngine(t, ofs, newFakeIOClock(), step, 0)
	defer e2.Close()
	l2, err := e2.OpenLog(tp0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e2)
	if names := dirEntries(t, crashed, logDir); hasDeleted(names) {
		t.Fatalf("tombstones left after reopening: %v", names)
	}
	if top := dirEntries(t, crashed, testDir); !slices.Equal(top, []string{tp0.String()}) {
		t.Fatalf("top level after reopening: %v", top)
	}
	// Leftovers were shrunk in steps, not unlinked whole.
	truncs := 0
	for _, op := range ofs.log() {
		if strings.HasPrefix(op, "truncate ") {
			truncs++
		}
	}
	if truncs == 0 {
		t.Fatalf("reopening removed leftovers without shrinking them: %v", ofs.log())
	}
	if l2.LogStartOffset() != start || l2.LogEndOffset() != int64(len(batches)) {
		t.Fatalf("reopened log [%d, %d), want [%d, %d)", l2.LogStartOffset(), l2.LogEndOffset(), start, len(batches))
	}
	r, err := l2.Read(start, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(batches[start:], nil); !bytes.Equal(r.Data, want) {
		t.Fatalf("reopened log reads %d bytes, want %d", len(r.Data), len(want))
	}
}

// TestDeleteWaitsForSections: a segment deleted while a Section of it is
// open is not shrunk until the Section is closed (the Section reads all
// its bytes), and a log deleted while a Section of it is open likewise;
// after that, retention has freed the bytes: the files are gone.
func TestDeleteWaitsForSections(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: zerolog.Nop(), deleteStep: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := LogConfig{SegmentBytes: 8 << 10, IndexIntervalBytes: 700, RetentionBytes: -1, RetentionMs: -1}
	l, err := e.OpenLog(tp0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := fillModel(t, l, 120)
	want := m.want(0, 1<<20, true)
	r, err := l.ReadSection(0, 1<<20, true)
	if err != nil || r.Section == nil {
		t.Fatalf("read section: %v, %+v", err, r)
	}
	l.mu.Lock()
	held := l.segs[0].size
	var sealed int64
	for _, s := range l.segs[:len(l.segs)-1] {
		sealed += s.size
	}
	activeSize := l.active().size
	l.mu.Unlock()
	if _, err := l.DeleteRecordsBefore(l.HighWatermark()); err != nil {
		t.Fatal(err)
	}
	// Every deleted segment but the one the Section reads is freed.
	waitFor(t, "the other segments freed", func() bool { return e.BackgroundStats().BytesDeleted >= sealed-held })
	got, err := r.Section.Bytes()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("section after delete: %v, %d bytes, want %d", err, len(got), len(want))
	}
	if st := e.BackgroundStats(); st.BytesDeleted != sealed-held || st.BytesPendingDeletion != held {
		t.Fatalf("stats with the section open %+v, want %d deleted, %d pending", st, sealed-held, held)
	}
	var buf bytes.Buffer
	if _, err := r.Section.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("section WriteTo after delete: %v, %d bytes, want %d", err, buf.Len(), len(want))
	}
	if err := r.Section.Close(); err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e)
	if st := e.BackgroundStats(); st.BytesDeleted != sealed || st.BytesPendingDeletion != 0 {
		t.Fatalf("stats after the section closed %+v, want %d deleted", st, sealed)
	}
	// Retention freed the bytes: the log directory holds the active
	// segment and the small checkpoint files, nothing *.deleted.
	ents, err := os.ReadDir(filepath.Join(dir, tp0.String()))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk int64
	var names []string
	for _, de := range ents {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, de.Name())
		if strings.HasSuffix(de.Name(), logSuffix) {
			onDisk += fi.Size()
		}
	}
	if hasDeleted(names) || onDisk != activeSize {
		t.Fatalf("after retention: %v, %d bytes of segments, want %d", names, onDisk, activeSize)
	}

	// A whole log with an open Section.
	bigBatches(t, l, 3)
	r, err = l.ReadSection(l.LogStartOffset(), 1<<20, true)
	if err != nil || r.Section == nil {
		t.Fatalf("read section: %v, %+v", err, r)
	}
	want, err = r.Section.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteLog(tp0); err != nil {
		t.Fatal(err)
	}
	if n := waitingForReaders(e); n != 1 {
		t.Fatalf("%d deletions wait for readers, want the deleted log's", n)
	}
	buf.Reset()
	if _, err := r.Section.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("section of a deleted log: %v, %d bytes, want %d", err, buf.Len(), len(want))
	}
	if err := r.Section.Close(); err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e)
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("data dir after DeleteLog: %v %v", ents, err)
	}
}

// TestRetentionFreesBytes: after retention.bytes drops segments and the
// deleter finishes, the files are gone from the directory and the blocks
// the log directory occupies on disk are those of the kept segments.
func TestRetentionFreesBytes(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour, deleteStep: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	l, err := e.OpenLog(tp0, LogConfig{SegmentBytes: 256 << 10, RetentionBytes: 512 << 10, RetentionMs: -1})
	if err != nil {
		t.Fatal(err)
	}
	bigBatches(t, l, 40) // about 4 MiB in 256 KiB segments
	logDir := filepath.Join(dir, tp0.String())
	before := diskUsage(t, logDir)
	e.runRetention()
	waitDeletes(t, e)
	l.mu.Lock()
	var kept int64
	for _, s := range l.segs {
		kept += s.size
	}
	l.mu.Unlock()
	if kept > 1<<20 {
		t.Fatalf("retention kept %d bytes", kept)
	}
	ents, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var logBytes int64
	for _, de := range ents {
		names = append(names, de.Name())
		if strings.HasSuffix(de.Name(), logSuffix) {
			fi, err := de.Info()
			if err != nil {
				t.Fatal(err)
			}
			logBytes += fi.Size()
		}
	}
	if hasDeleted(names) || logBytes != kept {
		t.Fatalf("after retention: %v, %d bytes of .log files, want %d", names, logBytes, kept)
	}
	// Blocks on disk: the kept segments plus small checkpoint files,
	// not the 4 MiB written.
	if after := diskUsage(t, logDir); after > kept+256<<10 || after >= before {
		t.Fatalf("log directory occupies %d bytes on disk after retention (%d before), kept segments %d", after, before, kept)
	}
}

// diskUsage is the bytes of the blocks the files in dir occupy.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range ents {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, de.Name()), &st); err != nil {
			t.Fatal(err)
		}
		n += st.Blocks * 512
	}
	return n
}

// TestTruncateAndRecoveryDeleteThroughDeleter: TruncateTo's later segments
// and the segments recovery drops below the log start are renamed away and
// shrunk by the deleter, never unlinked under their own names.
func TestTruncateAndRecoveryDeleteThroughDeleter(t *testing.T) {
	const step = 256 << 10
	ofs := &opFS{FS: NewCrashFS()}
	e := openBgEngine(t, ofs, newFakeIOClock(), step, 0)
	// Replicated: the high watermark stays at 0, so TruncateTo may cut.
	cfg := LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1, Replicated: true}
	l := openLog(t, e, cfg)
	bigBatches(t, l, 40) // four segments: 0, 10, 20, 30
	if err := l.TruncateTo(15); err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e)
	if got := segFiles(t, ofs, logSuffix); !slices.Equal(got, []int64{0, 10}) {
		t.Fatalf("segments after TruncateTo(15): %v", got)
	}
	bigBatches(t, l, 25) // offsets 15..39: segments 10, 20, 30 again
	// A crash after the log start moved to 30 but before the segments
	// below it were deleted: recovery drops them.
	if err := writeLogStart(ofs, logDir, 30); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openBgEngine(t, ofs, newFakeIOClock(), step, 0)
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	waitDeletes(t, e2)
	if got := segFiles(t, ofs, logSuffix); !slices.Equal(got, []int64{30}) || l2.LogStartOffset() != 30 || l2.LogEndOffset() != 40 {
		t.Fatalf("after recovery: segments %v, log [%d, %d)", got, l2.LogStartOffset(), l2.LogEndOffset())
	}
	if names := dirEntries(t, ofs, logDir); hasDeleted(names) {
		t.Fatalf("tombstones left: %v", names)
	}
	// No .log file was unlinked under its own name; each removed one was
	// renamed, then shrunk in steps.
	renamed, truncated := 0, 0
	for _, op := range ofs.log() {
		f := strings.Fields(op)
		switch {
		case f[0] == "remove" && strings.HasSuffix(f[1], logSuffix):
			t.Fatalf("segment unlinked at once: %s", op)
		case f[0] == "rename" && strings.HasSuffix(f[1], logSuffix) && strings.HasSuffix(f[2], deletedSuffix):
			renamed++
		case f[0] == "truncate" && strings.HasSuffix(f[1], deletedSuffix):
			truncated++
		}
	}
	// TruncateTo: segments 20 and 30; recovery: 0, 10 and 20.
	if renamed != 5 || truncated == 0 {
		t.Fatalf("%d segment files renamed away (want 5), %d truncate steps: %v", renamed, truncated, ofs.log())
	}
}
