package broker

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
)

// TestWriteTxnMarkersEndsAtClose: a WriteTxnMarkers whose marker waits for
// the high watermark (the partition's other replica never fetches, as a
// peer that is stopping too) is answered NOT_LEADER_OR_FOLLOWER when
// Close begins, instead of holding the shutdown until its wait runs out
// (REQUEST_TIMED_OUT after 5 s before). The coordinator retries a marker
// that is not acknowledged (markers are idempotent at the partitions), so
// the answer loses nothing.
func TestWriteTxnMarkersEndsAtClose(t *testing.T) {
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
	const topic = "mk"
	id := metadata.TopicID{7, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, 18}
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
	for l.LogEndOffset() < 1 {
		if ctx.Err() != nil {
			t.Fatal("the marker was never appended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if hw := l.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d with node 2 never fetching, want 0", hw)
	}

	closed := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		closed <- b.Close(cctx)
	}()
	resp := kmsg.NewPtrWriteTxnMarkersResponse()
	resp.Version = 1
	readRawResponse(t, nc, 1, resp)
	if len(resp.Markers) != 1 || len(resp.Markers[0].Topics) != 1 || len(resp.Markers[0].Topics[0].Partitions) != 1 {
		t.Fatalf("WriteTxnMarkers answer %+v, want one partition", resp.Markers)
	}
	if code := resp.Markers[0].Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
		t.Fatalf("marker answered %v at shutdown, want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(code))
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close has not returned 20s after it began")
	}
}
