package kafkaproto

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRecordTimestampsAllCodecs(t *testing.T) {
	recs := sampleRecords(40) // ~30 KB of values: several xerial blocks
	raw := encodeRecords(recs)
	const base, firstTS = int64(1_000_000), int64(1_700_000_000_000)
	var d Decompressor // reused across codecs, like a real caller
	defer d.Close()
	for _, codec := range allTestCodecs {
		for _, logAppend := range []bool{false, true} {
			b := testBatch{codec: codec, baseOffset: base, firstTS: firstTS, logAppend: logAppend, records: recs}.build(t)
			h, err := ValidateBatch(b)
			if err != nil {
				t.Fatalf("%s: ValidateBatch: %v", codec, err)
			}
			got, err := d.DecompressRecords(b, h)
			if err != nil {
				t.Fatalf("%s: DecompressRecords: %v", codec, err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("%s: decompressed %d bytes, want the %d encoded", codec, len(got), len(raw))
			}
			for name, fn := range map[string]func([]byte) ([]int64, []int64, error){
				"method": d.RecordTimestamps, "func": RecordTimestamps,
			} {
				offs, tss, err := fn(b)
				if err != nil {
					t.Fatalf("%s/%s: RecordTimestamps: %v", codec, name, err)
				}
				if len(offs) != len(recs) || len(tss) != len(recs) {
					t.Fatalf("%s/%s: %d offsets, %d timestamps, want %d", codec, name, len(offs), len(tss), len(recs))
				}
				for i, r := range recs {
					wantTS := firstTS + r.TimestampDelta64
					if logAppend {
						wantTS = h.MaxTimestamp
					}
					if offs[i] != base+int64(i) || tss[i] != wantTS {
						t.Fatalf("%s/%s logAppend=%v record %d: offset %d ts %d, want %d %d",
							codec, name, logAppend, i, offs[i], tss[i], base+int64(i), wantTS)
					}
				}
			}
		}
	}
}

func TestRecordTimestampsExactSmall(t *testing.T) {
	recs := []kmsg.Record{
		{TimestampDelta64: 0, OffsetDelta: 0, Value: []byte("a")},
		{TimestampDelta64: -3, OffsetDelta: 2, Key: []byte("k")}, // gap: compacted away
		{TimestampDelta64: 1 << 40, OffsetDelta: 5, Headers: []kmsg.Header{{Key: "", Value: []byte{}}}},
	}
	raw := encodeRecords(recs)
	b := makeBatch(100, CompressionNone, 5, 50, 50+1<<40, 3, raw)
	offs, tss, err := RecordTimestamps(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{100, 102, 105}; !slices.Equal(offs, want) {
		t.Fatalf("offsets %v, want %v", offs, want)
	}
	if want := []int64{50, 47, 50 + 1<<40}; !slices.Equal(tss, want) {
		t.Fatalf("timestamps %v, want %v", tss, want)
	}

	// An empty batch (all records compacted away) is valid.
	offs, tss, err = RecordTimestamps(makeBatch(7, CompressionNone, 3, 0, 0, 0, nil))
	if err != nil || len(offs) != 0 || len(tss) != 0 {
		t.Fatalf("empty batch: %v %v %v", offs, tss, err)
	}
}

// rec builds a raw record body (without its length) from parts.
func rawRecord(parts ...[]byte) []byte {
	body := slices.Concat(parts...)
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func vi(v int64) []byte { return binary.AppendVarint(nil, v) }

func TestRecordTimestampsCorrupt(t *testing.T) {
	good := rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(1), []byte("x"), vi(0))
	cases := []struct {
		name      string
		records   []byte
		count     int32
		lastDelta int32
		attrs     int16
	}{
		{"count too high", good, 2, 1, 0},
		{"count beyond bytes", good, 1 << 30, 1<<30 - 1, 0},
		{"negative count", good, -1, 0, 0},
		{"trailing bytes", append(slices.Clone(good), 0), 1, 0, 0},
		{"count above last delta", slices.Concat(good, good), 2, 0, 0},
		{"length too large", append(vi(100), good[1:]...), 1, 0, 0},
		{"length too small", append(vi(2), good[1:]...), 1, 0, 0},
		{"negative length", append(vi(-5), good[1:]...), 1, 0, 0},
		{"record body has extra byte", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(0), []byte{9}), 1, 0, 0},
		{"key length below -1", rawRecord([]byte{0}, vi(0), vi(0), vi(-2), vi(-1), vi(0)), 1, 0, 0},
		{"value overruns record", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(9), vi(0)), 1, 0, 0},
		{"null header key", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(-1), vi(-1)), 1, 0, 0},
		{"negative header count", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(-1), []byte{0, 0}), 1, 0, 0},
		{"huge header count", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1<<30)), 1, 0, 0},
		{"offset delta beyond last", rawRecord([]byte{0}, vi(0), vi(3), vi(-1), vi(-1), vi(0)), 1, 0, 0},
		{"negative offset delta", rawRecord([]byte{0}, vi(0), vi(-1), vi(-1), vi(-1), vi(0)), 1, 0, 0},
		{"offset deltas not increasing", slices.Concat(good, good), 2, 1, 0},
		{"offset delta over int32", rawRecord([]byte{0}, vi(0), vi(1<<33), vi(-1), vi(-1), vi(0)), 1, 0, 0},
		{"overlong varint", rawRecord([]byte{0}, vi(0), []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, vi(-1), vi(-1), vi(0)), 1, 0, 0},
		{"varlong overflow", rawRecord([]byte{0}, bytes.Repeat([]byte{0xff}, 11), vi(0)), 1, 0, 0},
		{"truncated varint", rawRecord([]byte{0}, vi(0), []byte{0x80, 0x80, 0x80, 0x80}), 1, 0, 0},
		{"records run out", rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(20), make([]byte, 20), vi(0)), 2, 1, 0},
		{"unknown codec", good, 1, 0, 5},
		{"gzip garbage", good, 1, 0, CompressionGzip},
		{"snappy garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}, 1, 0, CompressionSnappy},
		{"lz4 garbage", good, 1, 0, CompressionLZ4},
		{"zstd garbage", good, 1, 0, CompressionZstd},
		{"xerial short header", xerialEncode(good, 64)[:12], 1, 0, CompressionSnappy},
		{"xerial trailing bytes", append(xerialEncode(good, 64), 0, 0), 1, 0, CompressionSnappy},
		{"xerial block overruns", func() []byte {
			x := xerialEncode(good, 64)
			binary.BigEndian.PutUint32(x[xerialHeaderSize:], 1<<31)
			return x
		}(), 1, 0, CompressionSnappy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := makeBatch(0, c.attrs, c.lastDelta, 0, 0, c.count, c.records)
			offs, tss, err := RecordTimestamps(b)
			if !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("got %v %v, err %v; want ErrCorruptBatch", offs, tss, err)
			}
			t.Log(err)
		})
	}

	// Sanity: the good record decodes.
	if _, _, err := RecordTimestamps(makeBatch(0, 0, 0, 0, 0, 1, good)); err != nil {
		t.Fatalf("good record: %v", err)
	}
}

func TestRecordTimestampsBatchFraming(t *testing.T) {
	b := testBatch{codec: codecGzip, records: sampleRecords(3)}.build(t)
	if _, _, err := RecordTimestamps(b[:len(b)-1]); !errors.Is(err, ErrShortBatch) {
		t.Fatalf("truncated: %v", err)
	}
	if _, _, err := RecordTimestamps(append(slices.Clone(b), 0)); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("trailing byte: %v", err)
	}
	c := slices.Clone(b)
	c[len(c)-1] ^= 1
	if _, _, err := RecordTimestamps(c); !errors.Is(err, ErrBadCRC) {
		t.Fatalf("bad CRC: %v", err)
	}
	if _, _, err := RecordTimestamps(b[:20]); !errors.Is(err, ErrShortBatch) {
		t.Fatalf("short header: %v", err)
	}
	h, _ := ParseBatchHeader(b)
	if _, err := DecompressRecords(b[:len(b)-1], h); !errors.Is(err, ErrShortBatch) {
		t.Fatalf("DecompressRecords on truncated: %v", err)
	}
}

func TestDecompressMaxSize(t *testing.T) {
	// 64 KiB of zeros compresses to very little with every codec.
	recs := []kmsg.Record{{Value: make([]byte, 64<<10)}}
	for _, codec := range allTestCodecs[1:] {
		b := testBatch{codec: codec, records: recs}.build(t)
		h, err := ValidateBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		d := Decompressor{MaxSize: 32 << 10}
		if _, err := d.DecompressRecords(b, h); !errors.Is(err, ErrDecompressedTooLarge) {
			t.Fatalf("%s: got %v, want ErrDecompressedTooLarge", codec, err)
		}
		// The same Decompressor recovers with a larger limit.
		d.MaxSize = 1 << 20
		out, err := d.DecompressRecords(b, h)
		if err != nil || len(out) != len(encodeRecords(recs)) {
			t.Fatalf("%s: after raising limit: %d bytes, %v", codec, len(out), err)
		}
		d.Close()
	}
}

// A Decompressor keeps working after a corrupt input left a codec reader in
// an error state.
func TestDecompressorReuseAfterError(t *testing.T) {
	var d Decompressor
	defer d.Close()
	for _, codec := range allTestCodecs[1:] {
		good := testBatch{codec: codec, records: sampleRecords(4)}.build(t)
		bad := slices.Clone(good)
		for i := BatchHeaderSize + 2; i < len(bad); i++ {
			bad[i] ^= 0x5a
		}
		fixCRC(bad)
		for range 2 {
			if _, _, err := d.RecordTimestamps(bad); err == nil {
				t.Fatalf("%s: corrupt payload accepted", codec)
			}
			if _, _, err := d.RecordTimestamps(good); err != nil {
				t.Fatalf("%s: good batch after a bad one: %v", codec, err)
			}
		}
	}
}

func TestVarints(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, 1<<31 - 1, -1 << 31} {
		got, rest, err := varint32(append(vi(v), 0xAA))
		if err != nil || int64(got) != v || len(rest) != 1 {
			t.Fatalf("varint32(%d) = %d, %v, %v", v, got, rest, err)
		}
	}
	if _, _, err := varint32(vi(1 << 31)); err == nil {
		t.Fatal("varint32 accepted 2^31")
	}
	for _, v := range []int64{0, -1, 1 << 62, -1 << 63, 1<<63 - 1} {
		got, _, err := varint64(vi(v))
		if err != nil || got != v {
			t.Fatalf("varint64(%d) = %d, %v", v, got, err)
		}
	}
}

// TestRecordTimestampsKgoInterop decodes batches exactly as franz-go's
// producer writes them, fetched raw from the kfake broker. (The xerial
// snappy framing the Java client uses is covered by the hand-built batches.)
func TestRecordTimestampsKgoInterop(t *testing.T) {
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	wantCodec := map[string]int{"none": CompressionNone, "gzip": CompressionGzip, "snappy": CompressionSnappy, "lz4": CompressionLZ4, "zstd": CompressionZstd}
	topics := make([]string, 0, len(codecs))
	for name := range codecs {
		topics = append(topics, "interop-"+name)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 500
	base := time.UnixMilli(1_700_000_000_000)
	var d Decompressor
	defer d.Close()
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "interop-" + name
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
				kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = &kgo.Record{
					Value:     bytes.Repeat([]byte(fmt.Sprintf("value-%d-", i)), 20+i%50),
					Timestamp: base.Add(time.Duration(i*7-300) * time.Millisecond),
				}
				if i%4 == 0 {
					recs[i].Headers = []kgo.RecordHeader{{Key: "h", Value: []byte{byte(i)}}}
				}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			req := kmsg.NewPtrFetchRequest()
			req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 100, 1, 64<<20
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = topic, details[topic].ID
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 64 << 20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("fetch response %+v", resp)
			}
			var offs, tss []int64
			batches := 0
			err = SplitBatches(resp.Topics[0].Partitions[0].RecordBatches, func(b []byte, h BatchHeader) error {
				if _, err := ValidateBatch(b); err != nil {
					return err
				}
				if h.Compression() != wantCodec[name] {
					return fmt.Errorf("batch codec %d, want %d", h.Compression(), wantCodec[name])
				}
				if name == "snappy" {
					t.Logf("xerial framing: %v", bytes.HasPrefix(b[BatchHeaderSize:], xerialMagic[:]))
				}
				o, ts, err := d.RecordTimestamps(b)
				offs, tss = append(offs, o...), append(tss, ts...)
				batches++
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d records in %d batches", len(offs), batches)
			if len(offs) != n {
				t.Fatalf("decoded %d records from %d batches, want %d", len(offs), batches, n)
			}
			for i := range offs {
				if offs[i] != int64(i) || tss[i] != recs[i].Timestamp.UnixMilli() {
					t.Fatalf("record %d: offset %d ts %d, want %d %d", i, offs[i], tss[i], i, recs[i].Timestamp.UnixMilli())
				}
			}
		})
	}
}
