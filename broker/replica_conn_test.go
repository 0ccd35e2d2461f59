package broker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// fakeLeader is a leader's internal listener for replica_conn.go's
// tests: it answers ApiVersions with Fetch versions up to maxFetch and
// each Fetch with the next entry of answers (record batches of partition
// 0 of topic "t"), or holds it while hold is set.
type fakeLeader struct {
	t        *testing.T
	ln       net.Listener
	maxFetch int16

	mu       sync.Mutex
	answers  [][]byte
	hold     bool
	dials    int
	fetches  []*kmsg.FetchRequest
	closedCh chan struct{} // gets a value when a connection ends
}

func newFakeLeader(t *testing.T, maxFetch int16, answers ...[]byte) *fakeLeader {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLeader{t: t, ln: ln, maxFetch: maxFetch, answers: answers, closedCh: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go f.accept()
	return f
}

func (f *fakeLeader) accept() {
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.dials++
		f.mu.Unlock()
		go f.serve(nc)
	}
}

func (f *fakeLeader) serve(nc net.Conn) {
	defer func() {
		nc.Close()
		f.closedCh <- struct{}{}
	}()
	var buf []byte
	for {
		frame, err := kafkaproto.ReadFrame(nc, 1<<20, buf)
		if err != nil {
			return
		}
		buf = frame
		h, req, body, err := kafkaproto.ParseRequest(frame)
		if err != nil {
			f.t.Errorf("fake leader: %v", err)
			return
		}
		if err := req.ReadFrom(body); err != nil {
			f.t.Errorf("fake leader: decode %T: %v", req, err)
			return
		}
		var resp kmsg.Response
		switch r := req.(type) {
		case *kmsg.ApiVersionsRequest:
			ar := kmsg.NewPtrApiVersionsResponse()
			ar.SetVersion(h.APIVersion)
			k := kmsg.NewApiVersionsResponseApiKey()
			k.ApiKey, k.MinVersion, k.MaxVersion = kmsg.Fetch.Int16(), 4, f.maxFetch
			ar.ApiKeys = append(ar.ApiKeys, k)
			resp = ar
		case *kmsg.FetchRequest:
			f.mu.Lock()
			f.fetches = append(f.fetches, r)
			hold := f.hold
			var records []byte
			if !hold && len(f.answers) > 0 {
				records, f.answers = f.answers[0], f.answers[1:]
			}
			f.mu.Unlock()
			if hold {
				// Held until the follower gives up: its cancellation
				// closes the connection.
				var one [1]byte
				_, _ = nc.Read(one[:])
				return
			}
			fr := kmsg.NewPtrFetchResponse()
			fr.SetVersion(h.APIVersion)
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = "t", fakeTopicID() // by ID from v13 on
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.HighWatermark, rp.RecordBatches = 7, records
			rt.Partitions = append(rt.Partitions, rp)
			fr.Topics = append(fr.Topics, rt)
			resp = fr
		default:
			f.t.Errorf("fake leader: unexpected %T", req)
			return
		}
		out := kafkaproto.AppendResponse(nil, h.CorrelationID, kafkaproto.ResponseHeaderFlexible(h.APIKey, h.Flexible), resp)
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

// fakeTopicID is topic "t"'s ID.
func fakeTopicID() [16]byte { return [16]byte{1, 2, 3} }

func (f *fakeLeader) addr() string { return f.ln.Addr().String() }

// followerFetch is a follower's fetch of partition 0 of "t".
func followerFetch() *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = 2
	req.MaxWaitMillis = 500
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// answerRecords is the record batches of the answer's only partition.
func answerRecords(t *testing.T, resp *kmsg.FetchResponse) []byte {
	t.Helper()
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("answer: %d topics, want 1 with 1 partition", len(resp.Topics))
	}
	rt, p := resp.Topics[0], resp.Topics[0].Partitions[0]
	if (rt.Topic != "t" && rt.TopicID != fakeTopicID()) || p.HighWatermark != 7 {
		t.Fatalf("answer: topic %q (%x), high watermark %d; want t, 7", rt.Topic, rt.TopicID, p.HighWatermark)
	}
	return p.RecordBatches
}

func testBatch(value string, n int) []byte {
	recs := make([]kafkaproto.KV, n)
	for i := range recs {
		recs[i] = kafkaproto.KV{Value: bytes.Repeat([]byte(value), 100+i)}
	}
	return kafkaproto.AppendBatch(nil, 1700000000000, recs)
}

// An answer's batches stay intact while it is held, whatever answers come
// after it; once released, its buffer carries a later answer.
func TestReplicaConnReusesAnswerBuffer(t *testing.T) {
	a, b, c := testBatch("a", 3), testBatch("b", 5), testBatch("c", 4)
	leader := newFakeLeader(t, 13, a, b, c)
	var rc replicaConns
	defer rc.close()
	ctx := context.Background()

	r1, rel1, err := rc.Fetch(ctx, nil, 1, leader.addr(), followerFetch())
	if err != nil {
		t.Fatal(err)
	}
	got1 := answerRecords(t, r1)
	if !bytes.Equal(got1, a) {
		t.Fatalf("first answer: %d bytes, want batch a (%d bytes)", len(got1), len(a))
	}
	// Held: the second answer is read into another buffer.
	r2, rel2, err := rc.Fetch(ctx, nil, 1, leader.addr(), followerFetch())
	if err != nil {
		t.Fatal(err)
	}
	got2 := answerRecords(t, r2)
	if !bytes.Equal(got2, b) || !bytes.Equal(got1, a) {
		t.Fatalf("second answer equals b: %v; first still a: %v", bytes.Equal(got2, b), bytes.Equal(got1, a))
	}
	if &got1[0] == &got2[0] {
		t.Fatal("the held answer's buffer was reused")
	}
	rel1()
	rel2()
	rel2() // a second call does nothing
	r3, rel3, err := rc.Fetch(ctx, nil, 1, leader.addr(), followerFetch())
	if err != nil {
		t.Fatal(err)
	}
	got3 := answerRecords(t, r3)
	if !bytes.Equal(got3, c) {
		t.Fatalf("third answer: %d bytes, want batch c (%d bytes)", len(got3), len(c))
	}
	// The last buffer released carries it, at the same place.
	if &got3[0] != &got2[0] {
		t.Fatal("the third answer was not read into the second one's buffer")
	}
	rel3()
	if got := len(rc.free); got != 2 {
		t.Fatalf("%d free buffers, want 2", got)
	}

	leader.mu.Lock()
	defer leader.mu.Unlock()
	if leader.dials != 1 {
		t.Fatalf("%d connections, want 1 (reused between fetches)", leader.dials)
	}
	if len(leader.fetches) != 3 {
		t.Fatalf("%d fetches, want 3", len(leader.fetches))
	}
	for i, f := range leader.fetches {
		if f.Version != 13 || f.ReplicaID != 2 {
			t.Fatalf("fetch %d: version %d, replica %d; want 13, 2", i, f.Version, f.ReplicaID)
		}
	}
}

// The Fetch version is the highest both sides speak, at most v14 (the
// last with the replica ID in the request).
func TestReplicaConnFetchVersion(t *testing.T) {
	for _, tc := range []struct{ leaderMax, want int16 }{{12, 12}, {14, 14}, {17, 14}} {
		leader := newFakeLeader(t, tc.leaderMax, testBatch("v", 1))
		var rc replicaConns
		r, rel, err := rc.Fetch(context.Background(), nil, 1, leader.addr(), followerFetch())
		if err != nil {
			t.Fatalf("leader max v%d: %v", tc.leaderMax, err)
		}
		if got := answerRecords(t, r); !bytes.Equal(got, testBatch("v", 1)) {
			t.Fatalf("leader max v%d: wrong records", tc.leaderMax)
		}
		rel()
		rc.close()
		leader.mu.Lock()
		v := leader.fetches[0].Version
		leader.mu.Unlock()
		if v != tc.want {
			t.Fatalf("leader max v%d: fetched at v%d, want v%d", tc.leaderMax, v, tc.want)
		}
	}
}

// A cancelled fetch closes its connection; the next one dials again.
func TestReplicaConnCancel(t *testing.T) {
	leader := newFakeLeader(t, 13, testBatch("x", 2))
	leader.hold = true
	var rc replicaConns
	defer rc.close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := rc.Fetch(ctx, nil, 1, leader.addr(), followerFetch())
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		leader.mu.Lock()
		n := len(leader.fetches)
		leader.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fetch did not reach the leader")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled fetch: %v, want context.Canceled", err)
	}
	select {
	case <-leader.closedCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled fetch's connection stayed open")
	}
	if len(rc.open) != 0 || len(rc.idle[fwdKey{1, leader.addr()}]) != 0 {
		t.Fatalf("%d open, %d idle connections after the cancellation; want 0", len(rc.open), len(rc.idle[fwdKey{1, leader.addr()}]))
	}
	leader.mu.Lock()
	leader.hold = false
	leader.mu.Unlock()
	r, rel, err := rc.Fetch(context.Background(), nil, 1, leader.addr(), followerFetch())
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	if got := answerRecords(t, r); !bytes.Equal(got, testBatch("x", 2)) {
		t.Fatal("wrong records after the reconnect")
	}
	leader.mu.Lock()
	defer leader.mu.Unlock()
	if leader.dials != 2 {
		t.Fatalf("%d connections, want 2", leader.dials)
	}
}

// After close no fetch is sent.
func TestReplicaConnClosed(t *testing.T) {
	leader := newFakeLeader(t, 13)
	var rc replicaConns
	rc.close()
	if _, _, err := rc.Fetch(context.Background(), nil, 1, leader.addr(), followerFetch()); err == nil {
		t.Fatal("fetch after close: no error")
	}
}
