package metadata

import (
	"fmt"
	"testing"
)

// bigTopicFSM has one topic of n partitions over three brokers.
func bigTopicFSM(b *testing.B, n int32) *FSM {
	b.Helper()
	f := NewFSM()
	for i := int32(1); i <= 3; i++ {
		if err := f.Apply(RegisterBroker{Broker: Broker{ID: i, Kafka: fmt.Sprintf("k%d:1", i)}}); err != nil {
			b.Fatal(err)
		}
	}
	as := make([][]int32, n)
	for i := range as {
		as[i] = []int32{1, 2, 3}
	}
	if err := f.Apply(CreateTopic{Name: "big", ID: topicID(9), Partitions: n, Assignments: as}); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkTopicOf10k copies a 10,000-partition topic (what a
// per-partition pass paid before FSM.Partition); BenchmarkPartitionOf10k
// copies one partition of it.
func BenchmarkTopicOf10k(b *testing.B) {
	f := bigTopicFSM(b, 10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := f.Topic("big"); !ok {
			b.Fatal("no topic")
		}
	}
}

func BenchmarkPartitionOf10k(b *testing.B) {
	f := bigTopicFSM(b, 10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, ok := f.Partition("big", int32(i%10000)); !ok {
			b.Fatal("no partition")
		}
	}
}
