package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/kafkaproto"
)

func openEngineFiles(t testing.TB, fsys FS, policy FsyncPolicy, maxOpen int, idle time.Duration) *Engine {
	t.Helper()
	mode, fault := ioOptsOf(fsys)
	e, err := Open(Options{Dir: testDir, Fsync: policy, FS: fsys, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour,
		FsyncInterval: time.Hour, IO: mode, ioFault: fault, MaxOpenFiles: maxOpen, OpenFileIdle: idle})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

// openSegmentFDs counts this process's descriptors open on files under
// root (a diskFS's directory).
func openSegmentFDs(t testing.TB, root string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, root+"/") && strings.HasSuffix(target, logSuffix) {
			n++
		}
	}
	return n
}

// TestManyLogsFewFiles: 100 logs over an engine allowed 8 open segment
// files. Concurrent producers append to all of them (rolling segments),
// every acknowledged batch reads back exactly (Read and ReadSection),
// at most 8 segment files are open once the writers are done, and the
// same holds after a restart and after a crash image's recovery.
func TestManyLogsFewFiles(t *testing.T) { forEachIO(t, testManyLogsFewFiles) }

func testManyLogsFewFiles(t *testing.T, env ioEnv) {
	const (
		logs    = 100
		batches = 12
		limit   = 8
	)
	fsys := env.newFS(t)
	cfg := LogConfig{SegmentBytes: 300, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 100}
	e := openEngineFiles(t, fsys, FsyncAlways, limit, 0)
	tps := make([]TopicPartition, logs)
	ls := make([]*Log, logs)
	for i := range tps {
		tps[i] = TopicPartition{Topic: "many", Partition: int32(i)}
		l, err := e.OpenLog(tps[i], cfg)
		if err != nil {
			t.Fatalf("open log %d: %v", i, err)
		}
		ls[i] = l
	}
	// want[i][off] is the batch acknowledged at offset off of log i.
	want := make([][][]byte, logs)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < batches; round++ {
				for i := w; i < logs; i += 4 {
					b := makeBatch(plain(1, 30+i%7, int64(round), byte(i*13+round)))
					h, err := kafkaproto.ValidateBatch(b)
					if err != nil {
						t.Error(err)
						return
					}
					res, err := ls[i].Append(b, h, 1)
					if err != nil {
						t.Errorf("append to %d: %v", i, err)
						return
					}
					if res.BaseOffset != int64(round) {
						t.Errorf("log %d round %d: offset %d", i, round, res.BaseOffset)
						return
					}
					if err := ls[i].WaitDurable(context.Background(), res.LastOffset); err != nil {
						t.Errorf("wait durable %d: %v", i, err)
						return
					}
					want[i] = append(want[i], b)
				}
			}
		}()
	}
	// Readers meanwhile: every read is whole valid batches from the
	// offset asked for (the files they pin are not closed under them).
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	for r := 0; r < 2; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				l := ls[(n*37+r*11)%logs]
				hw := l.HighWatermark()
				if hw == 0 {
					continue
				}
				off := int64(n) % hw
				res, err := l.ReadSection(off, 1<<10, true)
				if err != nil {
					t.Errorf("concurrent read at %d: %v", off, err)
					return
				}
				data := res.Data
				if res.Section != nil {
					data, err = res.Section.Bytes()
					res.Section.Close()
					if err != nil {
						t.Errorf("concurrent section read at %d: %v", off, err)
						return
					}
				}
				var last int64
				if err := splitCheck(data, off, &last); err != nil || len(data) == 0 {
					t.Errorf("concurrent read at %d: %d bytes: %v", off, len(data), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	check := func(what string, e *Engine, ls []*Log) {
		t.Helper()
		for i, l := range ls {
			if l.HighWatermark() != batches || l.LogStartOffset() != 0 {
				t.Fatalf("%s: log %d hw %d start %d, want %d 0", what, i, l.HighWatermark(), l.LogStartOffset(), batches)
			}
			for off := int64(0); off < batches; off++ {
				r, err := l.Read(off, 1, true)
				if err != nil || !bytes.Equal(r.Data, want[i][off]) {
					t.Fatalf("%s: log %d offset %d: err %v, %d bytes, want %d", what, i, off, err, len(r.Data), len(want[i][off]))
				}
				r, err = l.ReadSection(off, 1, true)
				if err != nil {
					t.Fatalf("%s: section of log %d offset %d: %v", what, i, off, err)
				}
				got := r.Data
				if r.Section != nil {
					got, err = r.Section.Bytes()
					r.Section.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, want[i][off]) {
					t.Fatalf("%s: section of log %d offset %d: %d bytes differ", what, i, off, len(got))
				}
			}
			l.mu.Lock()
			segs := len(l.segs)
			l.mu.Unlock()
			if segs < 3 {
				t.Fatalf("%s: log %d has %d segments, want rolls", what, i, segs)
			}
		}
		st := e.FileStats()
		if st.Open > limit || st.Limit != limit || st.Evictions == 0 {
			t.Fatalf("%s: file stats %+v, want at most %d open and evictions", what, st, limit)
		}
		if d, ok := fsys.(*diskFS); ok {
			if n := openSegmentFDs(t, d.root); n > limit {
				t.Fatalf("%s: %d segment descriptors open, want at most %d", what, n, limit)
			}
		}
	}
	check("after writes", e, ls)
	var crashed *CrashFS
	if c, ok := fsys.(*CrashFS); ok {
		crashed = c.Crash()
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	reopen := func(what string, fsys FS) {
		e := openEngineFiles(t, fsys, FsyncAlways, limit, 0)
		defer e.Close()
		ls := make([]*Log, logs)
		for i, tp := range tps {
			l, err := e.OpenLog(tp, cfg)
			if err != nil {
				t.Fatalf("%s: open log %d: %v", what, i, err)
			}
			ls[i] = l
		}
		check(what, e, ls)
		// The recovered logs take appends at the right offsets.
		for i, l := range ls {
			if res, _ := appendSpec(t, l, plain(1, 5, 1, byte(i))); res.BaseOffset != batches {
				t.Fatalf("%s: append to log %d at %d", what, i, res.BaseOffset)
			}
		}
	}
	reopen("restart", fsys)
	if crashed != nil {
		reopen("crash image", crashed)
	}
}

// TestIdleFilesClosed: with OpenFileIdle set, logs nobody appends to or
// reads hold no descriptor; the next read reopens the file.
func TestIdleFilesClosed(t *testing.T) { forEachIO(t, testIdleFilesClosed) }

func testIdleFilesClosed(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngineFiles(t, fsys, FsyncAlways, 0, 20*time.Millisecond)
	defer e.Close()
	var ls []*Log
	var data [][]byte
	for i := 0; i < 10; i++ {
		l, err := e.OpenLog(TopicPartition{Topic: "idle", Partition: int32(i)}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
		if err != nil {
			t.Fatal(err)
		}
		res, b := appendSpec(t, l, plain(2, 40, 5, byte(i)))
		if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		ls, data = append(ls, l), append(data, b)
	}
	waitFor(t, "idle files closed", func() bool { return e.FileStats().Open == 0 })
	if d, ok := fsys.(*diskFS); ok {
		if n := openSegmentFDs(t, d.root); n != 0 {
			t.Fatalf("%d segment descriptors open after idling", n)
		}
	}
	// At least one idle close per file (a slow machine may close one
	// between its append and its sync too), none for the limit.
	if st := e.FileStats(); st.IdleCloses < 10 || st.Evictions != 0 || st.IdleCloses != st.Opens {
		t.Fatalf("file stats %+v, want every open closed for idleness", st)
	}
	for i, l := range ls {
		r, err := l.Read(0, 1000, true)
		if err != nil || !bytes.Equal(r.Data, data[i]) {
			t.Fatalf("log %d after idle close: err %v, %d bytes", i, err, len(r.Data))
		}
		res, _ := appendSpec(t, l, plain(1, 10, 6, byte(i)))
		if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil || res.BaseOffset != 2 {
			t.Fatalf("log %d append after idle close at %d: %v", i, res.BaseOffset, err)
		}
	}
}

// TestEvictedSyncErrorFences: a log's file is closed to make room while
// it holds appended bytes group commit has not synced yet. The fdatasync
// before the close fails; group commit's later fdatasync through the
// reopened descriptor must not succeed in its place: the append's
// WaitDurable fails and the log is fenced.
func TestEvictedSyncErrorFences(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			var inner FS = NewCrashFS()
			if disk {
				inner = &diskFS{root: t.TempDir(), mode: IOSyscall}
			}
			gate := newGateFS(inner)
			ffs := NewFaultFS(gate)
			e := openEngineFiles(t, ffs, FsyncAlways, 2, 0)
			defer e.Close()
			open := func(name string) *Log {
				l, err := e.OpenLog(TopicPartition{Topic: name, Partition: 0}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			d, a, b := open("d"), open("a"), open("b")
			if res, _ := appendSpec(t, b, plain(1, 10, 1, 1)); b.WaitDurable(context.Background(), res.LastOffset) != nil {
				t.Fatal("b not durable")
			}
			// Hold the group-commit syncer in d's fdatasync.
			gate.setBlocked(true)
			appendSpec(t, d, plain(1, 10, 1, 2))
			waitFor(t, "syncer blocked on d", func() bool { _, w := gate.counts(); return w == 1 })
			res, _ := appendSpec(t, a, plain(1, 10, 1, 3))
			ffs.FailNextSync("a-0/00000000000000000000.log", syscall.EIO)
			// d's file is pinned by the syncer and a's reopened by the
			// append, so b's was closed; reading b needs a descriptor:
			// a's is closed to make room, its unsynced write
			// fdatasync'ed first.
			if r, err := b.Read(0, 1000, true); err != nil || len(r.Data) == 0 {
				t.Fatalf("read b: %v", err)
			}
			if n := ffs.Fired(); n != 1 {
				t.Fatalf("%d faults fired, want the eviction's fdatasync of a", n)
			}
			gate.setBlocked(false)
			err := a.WaitDurable(context.Background(), res.LastOffset)
			if !errors.Is(err, ErrFenced) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("WaitDurable after the evicted file's failed sync: %v, want fenced with EIO", err)
			}
			if a.HighWatermark() != 0 {
				t.Fatalf("hw %d: the unsynced batch became visible", a.HighWatermark())
			}
			if _, err := a.Append(makeBatch(plain(1, 10, 1, 4)), mustHeader(t, plain(1, 10, 1, 4)), 0); !errors.Is(err, ErrFenced) {
				t.Fatalf("append after the failed sync: %v", err)
			}
			// d was unaffected.
			if err := d.WaitDurable(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mustHeader(t testing.TB, s batchSpec) kafkaproto.BatchHeader {
	t.Helper()
	h, err := kafkaproto.ValidateBatch(makeBatch(s))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// failOpenFS fails OpenFile of names ending in suffix while set.
type failOpenFS struct {
	FS
	mu     sync.Mutex
	suffix string // guarded by mu; "" fails nothing
}

func (f *failOpenFS) set(suffix string) {
	f.mu.Lock()
	f.suffix = suffix
	f.mu.Unlock()
}

func (f *failOpenFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f.mu.Lock()
	fail := f.suffix != "" && strings.HasSuffix(name, f.suffix)
	f.mu.Unlock()
	if fail {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
	}
	return f.FS.OpenFile(name, flag, perm)
}

// TestReopenFailureDoesNotFence: an append whose segment file cannot be
// reopened (out of descriptors) fails without writing and without fencing
// the log; the next append, once the file opens again, lands right after
// the last one.
func TestReopenFailureDoesNotFence(t *testing.T) {
	fsys := &failOpenFS{FS: NewCrashFS()}
	e := openEngineFiles(t, fsys, FsyncAlways, 1, 0)
	defer e.Close()
	a, err := e.OpenLog(TopicPartition{Topic: "a", Partition: 0}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := appendSpec(t, a, plain(1, 10, 1, 1)); a.WaitDurable(context.Background(), res.LastOffset) != nil {
		t.Fatal("a not durable")
	}
	b, err := e.OpenLog(TopicPartition{Topic: "b", Partition: 0}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := appendSpec(t, b, plain(1, 10, 1, 2)) // a's file is closed for b's
	if err := b.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if st := e.FileStats(); st.Open != 1 || st.Evictions != 1 {
		t.Fatalf("file stats %+v, want a's file closed for b's", st)
	}
	fsys.set("a-0/00000000000000000000.log")
	batch := makeBatch(plain(1, 10, 1, 3))
	if _, err := a.Append(batch, mustHeader(t, plain(1, 10, 1, 3)), 0); !errors.Is(err, syscall.EMFILE) || errors.Is(err, ErrFenced) {
		t.Fatalf("append with the file unopenable: %v, want EMFILE and not fenced", err)
	}
	fsys.set("")
	res, want := appendSpec(t, a, plain(1, 10, 1, 4))
	if res.BaseOffset != 1 {
		t.Fatalf("append after the failed reopen at %d, want 1", res.BaseOffset)
	}
	if err := a.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Read(1, 1000, true); err != nil || !bytes.Equal(r.Data, want) {
		t.Fatalf("read back: %v, %d bytes", err, len(r.Data))
	}
}

// ckptCountFS counts OpenFile calls of names ending in suffix.
type ckptCountFS struct {
	FS
	suffix string
	mu     sync.Mutex
	n      int // guarded by mu
}

func (c *ckptCountFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if strings.HasSuffix(name, c.suffix) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return c.FS.OpenFile(name, flag, perm)
}

func (c *ckptCountFS) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestIdleCloseWritesNoCheckpoint: closing a replicated log writes its
// high-watermark checkpoint (two fsyncs) only when the next open would
// otherwise read another value, so shutting down a node of idle replicas
// costs no I/O per replica; the HW reopens the same either way.
func TestIdleCloseWritesNoCheckpoint(t *testing.T) {
	fsys := &ckptCountFS{FS: NewCrashFS(), suffix: hwFile + ".tmp"}
	tp := TopicPartition{Topic: "ckpt", Partition: 0}
	cycle := func(fn func(l *Log)) int64 {
		t.Helper()
		e := openEngineFiles(t, fsys, FsyncAlways, 0, 0)
		l, err := e.OpenLog(tp, replicaCfg)
		if err != nil {
			t.Fatal(err)
		}
		fn(l)
		hw := l.HighWatermark()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		return hw
	}
	// A new, empty replica: the open without a checkpoint starts at the
	// log start, as the HW is.
	if hw := cycle(func(*Log) {}); hw != 0 || fsys.count() != 0 {
		t.Fatalf("empty replica: hw %d, %d checkpoint writes, want 0 0", hw, fsys.count())
	}
	hw := cycle(func(l *Log) {
		res, _ := appendSpec(t, l, plain(3, 10, 1, 1))
		if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		l.AdvanceHighWatermark(2)
	})
	if hw != 2 || fsys.count() != 1 {
		t.Fatalf("after a HW advance: hw %d, %d checkpoint writes, want 2 1", hw, fsys.count())
	}
	for i := 0; i < 2; i++ {
		if hw := cycle(func(*Log) {}); hw != 2 || fsys.count() != 1 {
			t.Fatalf("idle reopen %d: hw %d, %d checkpoint writes, want 2 1", i, hw, fsys.count())
		}
	}
	if hw := cycle(func(l *Log) { l.AdvanceHighWatermark(3) }); hw != 3 || fsys.count() != 2 {
		t.Fatalf("after another advance: hw %d, %d checkpoint writes, want 3 2", hw, fsys.count())
	}
	if hw := cycle(func(*Log) {}); hw != 3 || fsys.count() != 2 {
		t.Fatalf("last reopen: hw %d, %d checkpoint writes, want 3 2", hw, fsys.count())
	}
}

// TestSyncReopenFailureRetries: group commit cannot reopen a log's closed
// segment file (out of descriptors). The log is not fenced: its waiter
// keeps waiting, and once the file opens again a later commit syncs it
// and the waiter returns.
func TestSyncReopenFailureRetries(t *testing.T) {
	fail := &failOpenFS{FS: NewCrashFS()}
	gate := newGateFS(fail)
	gate.only = "d-0/00000000000000000000.log"
	e := openEngineFiles(t, gate, FsyncAlways, 2, 0)
	defer e.Close()
	open := func(name string) *Log {
		l, err := e.OpenLog(TopicPartition{Topic: name, Partition: 0}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	d, a, b := open("d"), open("a"), open("b")
	if res, _ := appendSpec(t, b, plain(1, 10, 1, 1)); b.WaitDurable(context.Background(), res.LastOffset) != nil {
		t.Fatal("b not durable")
	}
	gate.setBlocked(true)
	appendSpec(t, d, plain(1, 10, 1, 2))
	waitFor(t, "syncer blocked on d", func() bool { _, w := gate.counts(); return w == 1 })
	res, _ := appendSpec(t, a, plain(1, 10, 1, 3))
	// Reading b closes a's file (d's is pinned by the syncer).
	if r, err := b.Read(0, 1000, true); err != nil || len(r.Data) == 0 {
		t.Fatalf("read b: %v", err)
	}
	if st := e.FileStats(); st.Open != 2 {
		t.Fatalf("file stats %+v, want d's and b's open", st)
	}
	fail.set("a-0/00000000000000000000.log")
	gate.setBlocked(false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := a.WaitDurable(ctx, res.LastOffset)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable while a's file cannot be reopened: %v, want it still waiting", err)
	}
	fail.set("")
	if err := a.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatalf("WaitDurable once the file opens again: %v", err)
	}
	if a.HighWatermark() != 1 {
		t.Fatalf("hw %d, want 1", a.HighWatermark())
	}
}
