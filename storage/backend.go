package storage

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/tuskdb/tusk/storage/internal/uring"
)

// IOMode selects how the engine does segment-file I/O (config storage.io).
type IOMode int

const (
	// IOAuto probes io_uring at Open: if usable, group-commit fdatasyncs
	// go through the ring (one submission per commit) while appends and
	// reads stay plain pwrite/pread, which measured faster here for
	// page-cache I/O; otherwise everything uses syscalls.
	IOAuto IOMode = iota
	// IOSyscall uses pwrite, pread and fdatasync.
	IOSyscall
	// IOUring sends every segment write, read and fdatasync through
	// io_uring; Open fails if io_uring is unavailable.
	IOUring
)

// ParseIOMode parses "auto", "uring" or "syscall".
func ParseIOMode(s string) (IOMode, error) {
	switch s {
	case "auto":
		return IOAuto, nil
	case "syscall":
		return IOSyscall, nil
	case "uring":
		return IOUring, nil
	}
	return 0, fmt.Errorf("storage: io backend %q: want auto, uring or syscall", s)
}

func (m IOMode) String() string {
	switch m {
	case IOAuto:
		return "auto"
	case IOSyscall:
		return "syscall"
	case IOUring:
		return "uring"
	}
	return "IOMode(" + strconv.Itoa(int(m)) + ")"
}

// ioBackend performs the engine's segment-file I/O. wrap is applied to
// every segment file the engine opens; the wrapped file's WriteAt, ReadAt
// and Sync go through the backend (files that are not OS files, as from
// CrashFS or FaultFS, pass through unchanged). syncFiles is group commit's
// batch: it fdatasyncs every file and sets errs[i] for files[i].
type ioBackend interface {
	wrap(f File) File
	syncFiles(files []File, errs []error)
	describe() string
	close() error
}

// ioFault lets tests inject faults into io_uring ops. It is called before
// an op on path is submitted (op is "write", "read" or "fdatasync"; size is
// the bytes asked for) and returns how many bytes to really submit, and an
// errno that replaces the completion's result (0: keep it). A failed write
// thus submits 0 bytes and completes with -errno; a short write submits
// half.
type ioFault func(op, path string, size int) (submit int, errno syscall.Errno)

// newBackend builds the backend for mode; for IOAuto it probes io_uring and
// falls back to syscalls (the returned note says why).
func newBackend(mode IOMode, fault ioFault) (ioBackend, string, error) {
	switch mode {
	case IOSyscall:
		return syscallBackend{}, "", nil
	case IOUring, IOAuto:
		if err := uring.Probe(); err != nil {
			if mode == IOUring {
				return nil, "", fmt.Errorf("storage: io=uring: %w", err)
			}
			return syscallBackend{}, fmt.Sprintf("io_uring unavailable, using syscalls: %v", err), nil
		}
		r, err := uring.New(ringEntries)
		if err != nil {
			if mode == IOUring {
				return nil, "", fmt.Errorf("storage: io=uring: %w", err)
			}
			return syscallBackend{}, fmt.Sprintf("io_uring ring setup failed, using syscalls: %v", err), nil
		}
		all := mode == IOUring
		return &uringBackend{ring: r, ringWrites: all, ringReads: all, fault: fault}, "", nil
	}
	return nil, "", fmt.Errorf("storage: unknown io backend %d", mode)
}

// ringEntries is the submission queue size; group commits of more dirty
// logs take one io_uring_enter per ringEntries fdatasyncs.
const ringEntries = 256

// syscallBackend is plain pwrite/pread/fdatasync through File.
type syscallBackend struct{}

func (syscallBackend) wrap(f File) File { return f }
func (syscallBackend) describe() string { return "syscall" }
func (syscallBackend) close() error     { return nil }
func (syscallBackend) syncFiles(files []File, errs []error) {
	syncParallel(files, errs, func(f File) error { return f.Sync() })
}

// maxParallelSyncs bounds how many files the syscall backend fdatasyncs at
// once.
const maxParallelSyncs = 4

// syncParallel runs sync over files, up to maxParallelSyncs at once.
func syncParallel(files []File, errs []error, fn func(File) error) {
	if len(files) == 1 {
		errs[0] = fn(files[0])
		return
	}
	sem := make(chan struct{}, maxParallelSyncs)
	var wg sync.WaitGroup
	for i, f := range files {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(f)
			<-sem
		}()
	}
	wg.Wait()
}

// uringBackend sends fdatasyncs (and, with ringWrites/ringReads, writes
// and reads) of OS-backed segment files through one shared ring.
type uringBackend struct {
	ring       *uring.Ring
	ringWrites bool
	ringReads  bool
	fault      ioFault // nil in production
}

func (b *uringBackend) describe() string {
	if b.ringWrites && b.ringReads {
		return "uring"
	}
	return "uring (fdatasync), syscall (write, read)"
}

func (b *uringBackend) close() error {
	if err := b.ring.Close(); err != nil {
		return fmt.Errorf("storage: close io_uring: %w", err)
	}
	return nil
}

// osFiler is implemented by files backed by an *os.File (OSFS's).
type osFiler interface{ osHandle() *os.File }

func (b *uringBackend) wrap(f File) File {
	of, ok := f.(osFiler)
	if !ok {
		return f
	}
	return &uringFile{File: f, b: b, os: of.osHandle()}
}

func (b *uringBackend) syncFiles(files []File, errs []error) {
	if len(files) == 1 && !b.ringWrites {
		// auto: a commit of one file gains nothing from the ring (no
		// batch) and pays its reaper's wake-up of this goroutine, about
		// 30 µs of a one-record acks=all round trip here
		// (docs/io-and-scale.md, "One file, one fdatasync").
		if uf, ok := files[0].(*uringFile); ok {
			_, errno := uf.inject("fdatasync", 0)
			err := uf.File.Sync()
			if errno != 0 {
				err = uf.result("fdatasync", 0, errno)
			}
			errs[0] = err
			return
		}
	}
	var ops []uring.Op
	var idx []int
	var injected []syscall.Errno
	var other []int
	for i, f := range files {
		if uf, ok := f.(*uringFile); ok {
			_, errno := uf.inject("fdatasync", 0)
			ops = append(ops, uring.Fdatasync(uf.fd()))
			idx = append(idx, i)
			injected = append(injected, errno)
		} else {
			other = append(other, i)
		}
	}
	if len(ops) > 0 {
		err := b.ring.Do(ops)
		for k, i := range idx {
			uf := files[i].(*uringFile)
			if err != nil {
				errs[i] = fmt.Errorf("storage: uring submit fdatasync %s: %w", uf.os.Name(), err)
			} else {
				errs[i] = uf.result("fdatasync", ops[k].Res, injected[k])
			}
			runtime.KeepAlive(uf.os)
		}
	}
	for _, i := range other {
		errs[i] = files[i].Sync()
	}
}

// uringFile is an OS segment file whose I/O goes through the ring.
type uringFile struct {
	File
	b  *uringBackend
	os *os.File
}

func (f *uringFile) fd() int { return int(f.os.Fd()) }

// Allocate reserves blocks with a plain fallocate(2) (rare: once per
// preallocation chunk).
func (f *uringFile) Allocate(off, n int64) error { return allocate(f.File, off, n) }

// osHandle makes a ring-wrapped file an osFiler too (Sections read
// through it with sendfile).
func (f *uringFile) osHandle() *os.File { return f.os }

// inject consults the test fault hook for an op of size bytes.
func (f *uringFile) inject(op string, size int) (submit int, errno syscall.Errno) {
	if f.b.fault == nil {
		return size, 0
	}
	return f.b.fault(op, f.os.Name(), size)
}

// result maps a completion result to the error the syscall path would
// return: a negative result is the errno, wrapped in *os.PathError.
func (f *uringFile) result(op string, res int32, injected syscall.Errno) error {
	if injected != 0 {
		res = -int32(injected)
	}
	if res < 0 {
		return &os.PathError{Op: op, Path: f.os.Name(), Err: syscall.Errno(-res)}
	}
	return nil
}

// rw runs one read or write of p at off through the ring and returns the
// bytes transferred.
func (f *uringFile) rw(op string, p []byte, off int64) (int, error) {
	n, errno := f.inject(op, len(p))
	var o uring.Op
	if op == "write" {
		o = uring.Write(f.fd(), p[:n], off)
	} else {
		o = uring.Read(f.fd(), p[:n], off)
	}
	ops := []uring.Op{o}
	if err := f.b.ring.Do(ops); err != nil {
		return 0, fmt.Errorf("storage: uring submit %s %s: %w", op, f.os.Name(), err)
	}
	runtime.KeepAlive(f.os)
	if err := f.result(op, ops[0].Res, errno); err != nil {
		return 0, err
	}
	return int(ops[0].Res), nil
}

// WriteAt writes p at off with one ring op. A short completion is not
// retried: on a regular file it means the device is full or failing, and
// the engine fences the log on it (as on any short write).
func (f *uringFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.b.ringWrites {
		return f.File.WriteAt(p, off)
	}
	n, err := f.rw("write", p, off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, fmt.Errorf("storage: uring write %s: %d of %d bytes: %w", f.os.Name(), n, len(p), io.ErrShortWrite)
	}
	return n, nil
}

// ReadAt reads len(p) bytes at off (as io.ReaderAt: io.EOF if the file
// ends first), continuing after short completions.
func (f *uringFile) ReadAt(p []byte, off int64) (int, error) {
	if !f.b.ringReads {
		return f.File.ReadAt(p, off)
	}
	n := 0
	for n < len(p) {
		k, err := f.rw("read", p[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

// Sync fdatasyncs the file through the ring.
func (f *uringFile) Sync() error {
	_, errno := f.inject("fdatasync", 0)
	ops := []uring.Op{uring.Fdatasync(f.fd())}
	if err := f.b.ring.Do(ops); err != nil {
		return fmt.Errorf("storage: uring submit fdatasync %s: %w", f.os.Name(), err)
	}
	runtime.KeepAlive(f.os)
	return f.result("fdatasync", ops[0].Res, errno)
}
