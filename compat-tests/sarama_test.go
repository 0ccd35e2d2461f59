package compat

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestSarama: SyncProducer (acks=all) sends 10,000 keyed records; a
// partition consumer per partition reads them from OffsetOldest with exact
// keys, values and offsets.
func TestSarama(t *testing.T) {
	card(t, "sarama", "SyncProducer 10k + ConsumePartition")
	const (
		topic      = "sarama-10k"
		partitions = 3
		count      = 10_000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, partitions, nil)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.ClientID = "tusk-compat-sarama"
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Flush.Messages = 500
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 15 * time.Second
	cfg.Net.WriteTimeout = 15 * time.Second
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.Return.Errors = true

	prod, err := sarama.NewSyncProducer([]string{n.Kafka}, cfg)
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	msgs := make([]*sarama.ProducerMessage, count)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder(fmt.Sprintf("s-key-%05d", i)),
			Value: sarama.StringEncoder(fmt.Sprintf("s-value-%05d", i)),
		}
	}
	for i := 0; i < count; i += 1000 {
		if err := prod.SendMessages(msgs[i : i+1000]); err != nil {
			if pe, ok := err.(sarama.ProducerErrors); ok && len(pe) > 0 {
				t.Fatalf("SendMessages: %d errors, first: %v", len(pe), pe[0].Err)
			}
			t.Fatalf("SendMessages: %v", err)
		}
	}
	if err := prod.Close(); err != nil {
		t.Errorf("producer close: %v", err)
	}

	type pos struct {
		p int32
		o int64
	}
	byPos := map[pos]int{}
	perPart := map[int32]int64{}
	for i, m := range msgs {
		if _, dup := byPos[pos{m.Partition, m.Offset}]; dup {
			t.Fatalf("two messages acknowledged at %d/%d", m.Partition, m.Offset)
		}
		byPos[pos{m.Partition, m.Offset}] = i
		perPart[m.Partition]++
	}
	ends := endOffsets(t, adm, topic)
	for p := int32(0); p < partitions; p++ {
		if ends[p] != perPart[p] {
			t.Errorf("partition %d: end offset %d, acknowledged %d", p, ends[p], perPart[p])
		}
	}

	consumer, err := sarama.NewConsumer([]string{n.Kafka}, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	defer consumer.Close()
	got := 0
	for p := int32(0); p < partitions; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("ConsumePartition %d: %v", p, err)
		}
		timeout := time.After(60 * time.Second)
		for next := int64(0); next < perPart[p]; next++ {
			select {
			case m := <-pc.Messages():
				if m.Offset != next {
					t.Fatalf("partition %d: got offset %d, want %d", p, m.Offset, next)
				}
				i, ok := byPos[pos{p, m.Offset}]
				if !ok {
					t.Fatalf("partition %d offset %d: nothing acknowledged there", p, m.Offset)
				}
				wk, wv := fmt.Sprintf("s-key-%05d", i), fmt.Sprintf("s-value-%05d", i)
				if string(m.Key) != wk || string(m.Value) != wv {
					t.Fatalf("partition %d offset %d: %q=%q, want %q=%q", p, m.Offset, m.Key, m.Value, wk, wv)
				}
				got++
			case cerr := <-pc.Errors():
				t.Fatalf("partition %d: consumer error: %v", p, cerr)
			case <-timeout:
				t.Fatalf("partition %d: timed out at offset %d of %d", p, next, perPart[p])
			}
		}
		if hw := pc.HighWaterMarkOffset(); hw != perPart[p] {
			t.Errorf("partition %d: consumer high watermark %d, want %d", p, hw, perPart[p])
		}
		pc.Close()
	}
	if got != count {
		t.Fatalf("consumed %d, want %d", got, count)
	}
}
