package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
)

// memSection is a sectionSource over bytes.
type memSection struct {
	b      []byte
	closed bool
}

func (m *memSection) Len() int64 { return int64(len(m.b)) }
func (m *memSection) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m.b)
	return int64(n), err
}
func (m *memSection) Bytes() ([]byte, error) { return append([]byte(nil), m.b...), nil }
func (m *memSection) Close() error           { m.closed = true; return nil }

// assemble is what the connection writer puts on the wire.
func assemble(t *testing.T, frame []byte, splices []splice) []byte {
	t.Helper()
	var out bytes.Buffer
	prev := 0
	for _, sp := range splices {
		out.Write(frame[prev:sp.at])
		if _, err := sp.sec.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		prev = sp.at
	}
	out.Write(frame[prev:])
	return out.Bytes()
}

// The spliced encoding equals kmsg's encoding of the same response with
// the records in place, for every advertised Fetch version and record sets
// whose length prefixes take 1 to 3 varint bytes.
func TestFetchSpliceMatchesCopy(t *testing.T) {
	a := apiFetch()
	sizes := []int{1, 61, 126, 127, 128, 300, 16383, 16384, 70000}
	for v := a.min; v <= a.max; v++ {
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		var secs []fetchSection
		records := map[*kmsg.FetchResponseTopicPartition][]byte{}
		for ti := 0; ti < 2; ti++ {
			st := kmsg.NewFetchResponseTopic()
			st.Topic = fmt.Sprintf("topic-%d", ti)
			st.TopicID = [16]byte{byte(ti + 1), 2, 3}
			st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(sizes)+1)
			for pi := range st.Partitions {
				sp := &st.Partitions[pi]
				*sp = kmsg.NewFetchResponseTopicPartition()
				sp.Partition = int32(pi)
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 1000+int64(pi), 1000+int64(pi), 3
				sp.PreferredReadReplica = -1
				sp.RecordBatches = noRecords
				if pi == len(sizes) {
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
					continue
				}
				b := bytes.Repeat([]byte{byte(pi), byte(ti)}, sizes[pi])[:sizes[pi]]
				records[sp] = b
				if pi%3 == 1 {
					sp.RecordBatches = b // a copied partition between sections
					continue
				}
				secs = append(secs, fetchSection{part: sp, sec: &memSection{b: b}})
			}
			resp.Topics = append(resp.Topics, st)
		}
		flexHeader := resp.IsFlexible()
		z := &splicedFetch{FetchResponse: resp, secs: secs}
		frame, splices, err := z.encode(42, flexHeader)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		got := assemble(t, frame, splices)
		for sp, b := range records {
			sp.RecordBatches = b
		}
		want := kafkaproto.AppendResponse(nil, 42, flexHeader, resp)
		if !bytes.Equal(got, want) {
			t.Fatalf("v%d: spliced frame (%d bytes) differs from the copied one (%d bytes)", v, len(got), len(want))
		}
	}
}

// rawFetch sends one Fetch request on c and returns the response frame.
func rawFetch(t *testing.T, c net.Conn, req *kmsg.FetchRequest, corr int32) []byte {
	t.Helper()
	var msg []byte
	msg = binary.BigEndian.AppendUint16(msg, uint16(kmsg.Fetch))
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.Version))
	msg = binary.BigEndian.AppendUint32(msg, uint32(corr))
	msg = binary.BigEndian.AppendUint16(msg, 4)
	msg = append(msg, "test"...)
	if req.IsFlexible() {
		msg = append(msg, 0)
	}
	msg = req.AppendTo(msg)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := c.Write(append(frame, msg...)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(sz[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return append(sz[:], body...)
}

// Over a real TCP connection, Fetch answers with sendfile are byte for
// byte the copying path's answers, for every advertised version, and carry
// the records.
func TestFetchSendfileMatchesCopyOverTCP(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) { c.Storage.Fsync = "interval" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	created, err := adm.CreateTopic(ctx, 3, 1, nil, "zc")
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, b, kgo.DefaultProduceTopic("zc"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := 0; i < 600; i++ {
		r := &kgo.Record{Partition: int32(i % 3), Value: bytes.Repeat([]byte{byte(i)}, 100+i%700)}
		cl.Produce(ctx, r, nil)
		if i%50 == 49 {
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := apiFetch()
	corr := int32(0)
	for v := a.min; v <= a.max; v++ {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(v)
		req.ReplicaID = -1
		req.MaxBytes = 40000
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "zc"
		rt.TopicID = created.ID
		for p := int32(0); p < 4; p++ { // partition 3 does not exist
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = p
			rp.FetchOffset = int64(p * 7)
			rp.PartitionMaxBytes = 10000 + 5000*p
			rp.CurrentLeaderEpoch = -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		b.sendfileOff.Store(false)
		corr++
		zero := rawFetch(t, c, req, corr)
		b.sendfileOff.Store(true)
		copied := rawFetch(t, c, req, corr)
		if !bytes.Equal(zero, copied) {
			t.Fatalf("v%d: sendfile answer (%d bytes) differs from the copied one (%d bytes)", v, len(zero), len(copied))
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		body := zero[8:]
		if resp.IsFlexible() {
			body = body[1:]
		}
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("v%d: decode: %v", v, err)
		}
		n := 0
		for _, p := range resp.Topics[0].Partitions[:3] {
			if p.ErrorCode != 0 {
				t.Fatalf("v%d: partition %d error %d", v, p.Partition, p.ErrorCode)
			}
			n += len(p.RecordBatches)
		}
		if n < 20000 || n > 40000 {
			t.Fatalf("v%d: %d record bytes", v, n)
		}
	}
	var sent dto.Metric
	if err := b.m.sendfileBytes.Write(&sent); err != nil || sent.GetCounter().GetValue() == 0 {
		t.Fatal("no record bytes went out by sendfile")
	}
}
