package compat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newKgo returns a franz-go client seeded with the node; closed on cleanup.
func newKgo(t *testing.T, n *node, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(n.Kafka),
		kgo.ClientID("tusk-compat"),
		kgo.RetryTimeout(20 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdm(t *testing.T, n *node) (*kadm.Client, *kgo.Client) {
	cl := newKgo(t, n)
	return kadm.NewClient(cl), cl
}

// createTopic creates a topic (replication factor -1: broker default) and
// fails the test unless it was created.
func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	ctx := ctxTimeout(t, 20*time.Second)
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %q: %v", topic, err)
	}
	waitTopicReady(t, adm, topic, int(partitions))
	return resp
}

// waitTopicReady polls Metadata until the topic shows n partitions, each
// with a leader.
func waitTopicReady(t *testing.T, adm *kadm.Client, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		if err != nil {
			last = err.Error()
		} else if td, ok := md.Topics[topic]; !ok {
			last = "missing from metadata"
		} else if td.Err != nil {
			last = td.Err.Error()
		} else if len(td.Partitions) != n {
			last = fmt.Sprintf("%d partitions", len(td.Partitions))
		} else {
			ok := true
			for _, p := range td.Partitions {
				if p.Leader < 0 || p.Err != nil {
					ok = false
					last = fmt.Sprintf("partition %d leader %d err %v", p.Partition, p.Leader, p.Err)
				}
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("topic %q not ready with %d partitions: %s", topic, n, last)
}

func strp(s string) *string { return &s }

// endOffsets returns partition → high watermark.
func endOffsets(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx := ctxTimeout(t, 15*time.Second)
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets %s: %v", topic, err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("ListEndOffsets %s/%d: %v", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// consumeAll reads every record of topic from the log start until each
// partition reaches the given end offset. It fails on any fetch error or timeout and
// on records beyond the end offsets.
func consumeAll(t *testing.T, n *node, topic string, ends map[int32]int64, timeout time.Duration) map[int32][]*kgo.Record {
	t.Helper()
	out := map[int32][]*kgo.Record{}
	adm, _ := newAdm(t, n)
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	starts, err := adm.ListStartOffsets(sctx, topic)
	scancel()
	if err != nil {
		t.Fatalf("ListStartOffsets %s: %v", topic, err)
	}
	want := int64(0)
	for p, e := range ends {
		s, ok := starts.Lookup(topic, p)
		if !ok || s.Err != nil {
			t.Fatalf("ListStartOffsets %s/%d: ok=%v err=%v", topic, p, ok, s.Err)
		}
		want += e - s.Offset
	}
	if want == 0 {
		return out
	}
	cl := newKgo(t, n,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := int64(0)
	for got < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: timed out after %v with %d/%d records", topic, timeout, got, want)
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Fatalf("consume %s/%d: fetch error: %v", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= ends[r.Partition] {
				t.Fatalf("consume %s/%d: record at offset %d beyond end offset %d", r.Topic, r.Partition, r.Offset, ends[r.Partition])
			}
			out[r.Partition] = append(out[r.Partition], r)
			got++
		})
	}
	return out
}

// ---------------------------------------------------------------------------
// Raw Kafka protocol connection (hand-framed, kmsg-encoded bodies).

type rawConn struct {
	t    *testing.T
	c    net.Conn
	corr int32
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c}
}

// appendRequestHeader appends a request header: v1 (api key, version,
// correlation id, nullable client id) plus an empty tagged-field section
// when flexible (header v2).
func appendRequestHeader(b []byte, key, version int16, corr int32, clientID string, flexible bool) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if flexible {
		b = append(b, 0)
	}
	return b
}

func frame(payload []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(out, payload...)
}

func (rc *rawConn) write(b []byte) error {
	_ = rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := rc.c.Write(b)
	return err
}

// send encodes req with its version and writes one frame; returns the
// correlation id used.
func (rc *rawConn) send(req kmsg.Request) (int32, error) {
	rc.corr++
	payload := appendRequestHeader(nil, req.Key(), req.GetVersion(), rc.corr, "tusk-compat-raw", req.IsFlexible())
	payload = req.AppendTo(payload)
	return rc.corr, rc.write(frame(payload))
}

// readFrame reads one size-prefixed frame within d.
func (rc *rawConn) readFrame(d time.Duration) ([]byte, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	var sz [4]byte
	if _, err := io.ReadFull(rc.c, sz[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n > 256<<20 {
		return nil, fmt.Errorf("response frame size %d too large", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc.c, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// roundTrip sends req and decodes the response (header v0, or v1 for
// flexible responses other than ApiVersions).
func (rc *rawConn) roundTrip(req kmsg.Request) (kmsg.Response, error) {
	return rc.roundTripWithin(req, 15*time.Second)
}

// roundTripWithin is roundTrip waiting at most d for the response.
func (rc *rawConn) roundTripWithin(req kmsg.Request, d time.Duration) (kmsg.Response, error) {
	corr, err := rc.send(req)
	if err != nil {
		return nil, err
	}
	body, err := rc.readFrame(d)
	if err != nil {
		return nil, err
	}
	if len(body) < 4 {
		return nil, fmt.Errorf("short response (%d bytes)", len(body))
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		// response header v1: tagged fields (we only accept none)
		if len(body) == 0 || body[0] != 0 {
			return nil, errors.New("unexpected tagged fields in response header")
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %T v%d: %w", resp, req.GetVersion(), err)
	}
	return resp, nil
}

// expectClosed waits up to d for the broker to close the
// connection. It returns "closed", "response" (a frame arrived) or fails
// the test if nothing happens (the broker hangs on the connection).
func (rc *rawConn) expectClosed(d time.Duration) (string, []byte) {
	rc.t.Helper()
	body, err := rc.readFrame(d)
	if err == nil {
		return "response", body
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatalf("broker neither closed the connection nor answered within %v", d)
	}
	return "closed", nil
}

// apiVersions returns the broker's advertised key → [min,max].
func apiVersions(t *testing.T, addr string) map[int16][2]int16 {
	t.Helper()
	rc := dialRaw(t, addr)
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	resp, err := rc.roundTrip(req)
	if err != nil {
		t.Fatalf("ApiVersions v0: %v", err)
	}
	r := resp.(*kmsg.ApiVersionsResponse)
	if r.ErrorCode != 0 {
		t.Fatalf("ApiVersions v0 error %v", kerr.ErrorForCode(r.ErrorCode))
	}
	out := map[int16][2]int16{}
	for _, k := range r.ApiKeys {
		out[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	return out
}

// pickVersion chooses the highest version in [lo,hi] the broker supports.
func pickVersion(t *testing.T, av map[int16][2]int16, key kmsg.Key, lo, hi int16) int16 {
	t.Helper()
	r, ok := av[key.Int16()]
	if !ok {
		t.Fatalf("broker does not advertise %s", key.Name())
	}
	v := min(hi, r[1])
	if v < lo || v < r[0] {
		t.Fatalf("broker advertises %s v%d-v%d; need a version in v%d-v%d", key.Name(), r[0], r[1], lo, hi)
	}
	return v
}

// ---------------------------------------------------------------------------
// Record batches

// batchInfo is the header of one stored v2 record batch.
type batchInfo struct {
	BaseOffset      int64
	LastOffsetDelta int32
	Magic           int8
	Attributes      int16
	NumRecords      int32
	CRCOK           bool
}

func (b batchInfo) Codec() int8 { return int8(b.Attributes & 0x07) }

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// parseBatches splits a Fetch response's Records bytes into v2 batch
// headers; a trailing partial batch (allowed by Kafka) is ignored.
func parseBatches(t *testing.T, b []byte) []batchInfo {
	t.Helper()
	var out []batchInfo
	for len(b) >= 61 {
		length := int32(binary.BigEndian.Uint32(b[8:12]))
		total := 12 + int(length)
		if length < 49 || total > len(b) {
			break // partial batch at the end
		}
		bi := batchInfo{
			BaseOffset:      int64(binary.BigEndian.Uint64(b[0:8])),
			Magic:           int8(b[16]),
			Attributes:      int16(binary.BigEndian.Uint16(b[21:23])),
			LastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:27])),
			NumRecords:      int32(binary.BigEndian.Uint32(b[57:61])),
		}
		if bi.Magic != 2 {
			t.Fatalf("stored batch at offset %d has magic %d, want 2", bi.BaseOffset, bi.Magic)
		}
		bi.CRCOK = crc32.Checksum(b[21:total], crc32c) == binary.BigEndian.Uint32(b[17:21])
		out = append(out, bi)
		b = b[total:]
	}
	return out
}

// fetchBatches reads all stored batches of one partition from offset 0 up
// to end with raw Fetch requests (v4..v12, names not topic IDs) and returns
// their headers.
func fetchBatches(t *testing.T, n *node, topic string, partition int32, end int64) []batchInfo {
	t.Helper()
	av := apiVersions(t, n.Kafka)
	v := pickVersion(t, av, kmsg.Fetch, 4, 12)
	rc := dialRaw(t, n.Kafka)
	var out []batchInfo
	next := int64(0)
	deadline := time.Now().Add(30 * time.Second)
	for next < end {
		if time.Now().After(deadline) {
			t.Fatalf("raw fetch %s/%d: stuck at offset %d of %d", topic, partition, next, end)
		}
		req := kmsg.NewPtrFetchRequest()
		req.Version = v
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MinBytes = 1
		req.MaxBytes = 32 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.FetchOffset = next
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = 16 << 20
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := rc.roundTrip(req)
		if err != nil {
			t.Fatalf("raw fetch v%d %s/%d@%d: %v", v, topic, partition, next, err)
		}
		fr := resp.(*kmsg.FetchResponse)
		if fr.ErrorCode != 0 {
			t.Fatalf("raw fetch: top-level error %v", kerr.ErrorForCode(fr.ErrorCode))
		}
		if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
			t.Fatalf("raw fetch: unexpected response shape %+v", fr.Topics)
		}
		fp := fr.Topics[0].Partitions[0]
		if fp.ErrorCode != 0 {
			t.Fatalf("raw fetch %s/%d@%d: %v", topic, partition, next, kerr.ErrorForCode(fp.ErrorCode))
		}
		bs := parseBatches(t, fp.RecordBatches)
		for _, b := range bs {
			if !b.CRCOK {
				t.Errorf("stored batch %s/%d@%d: CRC-32C mismatch", topic, partition, b.BaseOffset)
			}
			if b.BaseOffset+int64(b.LastOffsetDelta) < next {
				continue // batch fully before our offset (broker may return whole batch)
			}
			out = append(out, b)
			next = b.BaseOffset + int64(b.LastOffsetDelta) + 1
		}
	}
	return out
}

// buildBatch builds a valid uncompressed magic-2 record batch with the
// given values (keys "k<i>"), base offset 0 and the given timestamp.
func buildBatch(values [][]byte, ts int64) []byte {
	var recs []byte
	for i, v := range values {
		var rec []byte
		rec = append(rec, 0)                     // attributes
		rec = binary.AppendVarint(rec, 0)        // timestamp delta
		rec = binary.AppendVarint(rec, int64(i)) // offset delta
		key := fmt.Sprintf("k%d", i)
		rec = binary.AppendVarint(rec, int64(len(key))) // key
		rec = append(rec, key...)
		rec = binary.AppendVarint(rec, int64(len(v))) // value
		rec = append(rec, v...)
		rec = binary.AppendVarint(rec, 0) // headers count
		recs = binary.AppendVarint(recs, int64(len(rec)))
		recs = append(recs, rec...)
	}
	var b []byte
	b = binary.BigEndian.AppendUint64(b, 0)                     // base offset
	b = binary.BigEndian.AppendUint32(b, 0)                     // length, patched
	b = binary.BigEndian.AppendUint32(b, 0)                     // partition leader epoch
	b = append(b, 2)                                            // magic
	b = binary.BigEndian.AppendUint32(b, 0)                     // crc, patched
	b = binary.BigEndian.AppendUint16(b, 0)                     // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)-1)) // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(ts))            // first timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(ts))            // max timestamp
	b = binary.BigEndian.AppendUint64(b, ^uint64(0))            // producer id -1
	b = binary.BigEndian.AppendUint16(b, ^uint16(0))            // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, ^uint32(0))            // base sequence -1
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))   // records count
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32.Checksum(b[21:], crc32c))
	return b
}

// buildMagic1 builds a legacy magic-1 message set holding one message.
func buildMagic1(key, value []byte, ts int64) []byte {
	var m []byte
	m = append(m, 1, 0) // magic, attributes
	m = binary.BigEndian.AppendUint64(m, uint64(ts))
	m = binary.BigEndian.AppendUint32(m, uint32(len(key)))
	m = append(m, key...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(value)))
	m = append(m, value...)
	crc := crc32.ChecksumIEEE(m)
	msg := binary.BigEndian.AppendUint32(nil, crc)
	msg = append(msg, m...)
	var set []byte
	set = binary.BigEndian.AppendUint64(set, 0)
	set = binary.BigEndian.AppendUint32(set, uint32(len(msg)))
	return append(set, msg...)
}

// produceRaw sends one Produce (acks=-1) carrying records for topic/partition
// and returns the partition's error code and base offset.
func produceRaw(t *testing.T, rc *rawConn, version int16, topic string, partition int32, records []byte) (int16, int64) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := rc.roundTrip(req)
	if err != nil {
		t.Fatalf("produce v%d to %q/%d: %v", version, topic, partition, err)
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		t.Fatalf("produce to %q/%d: unexpected response shape %+v", topic, partition, pr.Topics)
	}
	if pr.Topics[0].Topic != topic || pr.Topics[0].Partitions[0].Partition != partition {
		t.Fatalf("produce response names %q/%d, want %q/%d", pr.Topics[0].Topic, pr.Topics[0].Partitions[0].Partition, topic, partition)
	}
	p := pr.Topics[0].Partitions[0]
	return p.ErrorCode, p.BaseOffset
}

func errName(code int16) string {
	if code == 0 {
		return "NONE(0)"
	}
	if err := kerr.ErrorForCode(code); err != nil {
		return fmt.Sprintf("%v(%d)", err, code)
	}
	return fmt.Sprintf("code %d", code)
}
