package assign

import (
	"fmt"
	"testing"
)

func BenchmarkUniformJoin(b *testing.B) {
	topics := map[string]Topic{}
	var names []string
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("t%03d", i)
		names = append(names, n)
		topics[n] = Topic{ID: TopicID{byte(i), 1}, Partitions: 100}
	}
	var members []Member
	for i := 0; i < 1000; i++ {
		members = append(members, Member{ID: fmt.Sprintf("m%04d", i), Topics: names})
	}
	cur := Uniform(members[:999], topics, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Uniform(members, topics, cur)
	}
}

func BenchmarkUniformHeterogeneousJoin(b *testing.B) {
	topics := map[string]Topic{}
	var names []string
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("t%03d", i)
		names = append(names, n)
		topics[n] = Topic{ID: TopicID{byte(i), 1}, Partitions: 100}
	}
	var members []Member
	for i := 0; i < 1000; i++ {
		subs := names
		if i%2 == 1 {
			subs = names[:50]
		}
		members = append(members, Member{ID: fmt.Sprintf("m%04d", i), Topics: subs})
	}
	cur := Uniform(members[:999], topics, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Uniform(members, topics, cur)
	}
}
