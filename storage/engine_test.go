package storage

import (
	"bytes"
	"context"
	"os"
	"reflect"
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
