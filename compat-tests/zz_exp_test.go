package compat

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestExpFailoverStall(t *testing.T) {
	t.Setenv("TUSK_LEASE_TIMEOUT", "1s")
	t.Setenv("TUSK_LEASE_RENEW", "200ms")
	t.Setenv("TUSK_REPLICA_LAG_TIME_MAX", "1s")
	c := startCluster(t, 3)
	const topic = "exp"
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, 3, 3, map[string]*string{"segment.rotate": strp("false")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 3}, 10*time.Second)
	}
	cl := newClusterClient(t, c.kafkaAddrs(c.ids()...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.RecordDeliveryTimeout(20*time.Second), kgo.MetadataMinAge(200*time.Millisecond))
	var mu sync.Mutex
	acks := map[int32][]time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := int32(0); p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")})
				if r.FirstErr() == nil {
					mu.Lock()
					acks[p] = append(acks[p], time.Now())
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	victim := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	killed := time.Now()
	c.node(victim).Kill9(t)
	t.Logf("killed %d at %s", victim, killed.Format("15:04:05.000"))
	time.Sleep(8 * time.Second)
	close(stop)
	wg.Wait()
	var via int32
	for _, id := range c.ids() {
		if id != victim {
			via = id
		}
	}
	mu.Lock()
	for p := int32(0); p < 3; p++ {
		var gap time.Duration
		var at time.Time
		for i := 1; i < len(acks[p]); i++ {
			if d := acks[p][i].Sub(acks[p][i-1]); d > gap {
				gap, at = d, acks[p][i]
			}
		}
		t.Logf("partition %d (leader before: %d): longest gap %v ending %s", p, c.metadataOf(t, via, []string{topic}).Topics[topic].Leaders[p], gap, at.Format("15:04:05.000"))
	}
	mu.Unlock()
	rs := time.Now()
	c.restartNode(t, victim)
	t.Logf("restart took %v", time.Since(rs))
	b, _ := os.ReadFile(c.node(victim).LogPath)
	for i, line := range strings.Split(string(b), "\n") {
		if i < 40 {
			fmt.Printf("restarted %s\n", line)
		}
	}
	for _, id := range c.ids() {
		b, _ := os.ReadFile(c.node(id).LogPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "fenc") || strings.Contains(line, "failover") || strings.Contains(line, "roll") || strings.Contains(line, "controller") || strings.Contains(line, "lagging") {
				fmt.Printf("node%d %s\n", id, line)
			}
		}
	}
}
