package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// FS is the file system the engine works through (modelled on pebble's vfs).
// OSFS is the real one; CrashFS simulates power loss for tests; FaultFS
// injects I/O errors.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(name string, perm os.FileMode) error
	// ReadDir returns the names of the entries of a directory, sorted.
	ReadDir(name string) ([]string, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(name string) error
	Stat(name string) (os.FileInfo, error)
}

// File is an open file. Sync makes its content durable (fdatasync).
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
}

// OSFS returns the operating system's file system.
func OSFS() FS { return osFS{} }

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) RemoveAll(name string) error                  { return os.RemoveAll(name) }
func (osFS) Rename(o, n string) error                     { return os.Rename(o, n) }
func (osFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)        { return os.Stat(name) }

func (osFS) ReadDir(name string) ([]string, error) {
	ents, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

// allSyncer is an FS that can make everything written to the file system
// holding a directory durable at once: file contents and directory
// entries alike. CreateLogs uses it for a large batch of new logs
// (docs/io-and-scale.md, "Scale").
type allSyncer interface {
	SyncAll(dir string) error
}

// SyncAll implements allSyncer with syncfs(2), which reports the file
// system's writeback errors since Linux 5.8.
func (osFS) SyncAll(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		d.Close()
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return d.Close()
}

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync dir %s: %w", name, err)
	}
	return d.Close()
}

// allocator is a File that can reserve blocks ahead of its writes
// (fallocate(2), growing the file): a write into reserved blocks needs no
// block allocation and no file-size change, so the fdatasync after it
// commits less (docs/io-and-scale.md, "Preallocated active segments").
type allocator interface {
	Allocate(off, n int64) error
}

// allocate reserves [off, off+n) of f; errAllocUnsupported when f cannot.
func allocate(f File, off, n int64) error {
	if a, ok := f.(allocator); ok {
		return a.Allocate(off, n)
	}
	return errAllocUnsupported
}

// errAllocUnsupported: the file (or its file system) cannot preallocate.
var errAllocUnsupported = errors.New("storage: preallocation not supported")

type osFile struct{ f *os.File }

func (o osFile) Allocate(off, n int64) error {
	for {
		err := unix.Fallocate(int(o.f.Fd()), 0, off, n)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.EOPNOTSUPP:
			return errAllocUnsupported
		default:
			return &os.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
		}
	}
}

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) Close() error                             { return o.f.Close() }
func (o osFile) osHandle() *os.File                       { return o.f }
func (o osFile) Truncate(size int64) error                { return o.f.Truncate(size) }

func (o osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o osFile) Size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
