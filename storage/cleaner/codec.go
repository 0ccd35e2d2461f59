package cleaner

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Compression settings of re-encoded batches. They are fixed, and every
// encoder runs on the calling goroutine, so the same records always give
// the same bytes (with the same library versions, i.e. the same binary):
//
//   - gzip: klauspost/compress/gzip at level 6 (gzip's default), empty
//     header (no name, mtime 0).
//   - snappy: s2.EncodeSnappy (standard snappy blocks). A batch that came
//     in xerial framing (what the Java client and librdkafka write) is
//     re-encoded in xerial framing, version 1, 32 KiB blocks (snappy-java's
//     default); a raw snappy block stays a raw block.
//   - lz4: pierrec/lz4/v4 frame, level Fast, 64 KiB independent blocks,
//     no block or content checksum (the frame Kafka's Java client writes;
//     its reader checks a content checksum as the XOR of per-block
//     hashes, which differs from the standard one past one block),
//     concurrency 1.
//   - zstd: klauspost/compress/zstd, SpeedDefault (about level 3), CRC on,
//     concurrency 1, one frame per batch (EncodeAll).
const (
	gzipLevel        = 6
	xerialBlockSize  = 32 << 10
	xerialVersion    = 1
	xerialCompatible = 1
)

var xerialMagic = [8]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// encoders holds the codec writers of one Clean call.
type encoders struct {
	gz  *gzip.Writer
	lz  *lz4.Writer
	zs  *zstd.Encoder
	buf bytes.Buffer
	snp []byte // snappy block scratch
}

// snappyBlock returns src as one snappy block, in scratch space valid
// until the next call.
func (e *encoders) snappyBlock(src []byte) ([]byte, error) {
	n := s2.MaxEncodedLen(len(src))
	if n < 0 {
		return nil, fmt.Errorf("snappy: %d bytes too large for a block", len(src))
	}
	if n > cap(e.snp) {
		e.snp = make([]byte, n)
	}
	return s2.EncodeSnappy(e.snp[:cap(e.snp)], src), nil
}

// isXerial reports whether a snappy records section uses xerial framing.
func isXerial(payload []byte) bool {
	return len(payload) >= len(xerialMagic) && bytes.Equal(payload[:len(xerialMagic)], xerialMagic[:])
}

// compress appends raw compressed with codec to dst. xerial selects the
// snappy framing.
func (e *encoders) compress(dst []byte, codec int, xerial bool, raw []byte) ([]byte, error) {
	switch codec {
	case kafkaproto.CompressionNone:
		return append(dst, raw...), nil
	case kafkaproto.CompressionGzip:
		e.buf.Reset()
		if e.gz == nil {
			w, err := gzip.NewWriterLevel(&e.buf, gzipLevel)
			if err != nil {
				return dst, fmt.Errorf("gzip writer: %w", err)
			}
			e.gz = w
		} else {
			e.gz.Reset(&e.buf)
		}
		if _, err := e.gz.Write(raw); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		if err := e.gz.Close(); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		return append(dst, e.buf.Bytes()...), nil
	case kafkaproto.CompressionSnappy:
		if !xerial {
			blk, err := e.snappyBlock(raw)
			return append(dst, blk...), err
		}
		dst = append(dst, xerialMagic[:]...)
		dst = binary.BigEndian.AppendUint32(dst, xerialVersion)
		dst = binary.BigEndian.AppendUint32(dst, xerialCompatible)
		for len(raw) > 0 {
			n := min(xerialBlockSize, len(raw))
			blk, err := e.snappyBlock(raw[:n])
			if err != nil {
				return dst, err
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(blk)))
			dst = append(dst, blk...)
			raw = raw[n:]
		}
		return dst, nil
	case kafkaproto.CompressionLZ4:
		e.buf.Reset()
		if e.lz == nil {
			e.lz = lz4.NewWriter(&e.buf)
			if err := e.lz.Apply(
				lz4.ConcurrencyOption(1),
				lz4.BlockSizeOption(lz4.Block64Kb),
				lz4.CompressionLevelOption(lz4.Fast),
				lz4.ChecksumOption(false),
			); err != nil {
				return dst, fmt.Errorf("lz4 writer: %w", err)
			}
		} else {
			e.lz.Reset(&e.buf)
		}
		if _, err := e.lz.Write(raw); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		if err := e.lz.Close(); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		return append(dst, e.buf.Bytes()...), nil
	case kafkaproto.CompressionZstd:
		if e.zs == nil {
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderLevel(zstd.SpeedDefault),
				zstd.WithEncoderCRC(true),
			)
			if err != nil {
				return dst, fmt.Errorf("zstd writer: %w", err)
			}
			e.zs = enc
		}
		return e.zs.EncodeAll(raw, dst), nil
	default:
		return dst, fmt.Errorf("unknown compression codec %d", codec)
	}
}

func (e *encoders) close() {
	if e.zs != nil {
		_ = e.zs.Close() // EncodeAll-only encoder: Close only releases state
		e.zs = nil
	}
}
