package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
)

// sessionClient sends raw Fetch v13 requests for two partitions of one
// topic and keeps the session's ID and epoch.
type sessionClient struct {
	t     *testing.T
	cl    *kgo.Client
	topic [16]byte
	id    int32
	epoch int32
}

// fetchPos is one partition's fetch offset in a request.
type fetchPos struct {
	p      int32
	offset int64
}

func (c *sessionClient) fetch(ctx context.Context, parts []fetchPos, forget []int32, wait time.Duration) *kmsg.FetchResponse {
	c.t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 13
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(wait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.SessionID, req.SessionEpoch = c.id, c.epoch
	if len(parts) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.TopicID = c.topic
		for _, fp := range parts {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = fp.p, fp.offset, 1<<20
			rp.CurrentLeaderEpoch = -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	if len(forget) > 0 {
		ft := kmsg.NewFetchRequestForgottenTopic()
		ft.TopicID, ft.Partitions = c.topic, forget
		req.ForgottenTopics = append(req.ForgottenTopics, ft)
	}
	resp, err := req.RequestWith(ctx, c.cl.Broker(1))
	if err != nil {
		c.t.Fatalf("fetch: %v", err)
	}
	return resp
}

// records maps each partition in resp to the values of its records.
func records(t *testing.T, resp *kmsg.FetchResponse) map[int32][]string {
	t.Helper()
	out := map[int32][]string{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("partition %d: %v", rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
			}
			var vals []string
			for b := rp.RecordBatches; len(b) > 0; {
				var batch kmsg.RecordBatch
				if err := batch.ReadFrom(b); err != nil {
					t.Fatal(err)
				}
				b = b[batch.Length+12:]
				recs := batch.Records
				for len(recs) > 0 {
					var r kmsg.Record
					if err := r.ReadFrom(recs); err != nil {
						t.Fatal(err)
					}
					recs = recs[r.Length+int32(kvarintLen(r.Length)):]
					vals = append(vals, string(r.Value))
				}
			}
			out[rp.Partition] = vals
		}
	}
	return out
}

func kvarintLen(v int32) int {
	u := uint32(v<<1) ^ uint32(v>>31)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// TestFetchSessions walks one KIP-227 session: a full fetch creates it and
// answers every partition; incremental fetches answer only partitions with
// something new (records, a moved high watermark), keep the fetch offsets
// the client no longer sends, drop forgotten partitions, refuse a wrong
// epoch or an unknown session, and the session closes with epoch -1.
func TestFetchSessions(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("sess"))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "sess"); err != nil {
		t.Fatal(err)
	}
	td, err := adm.ListTopics(ctx, "sess")
	if err != nil {
		t.Fatal(err)
	}
	produce := func(p int32, vals ...string) {
		for _, v := range vals {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, "a0", "a1", "a2")
	sc := &sessionClient{t: t, cl: cl, topic: td["sess"].ID}

	// Full fetch, new session.
	resp := sc.fetch(ctx, []fetchPos{{0, 0}, {1, 0}}, nil, 0)
	if resp.ErrorCode != 0 || resp.SessionID == 0 {
		t.Fatalf("full fetch: error %d, session %d", resp.ErrorCode, resp.SessionID)
	}
	got := records(t, resp)
	if len(got) != 2 || fmt.Sprint(got[0]) != "[a0 a1 a2]" || len(got[1]) != 0 {
		t.Fatalf("full fetch: %v", got)
	}
	sc.id, sc.epoch = resp.SessionID, 1

	// Partition 0 moved on to 3; nothing new anywhere: an empty answer
	// after the long poll.
	resp = sc.fetch(ctx, []fetchPos{{0, 3}}, nil, 50*time.Millisecond)
	if resp.ErrorCode != 0 || resp.SessionID != sc.id || len(resp.Topics) != 0 {
		t.Fatalf("quiet incremental fetch: error %d, session %d, topics %+v", resp.ErrorCode, resp.SessionID, resp.Topics)
	}
	sc.epoch++

	// New records on partition 1, which this request does not name: the
	// session's offset 0 for it still holds. Partition 0 stays out.
	produce(1, "b0", "b1")
	resp = sc.fetch(ctx, nil, nil, time.Second)
	got = records(t, resp)
	if resp.ErrorCode != 0 || len(got) != 1 || fmt.Sprint(got[1]) != "[b0 b1]" {
		t.Fatalf("incremental fetch: error %d, %v", resp.ErrorCode, got)
	}
	sc.epoch++

	// The epoch just used again: refused, the session survives.
	sc.epoch--
	if resp = sc.fetch(ctx, nil, nil, 0); resp.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("repeated epoch: error %d, want INVALID_FETCH_SESSION_EPOCH", resp.ErrorCode)
	}
	sc.epoch++

	// Partition 0 gets a record; partition 1 is forgotten: only 0
	// answers, though 1 also has a new record.
	produce(0, "a3")
	produce(1, "b2")
	resp = sc.fetch(ctx, []fetchPos{{1, 2}}, []int32{1}, time.Second)
	got = records(t, resp)
	if resp.ErrorCode != 0 || len(got) != 1 || fmt.Sprint(got[0]) != "[a3]" {
		t.Fatalf("after forgetting partition 1: error %d, %v", resp.ErrorCode, got)
	}
	sc.epoch++

	// An unknown session.
	bad := &sessionClient{t: t, cl: cl, topic: sc.topic, id: sc.id + 1, epoch: 1}
	if resp = bad.fetch(ctx, nil, nil, 0); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("unknown session: error %d, want FETCH_SESSION_ID_NOT_FOUND", resp.ErrorCode)
	}

	// Closing: epoch -1 is a sessionless full fetch and drops the session.
	before := b.fetchSessions.len()
	sc.epoch = -1
	resp = sc.fetch(ctx, []fetchPos{{0, 4}}, nil, 0)
	if resp.ErrorCode != 0 || resp.SessionID != 0 || b.fetchSessions.len() != before-1 {
		t.Fatalf("close: error %d, session %d, sessions %d → %d", resp.ErrorCode, resp.SessionID, before, b.fetchSessions.len())
	}
	sc.epoch = 1
	if resp = sc.fetch(ctx, nil, nil, 0); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("closed session: error %d, want FETCH_SESSION_ID_NOT_FOUND", resp.ErrorCode)
	}
}

// TestFetchSessionEviction: with one slot, a new session evicts the old
// one, whose next incremental fetch is FETCH_SESSION_ID_NOT_FOUND; with
// none, a new-session request gets a sessionless full answer.
func TestFetchSessionEviction(t *testing.T) {
	for _, slots := range []int{1, 0} {
		t.Run(fmt.Sprint(slots), func(t *testing.T) {
			b := startBroker(t, t.TempDir(), func(c *configs.Config) { c.Kafka.FetchSessionCacheSlots = slots })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl := newClient(t, b)
			adm := kadm.NewClient(cl)
			if _, err := adm.CreateTopic(ctx, 1, 1, nil, "ev"); err != nil {
				t.Fatal(err)
			}
			td, err := adm.ListTopics(ctx, "ev")
			if err != nil {
				t.Fatal(err)
			}
			first := &sessionClient{t: t, cl: cl, topic: td["ev"].ID}
			resp := first.fetch(ctx, []fetchPos{{0, 0}}, nil, 0)
			if slots == 0 {
				if resp.ErrorCode != 0 || resp.SessionID != 0 || len(resp.Topics) != 1 {
					t.Fatalf("no slots: error %d, session %d, topics %d", resp.ErrorCode, resp.SessionID, len(resp.Topics))
				}
				return
			}
			first.id, first.epoch = resp.SessionID, 1
			second := &sessionClient{t: t, cl: cl, topic: td["ev"].ID}
			if resp = second.fetch(ctx, []fetchPos{{0, 0}}, nil, 0); resp.SessionID == 0 || resp.SessionID == first.id {
				t.Fatalf("second session %d (first %d)", resp.SessionID, first.id)
			}
			if resp = first.fetch(ctx, nil, nil, 0); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
				t.Fatalf("evicted session: error %d, want FETCH_SESSION_ID_NOT_FOUND", resp.ErrorCode)
			}
		})
	}
}
