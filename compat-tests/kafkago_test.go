package compat

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

// TestKafkaGo: kafka-go Writer (acks=all, Hash balancer) writes 10,000
// records; a Reader per partition (no group) reads them from FirstOffset.
func TestKafkaGo(t *testing.T) {
	card(t, "segmentio/kafka-go", "Writer 10k + partition Readers")
	const (
		topic      = "kafkago-10k"
		partitions = 3
		count      = 10_000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, partitions, nil)

	type pos struct {
		p int
		o int64
	}
	var mu sync.Mutex
	byPos := map[pos]string{}
	perPart := map[int]int64{}
	var completionErr error
	w := &kafka.Writer{
		Addr:                   kafka.TCP(n.Kafka),
		Topic:                  topic,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              500,
		BatchTimeout:           5 * time.Millisecond,
		WriteTimeout:           20 * time.Second,
		ReadTimeout:            20 * time.Second,
		AllowAutoTopicCreation: false,
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				completionErr = err
				return
			}
			for _, m := range msgs {
				k := pos{m.Partition, m.Offset}
				if _, dup := byPos[k]; dup {
					completionErr = fmt.Errorf("two messages acknowledged at %d/%d", m.Partition, m.Offset)
				}
				byPos[k] = string(m.Key)
				perPart[m.Partition]++
			}
		},
	}
	msgs := make([]kafka.Message, count)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "g-key-%05d", i), Value: fmt.Appendf(nil, "g-value-%05d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("writer close: %v", err)
	}
	if completionErr != nil {
		t.Fatalf("completion: %v", completionErr)
	}
	if len(byPos) != count {
		t.Fatalf("%d acknowledged positions, want %d", len(byPos), count)
	}
	ends := endOffsets(t, adm, topic)
	for p := range partitions {
		if ends[int32(p)] != perPart[p] {
			t.Errorf("partition %d: end offset %d, acknowledged %d", p, ends[int32(p)], perPart[p])
		}
	}
	// Hash balancer: the same key always maps to the same partition, so
	// partition p holds exactly the keys acknowledged there.

	got := 0
	for p := range partitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   []string{n.Kafka},
			Topic:     topic,
			Partition: p,
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   200 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			t.Fatalf("SetOffset: %v", err)
		}
		for next := int64(0); next < perPart[p]; next++ {
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			m, err := r.ReadMessage(rctx)
			rcancel()
			if err != nil {
				r.Close()
				t.Fatalf("partition %d: ReadMessage at %d: %v", p, next, err)
			}
			if m.Partition != p || m.Offset != next {
				t.Fatalf("partition %d: got %d/%d, want offset %d", p, m.Partition, m.Offset, next)
			}
			wk := byPos[pos{p, next}]
			var i int
			if _, err := fmt.Sscanf(wk, "g-key-%05d", &i); err != nil {
				t.Fatalf("partition %d offset %d: bad acknowledged key %q", p, next, wk)
			}
			if string(m.Key) != wk || string(m.Value) != fmt.Sprintf("g-value-%05d", i) {
				t.Fatalf("partition %d offset %d: %q=%q, want %q=g-value-%05d", p, next, m.Key, m.Value, wk, i)
			}
			got++
		}
		// Nothing more: a further read must time out, not return data.
		rctx, rcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		if m, err := r.ReadMessage(rctx); err == nil {
			t.Errorf("partition %d: unexpected extra record at offset %d", p, m.Offset)
		}
		rcancel()
		r.Close()
	}
	if got != count {
		t.Fatalf("read %d, want %d", got, count)
	}
}
