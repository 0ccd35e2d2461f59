package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countFS counts SyncDir calls per directory.
type countFS struct {
	FS
	mu    sync.Mutex
	syncs map[string]int
}

func (c *countFS) SyncDir(name string) error {
	c.mu.Lock()
	c.syncs[name]++
	c.mu.Unlock()
	return c.FS.SyncDir(name)
}

// TestCreateLogs: new logs are created open, empty, with their topic IDs,
// and durable (they survive a crash right after CreateLogs returns) with
// one sync of the logs directory for all of them; open or existing logs
// and duplicates are left alone (ErrLogExists).
func TestCreateLogs(t *testing.T) {
	crash := NewCrashFS()
	fsys := &countFS{FS: crash, syncs: map[string]int{}}
	e := openEngine(t, fsys, FsyncAlways, nil)
	existing := TopicPartition{Topic: "old", Partition: 0}
	if _, err := e.OpenLog(existing, LogConfig{}); err != nil {
		t.Fatal(err)
	}
	var specs []NewLog
	for i := range 50 {
		specs = append(specs, NewLog{TP: TopicPartition{Topic: fmt.Sprintf("t%d", i/3), Partition: int32(i % 3)}, TopicID: [16]byte{byte(i), 1}})
	}
	specs = append(specs, NewLog{TP: existing}, NewLog{TP: specs[0].TP, TopicID: [16]byte{99}}, NewLog{TP: TopicPartition{Topic: "bad/name"}})
	fsys.mu.Lock()
	clear(fsys.syncs)
	fsys.mu.Unlock()
	logs, errs := e.CreateLogs(specs)
	for i := range 50 {
		if errs[i] != nil || logs[i] == nil {
			t.Fatalf("log %d (%s): %v", i, specs[i].TP, errs[i])
		}
		if got, ok := e.Log(specs[i].TP); !ok || got != logs[i] || logs[i].LogEndOffset() != 0 {
			t.Fatalf("log %s not open and empty", specs[i].TP)
		}
		id, known, err := e.LogTopicID(specs[i].TP)
		if err != nil || !known || id != specs[i].TopicID {
			t.Fatalf("topic id of %s: %x %v %v", specs[i].TP, id, known, err)
		}
	}
	for _, i := range []int{50, 51} {
		if !errors.Is(errs[i], ErrLogExists) || logs[i] != nil {
			t.Fatalf("entry %d (%s): %v, want ErrLogExists", i, specs[i].TP, errs[i])
		}
	}
	if errs[52] == nil || errors.Is(errs[52], ErrLogExists) {
		t.Fatalf("invalid name: %v", errs[52])
	}
	fsys.mu.Lock()
	parent := fsys.syncs[testDir]
	fsys.mu.Unlock()
	if parent != 1 {
		t.Fatalf("logs directory synced %d times for 50 new logs, want 1", parent)
	}
	// Appends work, and all of it survives a crash now.
	res, _ := appendSpec(t, logs[7], plain(2, 10, 1, 1))
	if err := logs[7].WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}

	c := crash.Crash()
	e2 := openEngine(t, c, FsyncAlways, nil)
	defer e2.Close()
	for i := range 50 {
		id, known, err := e2.LogTopicID(specs[i].TP)
		if err != nil || !known || id != specs[i].TopicID {
			t.Fatalf("after a crash: topic id of %s: %x %v %v", specs[i].TP, id, known, err)
		}
	}
	dirs, err := e2.ListLogDirs()
	if err != nil || len(dirs) != 51 {
		t.Fatalf("after a crash: %d log dirs (%v), want 51", len(dirs), err)
	}
	l, err := e2.OpenLog(specs[7].TP, LogConfig{})
	if err != nil || l.LogEndOffset() != 2 {
		t.Fatalf("after a crash: %s: leo %d, %v", specs[7].TP, l.LogEndOffset(), err)
	}
	e.Close()
}

// TestCreateLogsClosed: a closed engine creates nothing.
func TestCreateLogsClosed(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	e.Close()
	_, errs := e.CreateLogs([]NewLog{{TP: tp0}})
	if !errors.Is(errs[0], ErrClosed) {
		t.Fatalf("CreateLogs after Close: %v", errs[0])
	}
}

// syncAllFS is a CrashFS that counts SyncAll and SyncDir calls and can
// take a crash image just before the SyncAll.
type syncAllFS struct {
	*CrashFS
	mu       sync.Mutex
	syncAlls int
	syncDirs int
	before   *CrashFS // the durable state just before the last SyncAll
}

func (c *syncAllFS) SyncAll(dir string) error {
	c.mu.Lock()
	c.syncAlls++
	c.before = c.CrashFS.CrashTorn(int64(c.syncAlls))
	c.mu.Unlock()
	return c.CrashFS.SyncAll(dir)
}

func (c *syncAllFS) SyncDir(name string) error {
	c.mu.Lock()
	c.syncDirs++
	c.mu.Unlock()
	return c.CrashFS.SyncDir(name)
}

// TestCreateLogsSyncAll: a batch of at least syncAllMin new logs is made
// durable by one SyncAll (syncfs) and no other directory sync; after a
// crash right after CreateLogs returns every log is there, empty, with its
// topic ID, and takes appends; the logs open without recovery behave as
// recovered ones (replicated: high watermark 0 until advanced).
func TestCreateLogsSyncAll(t *testing.T) {
	fsys := &syncAllFS{CrashFS: NewCrashFS()}
	e := openEngine(t, fsys, FsyncAlways, nil)
	n := syncAllMin + 8
	var specs []NewLog
	for i := range n {
		specs = append(specs, NewLog{TP: TopicPartition{Topic: fmt.Sprintf("t%d", i/4), Partition: int32(i % 4)}, TopicID: [16]byte{byte(i), 2},
			Config: LogConfig{Replicated: i%2 == 0}})
	}
	fsys.mu.Lock()
	fsys.syncAlls, fsys.syncDirs = 0, 0
	fsys.mu.Unlock()
	logs, errs := e.CreateLogs(specs)
	for i := range n {
		if errs[i] != nil || logs[i] == nil {
			t.Fatalf("log %d (%s): %v", i, specs[i].TP, errs[i])
		}
		if got, ok := e.Log(specs[i].TP); !ok || got != logs[i] || logs[i].LogEndOffset() != 0 || logs[i].HighWatermark() != 0 || logs[i].LogStartOffset() != 0 {
			t.Fatalf("log %s not open and empty", specs[i].TP)
		}
	}
	fsys.mu.Lock()
	alls, dirs, before := fsys.syncAlls, fsys.syncDirs, fsys.before
	fsys.mu.Unlock()
	if alls != 1 || dirs != 0 {
		t.Fatalf("%d new logs: %d SyncAll and %d SyncDir calls, want 1 and 0", n, alls, dirs)
	}
	// A crash just before the sync: whatever of the new logs reached the
	// disk opens, and reads as having no topic ID or the right one.
	eb := openEngine(t, before, FsyncAlways, nil)
	for i := range n {
		id, known, err := eb.LogTopicID(specs[i].TP)
		if err != nil || (known && id != specs[i].TopicID) {
			t.Fatalf("crash before the sync: topic id of %s: %x %v %v", specs[i].TP, id, known, err)
		}
	}
	eb.Close()

	// Appends work on the new logs: unreplicated ones are durable at
	// once, replicated ones once their high watermark moves.
	res, _ := appendSpec(t, logs[1], plain(3, 10, 1, 1))
	if err := logs[1].WaitDurable(context.Background(), res.LastOffset); err != nil || logs[1].HighWatermark() != 3 {
		t.Fatalf("append to a new log: hw %d, %v", logs[1].HighWatermark(), err)
	}
	res, _ = appendSpec(t, logs[0], plain(2, 10, 1, 1))
	if err := logs[0].WaitDurable(context.Background(), res.LastOffset); err != nil || logs[0].HighWatermark() != 0 {
		t.Fatalf("append to a new replicated log: hw %d, %v", logs[0].HighWatermark(), err)
	}
	c := fsys.Crash()
	e2 := openEngine(t, c, FsyncAlways, nil)
	defer e2.Close()
	for i := range n {
		id, known, err := e2.LogTopicID(specs[i].TP)
		if err != nil || !known || id != specs[i].TopicID {
			t.Fatalf("after a crash: topic id of %s: %x %v %v", specs[i].TP, id, known, err)
		}
		l, err := e2.OpenLog(specs[i].TP, specs[i].Config)
		want := int64(0)
		switch i {
		case 0:
			want = 2
		case 1:
			want = 3
		}
		if err != nil || l.LogEndOffset() != want {
			t.Fatalf("after a crash: %s: %v, want leo %d", specs[i].TP, err, want)
		}
		if l.LogEndOffset() != 0 {
			continue
		}
		appendSpec(t, l, plain(1, 10, 1, 1))
	}
	e.Close()
}

// TestTornTopicIDReadsAsNone: a topic ID record cut short anywhere (a crash
// before CreateLogs' sync; the record is written in place) reads as no
// record; a whole one reads as its ID; anything else is an error.
func TestTornTopicIDReadsAsNone(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	defer e.Close()
	id := [16]byte{0xab, 0xcd, 7}
	body := topicIDBody(id)
	tp := TopicPartition{Topic: "torn", Partition: 0}
	name := e.logDir(tp) + "/" + topicIDFile
	if err := fsys.MkdirAll(e.logDir(tp), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		t.Helper()
		f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for n := 0; n < len(body); n++ {
		write(body[:n])
		if got, known, err := e.readLogTopicID(tp); err != nil || known {
			t.Fatalf("record cut at %d of %d bytes: %x %v %v, want no record", n, len(body), got, known, err)
		}
	}
	write(body)
	if got, known, err := e.readLogTopicID(tp); err != nil || !known || got != id {
		t.Fatalf("whole record: %x %v %v", got, known, err)
	}
	for _, bad := range []string{"garbage", "version: 0\ntopic_id: zz\n", "version: 1\n"} {
		write([]byte(bad))
		if _, _, err := e.readLogTopicID(tp); err == nil {
			t.Fatalf("record %q read without an error", bad)
		}
	}
}

// gatedSyncFS holds the first sync (SyncDir or SyncAll) until gate
// returns, and counts the syncs of the logs directory.
type gatedSyncFS struct {
	*syncAllFS
	once    sync.Once
	armed   atomic.Bool
	gate    func()
	parents atomic.Int32
}

func (g *gatedSyncFS) SyncDir(name string) error {
	if g.armed.Load() {
		g.once.Do(g.gate)
		if name == testDir {
			g.parents.Add(1)
		}
	}
	return g.syncAllFS.SyncDir(name)
}

func (g *gatedSyncFS) SyncAll(dir string) error {
	if g.armed.Load() {
		g.once.Do(g.gate)
	}
	return g.syncAllFS.SyncAll(dir)
}

// TestCreateLogsCombinesCalls: CreateLogs calls made while a batch is
// being written queue and go together in the next batch (64 calls of 3
// logs each: at most two batches), and each call gets its own logs back.
func TestCreateLogsCombinesCalls(t *testing.T) {
	inner := &syncAllFS{CrashFS: NewCrashFS()}
	g := &gatedSyncFS{syncAllFS: inner}
	e := openEngine(t, g, FsyncAlways, nil)
	defer e.Close()
	const calls = 64
	g.gate = func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			e.creates.mu.Lock()
			n := e.creates.calls
			e.creates.mu.Unlock()
			if n == calls || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	inner.mu.Lock()
	inner.syncAlls = 0
	inner.mu.Unlock()
	g.armed.Store(true)
	var wg sync.WaitGroup
	errc := make(chan error, calls)
	for c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var specs []NewLog
			for p := range 3 {
				specs = append(specs, NewLog{TP: TopicPartition{Topic: fmt.Sprintf("c%d", c), Partition: int32(p)}, TopicID: [16]byte{byte(c), 3}})
			}
			logs, errs := e.CreateLogs(specs)
			for i := range specs {
				if errs[i] != nil {
					errc <- errs[i]
					return
				}
				if got, ok := e.Log(specs[i].TP); !ok || got != logs[i] {
					errc <- fmt.Errorf("call %d got the wrong log for %s", c, specs[i].TP)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	inner.mu.Lock()
	alls := inner.syncAlls
	inner.mu.Unlock()
	// Two batches (the first, then every call queued meanwhile), or one
	// if every call queued before the first batch began.
	if batches := alls + int(g.parents.Load()); batches < 1 || batches > 2 {
		t.Fatalf("%d batches (%d SyncAll, %d syncs of the logs directory), want 1 or 2", batches, alls, g.parents.Load())
	}
	if alls < 1 {
		t.Fatal("no SyncAll: the calls queued during the first batch did not go together")
	}
	e2 := openEngine(t, inner.Crash(), FsyncAlways, nil)
	defer e2.Close()
	dirs, err := e2.ListLogDirs()
	if err != nil || len(dirs) != 3*calls {
		t.Fatalf("after a crash: %d log dirs (%v), want %d", len(dirs), err, 3*calls)
	}
}
