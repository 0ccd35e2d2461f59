package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Test codecs: the batch attribute codec plus the framing variant used to
// produce it.
const (
	codecNone         = "none"
	codecGzip         = "gzip"
	codecSnappyRaw    = "snappy-raw"
	codecSnappyXerial = "snappy-xerial"
	codecLZ4          = "lz4"
	codecZstd         = "zstd"
)

var allTestCodecs = []string{codecNone, codecGzip, codecSnappyRaw, codecSnappyXerial, codecLZ4, codecZstd}

func codecAttr(codec string) int16 {
	switch codec {
	case codecGzip:
		return CompressionGzip
	case codecSnappyRaw, codecSnappyXerial:
		return CompressionSnappy
	case codecLZ4:
		return CompressionLZ4
	case codecZstd:
		return CompressionZstd
	}
	return CompressionNone
}

// xerialEncode frames src the way snappy-java's SnappyOutputStream does,
// with blocks of at most blockSize input bytes.
func xerialEncode(src []byte, blockSize int) []byte {
	out := append([]byte(nil), xerialMagic[:]...)
	out = binary.BigEndian.AppendUint32(out, 1) // version
	out = binary.BigEndian.AppendUint32(out, 1) // min compatible version
	for len(src) > 0 {
		n := min(blockSize, len(src))
		blk := snappy.Encode(nil, src[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(blk)))
		out = append(out, blk...)
		src = src[n:]
	}
	return out
}

func compressForTest(tb testing.TB, codec string, raw []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	switch codec {
	case codecNone:
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
		return xerialEncode(raw, 256) // small blocks: exercise multi-block frames
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

// testBatch describes a batch to build.
type testBatch struct {
	codec      string
	baseOffset int64
	firstTS    int64
	logAppend  bool
	records    []kmsg.Record
}

// build assembles the batch with kmsg.RecordBatch and fixes its CRC-32C.
func (tb testBatch) build(t testing.TB) []byte {
	t.Helper()
	raw := encodeRecords(tb.records)
	comp := compressForTest(t, tb.codec, raw)
	attrs := codecAttr(tb.codec)
	if tb.logAppend {
		attrs |= AttrTimestampType
	}
	var lastDelta int32
	maxTS := tb.firstTS
	for _, r := range tb.records {
		lastDelta = max(lastDelta, r.OffsetDelta)
		maxTS = max(maxTS, tb.firstTS+r.TimestampDelta64)
	}
	if tb.logAppend {
		maxTS = tb.firstTS + 1_000_000 // the broker's append time
	}
	return makeBatch(tb.baseOffset, attrs, lastDelta, tb.firstTS, maxTS, int32(len(tb.records)), comp)
}

// makeBatch assembles a batch around an already encoded (and possibly
// compressed) records section with kmsg.RecordBatch and sets its CRC-32C.
func makeBatch(base int64, attrs int16, lastDelta int32, firstTS, maxTS int64, count int32, records []byte) []byte {
	rb := kmsg.RecordBatch{
		FirstOffset:          base,
		Length:               int32(BatchHeaderSize - BatchOverhead + len(records)),
		PartitionLeaderEpoch: 7,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      lastDelta,
		FirstTimestamp:       firstTS,
		MaxTimestamp:         maxTS,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           count,
		Records:              records,
	}
	b := rb.AppendTo(nil)
	fixCRC(b)
	return b
}

// fixCRC recomputes the CRC-32C of a complete batch in place.
func fixCRC(b []byte) {
	if len(b) < BatchHeaderSize {
		return
	}
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
}

// sampleRecords returns n records with varied keys, values, headers and
// timestamp deltas (including a negative one).
func sampleRecords(n int) []kmsg.Record {
	recs := make([]kmsg.Record, n)
	for i := range recs {
		r := kmsg.Record{
			TimestampDelta64: int64(i*i*1000) - 5,
			OffsetDelta:      int32(i),
			Value:            bytes.Repeat([]byte{byte('a' + i%26)}, 10+i*37),
		}
		if i%3 != 0 {
			r.Key = []byte{byte(i), 'k'}
		}
		if i%2 == 1 {
			r.Headers = []kmsg.Header{{Key: "h", Value: []byte("v")}, {Key: "null", Value: nil}}
		}
		recs[i] = r
	}
	return recs
}

func TestValidateBatchAndSplit(t *testing.T) {
	b1 := testBatch{codec: codecNone, baseOffset: 0, firstTS: 1000, records: sampleRecords(3)}.build(t)
	b2 := testBatch{codec: codecZstd, baseOffset: 3, firstTS: 2000, records: sampleRecords(5)}.build(t)
	for _, b := range [][]byte{b1, b2} {
		h, err := ValidateBatch(b)
		if err != nil {
			t.Fatalf("ValidateBatch: %v", err)
		}
		if h.Size() != len(b) || h.PartitionLeaderEpoch != 7 {
			t.Fatalf("header %+v for %d bytes", h, len(b))
		}
	}
	all := append(append([]byte(nil), b1...), b2...)
	var sizes []int
	var counts []int32
	if err := SplitBatches(all, func(b []byte, h BatchHeader) error {
		sizes = append(sizes, len(b))
		counts = append(counts, h.RecordCount)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 2 || sizes[0] != len(b1) || sizes[1] != len(b2) || counts[0] != 3 || counts[1] != 5 {
		t.Fatalf("split sizes %v counts %v", sizes, counts)
	}
	if err := SplitBatches(all[:len(all)-1], func([]byte, BatchHeader) error { return nil }); !errors.Is(err, ErrShortBatch) {
		t.Fatalf("truncated split: %v", err)
	}

	// BaseOffset and PartitionLeaderEpoch are outside the CRC.
	c := append([]byte(nil), b1...)
	SetBaseOffset(c, 1<<40)
	SetPartitionLeaderEpoch(c, 42)
	h, err := ValidateBatch(c)
	if err != nil || h.BaseOffset != 1<<40 || h.PartitionLeaderEpoch != 42 {
		t.Fatalf("after rewrite: %+v, %v", h, err)
	}

	// Any flipped bit inside the CRC range is caught.
	for _, at := range []int{offAttributes, offRecordCount + 3, len(b1) - 1} {
		c := append([]byte(nil), b1...)
		c[at] ^= 0x10
		if _, err := ValidateBatch(c); !errors.Is(err, ErrCorruptBatch) {
			t.Fatalf("bit flip at %d: %v", at, err)
		}
	}
	c = append([]byte(nil), b1...)
	c[offMagic] = 1
	if _, err := ValidateBatch(c); !errors.Is(err, ErrUnsupportedMagic) {
		t.Fatalf("magic 1: %v", err)
	}
}
