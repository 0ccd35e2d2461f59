package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestParseFsyncPolicy(t *testing.T) {
	for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		got, err := ParseFsyncPolicy(p.String())
		if err != nil || got != p {
			t.Fatalf("%v: %v %v", p, got, err)
		}
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Fatal("accepted sometimes")
	}
}

func TestEngineLogsListDelete(t *testing.T) { forEachIO(t, testEngineLogsListDelete) }

func testEngineLogsListDelete(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncInterval, nil)
	tps := []TopicPartition{{"a-b-c", 0}, {"a-b-c", 12}, {"x.y_z", 1}}
	for _, tp := range tps {
		l, err := e.OpenLog(tp, LogConfig{RetentionBytes: -1, RetentionMs: -1})
		if err != nil {
			t.Fatal(err)
		}
		if l2, _ := e.OpenLog(tp, LogConfig{}); l2 != l {
			t.Fatal("OpenLog not idempotent")
		}
		appendSpec(t, l, plain(1, 10, 1, 1))
	}
	if _, err := e.OpenLog(TopicPartition{"bad/topic", 0}, LogConfig{}); err == nil {
		t.Fatal("accepted bad topic")
	}
	got, err := e.ListLogDirs()
	if err != nil || !reflect.DeepEqual(got, tps) {
		t.Fatalf("list %v %v", got, err)
	}
	l, _ := e.Log(tps[1])
	ch := make(chan struct{}, 1)
	l.AddWaiter(ch)
	if err := e.DeleteLog(tps[1]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("waiter not signalled on delete")
	}
	if _, ok := e.Log(tps[1]); ok {
		t.Fatal("deleted log still open")
	}
	if got, _ := e.ListLogDirs(); !reflect.DeepEqual(got, []TopicPartition{tps[0], tps[2]}) {
		t.Fatalf("list after delete %v", got)
	}
	waitDeletes(t, e)
	if names, _ := fsys.ReadDir(testDir); len(names) != 2 {
		t.Fatalf("dir entries after delete %v", names)
	}
	// A deleted log can be created again, empty.
	l, err = e.OpenLog(tps[1], LogConfig{})
	if err != nil || l.LogEndOffset() != 0 {
		t.Fatalf("recreate: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if _, err := e.OpenLog(tps[0], LogConfig{}); err == nil {
		t.Fatal("OpenLog after Close")
	}
}

func TestFsyncIntervalSyncsInBackground(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncInterval, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	res, b := appendSpec(t, l, plain(1, 10, 1, 1))
	if l.HighWatermark() != 1 {
		t.Fatal("interval: hw must be the leo at once")
	}
	if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "interval sync", func() bool {
		c := fsys.Crash()
		d, err := readWhole(c, segName(logDir, 0, logSuffix))
		return err == nil && bytes.Equal(d, b)
	})
}

func TestCrashFS(t *testing.T) {
	fsys := NewCrashFS()
	fsys.MkdirAll("/d", 0o755)
	fsys.SyncDir("/")
	f, _ := fsys.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o644)
	f.WriteAt([]byte("hello"), 0)
	if c := fsys.Crash(); func() bool { _, err := c.Stat("/d/a"); return err == nil }() {
		t.Fatal("file survived without dir sync")
	}
	fsys.SyncDir("/d")
	f.Sync()
	f.WriteAt([]byte(" world"), 5)
	c := fsys.Crash()
	if d, _ := readWhole(c, "/d/a"); string(d) != "hello" {
		t.Fatalf("after crash %q", d)
	}
	torn := map[string]bool{}
	for seed := int64(0); seed < 20; seed++ {
		d, _ := readWhole(fsys.CrashTorn(seed), "/d/a")
		if !bytes.HasPrefix([]byte("hello world"), d) || len(d) < 5 {
			t.Fatalf("torn content %q", d)
		}
		torn[string(d)] = true
		d2, _ := readWhole(fsys.CrashTorn(seed), "/d/a")
		if !bytes.Equal(d, d2) {
			t.Fatal("CrashTorn not deterministic")
		}
	}
	if len(torn) < 3 {
		t.Fatalf("torn prefixes not varied: %v", torn)
	}
	fsys.Rename("/d/a", "/d/b")
	if _, err := fsys.Crash().Stat("/d/a"); err != nil {
		t.Fatal("rename durable without dir sync")
	}
	fsys.SyncDir("/d")
	c = fsys.Crash()
	if _, err := c.Stat("/d/a"); err == nil {
		t.Fatal("old name survived synced rename")
	}
	if _, err := c.Stat("/d/b"); err != nil {
		t.Fatal("new name lost")
	}
	fsys.Remove("/d/b")
	if _, err := f.ReadAt(make([]byte, 5), 0); err != nil {
		t.Fatal("open handle broken by remove:", err)
	}
}

func FuzzRecover(f *testing.F) {
	good := makeBatch(plain(2, 10, 5, 1))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 70))
	f.Add(good[:len(good)/2])
	g := append([]byte(nil), good...)
	g[7] = 3 // base offset 3 = the log end offset below
	f.Add(g)
	f.Add(append(g, g...))
	f.Fuzz(func(t *testing.T, tail []byte) {
		fsys := NewCrashFS()
		e, err := Open(Options{Dir: testDir, Fsync: FsyncNever, FS: fsys, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		l := openLog(t, e, LogConfig{})
		var want [][]byte
		for i := 0; i < 2; i++ {
			_, b := appendSpec(t, l, plain(1+i, 10, 1, byte(i)))
			want = append(want, b)
		}
		e.Close()
		file := segName(logDir, 0, logSuffix)
		fh, _ := fsys.OpenFile(file, os.O_RDWR, 0)
		fh.WriteAt(tail, int64(len(want[0])+len(want[1])))
		fh.Close()
		e2, err := Open(Options{Dir: testDir, Fsync: FsyncNever, FS: fsys, Logger: zerolog.Nop(), RetentionCheckInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer e2.Close()
		l2, err := e2.OpenLog(tp0, LogConfig{})
		if err != nil {
			t.Fatalf("recover: %v", err)
		}
		got := checkValidLog(t, l2)
		if len(got) < 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
			t.Fatalf("valid prefix lost: %d batches", len(got))
		}
		var total int64
		for _, b := range got {
			total += int64(len(b))
		}
		if st, _ := fsys.Stat(file); st.Size() != total || l2.Size() != total {
			t.Fatalf("file %d bytes, log %d, batches %d", st.Size(), l2.Size(), total)
		}
	})
}

// blockFS wraps an FS: once armed, the next SyncDir of a path, or the next
// RemoveAll, blocks until released.
type blockFS struct {
	FS
	mu      sync.Mutex
	op      string // "syncdir" or "removeall"; "" when not armed
	path    string // for syncdir
	entered chan struct{}
	release chan struct{}
}

// arm makes the next op (on path, for syncdir) block; entered is closed
// when it blocks, and it proceeds once release is closed.
func (b *blockFS) arm(op, path string) (entered, release chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.op, b.path = op, path
	b.entered, b.release = make(chan struct{}), make(chan struct{})
	return b.entered, b.release
}

func (b *blockFS) gate(op, path string) {
	b.mu.Lock()
	if b.op != op || (op == "syncdir" && b.path != path) {
		b.mu.Unlock()
		return
	}
	b.op = ""
	entered, release := b.entered, b.release
	b.mu.Unlock()
	close(entered)
	<-release
}

func (b *blockFS) SyncDir(name string) error {
	b.gate("syncdir", name)
	return b.FS.SyncDir(name)
}

func (b *blockFS) RemoveAll(name string) error {
	b.gate("removeall", name)
	return b.FS.RemoveAll(name)
}

// within fails the test unless done is closed within the deadline.
func within(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still blocked after 10s", what)
	}
}

// TestDeleteLogDoesNotBlockEngine: while DeleteLog waits on the directory
// fsync, and then while the deleter waits on RemoveAll, other logs can be looked up and opened, the
// deleted log is gone from the engine, and a crash at either point leaves
// the old log whole or no log at all.
func TestDeleteLogDoesNotBlockEngine(t *testing.T) {
	cfs := NewCrashFS()
	bfs := &blockFS{FS: cfs}
	e := openEngine(t, bfs, FsyncAlways, nil)
	// A cleanup, not a defer: it must run after the cleanups below that
	// release a blocked DeleteLog.
	t.Cleanup(func() { e.Close() })
	cfg := LogConfig{RetentionBytes: -1, RetentionMs: -1}
	victim, other := TopicPartition{"victim", 0}, TopicPartition{"other", 0}
	for _, tp := range []TopicPartition{victim, other} {
		l, err := e.OpenLog(tp, cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := appendSpec(t, l, plain(1, 10, 1, 1))
		if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
	}
	open := func(tp TopicPartition) *Log {
		t.Helper()
		l, err := e.OpenLog(tp, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// recovered opens an engine on c and returns its directory entries,
	// and the LEO of each log.
	recovered := func(c *CrashFS) ([]string, map[string]int64) {
		t.Helper()
		e2 := openEngine(t, c, FsyncAlways, nil)
		defer e2.Close()
		waitDeletes(t, e2) // leftover tombstones go
		names, err := c.ReadDir(testDir)
		if err != nil {
			t.Fatal(err)
		}
		tps, err := e2.ListLogDirs()
		if err != nil {
			t.Fatal(err)
		}
		leos := map[string]int64{}
		for _, tp := range tps {
			l, err := e2.OpenLog(tp, cfg)
			if err != nil {
				t.Fatal(err)
			}
			leos[tp.String()] = l.LogEndOffset()
		}
		return names, leos
	}

	// 1. Blocked in the directory fsync after the rename.
	entered, release := bfs.arm("syncdir", testDir)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	deleted := make(chan error, 1)
	go func() { deleted <- e.DeleteLog(victim) }()
	within(t, "DeleteLog reaching the directory fsync", entered)
	// A crash now keeps the whole old log: the rename is not durable.
	// (Later, OpenLog's directory fsync would make it durable.)
	if names, leos := recovered(cfs.Crash()); !slices.Equal(names, []string{"other-0", "victim-0"}) || leos["victim-0"] != 1 {
		t.Fatalf("after a crash in the directory fsync: %v, LEOs %v", names, leos)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, ok := e.Log(other); !ok {
			t.Error("other log not found")
		}
		if _, ok := e.Log(victim); ok {
			t.Error("log being deleted still found")
		}
		if l := open(TopicPartition{"third", 0}); l.LogEndOffset() != 0 {
			t.Errorf("new log LEO %d", l.LogEndOffset())
		}
	}()
	within(t, "Log and OpenLog during DeleteLog's directory fsync", done)
	reopened := make(chan *Log, 1)
	go func() { reopened <- open(victim) }() // waits for the delete
	releaseOnce.Do(func() { close(release) })
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if l := <-reopened; l.LogEndOffset() != 0 {
		t.Fatalf("victim reopened after delete with LEO %d, want a new empty log", l.LogEndOffset())
	}

	// 2. Blocked in RemoveAll of the tombstone. The deleter first
	// finishes the victim's tombstone, whose RemoveAll would otherwise
	// trip the gate before DeleteLog(other) renamed anything.
	waitDeletes(t, e)
	entered, release2 := bfs.arm("removeall", "")
	var release2Once sync.Once
	t.Cleanup(func() { release2Once.Do(func() { close(release2) }) })
	go func() { deleted <- e.DeleteLog(other) }()
	within(t, "the deleter reaching RemoveAll", entered)
	done = make(chan struct{})
	go func() {
		defer close(done)
		if _, ok := e.Log(victim); !ok {
			t.Error("victim log not found")
		}
		if _, ok := e.Log(other); ok {
			t.Error("log being deleted still found")
		}
		if l := open(TopicPartition{"fourth", 0}); l.LogEndOffset() != 0 {
			t.Errorf("new log LEO %d", l.LogEndOffset())
		}
	}()
	within(t, "Log and OpenLog during DeleteLog's RemoveAll", done)
	// A crash now leaves the tombstone, which the next open removes.
	if names, leos := recovered(cfs.Crash()); !slices.Equal(names, []string{"fourth-0", "third-0", "victim-0"}) || leos["victim-0"] != 0 {
		t.Fatalf("after a crash in RemoveAll: %v, LEOs %v", names, leos)
	}
	release2Once.Do(func() { close(release2) })
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	waitDeletes(t, e)
	if names, _ := cfs.ReadDir(testDir); !slices.Equal(names, []string{"fourth-0", "third-0", "victim-0"}) {
		t.Fatalf("after DeleteLog: %v", names)
	}
}

// statFailFS fails Stat of one path with EIO.
type statFailFS struct {
	FS
	path string
}

func (s statFailFS) Stat(name string) (os.FileInfo, error) {
	if name == s.path {
		return nil, &os.PathError{Op: "stat", Path: name, Err: syscall.EIO}
	}
	return s.FS.Stat(name)
}

// TestListLogDirsStatError: a log directory that cannot be examined fails
// the listing instead of silently leaving the log out of it.
func TestListLogDirsStatError(t *testing.T) {
	cfs := NewCrashFS()
	e := openEngine(t, statFailFS{FS: cfs, path: filepath.Join(testDir, "b-0")}, FsyncNever, nil)
	defer e.Close()
	for _, tp := range []TopicPartition{{"a", 0}, {"b", 0}} {
		if err := cfs.MkdirAll(filepath.Join(testDir, tp.String()), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.ListLogDirs()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("ListLogDirs = %v, %v; want an EIO error", got, err)
	}
}
