package storage

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// failSync is an OS file whose own Sync fails with err.
type failSync struct {
	osFile
	err error
}

func (f failSync) Sync() error { return f.err }

// syncfsFixture is a syncfsBackend over the syscall backend on a temp
// dir, whose syncfs calls are counted and return *fail.
func syncfsFixture(t *testing.T) (*syncfsBackend, string, *int, *error) {
	t.Helper()
	dir := t.TempDir()
	var calls atomic.Int64
	be, note := withSyncfs(syscallBackend{}, SyncAuto, OSFS(), dir, &calls)
	b, ok := be.(*syncfsBackend)
	if !ok {
		t.Skipf("syncfs not used here: %s", note)
	}
	t.Cleanup(func() { _ = b.close() })
	n := 0
	var fail error
	b.syncfs = func(fd int) error { n++; return fail }
	b.dirty = func() (int64, bool) { return 0, true }
	return b, dir, &n, &fail
}

// openOSFile creates dir/name holding one byte, closed at the test's end.
func openOSFile(t *testing.T, dir, name string) osFile {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	return osFile{f}
}

// A commit of several files is one syncfs; a commit of one file is its
// fdatasync.
func TestSyncfsForSeveralFiles(t *testing.T) {
	b, dir, calls, _ := syncfsFixture(t)
	a, c := openOSFile(t, dir, "a"), openOSFile(t, dir, "c")
	errs := make([]error, 1)
	b.syncFiles([]File{failSync{a, syscall.EIO}}, errs)
	if *calls != 0 || !errors.Is(errs[0], syscall.EIO) {
		t.Fatalf("one file: %d syncfs calls, error %v; want 0 and the file's own EIO", *calls, errs[0])
	}
	errs = make([]error, 2)
	b.syncFiles([]File{a, c}, errs)
	if *calls != 1 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("two files: %d syncfs calls, errors %v; want 1 and none", *calls, errs)
	}
	// A file that is not an OS file on the data directory's file system
	// is synced on its own, beside the syncfs of the others.
	other := &countSync{}
	errs = make([]error, 3)
	b.syncFiles([]File{a, other, c}, errs)
	if *calls != 2 || other.n != 1 || errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("two OS files and another: %d syncfs calls, %d own syncs, errors %v", *calls, other.n, errs)
	}
}

// With more dirty page cache than syncfsMaxDirty (someone else's writes
// that a syncfs would wait for), or none known, a commit is fdatasync per
// file.
func TestSyncfsNotWithMuchDirty(t *testing.T) {
	b, dir, calls, _ := syncfsFixture(t)
	a, c := openOSFile(t, dir, "a"), openOSFile(t, dir, "c")
	for _, d := range []struct {
		bytes int64
		ok    bool
	}{{syncfsMaxDirty + 1, true}, {0, false}} {
		b.dirty = func() (int64, bool) { return d.bytes, d.ok }
		errs := make([]error, 2)
		b.syncFiles([]File{a, failSync{c, syscall.EIO}}, errs)
		if *calls != 0 || errs[0] != nil || !errors.Is(errs[1], syscall.EIO) {
			t.Fatalf("dirty %d (known %v): %d syncfs calls, errors %v; want none and c's own EIO", d.bytes, d.ok, *calls, errs)
		}
	}
}

func TestParseDirty(t *testing.T) {
	mi := []byte("MemTotal:       24576000 kB\nMemFree:         1000 kB\nDirty:             60 kB\nWriteback:         0 kB\n")
	if got, ok := parseDirty(mi); !ok || got != 60<<10 {
		t.Fatalf("parseDirty: %d, %v; want %d", got, ok, 60<<10)
	}
	if _, ok := parseDirty([]byte("MemTotal: 1 kB\n")); ok {
		t.Fatal("parseDirty without Dirty: ok")
	}
	b := &syncfsBackend{}
	mf, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	defer mf.Close()
	b.meminfo = mf
	if _, ok := b.readDirty(); !ok {
		t.Fatal("readDirty of /proc/meminfo: not found")
	}
}

// countSync is a non-OS file that counts its syncs.
type countSync struct {
	File
	n int
}

func (f *countSync) Sync() error { f.n++; return nil }

// A failed syncfs is retried file by file: each file's own error is
// kept; if no file reports one, every file fails with the syncfs error.
func TestSyncfsErrorAttribution(t *testing.T) {
	b, dir, _, fail := syncfsFixture(t)
	a, c := openOSFile(t, dir, "a"), openOSFile(t, dir, "c")
	*fail = syscall.EIO
	errs := make([]error, 2)
	b.syncFiles([]File{a, failSync{c, syscall.ENOSPC}}, errs)
	if errs[0] != nil || !errors.Is(errs[1], syscall.ENOSPC) {
		t.Fatalf("syncfs EIO, file c's fdatasync ENOSPC: errors %v; want nil and c's ENOSPC", errs)
	}
	errs = make([]error, 2)
	b.syncFiles([]File{a, c}, errs)
	for i, err := range errs {
		if !errors.Is(err, syscall.EIO) || !errors.Is(err, errNoFileReported) {
			t.Fatalf("syncfs EIO, no file reports one: file %d: %v; want the syncfs EIO", i, err)
		}
	}
}

// The engine's group commits of several logs go through syncfs (on OSFS,
// Linux 5.8+), and SyncFdatasync turns it off.
func TestEngineSyncfsCommits(t *testing.T) {
	if !syncfsReportsErrors() {
		t.Skip("kernel before 5.8")
	}
	for _, m := range []SyncMethod{SyncAuto, SyncFdatasync} {
		e, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncAlways, Logger: zerolog.Nop(), SyncMethod: m, IO: IOSyscall})
		if err != nil {
			t.Fatal(err)
		}
		// Logs appended while the syncer is busy share a commit: append
		// to all, then wait; repeat until a commit covered several.
		var logs []*Log
		for p := range 4 {
			l, err := e.OpenLog(TopicPartition{Topic: "t", Partition: int32(p)}, LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1})
			if err != nil {
				t.Fatal(err)
			}
			logs = append(logs, l)
		}
		for round := 0; round < 200 && (m == SyncFdatasync || e.Stats().Syncfs == 0); round++ {
			var lasts []int64
			for _, l := range logs {
				res, _ := appendSpec(t, l, plain(1, 100, 0, 'v'))
				lasts = append(lasts, res.LastOffset)
			}
			for i, l := range logs {
				if err := l.WaitDurable(t.Context(), lasts[i]); err != nil {
					t.Fatal(err)
				}
			}
			if m == SyncFdatasync && round == 20 {
				break
			}
		}
		got := e.Stats().Syncfs
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if m == SyncAuto && got == 0 {
			t.Fatalf("%v: no group commit went through syncfs in 200 rounds of 4 logs", m)
		}
		if m == SyncFdatasync && got != 0 {
			t.Fatalf("%v: %d syncfs calls", m, got)
		}
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.18.44-fc-v1252": true, "5.8.0": true, "5.10": true, "5.7.19": false, "4.19.0-25-amd64": false, "5": false, "x.y": false, "5.8rc1": true} {
		if got := releaseAtLeast(rel, 5, 8); got != want {
			t.Errorf("releaseAtLeast(%q, 5, 8) = %v, want %v", rel, got, want)
		}
	}
}
