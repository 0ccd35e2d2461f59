package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxDecompressedSize bounds the decompressed records section of one
// batch when Decompressor.MaxSize is zero. Kafka's default
// message.max.bytes is about 1 MiB compressed; 64 MiB leaves room for very
// compressible payloads while keeping a decompression bomb cheap.
const DefaultMaxDecompressedSize = 64 << 20

// minRecordSize is the smallest encoding of one record: a one-byte length
// varint followed by attributes, timestampDelta, offsetDelta, key length,
// value length and header count, one byte each.
const minRecordSize = 7

// ErrDecompressedTooLarge reports a records section that decompresses to more
// than the Decompressor's MaxSize.
var ErrDecompressedTooLarge = errors.New("kafkaproto: decompressed records exceed size limit")

// xerialMagic starts the snappy-java stream framing (SnappyOutputStream) that
// the Java client and librdkafka use for snappy batches. It is followed by a
// 4-byte version and a 4-byte minimum compatible version, then blocks of a
// big-endian int32 length and a raw snappy block.
var xerialMagic = [8]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

// Decompressor decompresses and decodes the records of v2 batches. It keeps
// the codec state that is expensive to build (notably the zstd decoder) and
// reuses it across calls. The zero value is ready to use.
//
// A Decompressor is not safe for concurrent use: give each goroutine its own,
// or pool them. Close releases the zstd decoder.
type Decompressor struct {
	// MaxSize bounds the decompressed size of one batch's records section;
	// 0 means DefaultMaxDecompressedSize, and values above math.MaxInt32
	// are clamped to it. Larger sections fail with ErrDecompressedTooLarge.
	MaxSize int

	zstd    *zstd.Decoder
	zstdMax int // the limit zstd was built with
	gzip    *gzip.Reader
	lz4     *lz4.Reader
	src     bytes.Reader
	lim     io.LimitedReader
}

// DecompressRecords returns the records section of a v2 batch, decompressed
// per its codec, using a temporary Decompressor. Callers decoding many zstd
// batches should keep a Decompressor and use its method instead.
func DecompressRecords(batch []byte, h BatchHeader) ([]byte, error) {
	var d Decompressor
	defer d.Close()
	return d.DecompressRecords(batch, h)
}

// RecordTimestamps decodes one batch's records and returns each record's
// absolute offset and timestamp, using a temporary Decompressor. See
// Decompressor.RecordTimestamps.
func RecordTimestamps(batch []byte) (offsets []int64, timestamps []int64, err error) {
	var d Decompressor
	defer d.Close()
	return d.RecordTimestamps(batch)
}

// Close releases the codec state. The Decompressor stays usable; a later
// call rebuilds what it needs.
func (d *Decompressor) Close() {
	if d.zstd != nil {
		d.zstd.Close()
		d.zstd = nil
	}
	if d.gzip != nil {
		_ = d.gzip.Close()
		d.gzip = nil
	}
	d.lz4 = nil
	d.src.Reset(nil)
	d.lim.R = nil
}

func (d *Decompressor) limit() int {
	switch {
	case d.MaxSize <= 0:
		return DefaultMaxDecompressedSize
	case d.MaxSize > math.MaxInt32:
		// Kafka sizes are int32; this also keeps limit+1 from overflowing.
		return math.MaxInt32
	default:
		return d.MaxSize
	}
}

// DecompressRecords returns the records section of a v2 batch (the bytes
// after the 61-byte header, up to h.Size()), decompressed per h's codec:
// gzip, snappy (raw block or the xerial framing Kafka clients use), lz4
// frame, or zstd. For uncompressed batches the result aliases batch;
// otherwise it is newly allocated and owned by the caller. It does not
// verify the CRC. Errors wrap ErrShortBatch, ErrCorruptBatch or
// ErrDecompressedTooLarge.
func (d *Decompressor) DecompressRecords(batch []byte, h BatchHeader) ([]byte, error) {
	size := h.Size()
	if h.BatchLength < BatchHeaderSize-BatchOverhead {
		return nil, fmt.Errorf("%w: batch length %d below header size", ErrCorruptBatch, h.BatchLength)
	}
	if len(batch) < size {
		return nil, ErrShortBatch
	}
	src := batch[BatchHeaderSize:size]
	limit := d.limit()
	switch c := h.Compression(); c {
	case CompressionNone:
		return src, nil
	case CompressionGzip:
		return d.gunzip(src, limit)
	case CompressionSnappy:
		return unsnappy(src, limit)
	case CompressionLZ4:
		return d.unlz4(src, limit)
	case CompressionZstd:
		return d.unzstd(src, limit)
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrCorruptBatch, c)
	}
}

// readAll streams r into a buffer sized from the compressed length (growing
// only as real output arrives) and rejects more than limit bytes.
func (d *Decompressor) readAll(r io.Reader, srcLen, limit int, codec string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(min(max(4*srcLen, 512), limit))
	d.lim = io.LimitedReader{R: r, N: int64(limit) + 1}
	_, err := out.ReadFrom(&d.lim)
	d.lim.R = nil
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptBatch, codec, err)
	}
	if out.Len() > limit {
		return nil, fmt.Errorf("%w (%s, limit %d bytes)", ErrDecompressedTooLarge, codec, limit)
	}
	return out.Bytes(), nil
}

func (d *Decompressor) gunzip(src []byte, limit int) ([]byte, error) {
	d.src.Reset(src)
	var err error
	if d.gzip == nil {
		d.gzip, err = gzip.NewReader(&d.src)
	} else {
		err = d.gzip.Reset(&d.src)
	}
	if err != nil {
		// A failed Reset leaves the reader unusable; build a fresh one next time.
		d.gzip = nil
		return nil, fmt.Errorf("%w: gzip: %v", ErrCorruptBatch, err)
	}
	return d.readAll(d.gzip, len(src), limit, "gzip")
}

func (d *Decompressor) unlz4(src []byte, limit int) ([]byte, error) {
	d.src.Reset(src)
	if d.lz4 == nil {
		d.lz4 = lz4.NewReader(&d.src)
	} else {
		d.lz4.Reset(&d.src)
	}
	out, err := d.readAll(d.lz4, len(src), limit, "lz4")
	if err != nil {
		d.lz4 = nil // do not reuse a reader left in an error state
	}
	return out, err
}

func (d *Decompressor) unzstd(src []byte, limit int) ([]byte, error) {
	if d.zstd == nil || d.zstdMax != limit {
		if d.zstd != nil {
			d.zstd.Close()
			d.zstd = nil
		}
		// Concurrency 1 decodes synchronously in DecodeAll, starting no
		// goroutines; MaxMemory rejects frames declaring (or producing)
		// more than limit bytes, before allocating for them.
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(uint64(limit)),
		)
		if err != nil {
			return nil, fmt.Errorf("kafkaproto: zstd decoder: %w", err)
		}
		d.zstd, d.zstdMax = dec, limit
	}
	out, err := d.zstd.DecodeAll(src, nil)
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("%w (zstd, limit %d bytes): %v", ErrDecompressedTooLarge, limit, err)
		}
		return nil, fmt.Errorf("%w: zstd: %v", ErrCorruptBatch, err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w (zstd, limit %d bytes)", ErrDecompressedTooLarge, limit)
	}
	return out, nil
}

// unsnappy decodes a raw snappy block or, if src starts with the xerial
// magic, the xerial framing. Every block's decoded length is checked against
// the remaining budget before anything is allocated.
func unsnappy(src []byte, limit int) ([]byte, error) {
	if len(src) < len(xerialMagic) || !bytes.Equal(src[:len(xerialMagic)], xerialMagic[:]) {
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrCorruptBatch, err)
		}
		if n > limit {
			return nil, fmt.Errorf("%w (snappy, limit %d bytes)", ErrDecompressedTooLarge, limit)
		}
		out, err := snappy.Decode(make([]byte, n), src)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrCorruptBatch, err)
		}
		return out, nil
	}
	if len(src) < xerialHeaderSize {
		return nil, fmt.Errorf("%w: snappy: truncated xerial header", ErrCorruptBatch)
	}
	// First pass: walk the block headers and sum the decoded lengths, so
	// the output is allocated once and only if within the limit.
	total := 0
	for rem := src[xerialHeaderSize:]; len(rem) > 0; {
		blk, next, err := xerialBlock(rem)
		if err != nil {
			return nil, err
		}
		n, err := snappy.DecodedLen(blk)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrCorruptBatch, err)
		}
		if n > limit-total {
			return nil, fmt.Errorf("%w (snappy, limit %d bytes)", ErrDecompressedTooLarge, limit)
		}
		total += n
		rem = next
	}
	out := make([]byte, total)
	at := 0
	for rem := src[xerialHeaderSize:]; len(rem) > 0; {
		blk, next, _ := xerialBlock(rem) // validated above
		n, _ := snappy.DecodedLen(blk)
		if _, err := snappy.Decode(out[at:at+n], blk); err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrCorruptBatch, err)
		}
		at += n
		rem = next
	}
	return out, nil
}

// xerialBlock splits one length-prefixed block off the front of b.
func xerialBlock(b []byte) (blk, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: snappy: truncated xerial block header", ErrCorruptBatch)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: snappy: xerial block of %d bytes exceeds the %d remaining", ErrCorruptBatch, n, len(b))
	}
	return b[:n], b[n:], nil
}

// RecordTimestamps decodes one complete batch (exactly len(batch) bytes,
// CRC verified) and returns each record's absolute offset (BaseOffset +
// offsetDelta) and timestamp (FirstTimestamp + timestampDelta, or
// MaxTimestamp for every record of a LogAppendTime batch). It validates the
// record framing strictly: record count, offset deltas strictly increasing
// within [0, LastOffsetDelta], every length within its bounds, no bytes
// left over. It allocates in proportion to the records section, never to a
// count claimed by the input. Meant for look-ups off the hot path.
func (d *Decompressor) RecordTimestamps(batch []byte) (offsets []int64, timestamps []int64, err error) {
	recs, err := d.Records(batch)
	if err != nil {
		return nil, nil, err
	}
	offsets = make([]int64, len(recs))
	timestamps = make([]int64, len(recs))
	for i, r := range recs {
		offsets[i], timestamps[i] = r.Offset, r.Timestamp
	}
	return offsets, timestamps, nil
}

// Record is one decoded record. Key and Value alias the (decompressed)
// batch; nil means null. Headers are validated but not returned.
type Record struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
}

// Records decodes one whole batch's records with the same strict validation
// as RecordTimestamps. Off the hot path only (group metadata replay,
// timestamp look-ups).
func (d *Decompressor) Records(batch []byte) ([]Record, error) {
	h, err := ParseBatchHeader(batch)
	if err != nil {
		return nil, err
	}
	if h.Size() != len(batch) {
		if h.Size() > len(batch) {
			return nil, ErrShortBatch
		}
		return nil, fmt.Errorf("%w: batch length %d does not match %d bytes", ErrCorruptBatch, h.Size(), len(batch))
	}
	if err := VerifyCRC(batch, &h); err != nil {
		return nil, err
	}
	if h.RecordCount < 0 {
		return nil, fmt.Errorf("%w: negative record count %d", ErrCorruptBatch, h.RecordCount)
	}
	if h.RecordCount > 0 && h.LastOffsetDelta < h.RecordCount-1 {
		return nil, fmt.Errorf("%w: record count %d exceeds last offset delta %d + 1", ErrCorruptBatch, h.RecordCount, h.LastOffsetDelta)
	}
	if h.RecordCount > 0 && h.BaseOffset > math.MaxInt64-int64(h.LastOffsetDelta) {
		return nil, fmt.Errorf("%w: base offset %d + last offset delta %d overflows", ErrCorruptBatch, h.BaseOffset, h.LastOffsetDelta)
	}
	recs, err := d.DecompressRecords(batch, h)
	if err != nil {
		return nil, err
	}
	raw, err := SplitRecords(recs, &h, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(raw))
	logAppend := h.Attributes&AttrTimestampType != 0
	for _, r := range raw {
		rec := Record{Offset: h.BaseOffset + int64(r.OffsetDelta), Timestamp: h.FirstTimestamp + r.TimestampDelta, Key: r.Key, Value: r.Value}
		if logAppend {
			rec.Timestamp = h.MaxTimestamp
		}
		out = append(out, rec)
	}
	return out, nil
}

// RawRecord is one record of a batch's (decompressed) records section, as
// SplitRecords finds it: Raw is its whole encoding, length varint
// included (a cleaner that keeps the record copies it unchanged); Key and
// Value alias it (nil: null).
type RawRecord struct {
	Raw            []byte
	TimestampDelta int64
	OffsetDelta    int32
	Key, Value     []byte
}

// SplitRecords decodes the records section recs of the batch described
// by h into dst (reused), validating strictly: exactly h.RecordCount
// records, offset deltas strictly increasing within [0,
// LastOffsetDelta], every length within its bounds, no bytes left over.
// It allocates nothing beyond dst's growth. Errors wrap ErrCorruptBatch.
func SplitRecords(recs []byte, h *BatchHeader, dst []RawRecord) ([]RawRecord, error) {
	dst = dst[:0]
	n := int(h.RecordCount)
	if n < 0 || n > len(recs)/minRecordSize {
		return dst, fmt.Errorf("%w: %d records cannot fit in %d bytes", ErrCorruptBatch, n, len(recs))
	}
	prev := int32(-1)
	for i := 0; i < n; i++ {
		r, rest, err := decodeRecord(recs)
		if err != nil {
			return dst, fmt.Errorf("%w: record %d: %v", ErrCorruptBatch, i, err)
		}
		if r.OffsetDelta <= prev || r.OffsetDelta > h.LastOffsetDelta {
			return dst, fmt.Errorf("%w: record %d: offset delta %d out of order (previous %d, last %d)", ErrCorruptBatch, i, r.OffsetDelta, prev, h.LastOffsetDelta)
		}
		prev = r.OffsetDelta
		dst = append(dst, r)
		recs = rest
	}
	if len(recs) != 0 {
		return dst, fmt.Errorf("%w: %d bytes left after %d records", ErrCorruptBatch, len(recs), n)
	}
	return dst, nil
}

var (
	errVarint   = errors.New("malformed varint")
	errTruncate = errors.New("truncated")
)

// decodeRecord decodes the record at the front of b and returns the rest.
func decodeRecord(b []byte) (RawRecord, []byte, error) {
	var r RawRecord
	start := b
	length, b, err := varint32(b)
	if err != nil {
		return r, nil, fmt.Errorf("length: %w", err)
	}
	if length < minRecordSize-1 || int64(length) > int64(len(b)) {
		return r, nil, fmt.Errorf("length %d outside [%d, %d]", length, minRecordSize-1, len(b))
	}
	body, rest := b[:length], b[length:]
	r.Raw = start[:len(start)-len(rest)]
	body = body[1:] // attributes: unused in v2
	if r.TimestampDelta, body, err = varint64(body); err != nil {
		return r, nil, fmt.Errorf("timestamp delta: %w", err)
	}
	if r.OffsetDelta, body, err = varint32(body); err != nil {
		return r, nil, fmt.Errorf("offset delta: %w", err)
	}
	if r.Key, body, err = readBytes(body, true); err != nil {
		return r, nil, fmt.Errorf("key: %w", err)
	}
	if r.Value, body, err = readBytes(body, true); err != nil {
		return r, nil, fmt.Errorf("value: %w", err)
	}
	var nh int32
	if nh, body, err = varint32(body); err != nil {
		return r, nil, fmt.Errorf("header count: %w", err)
	}
	// Each header takes at least two bytes (two length varints).
	if nh < 0 || int64(nh) > int64(len(body)/2) {
		return r, nil, fmt.Errorf("header count %d invalid for %d bytes", nh, len(body))
	}
	for j := int32(0); j < nh; j++ {
		if body, err = skipBytes(body, false); err != nil {
			return r, nil, fmt.Errorf("header %d key: %w", j, err)
		}
		if body, err = skipBytes(body, true); err != nil {
			return r, nil, fmt.Errorf("header %d value: %w", j, err)
		}
	}
	if len(body) != 0 {
		return r, nil, fmt.Errorf("%d bytes left in record", len(body))
	}
	return r, rest, nil
}

// skipBytes skips a varint-length-prefixed byte string; -1 is null and is
// allowed only if nullable.
func skipBytes(b []byte, nullable bool) ([]byte, error) {
	_, rest, err := readBytes(b, nullable)
	return rest, err
}

// readBytes reads a varint-length-prefixed byte string (nil for null, which
// is allowed only if nullable) and returns it with the rest of b.
func readBytes(b []byte, nullable bool) ([]byte, []byte, error) {
	n, b, err := varint32(b)
	if err != nil {
		return nil, nil, err
	}
	if n == -1 && nullable {
		return nil, b, nil
	}
	if n < 0 || int64(n) > int64(len(b)) {
		return nil, nil, fmt.Errorf("length %d outside [0, %d]", n, len(b))
	}
	return b[:n:n], b[n:], nil
}

// varint32 reads a zigzag varint of at most 5 bytes that fits an int32.
func varint32(b []byte) (int32, []byte, error) {
	ux, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, nil, errTruncate
	case n < 0 || n > binary.MaxVarintLen32 || ux > math.MaxUint32:
		return 0, nil, errVarint
	}
	u := uint32(ux)
	return int32(u>>1) ^ -int32(u&1), b[n:], nil
}

// varint64 reads a zigzag varlong of at most 10 bytes.
func varint64(b []byte) (int64, []byte, error) {
	ux, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, nil, errTruncate
	case n < 0:
		return 0, nil, errVarint
	}
	return int64(ux>>1) ^ -int64(ux&1), b[n:], nil
}
