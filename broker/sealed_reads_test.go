package broker

import (
	"bytes"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// batchAt encodes a record batch of n records starting at base.
func batchAt(base int64, n int) []byte {
	rb := kmsg.NewRecordBatch()
	rb.FirstOffset = base
	rb.Magic = 2
	rb.LastOffsetDelta = int32(n - 1)
	rb.NumRecords = int32(n)
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = []byte("v")
		recs = r.AppendTo(recs)
	}
	rb.Records = recs
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	rb.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return rb.AppendTo(nil)
}

func TestTrimTo(t *testing.T) {
	a, b, c := batchAt(0, 5), batchAt(5, 3), batchAt(8, 4)
	all := append(append(append([]byte{}, a...), b...), c...)
	for _, tc := range []struct {
		end  int64
		want []byte
	}{
		{0, nil},
		{5, a},
		{8, append(append([]byte{}, a...), b...)},
		{12, all},
		{100, all},
	} {
		if got := trimTo(all, tc.end); !bytes.Equal(got, tc.want) {
			t.Fatalf("trimTo(%d): %d bytes, want %d", tc.end, len(got), len(tc.want))
		}
	}
}

func TestSealedAt(t *testing.T) {
	p := metadata.Partition{Segments: []metadata.Segment{
		{ID: 1, BaseOffset: 0, EndOffset: 10, State: metadata.SegmentSealed},
		{ID: 2, BaseOffset: 10, EndOffset: 10, State: metadata.SegmentSealed}, // empty
		{ID: 3, BaseOffset: 10, EndOffset: 25, State: metadata.SegmentSealed},
		{ID: 4, BaseOffset: 25, EndOffset: -1, State: metadata.SegmentActive},
	}}
	for off, want := range map[int64]int64{0: 1, 9: 1, 10: 3, 24: 3, 25: -1, 1000: -1} {
		s, ok := sealedAt(p, off)
		if got := map[bool]int64{true: s.ID, false: -1}[ok]; got != want {
			t.Fatalf("sealedAt(%d) = segment %d, want %d", off, got, want)
		}
	}
}
