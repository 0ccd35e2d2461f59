package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduceOffsets: a kgo producer's records get consecutive offsets per
// partition, counted from the batch headers, and ListOffsets reports the
// end of each partition.
func TestProduceOffsets(t *testing.T) {
	kl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	b := newBroker(kl, 3)
	go func() { _ = b.accept(kl) }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, acks := range []kgo.Acks{kgo.AllISRAcks(), kgo.LeaderAck()} {
		topic := fmt.Sprintf("t-%d", len(b.topics))
		opts := []kgo.Opt{kgo.SeedBrokers(kl.Addr().String()), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(acks),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(5 * time.Second),
			kgo.WithLogger(kgo.BasicLogger(testWriter{t}, kgo.LogLevelWarn, nil))}
		if acks != kgo.AllISRAcks() {
			opts = append(opts, kgo.DisableIdempotentWrite())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
			t.Fatalf("create: %v", err)
		}
		next := map[int32]int64{}
		for i := 0; i < 300; i++ {
			r := &kgo.Record{Value: []byte(fmt.Sprint(i)), Partition: int32(i % 3)}
			res := cl.ProduceSync(ctx, r)
			if err := res.FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
			if got := res[0].Record.Offset; got != next[r.Partition] {
				t.Fatalf("record %d on partition %d: offset %d, want %d", i, r.Partition, got, next[r.Partition])
			}
			next[r.Partition]++
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 3; p++ {
			if o, _ := ends.Lookup(topic, p); o.Offset != 100 {
				t.Fatalf("partition %d ends at %d, want 100", p, o.Offset)
			}
		}
		cl.Close()
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
