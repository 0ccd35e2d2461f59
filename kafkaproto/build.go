package kafkaproto

import (
	"encoding/binary"
	"hash/crc32"
)

// KV is one record to encode: key and value (nil = null), no headers.
type KV struct {
	Key, Value []byte
}

// AppendBatch appends an uncompressed, non-idempotent v2 batch holding recs
// (at least one) with every record stamped ts, base offset 0. The broker
// uses it for records it writes itself (e.g. __consumer_offsets).
func AppendBatch(dst []byte, ts int64, recs []KV) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, BatchHeaderSize)...)
	h := dst[start:]
	binary.BigEndian.PutUint64(h[0:], 0)  // BaseOffset
	binary.BigEndian.PutUint32(h[12:], 0) // PartitionLeaderEpoch
	h[offMagic] = 2                       // Magic
	binary.BigEndian.PutUint16(h[offAttributes:], 0)
	binary.BigEndian.PutUint32(h[offLastOffsetDelta:], uint32(len(recs)-1))
	binary.BigEndian.PutUint64(h[offFirstTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(h[offMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(h[offProducerID:], ^uint64(0))    // -1
	binary.BigEndian.PutUint16(h[offProducerEpoch:], ^uint16(0)) // -1
	binary.BigEndian.PutUint32(h[offBaseSequence:], ^uint32(0))  // -1
	binary.BigEndian.PutUint32(h[offRecordCount:], uint32(len(recs)))
	var body []byte
	for i, r := range recs {
		body = body[:0]
		body = append(body, 0)                     // attributes
		body = binary.AppendVarint(body, 0)        // timestamp delta
		body = binary.AppendVarint(body, int64(i)) // offset delta
		body = appendVarBytes(body, r.Key)
		body = appendVarBytes(body, r.Value)
		body = binary.AppendVarint(body, 0) // headers
		dst = binary.AppendVarint(dst, int64(len(body)))
		dst = append(dst, body...)
	}
	h = dst[start:]
	binary.BigEndian.PutUint32(h[BatchLengthOffset:], uint32(len(h)-BatchOverhead))
	binary.BigEndian.PutUint32(h[offCRC:], crc32.Checksum(h[offAttributes:], castagnoli))
	return dst
}

func appendVarBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}
