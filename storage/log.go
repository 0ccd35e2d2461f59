package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Errors of the storage engine; test with errors.Is.
var (
	ErrOffsetOutOfRange = errors.New("storage: offset out of range")
	ErrFenced           = errors.New("storage: log fenced after an I/O error")
	ErrClosed           = errors.New("storage: log closed")
	// ErrInvalidProducerEpoch and ErrOutOfOrderSequence are fencing's
	// errors, re-exported so callers need import only storage.
	ErrInvalidProducerEpoch = fencing.ErrInvalidProducerEpoch
	ErrOutOfOrderSequence   = fencing.ErrOutOfOrderSequence
)

const (
	defaultSegmentBytes  = 1 << 30
	defaultIndexInterval = 4096
)

// LogConfig is a partition log's per-topic configuration.
type LogConfig struct {
	SegmentBytes       int64 // roll when the active segment would exceed it; <= 0 → 1 GiB
	SegmentMs          int64 // roll when the active segment's first append is older; 0 = never
	RetentionBytes     int64 // -1 unlimited
	RetentionMs        int64 // -1 unlimited
	IndexIntervalBytes int   // 0 → 4096
	// Replicated switches the high watermark to replicated mode (see
	// AdvanceHighWatermark): it then also waits for the replication
	// layer. Honoured by OpenLog (the HW then starts at the log start
	// offset) and by SetConfig, so every SetConfig must carry it.
	Replicated bool
}

func (c LogConfig) segmentBytes() int64 {
	if c.SegmentBytes <= 0 {
		return defaultSegmentBytes
	}
	return min(c.SegmentBytes, maxSegmentBytes)
}

func (c LogConfig) indexInterval() int64 {
	if c.IndexIntervalBytes <= 0 {
		return defaultIndexInterval
	}
	return int64(c.IndexIntervalBytes)
}

// AppendResult is the outcome of Append.
type AppendResult struct {
	BaseOffset, LastOffset, LogStartOffset int64
	// Duplicate is set when the batch repeated one of its producer's last
	// five batches; the offsets are the original ones and nothing was
	// written.
	Duplicate bool
}

// ReadResult is the outcome of Read.
type ReadResult struct {
	Data []byte // whole batches (Read, and ReadSection's copying fallback)
	// Section holds the batches instead of Data when ReadSection can
	// serve them from the segment file; the caller closes it.
	Section                       *Section
	HighWatermark, LogStartOffset int64
	// LastStableOffset is the log's LSO when read (txn.go).
	LastStableOffset int64
	// NextOffset is the offset after the last batch returned (0 when
	// none is): what a consumer fetches next.
	NextOffset int64
}

// readBound is where a read's batches must end: below the high
// watermark (consumers), the log end offset (replica fetchers) or the
// last stable offset (read_committed consumers).
type readBound int

const (
	boundHW readBound = iota
	boundLEO
	boundLSO
)

// Log is one partition's log: an ordered chain of segments, the last of
// which (the active segment) takes appends. All methods are safe for
// concurrent use.
type Log struct {
	tp     TopicPartition
	dir    string
	fs     FS
	policy FsyncPolicy
	now    func() time.Time
	engine *Engine

	mu        sync.Mutex
	cfg       LogConfig
	segs      []*segment // ordered by base; never empty while open
	logStart  int64
	leo       int64 // log end offset: next offset to assign
	durable   int64 // offsets below are fdatasync'ed
	hw        int64 // offsets below are visible to consumers
	producers *fencing.ProducerStates
	fenceErr  error
	closed    bool
	// unsynced counts batches appended since the last fdatasync, for
	// the engine's batches-per-fsync statistic.
	unsynced int64
	// Waiters (waiters.go).
	durableWaiters offsetWaiters // WaitDurable: until durable > off
	hwWaiters      offsetWaiters // WaitHighWatermark: until hw > off
	hwNotify       notifySet     // AddWaiter

	// spare is a deleted segment's file kept for the next roll to
	// overwrite instead of creating a new file (recycle.go); nil if none.
	spare *spareFile

	// Replication (replica.go, epochs.go, truncate.go).
	replicated  bool
	replicaHW   int64      // replicated mode: the HW may not pass it
	hwOnDisk    int64      // the high-watermark checkpoint's value: hwNone, or hwUnknown unless opened replicated
	writerEpoch int32      // replicated mode: the epoch this node may append at (fencing.NoWriter: none)
	epochs      epochCache // leader epoch → start offset
	truncGen    uint64     // bumped by every TruncateTo

	// sections counts the log's open Sections: DeleteLog's deletion of
	// the directory waits for them (deleter.go).
	sections readerRefs

	// Rewrites (rewrite.go), guarded by mu: the pending rewrite, whose
	// files are pinned against removal, and the last committed
	// generation.
	rewrite  *Rewrite
	cleanGen int32

	// Drop-behind (dropbehind.go): the syncer's activity period in
	// which it last synced this log (used only by the syncer), and
	// whether a failed fadvise was logged.
	dropEpoch     uint64
	dropErrLogged atomic.Bool
}

// SetWriterEpoch records the leader epoch at which this node may append
// to the (replicated) log: the active segment's epoch while it leads it,
// fencing.NoWriter otherwise. Once the engine has a lease source every
// Append is checked against it and the lease (fencing.CheckAppend).
func (l *Log) SetWriterEpoch(epoch int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writerEpoch = epoch
}

// SetConfig replaces the log's configuration; it applies from the next
// append or retention pass.
func (l *Log) SetConfig(cfg LogConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.setReplicatedLocked(cfg.Replicated)
}

// Config returns the log's configuration.
func (l *Log) Config() LogConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// LogStartOffset is the first offset that may be read.
func (l *Log) LogStartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logStart
}

// LogEndOffset is the offset the next appended record gets.
func (l *Log) LogEndOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leo
}

// HighWatermark is the offset below which records are visible to consumers.
func (l *Log) HighWatermark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hw
}

// Size is the total size of the log's segment files in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// logger returns the engine's logger with the log's "tp" field. Built on
// each call (logging is rare): a logger kept per log holds a 500-byte
// context buffer, about a fifth of an idle log's heap (docs/io-and-scale.md,
// section 3).
func (l *Log) logger() *zerolog.Logger {
	lg := l.engine.log.With().Str("tp", l.tp.String()).Logger()
	return &lg
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// usableLocked reports why the log cannot take appends, if it cannot.
func (l *Log) usableLocked() error {
	if l.closed {
		return fmt.Errorf("storage: log %s: %w", l.tp, ErrClosed)
	}
	return l.fenceErr
}

// Append appends one validated batch b (exactly h.Size() bytes), rewriting
// its BaseOffset and PartitionLeaderEpoch in place. For an idempotent
// producer's batch that repeats one of its last five, it writes nothing and
// returns the original offsets with Duplicate set.
func (l *Log) Append(b []byte, h kafkaproto.BatchHeader, leaderEpoch int32) (AppendResult, error) {
	if len(b) != h.Size() || h.LastOffsetDelta < 0 || len(b) < kafkaproto.BatchHeaderSize {
		return AppendResult{}, fmt.Errorf("storage: append to %s: %d bytes, header says %d (last offset delta %d): %w",
			l.tp, len(b), h.Size(), h.LastOffsetDelta, kafkaproto.ErrCorruptBatch)
	}
	var marker txnMarker
	hasMarker := false
	if h.IsControl() {
		// A transaction marker (txn.go): decoded before the lock.
		var err error
		if marker, hasMarker, err = parseMarker(b, &h); err != nil {
			return AppendResult{}, fmt.Errorf("storage: append to %s: %w", l.tp, err)
		}
		if !hasMarker || h.ProducerID < 0 {
			return AppendResult{}, fmt.Errorf("storage: append to %s: control batch of producer %d with %d records: %w",
				l.tp, h.ProducerID, h.RecordCount, kafkaproto.ErrCorruptBatch)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return AppendResult{}, err
	}
	if lease := l.engine.lease.Load(); lease != nil && l.replicated {
		// Only the active segment's leader, holding a live lease,
		// appends at the active epoch (docs/architecture.md, "Write path",
		// step 3).
		if err := fencing.CheckAppend((*lease)(), l.writerEpoch, leaderEpoch, l.now()); err != nil {
			return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append to %s: %w", l.tp, err)
		}
	}
	if hasMarker {
		if err := l.producers.CheckMarker(h.ProducerID, h.ProducerEpoch, marker.coordinatorEpoch); err != nil {
			return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append marker to %s: producer %d epoch %d coordinator epoch %d: %w",
				l.tp, h.ProducerID, h.ProducerEpoch, marker.coordinatorEpoch, err)
		}
	}
	idempotent := h.ProducerID >= 0 && h.BaseSequence >= 0 && !hasMarker
	if idempotent {
		dup, err := l.producers.Check(h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.RecordCount)
		if err != nil {
			return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append to %s: producer %d epoch %d sequence %d: %w",
				l.tp, h.ProducerID, h.ProducerEpoch, h.BaseSequence, err)
		}
		if dup != nil {
			return AppendResult{BaseOffset: dup.FirstOffset, LastOffset: dup.LastOffset, LogStartOffset: l.logStart, Duplicate: true}, nil
		}
	}
	seg := l.active()
	var now time.Time
	if seg.size == 0 || l.cfg.SegmentMs > 0 {
		now = l.now()
	}
	if seg.size > 0 && (seg.size+int64(len(b)) > l.cfg.segmentBytes() ||
		(l.cfg.SegmentMs > 0 && now.Sub(seg.created) >= time.Duration(l.cfg.SegmentMs)*time.Millisecond)) {
		if err := l.rollLocked(); err != nil {
			return AppendResult{}, err
		}
		seg = l.active()
	}
	base := l.leo
	last := base + int64(h.LastOffsetDelta)
	kafkaproto.SetBaseOffset(b, base)
	kafkaproto.SetPartitionLeaderEpoch(b, leaderEpoch)
	pos := seg.size
	l.preallocLocked(seg, pos+int64(len(b)))
	n, err := seg.f.WriteAt(b, pos)
	if err == nil && n != len(b) {
		err = fmt.Errorf("wrote %d of %d bytes: %w", n, len(b), io.ErrShortWrite)
	}
	if err != nil && notWritten(err) {
		return AppendResult{LogStartOffset: l.logStart}, fmt.Errorf("storage: append to %s: segment %d: %w", l.tp, seg.base, err)
	}
	if err != nil {
		l.fenceLocked(fmt.Errorf("storage: append to %s: write segment %d at %d: %w", l.tp, seg.base, pos, err))
		return AppendResult{}, l.fenceErr
	}
	if seg.size == 0 {
		seg.created = now
	}
	seg.track(base, last, h.MaxTimestamp, pos, int64(len(b)), l.cfg.indexInterval())
	l.leo = last + 1
	l.unsynced++
	switch {
	case idempotent:
		l.producers.UpdateTxn(h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.RecordCount, base, last, h.MaxTimestamp, h.IsTransactional())
	case hasMarker:
		if e, aborted := applyMarker(l.producers, h.ProducerID, h.ProducerEpoch, marker, base, h.MaxTimestamp); aborted {
			l.trackAbortedLocked(e)
		}
	case h.ProducerID >= 0 && h.IsTransactional():
		l.producers.BeginTxn(h.ProducerID, h.ProducerEpoch, base)
	}
	if leaderEpoch > l.epochs.latest {
		l.epochs.assign(leaderEpoch, base)
	}
	l.engine.stats.appends.Add(1)
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
		// Replica fetchers read up to the LEO: wake their long polls.
		l.notifyHWLocked()
	}
	return AppendResult{BaseOffset: base, LastOffset: last, LogStartOffset: l.logStart}, nil
}

// rollLocked seals the active segment (fdatasync it, write its indexes and
// the producer snapshot) and starts a new one at the log end offset. Any
// failure fences the log.
func (l *Log) rollLocked() error {
	old := l.active()
	fail := func(what string, err error) error {
		l.fenceLocked(fmt.Errorf("storage: roll %s at %d: %s: %w", l.tp, l.leo, what, err))
		return l.fenceErr
	}
	if old.stale > old.size {
		// A recycled or preallocated file: cut what lies past the data
		// off before the segment is sealed (a sealed segment ends at its
		// file's end).
		if err := old.f.Truncate(old.size); err != nil {
			return fail(fmt.Sprintf("truncate segment %d at %d", old.base, old.size), err)
		}
	}
	old.stale = 0
	if err := old.f.Sync(); err != nil {
		return fail(fmt.Sprintf("sync segment %d", old.base), err)
	}
	l.engine.stats.synced(l.unsynced)
	l.unsynced = 0
	old.seal()
	if err := writeFileSync(l.fs, segName(l.dir, old.base, indexSuffix), encodeIndex(old.index)); err != nil {
		return fail("write index", err)
	}
	if err := writeFileSync(l.fs, segName(l.dir, old.base, timeIndexSuffix), encodeTimeIndex(old.timeIndex)); err != nil {
		return fail("write time index", err)
	}
	if err := writeFileSync(l.fs, segName(l.dir, old.base, txnIndexSuffix), encodeTxnIndex(old.aborted)); err != nil {
		return fail("write transaction index", err)
	}
	if err := writeFileSync(l.fs, segName(l.dir, l.leo, snapshotSuffix), encodeSnapshot(l.producers.Entries())); err != nil {
		return fail("write producer snapshot", err)
	}
	// Made durable by the directory sync below (see doc.go).
	if err := writeEpochCheckpoint(l.fs, l.dir, l.epochs.entries, l.leo); err != nil {
		return fail("write leader epoch checkpoint", err)
	}
	f, stale, err := l.newActiveFileLocked(l.leo)
	if err != nil {
		return fail("create segment", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return fail("sync dir", err)
	}
	seg := newSegment(l.leo, f, l.cfg.indexInterval())
	seg.stale = stale
	seg.dropOn = true
	l.segs = append(l.segs, seg)
	// Every segment before the new one is synced.
	l.advanceDurableLocked(l.leo)
	l.logger().Debug().Str("tp", l.tp.String()).Int64("base", l.leo).Bool("recycled", stale > 0).Msg("rolled segment")
	// Retention by size is checked at each roll too, not only by the
	// periodic pass: the segment it drops becomes the spare file the next
	// roll recycles. (retention.ms stays with the periodic pass.)
	if l.cfg.RetentionBytes >= 0 {
		l.retainLocked(l.now(), false)
	}
	return nil
}

// hwOnDisk's values that are not offsets.
const (
	hwNone    = -1 // no checkpoint: an open starts the HW at the log start
	hwUnknown = -2 // not read (the log was not opened replicated)
)

// hwCheckpointStale reports whether the next open would read another high
// watermark than l.hw from the checkpoint on disk. l.mu is held.
func (l *Log) hwCheckpointStale() bool {
	switch l.hwOnDisk {
	case hwUnknown:
		return true
	case hwNone:
		return l.hw != l.logStart
	}
	return l.hw != l.hwOnDisk
}

// fenceLocked stops the log after an I/O error: no more appends, no more
// durability or high-watermark advances, and every waiter gets the error.
func (l *Log) fenceLocked(cause error) {
	if l.fenceErr != nil {
		return
	}
	l.fenceErr = fmt.Errorf("%w: %w", ErrFenced, cause)
	l.logger().Error().Err(cause).Str("tp", l.tp.String()).Int64("durable", l.durable).Int64("leo", l.leo).Msg("log fenced after I/O error")
	l.durableWaiters.failAll(l.fenceErr)
	l.hwWaiters.failAll(l.fenceErr)
	l.notifyHWLocked()
}

func (l *Log) advanceDurableLocked(off int64) {
	if l.fenceErr != nil || off <= l.durable {
		return
	}
	l.durable = off
	l.durableWaiters.release(off)
	if l.policy == FsyncAlways {
		l.advanceHWLocked(off)
	}
}

func (l *Log) advanceHWLocked(off int64) {
	if l.replicated && off > l.replicaHW {
		off = l.replicaHW
	}
	if l.fenceErr != nil || off <= l.hw {
		return
	}
	l.hw = off
	l.notifyHWLocked()
	l.hwWaiters.release(off)
}

// WaitDurable blocks until every offset up to and including lastOffset is
// durable per the fsync policy: with FsyncAlways, fdatasync'ed by the group
// commit; with FsyncInterval and FsyncNever it returns at once. It returns
// the fence error if a write or sync failed first, ctx.Err() on
// cancellation.
func (l *Log) WaitDurable(ctx context.Context, lastOffset int64) error {
	return l.waitOffset(ctx, &l.durableWaiters, lastOffset, func() (bool, error) { return l.durableLocked(lastOffset) })
}

// Durable is WaitDurable without blocking: done reports whether
// WaitDurable(ctx, lastOffset) would return at once, and err is what it
// would return.
func (l *Log) Durable(lastOffset int64) (done bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableLocked(lastOffset)
}

// durableLocked is the non-blocking part of WaitDurable.
func (l *Log) durableLocked(lastOffset int64) (bool, error) {
	switch {
	case l.policy == FsyncAlways && lastOffset < l.durable, l.policy != FsyncAlways && lastOffset < l.hw:
		return true, nil
	case l.fenceErr != nil:
		return true, l.fenceErr
	case l.closed:
		return true, fmt.Errorf("storage: log %s: %w", l.tp, ErrClosed)
	case l.policy != FsyncAlways:
		return true, nil
	}
	return false, nil
}

// syncTicket is one log's part in a group commit: its active segment
// (pinned open) and the log end offset the sync will cover.
type syncTicket struct {
	l       *Log
	seg     *segment
	target  int64
	pos     int64  // seg's size when the sync began: the durable end in it
	batches int64  // appended batches the sync covers (stats)
	gen     uint64 // l.truncGen when the sync began
}

// beginSync pins the active segment for an fdatasync covering everything
// appended so far; ok is false when there is nothing to sync. The caller
// syncs t.seg.f and then calls endSync.
func (l *Log) beginSync() (t syncTicket, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fenceErr != nil || l.leo <= l.durable {
		return syncTicket{}, false
	}
	seg, batches := l.active(), l.unsynced
	l.unsynced = 0
	seg.closeMu.RLock()
	return syncTicket{l: l, seg: seg, target: l.leo, pos: seg.size, batches: batches, gen: l.truncGen}, true
}

// endSync unpins the segment and, if the sync succeeded, advances the
// durable offset (and, for FsyncAlways, the HW); a failed sync fences.
func (l *Log) endSync(t syncTicket, err error) {
	t.seg.closeMu.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil && notWritten(err) {
		// The closed file could not be reopened (out of descriptors):
		// nothing was synced and nothing failed. The next group commit
		// retries, shortly, instead of fencing the log on it.
		l.unsynced += t.batches
		time.AfterFunc(reopenRetry, func() { l.engine.markDirty(l, true) })
		return
	}
	if err != nil {
		l.fenceLocked(fmt.Errorf("storage: sync %s segment %d: %w", l.tp, t.seg.base, err))
		return
	}
	l.engine.stats.synced(t.batches)
	if t.gen != l.truncGen {
		// A TruncateTo ran meanwhile: it synced what it kept, and the
		// offsets above it may now hold newer, unsynced batches.
		return
	}
	l.advanceDurableLocked(t.target)
}

// reopenRetry is how soon group commit tries again to sync a log whose
// closed segment file it could not reopen.
const reopenRetry = 50 * time.Millisecond

// openSegFile opens the segment file at base through the engine's I/O
// backend and file pool: its descriptor may be closed while unused and
// reopened by the next operation (fdpool.go).
func (l *Log) openSegFile(base int64, flag int) (File, error) {
	return l.engine.files.open(segName(l.dir, base, logSuffix), flag, false)
}

// segmentForLocked returns the segment holding offset (logStart <= offset < leo).
func (l *Log) segmentForLocked(offset int64) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
	if i < 0 {
		i = 0
	}
	for i+1 < len(l.segs) && offset >= l.segs[i].next {
		i++
	}
	return l.segs[i]
}

// lookupBatch returns the position and base offset of an indexed batch at
// or before offset in s. The owning log's mu must be held.
func (s *segment) lookupBatch(offset int64) (pos, at int64) {
	pos = s.lookup(offset)
	if pos == 0 {
		return 0, s.base
	}
	rel := offset - s.base
	i := sort.Search(len(s.index), func(i int) bool { return int64(s.index[i].rel) > rel })
	return pos, s.base + int64(s.index[i-1].rel)
}

// Read returns whole batches starting with the one containing offset, all
// below the high watermark and from one segment, at most maxBytes unless
// minOneBatch and the first batch alone is bigger. An offset below the log
// start or above the log end is ErrOffsetOutOfRange; an offset in
// [HW, LEO] yields no data.
func (l *Log) Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return l.read(offset, maxBytes, minOneBatch, boundHW)
}

func (l *Log) read(offset int64, maxBytes int, minOneBatch bool, bound readBound) (ReadResult, error) {
	loc, res, err := l.locate(offset, maxBytes, minOneBatch, bound)
	if err != nil || loc.seg == nil {
		return res, err
	}
	defer loc.seg.closeMu.RUnlock()
	buf := make([]byte, loc.n)
	if _, err := loc.seg.f.ReadAt(buf, loc.pos); err != nil {
		return res, fmt.Errorf("storage: read %s segment %d at %d: %w", l.tp, loc.seg.base, loc.pos, err)
	}
	res.Data = buf
	return res, nil
}

// readLoc is where the batches a read returns lie: n > 0 bytes at pos of
// seg, whose closeMu the reader holds shared; next is the offset after
// the last of them.
type readLoc struct {
	seg          *segment
	pos, n, next int64
}

// locate finds the bytes Read would return. When it returns a segment, its
// closeMu is held shared and the caller must release it; a nil segment
// means no data (res holds the offsets either way). Batches end below the
// high watermark, or below bound's offset.
func (l *Log) locate(offset int64, maxBytes int, minOneBatch bool, bound readBound) (readLoc, ReadResult, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return readLoc{}, ReadResult{}, fmt.Errorf("storage: read %s: %w", l.tp, ErrClosed)
	}
	res := ReadResult{HighWatermark: l.hw, LogStartOffset: l.logStart, LastStableOffset: l.lsoLocked()}
	if offset < l.logStart || offset > l.leo {
		err := fmt.Errorf("storage: read %s at %d, log spans [%d, %d]: %w", l.tp, offset, l.logStart, l.leo, ErrOffsetOutOfRange)
		l.mu.Unlock()
		return readLoc{}, res, err
	}
	hw := l.hw
	switch bound {
	case boundLEO:
		hw = l.leo
	case boundLSO:
		hw = res.LastStableOffset
	}
	if offset >= hw || (maxBytes <= 0 && !minOneBatch) {
		l.mu.Unlock()
		return readLoc{}, res, nil
	}
	seg := l.segmentForLocked(offset)
	pos, at := seg.lookupBatch(offset)
	size := seg.size
	// Entries below len(index) never change; appends go past it, and
	// TruncateTo replaces the slice.
	index := seg.index
	seg.closeMu.RLock()
	l.mu.Unlock()
	if seg.closed {
		// Deleted by retention meanwhile: the next fetch sees the new
		// log start offset.
		seg.closeMu.RUnlock()
		return readLoc{}, res, nil
	}
	loc, err := seg.span(index, offset, pos, at, size, hw, int64(maxBytes), minOneBatch)
	if err != nil || loc.seg == nil {
		seg.closeMu.RUnlock()
		if err != nil {
			err = fmt.Errorf("storage: read %s segment %d: %w", l.tp, seg.base, err)
		}
		return readLoc{}, res, err
	}
	res.NextOffset = loc.next
	return loc, res, nil
}

// span finds, in s (whose closeMu the caller holds shared), the whole
// batches from the one containing offset, scanning from the batch at pos
// (base offset at), that end within want bytes (or the first batch alone,
// if minOneBatch), within size and below hw.
func (s *segment) span(index []indexEntry, offset, pos, at, size, hw, want int64, minOneBatch bool) (readLoc, error) {
	var first kafkaproto.BatchHeader
	found := false
	pos, _, err := scanBatches(s.f, pos, at, size, false, func(h *kafkaproto.BatchHeader, _ int64) error {
		if h.LastOffset() >= offset {
			first, found = *h, true
			return errStop
		}
		return nil
	})
	if err != nil {
		return readLoc{}, err
	}
	if !found || first.BaseOffset >= hw {
		return readLoc{}, nil
	}
	if fs := int64(first.Size()); fs > want {
		if !minOneBatch {
			return readLoc{}, nil
		}
		want = fs
	}
	limit := min(size, pos+want)
	// Start the scan for the last batch that fits at the last index entry
	// inside [pos, limit] below hw, so it reads few headers.
	from, next := pos, first.BaseOffset
	i := sort.Search(len(index), func(i int) bool {
		return int64(index[i].pos) > limit || s.base+int64(index[i].rel) >= hw
	}) - 1
	if i >= 0 && int64(index[i].pos) > pos {
		from, next = int64(index[i].pos), s.base+int64(index[i].rel)
	}
	end, after := from, next // after: the offset after the batches below end
	if _, _, err := scanBatches(s.f, from, next, size, false, func(h *kafkaproto.BatchHeader, p int64) error {
		if h.BaseOffset >= hw || p+int64(h.Size()) > limit {
			return errStop
		}
		end, after = p+int64(h.Size()), h.LastOffset()+1
		return nil
	}); err != nil {
		return readLoc{}, err
	}
	return readLoc{seg: s, pos: pos, n: end - pos, next: after}, nil
}

// segView is a consistent copy of a segment's bounds taken under l.mu.
type segView struct {
	s           *segment
	size, next  int64
	maxTs       int64
	maxTsOffset int64
}

func (l *Log) views() ([]segView, int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, 0, fmt.Errorf("storage: log %s: %w", l.tp, ErrClosed)
	}
	v := make([]segView, len(l.segs))
	for i, s := range l.segs {
		v[i] = segView{s: s, size: s.size, next: s.next, maxTs: s.maxTs, maxTsOffset: s.maxTsOffset}
	}
	return v, l.hw, l.logStart, nil
}

// withSegment runs fn with the segment's file pinned open; ok is false when
// the segment was deleted meanwhile.
func withSegment(s *segment, fn func() error) (ok bool, err error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return false, nil
	}
	return true, fn()
}

// readBatch reads the complete batch at pos.
func readBatch(f File, pos int64, h *kafkaproto.BatchHeader) ([]byte, error) {
	b := make([]byte, h.Size())
	if _, err := f.ReadAt(b, pos); err != nil {
		return nil, err
	}
	return b, nil
}

// OffsetForTimestamp finds the first record below the high watermark (and
// at or above the log start) whose timestamp is >= ts.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	views, hw, logStart, err := l.views()
	if err != nil {
		return -1, -1, false, err
	}
	for _, v := range views {
		if v.maxTs < ts || v.next <= logStart {
			continue
		}
		if v.s.base >= hw {
			break
		}
		done := false
		// Lock order is l.mu before closeMu: look up before pinning.
		l.mu.Lock()
		pos, at := v.s.lookupBatch(v.s.timeLookup(ts))
		l.mu.Unlock()
		ok, err := withSegment(v.s, func() error {
			_, _, err := scanBatches(v.s.f, pos, at, v.size, false, func(h *kafkaproto.BatchHeader, p int64) error {
				if h.BaseOffset >= hw {
					done = true
					return errStop
				}
				if h.MaxTimestamp < ts || h.LastOffset() < logStart {
					return nil
				}
				b, err := readBatch(v.s.f, p, h)
				if err != nil {
					return err
				}
				offs, tss, err := recordTimestamps(b)
				if err != nil {
					return err
				}
				for i := range offs {
					if tss[i] >= ts && offs[i] >= logStart && offs[i] < hw {
						offset, timestamp, found, done = offs[i], tss[i], true, true
						return errStop
					}
				}
				return nil
			})
			return err
		})
		if err != nil {
			return -1, -1, false, fmt.Errorf("storage: offset for timestamp %d in %s segment %d: %w", ts, l.tp, v.s.base, err)
		}
		if ok && done {
			break
		}
	}
	if !found {
		return -1, -1, false, nil
	}
	return offset, timestamp, true, nil
}

// MaxTimestamp finds the record with the largest timestamp below the high
// watermark (the first such); -1, -1, false when there is none. It goes by
// batch headers' MaxTimestamp, so after a cleaning the timestamp may be
// that of a removed record, at its batch's last offset (as Kafka).
func (l *Log) MaxTimestamp() (offset, timestamp int64, found bool, err error) {
	views, hw, _, err := l.views()
	if err != nil {
		return -1, -1, false, err
	}
	var best *segView
	bestTs, bestBatch := int64(-1), int64(-1)
	for i := range views {
		v := &views[i]
		if v.s.base >= hw {
			break
		}
		ts, at := v.maxTs, v.maxTsOffset
		if at >= hw || v.next > hw {
			// The segment's maximum may lie above the HW: rescan below it.
			ts, at = -1, -1
			_, err := withSegment(v.s, func() error {
				_, _, err := scanBatches(v.s.f, 0, v.s.base, v.size, false, func(h *kafkaproto.BatchHeader, _ int64) error {
					if h.BaseOffset >= hw {
						return errStop
					}
					if h.MaxTimestamp > ts {
						ts, at = h.MaxTimestamp, h.BaseOffset
					}
					return nil
				})
				return err
			})
			if err != nil {
				return -1, -1, false, fmt.Errorf("storage: max timestamp of %s segment %d: %w", l.tp, v.s.base, err)
			}
		}
		if at >= 0 && ts > bestTs {
			best, bestTs, bestBatch = v, ts, at
		}
	}
	if best == nil {
		return -1, -1, false, nil
	}
	offset, timestamp = bestBatch, bestTs
	l.mu.Lock()
	pos, at := best.s.lookupBatch(bestBatch)
	l.mu.Unlock()
	_, err = withSegment(best.s, func() error {
		_, _, err := scanBatches(best.s.f, pos, at, best.size, false, func(h *kafkaproto.BatchHeader, p int64) error {
			if h.BaseOffset < bestBatch {
				return nil
			}
			// A cleaned batch keeps its MaxTimestamp but may no longer
			// hold the record that set it, or any record: then the
			// answer is the batch's last offset, as Kafka's.
			offset = h.LastOffset()
			b, err := readBatch(best.s.f, p, h)
			if err != nil {
				return err
			}
			offs, tss, err := recordTimestamps(b)
			if err != nil {
				return err
			}
			for i := range offs {
				if tss[i] == bestTs {
					offset = offs[i]
					break
				}
			}
			return errStop
		})
		return err
	})
	if err != nil {
		return -1, -1, false, fmt.Errorf("storage: max timestamp of %s: %w", l.tp, err)
	}
	return offset, timestamp, true, nil
}

// DeleteRecordsBefore advances the log start offset to offset (-1 means the
// high watermark), persists it, and deletes the segments wholly below it.
// It returns the new log start offset.
func (l *Log) DeleteRecordsBefore(offset int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return -1, fmt.Errorf("storage: delete records of %s: %w", l.tp, ErrClosed)
	}
	if offset == -1 {
		offset = l.hw
	}
	if offset < 0 || offset > l.hw {
		return l.logStart, fmt.Errorf("storage: delete records of %s before %d, high watermark %d: %w", l.tp, offset, l.hw, ErrOffsetOutOfRange)
	}
	if offset <= l.logStart {
		return l.logStart, nil
	}
	if err := writeLogStart(l.fs, l.dir, offset); err != nil {
		return l.logStart, fmt.Errorf("storage: persist log start %d of %s: %w", offset, l.tp, err)
	}
	l.logStart = offset
	l.notifyHWLocked() // a follower's fetch carries the new log start
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	l.removeFrontLocked(n)
	return l.logStart, nil
}

// retain applies retention at now: roll an aged active segment, then delete
// the oldest sealed segments that are past retention.ms or whose removal
// keeps the log at or above retention.bytes.
func (l *Log) retain(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fenceErr != nil {
		return
	}
	if sp := l.spare; sp != nil && now.Sub(sp.since) >= l.engine.opts.RetentionCheckInterval {
		// Not reused by a roll within a retention interval: the log
		// is quiet, so give the space back.
		l.spare = nil
		l.engine.reclaim(sp.path, sp.size, nil)
	}
	cfg := l.cfg
	if act := l.active(); cfg.SegmentMs > 0 && act.size > 0 && now.Sub(act.created) >= time.Duration(cfg.SegmentMs)*time.Millisecond {
		if err := l.rollLocked(); err != nil {
			return
		}
	}
	l.retainLocked(now, true)
}

// retainLocked drops the sealed segments below the high watermark that
// retention.bytes, and if byTime retention.ms, no longer keep.
func (l *Log) retainLocked(now time.Time, byTime bool) {
	if l.rewrite != nil {
		// The oldest files are pinned by a pending rewrite; retention
		// resumes once it commits or aborts.
		return
	}
	cfg := l.cfg
	// Only sealed segments the high watermark has passed: above it,
	// followers may still need the records (a leader that deleted them
	// would strand its followers below its log start), as in Kafka.
	sealed := len(l.segs) - 1
	for sealed > 0 && l.segs[sealed-1].next > l.hw {
		sealed--
	}
	n := 0
	if byTime && cfg.RetentionMs >= 0 {
		limit := now.UnixMilli() - cfg.RetentionMs
		for n < sealed && l.segs[n].maxTs >= 0 && l.segs[n].maxTs < limit {
			n++
		}
	}
	if cfg.RetentionBytes >= 0 {
		var excess int64
		for _, s := range l.segs {
			excess += s.size
		}
		excess -= cfg.RetentionBytes
		for _, s := range l.segs[:n] {
			excess -= s.size
		}
		for n < sealed && l.segs[n].size <= excess {
			excess -= l.segs[n].size
			n++
		}
	}
	if n == 0 {
		return
	}
	if start := l.segs[n].base; start > l.logStart {
		if err := writeLogStart(l.fs, l.dir, start); err != nil {
			l.logger().Error().Err(err).Str("tp", l.tp.String()).Msg("retention: persist log start offset")
			return
		}
		l.logStart = start
		l.notifyHWLocked() // a follower's fetch carries the new log start
	}
	l.logger().Info().Str("tp", l.tp.String()).Int("segments", n).Int64("log_start", l.logStart).Msg("retention deleted segments")
	l.removeFrontLocked(n)
}

// removeFrontLocked closes and deletes the first n segments (never the
// active one). The log start offset must already be persisted past them.
// Their files are renamed to *.deleted names and, once the renames are
// durable, handed to the engine's deleter, which frees them at the delete
// rate after their last Section is closed.
func (l *Log) removeFrontLocked(n int) {
	if n <= 0 || l.rewrite != nil {
		// A pending rewrite pins the oldest files: its Commit or Abort
		// removes what is then below the log start.
		return
	}
	gone := l.segs[:n]
	l.segs = append([]*segment(nil), l.segs[n:]...)
	l.epochs.trimFront(l.logStart)
	type tomb struct {
		path    string
		size    int64
		readers <-chan struct{}
	}
	tombs := make([]tomb, 0, len(gone))
	for _, s := range gone {
		s.closeFile()
		path, size, err := l.tombstoneSegment(s.base)
		if err != nil {
			// Left under its name below the log start: the next
			// recovery drops it.
			l.logger().Warn().Err(err).Str("tp", l.tp.String()).Int64("base", s.base).Msg("delete segment")
			continue
		}
		if path != "" {
			tombs = append(tombs, tomb{path, size, s.sections.whenIdle()})
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		// The renames may not be durable: shrinking the files now could
		// leave a half-visible segment after a crash. The next Open
		// queues the *.deleted files.
		l.logger().Warn().Err(err).Str("tp", l.tp.String()).Msg("sync dir after segment delete")
		return
	}
	for _, t := range tombs {
		if l.spare == nil && t.readers == nil && l.engine.opts.RecycleSegments && t.size >= minRecycleBytes {
			// Kept for the next roll to overwrite (recycle.go).
			l.spare = &spareFile{path: t.path, size: t.size, since: l.now()}
			continue
		}
		l.engine.reclaim(t.path, t.size, t.readers)
	}
}

// closeFile closes the segment's file once no reader uses it.
func (s *segment) closeFile() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}

// close syncs (unless fenced or sync is false) and closes the log; pending
// waiters are answered.
func (l *Log) close(sync bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var errs []error
	if act := l.active(); sync && l.fenceErr == nil && act.stale > act.size {
		// Recovery would cut a recycled file's old bytes (or the
		// preallocated zeros) off too, as a torn tail.
		if err := act.f.Truncate(act.size); err != nil {
			l.fenceLocked(fmt.Errorf("storage: close %s: truncate segment %d at %d: %w", l.tp, act.base, act.size, err))
			errs = append(errs, l.fenceErr)
		} else {
			act.stale = 0
			if l.leo == l.durable { // else the sync below covers the cut
				if err := act.f.Sync(); err != nil {
					l.fenceLocked(fmt.Errorf("storage: close %s: sync segment %d: %w", l.tp, act.base, err))
					errs = append(errs, l.fenceErr)
				}
			}
		}
	}
	if sync && l.fenceErr == nil && l.leo > l.durable {
		act := l.active()
		if err := act.f.Sync(); err != nil {
			l.fenceLocked(fmt.Errorf("storage: close %s: sync segment %d: %w", l.tp, act.base, err))
			errs = append(errs, l.fenceErr)
		} else {
			l.advanceDurableLocked(l.leo)
		}
	}
	if sync && l.replicated && l.fenceErr == nil && l.hwCheckpointStale() {
		// The next open starts from this high watermark, not from the
		// log start (consumers would see the log shrink until the
		// followers fetched again). Skipped when the next open would
		// read the same value (an idle replica's close costs no fsync):
		// the checkpoint already holds it, or there is none and the HW
		// is the log start, where the open starts without one.
		if err := writeOffsetFile(l.fs, l.dir, hwFile, hwMagic, l.hw); err != nil {
			errs = append(errs, fmt.Errorf("storage: close %s: write high-watermark checkpoint: %w", l.tp, err))
		} else {
			l.hwOnDisk = l.hw
		}
	}
	l.closed = true
	closedErr := fmt.Errorf("storage: log %s: %w", l.tp, ErrClosed)
	l.durableWaiters.failAll(closedErr)
	l.hwWaiters.failAll(closedErr)
	l.notifyHWLocked()
	for _, s := range l.segs {
		if err := s.closeFile(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close %s segment %d: %w", l.tp, s.base, err))
		}
	}
	return errors.Join(errs...)
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
