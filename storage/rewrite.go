package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Rewriting a range of the log with cleaned batches (docs/compaction.md,
// "Storage: rewriting a range"; on-disk steps in doc.go).

// ErrRewritePending: a rewrite is already pending on the log, or a
// TruncateTo would cut into the range a pending rewrite covers.
var ErrRewritePending = errors.New("storage: rewrite pending")

const (
	cleanedSuffix = ".cleaned"
	swapFile      = "clean-swap"
	swapMagic     = "TSKW"
	swapVersion   = 1
	genFile       = "clean-generation"
	genMagic      = "TSKG"
)

// Rewrite replaces the log's batches below upTo by cleaned ones. It is
// used by one goroutine: BeginRewrite, Input (any number of times), Write
// (in offset order), Prepare, then Commit or Abort.
type Rewrite struct {
	l    *Log
	upTo int64
	// covered are the log's files with a base below upTo when the
	// rewrite began, all sealed, pinned against removal (l.rewrite).
	covered   []*segment
	lastSize  int64 // covered[len-1].size at the start
	segBytes  int64
	interval  int64
	from      int64
	wrote     bool  // a batch was written: from is fixed
	last      int64 // last offset written
	outs      []*segment
	split     *segment // the part of covered[len-1] at and above upTo, nil if none
	prepared  bool
	finished  bool  // committed or aborted
	outFailed error // a failed output write: the rewrite can only abort
	// producers replays the output as recovery would (from an empty
	// state at the output's start), so each output file's
	// aborted-transaction index is the one recovery builds from it.
	producers *fencing.ProducerStates
}

// BeginRewrite prepares to replace the log's batches in
// [LogStartOffset, upTo) by cleaned ones. If upTo lies inside the
// active file, the log rolls its file first, so the rewritten files are
// all sealed locally. The files it covers are pinned against retention,
// DeleteRecords' file removal and recycling until Commit or Abort (the
// log start offset may still move). One rewrite at a time
// (ErrRewritePending).
func (l *Log) BeginRewrite(upTo int64) (*Rewrite, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return nil, fmt.Errorf("storage: begin rewrite of %s: %w", l.tp, err)
	}
	if l.rewrite != nil {
		return nil, fmt.Errorf("storage: begin rewrite of %s below %d: %w", l.tp, upTo, ErrRewritePending)
	}
	if upTo <= l.logStart || upTo > l.leo {
		return nil, fmt.Errorf("storage: begin rewrite of %s below %d, log spans [%d, %d]: %w", l.tp, upTo, l.logStart, l.leo, ErrOffsetOutOfRange)
	}
	if act := l.active(); upTo > act.base {
		if err := l.rollLocked(); err != nil {
			return nil, fmt.Errorf("storage: begin rewrite of %s below %d: %w", l.tp, upTo, err)
		}
	}
	k := 0
	for k < len(l.segs)-1 && l.segs[k].base < upTo {
		k++
	}
	if k == 0 || upTo <= l.logStart {
		// The roll applied retention (retention.bytes is checked at each
		// roll) and nothing below upTo is left.
		return nil, fmt.Errorf("storage: begin rewrite of %s below %d, log starts at %d after its roll: %w", l.tp, upTo, l.logStart, ErrOffsetOutOfRange)
	}
	r := &Rewrite{
		l: l, upTo: upTo, covered: slices.Clone(l.segs[:k]),
		segBytes: l.cfg.segmentBytes(), interval: l.cfg.indexInterval(),
		from: l.logStart, last: -1, producers: fencing.NewProducerStates(),
	}
	r.lastSize = r.covered[k-1].size
	l.rewrite = r
	return r, nil
}

// Input calls fn with every stored batch in [from, upTo), in order,
// whole, CRC-verified; a batch straddling from is included. from is also
// where the output starts (see Write); it cannot change once a batch was
// written.
func (r *Rewrite) Input(from int64, fn func(batch []byte, h kafkaproto.BatchHeader) error) error {
	l := r.l
	if r.finished || r.prepared {
		return fmt.Errorf("storage: rewrite input of %s: rewrite prepared or finished", l.tp)
	}
	if from >= r.upTo || (r.wrote && from != r.from) {
		return fmt.Errorf("storage: rewrite input of %s from %d (up to %d, output from %d): %w", l.tp, from, r.upTo, r.from, ErrOffsetOutOfRange)
	}
	r.from = from
	type part struct {
		s             *segment
		pos, at, size int64
	}
	var parts []part
	l.mu.Lock()
	for _, s := range r.covered {
		if s.next <= from {
			continue
		}
		pos, at := s.lookupBatch(max(from, s.base))
		parts = append(parts, part{s, pos, at, s.size})
	}
	l.mu.Unlock()
	for _, p := range parts {
		ok, err := withSegment(p.s, func() error {
			_, _, err := scanBatches(p.s.f, p.pos, p.at, p.size, false, func(h *kafkaproto.BatchHeader, pos int64) error {
				if h.LastOffset() < from {
					return nil
				}
				if h.BaseOffset >= r.upTo {
					return errStop
				}
				b := make([]byte, h.Size())
				if _, err := p.s.f.ReadAt(b, pos); err != nil {
					return fmt.Errorf("read batch at %d: %w", pos, err)
				}
				if err := kafkaproto.VerifyCRC(b, h); err != nil {
					return fmt.Errorf("batch %d at %d: %w", h.BaseOffset, pos, err)
				}
				return fn(b, *h)
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("storage: rewrite input of %s segment %d: %w", l.tp, p.s.base, err)
		}
		if !ok {
			return fmt.Errorf("storage: rewrite input of %s segment %d: %w", l.tp, p.s.base, ErrClosed)
		}
	}
	return nil
}

// Write appends one output batch (strictly increasing offsets, its last
// offset ≥ from and < upTo; record count 0 to its offset range) to new
// files written beside the old ones under temporary names (*.cleaned),
// with their indexes; nothing is visible yet. The first output file is
// based at from (or at the first batch's base if that batch straddles
// from), and each further one, rolled at the log's segment.bytes, at the
// offset after the previous file's last batch, so the files cover the
// range contiguously.
func (r *Rewrite) Write(batch []byte) error {
	l := r.l
	if r.finished || r.prepared || r.outFailed != nil {
		return fmt.Errorf("storage: rewrite output of %s: rewrite prepared, finished or failed", l.tp)
	}
	h, err := validateStoredBatch(batch)
	if err != nil {
		return fmt.Errorf("storage: rewrite output of %s: %w", l.tp, err)
	}
	if h.LastOffset() < r.from || h.LastOffset() >= r.upTo || h.BaseOffset <= r.last {
		return fmt.Errorf("storage: rewrite output of %s: batch [%d, %d] outside [%d, %d) or not after %d: %w",
			l.tp, h.BaseOffset, h.LastOffset(), r.from, r.upTo, r.last, ErrOffsetMismatch)
	}
	var cur *segment
	if n := len(r.outs); n > 0 {
		cur = r.outs[n-1]
	}
	if cur == nil || (cur.size > 0 && cur.size+int64(len(batch)) > r.segBytes) {
		base := r.last + 1
		if cur == nil {
			base = min(r.from, h.BaseOffset)
		} else {
			cur.seal()
		}
		f, err := r.createOutput(base)
		if err != nil {
			return err
		}
		cur = newSegment(base, f, r.interval)
		r.outs = append(r.outs, cur)
	}
	n, err := cur.f.WriteAt(batch, cur.size)
	if err == nil && n != len(batch) {
		err = io.ErrShortWrite
	}
	if err != nil {
		r.outFailed = fmt.Errorf("storage: rewrite output of %s: write %d at %d: %w", l.tp, cur.base, cur.size, err)
		return r.outFailed
	}
	cur.track(h.BaseOffset, h.LastOffset(), h.MaxTimestamp, cur.size, int64(len(batch)), r.interval)
	r.last, r.wrote = h.LastOffset(), true
	if e, aborted, err := replayBatch(r.producers, &h, func() ([]byte, error) { return batch, nil }); err != nil {
		r.outFailed = fmt.Errorf("storage: rewrite output of %s: batch %d: %w", l.tp, h.BaseOffset, err)
		return r.outFailed
	} else if aborted {
		cur.aborted = append(cur.aborted, e)
	}
	return nil
}

// createOutput creates the output file <base>.log.cleaned.
func (r *Rewrite) createOutput(base int64) (File, error) {
	l := r.l
	// Held open (fixed) until Commit renames it into place: the pool
	// reopens files by name (fdpool.go).
	f, err := l.engine.files.open(segName(l.dir, base, logSuffix+cleanedSuffix), os.O_RDWR|os.O_CREATE|os.O_TRUNC, true)
	if err != nil {
		r.outFailed = fmt.Errorf("storage: rewrite output of %s: create file %d: %w", l.tp, base, err)
		return nil, r.outFailed
	}
	return f, nil
}

// Prepare fsyncs the output files. After it the rewrite can wait
// (for the Raft commit) without holding anything but its pins. The output
// must end at upTo - 1 (a cleaning keeps each chain segment's last batch),
// so that every file's last batch ends just before the next file's base.
// A covered file that straddles upTo is split here: its batches at and
// above upTo are copied to a new file based at upTo.
func (r *Rewrite) Prepare() error {
	l := r.l
	if r.outFailed != nil {
		return r.outFailed
	}
	if r.finished {
		return fmt.Errorf("storage: prepare rewrite of %s: rewrite finished", l.tp)
	}
	if r.prepared {
		return nil
	}
	if r.wrote && r.last != r.upTo-1 {
		return fmt.Errorf("storage: prepare rewrite of %s: output ends at %d, not at %d: %w", l.tp, r.last, r.upTo-1, ErrNotBatchBoundary)
	}
	if err := r.prepareFiles(); err != nil {
		// Half-prepared output: the rewrite can only abort.
		r.outFailed = fmt.Errorf("storage: prepare rewrite of %s: %w", l.tp, err)
		return r.outFailed
	}
	r.prepared = true
	return nil
}

// prepareFiles splits the file straddling upTo and makes every output
// file and its indexes durable (the aborted-transaction index included:
// each output file's own, built as Write replays it; the split part's
// carried from the file it leaves, whose bytes it keeps).
func (r *Rewrite) prepareFiles() error {
	l := r.l
	if err := r.prepareSplit(); err != nil {
		return err
	}
	files := slices.Clone(r.outs)
	if r.split != nil {
		files = append(files, r.split)
	}
	for _, s := range files {
		s.seal()
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("sync output %d: %w", s.base, err)
		}
		if err := writeFileSync(l.fs, segName(l.dir, s.base, indexSuffix+cleanedSuffix), encodeIndex(s.index)); err != nil {
			return err
		}
		if err := writeFileSync(l.fs, segName(l.dir, s.base, timeIndexSuffix+cleanedSuffix), encodeTimeIndex(s.timeIndex)); err != nil {
			return err
		}
		if err := writeFileSync(l.fs, segName(l.dir, s.base, txnIndexSuffix+cleanedSuffix), encodeTxnIndex(s.aborted)); err != nil {
			return err
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// prepareSplit copies the batches at and above upTo of the last covered
// file, if it reaches past upTo, into <upTo>.log.cleaned. The file is
// sealed and pinned, so this runs without the log's mutex; Commit checks
// that no truncation changed it meanwhile.
func (r *Rewrite) prepareSplit() error {
	l := r.l
	s := r.covered[len(r.covered)-1]
	l.mu.Lock()
	next, size := s.next, s.size
	pos, at := s.lookupBatch(r.upTo)
	var carried []abortedEntry
	for _, e := range s.aborted {
		if e.last >= r.upTo {
			carried = append(carried, e)
		}
	}
	l.mu.Unlock()
	if next <= r.upTo {
		return nil
	}
	cut := int64(-1)
	ok, err := withSegment(s, func() error {
		_, _, err := scanBatches(s.f, pos, at, size, false, func(h *kafkaproto.BatchHeader, p int64) error {
			switch {
			case h.BaseOffset >= r.upTo:
				cut = p
				return errStop
			case h.LastOffset() >= r.upTo:
				return fmt.Errorf("batch [%d, %d] across %d: %w", h.BaseOffset, h.LastOffset(), r.upTo, ErrNotBatchBoundary)
			}
			return nil
		})
		if err != nil || cut < 0 {
			return err
		}
		f, err := r.createOutput(r.upTo)
		if err != nil {
			return err
		}
		out := newSegment(r.upTo, f, r.interval)
		out.aborted = carried
		r.split = out
		buf := make([]byte, min(size-cut, 1<<20))
		for p := cut; p < size; {
			c := buf[:min(int64(len(buf)), size-p)]
			if _, err := s.f.ReadAt(c, p); err != nil {
				return fmt.Errorf("read segment %d at %d: %w", s.base, p, err)
			}
			if n, err := f.WriteAt(c, p-cut); err != nil || n != len(c) {
				if err == nil {
					err = io.ErrShortWrite
				}
				return fmt.Errorf("write split file %d: %w", r.upTo, err)
			}
			p += int64(len(c))
		}
		_, _, err = scanBatches(f, 0, r.upTo, size-cut, true, func(h *kafkaproto.BatchHeader, p int64) error {
			out.track(h.BaseOffset, h.LastOffset(), h.MaxTimestamp, p, int64(h.Size()), r.interval)
			return nil
		})
		if err == nil && out.next != next {
			err = fmt.Errorf("split file %d ends at %d, want %d: %w", r.upTo, out.next, next, kafkaproto.ErrCorruptBatch)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("split segment %d at %d: %w", s.base, r.upTo, err)
	}
	if !ok {
		return fmt.Errorf("split segment %d at %d: %w", s.base, r.upTo, ErrClosed)
	}
	if cut < 0 {
		return fmt.Errorf("split segment %d at %d: no batch at or above it: %w", s.base, r.upTo, kafkaproto.ErrCorruptBatch)
	}
	return nil
}

// swapRecord is the clean-swap redo record: the files the rewrite
// replaces (old) and the ones it puts in place (new, *.cleaned until
// renamed), the log start offset after it and the generation.
type swapRecord struct {
	gen      int32
	logStart int64
	old, new []int64
}

func encodeSwap(rec swapRecord) []byte {
	b := make([]byte, 0, 4+2+4+8+4+8*len(rec.old)+4+8*len(rec.new)+4)
	b = append(b, swapMagic...)
	b = binary.BigEndian.AppendUint16(b, swapVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(rec.gen))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.logStart))
	for _, list := range [][]int64{rec.old, rec.new} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(list)))
		for _, base := range list {
			b = binary.BigEndian.AppendUint64(b, uint64(base))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeSwap(b []byte) (swapRecord, error) {
	var rec swapRecord
	if len(b) < 4+2+4+8+4+4+4 || string(b[:4]) != swapMagic {
		return rec, fmt.Errorf("%s: bad header", swapFile)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return rec, fmt.Errorf("%s: %w", swapFile, errBadChecksum)
	}
	if v := binary.BigEndian.Uint16(body[4:]); v != swapVersion {
		return rec, fmt.Errorf("%s: unknown version %d", swapFile, v)
	}
	rec.gen = int32(binary.BigEndian.Uint32(body[6:]))
	rec.logStart = int64(binary.BigEndian.Uint64(body[10:]))
	p := body[18:]
	for _, list := range []*[]int64{&rec.old, &rec.new} {
		if len(p) < 4 {
			return rec, fmt.Errorf("%s: bad length", swapFile)
		}
		n := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(len(p)) < uint64(n)*8 {
			return rec, fmt.Errorf("%s: bad length", swapFile)
		}
		*list = make([]int64, n)
		for i := range *list {
			(*list)[i] = int64(binary.BigEndian.Uint64(p))
			p = p[8:]
		}
	}
	if len(p) != 0 {
		return rec, fmt.Errorf("%s: %d trailing bytes", swapFile, len(p))
	}
	return rec, nil
}

// writeGeneration atomically persists the clean generation
// ("TSKG" | gen i32 | CRC-32C u32).
func writeGeneration(fsys FS, dir string, gen int32) error {
	b := append([]byte(genMagic), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[4:], uint32(gen))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return writeRecordFile(fsys, dir, genFile, b)
}

// readGeneration loads the clean generation, 0 when there is none.
func readGeneration(fsys FS, dir string) (int32, error) {
	b, err := readWhole(fsys, filepath.Join(dir, genFile))
	if isNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 12 || string(b[:4]) != genMagic {
		return 0, fmt.Errorf("%s: bad format", genFile)
	}
	if crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return 0, fmt.Errorf("%s: %w", genFile, errBadChecksum)
	}
	return int32(binary.BigEndian.Uint32(b[4:])), nil
}

// tombstone is a segment's file renamed for the deleter.
type tombstone struct {
	base int64
	path string
	size int64
}

// applySwap performs the swap a clean-swap record describes, idempotently
// (Commit, and recovery after a crash past the commit point): raise the
// persisted log start, rename the old files to *.deleted names and the
// new ones into place, sync the directory, record the generation, remove
// the record. A new file whose *.cleaned log file is gone is already in
// place. It returns the old files' tombstones (their *.deleted names are
// durable) for the caller to hand to the deleter.
func (l *Log) applySwap(rec swapRecord) ([]tombstone, error) {
	start, found, err := readLogStart(l.fs, l.dir)
	if err != nil {
		// Unreadable: rewritten below.
		found = false
	}
	if !found || start < rec.logStart {
		if err := writeLogStart(l.fs, l.dir, rec.logStart); err != nil {
			return nil, fmt.Errorf("persist log start %d: %w", rec.logStart, err)
		}
	}
	var tombs []tombstone
	bury := func(base int64) error {
		gone, size, err := l.tombstoneSegment(base)
		if err != nil {
			return err
		}
		if gone != "" {
			tombs = append(tombs, tombstone{base: base, path: gone, size: size})
		}
		return nil
	}
	for _, base := range rec.old {
		if slices.Contains(rec.new, base) {
			continue
		}
		if err := bury(base); err != nil {
			return nil, err
		}
	}
	for _, base := range rec.new {
		name := segName(l.dir, base, logSuffix)
		if _, err := l.fs.Stat(name + cleanedSuffix); err == nil {
			if err := bury(base); err != nil {
				return nil, err
			}
			if err := l.fs.Rename(name+cleanedSuffix, name); err != nil {
				return nil, fmt.Errorf("rename cleaned segment %d into place: %w", base, err)
			}
		} else if !isNotExist(err) {
			return nil, fmt.Errorf("cleaned segment %d: %w", base, err)
		}
		for _, suf := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			ix := segName(l.dir, base, suf)
			if err := l.fs.Rename(ix+cleanedSuffix, ix); err != nil && !isNotExist(err) {
				return nil, fmt.Errorf("rename cleaned %s of segment %d into place: %w", suf, base, err)
			}
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("sync dir: %w", err)
	}
	if err := writeGeneration(l.fs, l.dir, rec.gen); err != nil {
		return nil, fmt.Errorf("write %s: %w", genFile, err)
	}
	if err := l.fs.Remove(filepath.Join(l.dir, swapFile)); err != nil && !isNotExist(err) {
		return nil, fmt.Errorf("remove %s record: %w", swapFile, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("sync dir: %w", err)
	}
	return tombs, nil
}

// Commit swaps the prepared files in, crash-safely: a durable
// "clean-swap" record (write .tmp, fsync, rename, fsync dir) is the
// commit point; then the log start is raised to max(log start, from),
// the old files are renamed to *.deleted (the deleter reclaims them once
// their readers finish) and the new files renamed into place (including
// the part of a file that straddled upTo, split off at upTo); the dir is
// fsynced, the generation file records gen and the record is removed.
// Output wholly below the log start (retention or DeleteRecords meanwhile)
// is dropped afterwards. An error before the commit point leaves the log
// as it was (Abort then); after it, the log is fenced and the next open
// completes the swap.
func (r *Rewrite) Commit(gen int32) error {
	l := r.l
	if r.finished || !r.prepared {
		return fmt.Errorf("storage: commit rewrite of %s: not prepared, or finished", l.tp)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return fmt.Errorf("storage: commit rewrite of %s: %w", l.tp, err)
	}
	k := len(r.covered)
	if l.rewrite != r || len(l.segs) <= k || !slices.Equal(l.segs[:k], r.covered) || r.covered[k-1].size != r.lastSize {
		return fmt.Errorf("storage: commit rewrite of %s below %d: the covered files changed (truncated?): %w", l.tp, r.upTo, ErrTruncated)
	}
	newSegs := slices.Clone(r.outs)
	if r.split != nil {
		newSegs = append(newSegs, r.split)
	}
	rest := l.segs[k:]
	start := max(l.logStart, r.from)
	if len(newSegs) > 0 {
		start = max(start, newSegs[0].base)
	} else {
		start = max(start, rest[0].base)
	}
	rec := swapRecord{gen: gen, logStart: start}
	for _, s := range r.covered {
		rec.old = append(rec.old, s.base)
	}
	for _, s := range newSegs {
		rec.new = append(rec.new, s.base)
	}
	// The commit point.
	if err := writeRecordFile(l.fs, l.dir, swapFile, encodeSwap(rec)); err != nil {
		err = fmt.Errorf("storage: commit rewrite of %s: write %s record: %w", l.tp, swapFile, err)
		// Take the record back, durably; if that fails too, it may be
		// durable, and recovery would complete the swap from the output:
		// keep the output (Abort does nothing) and fence.
		var undo error
		for _, name := range []string{swapFile + ".tmp", swapFile} {
			if rmErr := l.fs.Remove(filepath.Join(l.dir, name)); rmErr != nil && !isNotExist(rmErr) {
				undo = rmErr
			}
		}
		if undo == nil {
			undo = l.fs.SyncDir(l.dir)
		}
		if undo != nil {
			r.finished = true
			l.fenceLocked(fmt.Errorf("%w; undo: %w", err, undo))
			return l.fenceErr
		}
		return err
	}
	// From here on the output belongs to the swap (recovery needs it if
	// this fails): Abort must not remove it.
	r.finished = true
	// Close the old files before their names change: a reader that
	// pinned one (closeMu) finishes its read first, and none can open a
	// Section by its name afterwards. Open Sections keep the renamed file
	// until they close (the deleter waits for them).
	readers := map[int64]<-chan struct{}{}
	for _, s := range r.covered {
		s.closeFile()
		readers[s.base] = s.sections.whenIdle()
	}
	tombs, err := l.applySwap(rec)
	if err != nil {
		l.fenceLocked(fmt.Errorf("storage: commit rewrite of %s: %w", l.tp, err))
		return l.fenceErr
	}
	for _, s := range newSegs {
		if h, ok := s.f.(*segFile); ok {
			h.settle(segName(l.dir, s.base, logSuffix))
		}
	}
	l.segs = append(newSegs, rest...)
	if start != l.logStart {
		l.logStart = start
		l.notifyHWLocked() // a follower's fetch carries the new log start
	}
	l.epochs.trimFront(start)
	l.cleanGen = gen
	l.rewrite = nil
	for _, t := range tombs {
		l.engine.reclaim(t.path, t.size, readers[t.base])
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= l.logStart {
		n++
	}
	l.removeFrontLocked(n)
	l.logger().Info().Int32("generation", gen).Int64("from", r.from).Int64("up_to", r.upTo).Int("old_files", len(rec.old)).Int("new_files", len(rec.new)).Int64("log_start", l.logStart).Msg("rewrote range")
	return nil
}

// writeRecordFile atomically writes a small record file: write
// .tmp, fsync, rename, fsync the directory.
func writeRecordFile(fsys FS, dir, file string, b []byte) error {
	name := filepath.Join(dir, file)
	if err := writeFileSync(fsys, name+".tmp", b); err != nil {
		return err
	}
	if err := fsys.Rename(name+".tmp", name); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// Abort removes the output files and unpins the covered ones. Segments
// wholly below the log start (DeleteRecords meanwhile) are removed then.
// Aborting a finished rewrite does nothing.
func (r *Rewrite) Abort() error {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.finished {
		return nil
	}
	r.finished = true
	if l.rewrite == r {
		l.rewrite = nil
		if !l.closed {
			n := 0
			for n < len(l.segs)-1 && l.segs[n].next <= l.logStart {
				n++
			}
			l.removeFrontLocked(n)
		}
	}
	files := slices.Clone(r.outs)
	if r.split != nil {
		files = append(files, r.split)
	}
	var errs []error
	for _, s := range files {
		if err := s.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
		for _, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if err := l.fs.Remove(segName(l.dir, s.base, suf+cleanedSuffix)); err != nil && !isNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	if len(files) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: abort rewrite of %s: %w", l.tp, err)
	}
	return nil
}

// CleanGeneration is the generation of the log's last committed rewrite
// (0 if never), persisted in the log directory.
func (l *Log) CleanGeneration() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cleanGen
}

// recoverSwap runs at open, before *.deleted files go to the deleter: it
// completes a swap whose clean-swap record it finds, then removes every
// *.cleaned file left (the output of a rewrite that never reached its
// commit point, or leftovers). It reports whether it changed names.
func (l *Log) recoverSwap(names []string) (bool, error) {
	changed := false
	if slices.Contains(names, swapFile) {
		b, err := readWhole(l.fs, filepath.Join(l.dir, swapFile))
		if err != nil {
			return false, fmt.Errorf("read %s record: %w", swapFile, err)
		}
		rec, err := decodeSwap(b)
		if err != nil {
			// Written whole (tmp, fsync, rename) or not at all.
			return false, err
		}
		l.logger().Warn().Int32("generation", rec.gen).Msg("completing an interrupted rewrite")
		if _, err := l.applySwap(rec); err != nil {
			return false, fmt.Errorf("complete rewrite: %w", err)
		}
		changed = true
	}
	if changed {
		var err error
		if names, err = l.fs.ReadDir(l.dir); err != nil {
			return false, err
		}
	}
	removed := false
	for _, n := range names {
		if strings.HasSuffix(n, cleanedSuffix) {
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil && !isNotExist(err) {
				return false, fmt.Errorf("remove leftover %s: %w", n, err)
			}
			removed = true
		}
	}
	if removed {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return false, err
		}
	}
	return changed || removed, nil
}

// From sets where the rewrite's output starts (the log start after
// Commit) without reading the log's own batches: a rewrite whose output
// is copied from another replica (a re-copy of a cleaned range,
// docs/compaction.md) writes batches at or above from.
func (r *Rewrite) From(from int64) error {
	if r.finished || r.prepared || from >= r.upTo || (r.wrote && from != r.from) {
		return fmt.Errorf("storage: rewrite of %s from %d (up to %d, output from %d): %w", r.l.tp, from, r.upTo, r.from, ErrOffsetOutOfRange)
	}
	r.from = from
	return nil
}
