package storage

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// parseSegFile parses "%020d<suffix>".
func parseSegFile(name string) (base int64, suffix string, ok bool) {
	i := strings.IndexByte(name, '.')
	if i != 20 {
		return 0, "", false
	}
	b, err := strconv.ParseInt(name[:i], 10, 64)
	if err != nil || b < 0 {
		return 0, "", false
	}
	return b, name[i:], true
}

// recoverLog opens the partition directory, creating it if needed, and
// rebuilds the log's state (see doc.go, "Recovery"). e.mu is held.
func (e *Engine) recoverLog(tp TopicPartition, cfg LogConfig) (*Log, error) {
	l := e.newLogStruct(tp, cfg)
	dir := l.dir
	fail := func(err error) (*Log, error) {
		for _, s := range l.segs {
			s.closeFile()
		}
		return nil, fmt.Errorf("storage: open log %s: %w", tp, err)
	}
	if _, err := e.fs.Stat(dir); isNotExist(err) {
		if err := e.fs.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := e.fs.SyncDir(e.opts.Dir); err != nil {
			return fail(err)
		}
	} else if err != nil {
		return fail(err)
	}
	names, err := e.fs.ReadDir(dir)
	if err != nil {
		return fail(err)
	}
	// An interrupted rewrite: completed if its clean-swap record is
	// there, its output removed if not (rewrite.go), before the old files
	// it renamed to *.deleted go to the deleter.
	if changed, err := l.recoverSwap(names); err != nil {
		return fail(fmt.Errorf("recover rewrite: %w", err))
	} else if changed {
		if names, err = e.fs.ReadDir(dir); err != nil {
			return fail(err)
		}
	}
	if l.cleanGen, err = readGeneration(e.fs, dir); err != nil {
		l.logger().Warn().Err(err).Msg("ignoring unreadable clean-generation file")
	}
	// Segment files deleted before a crash or restart: the deleter
	// finishes them; they are never segments.
	if _, err := e.reclaimLeftovers(dir, names); err != nil {
		return fail(err)
	}
	var bases, snaps []int64
	other := map[int64][]string{} // base → index/snapshot file names
	for _, n := range names {
		base, suf, ok := parseSegFile(n)
		switch {
		case strings.HasSuffix(n, deletedSuffix):
		case strings.HasSuffix(n, ".tmp"):
			if err := e.fs.Remove(filepath.Join(dir, n)); err != nil {
				l.logger().Warn().Err(err).Str("file", n).Msg("remove leftover file")
			}
		case !ok:
		case suf == logSuffix:
			bases = append(bases, base)
		case suf == snapshotSuffix:
			snaps = append(snaps, base)
			other[base] = append(other[base], n)
		case suf == indexSuffix || suf == timeIndexSuffix:
			other[base] = append(other[base], n)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	sort.Slice(snaps, func(i, j int) bool { return snaps[i] < snaps[j] })

	// An unfinished TruncateTo: redo it (see doc.go). Segments above the
	// target go; the active segment's scan below stops at it.
	truncTo, haveTrunc, err := readTruncateMarker(e.fs, dir)
	if err != nil {
		return fail(fmt.Errorf("read truncate-to record: %w", err))
	}
	limit := int64(math.MaxInt64)
	if haveTrunc {
		l.logger().Warn().Int64("offset", truncTo).Msg("completing an interrupted truncation")
		limit = truncTo
		for len(bases) > 1 && bases[len(bases)-1] > truncTo {
			l.removeSegFiles(bases[len(bases)-1])
			bases = bases[:len(bases)-1]
		}
	}

	logStart, haveStart, err := readLogStart(e.fs, dir)
	if err != nil {
		l.logger().Warn().Err(err).Msg("ignoring unreadable log-start-offset checkpoint")
		haveStart = false
	}
	if !haveStart {
		logStart = 0
		if len(bases) > 0 {
			logStart = bases[0]
		}
	}
	// Drop segments wholly below the log start (a crash between persisting
	// the checkpoint and deleting them).
	for len(bases) > 1 && bases[1] <= logStart {
		l.removeSegFiles(bases[0])
		bases = bases[1:]
	}
	if len(bases) == 0 {
		if err := l.createEmptySegment(logStart); err != nil {
			return fail(err)
		}
		bases = []int64{logStart}
	}
	if logStart < bases[0] {
		logStart = bases[0]
	}
	interval := cfg.indexInterval()

	// Sealed segments: trust their index files when consistent.
	for i := 0; i < len(bases)-1; i++ {
		s, err := l.openSealed(bases[i], bases[i+1], interval)
		if err != nil {
			return fail(err)
		}
		if s == nil {
			// Segment i is damaged: it becomes the last; later ones go.
			l.logger().Warn().Int64("base", bases[i]).Msg("sealed segment damaged: truncating the log there")
			for _, b := range bases[i+1:] {
				l.removeSegFiles(b)
			}
			bases = bases[:i+1]
			break
		}
		l.segs = append(l.segs, s)
	}

	// Producer state: newest valid snapshot at or below the active base,
	// then replay of the batches after it. A sealed file whose
	// aborted-transaction index is missing or inconsistent has it
	// rebuilt by the replay, which then starts at a snapshot at or below
	// the first such file (or at the log's first batch).
	activeBase := bases[len(bases)-1]
	if err := l.recoverEpochs(activeBase); err != nil {
		return fail(err)
	}
	target := activeBase
	rebuild := map[*segment]bool{}
	for _, s := range l.segs {
		if !l.loadTxnIndex(s) {
			rebuild[s] = true
			target = min(target, s.base)
		}
	}
	replayFrom := int64(-1)
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i] > activeBase {
			if err := e.fs.Remove(segName(dir, snaps[i], snapshotSuffix)); err != nil && !isNotExist(err) {
				l.logger().Warn().Err(err).Msg("remove snapshot above log end")
			}
			continue
		}
		if snaps[i] > target {
			continue
		}
		b, err := readWhole(e.fs, segName(dir, snaps[i], snapshotSuffix))
		if err == nil {
			var entries []fencing.ProducerEntry
			if entries, err = decodeSnapshot(b); err == nil {
				l.producers.Load(entries)
				replayFrom = snaps[i]
				break
			}
		}
		l.logger().Warn().Err(err).Int64("offset", snaps[i]).Msg("ignoring unreadable producer snapshot")
	}
	replay := func(s *segment, h *kafkaproto.BatchHeader, pos int64) error {
		if h.BaseOffset < replayFrom {
			return nil
		}
		e, aborted, err := replayBatch(l.producers, h, fileBatch(s.f, h, pos))
		if err != nil {
			return err
		}
		if aborted && rebuild[s] {
			s.aborted = append(s.aborted, e)
		}
		return nil
	}
	for _, s := range l.segs {
		if rebuild[s] {
			s.aborted = nil
		}
		if s.next <= replayFrom {
			continue
		}
		if _, _, err := scanBatches(s.f, 0, s.base, s.size, false, func(h *kafkaproto.BatchHeader, pos int64) error {
			return replay(s, h, pos)
		}); err != nil {
			return fail(fmt.Errorf("replay producer state from segment %d: %w", s.base, err))
		}
		if rebuild[s] {
			l.logger().Info().Int64("base", s.base).Int("aborted", len(s.aborted)).Msg("rebuilt transaction index of sealed segment")
			if err := writeFileSync(e.fs, segName(dir, s.base, txnIndexSuffix), encodeTxnIndex(s.aborted)); err != nil {
				l.logger().Warn().Err(err).Msg("rewrite transaction index")
			}
		}
	}

	// The active segment: verify every batch, truncate a torn tail.
	act, err := l.openActive(activeBase, interval, limit, func(s *segment, h *kafkaproto.BatchHeader, pos int64) error {
		rebuild[s] = true // its index lives in memory
		l.epochs.observe(h)
		return replay(s, h, pos)
	})
	if err != nil {
		return fail(err)
	}
	if haveTrunc {
		// The cut is synced (openActive); make the deletions durable,
		// then drop the record.
		if err := e.fs.SyncDir(dir); err != nil {
			return fail(err)
		}
		if err := e.fs.Remove(filepath.Join(dir, truncateFile)); err != nil {
			return fail(fmt.Errorf("remove truncate-to record: %w", err))
		}
		if err := e.fs.SyncDir(dir); err != nil {
			return fail(err)
		}
	}
	l.segs = append(l.segs, act)
	l.leo = act.next
	if logStart > l.leo {
		// Records were deleted up to logStart but the log lost its tail
		// (possible without FsyncAlways): restart empty at logStart rather
		// than reuse deleted offsets.
		l.logger().Warn().Int64("log_start", logStart).Int64("leo", l.leo).Msg("log ends below its start offset: starting empty")
		for _, s := range l.segs {
			s.closeFile()
			l.removeSegFiles(s.base)
		}
		l.segs = nil
		if err := l.createEmptySegment(logStart); err != nil {
			return fail(err)
		}
		f, err := l.openSegFile(logStart, os.O_RDWR)
		if err != nil {
			return fail(err)
		}
		l.segs = []*segment{newSegment(logStart, f, interval)}
		l.leo = logStart
		l.epochs.reset()
	}
	l.logStart = logStart
	l.epochs.trimFront(logStart)
	l.durable, l.hw = l.leo, l.leo
	// Drop-behind leaves what was on disk before this process to the
	// kernel and drops only what it appends (dropbehind.go).
	l.active().dropOn, l.active().dropped = true, alignUp(l.active().size)
	if cfg.Replicated {
		// Nothing is known to be replicated until the replication layer
		// says so (AdvanceHighWatermark), except what a clean close
		// recorded: that was committed, and truncation never goes below
		// a high watermark, so it still is (Kafka's HW checkpoint).
		hw := logStart
		l.hwOnDisk = hwNone
		if off, found, err := readOffsetFile(e.fs, dir, hwFile, hwMagic); err != nil {
			l.logger().Warn().Err(err).Msg("ignoring unreadable high-watermark checkpoint")
		} else if found {
			hw = min(max(off, logStart), l.leo)
			l.hwOnDisk = off
		}
		l.replicated, l.hw, l.replicaHW = true, hw, hw
	}
	l.logger().Info().Int64("log_start", l.logStart).Int64("leo", l.leo).Int("segments", len(l.segs)).Int("producers", l.producers.Len()).Msg("opened log")
	return l, nil
}

// createEmptySegment durably creates an empty segment file at base.
func (l *Log) createEmptySegment(base int64) error {
	f, err := l.fs.OpenFile(segName(l.dir, base, logSuffix), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create segment %d: %w", base, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create segment %d: %w", base, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("create segment %d: sync dir: %w", base, err)
	}
	return nil
}

// removeSegFiles deletes every file of the segment at base (during
// recovery, before the log is open): the log file goes to the deleter
// under a durable *.deleted name.
func (l *Log) removeSegFiles(base int64) {
	gone, size, err := l.tombstoneSegment(base)
	if err == nil && gone != "" {
		if err = l.fs.SyncDir(l.dir); err == nil {
			l.engine.reclaim(gone, size, nil)
		}
	}
	if err != nil {
		l.logger().Warn().Err(err).Int64("base", base).Msg("remove segment files")
	}
}

// openSealed opens a sealed segment [base, next). It trusts the index files
// when they are consistent with the log (checked by walking the batches
// after the last index entry, which must end exactly at the file's end and
// at offset next); otherwise it rebuilds them by scanning the segment, and
// rewrites them. It returns nil when the segment itself is damaged (it does
// not reach next), leaving the caller to truncate there.
func (l *Log) openSealed(base, next, interval int64) (*segment, error) {
	f, err := l.openSegFile(base, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat segment %d: %w", base, err)
	}
	s := newSegment(base, f, interval)
	s.size, s.next = size, next
	if l.loadIndexes(s) {
		return s, nil
	}
	l.logger().Info().Int64("base", base).Msg("rebuilding indexes of sealed segment")
	s = newSegment(base, f, interval)
	endPos, endOff, err := scanBatches(f, 0, base, size, true, func(h *kafkaproto.BatchHeader, pos int64) error {
		s.track(h.BaseOffset, h.LastOffset(), h.MaxTimestamp, pos, int64(h.Size()), interval)
		return nil
	})
	if err != nil || endPos != size || endOff != next {
		l.logger().Warn().Err(err).Int64("base", base).Int64("end_pos", endPos).Int64("end_offset", endOff).Int64("want_offset", next).Msg("sealed segment inconsistent")
		f.Close()
		return nil, nil
	}
	s.seal()
	if err := writeFileSync(l.fs, segName(l.dir, base, indexSuffix), encodeIndex(s.index)); err != nil {
		l.logger().Warn().Err(err).Msg("rewrite index")
	}
	if err := writeFileSync(l.fs, segName(l.dir, base, timeIndexSuffix), encodeTimeIndex(s.timeIndex)); err != nil {
		l.logger().Warn().Err(err).Msg("rewrite time index")
	}
	return s, nil
}

// loadIndexes loads s's index files and checks them; false means rebuild.
func (l *Log) loadIndexes(s *segment) bool {
	span := s.next - s.base
	ib, err := readWhole(l.fs, segName(l.dir, s.base, indexSuffix))
	if err != nil {
		return false
	}
	ix, err := decodeIndex(ib, s.size, span)
	if err != nil {
		l.logger().Warn().Err(err).Int64("base", s.base).Msg("bad offset index")
		return false
	}
	tb, err := readWhole(l.fs, segName(l.dir, s.base, timeIndexSuffix))
	if err != nil {
		return false
	}
	tix, err := decodeTimeIndex(tb, span)
	if err != nil {
		l.logger().Warn().Err(err).Int64("base", s.base).Msg("bad time index")
		return false
	}
	s.index, s.timeIndex = ix, tix
	pos, at := s.lookupBatch(s.next - 1)
	endPos, endOff, err := scanBatches(s.f, pos, at, s.size, false, nil)
	if err != nil || endPos != s.size || endOff != s.next {
		l.logger().Warn().Err(err).Int64("base", s.base).Msg("index inconsistent with segment")
		s.index, s.timeIndex = nil, nil
		return false
	}
	if n := len(tix); n > 0 {
		s.maxTs, s.maxTsOffset = tix[n-1].ts, s.base+int64(tix[n-1].rel)
	}
	return true
}

// openActive opens the last segment, verifies every batch (structure,
// increasing offsets with gaps allowed, CRC-32C; a batch below the next
// offset, a recycled file's stale data, is bad), truncates at the first bad
// one, and rebuilds
// its in-memory indexes. replay sees every valid batch header and its
// position (an error from it fails the open). A batch at or above limit
// (an interrupted TruncateTo's target) ends the segment too.
func (l *Log) openActive(base, interval, limit int64, replay func(*segment, *kafkaproto.BatchHeader, int64) error) (*segment, error) {
	f, err := l.openSegFile(base, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat segment %d: %w", base, err)
	}
	s := newSegment(base, f, interval)
	var replayErr error
	endPos, _, scanErr := scanBatches(f, 0, base, size, true, func(h *kafkaproto.BatchHeader, pos int64) error {
		if h.BaseOffset >= limit {
			return errStop
		}
		s.track(h.BaseOffset, h.LastOffset(), h.MaxTimestamp, pos, int64(h.Size()), interval)
		if err := replay(s, h, pos); err != nil {
			replayErr = err
			return errStop
		}
		return nil
	})
	if replayErr != nil {
		f.Close()
		return nil, fmt.Errorf("replay segment %d: %w", base, replayErr)
	}
	if endPos < size {
		ev := l.logger().Warn()
		if zeroTail(f, endPos, size) {
			ev = l.logger().Info() // blocks reserved ahead of the writes (prealloc.go)
		}
		ev.Err(scanErr).Int64("base", base).Int64("valid", endPos).Int64("size", size).Msg("truncating torn tail of active segment")
		if err := f.Truncate(endPos); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate segment %d at %d: %w", base, endPos, err)
		}
	}
	// What recovery found is what the log now acknowledges: make it durable.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync segment %d: %w", base, err)
	}
	if s.size > 0 {
		s.created = l.now()
	}
	return s, nil
}
