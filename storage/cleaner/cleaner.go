package cleaner

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"

	"github.com/tuskdb/tusk/kafkaproto"
)

// hashSize is the length of a key's hash: SHA-256 truncated to 16 bytes,
// the same on every node.
const hashSize = 16

// Segment is one chain segment covering part of the cleaned range: its
// offsets [Base, End) and the wall time its seal was proposed (from Raft).
type Segment struct{ Base, End, SealedAtMs int64 }

// Params describes one cleaning. Everything Clean decides follows from the
// input bytes and these fields; it never reads a clock.
type Params struct {
	Start, UpTo       int64     // clean the batches with offsets in [Start, UpTo)
	NowMs             int64     // fixed by the Raft command; never read a clock
	DeleteRetentionMs int64     // tombstone horizon: a tombstone in segment s may go once s.SealedAtMs + DeleteRetentionMs <= NowMs
	Segments          []Segment // cover [Start, UpTo), contiguous
	MapBytes          int64     // key map memory before spilling (0 → 64 MiB)
	SpillDir          string    // directory for spill files (created/removed by Clean); required only if spilling happens
	// Horizons, if set, overrides the segments' seal times for the
	// tombstone horizon: a tombstone at offset o takes the SealedAtMs of
	// the last Horizon with Start <= o (the first if none). A segment
	// merged from several keeps each part's seal time this way, so a
	// merge never moves a tombstone's horizon (docs/compaction.md,
	// "Merging"). Sorted by Start.
	Horizons []Horizon
}

// Horizon is the seal time of the part of the range from Start on.
type Horizon struct{ Start, SealedAtMs int64 }

// Source calls fn with every batch of the range in order (whole v2
// batches), stopping at and returning fn's first error. Clean calls it
// twice (pass 1 builds the key map, pass 2 writes); both calls must yield
// the same batches.
type Source func(fn func(batch []byte) error) error

// Stats counts what a cleaning read and wrote. The In counters cover the
// batches of the range (those skipped below Start or at and above UpTo are
// not counted). TombstonesRemoved counts tombstones that were their key's
// latest record and went because their segment's horizon had passed.
type Stats struct {
	BatchesIn, BatchesOut, RecordsIn, RecordsOut, BytesIn, BytesOut, TombstonesRemoved int64
	// AbortedRecordsRemoved counts the records of aborted transactions
	// removed; MarkersRemoved the transaction markers removed.
	AbortedRecordsRemoved, MarkersRemoved int64
	Spilled                               bool
}

// Clean compacts the batches src yields in [p.Start, p.UpTo) and calls out
// with every output batch, in order. out must not keep the slice after it
// returns. The output is a pure function of the input bytes and p (see
// the package documentation for the rules). A batch whose last offset is
// below Start is skipped, a batch straddling Start is cleaned whole, a
// batch at or above UpTo is skipped; a batch straddling UpTo, batches out
// of order and corrupt batches are errors ("cleaner: ..."). Spill files
// are removed before Clean returns.
func Clean(src Source, p Params, out func(batch []byte) error) (st Stats, err error) {
	if err := p.validate(); err != nil {
		return Stats{}, err
	}
	if p.Start == p.UpTo {
		return Stats{}, nil
	}
	c := newCleaner(p)
	defer func() {
		c.enc.close()
		c.dec.Close()
		if cerr := c.keys.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	if err := c.run(src, 1, c.pass1); err != nil {
		return Stats{}, err
	}
	if err := c.keys.finish(); err != nil {
		return Stats{}, err
	}
	c.stats.Spilled = c.keys.spilled()
	c.out, c.wroteLast = out, -1
	if err := c.run(src, 2, c.pass2); err != nil {
		return c.stats, err
	}
	return c.stats, nil
}

func (p *Params) validate() error {
	switch {
	case p.Start < 0 || p.UpTo < p.Start:
		return fmt.Errorf("cleaner: bad range [%d, %d)", p.Start, p.UpTo)
	case p.DeleteRetentionMs < 0:
		return fmt.Errorf("cleaner: negative delete retention %d ms", p.DeleteRetentionMs)
	case p.Start == p.UpTo:
		return nil
	case len(p.Segments) == 0:
		return fmt.Errorf("cleaner: no segments cover [%d, %d)", p.Start, p.UpTo)
	}
	for i, s := range p.Segments {
		if s.Base >= s.End {
			return fmt.Errorf("cleaner: segment %d: empty range [%d, %d)", i, s.Base, s.End)
		}
		if i > 0 && s.Base != p.Segments[i-1].End {
			return fmt.Errorf("cleaner: segment %d starts at %d, not at the previous end %d", i, s.Base, p.Segments[i-1].End)
		}
	}
	if first, last := p.Segments[0], p.Segments[len(p.Segments)-1]; first.Base > p.Start || last.End < p.UpTo {
		return fmt.Errorf("cleaner: segments [%d, %d) do not cover [%d, %d)", first.Base, last.End, p.Start, p.UpTo)
	}
	return nil
}

// cleaner is the state of one Clean call.
type cleaner struct {
	p       Params
	horizon []bool  // per segment: its tombstones may go
	hpassed []bool  // per Params.Horizons entry: its tombstones may go
	segLast []int64 // per segment: base offset of its last batch in the range, -1 if none
	// prodLast is, per producer id ≥ 0, the base offset of its last data
	// batch in the range. Control batches pass through anyway, and only
	// data batches carry the sequence state this keeps.
	prodLast map[int64]int64
	// markers is, per producer id, its transaction markers in the range
	// in offset order (pass 1); a transactional data batch belongs to its
	// producer's first marker after it (docs/compaction.md,
	// "Transactions").
	markers map[int64][]txnMarker
	// pending is, per producer id, the keyed records of its transaction
	// not yet decided in pass 1: a COMMIT puts them into the key map, an
	// ABORT drops them, and those left at the end of the range
	// (undecided) never supersede anything.
	pending map[int64][]pendingKey
	// Pass 2, per producer id: the index in markers of the marker of its
	// current transaction, and whether a batch of that transaction was
	// written (then the marker stays).
	cursor map[int64]int
	txnOut map[int64]bool
	keys   *keyMap
	dec    kafkaproto.Decompressor
	enc    encoders
	recs   []kafkaproto.RawRecord
	raw    []byte // survivors' records, uncompressed
	buf    []byte // output batch
	out    func(batch []byte) error
	stats  Stats
	// wroteLast is the base offset of the last batch written (pass 2).
	wroteLast int64

	// Per pass: the batch sequence seen, so pass 2 can check that the
	// source yielded the same batches as in pass 1.
	prevLast int64
	seen     int64
	digest   uint32
	p1Seen   int64
	p1Digest uint32
	pass     int
}

func newCleaner(p Params) *cleaner {
	c := &cleaner{
		p:        p,
		horizon:  make([]bool, len(p.Segments)),
		segLast:  make([]int64, len(p.Segments)),
		prodLast: make(map[int64]int64),
		markers:  make(map[int64][]txnMarker),
		pending:  make(map[int64][]pendingKey),
		cursor:   make(map[int64]int),
		txnOut:   make(map[int64]bool),
		keys:     newKeyMap(p.MapBytes, p.SpillDir),
	}
	for i, s := range p.Segments {
		c.segLast[i] = -1
		c.horizon[i] = p.passed(s.SealedAtMs)
	}
	for _, h := range p.Horizons {
		c.hpassed = append(c.hpassed, p.passed(h.SealedAtMs))
	}
	return c
}

// passed reports whether a part sealed at sealedAt is past the tombstone
// horizon: sealedAt + DeleteRetentionMs <= NowMs, without overflow.
func (p Params) passed(sealedAt int64) bool {
	return sealedAt <= p.NowMs-p.DeleteRetentionMs && p.NowMs >= math.MinInt64+p.DeleteRetentionMs
}

// tombstoneMayGo reports whether a tombstone at off is past its horizon.
func (c *cleaner) tombstoneMayGo(off int64) bool {
	hs := c.p.Horizons
	if len(hs) == 0 {
		return c.horizon[c.segmentOf(off)]
	}
	i := sort.Search(len(hs), func(i int) bool { return hs[i].Start > off }) - 1
	return c.hpassed[max(i, 0)]
}

// errSourceMismatch reports a source that yielded different batches in
// the two passes.
var errSourceMismatch = errors.New("cleaner: source yielded different batches in pass 2 than in pass 1")

// run feeds every batch of one pass of src to fn.
func (c *cleaner) run(src Source, pass int, fn func(b []byte, h *kafkaproto.BatchHeader) error) error {
	c.pass, c.prevLast, c.seen, c.digest = pass, -1, 0, 0
	var inner error
	err := src(func(b []byte) error {
		h, inRange, err := c.check(b)
		if err == nil && inRange {
			err = fn(b, &h)
		}
		if err != nil {
			inner = err
		}
		return err
	})
	if inner != nil {
		return inner
	}
	if err != nil {
		return fmt.Errorf("cleaner: pass %d: source: %w", pass, err)
	}
	if pass == 1 {
		c.p1Seen, c.p1Digest = c.seen, c.digest
	} else if c.seen != c.p1Seen || c.digest != c.p1Digest {
		return fmt.Errorf("%w (%d batches, then %d)", errSourceMismatch, c.p1Seen, c.seen)
	}
	return nil
}

// check validates one batch from the source: header, exact length,
// CRC-32C, record count and offsets consistent, strictly increasing
// offsets, and not straddling UpTo. inRange reports whether it belongs to
// the range (its last offset ≥ Start and its base < UpTo).
func (c *cleaner) check(b []byte) (h kafkaproto.BatchHeader, inRange bool, err error) {
	h, err = kafkaproto.ParseBatchHeader(b)
	if err != nil {
		return h, false, fmt.Errorf("cleaner: batch after offset %d: %w", c.prevLast, err)
	}
	switch {
	case h.Size() != len(b):
		return h, false, fmt.Errorf("cleaner: batch at offset %d: length %d does not match %d bytes", h.BaseOffset, h.Size(), len(b))
	case h.RecordCount < 0 || h.LastOffsetDelta < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1:
		return h, false, fmt.Errorf("cleaner: batch at offset %d: record count %d inconsistent with last offset delta %d", h.BaseOffset, h.RecordCount, h.LastOffsetDelta)
	case h.BaseOffset < 0 || h.BaseOffset > math.MaxInt64-int64(h.LastOffsetDelta):
		return h, false, fmt.Errorf("cleaner: batch at offset %d: bad offsets (last offset delta %d)", h.BaseOffset, h.LastOffsetDelta)
	case h.BaseOffset <= c.prevLast:
		return h, false, fmt.Errorf("cleaner: batch at offset %d does not follow offset %d", h.BaseOffset, c.prevLast)
	case h.Compression() > kafkaproto.CompressionZstd:
		return h, false, fmt.Errorf("cleaner: batch at offset %d: unknown compression codec %d", h.BaseOffset, h.Compression())
	}
	if err := kafkaproto.VerifyCRC(b, &h); err != nil {
		return h, false, fmt.Errorf("cleaner: batch at offset %d: %w", h.BaseOffset, err)
	}
	c.prevLast = h.LastOffset()
	c.seen++
	var mix [12]byte
	binary.BigEndian.PutUint64(mix[:], uint64(h.BaseOffset))
	binary.BigEndian.PutUint32(mix[8:], h.CRC)
	c.digest = crc32.Update(c.digest, crc32.IEEETable, mix[:])
	if h.LastOffset() < c.p.Start || h.BaseOffset >= c.p.UpTo {
		return h, false, nil
	}
	if h.LastOffset() >= c.p.UpTo {
		return h, false, fmt.Errorf("cleaner: batch [%d, %d] straddles the end of the range %d", h.BaseOffset, h.LastOffset(), c.p.UpTo)
	}
	if c.pass == 2 && c.seen > c.p1Seen {
		return h, false, errSourceMismatch
	}
	return h, true, nil
}

// segmentOf is the index of the segment holding off; offsets below the
// first segment (a batch straddling Start) belong to the first.
func (c *cleaner) segmentOf(off int64) int {
	segs := c.p.Segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].End > off })
	return min(i, len(segs)-1)
}

// records decodes the records of a data batch into c.recs.
func (c *cleaner) records(b []byte, h *kafkaproto.BatchHeader) error {
	payload, err := c.dec.DecompressRecords(b, *h)
	if err != nil {
		return fmt.Errorf("cleaner: batch at offset %d: %w", h.BaseOffset, err)
	}
	c.recs, err = kafkaproto.SplitRecords(payload, h, c.recs)
	if err != nil {
		return fmt.Errorf("cleaner: batch at offset %d: %w", h.BaseOffset, err)
	}
	return nil
}

func hashKey(key []byte) keyHash {
	sum := sha256.Sum256(key)
	return keyHash(sum[:hashSize])
}

// pass1 records every keyed record's offset in the key map, each
// segment's last batch, each producer's last data batch and the
// transaction markers. The records of a transaction enter the key map
// only when its COMMIT is read.
func (c *cleaner) pass1(b []byte, h *kafkaproto.BatchHeader) error {
	for i, last := c.segmentOf(h.BaseOffset), c.segmentOf(h.LastOffset()); i <= last; i++ {
		c.segLast[i] = h.BaseOffset
	}
	if h.IsControl() {
		if m, ok := c.marker(b, h); ok {
			return c.pass1Marker(h.ProducerID, m)
		}
		return nil
	}
	if h.ProducerID >= 0 {
		c.prodLast[h.ProducerID] = h.BaseOffset
	}
	if err := c.records(b, h); err != nil {
		return err
	}
	txn := isTxnData(h)
	for _, r := range c.recs {
		if r.Key == nil {
			continue
		}
		off := h.BaseOffset + int64(r.OffsetDelta)
		if txn {
			c.pending[h.ProducerID] = append(c.pending[h.ProducerID], pendingKey{hashKey(r.Key), off})
			continue
		}
		if err := c.keys.put(hashKey(r.Key), off); err != nil {
			return err
		}
	}
	return nil
}

// mustKeep reports whether a batch is the last of one of its segments or
// its producer's last data batch: kept, emptied if need be.
func (c *cleaner) mustKeep(h *kafkaproto.BatchHeader) bool {
	if h.ProducerID >= 0 {
		if last, ok := c.prodLast[h.ProducerID]; ok && last == h.BaseOffset {
			return true
		}
	}
	return c.segmentLast(h)
}

// segmentLast reports whether a batch is the last of one of its segments.
func (c *cleaner) segmentLast(h *kafkaproto.BatchHeader) bool {
	for i, last := c.segmentOf(h.BaseOffset), c.segmentOf(h.LastOffset()); i <= last; i++ {
		if c.segLast[i] == h.BaseOffset {
			return true
		}
	}
	return false
}

// pass2 writes one batch's cleaned form, if any.
func (c *cleaner) pass2(b []byte, h *kafkaproto.BatchHeader) error {
	c.stats.BatchesIn++
	c.stats.BytesIn += int64(len(b))
	c.stats.RecordsIn += int64(h.RecordCount)
	if h.IsControl() {
		if _, ok := c.marker(b, h); ok {
			pid := h.ProducerID
			gone := c.markerMayGo(pid, h)
			delete(c.txnOut, pid)
			if gone {
				c.stats.MarkersRemoved++
				return nil
			}
		}
		return c.emit(b, h, int64(h.RecordCount))
	}
	f := c.fateOf(h)
	if f != fatePlain {
		// Whatever is written of a transaction's batch keeps its marker.
		defer func() {
			if c.wroteLast == h.BaseOffset {
				c.txnOut[h.ProducerID] = true
			}
		}()
	}
	switch f {
	case fateUndecided:
		// Its marker is at or past UpTo: a later cleaning decides it.
		return c.emit(b, h, int64(h.RecordCount))
	case fateAborted:
		c.stats.AbortedRecordsRemoved += int64(h.RecordCount)
		switch {
		case !c.mustKeep(h):
			return nil
		case h.RecordCount == 0:
			return c.emit(b, h, 0)
		}
		return c.emit(c.emptyBatch(b), h, 0)
	}
	if err := c.records(b, h); err != nil {
		return err
	}
	kept := 0
	c.raw = c.raw[:0]
	for _, r := range c.recs {
		ok, err := c.keep(h, &r)
		if err != nil {
			return err
		}
		if ok {
			kept++
			c.raw = append(c.raw, r.Raw...)
		}
	}
	switch {
	case kept == len(c.recs) && kept > 0:
		return c.emit(b, h, int64(kept))
	case kept == 0 && !c.mustKeep(h):
		return nil
	case kept == 0 && h.RecordCount == 0:
		return c.emit(b, h, 0) // already empty: as it is
	case kept == 0:
		return c.emit(c.emptyBatch(b), h, 0)
	}
	nb, err := c.reencode(b, h, kept)
	if err != nil {
		return err
	}
	return c.emit(nb, h, int64(kept))
}

// keep decides one record of a data batch.
func (c *cleaner) keep(h *kafkaproto.BatchHeader, r *kafkaproto.RawRecord) (bool, error) {
	if r.Key == nil {
		return false, nil
	}
	off := h.BaseOffset + int64(r.OffsetDelta)
	latest, ok, err := c.keys.get(hashKey(r.Key))
	if err != nil {
		return false, err
	}
	if !ok || latest != off {
		return false, nil
	}
	if r.Value == nil && c.tombstoneMayGo(off) {
		c.stats.TombstonesRemoved++
		return false, nil
	}
	return true, nil
}

func (c *cleaner) emit(b []byte, h *kafkaproto.BatchHeader, records int64) error {
	c.wroteLast = h.BaseOffset
	c.stats.BatchesOut++
	c.stats.RecordsOut += records
	c.stats.BytesOut += int64(len(b))
	if err := c.out(b); err != nil {
		return fmt.Errorf("cleaner: write batch at offset %d: %w", h.BaseOffset, err)
	}
	return nil
}

// Offsets of the v2 batch header fields the cleaner rewrites (see
// kafkaproto/batch.go for the layout).
const (
	offCRC         = 17
	offAttributes  = 21
	offRecordCount = 57
)

// emptyBatch builds the empty form of batch b in c.buf: its header with
// zero records, an empty uncompressed payload (the codec bits cleared:
// zero bytes are not a valid gzip, lz4 or zstd stream; Kafka does the
// same) and a fresh CRC. Everything else (base offset, last offset delta,
// leader epoch, timestamps, producer fields, the other attribute bits)
// is kept.
func (c *cleaner) emptyBatch(b []byte) []byte {
	c.buf = append(c.buf[:0], b[:kafkaproto.BatchHeaderSize]...)
	attrs := binary.BigEndian.Uint16(c.buf[offAttributes:]) &^ kafkaproto.AttrCompressionMask
	binary.BigEndian.PutUint16(c.buf[offAttributes:], attrs)
	return c.finishBatch(0)
}

// reencode builds in c.buf batch b with only the records in c.raw (kept
// of them), compressed with b's codec.
func (c *cleaner) reencode(b []byte, h *kafkaproto.BatchHeader, kept int) ([]byte, error) {
	c.buf = append(c.buf[:0], b[:kafkaproto.BatchHeaderSize]...)
	codec := h.Compression()
	xerial := codec == kafkaproto.CompressionSnappy && isXerial(b[kafkaproto.BatchHeaderSize:])
	var err error
	c.buf, err = c.enc.compress(c.buf, codec, xerial, c.raw)
	if err != nil {
		return nil, fmt.Errorf("cleaner: re-encode batch at offset %d: %w", h.BaseOffset, err)
	}
	if len(c.buf)-kafkaproto.BatchOverhead > math.MaxInt32 {
		return nil, fmt.Errorf("cleaner: re-encode batch at offset %d: %d bytes too large", h.BaseOffset, len(c.buf))
	}
	return c.finishBatch(kept), nil
}

// finishBatch sets the record count, the batch length and the CRC of the
// batch in c.buf.
func (c *cleaner) finishBatch(count int) []byte {
	binary.BigEndian.PutUint32(c.buf[offRecordCount:], uint32(count))
	binary.BigEndian.PutUint32(c.buf[kafkaproto.BatchLengthOffset:], uint32(len(c.buf)-kafkaproto.BatchOverhead))
	binary.BigEndian.PutUint32(c.buf[offCRC:], crc32.Checksum(c.buf[offAttributes:], castagnoli))
	return c.buf
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
