package compat

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterRepeatedLeaderLoss (make test-faults; skipped in make test
// unless TUSK_LONG_FAULTS=1): five times in a row, the segment leader of a
// replication-factor-3 partition is killed with SIGKILL and restarted once
// a new leader serves; it rejoins the replica set before the next round.
// Two idempotent acks=all producers (kgo defaults, and a 250 ms metadata
// refresh) run throughout with no failed acknowledgement; every
// acknowledged record is read back exactly once, in offset order. The seed picking which partition's leader dies is
// logged.
func TestClusterRepeatedLeaderLoss(t *testing.T) {
	if os.Getenv("TUSK_LONG_FAULTS") != "1" {
		t.Skip("long fault scenario: run with make test-faults (TUSK_LONG_FAULTS=1)")
	}
	const topic = "kill5"
	parts := []int32{0, 1, 2}
	c, _ := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo + kill -9 ×5", scenario: "cluster: five segment-leader kills in a row, no failed or lost acks",
		topics: []faultTopic{{name: topic, partitions: int32(len(parts)), configs: map[string]*string{"segment.rotate": strp("false")}}},
	})
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	replicasOf := func(via int32, p int) []int32 {
		_, raw, err := c.dump(t, via)
		if err != nil {
			return nil
		}
		var d struct {
			Topics map[string]struct {
				Parts []struct {
					Segments []struct {
						Replicas []int32 `json:"replicas"`
					} `json:"segments"`
				} `json:"parts"`
			} `json:"topics"`
		}
		if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) <= p {
			return nil
		}
		segs := d.Topics[topic].Parts[p].Segments
		return segs[len(segs)-1].Replicas
	}
	lp := startLiveProducer(t, c.kafkaAddrs(c.ids()...), topic, parts)
	// A second producer refreshes metadata after 250 ms instead of kgo's
	// default 5 s (MetadataMinAge): a kgo client learns of a dead leader's
	// replacement only at its next refresh, so the default producer's
	// stall measures the client, this one the cluster.
	fast := startLiveProducer(t, c.kafkaAddrs(c.ids()...), topic, parts, kgo.MetadataMinAge(250*time.Millisecond))
	waitRounds := func(what string, more int) {
		t.Helper()
		r0, _ := lp.progress()
		waitFor(t, 30*time.Second, what, func() (bool, string) {
			r, errs := lp.progress()
			return r >= r0+more, fmt.Sprintf("%d rounds (from %d), %d failed acks", r, r0, errs)
		})
	}
	waitRounds("producer warm-up", 30)
	var longestFailover time.Duration
	for round := 1; round <= 5; round++ {
		p := rng.Intn(len(parts))
		victim := c.metadataOf(t, c.ids()[0], []string{topic}).Topics[topic].Leaders[int32(p)]
		if victim < 0 {
			t.Fatalf("round %d: partition %d has no leader", round, p)
		}
		var others []int32
		for _, id := range c.ids() {
			if id != victim {
				others = append(others, id)
			}
		}
		killed := time.Now()
		c.node(victim).Kill9(t)
		waitFor(t, 20*time.Second, fmt.Sprintf("round %d: a new leader for partition %d", round, p), func() (bool, string) {
			l := c.metadataOf(t, others[0], []string{topic}).Topics[topic].Leaders[int32(p)]
			return l >= 0 && l != victim, fmt.Sprintf("leader %d", l)
		})
		longestFailover = max(longestFailover, time.Since(killed))
		waitRounds(fmt.Sprintf("round %d: progress after killing node %d", round, victim), 20)
		c.restartNode(t, victim)
		waitFor(t, 30*time.Second, fmt.Sprintf("round %d: node %d back in every replica set", round, victim), func() (bool, string) {
			for q := range parts {
				if r := replicasOf(others[0], q); len(r) != 3 || !slices.Contains(r, victim) {
					return false, fmt.Sprintf("partition %d replicas %v", q, r)
				}
			}
			return true, ""
		})
		waitRounds(fmt.Sprintf("round %d: progress after the rejoin", round), 20)
		t.Logf("round %d: killed node %d (leader of partition %d); round done (new leader, restart, rejoin) after %v", round, victim, p, time.Since(killed).Round(time.Millisecond))
	}
	lp.halt()
	fast.halt()
	acked := map[int32][]prodRec{}
	var longest [2]time.Duration
	for i, pr := range []*liveProducer{lp, fast} {
		pr.mu.Lock()
		errs := pr.errs
		longest[i] = pr.longest
		for q, recs := range pr.acked {
			acked[q] = append(acked[q], recs...)
		}
		pr.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("producer %d: %d failed acknowledgements, first: %s", i, len(errs), errs[0])
		}
	}
	for q := range acked {
		acked[q] = sortedRecs(acked[q])
	}
	want, start := map[int32]int{}, map[int32]int64{}
	total := 0
	for _, q := range parts {
		want[q], start[q] = len(acked[q]), 0
		total += len(acked[q])
	}
	got := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, start, want, 30*time.Second)
	for _, q := range parts {
		sameRecords(t, fmt.Sprintf("%s/%d", topic, q), acked[q], got[q])
	}
	t.Logf("measure: 5 leader kills; %d acknowledged records read back exactly; longest produce stall %v (kgo defaults), %v (MetadataMinAge 250 ms); slowest new leader %v",
		total, longest[0].Round(time.Millisecond), longest[1].Round(time.Millisecond), longestFailover.Round(time.Millisecond))
}
