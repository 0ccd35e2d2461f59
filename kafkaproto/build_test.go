package kafkaproto

import (
	"bytes"
	"testing"
)

func TestAppendBatchRoundTrip(t *testing.T) {
	in := []KV{{Key: []byte("k1"), Value: []byte("v1")}, {Key: []byte("k2"), Value: nil}, {Key: nil, Value: bytes.Repeat([]byte{7}, 300)}}
	b := AppendBatch([]byte("prefix"), 1234, in)[len("prefix"):]
	h, err := ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.RecordCount != 3 || h.ProducerID != -1 || h.BaseSequence != -1 || h.MaxTimestamp != 1234 {
		t.Fatalf("header %+v", h)
	}
	SetBaseOffset(b, 40)
	var d Decompressor
	recs, err := d.Records(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Offset != int64(40+i) || r.Timestamp != 1234 || !bytes.Equal(r.Key, in[i].Key) || !bytes.Equal(r.Value, in[i].Value) ||
			(r.Key == nil) != (in[i].Key == nil) || (r.Value == nil) != (in[i].Value == nil) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}
