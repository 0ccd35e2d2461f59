package compat

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCrashKill9: with --storage-fsync always, kill -9 the node while four
// idempotent acks=all producers are writing; after a restart on the same
// data dir every acknowledged record is present exactly once at its
// acknowledged offset, and offsets are contiguous.
func TestCrashKill9(t *testing.T) {
	card(t, "franz-go kgo", "kill -9 mid-produce, fsync=always, restart")
	const (
		topic      = "crash"
		partitions = 3
		producers  = 4
		ackTarget  = 20_000
	)
	n := startTusk(t, withFlag("storage-fsync", "always"))
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, partitions, nil)

	type pos struct {
		p int32
		o int64
	}
	var (
		mu     sync.Mutex
		acked  = map[string]pos{}
		sent   atomic.Int64
		nacked atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	clients := make([]*kgo.Client, producers)
	for p := range producers {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(n.Kafka),
			kgo.DefaultProduceTopic(topic),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(time.Millisecond),
			kgo.RecordDeliveryTimeout(15*time.Second),
			kgo.MaxBufferedRecords(2000),
		)
		if err != nil {
			t.Fatal(err)
		}
		clients[p] = cl
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("c%d-%07d", p, i)
				r := &kgo.Record{Key: []byte(key), Value: []byte(crashValue(key))}
				sent.Add(1)
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						return
					}
					mu.Lock()
					acked[key] = pos{r.Partition, r.Offset}
					mu.Unlock()
					nacked.Add(1)
				})
			}
		}()
	}
	deadline := time.Now().Add(90 * time.Second)
	for nacked.Load() < ackTarget {
		if time.Now().After(deadline) {
			t.Fatalf("only %d records acknowledged after 90s", nacked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	n.Kill9(t)
	cancel()
	closed := make(chan struct{})
	go func() {
		for _, cl := range clients {
			cl.Close()
		}
		wg.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("producers did not stop within 30s of the kill")
	}
	mu.Lock()
	ackedSnap := make(map[string]pos, len(acked))
	for k, v := range acked {
		ackedSnap[k] = v
	}
	mu.Unlock()
	t.Logf("killed with %d acknowledged of %d sent", len(ackedSnap), sent.Load())

	n2 := n.Restart(t)
	adm2, _ := newAdm(t, n2)
	waitTopicReady(t, adm2, topic, partitions)
	ends := endOffsets(t, adm2, topic)
	got := consumeAll(t, n2, topic, ends, 90*time.Second)

	seen := map[string]pos{}
	total := 0
	for p := int32(0); p < partitions; p++ {
		for idx, r := range got[p] {
			if r.Offset != int64(idx) {
				t.Fatalf("partition %d: record #%d at offset %d (offsets not contiguous from 0)", p, idx, r.Offset)
			}
			key := string(r.Key)
			if string(r.Value) != crashValue(key) {
				t.Fatalf("partition %d offset %d: value %q does not belong to key %q", p, r.Offset, r.Value, key)
			}
			if prev, dup := seen[key]; dup {
				t.Fatalf("key %s appears twice: %d/%d and %d/%d", key, prev.p, prev.o, p, r.Offset)
			}
			seen[key] = pos{p, r.Offset}
			total++
		}
	}
	lost := 0
	for key, a := range ackedSnap {
		s, ok := seen[key]
		if !ok || s != a {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged record %s at %d/%d: after restart found=%v at %d/%d", key, a.p, a.o, ok, s.p, s.o)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost or moved", lost, len(ackedSnap))
	}
	t.Logf("after restart: %d records (%d acknowledged, %d unacknowledged survivors)", total, len(ackedSnap), total-len(ackedSnap))

	// The log accepts writes again, continuing after the recovered end.
	cl := newKgo(t, n2, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Topic: topic, Partition: 0, Key: []byte("after"), Value: []byte(crashValue("after"))}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatalf("produce after restart: %v", err)
	}
	if r.Offset != ends[0] {
		t.Errorf("first record after restart at offset %d, want %d", r.Offset, ends[0])
	}
}

func crashValue(key string) string { return "crash-value-of-" + key }
