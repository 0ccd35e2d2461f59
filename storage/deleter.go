package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The deleter (docs/io-and-scale.md, section 2). Unlinking a large file
// makes the file system free all its extents in one journal transaction,
// and every group-commit fdatasync on that file system then waits behind
// it: a 1 GiB unlink under acks=all load stalls acknowledgements for
// hundreds of milliseconds. So segment data is never unlinked at once.
// A removal first takes the file (or, for a whole log, its directory) out
// of the log's visible set with a durable rename to a *.deleted name, and
// hands it to Engine.reclaim. The engine's one deleter goroutine then
// shrinks each file from its end with ftruncate in steps of deleteStep
// bytes, each step paced by the delete rate (Options.DeleteRate), and
// unlinks what is left. A crash at any point leaves a *.deleted name,
// which Open (whole logs) and OpenLog (segment files) queue again: a
// segment is either whole under its own name or gone from the log.
//
// A Section being sent reads the segment file through a descriptor of
// its own; shrinking the file under it would cut a consumer's read short.
// So a segment's file is shrunk only once its Sections are closed (and a
// whole log's once all its Sections are): the deleter takes the next job
// whose readers are gone, and comes back to the others when they are.

// defaultDeleteStep is how many bytes one ftruncate step frees.
const defaultDeleteStep = 16 << 20

// deleteJob is one *.deleted file or directory to remove.
type deleteJob struct {
	path string
	// size is what the job added to the pending-deletion gauge; done is
	// how much of it has been accounted as freed (deleter goroutine only).
	size, done int64
	// readers is closed once nobody reads the file any more; nil: now.
	readers <-chan struct{}
}

// deleter removes queued files at a paced rate. add may be called from any
// goroutine; run is the one worker.
type deleter struct {
	fs     FS
	log    zerolog.Logger
	step   int64
	budget *ioBudget // the delete rate; nil: unpaced
	stats  *bgStats
	ctx    context.Context // ends when the engine closes

	wake chan struct{} // capacity 1: something was queued or became ready

	mu    sync.Mutex
	queue []*deleteJob
	busy  bool            // run is working on a job
	idle  []chan struct{} // closed once the queue is empty and run is not busy
}

func newDeleter(ctx context.Context, fsys FS, log zerolog.Logger, step int64, budget *ioBudget, stats *bgStats) *deleter {
	if step <= 0 {
		step = defaultDeleteStep
	}
	return &deleter{fs: fsys, log: log, step: step, budget: budget, stats: stats, ctx: ctx, wake: make(chan struct{}, 1)}
}

func (d *deleter) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// add queues j. Its path's name must already be durable.
func (d *deleter) add(j *deleteJob) {
	d.stats.pending.Add(j.size)
	d.mu.Lock()
	d.queue = append(d.queue, j)
	d.mu.Unlock()
	d.poke()
	if j.readers != nil {
		go func() {
			select {
			case <-j.readers:
				d.poke()
			case <-d.ctx.Done():
			}
		}()
	}
}

func readersGone(ch <-chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// take returns the first queued job whose readers are gone, waiting for
// one; nil once the engine closes.
func (d *deleter) take() *deleteJob {
	for {
		d.mu.Lock()
		for i, j := range d.queue {
			if readersGone(j.readers) {
				d.queue = slices.Delete(d.queue, i, i+1)
				d.busy = true
				d.mu.Unlock()
				return j
			}
		}
		d.busy = false
		if len(d.queue) == 0 {
			for _, ch := range d.idle {
				close(ch)
			}
			d.idle = nil
		}
		d.mu.Unlock()
		select {
		case <-d.wake:
		case <-d.ctx.Done():
			return nil
		}
	}
}

// waitIdle returns once nothing is queued or being removed (tests).
func (d *deleter) waitIdle(ctx context.Context) error {
	d.mu.Lock()
	if len(d.queue) == 0 && !d.busy {
		d.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	d.idle = append(d.idle, ch)
	d.mu.Unlock()
	d.poke()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *deleter) run() {
	for {
		j := d.take()
		if j == nil {
			return
		}
		err := d.remove(j)
		d.stats.pending.Add(-(j.size - j.done)) // what was not freed stays on disk for the next Open
		j.done = j.size
		if err != nil && d.ctx.Err() == nil {
			d.log.Error().Err(err).Str("path", j.path).Msg("delete: the next open retries")
		}
	}
}

// freed accounts n bytes of j as freed.
func (d *deleter) freed(j *deleteJob, n int64) {
	d.stats.deleted.Add(n)
	dec := min(n, j.size-j.done)
	j.done += dec
	d.stats.pending.Add(-dec)
}

func (d *deleter) remove(j *deleteJob) error {
	fi, err := d.fs.Stat(j.path)
	if isNotExist(err) {
		return nil // gone with a directory deleted meanwhile, or a double queue
	}
	if err != nil {
		return fmt.Errorf("storage: delete %s: %w", j.path, err)
	}
	if fi.IsDir() {
		return d.removeDir(j, j.path)
	}
	return d.removeFile(j, j.path)
}

func (d *deleter) removeDir(j *deleteJob, dir string) error {
	names, err := d.fs.ReadDir(dir)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("storage: delete %s: list: %w", dir, err)
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := d.fs.Stat(p)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storage: delete %s: %w", p, err)
		}
		if fi.IsDir() {
			err = d.removeDir(j, p)
		} else {
			err = d.removeFile(j, p)
		}
		if err != nil {
			return err
		}
	}
	if err := d.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("storage: delete %s: %w", dir, err)
	}
	return nil
}

// removeFile shrinks the file at path from its end in paced steps, then
// unlinks it.
func (d *deleter) removeFile(j *deleteJob, path string) error {
	f, err := d.fs.OpenFile(path, os.O_RDWR, 0)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: delete %s: open: %w", path, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return fmt.Errorf("storage: delete %s: size: %w", path, err)
	}
	for size > d.step {
		if err := d.budget.wait(d.ctx, d.step); err != nil {
			f.Close()
			return err
		}
		if err := f.Truncate(size - d.step); err != nil {
			f.Close()
			return fmt.Errorf("storage: delete %s: truncate to %d: %w", path, size-d.step, err)
		}
		size -= d.step
		d.freed(j, d.step)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storage: delete %s: close: %w", path, err)
	}
	if err := d.budget.wait(d.ctx, size); err != nil {
		return err
	}
	if err := d.fs.Remove(path); err != nil && !isNotExist(err) {
		return fmt.Errorf("storage: delete %s: %w", path, err)
	}
	d.freed(j, size)
	return nil
}

// reclaim is the one way segment data leaves the engine: path (a file or
// a directory whose *.deleted name is already durable) is queued for the
// deleter, to be shrunk and removed once readers is closed (nil: at once).
// size is its byte count, for the pending-deletion gauge. A recycler of
// segment files would take files here (docs/io-and-scale.md, section 1).
func (e *Engine) reclaim(path string, size int64, readers <-chan struct{}) {
	e.deleter.add(&deleteJob{path: path, size: size, readers: readers})
}

// tombstoneName returns a fresh *.deleted name for path.
func (e *Engine) tombstoneName(path string) string {
	return fmt.Sprintf("%s.%d-%d%s", path, time.Now().UnixNano(), e.tombSeq.Add(1), deletedSuffix)
}

// treeSize returns the bytes of the files under path (a file or a
// directory); errors count as zero (the size only feeds a gauge).
func treeSize(fsys FS, path string) int64 {
	fi, err := fsys.Stat(path)
	if err != nil {
		return 0
	}
	if !fi.IsDir() {
		return fi.Size()
	}
	names, err := fsys.ReadDir(path)
	if err != nil {
		return 0
	}
	var n int64
	for _, name := range names {
		n += treeSize(fsys, filepath.Join(path, name))
	}
	return n
}

// reclaimLeftovers queues the *.deleted entries among names (in dir),
// after making their names durable: a rename the previous run made may
// not be, and shrinking a file whose rename a crash then undoes would
// leave a half-visible segment. It reports how many it queued.
func (e *Engine) reclaimLeftovers(dir string, names []string) (int, error) {
	var gone []string
	for _, n := range names {
		if strings.HasSuffix(n, deletedSuffix) {
			gone = append(gone, filepath.Join(dir, n))
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := e.fs.SyncDir(dir); err != nil {
		return 0, fmt.Errorf("sync %s before deleting leftovers: %w", dir, err)
	}
	for _, p := range gone {
		e.reclaim(p, treeSize(e.fs, p), nil)
	}
	return len(gone), nil
}

// tombstoneSegment takes the segment at base out of the log directory:
// its index, time index and producer snapshot (small) are removed, and its
// log file is renamed to a fresh *.deleted name, returned with its size
// ("" if there is no log file). The caller makes the directory durable
// and then hands the tombstone to reclaim. Removing the small files first
// means a crash never leaves them without their log file.
func (l *Log) tombstoneSegment(base int64) (gone string, size int64, err error) {
	for _, suf := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix, snapshotSuffix} {
		if err := l.fs.Remove(segName(l.dir, base, suf)); err != nil && !isNotExist(err) {
			return "", 0, fmt.Errorf("remove %s file of segment %d: %w", suf, base, err)
		}
	}
	name := segName(l.dir, base, logSuffix)
	fi, err := l.fs.Stat(name)
	if isNotExist(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("segment %d: %w", base, err)
	}
	gone = l.engine.tombstoneName(name)
	if err := l.fs.Rename(name, gone); err != nil {
		return "", 0, fmt.Errorf("rename segment %d for deletion: %w", base, err)
	}
	return gone, fi.Size(), nil
}

// readerRefs counts open Sections (of a segment, or of a whole log).
type readerRefs struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while nobody waits
}

func (r *readerRefs) acquire() {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}

func (r *readerRefs) release() {
	r.mu.Lock()
	r.n--
	if r.n == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
}

// whenIdle returns a channel closed once no Section is open, or nil if
// none is now.
func (r *readerRefs) whenIdle() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return nil
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	return r.idle
}
