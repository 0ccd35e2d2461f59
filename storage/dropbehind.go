package storage

import (
	"time"

	"golang.org/x/sys/unix"
)

// Drop-behind (docs/io-and-scale.md, "Produce write path").
//
// Appends copy each batch into page-cache pages. On a machine whose free
// memory is handed back to its host (a VM with free page reporting), a page
// the kernel takes from its free lists after the memory was reported is
// faulted in by the host on first touch, and that fault, not the copy,
// is most of the cost of a produce. A page the kernel freed a moment ago
// has not been reported yet and costs nothing extra.
//
// So once a log's bytes are durable (the group commit's fdatasync or the
// interval flush covered them, or a roll sealed their segment) and lie more
// than a window behind the durable end of the log, the syncer tells the
// kernel to drop their pages (posix_fadvise FADV_DONTNEED). The pages go
// back to the free lists and the next appends take them again, while they
// are still backed by the host. Consumers reading within the window read
// from the page cache; those further behind read from the disk (sendfile
// still; the kernel reads ahead).
//
// The window is a budget for the whole engine (Options.DropBehind): each
// log keeps budget/n bytes behind its end, n being the number of logs the
// group commit synced within the last second or the one before, so
// thousands of written partitions share the budget instead of multiplying
// it. A log drops only in steps of at least dropBehindStep bytes (fewer
// calls), so each log may hold up to a step more than its share.
//
// Only bytes this process appended are dropped: segments a roll started,
// and the active segment from its size at recovery on. Segments written by
// the cleaner or recovered from disk are left to the kernel. fsync=never
// has no syncer and drops nothing (dirty pages cannot be dropped anyway).
//
// The advice is advice: an error is logged (once per log) and the log goes
// on. The fadvise calls run on a goroutine of their own (dropLoop), fed
// by the syncer after each commit has woken its waiters: never on a
// connection's append path, and the next group commit does not wait for
// them.

// dropBehindStep is the least a log drops at once.
const dropBehindStep = 2 << 20

// dropAlign aligns the ends of the ranges dropped inside a segment, so
// that no page straddles two ranges (fadvise keeps a range's partial
// pages, and would keep such a page forever).
const dropAlign = 4096

func alignDown(n int64) int64 { return n &^ (dropAlign - 1) }
func alignUp(n int64) int64   { return alignDown(n + dropAlign - 1) }

// dropActivityPeriod is how long a synced log counts as written for the
// budget's share.
const dropActivityPeriod = time.Second

// cacheDropper is a File whose cached pages can be dropped.
type cacheDropper interface {
	// dropCache advises the kernel that the file's bytes [off, off+n) are
	// not needed in the page cache.
	dropCache(off, n int64) error
}

func (o osFile) dropCache(off, n int64) error {
	return unix.Fadvise(int(o.f.Fd()), off, n, unix.FADV_DONTNEED)
}

func (f *uringFile) dropCache(off, n int64) error {
	return unix.Fadvise(f.fd(), off, n, unix.FADV_DONTNEED)
}

// dropQueueLen bounds the syncs waiting for the dropper. When it is full
// a sync's job is skipped: nothing is lost, the log's next sync plans
// from its newer durable end and covers the skipped bytes too.
const dropQueueLen = 1024

// dropJob is one successful sync's drop-behind work.
type dropJob struct {
	t      syncTicket
	window int64
}

// queueDrop hands j to the dropper without waiting (syncer only).
func (e *Engine) queueDrop(j dropJob) {
	select {
	case e.dropq <- j:
	default:
	}
}

// dropLoop is the dropper: it runs the fadvise calls off the syncer, so
// that the next group commit does not wait for them.
func (e *Engine) dropLoop() {
	defer e.wg.Done()
	for {
		select {
		case <-e.stop:
			return
		case j := <-e.dropq:
			j.t.l.dropBehind(j.t, j.window)
		}
	}
}

// dropRange is a span of one segment file to drop, its segment pinned
// open (closeMu held shared) until done.
type dropRange struct {
	seg      *segment
	off, end int64
}

// dropActivity counts the logs the syncer synced recently, to share the
// drop-behind budget among them. Used only by the syncer goroutine.
type dropActivity struct {
	epoch     uint64    // current period, from 1
	start     time.Time // when it began
	cur, prev int       // logs synced in this period and in the one before
}

// window records that l was synced at now and returns its share of the
// budget.
func (a *dropActivity) window(budget int64, now time.Time, l *Log) int64 {
	if a.epoch == 0 || now.Sub(a.start) >= dropActivityPeriod {
		if a.epoch != 0 && now.Sub(a.start) < 2*dropActivityPeriod {
			a.prev = a.cur
		} else {
			a.prev = 0
		}
		a.epoch++
		a.start = now
		a.cur = 0
	}
	if l.dropEpoch != a.epoch {
		l.dropEpoch = a.epoch
		a.cur++
	}
	return budget / int64(max(a.cur, a.prev, 1))
}

// dropBehind drops the pages of t's log that the successful sync t made
// (or an earlier one or a roll had made) durable and that lie more than
// window bytes behind the durable end. Called by the syncer after endSync.
func (l *Log) dropBehind(t syncTicket, window int64) {
	ranges := l.planDropLocked(t, window)
	for _, r := range ranges {
		if d, ok := r.seg.f.(cacheDropper); ok {
			if err := d.dropCache(r.off, r.end-r.off); err != nil && !l.dropErrLogged.Swap(true) {
				l.logger().Warn().Err(err).Int64("segment", r.seg.base).Msg("drop-behind: fadvise failed (advice only; logged once per log)")
			}
		}
		r.seg.closeMu.RUnlock()
	}
	if len(ranges) > 0 {
		l.engine.stats.dropped.Add(int64(len(ranges)))
	}
}

// planDropLocked takes l.mu and returns the ranges to drop, each segment
// pinned, and marks them dropped.
func (l *Log) planDropLocked(t syncTicket, window int64) []dropRange {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fenceErr != nil || t.gen != l.truncGen {
		return nil
	}
	i := len(l.segs) - 1
	for i >= 0 && l.segs[i] != t.seg {
		i--
	}
	if i < 0 {
		return nil // t's segment left the log
	}
	// Walk back from the durable end (t.pos in t.seg; every earlier
	// segment was synced when it was sealed) by window bytes to the cut.
	j, cut, left := i, min(t.pos, t.seg.size), window
	for {
		if cut >= left {
			cut = alignDown(cut - left)
			break
		}
		left -= cut
		if j == 0 {
			return nil // the whole log fits in the window
		}
		j--
		cut = l.segs[j].size
	}
	// Everything below (j, cut) that this process wrote and has not
	// dropped: back from j until a segment that is done.
	type span struct {
		s        *segment
		off, end int64
	}
	var spans []span
	var total int64
	for k, end := j, cut; k >= 0; k-- {
		s := l.segs[k]
		if !s.dropOn {
			break
		}
		if s.dropped > s.size {
			s.dropped = alignDown(s.size) // truncated below it (TruncateTo)
		}
		if s.dropped >= end {
			if k < j {
				break // this one and everything before it is done
			}
		} else {
			spans = append(spans, span{s, s.dropped, end})
			total += end - s.dropped
		}
		if k > 0 {
			end = l.segs[k-1].size
		}
	}
	if total < dropBehindStep {
		return nil
	}
	out := make([]dropRange, 0, len(spans))
	for _, sp := range spans {
		sp.s.dropped = sp.end
		sp.s.closeMu.RLock()
		if sp.s.closed {
			sp.s.closeMu.RUnlock()
			continue
		}
		out = append(out, dropRange{seg: sp.s, off: sp.off, end: sp.end})
	}
	return out
}
