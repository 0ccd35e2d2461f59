package storage

import (
	"os"
	"strings"
	"sync"
)

// FaultFS wraps an FS and injects one-shot faults into file writes and
// syncs, to prove that an I/O error fails the append or the waiter and
// fences the log. Each hook fires once, on the next matching operation on a
// file whose name ends with the given suffix ("" matches every file).
// FaultFS is safe for concurrent use.
type FaultFS struct {
	inner FS

	mu        sync.Mutex
	writeErr  *fault // next WriteAt fails without writing
	shortW    *fault // next WriteAt writes half and reports it without error
	syncErr   *fault // next Sync fails
	failedOps int    // faults fired so far
}

type fault struct {
	suffix string
	err    error
}

// NewFaultFS wraps inner.
func NewFaultFS(inner FS) *FaultFS { return &FaultFS{inner: inner} }

// FailNextWrite makes the next WriteAt on a file named *suffix return err
// having written nothing.
func (f *FaultFS) FailNextWrite(suffix string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeErr = &fault{suffix, err}
}

// ShortNextWrite makes the next WriteAt on a file named *suffix write only
// the first half of its buffer and return that count with a nil error (as a
// buggy or interrupted writer might).
func (f *FaultFS) ShortNextWrite(suffix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shortW = &fault{suffix: suffix}
}

// FailNextSync makes the next Sync on a file named *suffix return err.
func (f *FaultFS) FailNextSync(suffix string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncErr = &fault{suffix, err}
}

// Fired reports how many injected faults have fired.
func (f *FaultFS) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failedOps
}

// take consumes *slot if it matches name.
func (f *FaultFS) take(slot **fault, name string) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *slot == nil || !strings.HasSuffix(name, (*slot).suffix) {
		return nil
	}
	x := *slot
	*slot = nil
	f.failedOps++
	return x
}

// OpenFile implements FS.
func (f *FaultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

// Remove implements FS.
func (f *FaultFS) Remove(name string) error { return f.inner.Remove(name) }

// RemoveAll implements FS.
func (f *FaultFS) RemoveAll(name string) error { return f.inner.RemoveAll(name) }

// Rename implements FS.
func (f *FaultFS) Rename(o, n string) error { return f.inner.Rename(o, n) }

// MkdirAll implements FS.
func (f *FaultFS) MkdirAll(name string, perm os.FileMode) error { return f.inner.MkdirAll(name, perm) }

// ReadDir implements FS.
func (f *FaultFS) ReadDir(name string) ([]string, error) { return f.inner.ReadDir(name) }

// SyncDir implements FS.
func (f *FaultFS) SyncDir(name string) error { return f.inner.SyncDir(name) }

// Stat implements FS.
func (f *FaultFS) Stat(name string) (os.FileInfo, error) { return f.inner.Stat(name) }

type faultFile struct {
	File
	fs   *FaultFS
	name string
}

func (f *faultFile) Allocate(off, n int64) error { return allocate(f.File, off, n) }

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if x := f.fs.take(&f.fs.writeErr, f.name); x != nil {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: x.err}
	}
	if x := f.fs.take(&f.fs.shortW, f.name); x != nil {
		return f.File.WriteAt(p[:len(p)/2], off)
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if x := f.fs.take(&f.fs.syncErr, f.name); x != nil {
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: x.err}
	}
	return f.File.Sync()
}
