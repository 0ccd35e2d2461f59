package storage

import (
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

const (
	truncateFile  = "truncate-to"
	truncateMagic = "TSKT"
)

// TruncateTo removes every batch holding an offset at or above off, so the
// log end offset becomes off, or the base of the batch containing off if
// off falls inside one (then below off; check LogEndOffset). An off at or
// above the LEO changes nothing. It refuses (ErrBelowHighWatermark) to
// remove anything below the high watermark (invariant I3), and below the
// log start offset (ErrOffsetOutOfRange).
//
// Later segments are deleted, the segment holding the new end is cut and
// becomes the active one, its indexes, the epoch cache and producer state
// (nearest snapshot at or below the new end, plus a replay) are rebuilt,
// and what remains is durable. WaitDurable and WaitHighWatermark callers
// waiting for a removed offset get ErrTruncated. It is crash-safe through a
// redo record (see doc.go): after a crash, recovery yields the old log or
// the truncated one. An I/O error fences the log; reopening it completes
// the truncation or keeps the old log.
func (l *Log) TruncateTo(off int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return fmt.Errorf("storage: truncate %s to %d: %w", l.tp, off, err)
	}
	if off >= l.leo {
		return nil
	}
	if off < l.logStart {
		return fmt.Errorf("storage: truncate %s to %d, log start %d: %w", l.tp, off, l.logStart, ErrOffsetOutOfRange)
	}
	i := l.segIndexLocked(off)
	seg := l.segs[i]
	cutPos, cutOff := seg.size, seg.next
	// newEnd is the offset after the last batch kept: the new LEO. It is
	// below cutOff when an offset gap (a cleaned range) precedes the cut,
	// as recovery would compute it. The scan starts at an indexed batch
	// before the one at or below off, so that the batch before the cut
	// is seen.
	newEnd := seg.base
	pos, at := seg.lookupBatch(off)
	if pos > 0 {
		pos, at = seg.lookupBatch(at - 1)
	}
	if _, _, err := scanBatches(seg.f, pos, at, seg.size, false, func(h *kafkaproto.BatchHeader, p int64) error {
		if h.LastOffset() >= off {
			cutPos, cutOff = p, h.BaseOffset
			return errStop
		}
		newEnd = h.LastOffset() + 1
		return nil
	}); err != nil {
		return fmt.Errorf("storage: truncate %s to %d: scan segment %d: %w", l.tp, off, seg.base, err)
	}
	if r := l.rewrite; r != nil && i < len(r.covered) {
		// The cut would change a file a pending rewrite replaces: abort
		// the rewrite first.
		return fmt.Errorf("storage: truncate %s to %d (batch at %d), rewrite pending below %d: %w", l.tp, off, cutOff, r.upTo, ErrRewritePending)
	}
	if cutOff < l.hw || newEnd < l.hw {
		return fmt.Errorf("storage: truncate %s to %d (batch at %d), high watermark %d: %w", l.tp, off, cutOff, l.hw, ErrBelowHighWatermark)
	}
	if cutOff < l.logStart {
		return fmt.Errorf("storage: truncate %s to %d (batch at %d), log start %d: %w", l.tp, off, cutOff, l.logStart, ErrOffsetOutOfRange)
	}
	fail := func(what string, err error) error {
		l.fenceLocked(fmt.Errorf("storage: truncate %s to %d: %s: %w", l.tp, cutOff, what, err))
		return l.fenceErr
	}
	// 1. The redo record: from here on, recovery finishes the job.
	if err := writeTruncateMarker(l.fs, l.dir, cutOff); err != nil {
		return fail("write truncate-to record", err)
	}
	// 2. Delete the later segments (renamed to *.deleted names, handed
	// to the deleter once the renames are durable in step 3), and the
	// index files of seg, which becomes the active segment.
	type tomb struct {
		path    string
		size    int64
		readers <-chan struct{}
	}
	var tombs []tomb
	for _, s := range l.segs[i+1:] {
		if err := s.closeFile(); err != nil {
			return fail(fmt.Sprintf("close segment %d", s.base), err)
		}
		path, size, err := l.tombstoneSegment(s.base)
		if err != nil {
			return fail("delete segment", err)
		}
		if path != "" {
			tombs = append(tombs, tomb{path, size, s.sections.whenIdle()})
		}
	}
	if i < len(l.segs)-1 {
		for _, suf := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if err := l.fs.Remove(segName(l.dir, seg.base, suf)); err != nil && !isNotExist(err) {
				return fail("delete index of new active segment", err)
			}
		}
	}
	// 3. Cut seg and make everything kept durable.
	if err := seg.f.Truncate(cutPos); err != nil {
		return fail(fmt.Sprintf("truncate segment %d at %d", seg.base, cutPos), err)
	}
	if err := seg.f.Sync(); err != nil {
		return fail(fmt.Sprintf("sync segment %d", seg.base), err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fail("sync dir", err)
	}
	for _, t := range tombs {
		l.engine.reclaim(t.path, t.size, t.readers)
	}
	// 4. Done: drop the redo record before any new append.
	if err := l.fs.Remove(filepath.Join(l.dir, truncateFile)); err != nil {
		return fail("remove truncate-to record", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fail("sync dir", err)
	}

	// In memory.
	interval := l.cfg.indexInterval()
	fresh := newSegment(seg.base, seg.f, interval)
	if _, _, err := scanBatches(seg.f, 0, seg.base, cutPos, false, func(h *kafkaproto.BatchHeader, p int64) error {
		fresh.track(h.BaseOffset, h.LastOffset(), h.MaxTimestamp, p, int64(h.Size()), interval)
		return nil
	}); err != nil {
		return fail(fmt.Sprintf("reindex segment %d", seg.base), err)
	}
	// Readers may hold seg's index slice: publish new slices, never
	// mutate the old ones. The segment object (and its closeMu) stays.
	seg.index, seg.timeIndex = fresh.index, fresh.timeIndex
	seg.size, seg.next = fresh.size, fresh.next
	seg.stale = 0 // the file now ends at cutPos
	seg.maxTs, seg.maxTsOffset = fresh.maxTs, fresh.maxTsOffset
	seg.sinceIndex, seg.sinceTime = fresh.sinceIndex, fresh.sinceTime
	if seg.size == 0 {
		seg.created = fresh.created
	}
	clear(l.segs[i+1:])
	l.segs = l.segs[:i+1]
	l.truncGen++
	l.leo = seg.next // newEnd
	l.unsynced = 0
	l.replicaHW = min(l.replicaHW, l.leo)
	l.epochs.truncate(cutOff)
	keep := 0
	for keep < len(seg.aborted) && seg.aborted[keep].last < l.leo {
		keep++
	}
	seg.aborted = seg.aborted[:keep:keep]
	if err := l.rebuildProducersLocked(); err != nil {
		return fail("rebuild producer state", err)
	}
	truncErr := fmt.Errorf("storage: %s truncated to %d: %w", l.tp, l.leo, ErrTruncated)
	l.durableWaiters.fail(l.leo, truncErr)
	l.hwWaiters.fail(l.leo, truncErr)
	l.durable = min(l.durable, l.leo)
	l.advanceDurableLocked(l.leo) // everything kept is synced
	l.logger().Info().Int64("offset", l.leo).Int64("segment", seg.base).Msg("truncated log")
	return nil
}

// segIndexLocked returns the index of the segment holding offset
// (logStart <= offset < leo).
func (l *Log) segIndexLocked(offset int64) int {
	s := l.segmentForLocked(offset)
	for i := len(l.segs) - 1; i >= 0; i-- {
		if l.segs[i] == s {
			return i
		}
	}
	return 0
}

// rebuildProducersLocked recomputes producer state from the newest
// readable snapshot at or below the active segment's base (snapshots live
// at segment bases) plus a replay of the batches after it, as recovery
// does; open transactions come back with it (the files' aborted indexes
// are kept: TruncateTo cuts the active one's).
func (l *Log) rebuildProducersLocked() error {
	ps := fencing.NewProducerStates()
	from := 0
	for j := len(l.segs) - 1; j >= 0; j-- {
		b, err := readWhole(l.fs, segName(l.dir, l.segs[j].base, snapshotSuffix))
		if err != nil {
			if !isNotExist(err) {
				l.logger().Warn().Err(err).Int64("offset", l.segs[j].base).Msg("ignoring unreadable producer snapshot")
			}
			continue
		}
		entries, err := decodeSnapshot(b)
		if err != nil {
			l.logger().Warn().Err(err).Int64("offset", l.segs[j].base).Msg("ignoring bad producer snapshot")
			continue
		}
		ps.Load(entries)
		from = j
		break
	}
	for _, s := range l.segs[from:] {
		if _, _, err := scanBatches(s.f, 0, s.base, s.size, false, func(h *kafkaproto.BatchHeader, pos int64) error {
			_, _, err := replayBatch(ps, h, fileBatch(s.f, h, pos))
			return err
		}); err != nil {
			return fmt.Errorf("replay segment %d: %w", s.base, err)
		}
	}
	l.producers = ps
	return nil
}

// writeTruncateMarker durably records that the log is being truncated to
// off (an offset file, see writeOffsetFile).
func writeTruncateMarker(fsys FS, dir string, off int64) error {
	return writeOffsetFile(fsys, dir, truncateFile, truncateMagic, off)
}

// readTruncateMarker loads an unfinished truncation's target offset.
func readTruncateMarker(fsys FS, dir string) (off int64, found bool, err error) {
	return readOffsetFile(fsys, dir, truncateFile, truncateMagic)
}

// SegmentChecksum returns the CRC-32C (Castagnoli) and the length of the
// bytes of the batches holding offsets [base, end), as stored (invariant
// I4: replicas compare a sealed range), offset gaps between them or not
// (a cleaned range, docs/compaction.md). No batch may straddle base or
// end (ErrNotBatchBoundary), and logStart <= base <= end <= LEO
// (ErrOffsetOutOfRange). It fails with ErrTruncated if a TruncateTo ran
// meanwhile.
func (l *Log) SegmentChecksum(base, end int64) (uint32, int64, error) {
	type part struct {
		s             *segment
		pos, at, size int64
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, 0, fmt.Errorf("storage: checksum %s: %w", l.tp, ErrClosed)
	}
	if base < l.logStart || end > l.leo || base > end {
		err := fmt.Errorf("storage: checksum %s [%d, %d), log spans [%d, %d]: %w", l.tp, base, end, l.logStart, l.leo, ErrOffsetOutOfRange)
		l.mu.Unlock()
		return 0, 0, err
	}
	if base == end {
		l.mu.Unlock()
		return 0, 0, nil
	}
	gen := l.truncGen
	var parts []part
	for _, s := range l.segs {
		if s.next <= base || s.base >= end {
			continue
		}
		pos, at := s.lookupBatch(max(base, s.base))
		parts = append(parts, part{s: s, pos: pos, at: at, size: s.size})
	}
	l.mu.Unlock()

	var crc uint32
	var n int64
	var buf []byte
	for _, p := range parts {
		start, stop := int64(-1), int64(-1)
		ok, err := withSegment(p.s, func() error {
			_, _, err := scanBatches(p.s.f, p.pos, p.at, p.size, false, func(h *kafkaproto.BatchHeader, pos int64) error {
				switch {
				case h.LastOffset() < base:
					return nil
				case h.BaseOffset >= end:
					return errStop
				case h.BaseOffset < base || h.LastOffset() >= end:
					return fmt.Errorf("batch [%d, %d] across [%d, %d): %w", h.BaseOffset, h.LastOffset(), base, end, ErrNotBatchBoundary)
				}
				if start < 0 {
					start = pos
				}
				stop = pos + int64(h.Size())
				return nil
			})
			if err != nil || start < 0 {
				return err
			}
			if buf == nil {
				buf = make([]byte, 64<<10)
			}
			for at := start; at < stop; {
				c := buf[:min(int64(len(buf)), stop-at)]
				if _, err := p.s.f.ReadAt(c, at); err != nil {
					return fmt.Errorf("read at %d: %w", at, err)
				}
				crc = crc32.Update(crc, castagnoli, c)
				n += int64(len(c))
				at += int64(len(c))
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("storage: checksum %s [%d, %d) segment %d: %w", l.tp, base, end, p.s.base, err)
		}
		if !ok {
			return 0, 0, fmt.Errorf("storage: checksum %s [%d, %d): segment %d deleted meanwhile: %w", l.tp, base, end, p.s.base, ErrOffsetOutOfRange)
		}
	}
	l.mu.Lock()
	moved := l.truncGen != gen
	l.mu.Unlock()
	if moved {
		return 0, 0, fmt.Errorf("storage: checksum %s [%d, %d): %w", l.tp, base, end, ErrTruncated)
	}
	return crc, n, nil
}
