package storage

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// ioEnv is one file system and I/O backend the storage suite runs over:
// the in-memory CrashFS, or real files under t.TempDir() with the syscall
// or the io_uring backend (every segment write, read and fdatasync through
// the ring).
type ioEnv struct {
	name string
	disk bool
	mode IOMode
}

func ioEnvs() []ioEnv {
	return []ioEnv{
		{name: "crashfs"},
		{name: "syscall", disk: true, mode: IOSyscall},
		{name: "uring", disk: true, mode: IOUring},
	}
}

// forEachIO runs fn as a subtest per environment.
func forEachIO(t *testing.T, fn func(t *testing.T, env ioEnv)) {
	t.Helper()
	for _, env := range ioEnvs() {
		t.Run(env.name, func(t *testing.T) {
			if env.mode == IOUring {
				skipWithoutUring(t)
			}
			fn(t, env)
		})
	}
}

func skipWithoutUring(t testing.TB) {
	t.Helper()
	if _, _, err := newBackend(IOUring, nil); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
}

// newFS returns a fresh file system for the environment.
func (env ioEnv) newFS(t testing.TB) FS {
	if !env.disk {
		return NewCrashFS()
	}
	return &diskFS{root: t.TempDir(), mode: env.mode}
}

// faultInjector is what the fault tests need; FaultFS implements it at the
// File layer, ringFaults inside the io_uring backend.
type faultInjector interface {
	FailNextWrite(suffix string, err error)
	ShortNextWrite(suffix string)
	FailNextSync(suffix string, err error)
	Fired() int
}

// faultFS returns a fresh file system with fault injection: FaultFS over
// the environment's FS, or for uring a diskFS whose backend injects faults
// into ring ops (so the errors come back through completions). inner is
// what a restart reopens.
func (env ioEnv) faultFS(t testing.TB) (fsys FS, inner FS, inj faultInjector) {
	inner = env.newFS(t)
	if env.mode == IOUring {
		rf := &ringFaults{}
		d := inner.(*diskFS)
		return &diskFS{root: d.root, mode: d.mode, fault: rf.hook}, inner, rf
	}
	ffs := NewFaultFS(inner)
	return ffs, inner, ffs
}

// diskFS is OSFS rooted at a directory (the suite's absolute paths such as
// /data land under it); it also carries the I/O backend to open engines
// with.
type diskFS struct {
	root  string
	mode  IOMode
	fault ioFault
}

func (d *diskFS) p(name string) string { return filepath.Join(d.root, name) }

func (d *diskFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return OSFS().OpenFile(d.p(name), flag, perm)
}
func (d *diskFS) Remove(name string) error                     { return os.Remove(d.p(name)) }
func (d *diskFS) RemoveAll(name string) error                  { return os.RemoveAll(d.p(name)) }
func (d *diskFS) Rename(o, n string) error                     { return os.Rename(d.p(o), d.p(n)) }
func (d *diskFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(d.p(name), perm) }
func (d *diskFS) ReadDir(name string) ([]string, error)        { return OSFS().ReadDir(d.p(name)) }
func (d *diskFS) SyncDir(name string) error                    { return OSFS().SyncDir(d.p(name)) }
func (d *diskFS) Stat(name string) (os.FileInfo, error)        { return os.Stat(d.p(name)) }

// ioOptsOf finds the backend an engine over fsys should use in tests.
func ioOptsOf(fsys FS) (IOMode, ioFault) {
	switch f := fsys.(type) {
	case *diskFS:
		return f.mode, f.fault
	case *FaultFS:
		return ioOptsOf(f.inner)
	case *gateFS:
		return ioOptsOf(f.FS)
	}
	return IOSyscall, nil
}

// ringFaults injects one-shot faults into io_uring ops of the backend, with
// FaultFS's API and semantics.
type ringFaults struct {
	mu       sync.Mutex
	writeErr *fault
	shortW   *fault
	syncErr  *fault
	fired    int
}

func (r *ringFaults) FailNextWrite(suffix string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writeErr = &fault{suffix, err}
}

func (r *ringFaults) ShortNextWrite(suffix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shortW = &fault{suffix: suffix}
}

func (r *ringFaults) FailNextSync(suffix string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncErr = &fault{suffix, err}
}

func (r *ringFaults) Fired() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fired
}

func (r *ringFaults) take(slot **fault, path string) *fault {
	if *slot == nil || !strings.HasSuffix(path, (*slot).suffix) {
		return nil
	}
	x := *slot
	*slot = nil
	r.fired++
	return x
}

func (r *ringFaults) hook(op, path string, size int) (int, syscall.Errno) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch op {
	case "write":
		if x := r.take(&r.writeErr, path); x != nil {
			return 0, x.err.(syscall.Errno)
		}
		if x := r.take(&r.shortW, path); x != nil {
			return size / 2, 0
		}
	case "fdatasync":
		if x := r.take(&r.syncErr, path); x != nil {
			return size, x.err.(syscall.Errno)
		}
	}
	return size, 0
}

func TestIOBackendSelection(t *testing.T) {
	if _, err := ParseIOMode("epoll"); err == nil {
		t.Fatal("bad io mode accepted")
	}
	want := map[IOMode]string{IOSyscall: "syscall", IOUring: "uring", IOAuto: "uring (fdatasync), syscall (write, read)"}
	for _, s := range []string{"syscall", "uring", "auto"} {
		m, err := ParseIOMode(s)
		if err != nil || m.String() != s {
			t.Fatalf("parse %q: %v %v", s, m, err)
		}
		if m != IOSyscall {
			skipWithoutUring(t)
		}
		e, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncAlways, IO: m})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.IOBackend(); got != want[m] {
			t.Errorf("io=%s: backend %q, want %q", s, got, want[m])
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
