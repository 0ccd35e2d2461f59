package compat

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

var codecs = []struct {
	name string
	opt  kgo.CompressionCodec
	attr int8 // record-batch attributes & 0x07
}{
	{"gzip", kgo.GzipCompression(), 1},
	{"snappy", kgo.SnappyCompression(), 2},
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
}

var filler = strings.Repeat("tusk-compat-payload/", 10) // compressible, so every batch compresses

func franzKey(p, i int) []byte { return fmt.Appendf(nil, "p%d-k%06d", p, i) }
func franzValue(p, i int) []byte {
	return fmt.Appendf(nil, "p%d-v%06d|%s", p, i, filler)
}
func franzHeaders(p, i int) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "codec", Value: []byte(codecs[p].name)},
		{Key: "seq", Value: []byte(strconv.Itoa(i))},
		{Key: "empty", Value: []byte{}},
	}
}

type ack struct {
	partition int32
	offset    int64
	tsMilli   int64
	err       error
	done      bool
}

// TestFranzKgoProduceConsume: 200k keyed records with headers from four
// idempotent acks=all producers (gzip, snappy, lz4, zstd) into 6 partitions;
// everything read back exactly once, at the acknowledged offsets, with the
// stored batches keeping their codec.
func TestFranzKgoProduceConsume(t *testing.T) {
	card(t, "franz-go kgo", "200k records, 4 codecs, idempotent acks=all")
	const (
		topic       = "franz-200k"
		partitions  = 6
		perProducer = 50_000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, partitions, nil)

	acks := make([][]ack, len(codecs))
	var wg sync.WaitGroup
	start := time.Now()
	for p := range codecs {
		acks[p] = make([]ack, perProducer)
		cl := newKgo(t, n,
			kgo.DefaultProduceTopic(topic),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerBatchCompression(codecs[p].opt),
			kgo.ProducerLinger(5*time.Millisecond),
			kgo.RecordDeliveryTimeout(60*time.Second),
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range perProducer {
				r := &kgo.Record{Key: franzKey(p, i), Value: franzValue(p, i), Headers: franzHeaders(p, i)}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					acks[p][i] = ack{partition: r.Partition, offset: r.Offset, tsMilli: r.Timestamp.UnixMilli(), err: err, done: true}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				t.Errorf("producer %s flush: %v", codecs[p].name, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("produced %d records in %v", perProducer*len(codecs), time.Since(start))

	// Index acknowledgements by (partition, offset); each must be unique.
	type ref struct{ p, i int }
	byPos := map[int32]map[int64]ref{}
	for p := range acks {
		last := map[int32]int64{}
		for i, a := range acks[p] {
			if !a.done || a.err != nil {
				t.Fatalf("producer %s record %d: done=%v err=%v", codecs[p].name, i, a.done, a.err)
			}
			if byPos[a.partition] == nil {
				byPos[a.partition] = map[int64]ref{}
			}
			if prev, dup := byPos[a.partition][a.offset]; dup {
				t.Fatalf("two records acknowledged at %d/%d: producer %d #%d and producer %d #%d", a.partition, a.offset, prev.p, prev.i, p, i)
			}
			byPos[a.partition][a.offset] = ref{p, i}
			if l, ok := last[a.partition]; ok && a.offset <= l {
				t.Fatalf("producer %s: record %d acked at %d/%d, not after the previous record of the partition (%d)", codecs[p].name, i, a.partition, a.offset, l)
			}
			last[a.partition] = a.offset
		}
	}
	if len(byPos) != partitions {
		t.Errorf("records landed in %d partitions, want %d", len(byPos), partitions)
	}

	ends := endOffsets(t, adm, topic)
	total := int64(0)
	for part := int32(0); part < partitions; part++ {
		if ends[part] != int64(len(byPos[part])) {
			t.Errorf("partition %d: end offset %d, but %d records acknowledged there", part, ends[part], len(byPos[part]))
		}
		total += ends[part]
	}
	if total != perProducer*int64(len(codecs)) {
		t.Fatalf("sum of end offsets %d, want %d", total, perProducer*len(codecs))
	}

	got := consumeAll(t, n, topic, ends, 90*time.Second)
	mismatches := 0
	for part := int32(0); part < partitions; part++ {
		recs := got[part]
		if int64(len(recs)) != ends[part] {
			t.Fatalf("partition %d: consumed %d records, want %d", part, len(recs), ends[part])
		}
		for idx, r := range recs {
			if r.Offset != int64(idx) {
				t.Fatalf("partition %d: record #%d has offset %d (gap or reorder)", part, idx, r.Offset)
			}
			want, ok := byPos[part][r.Offset]
			if !ok {
				t.Fatalf("partition %d offset %d: no record was acknowledged there", part, r.Offset)
			}
			a := acks[want.p][want.i]
			if err := sameRecord(r, franzKey(want.p, want.i), franzValue(want.p, want.i), franzHeaders(want.p, want.i), a.tsMilli); err != nil {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("partition %d offset %d (producer %s #%d): %v", part, r.Offset, codecs[want.p].name, want.i, err)
				}
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d records differ from what was produced", mismatches)
	}

	// Stored batches keep the producer's codec.
	perCodec := map[int8]int{}
	for part := int32(0); part < partitions; part++ {
		for _, b := range fetchBatches(t, n, topic, part, ends[part]) {
			first, ok := byPos[part][b.BaseOffset]
			if !ok {
				t.Fatalf("partition %d: stored batch at unknown offset %d", part, b.BaseOffset)
			}
			if lastRef := byPos[part][b.BaseOffset+int64(b.LastOffsetDelta)]; lastRef.p != first.p {
				t.Errorf("partition %d: stored batch %d..%d mixes producers %d and %d", part, b.BaseOffset, b.BaseOffset+int64(b.LastOffsetDelta), first.p, lastRef.p)
			}
			if b.NumRecords != b.LastOffsetDelta+1 {
				t.Errorf("partition %d: batch at %d has %d records but lastOffsetDelta %d", part, b.BaseOffset, b.NumRecords, b.LastOffsetDelta)
			}
			if b.Codec() != codecs[first.p].attr {
				t.Errorf("partition %d: batch at %d from the %s producer stored with codec %d, want %d",
					part, b.BaseOffset, codecs[first.p].name, b.Codec(), codecs[first.p].attr)
			}
			perCodec[b.Codec()]++
		}
	}
	for _, c := range codecs {
		if perCodec[c.attr] == 0 {
			t.Errorf("no stored batch with codec %s", c.name)
		}
	}
	t.Logf("stored batches per codec attribute: %v", perCodec)
}

// sameRecord compares a consumed record with what was produced.
func sameRecord(r *kgo.Record, key, value []byte, headers []kgo.RecordHeader, tsMilli int64) error {
	if !bytes.Equal(r.Key, key) {
		return fmt.Errorf("key %q, want %q", r.Key, key)
	}
	if !bytes.Equal(r.Value, value) {
		return fmt.Errorf("value %q, want %q", r.Value, value)
	}
	if len(r.Headers) != len(headers) {
		return fmt.Errorf("%d headers, want %d", len(r.Headers), len(headers))
	}
	for i, h := range headers {
		if r.Headers[i].Key != h.Key || !bytes.Equal(r.Headers[i].Value, h.Value) {
			return fmt.Errorf("header %d = %q:%q, want %q:%q", i, r.Headers[i].Key, r.Headers[i].Value, h.Key, h.Value)
		}
	}
	if tsMilli >= 0 && r.Timestamp.UnixMilli() != tsMilli {
		return fmt.Errorf("timestamp %d, want %d", r.Timestamp.UnixMilli(), tsMilli)
	}
	return nil
}
