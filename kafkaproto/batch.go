package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record batch v2 layout (all integers big-endian). The CRC-32C covers
// everything from Attributes to the end of the batch; BaseOffset,
// BatchLength, PartitionLeaderEpoch and Magic sit outside it, which is why
// the broker may rewrite BaseOffset and PartitionLeaderEpoch without
// recomputing the checksum.
//
//	offset size field
//	0      8    BaseOffset
//	8      4    BatchLength (bytes after this field)
//	12     4    PartitionLeaderEpoch
//	16     1    Magic (2)
//	17     4    CRC (Castagnoli)
//	21     2    Attributes
//	23     4    LastOffsetDelta
//	27     8    FirstTimestamp
//	35     8    MaxTimestamp
//	43     8    ProducerId
//	51     2    ProducerEpoch
//	53     4    BaseSequence
//	57     4    RecordCount
//	61     ...  Records
const (
	BatchHeaderSize = 61
	// BatchLengthOffset is where BatchLength starts; a batch occupies
	// BatchLengthOffset+4+BatchLength bytes.
	BatchLengthOffset = 8
	// BatchOverhead is the number of bytes before BatchLength's payload.
	BatchOverhead        = 12
	offPartitionLeaderEp = 12
	offMagic             = 16
	offCRC               = 17
	offAttributes        = 21
	offLastOffsetDelta   = 23
	offFirstTimestamp    = 27
	offMaxTimestamp      = 35
	offProducerID        = 43
	offProducerEpoch     = 51
	offBaseSequence      = 53
	offRecordCount       = 57
)

// Attribute bits of a v2 batch.
const (
	AttrCompressionMask = 0x07
	AttrTimestampType   = 0x08
	AttrTransactional   = 0x10
	AttrControl         = 0x20
)

// Compression codecs as stored in Attributes.
const (
	CompressionNone   = 0
	CompressionGzip   = 1
	CompressionSnappy = 2
	CompressionLZ4    = 3
	CompressionZstd   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch parsing errors. Callers map them to Kafka error codes:
// ErrCorruptBatch → CORRUPT_MESSAGE, ErrUnsupportedMagic → UNSUPPORTED_FOR_MESSAGE_FORMAT
// (or INVALID_RECORD), ErrShortBatch → CORRUPT_MESSAGE.
var (
	ErrShortBatch       = errors.New("kafkaproto: record batch truncated")
	ErrUnsupportedMagic = errors.New("kafkaproto: only record batch magic 2 is supported")
	ErrCorruptBatch     = errors.New("kafkaproto: record batch corrupt")
	ErrBadCRC           = fmt.Errorf("%w: CRC-32C mismatch", ErrCorruptBatch)
)

// BatchHeader is the decoded fixed-size header of a v2 record batch.
type BatchHeader struct {
	BaseOffset           int64
	BatchLength          int32
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the total on-wire size of the batch.
func (h *BatchHeader) Size() int { return BatchOverhead + int(h.BatchLength) }

// LastOffset is the offset of the batch's last record.
func (h *BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Compression is the codec in Attributes.
func (h *BatchHeader) Compression() int { return int(h.Attributes & AttrCompressionMask) }

// IsTransactional reports the transactional attribute.
func (h *BatchHeader) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports the control attribute.
func (h *BatchHeader) IsControl() bool { return h.Attributes&AttrControl != 0 }

// ParseBatchHeader decodes the header at the start of b. It checks that the
// batch's declared length is sane and fits in b, but not the CRC.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	var h BatchHeader
	if len(b) < BatchOverhead+5 {
		return h, ErrShortBatch
	}
	h.BaseOffset = int64(binary.BigEndian.Uint64(b))
	h.BatchLength = int32(binary.BigEndian.Uint32(b[BatchLengthOffset:]))
	h.PartitionLeaderEpoch = int32(binary.BigEndian.Uint32(b[offPartitionLeaderEp:]))
	h.Magic = int8(b[offMagic])
	if h.Magic != 2 {
		return h, ErrUnsupportedMagic
	}
	if h.BatchLength < BatchHeaderSize-BatchOverhead {
		return h, fmt.Errorf("%w: batch length %d below header size", ErrCorruptBatch, h.BatchLength)
	}
	if len(b) < BatchHeaderSize {
		return h, ErrShortBatch
	}
	h.CRC = binary.BigEndian.Uint32(b[offCRC:])
	h.Attributes = int16(binary.BigEndian.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:]))
	h.FirstTimestamp = int64(binary.BigEndian.Uint64(b[offFirstTimestamp:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[offMaxTimestamp:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[offProducerEpoch:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[offBaseSequence:]))
	h.RecordCount = int32(binary.BigEndian.Uint32(b[offRecordCount:]))
	return h, nil
}

// VerifyCRC checks the CRC-32C of the complete batch b (exactly one batch).
func VerifyCRC(b []byte, h *BatchHeader) error {
	if len(b) < h.Size() {
		return ErrShortBatch
	}
	if crc32.Checksum(b[offAttributes:h.Size()], castagnoli) != h.CRC {
		return ErrBadCRC
	}
	return nil
}

// ValidateBatch checks a single complete produced batch: magic 2, length
// consistent with len(b), CRC-32C, a non-negative record count consistent
// with LastOffsetDelta. It never decodes the records themselves.
func ValidateBatch(b []byte) (BatchHeader, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if h.Size() != len(b) {
		return h, fmt.Errorf("%w: batch length %d does not match %d bytes", ErrCorruptBatch, h.Size(), len(b))
	}
	if h.RecordCount <= 0 || h.LastOffsetDelta != h.RecordCount-1 {
		return h, fmt.Errorf("%w: record count %d inconsistent with last offset delta %d", ErrCorruptBatch, h.RecordCount, h.LastOffsetDelta)
	}
	if h.Compression() > CompressionZstd {
		return h, fmt.Errorf("%w: unknown compression codec %d", ErrCorruptBatch, h.Compression())
	}
	if err := VerifyCRC(b, &h); err != nil {
		return h, err
	}
	return h, nil
}

// SetBaseOffset rewrites the batch's BaseOffset in place (outside the CRC).
func SetBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b, uint64(off)) }

// SetPartitionLeaderEpoch rewrites PartitionLeaderEpoch in place (outside the CRC).
func SetPartitionLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offPartitionLeaderEp:], uint32(epoch))
}

// SplitBatches walks a concatenation of batches (e.g. a Produce request's
// Records field) and calls fn with each complete batch. It stops at the first
// error from fn or a malformed/truncated batch.
func SplitBatches(b []byte, fn func(batch []byte, h BatchHeader) error) error {
	for len(b) > 0 {
		h, err := ParseBatchHeader(b)
		if err != nil {
			return err
		}
		if h.Size() > len(b) {
			return ErrShortBatch
		}
		if err := fn(b[:h.Size()], h); err != nil {
			return err
		}
		b = b[h.Size():]
	}
	return nil
}
