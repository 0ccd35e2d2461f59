package broker

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// TestWriteTxnMarkersEndsAtClose: a WriteTxnMarkers whose marker waits for
// the high watermark (the partition's other replica never fetches, as a
// peer that is stopping too) is answered NOT_LEADER_OR_FOLLOWER when
// Close begins, instead of holding the shutdown until its wait runs out
// (REQUEST_TIMED_OUT after 5 s before). The coordinator retries a marker
// that is not acknowledged (markers are idempotent at the partitions), so
// the answer loses nothing.
func TestWriteTxnMarkersEndsAtClose(t *testing.T) {
	b, l := startWithSilentFollower(t, "mk")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "mk"

	nc, err := net.Dial("tcp", b.InternalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	req.Version = 1
	mk := kmsg.NewWriteTxnMarkersRequestMarker()
	mk.ProducerID, mk.ProducerEpoch, mk.Committed = 5000, 0, true
	rt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	mk.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{rt}
	req.Markers = []kmsg.WriteTxnMarkersRequestMarker{mk}
	if _, err := nc.Write(appendRawRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
	// The marker is appended; its answer waits for node 2's fetch.
	waitAppendedUnacked(ctx, t, l, "the marker")

	closed := closeWithin(t, b)
	resp := kmsg.NewPtrWriteTxnMarkersResponse()
	resp.Version = 1
	readRawResponse(t, nc, 1, resp)
	if len(resp.Markers) != 1 || len(resp.Markers[0].Topics) != 1 || len(resp.Markers[0].Topics[0].Partitions) != 1 {
		t.Fatalf("WriteTxnMarkers answer %+v, want one partition", resp.Markers)
	}
	if code := resp.Markers[0].Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
		t.Fatalf("marker answered %v at shutdown, want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(code))
	}
	closed()
}

// startWithSilentFollower starts a broker leading partition 0 of a new
// topic whose other replica, node 2, is registered and alive but never
// fetches (as a peer that is stopping too): an append to it waits for the
// high watermark until something ends the wait. It returns the broker
// and the partition's log.
func startWithSilentFollower(t *testing.T, topic string) (*Broker, *storage.Log) {
	t.Helper()
	b := startBroker(t, t.TempDir(), txnTestConfig, func(c *configs.Config) {
		c.Lease.Timeout = 30 * time.Second     // node 2 stays alive
		c.Replica.LagTimeMax = 5 * time.Minute // and a replica
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	me := b.cfg.NodeID
	if err := b.store.Apply(ctx, metadata.RegisterBroker{Broker: metadata.Broker{ID: 2, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	id := metadata.TopicID{7, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, byte(len(topic))}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: topic, ID: id, Partitions: 1, ReplicationFactor: 2, Assignments: [][]int32{{me, 2}}}); err != nil {
		t.Fatal(err)
	}
	tp := b.tp(topic, 0)
	for b.repl.Leader(tp) == nil {
		if ctx.Err() != nil {
			t.Fatalf("no leadership of %s installed", tp)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l, ok := b.engine.Log(tp)
	if !ok {
		t.Fatalf("no log of %s", tp)
	}
	return b, l
}

// waitAppendedUnacked polls until l holds one batch (what) and checks that
// its high watermark did not cover it.
func waitAppendedUnacked(ctx context.Context, t *testing.T, l *storage.Log, what string) {
	t.Helper()
	for l.LogEndOffset() < 1 {
		if ctx.Err() != nil {
			t.Fatalf("%s was never appended", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if hw := l.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d with node 2 never fetching, want 0", hw)
	}
}

// closeWithin starts b.Close (with a long grace) and returns a check that
// it returned within 20 s.
func closeWithin(t *testing.T, b *Broker) func() {
	closed := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		closed <- b.Close(cctx)
	}()
	return func() {
		t.Helper()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("close: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Close has not returned 20s after it began")
		}
	}
}

// TestProduceAcksAllEndsAtClose: an acks=all Produce waiting for its high
// watermark (the follower never fetches, as a peer that is stopping too)
// is answered NOT_LEADER_OR_FOLLOWER when Close begins (not acknowledged:
// the producer retries with the next leader), instead of holding the
// shutdown until the grace period (or its timeout, 60 s here) runs out.
// In a whole-cluster stop every leader with such a Produce waited so.
func TestProduceAcksAllEndsAtClose(t *testing.T) {
	b, l := startWithSilentFollower(t, "pa")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 60000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "pa"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), []kafkaproto.KV{{Value: []byte("v")}})
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	if _, err := nc.Write(appendRawRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
	waitAppendedUnacked(ctx, t, l, "the produced batch")
	closed := closeWithin(t, b)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	readRawResponse(t, nc, 1, resp)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Produce answer %+v, want one partition", resp.Topics)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
		t.Fatalf("acks=all Produce answered %v at shutdown, want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(code))
	}
	closed()
}

// blockingVerifier holds every KIP-890 check until its context ends (a
// coordinator node that stopped answering); entered gets a value when a
// check starts waiting.
type blockingVerifier struct{ entered chan struct{} }

func (v blockingVerifier) Verify(ctx context.Context, _ string, _ int64, _ int16, _ string, _ int32) error {
	v.entered <- struct{}{}
	<-ctx.Done()
	return fmt.Errorf("%w: %w", kerr.NotCoordinator, ctx.Err())
}

// TestRequestContextEndsAtClose: a request waiting on another node under
// its request context (here a transactional Produce's check with the
// transaction coordinator, which does not answer) ends when Close begins
// and is answered (NOT_ENOUGH_REPLICAS, retriable), instead of holding
// the drain of client requests until the shutdown grace period runs out
// (the request context ended only then; 2 minutes here, and the Produce's
// 60 s timeout first).
func TestRequestContextEndsAtClose(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-close"
	if _, err := kadm.NewClient(newClient(t, b)).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	v := blockingVerifier{entered: make(chan struct{}, 1)}
	var tv txnVerifier = v
	b.txnVerify.Store(&tv)
	nc, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks, req.TimeoutMillis, req.TransactionID = -1, 60000, kmsg.StringPtr("T")
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = testTxnBatch(500, 0, 0, true, "v0")
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	if _, err := nc.Write(appendRawRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.entered:
	case <-ctx.Done():
		t.Fatal("the transactional Produce never asked the coordinator")
	}
	closed := closeWithin(t, b)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	readRawResponse(t, nc, 1, resp)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.NotEnoughReplicas.Code {
		t.Fatalf("transactional Produce answered %v at shutdown, want NOT_ENOUGH_REPLICAS", kerr.ErrorForCode(code))
	}
	closed()
}
