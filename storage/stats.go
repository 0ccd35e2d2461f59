package storage

import "sync/atomic"

// Stats are an Engine's cumulative counters since Open.
type Stats struct {
	// Fsyncs counts fdatasyncs of segment files that covered appended
	// batches (group commits, interval syncs and segment rolls).
	Fsyncs int64
	// FsyncBatches counts the appended batches those fsyncs made durable;
	// FsyncBatches/Fsyncs is how many batches share one fsync.
	FsyncBatches int64
	// SegmentsRecycled counts new segments that overwrote a deleted
	// segment's file instead of creating one (recycle.go).
	SegmentsRecycled int64
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
}

func (s *engineStats) synced(batches int64) {
	s.fsyncs.Add(1)
	s.batches.Add(batches)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{Fsyncs: e.stats.fsyncs.Load(), FsyncBatches: e.stats.batches.Load(), SegmentsRecycled: e.stats.recycled.Load()}
}
