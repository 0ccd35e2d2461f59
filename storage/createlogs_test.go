package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
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
