package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"
)

// dumpSegment is one segment as `tusk cluster dump` prints it.
type dumpSegment struct {
	ID       int64   `json:"id"`
	Base     int64   `json:"base"`
	End      int64   `json:"end"`
	Leader   int32   `json:"leader"`
	Replicas []int32 `json:"replicas"`
	Learners []int32 `json:"learners"`
	State    string  `json:"state"`
	// Generation is the committed cleaning generation of a compacted
	// topic's segment (docs/compaction.md).
	Generation int32 `json:"generation"`
}

// segmentsVia returns topic/partition's segment chain as node via's
// metadata has it (nil when via cannot answer).
func (c *cluster) segmentsVia(t *testing.T, via int32, topic string, p int) []dumpSegment {
	t.Helper()
	_, raw, err := c.dump(t, via)
	if err != nil {
		return nil
	}
	var d struct {
		Topics map[string]struct {
			Parts []struct {
				Segments []dumpSegment `json:"segments"`
			} `json:"parts"`
		} `json:"topics"`
	}
	if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) <= p {
		return nil
	}
	return d.Topics[topic].Parts[p].Segments
}

// logChecksum asks node id for the CRC-32C and size of its log of
// topic/p below end (polled: the node may still be catching up).
func (c *cluster) logChecksum(t *testing.T, id int32, topic string, p int32, end int64) string {
	t.Helper()
	var out struct {
		CRC   int64 `json:"crc32c"`
		Bytes int64 `json:"bytes"`
	}
	waitFor(t, 15*time.Second, fmt.Sprintf("node %d holds %s/%d up to %d", id, topic, p, end), func() (bool, string) {
		body, _ := json.Marshal(map[string]any{"topic": topic, "partition": p, "end": end})
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
	return fmt.Sprintf("%08x/%d", out.CRC, out.Bytes)
}

// TestClusterReReplication: 4 nodes, an RF=3 topic that rolls every few
// KiB, replica.restore 2 s. The node that led the first segment is killed
// with SIGKILL and stays down. The partition goes on with two replicas,
// then the fourth node, which never held the partition, is made a learner,
// copies it from offset 0 and is taken into the replica set by a roll.
// Every sealed segment then lists three live replicas (the dead node is
// replaced), the new node's log is byte-identical to the others', and a
// consumer reading from the beginning — while the first segment's leader
// is still down — gets every acknowledged record exactly once, in order.
func TestClusterReReplication(t *testing.T) {
	const topic = "rerep"
	restore := scaled(t, 2*time.Second)
	c, _ := startFaultScenario(t, faultScenario{
		nodes: 4, env: map[string]string{"TUSK_REPLICA_RESTORE": restore.String()}, setupNote: fmt.Sprintf(", replica.restore %v", restore),
		client: "franz-go kgo + kill -9", scenario: "cluster: a lost replica is re-created on a spare node; sealed reads with the first leader down",
		topics: []faultTopic{{name: topic, partitions: 1, configs: map[string]*string{"segment.bytes": strp("2048")}}},
	})
	var victim int32 = -1
	via := func() int32 {
		for _, id := range c.ids() {
			if id != victim {
				return id
			}
		}
		return -1
	}
	segs := func() []dumpSegment { return c.segmentsVia(t, via(), topic, 0) }
	first := segs()
	if len(first) == 0 || len(first[0].Replicas) != 3 {
		t.Fatalf("segments of %s: %+v, want one with 3 replicas", topic, first)
	}
	original := first[0].Replicas
	var spare int32 = -1
	for _, id := range c.ids() {
		if !slices.Contains(original, id) {
			spare = id
		}
	}
	lp := startLiveProducer(t, c.kafkaAddrs(c.ids()...), topic, []int32{0})
	waitFor(t, 30*time.Second, "three sealed segments", func() (bool, string) {
		s := segs()
		r, errs := lp.progress()
		return len(s) >= 4, fmt.Sprintf("%d segments, %d rounds, %d failed acks", len(s), r, errs)
	})
	victim = first[0].Leader
	c.node(victim).Kill9(t)
	killed := time.Now()
	t.Logf("killed node %d, the first segment's leader (replicas %v, spare %d)", victim, original, spare)
	var joined []dumpSegment
	waitFor(t, 30*time.Second, "the spare node in the active replica set", func() (bool, string) {
		joined = segs()
		if len(joined) == 0 {
			return false, "no metadata"
		}
		a := joined[len(joined)-1]
		return len(a.Replicas) == 3 && slices.Contains(a.Replicas, spare) && !slices.Contains(a.Replicas, victim),
			fmt.Sprintf("active segment %d: replicas %v learners %v", a.ID, a.Replicas, a.Learners)
	})
	t.Logf("measure: spare node %d in the replica set %v after the kill", spare, time.Since(killed).Round(10*time.Millisecond))
	for _, s := range joined[:len(joined)-1] {
		if s.End <= s.Base {
			continue
		}
		if len(s.Replicas) != 3 || !slices.Contains(s.Replicas, spare) || slices.Contains(s.Replicas, victim) {
			t.Fatalf("sealed segment %d [%d, %d) replicas %v: want three live ones including %d, without %d", s.ID, s.Base, s.End, s.Replicas, spare, victim)
		}
	}
	r0, _ := lp.progress()
	waitFor(t, 20*time.Second, "producer progress with the new replica", func() (bool, string) {
		r, errs := lp.progress()
		return r >= r0+30, fmt.Sprintf("%d rounds, %d failed acks", r, errs)
	})
	lp.halt()
	lp.mu.Lock()
	errs := lp.errs
	acked := sortedRecs(lp.acked[0])
	longest := lp.longest
	lp.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d failed acknowledgements, first: %s", len(errs), errs[0])
	}
	t.Logf("measure: %d records acknowledged over %d segments; longest produce round %v", len(acked), len(segs()), longest.Round(time.Millisecond))
	// Sealed reads from the beginning with the first segment's leader down.
	var live []int32
	for _, id := range c.ids() {
		if id != victim {
			live = append(live, id)
		}
	}
	got := readPartitions(t, c.kafkaAddrs(live...), topic, map[int32]int64{0: 0}, map[int32]int{0: len(acked)}, 30*time.Second)
	sameRecords(t, topic+"/0", acked, got[0])
	end := acked[len(acked)-1].Offset + 1
	var sums []string
	for _, id := range live {
		sums = append(sums, c.logChecksum(t, id, topic, 0, end))
	}
	for _, s := range sums[1:] {
		if s != sums[0] {
			t.Fatalf("live replicas differ below offset %d: %v (nodes %v)", end, sums, live)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(c.node(spare).LogPath); err == nil {
				t.Logf("spare node %d log:\n%s", spare, tail(b, 8000))
			}
		}
	})
	t.Logf("measure: nodes %v identical below %d: %s", live, end, sums[0])
}
