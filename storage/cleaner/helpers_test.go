package cleaner

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Test codecs: snappy in its two framings.
const (
	codecNone         = "none"
	codecGzip         = "gzip"
	codecSnappyRaw    = "snappy"
	codecSnappyXerial = "snappy-xerial"
	codecLZ4          = "lz4"
	codecZstd         = "zstd"
)

var allCodecs = []string{codecNone, codecGzip, codecSnappyRaw, codecSnappyXerial, codecLZ4, codecZstd}

func codecAttr(codec string) int16 {
	switch codec {
	case codecGzip:
		return kafkaproto.CompressionGzip
	case codecSnappyRaw, codecSnappyXerial:
		return kafkaproto.CompressionSnappy
	case codecLZ4:
		return kafkaproto.CompressionLZ4
	case codecZstd:
		return kafkaproto.CompressionZstd
	}
	return kafkaproto.CompressionNone
}

// compressForTest compresses with encoders independent of the cleaner's
// (stdlib gzip, default lz4 and zstd writers, small xerial blocks).
func compressForTest(tb testing.TB, codec string, raw []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	switch codec {
	case codecNone, "":
		return raw
	case codecGzip:
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(raw); err != nil {
			tb.Fatal(err)
		}
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	case codecSnappyRaw:
		return snappy.Encode(nil, raw)
	case codecSnappyXerial:
		out := append([]byte(nil), xerialMagic[:]...)
		out = binary.BigEndian.AppendUint32(out, 1)
		out = binary.BigEndian.AppendUint32(out, 1)
		for len(raw) > 0 {
			n := min(100, len(raw))
			blk := snappy.Encode(nil, raw[:n])
			out = binary.BigEndian.AppendUint32(out, uint32(len(blk)))
			out = append(out, blk...)
			raw = raw[n:]
		}
		return out
	case codecLZ4:
		w := lz4.NewWriter(&buf)
		if _, err := w.Write(raw); err != nil {
			tb.Fatal(err)
		}
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	case codecZstd:
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			tb.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(raw, nil)
	default:
		tb.Fatalf("unknown codec %q", codec)
	}
	return buf.Bytes()
}

// encodeRecords encodes recs with kmsg, filling in each record's Length.
func encodeRecords(recs []kmsg.Record) []byte {
	var out []byte
	for i := range recs {
		r := recs[i]
		r.Length = 0
		body := r.AppendTo(nil)[1:] // drop the one-byte zero length
		r.Length = int32(len(body))
		out = r.AppendTo(out)
	}
	return out
}

// tbatch describes a batch to build.
type tbatch struct {
	base      int64
	codec     string
	pid       int64 // 0 means -1 (no producer) unless idem is set
	idem      bool
	epoch     int16
	seq       int32
	control   bool
	txn       bool
	firstTS   int64
	maxTS     int64 // 0: computed
	lastDelta int32 // 0: the highest record offset delta
	epochLdr  int32
	records   []kmsg.Record
}

func (b tbatch) build(tb testing.TB) []byte {
	tb.Helper()
	comp := compressForTest(tb, b.codec, encodeRecords(b.records))
	attrs := codecAttr(b.codec)
	if b.control {
		attrs |= kafkaproto.AttrControl
	}
	if b.txn {
		attrs |= kafkaproto.AttrTransactional
	}
	lastDelta := b.lastDelta
	maxTS := b.firstTS
	for _, r := range b.records {
		if b.lastDelta <= 0 {
			lastDelta = max(lastDelta, r.OffsetDelta)
		}
		maxTS = max(maxTS, b.firstTS+r.TimestampDelta64)
	}
	if b.maxTS != 0 {
		maxTS = b.maxTS
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if b.idem {
		pid, epoch, seq = b.pid, b.epoch, b.seq
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          b.base,
		Length:               int32(kafkaproto.BatchHeaderSize - kafkaproto.BatchOverhead + len(comp)),
		PartitionLeaderEpoch: b.epochLdr,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      lastDelta,
		FirstTimestamp:       b.firstTS,
		MaxTimestamp:         maxTS,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           int32(len(b.records)),
		Records:              comp,
	}
	out := rb.AppendTo(nil)
	fixCRC(out)
	return out
}

func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32.MakeTable(crc32.Castagnoli)))
}

// kv builds records with consecutive offset deltas from 0: each pair is
// key, value; "" stands for null (use "\x00" ... for real strings).
func kvs(pairs ...string) []kmsg.Record {
	var recs []kmsg.Record
	for i := 0; i+1 < len(pairs); i += 2 {
		recs = append(recs, rec(int32(i/2), pairs[i], pairs[i+1]))
	}
	return recs
}

// rec is one record at offset delta d; "" means a null key or value.
func rec(d int32, key, value string) kmsg.Record {
	r := kmsg.Record{OffsetDelta: d, TimestampDelta64: int64(d) * 10}
	if key != "" {
		r.Key = []byte(key)
	}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// sliceSource yields batches in order.
func sliceSource(batches [][]byte) Source {
	return func(fn func([]byte) error) error {
		for _, b := range batches {
			if err := fn(b); err != nil {
				return err
			}
		}
		return nil
	}
}

// runClean cleans batches and returns copies of the output batches.
func runClean(tb testing.TB, batches [][]byte, p Params) ([][]byte, Stats, error) {
	tb.Helper()
	var out [][]byte
	st, err := Clean(sliceSource(batches), p, func(b []byte) error {
		out = append(out, slices.Clone(b))
		return nil
	})
	return out, st, err
}

func mustClean(tb testing.TB, batches [][]byte, p Params) ([][]byte, Stats) {
	tb.Helper()
	out, st, err := runClean(tb, batches, p)
	if err != nil {
		tb.Fatalf("Clean: %v", err)
	}
	return out, st
}

// oneSegment is Params for a single segment [0, end) sealed at 0 whose
// tombstones are within their horizon.
func oneSegment(end int64) Params {
	return Params{UpTo: end, NowMs: 1000, DeleteRetentionMs: 1 << 40, Segments: []Segment{{Base: 0, End: end}}}
}

// orec is an output record for assertions.
type orec struct {
	Offset     int64
	Key, Value string
	NullValue  bool
}

// checkOutput validates every output batch as a stored, cleaned batch
// (header, length, CRC, record count ≤ last offset delta + 1, records
// decodable, offsets strictly increasing across batches) and returns all
// records in order.
func checkOutput(tb testing.TB, out [][]byte) []orec {
	tb.Helper()
	var d kafkaproto.Decompressor
	defer d.Close()
	var recs []orec
	prev := int64(-1)
	for i, b := range out {
		if err := validateStored(b); err != nil {
			tb.Fatalf("output batch %d: %v", i, err)
		}
		h, _ := kafkaproto.ParseBatchHeader(b)
		if h.BaseOffset <= prev {
			tb.Fatalf("output batch %d at %d does not follow %d", i, h.BaseOffset, prev)
		}
		prev = h.LastOffset()
		if h.IsControl() {
			continue
		}
		rs, err := d.Records(b)
		if err != nil {
			tb.Fatalf("output batch %d: records: %v", i, err)
		}
		for _, r := range rs {
			recs = append(recs, orec{Offset: r.Offset, Key: string(r.Key), Value: string(r.Value), NullValue: r.Value == nil})
		}
	}
	return recs
}

// validateStored is kafkaproto.ValidateBatch relaxed for cleaned batches:
// fewer records than LastOffsetDelta+1, or none, are allowed. A batch
// with every offset present must pass ValidateBatch itself.
func validateStored(b []byte) error {
	h, err := kafkaproto.ParseBatchHeader(b)
	if err != nil {
		return err
	}
	if h.Size() != len(b) {
		return errors.New("length mismatch")
	}
	if err := kafkaproto.VerifyCRC(b, &h); err != nil {
		return err
	}
	if h.RecordCount < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1 {
		return errors.New("record count inconsistent with last offset delta")
	}
	if h.RecordCount == 0 && (h.Compression() != kafkaproto.CompressionNone || len(b) != kafkaproto.BatchHeaderSize) {
		return errors.New("empty batch with a payload or a codec")
	}
	if h.RecordCount > 0 && h.RecordCount == h.LastOffsetDelta+1 {
		if _, err := kafkaproto.ValidateBatch(b); err != nil {
			return err
		}
	}
	return nil
}

// headerExceptCounts is the batch header with CRC, length and record count
// zeroed: what the cleaner must keep.
func headerExceptCounts(b []byte) []byte {
	h := slices.Clone(b[:kafkaproto.BatchHeaderSize])
	clear(h[kafkaproto.BatchLengthOffset : kafkaproto.BatchLengthOffset+4])
	clear(h[offCRC : offCRC+4])
	clear(h[offRecordCount : offRecordCount+4])
	return h
}
