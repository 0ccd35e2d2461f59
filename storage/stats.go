package storage

import (
	"sync/atomic"
	"time"
)

// Stats are an Engine's cumulative counters since Open.
type Stats struct {
	// Fsyncs counts syncs of segment files that covered appended
	// batches (group commits, interval syncs and segment rolls): each
	// file's fdatasync, or its share of a syncfs covering several.
	Fsyncs int64
	// FsyncBatches counts the appended batches those fsyncs made durable;
	// FsyncBatches/Fsyncs is how many batches share one fsync.
	FsyncBatches int64
	// SegmentsRecycled counts new segments that overwrote a deleted
	// segment's file instead of creating one (recycle.go).
	SegmentsRecycled int64
	// Syncfs counts group commits of several files made durable by one
	// syncfs of the data directory's file system (syncfs.go).
	Syncfs int64
}

// engineStats holds the counters; they are atomics, updated by every log.
type engineStats struct {
	fsyncs  atomic.Int64 // segment fdatasyncs that covered appends
	batches atomic.Int64 // batches those fdatasyncs made durable
	appends atomic.Int64 // appended batches
	commits atomic.Int64 // group commits (one backend submission each)
	// recycled counts new segments that reused a deleted segment's file.
	recycled atomic.Int64
	// dropped counts drop-behind fadvise calls (dropbehind.go).
	dropped atomic.Int64
	// syncfs counts group commits made durable by one syncfs (syncfs.go).
	syncfs atomic.Int64
	// commitTime is the time of each group commit's fdatasync batch.
	commitTime latencyHist
}

// commitBuckets are the upper bounds of the group-commit latency
// histogram: 100 µs doubling to about 3.3 s.
var commitBuckets = func() []time.Duration {
	b := make([]time.Duration, 16)
	for i := range b {
		b[i] = 100 * time.Microsecond << i
	}
	return b
}()

// latencyHist counts durations into commitBuckets (the last count is
// everything above the last bound), without locks.
type latencyHist struct {
	counts [17]atomic.Int64
	sum    atomic.Int64 // nanoseconds
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(commitBuckets) && d > commitBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// LatencyHistogram is a snapshot of a latency histogram: Counts[i] is how
// many took at most Bounds[i] (and more than Bounds[i-1]); the last count
// is those above every bound.
type LatencyHistogram struct {
	Bounds []time.Duration
	Counts []int64
	Sum    time.Duration
}

func (h *latencyHist) snapshot() LatencyHistogram {
	out := LatencyHistogram{Bounds: commitBuckets, Counts: make([]int64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// CommitLatency returns the histogram of group-commit times: each
// fdatasync batch of a group commit (fsync=always) or interval sync,
// from its submission to its last completion.
func (e *Engine) CommitLatency() LatencyHistogram { return e.stats.commitTime.snapshot() }

func (s *engineStats) synced(batches int64) {
	s.fsyncs.Add(1)
	s.batches.Add(batches)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{Fsyncs: e.stats.fsyncs.Load(), FsyncBatches: e.stats.batches.Load(), SegmentsRecycled: e.stats.recycled.Load(), Syncfs: e.stats.syncfs.Load()}
}
