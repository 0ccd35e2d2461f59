package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestClusterFollowerLossAndRejoin: RF=3, 1 s lease, 1 s replica lag.
// A follower is killed with SIGKILL: the leader rolls to a segment
// without it and acks=all writes go on. The follower restarts, catches up
// as a learner and a roll takes it back, so the active segment has three
// replicas again and its copy of the log is byte-identical to the
// leader's. Every acknowledged record is read back exactly.
func TestClusterFollowerLossAndRejoin(t *testing.T) {
	const topic = "rejoin"
	parts := []int32{0}
	c, _ := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo + kill -9", scenario: "cluster: RF=3 follower killed, writes go on, it rejoins the replica set",
		topics: []faultTopic{
			{name: topic, partitions: 1, configs: map[string]*string{"segment.rotate": strp("false")}},
			// A second topic requires all three replicas for acks=all.
			{name: "rejoin-misr", partitions: 1, configs: map[string]*string{"segment.rotate": strp("false"), "min.insync.replicas": strp("3")}},
		},
	})
	var victim int32 = -1
	activeReplicas := func() (int32, []int32) {
		via := c.ids()[0]
		if via == victim {
			via = c.ids()[1]
		}
		_, raw, err := c.dump(t, via) // that node's metadata; polled until it converges
		if err != nil {
			return -1, nil
		}
		var d struct {
			Topics map[string]struct {
				Parts []struct {
					Segments []struct {
						Leader   int32   `json:"leader"`
						Replicas []int32 `json:"replicas"`
					} `json:"segments"`
				} `json:"parts"`
			} `json:"topics"`
		}
		if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) == 0 {
			return -1, nil
		}
		segs := d.Topics[topic].Parts[0].Segments
		a := segs[len(segs)-1]
		return a.Leader, a.Replicas
	}
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
	leader, _ := activeReplicas()
	for _, id := range c.ids() {
		if id != leader {
			victim = id
			break
		}
	}
	c.node(victim).Kill9(t)
	t.Logf("killed follower %d (leader %d)", victim, leader)
	waitFor(t, 15*time.Second, "a segment without the killed follower", func() (bool, string) {
		_, r := activeReplicas()
		return len(r) == 2 && !slices.Contains(r, victim), fmt.Sprintf("replicas %v", r)
	})
	waitRounds("producer progress without the follower", 50, 20*time.Second)
	// With two replicas left, acks=all to the min.insync.replicas=3 topic
	// is refused once its leader rolled the dead follower out.
	waitFor(t, 15*time.Second, "NOT_ENOUGH_REPLICAS from the min.insync.replicas=3 topic", func() (bool, string) {
		md := c.metadataOf(t, leader, []string{"rejoin-misr"})
		l := md.Topics["rejoin-misr"].Leaders[0]
		if l < 0 || l == victim {
			return false, fmt.Sprintf("leader %d", l)
		}
		rc := dialRaw(t, c.node(l).Kafka)
		defer rc.c.Close()
		code, _ := produceRaw(t, rc, 9, "rejoin-misr", 0, buildBatch([][]byte{[]byte("x")}, time.Now().UnixMilli()))
		return code == kerr.NotEnoughReplicas.Code, errName(code)
	})
	c.restartNode(t, victim)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(c.node(victim).LogPath); err == nil {
				t.Logf("restarted node %d log:\n%s", victim, b)
			}
		}
	})
	waitFor(t, 20*time.Second, "the restarted follower back in the replica set", func() (bool, string) {
		_, r := activeReplicas()
		return len(r) == 3 && slices.Contains(r, victim), fmt.Sprintf("replicas %v", r)
	})
	waitRounds("producer progress after the rejoin", 50, 20*time.Second)
	lp.halt()
	lp.mu.Lock()
	errs := lp.errs
	acked := sortedRecs(lp.acked[0])
	longest := lp.longest
	lp.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d failed acknowledgements, first: %s", len(errs), errs[0])
	}
	t.Logf("measure: longest produce round (stall) %v; %d records acknowledged", longest.Round(time.Millisecond), len(acked))
	got := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, map[int32]int64{0: 0}, map[int32]int{0: len(acked)}, 30*time.Second)
	sameRecords(t, topic+"/0", acked, got[0])
	// The rejoined replica's log equals the leader's up to the end.
	end := int64(len(acked))
	var sums []string
	for _, id := range c.ids() {
		var out struct {
			CRC   int64 `json:"crc32c"`
			Bytes int64 `json:"bytes"`
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d holds %s/0 up to %d", id, topic, end), func() (bool, string) {
			body, _ := json.Marshal(map[string]any{"topic": topic, "partition": 0, "end": end})
			r, err := c.internalPost(id, "/v1/log-checksum", body)
			if err != nil {
				return false, err.Error()
			}
			defer r.Body.Close()
			if r.StatusCode != http.StatusOK {
				return false, r.Status
			}
			return json.NewDecoder(r.Body).Decode(&out) == nil, "decoded"
		})
		sums = append(sums, fmt.Sprintf("%08x/%d", out.CRC, out.Bytes))
	}
	for _, s := range sums[1:] {
		if s != sums[0] {
			t.Fatalf("replicas differ up to offset %d: %v", end, sums)
		}
	}
	t.Logf("measure: all 3 replicas identical up to %d: %s", end, sums[0])
}
