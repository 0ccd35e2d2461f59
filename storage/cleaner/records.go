package cleaner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tuskdb/tusk/kafkaproto"
)

// minRecordSize is the smallest encoding of one v2 record: a one-byte
// length varint followed by attributes, timestampDelta, offsetDelta, key
// length, value length and header count, one byte each.
const minRecordSize = 7

// record is one decoded record of a batch's (decompressed) records
// section. raw is its whole encoding, length varint included, so a
// surviving record is re-encoded by copying it: its attributes, timestamp
// and offset deltas and headers stay exactly as written.
type record struct {
	raw         []byte
	offsetDelta int32
	key, value  []byte // nil: null
}

var (
	errVarint   = errors.New("malformed varint")
	errTruncate = errors.New("truncated")
)

// splitRecords decodes the records section recs of the batch described by
// h into dst (reused), with the same strict validation as kafkaproto's
// Records: exactly h.RecordCount records, offset deltas strictly increasing
// within [0, LastOffsetDelta], every length within its bounds and no bytes
// left over. It allocates nothing beyond dst's growth.
func splitRecords(recs []byte, h *kafkaproto.BatchHeader, dst []record) ([]record, error) {
	dst = dst[:0]
	n := int(h.RecordCount)
	if n < 0 || n > len(recs)/minRecordSize {
		return dst, fmt.Errorf("%d records cannot fit in %d bytes", n, len(recs))
	}
	prev := int32(-1)
	for i := 0; i < n; i++ {
		r, rest, err := decodeRecord(recs)
		if err != nil {
			return dst, fmt.Errorf("record %d: %w", i, err)
		}
		if r.offsetDelta <= prev || r.offsetDelta > h.LastOffsetDelta {
			return dst, fmt.Errorf("record %d: offset delta %d out of order (previous %d, last %d)", i, r.offsetDelta, prev, h.LastOffsetDelta)
		}
		prev = r.offsetDelta
		dst = append(dst, r)
		recs = rest
	}
	if len(recs) != 0 {
		return dst, fmt.Errorf("%d bytes left after %d records", len(recs), n)
	}
	return dst, nil
}

// decodeRecord decodes the record at the front of b and returns the rest.
func decodeRecord(b []byte) (record, []byte, error) {
	var r record
	start := b
	length, b, err := varint32(b)
	if err != nil {
		return r, nil, fmt.Errorf("length: %w", err)
	}
	if length < minRecordSize-1 || int64(length) > int64(len(b)) {
		return r, nil, fmt.Errorf("length %d outside [%d, %d]", length, minRecordSize-1, len(b))
	}
	body, rest := b[:length], b[length:]
	r.raw = start[:len(start)-len(rest)]
	body = body[1:] // attributes: unused in v2
	if _, body, err = varint64(body); err != nil {
		return r, nil, fmt.Errorf("timestamp delta: %w", err)
	}
	if r.offsetDelta, body, err = varint32(body); err != nil {
		return r, nil, fmt.Errorf("offset delta: %w", err)
	}
	if r.key, body, err = readBytes(body, true); err != nil {
		return r, nil, fmt.Errorf("key: %w", err)
	}
	if r.value, body, err = readBytes(body, true); err != nil {
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
		if _, body, err = readBytes(body, false); err != nil {
			return r, nil, fmt.Errorf("header %d key: %w", j, err)
		}
		if _, body, err = readBytes(body, true); err != nil {
			return r, nil, fmt.Errorf("header %d value: %w", j, err)
		}
	}
	if len(body) != 0 {
		return r, nil, fmt.Errorf("%d bytes left in record", len(body))
	}
	return r, rest, nil
}

// readBytes reads a varint-length-prefixed byte string (nil for null,
// which is allowed only if nullable) and returns it with the rest of b. A
// present but empty string is returned non-nil.
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
