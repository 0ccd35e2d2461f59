package storage

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Segment files are opened lazily and closed when idle
// (docs/io-and-scale.md, section 3). Every segment holds a *segFile: a
// File that knows its path and opens a descriptor when an operation needs
// one. The engine's filePool bounds how many segment files hold a
// descriptor at once (Options.MaxOpenFiles): opening one more past the
// bound closes the least recently used unpinned one (a clock sweep), and a
// file unused for Options.OpenFileIdle is closed by the pool's sweeper, so
// an idle replica holds no descriptor.
//
// Rules that keep this correct:
//
//   - Every WriteAt, ReadAt, Sync, Truncate and Size pins the descriptor
//     for its duration: a file is never closed under an operation.
//     Group commit pins the whole batch it hands to the backend
//     (filePool.syncFiles), so io_uring fdatasyncs run on open
//     descriptors.
//   - A descriptor with writes its last successful Sync did not cover is
//     fdatasync'ed before it is closed. Durability does not depend on
//     it (an fdatasync through the next descriptor flushes the same
//     inode), but an error does: the kernel reports a writeback error
//     once, to whoever syncs first. An error from that fdatasync (or from
//     close) is kept by the segFile and returned by every later Sync and
//     WriteAt, so the log still fences on it and acknowledges nothing it
//     covered.
//   - A failed Sync is sticky the same way: the segment never reports a
//     successful sync again after one failed.
//   - A file is reopened by path, so files whose name changes while they
//     are in use (rewrite outputs, named *.cleaned until the commit
//     renames them) are held open (fixed) until settle gives them their
//     final name.

// filePool bounds the engine's open segment files.
type filePool struct {
	limit  int
	opener func(path string, flag int) (File, error)

	epoch atomic.Int64 // bumped by every idle sweep; segFile.used records it

	mu    sync.Mutex
	files []*segFile // the segment files holding a descriptor (slot indexes)
	hand  int        // the clock sweep's position in files

	opens, evictions, idleCloses atomic.Int64
}

func newFilePool(limit int, opener func(path string, flag int) (File, error)) *filePool {
	return &filePool{limit: max(limit, 1), opener: opener}
}

// FileStats are the engine's segment-file descriptor counters.
type FileStats struct {
	Open       int   // segment files holding a descriptor now
	Limit      int   // Options.MaxOpenFiles as applied
	Opens      int64 // descriptors opened (first opens and reopens)
	Evictions  int64 // closed to stay within Limit
	IdleCloses int64 // closed after OpenFileIdle without use
}

func (p *filePool) stats() FileStats {
	p.mu.Lock()
	n := len(p.files)
	p.mu.Unlock()
	return FileStats{Open: n, Limit: p.limit, Opens: p.opens.Load(), Evictions: p.evictions.Load(), IdleCloses: p.idleCloses.Load()}
}

// reopenError is a failure to reopen a closed segment file (out of
// descriptors, say): nothing was read or written, so appends return it
// without fencing the log (errors.As).
type reopenError struct{ err error }

func (e *reopenError) Error() string { return "storage: reopen segment file: " + e.err.Error() }
func (e *reopenError) Unwrap() error { return e.err }

// notWritten reports whether err is a reopen failure: the write did not
// happen and the log stays usable.
func notWritten(err error) bool {
	var re *reopenError
	return errors.As(err, &re)
}

// segFile is a segment file whose descriptor comes and goes (see above).
type segFile struct {
	pool  *filePool
	ref   atomic.Bool  // used since the clock hand last passed
	used  atomic.Int64 // pool epoch of the last use
	pins  atomic.Int32 // mirror of pinned for the clock sweep (no lock)
	dirty atomic.Bool  // mirror of writes > synced for the clock sweep

	mu     sync.Mutex
	path   string
	f      File // nil while closed
	pinned int
	writes uint64 // completed writes and truncations
	synced uint64 // writes covered by the last successful Sync
	err    error  // sticky: a failed Sync, or a failed sync or close on eviction
	gone   bool   // closed for good
	fixed  bool   // never evicted (named *.cleaned until settle)
	slot   int    // index in pool.files, -1 if absent; guarded by pool.mu
}

// open opens path with flag and returns its segFile holding the
// descriptor; fixed files are not evicted until settle.
func (p *filePool) open(path string, flag int, fixed bool) (*segFile, error) {
	f, err := p.opener(path, flag)
	if err != nil {
		return nil, err
	}
	p.opens.Add(1)
	h := &segFile{pool: p, path: path, f: f, fixed: fixed, slot: -1}
	h.used.Store(p.epoch.Load())
	h.ref.Store(true)
	p.mu.Lock()
	p.addLocked(h)
	p.mu.Unlock()
	p.shrink(h)
	return h, nil
}

func (p *filePool) addLocked(h *segFile) {
	h.slot = len(p.files)
	p.files = append(p.files, h)
}

func (p *filePool) removeLocked(h *segFile) {
	if h.slot < 0 {
		return
	}
	last := p.files[len(p.files)-1]
	p.files[h.slot] = last
	last.slot = h.slot
	p.files[len(p.files)-1] = nil
	p.files = p.files[:len(p.files)-1]
	h.slot = -1
}

// shrink closes unpinned files until the pool is within its limit (or all
// the others are pinned: the limit is then exceeded until they unpin).
// self, if not nil, is the file the caller just opened (or pinned): not closed.
func (p *filePool) shrink(self *segFile) {
	for tries := 0; ; tries++ {
		p.mu.Lock()
		if len(p.files) <= p.limit || tries > p.limit+16 {
			p.mu.Unlock()
			return
		}
		v := p.victimLocked(self)
		p.mu.Unlock()
		if v == nil {
			return
		}
		if v.evict(false) {
			p.evictions.Add(1)
		}
	}
}

// victimLocked runs the clock: a file used since the hand last passed it
// gets a second chance, pinned and fixed ones are skipped.
func (p *filePool) victimLocked(self *segFile) *segFile {
	n := len(p.files)
	for i := 0; i < 2*n; i++ {
		if p.hand >= n {
			p.hand = 0
		}
		h := p.files[p.hand]
		p.hand++
		if h == self || h.fixed || h.pins.Load() > 0 {
			continue
		}
		if h.ref.Swap(false) {
			continue
		}
		if i < n && h.dirty.Load() {
			// Closing it costs an fdatasync: first look for a
			// clean one.
			continue
		}
		return h
	}
	return nil
}

// sweepIdle closes the files not used during the last fileIdleSweeps
// whole sweep periods.
func (p *filePool) sweepIdle() {
	e := p.epoch.Add(1)
	p.mu.Lock()
	var idle []*segFile
	for _, h := range p.files {
		if !h.fixed && h.pins.Load() == 0 && h.used.Load() <= e-fileIdleSweeps-1 {
			idle = append(idle, h)
		}
	}
	p.mu.Unlock()
	for _, h := range idle {
		if h.evict(true) {
			p.idleCloses.Add(1)
		}
	}
}

// evict closes h's descriptor if nobody uses it (idle: only if it was not
// used since the sweep picked it), fdatasyncing first if it holds writes
// no Sync covered. It reports whether it closed it.
func (h *segFile) evict(idle bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil || h.pinned > 0 || h.gone || h.fixed {
		return false
	}
	if idle && h.used.Load() > h.pool.epoch.Load()-fileIdleSweeps-1 {
		return false
	}
	h.closeLocked()
	return true
}

// closeLocked closes the descriptor, syncing unsynced writes first; an
// error is kept (sticky) for the next Sync or WriteAt.
func (h *segFile) closeLocked() {
	if h.writes > h.synced && h.err == nil {
		if err := h.f.Sync(); err != nil {
			h.err = fmt.Errorf("storage: sync %s before closing it: %w", h.path, err)
		} else {
			h.synced = h.writes
			h.dirty.Store(false)
		}
	}
	if err := h.f.Close(); err != nil && h.err == nil && h.writes > 0 {
		h.err = fmt.Errorf("storage: close %s: %w", h.path, err)
	}
	h.f = nil
	h.pool.mu.Lock()
	h.pool.removeLocked(h)
	h.pool.mu.Unlock()
}

// pin returns the open descriptor, opening it if needed, and keeps it open
// until unpin.
func (h *segFile) pin() (File, error) {
	h.mu.Lock()
	if h.gone {
		h.mu.Unlock()
		return nil, fmt.Errorf("storage: segment file %s: %w", h.path, os.ErrClosed)
	}
	reopened := false
	if h.f == nil {
		f, err := h.pool.opener(h.path, os.O_RDWR)
		if err != nil {
			h.mu.Unlock()
			return nil, &reopenError{err: err}
		}
		h.pool.opens.Add(1)
		h.f = f
		h.pool.mu.Lock()
		h.pool.addLocked(h)
		h.pool.mu.Unlock()
		reopened = true
	}
	h.pinned++
	h.pins.Add(1)
	f := h.f
	h.mu.Unlock()
	h.ref.Store(true)
	if e := h.pool.epoch.Load(); h.used.Load() != e {
		h.used.Store(e)
	}
	if reopened {
		h.pool.shrink(h)
	}
	return f, nil
}

func (h *segFile) unpin() {
	h.mu.Lock()
	h.unpinLocked()
	h.mu.Unlock()
}

func (h *segFile) unpinLocked() {
	h.pinned--
	h.pins.Add(-1)
	if h.pinned == 0 && h.gone && h.f != nil {
		// Closed for good while pinned: the last user closes it. Close
		// already answered nil, and the file is gone (deleted or its
		// log closed): there is no one to tell of an error.
		_ = h.f.Close()
		h.f = nil
		h.pool.mu.Lock()
		h.pool.removeLocked(h)
		h.pool.mu.Unlock()
	}
}

// stickyErr returns the kept error, if any.
func (h *segFile) stickyErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// ReadAt implements File.
func (h *segFile) ReadAt(p []byte, off int64) (int, error) {
	f, err := h.pin()
	if err != nil {
		return 0, err
	}
	defer h.unpin()
	return f.ReadAt(p, off)
}

// WriteAt implements File. After a sticky error it writes nothing.
func (h *segFile) WriteAt(p []byte, off int64) (int, error) {
	if err := h.stickyErr(); err != nil {
		return 0, err
	}
	f, err := h.pin()
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(p, off)
	h.mu.Lock()
	h.writes++
	h.dirty.Store(true)
	h.unpinLocked()
	h.mu.Unlock()
	return n, err
}

// Truncate implements File; it counts as a write (fdatasync'ed before an
// eviction closes the descriptor).
func (h *segFile) Truncate(size int64) error {
	return h.change(func(f File) error { return f.Truncate(size) })
}

// Allocate reserves blocks (allocator); it counts as a write, as Truncate.
func (h *segFile) Allocate(off, n int64) error {
	return h.change(func(f File) error { return allocate(f, off, n) })
}

// change runs op, a change to the file other than a write, on the pinned
// descriptor and counts it as a write.
func (h *segFile) change(op func(File) error) error {
	if err := h.stickyErr(); err != nil {
		return err
	}
	f, err := h.pin()
	if err != nil {
		return err
	}
	err = op(f)
	h.mu.Lock()
	h.writes++
	h.dirty.Store(true)
	h.unpinLocked()
	h.mu.Unlock()
	return err
}

// Size implements File.
func (h *segFile) Size() (int64, error) {
	f, err := h.pin()
	if err != nil {
		return 0, err
	}
	defer h.unpin()
	return f.Size()
}

// dropCache implements cacheDropper (dropbehind.go) through the pinned
// descriptor, reopened if needed (the page cache is the inode's).
func (h *segFile) dropCache(off, n int64) error {
	f, err := h.pin()
	if err != nil {
		return err
	}
	defer h.unpin()
	if d, ok := f.(cacheDropper); ok {
		return d.dropCache(off, n)
	}
	return nil
}

// Sync implements File: fdatasync through the current descriptor, or the
// kept error of an earlier failure.
func (h *segFile) Sync() error {
	f, gen, err := h.beginSync()
	if err != nil {
		return err
	}
	err = f.Sync()
	h.endSync(gen, err)
	return err
}

// beginSync pins the descriptor for an fdatasync that covers the writes
// completed so far (gen); a kept error is returned instead.
func (h *segFile) beginSync() (File, uint64, error) {
	h.mu.Lock()
	err, gen := h.err, h.writes
	h.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	f, err := h.pin()
	if err != nil {
		return nil, 0, err
	}
	return f, gen, nil
}

// endSync records the outcome of beginSync's fdatasync and unpins.
func (h *segFile) endSync(gen uint64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.err == nil {
			h.err = err
		}
	} else if gen > h.synced {
		h.synced = gen
		h.dirty.Store(h.writes > h.synced)
	}
	h.unpinLocked()
}

// Close implements File: the file is closed for good (its segment was
// deleted, truncated away or its log closed). Unsynced writes are not
// synced (as closing an *os.File).
func (h *segFile) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return nil
	}
	h.gone = true
	if h.f == nil || h.pinned > 0 {
		return nil
	}
	err := h.f.Close()
	h.f = nil
	h.pool.mu.Lock()
	h.pool.removeLocked(h)
	h.pool.mu.Unlock()
	return err
}

// settle gives a fixed file (a rewrite output) its final name once it has
// been renamed into place; from then on it can be evicted.
func (h *segFile) settle(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pool.mu.Lock()
	h.path, h.fixed = path, false
	h.pool.mu.Unlock()
}

// syncFiles is group commit's batch sync through the backend: segment
// files are pinned (reopened if needed) a chunk at a time, so a commit
// over many logs holds at most ringEntries extra descriptors, and each
// file's outcome is recorded (a failure stays with the file).
func (p *filePool) syncFiles(be ioBackend, files []File, errs []error) {
	for start := 0; start < len(files); start += ringEntries {
		end := min(start+ringEntries, len(files))
		inner := make([]File, 0, end-start)
		idx := make([]int, 0, end-start)
		gens := make([]uint64, 0, end-start)
		for i := start; i < end; i++ {
			h, ok := files[i].(*segFile)
			if !ok {
				inner, idx, gens = append(inner, files[i]), append(idx, i), append(gens, 0)
				continue
			}
			f, gen, err := h.beginSync()
			if err != nil {
				errs[i] = err
				continue
			}
			inner, idx, gens = append(inner, f), append(idx, i), append(gens, gen)
		}
		if len(inner) == 0 {
			continue
		}
		out := make([]error, len(inner))
		be.syncFiles(inner, out)
		for k, i := range idx {
			errs[i] = out[k]
			if h, ok := files[i].(*segFile); ok {
				h.endSync(gens[k], out[k])
			}
		}
	}
}

// closeAll closes what is left (Engine.Close, after every log closed).
func (p *filePool) closeAll() error {
	p.mu.Lock()
	left := append([]*segFile(nil), p.files...)
	p.mu.Unlock()
	var errs []error
	for _, h := range left {
		if err := h.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fileLimit is the descriptor budget for segment files: want if positive,
// else (and at most) the soft RLIMIT_NOFILE less a quarter of it (at least
// 1,024) for connections, sockets and transient files.
func fileLimit(want int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		if want > 0 {
			return want
		}
		return defaultFileLimit
	}
	soft := int(min(lim.Cur, 1<<30))
	room := max(soft/4, 1024)
	bound := max(soft-room, minFileLimit)
	if want > 0 {
		return min(want, bound)
	}
	return bound
}

const (
	minFileLimit     = 64
	defaultFileLimit = 4096
	// fileIdleSweeps: the sweep runs every OpenFileIdle/fileIdleSweeps
	// and closes a file not used during the last fileIdleSweeps whole
	// periods, so after OpenFileIdle to 1.5×OpenFileIdle without use.
	fileIdleSweeps = 2
)

// fileSweepLoop closes idle segment files every idle/2.
func (e *Engine) fileSweepLoop(idle time.Duration) {
	defer e.wg.Done()
	t := time.NewTicker(max(idle/fileIdleSweeps, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.files.sweepIdle()
		}
	}
}
