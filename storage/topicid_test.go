package storage

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// idReadFS counts opens of topic ID files for reading.
type idReadFS struct {
	FS
	mu    sync.Mutex
	reads int
}

func (f *idReadFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if filepath.Base(name) == topicIDFile && flag == os.O_RDONLY {
		f.mu.Lock()
		f.reads++
		f.mu.Unlock()
	}
	return f.FS.OpenFile(name, flag, perm)
}

func (f *idReadFS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// TestLogTopicIDCached: a log's topic ID is read from its file at most
// once; creating, setting and deleting keep the answer current (a deleted
// and recreated log has no ID until one is set), and a new engine over the
// same directory reads what was written.
func TestLogTopicIDCached(t *testing.T) {
	crash := NewCrashFS()
	fsys := &idReadFS{FS: crash}
	e := openEngine(t, fsys, FsyncAlways, nil)
	tp := TopicPartition{Topic: "t", Partition: 0}
	a, b := [16]byte{1}, [16]byte{2}
	if _, errs := e.CreateLogs([]NewLog{{TP: tp, TopicID: a}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for range 3 {
		if id, ok, err := e.LogTopicID(tp); err != nil || !ok || id != a {
			t.Fatalf("LogTopicID = %x %v %v, want %x", id, ok, err, a)
		}
	}
	if n := fsys.count(); n != 0 {
		t.Fatalf("%d reads of the topic ID file after CreateLogs, want 0", n)
	}
	if err := e.DeleteLog(tp); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.LogTopicID(tp); err != nil || ok {
		t.Fatalf("deleted log: known %v, err %v", ok, err)
	}
	if _, err := e.CreateLogAt(tp, LogConfig{}, 10); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.LogTopicID(tp); err != nil || ok {
		t.Fatalf("recreated log without an ID: known %v, err %v", ok, err)
	}
	if err := e.SetLogTopicID(tp, b); err != nil {
		t.Fatal(err)
	}
	before := fsys.count()
	if id, ok, err := e.LogTopicID(tp); err != nil || !ok || id != b {
		t.Fatalf("after SetLogTopicID: %x %v %v, want %x", id, ok, err, b)
	}
	if n := fsys.count() - before; n != 0 {
		t.Fatalf("%d reads after SetLogTopicID, want 0", n)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openEngine(t, fsys, FsyncAlways, nil)
	for range 2 {
		if id, ok, err := e2.LogTopicID(tp); err != nil || !ok || id != b {
			t.Fatalf("new engine: %x %v %v, want %x", id, ok, err, b)
		}
	}
	if n := fsys.count() - before; n != 1 {
		t.Fatalf("new engine read the file %d times, want 1", n)
	}
}
