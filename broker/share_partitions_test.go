package broker

import (
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/storage"
)

// txnBatchAt is a transactional batch of n records of producer pid at
// base; control makes it a marker (abort: ABORT, else COMMIT).
func txnBatchAt(base int64, n int, pid int64, control, abort bool) []byte {
	rb := kmsg.NewRecordBatch()
	rb.FirstOffset = base
	rb.Magic = 2
	rb.Attributes = 0x10
	if control {
		rb.Attributes |= 0x20
	}
	rb.LastOffsetDelta = int32(n - 1)
	rb.NumRecords = int32(n)
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = pid, 0, 0
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		if control {
			typ := uint16(1)
			if abort {
				typ = 0
			}
			r.Key = binary.BigEndian.AppendUint16([]byte{0, 0}, typ)
			r.Value = []byte{0, 0, 0, 0, 0, 0}
		} else {
			r.Value = []byte("v")
		}
		recs = r.AppendTo(recs)
	}
	rb.Records = recs
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	rb.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return rb.AppendTo(nil)
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// TestShareBatchSpans: batch boundaries, markers and read_committed's
// aborted records as share acquisition sees them. Producer 7 aborts
// [2, 4) (ABORT at 4), producer 8 commits [5, 6) (COMMIT at 6), producer
// 7 writes again at 7 (its transaction is open, not aborted).
func TestShareBatchSpans(t *testing.T) {
	data := cat(batchAt(0, 2), txnBatchAt(2, 2, 7, false, false), txnBatchAt(4, 1, 7, true, true),
		txnBatchAt(5, 1, 8, false, false), txnBatchAt(6, 1, 8, true, false), txnBatchAt(7, 3, 7, false, false))
	spans, err := batchSpans(data)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		base, last  int64
		ctl, ab, sk bool
	}
	view := func() []got {
		var out []got
		for _, s := range spans {
			out = append(out, got{s.base, s.last, s.control, s.abort, s.skip})
		}
		return out
	}
	want := []got{{0, 1, false, false, false}, {2, 3, false, false, false}, {4, 4, true, true, true}, {5, 5, false, false, false}, {6, 6, true, false, true}, {7, 9, false, false, false}}
	if !reflect.DeepEqual(view(), want) {
		t.Fatalf("spans %+v, want %+v", view(), want)
	}
	if spans[len(spans)-1].end != len(data) {
		t.Fatalf("last batch ends at byte %d of %d", spans[len(spans)-1].end, len(data))
	}
	skipAborted(spans, []storage.AbortedTxn{{ProducerID: 7, FirstOffset: 2}})
	want[1].sk = true
	if !reflect.DeepEqual(view(), want) {
		t.Fatalf("read_committed spans %+v, want %+v", view(), want)
	}
	// Truncated or corrupt bytes are an error, never a panic.
	for _, bad := range [][]byte{data[:len(data)-1], data[:30], append(append([]byte{}, data...), 1, 2, 3)} {
		if _, err := batchSpans(bad); err == nil {
			t.Fatalf("%d bytes: no error", len(bad))
		}
	}
}

func FuzzShareBatchSpans(f *testing.F) {
	f.Add(cat(batchAt(0, 2), txnBatchAt(2, 2, 7, false, false), txnBatchAt(4, 1, 7, true, true)))
	f.Add(txnBatchAt(6, 1, 8, true, false))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		spans, err := batchSpans(data)
		if err != nil {
			return
		}
		end := 0
		for _, s := range spans {
			if s.last < s.base || s.end <= end || s.end > len(data) {
				t.Fatalf("span %+v after byte %d of %d", s, end, len(data))
			}
			end = s.end
		}
		skipAborted(spans, []storage.AbortedTxn{{ProducerID: 7, FirstOffset: 0}})
	})
}

// TestShareReadSize: a share-partition reads 1 MiB before it knows its
// records' size, then what MaxRecords take at the learned bytes per
// record with a quarter to spare (at least 64 KiB), never more than the
// request's MaxBytes: a 50 MB MaxBytes with 500 records of 1 KiB reads
// about 640 KB, not 50 MB.
func TestShareReadSize(t *testing.T) {
	var sp sharePart
	if got := sp.readSize(500, 50<<20); got != 1<<20 {
		t.Fatalf("no estimate: %d, want 1 MiB", got)
	}
	if got := sp.readSize(500, 4096); got != 4096 {
		t.Fatalf("no estimate, small MaxBytes: %d, want 4096", got)
	}
	sp.learnRecordBytes(1024*100, 100)
	if got := sp.readSize(500, 50<<20); got != 640000 {
		t.Fatalf("1 KiB records: %d, want 640000", got)
	}
	if got := sp.readSize(10, 50<<20); got != 64<<10 {
		t.Fatalf("10 records: %d, want the 64 KiB floor", got)
	}
	sp.learnRecordBytes(3072*10, 10) // 0.75*1024 + 0.25*3072 = 1536
	if sp.recordBytes != 1536 {
		t.Fatalf("estimate %v, want 1536", sp.recordBytes)
	}
	sp.learnRecordBytes(0, 0) // nothing read: unchanged
	if sp.recordBytes != 1536 {
		t.Fatalf("empty read changed the estimate: %v", sp.recordBytes)
	}
}

// TestShareDropPartition: dropping a deleted topic's partition removes
// its share-partitions of every group, marks them gone and stops their
// timers; other partitions and topics stay.
func TestShareDropPartition(t *testing.T) {
	a, b := [16]byte{1}, [16]byte{2}
	h := &shareHost{parts: map[sharePartKey]*sharePart{}}
	keys := []sharePartKey{{"g1", a, 0}, {"g2", a, 0}, {"g1", a, 1}, {"g1", b, 0}}
	for _, k := range keys {
		h.parts[k] = &sharePart{key: k, timer: time.NewTimer(time.Hour)}
	}
	dropped := []*sharePart{h.parts[keys[0]], h.parts[keys[1]]}
	h.dropPartition(a, 0)
	if len(h.parts) != 2 || h.parts[keys[2]] == nil || h.parts[keys[3]] == nil {
		t.Fatalf("left %v, want a/1 and b/0", h.parts)
	}
	for _, sp := range dropped {
		if !sp.gone || sp.timer.Stop() {
			t.Fatalf("%v: gone %v, timer still armed", sp.key, sp.gone)
		}
	}
	h.close()
	if len(h.parts) != 0 {
		t.Fatalf("close left %d", len(h.parts))
	}
}
