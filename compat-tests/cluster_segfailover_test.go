package compat

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// TestClusterSegmentFailover: a replication-factor-3 topic with a 1 s
// lease. While an idempotent acks=all producer runs on every partition,
// the leader of partition 0 is killed with SIGKILL. The controller fences
// the segment, seals it at the smallest log end offset of the surviving
// replicas and opens the next segment on one of them; the producer carries
// on without a failed acknowledgement. The killed node restarts and
// rejoins as a follower. Every acknowledged record is then read back
// exactly once, in offset order, byte for byte.
func TestClusterSegmentFailover(t *testing.T) {
	const topic = "segfo"
	parts := []int32{0, 1, 2}
	c, _ := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo + kill -9", scenario: "cluster: RF=3 segment leader killed; failover with no lost or failed acks",
		topics: []faultTopic{{name: topic, partitions: int32(len(parts)), configs: map[string]*string{"segment.rotate": strp("false")}}},
	})
	lp := startLiveProducer(t, c.kafkaAddrs(c.ids()...), topic, parts)
	waitRounds := func(what string, more int, timeout time.Duration) {
		t.Helper()
		r0, _ := lp.progress()
		waitFor(t, timeout, what, func() (bool, string) {
			r, errs := lp.progress()
			return r >= r0+more, fmt.Sprintf("%d rounds (from %d), %d failed acks", r, r0, errs)
		})
	}
	waitRounds("producer warm-up", 50, 20*time.Second)
	victim := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	killedAt := time.Now()
	c.node(victim).Kill9(t)
	t.Logf("killed node %d, leader of %s/0", victim, topic)
	var others []int32
	for _, id := range c.ids() {
		if id != victim {
			others = append(others, id)
		}
	}
	waitFor(t, 15*time.Second, "a new leader for partition 0", func() (bool, string) {
		md := c.metadataOf(t, others[0], []string{topic})
		l := md.Topics[topic].Leaders[0]
		return l >= 0 && l != victim, fmt.Sprintf("leader %d", l)
	})
	t.Logf("measure: partition 0 has a new leader %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	waitRounds("producer progress after the failover", 50, 20*time.Second)
	c.restartNode(t, victim)
	waitRounds("producer progress after the restart", 50, 20*time.Second)
	lp.halt()
	lp.mu.Lock()
	errs, longest := lp.errs, lp.longest
	acked := map[int32][]prodRec{}
	for p, recs := range lp.acked {
		acked[p] = append([]prodRec(nil), recs...)
	}
	lp.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d failed acknowledgements, first: %s", len(errs), errs[0])
	}
	t.Logf("measure: longest produce round (stall) %v", longest.Round(time.Millisecond))
	want := map[int32]int{}
	start := map[int32]int64{}
	for _, p := range parts {
		want[p] = len(acked[p])
		start[p] = 0
	}
	got := readPartitions(t, c.kafkaAddrs(others...), topic, start, want, 30*time.Second)
	for _, p := range parts {
		sameRecords(t, fmt.Sprintf("%s/%d", topic, p), sortedRecs(acked[p]), got[p])
	}
}

// sortedRecs orders acknowledged records by offset.
func sortedRecs(recs []prodRec) []prodRec {
	out := append([]prodRec(nil), recs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}
