package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Errors of the replication primitives; test with errors.Is.
var (
	// ErrOffsetMismatch: AppendReplica's batches do not start at the log
	// end offset or are not contiguous.
	ErrOffsetMismatch = errors.New("storage: replica batch offset mismatch")
	// ErrStaleEpoch: a replicated batch carries a leader epoch below the
	// highest epoch already in the log (a deposed leader's data), or an
	// append's epoch is older than the writer's (fencing.CheckAppend).
	ErrStaleEpoch = fencing.ErrStaleEpoch
	// ErrBelowHighWatermark: TruncateTo would remove records visible to
	// consumers (invariant I3).
	ErrBelowHighWatermark = errors.New("storage: truncation below the high watermark")
	// ErrNotBatchBoundary: an offset range does not start or end at a
	// batch boundary.
	ErrNotBatchBoundary = errors.New("storage: offset not at a batch boundary")
	// ErrTruncated: the offset a waiter waited for was removed by
	// TruncateTo.
	ErrTruncated = errors.New("storage: offset truncated")
)

// setReplicatedLocked switches replicated HW mode. Turning it on keeps the
// current HW (it never moves backwards) as the replication bound; turning
// it off lets the HW follow local durability again at once.
func (l *Log) setReplicatedLocked(on bool) {
	if on == l.replicated {
		return
	}
	l.replicated = on
	if on {
		l.replicaHW = l.hw
		return
	}
	l.advanceHWLocked(l.localHWLocked())
}

// localHWLocked is the HW local durability alone allows: the durable
// offset under FsyncAlways, else the log end offset.
func (l *Log) localHWLocked() int64 {
	if l.policy == FsyncAlways {
		return l.durable
	}
	return l.leo
}

// Replicated reports whether the log is in replicated HW mode.
func (l *Log) Replicated() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replicated
}

// DurableOffset is the offset below which the log is fdatasync'ed. Under
// FsyncAlways a follower should report it, not its LEO, as the offset it
// has replicated, so that an acks=all acknowledgement means durable on
// every replica.
func (l *Log) DurableOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// AdvanceHighWatermark feeds the replication bound of a replicated log:
// on a leader the minimum offset acknowledged by the segment's replicas,
// on a follower the leader's HW. The HW becomes min(bound, local HW) (the
// durable offset under FsyncAlways, else the LEO); it never moves
// backwards, never passes the LEO, and never moves once the log is fenced.
// A bound below an earlier one is ignored. It returns the HW; on a log not
// in replicated mode it changes nothing.
func (l *Log) AdvanceHighWatermark(off int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.replicated || l.closed {
		return l.hw
	}
	if off > l.replicaHW {
		l.replicaHW = off
	}
	l.advanceHWLocked(min(l.localHWLocked(), l.leo))
	return l.hw
}

// WaitHighWatermark blocks until the HW passes offset (acks=all: every
// record up to and including offset is replicated and, under FsyncAlways,
// durable). It fails with the fence error, ErrClosed, ErrTruncated (a
// TruncateTo removed offset) or ctx.Err().
func (l *Log) WaitHighWatermark(ctx context.Context, offset int64) error {
	return l.waitOffset(ctx, &l.hwWaiters, offset, func() (bool, error) {
		switch {
		case offset < l.hw:
			return true, nil
		case l.fenceErr != nil:
			return true, l.fenceErr
		case l.closed:
			return true, fmt.Errorf("storage: log %s: %w", l.tp, ErrClosed)
		case offset >= l.leo:
			return true, fmt.Errorf("storage: wait for high watermark of %s past %d, log end %d: %w", l.tp, offset, l.leo, ErrOffsetOutOfRange)
		}
		return false, nil
	})
}

// ReadUncommitted is Read for replica fetchers: the batches may reach up
// to the log end offset instead of stopping at the high watermark. A
// concurrent TruncateTo can make it fail or return nothing; it never
// returns bytes of a truncated range.
func (l *Log) ReadUncommitted(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	l.mu.Lock()
	gen := l.truncGen
	l.mu.Unlock()
	res, err := l.read(offset, maxBytes, minOneBatch, boundLEO)
	if err != nil || res.Data == nil {
		return res, err
	}
	l.mu.Lock()
	moved := l.truncGen != gen
	l.mu.Unlock()
	if moved {
		return ReadResult{HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset},
			fmt.Errorf("storage: read %s at %d: %w", l.tp, offset, ErrTruncated)
	}
	return res, nil
}

// ReadSectionUncommitted is ReadSection up to the log end offset (see
// ReadUncommitted). A TruncateTo after it returns can shorten or change
// the section's bytes; the receiver verifies each batch's CRC-32C
// (AppendReplica does).
func (l *Log) ReadSectionUncommitted(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return l.readSection(offset, maxBytes, minOneBatch, boundLEO)
}

// AppendReplica appends batches copied from the leader (a follower's
// fetch): b holds one or more whole v2 batches whose offsets and
// PartitionLeaderEpoch the leader assigned. Each is validated (header,
// sizes, CRC-32C); the first must start at the log end offset and the
// others follow contiguously (else ErrOffsetMismatch); an epoch below the
// highest epoch already in the log, or below an earlier batch of b, is
// ErrStaleEpoch. On any such error nothing is written. The bytes are
// written unchanged; indexes, the time index, the epoch cache and producer
// state are updated as Append does (without sequence checks: the leader
// made them), segments roll as in Append, and the fsync policy and fencing
// on I/O errors are Append's. The result spans all of b.
func (l *Log) AppendReplica(b []byte) (AppendResult, error) {
	return l.appendReplica(b, false)
}

// AppendReplicaGap is AppendReplica for a cleaned sealed range (learners
// and re-copies of cleaned segments, docs/compaction.md): the first batch
// may start above the log end offset (the LEO jumps to the end of the
// last batch), later batches need only strictly increasing offsets, and a
// batch may hold fewer records than its offset range, or none (an empty
// batch keeping its base offset and last offset delta). Everything else
// is AppendReplica's: CRC-32C, epochs, nothing written on an error.
func (l *Log) AppendReplicaGap(b []byte) (AppendResult, error) {
	return l.appendReplica(b, true)
}

func (l *Log) appendReplica(b []byte, gaps bool) (AppendResult, error) {
	first, last, n, err := validateReplicaBatches(b, gaps)
	if err != nil {
		return AppendResult{}, fmt.Errorf("storage: append replica batches to %s: %w", l.tp, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return AppendResult{}, err
	}
	if first.BaseOffset != l.leo && (!gaps || first.BaseOffset < l.leo) {
		return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append replica batches to %s: first batch at %d, log end offset %d: %w",
			l.tp, first.BaseOffset, l.leo, ErrOffsetMismatch)
	}
	if err := fencing.CheckReplica(l.epochs.latest, first.PartitionLeaderEpoch); err != nil {
		return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append replica batches to %s at %d: %w", l.tp, first.BaseOffset, err)
	}
	interval := l.cfg.indexInterval()
	// Write runs of batches that fit the active segment with one write
	// each, rolling between runs as Append would.
	runStart := 0
	for p := 0; p <= len(b); {
		var h kafkaproto.BatchHeader
		roll := false
		if p < len(b) {
			h, _ = kafkaproto.ParseBatchHeader(b[p:]) // validated above
			seg := l.active()
			runBytes := int64(p - runStart)
			size := seg.size + runBytes
			// Age counts from the segment's first append, as in
			// Append; a segment this run starts is new.
			roll = size > 0 && (size+int64(h.Size()) > l.cfg.segmentBytes() ||
				(seg.size > 0 && l.cfg.SegmentMs > 0 && l.now().Sub(seg.created) >= time.Duration(l.cfg.SegmentMs)*time.Millisecond))
		}
		if (p == len(b) || roll) && p > runStart {
			if err := l.writeReplicaRunLocked(b[runStart:p], interval); err != nil {
				return AppendResult{}, err
			}
			runStart = p
		}
		if p == len(b) {
			break
		}
		if roll {
			if err := l.rollLocked(); err != nil {
				return AppendResult{}, err
			}
		}
		p += h.Size()
	}
	l.engine.stats.appends.Add(int64(n))
	switch l.policy {
	case FsyncAlways:
		l.engine.markDirty(l, true)
	case FsyncInterval:
		l.engine.markDirty(l, false)
		l.advanceHWLocked(l.leo)
	default:
		l.advanceHWLocked(l.leo)
	}
	if l.replicated {
		l.notifyHWLocked()
	}
	return AppendResult{BaseOffset: first.BaseOffset, LastOffset: last, LogStartOffset: l.logStart}, nil
}

// writeReplicaRunLocked writes whole validated batches run at the end of
// the active segment and tracks them; a failed or short write fences.
func (l *Log) writeReplicaRunLocked(run []byte, interval int64) error {
	seg := l.active()
	pos := seg.size
	l.preallocLocked(seg, pos+int64(len(run)))
	n, err := seg.f.WriteAt(run, pos)
	if err == nil && n != len(run) {
		err = fmt.Errorf("wrote %d of %d bytes: %w", n, len(run), io.ErrShortWrite)
	}
	if err != nil && notWritten(err) {
		return fmt.Errorf("storage: append replica batches to %s: segment %d: %w", l.tp, seg.base, err)
	}
	if err != nil {
		l.fenceLocked(fmt.Errorf("storage: append replica batches to %s: write segment %d at %d: %w", l.tp, seg.base, pos, err))
		return l.fenceErr
	}
	if seg.size == 0 {
		seg.created = l.now()
	}
	for p := 0; p < len(run); {
		h, _ := kafkaproto.ParseBatchHeader(run[p:])
		last := h.LastOffset()
		seg.track(h.BaseOffset, last, h.MaxTimestamp, pos+int64(p), int64(h.Size()), interval)
		l.epochs.observe(&h)
		batch := run[p : p+h.Size()]
		if e, aborted, _ := replayBatch(l.producers, &h, func() ([]byte, error) { return batch, nil }); aborted {
			l.trackAbortedLocked(e)
		}
		l.leo = last + 1
		l.unsynced++
		p += h.Size()
	}
	return nil
}

// validateReplicaBatches checks every batch of b (ValidateBatch: header,
// size, record count, codec, CRC-32C), their contiguity and non-decreasing
// epochs, without the log's lock. With gaps, offsets need only increase
// strictly and record counts may be below the offset range
// (validateStoredBatch). It returns the first batch's header, the last
// offset and the batch count.
func validateReplicaBatches(b []byte, gaps bool) (first kafkaproto.BatchHeader, last int64, n int, err error) {
	var maxEpoch int32
	if len(b) == 0 {
		return first, 0, 0, fmt.Errorf("no batches: %w", kafkaproto.ErrShortBatch)
	}
	for p := 0; p < len(b); {
		h, err := kafkaproto.ParseBatchHeader(b[p:])
		if err != nil {
			return first, 0, 0, fmt.Errorf("batch %d at byte %d: %w", n, p, err)
		}
		if h.Size() > len(b)-p {
			return first, 0, 0, fmt.Errorf("batch %d at byte %d: %d bytes, %d left: %w", n, p, h.Size(), len(b)-p, kafkaproto.ErrShortBatch)
		}
		validate := kafkaproto.ValidateBatch
		if gaps {
			validate = validateStoredBatch
		}
		if h, err = validate(b[p : p+h.Size()]); err != nil {
			return first, 0, 0, fmt.Errorf("batch %d at byte %d: %w", n, p, err)
		}
		if h.BaseOffset < 0 {
			return first, 0, 0, fmt.Errorf("batch %d at byte %d: base offset %d: %w", n, p, h.BaseOffset, ErrOffsetMismatch)
		}
		if n == 0 {
			first, maxEpoch = h, h.PartitionLeaderEpoch
		} else {
			if h.BaseOffset != last+1 && (!gaps || h.BaseOffset <= last) {
				return first, 0, 0, fmt.Errorf("batch %d at byte %d: base offset %d, want %d: %w", n, p, h.BaseOffset, last+1, ErrOffsetMismatch)
			}
			if h.PartitionLeaderEpoch < maxEpoch {
				return first, 0, 0, fmt.Errorf("batch %d at byte %d: epoch %d after epoch %d: %w", n, p, h.PartitionLeaderEpoch, maxEpoch, ErrStaleEpoch)
			}
			maxEpoch = h.PartitionLeaderEpoch
		}
		last = h.LastOffset()
		n++
		p += h.Size()
	}
	return first, last, n, nil
}

// validateStoredBatch is kafkaproto.ValidateBatch for batches a cleaning
// produced: the record count may be anything from 0 (an empty batch) to
// LastOffsetDelta + 1.
func validateStoredBatch(b []byte) (kafkaproto.BatchHeader, error) {
	h, err := kafkaproto.ParseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if h.Size() != len(b) {
		return h, fmt.Errorf("%w: batch length %d does not match %d bytes", kafkaproto.ErrCorruptBatch, h.Size(), len(b))
	}
	if h.LastOffsetDelta < 0 || h.RecordCount < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1 {
		return h, fmt.Errorf("%w: record count %d inconsistent with last offset delta %d", kafkaproto.ErrCorruptBatch, h.RecordCount, h.LastOffsetDelta)
	}
	if h.Compression() > kafkaproto.CompressionZstd {
		return h, fmt.Errorf("%w: unknown compression codec %d", kafkaproto.ErrCorruptBatch, h.Compression())
	}
	if err := kafkaproto.VerifyCRC(b, &h); err != nil {
		return h, err
	}
	return h, nil
}
