package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterRotation: a replication-factor-3 topic with a small
// segment.bytes on a 3-node cluster. An idempotent kgo producer
// (acks=all) writes through many rolls while a consumer group reads and
// commits; every acknowledgement is read back exactly once, in offset
// order, byte for byte, by a plain consumer and by the group, and the
// group's commits reach the end; the metadata shows the
// rolls, each sealed at the next segment's base with the epoch going up by
// one, and leadership spread over all three nodes.
func TestClusterRotation(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster")
	c := startCluster(t, 3)
	done()
	card(t, "franz-go kgo + tusk cluster CLI", "cluster: RF=3 segment rotation, ≥30 rolls, no loss, leadership spread")
	const topic, parts, rounds, perRound = "rot", 3, 20, 300
	const n = rounds * perRound
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, parts, 3, map[string]*string{"segment.bytes": strp("4096")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: parts}, 10*time.Second)
	}
	ps := []int32{0, 1, 2}
	start := map[int32]int64{0: 0, 1: 0, 2: 0}
	// A consumer group reads throughout (its coordinator's partition of
	// __consumer_offsets is replicated too) and commits as it goes.
	const group = "rot-group"
	gcl := newClusterClient(t, c.kafkaAddrs(c.ids()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.AutoCommitInterval(200*time.Millisecond))
	var gmu sync.Mutex
	seen := map[int32]map[int64]*kgo.Record{}
	gctx, gcancel := context.WithCancel(context.Background())
	gdone := make(chan struct{})
	go func() {
		defer close(gdone)
		for gctx.Err() == nil {
			fs := gcl.PollFetches(gctx)
			gmu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if seen[r.Partition] == nil {
					seen[r.Partition] = map[int64]*kgo.Record{}
				}
				seen[r.Partition][r.Offset] = r
			})
			gmu.Unlock()
		}
	}()
	t.Cleanup(func() { gcancel(); <-gdone; gcl.Close() })
	began := time.Now()
	// Rounds of produce (a fresh idempotent producer each), so rolls
	// happen while producers come and go, as in a real workload.
	acked := map[int32][]prodRec{}
	for r := 0; r < rounds; r++ {
		next := map[int32]int64{}
		for _, p := range ps {
			next[p] = int64(r * perRound)
		}
		for p, recs := range producePartitions(t, c.kafkaAddrs(c.ids()...), topic, ps, perRound, fmt.Sprintf("rot%d", r), next) {
			acked[p] = append(acked[p], recs...)
		}
	}
	t.Logf("measure: produced %d records per partition through rolls in %v", n, time.Since(began).Round(time.Millisecond))
	got := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, start, map[int32]int{0: n, 1: n, 2: n}, 30*time.Second)
	for _, p := range ps {
		sameRecords(t, fmt.Sprintf("%s/%d", topic, p), acked[p], got[p])
	}
	// The group saw every acknowledged record, and committed to the end.
	waitFor(t, 30*time.Second, "the consumer group read every record", func() (bool, string) {
		gmu.Lock()
		defer gmu.Unlock()
		have := 0
		for _, p := range ps {
			have += len(seen[p])
		}
		return have == parts*n, fmt.Sprintf("%d of %d", have, parts*n)
	})
	gmu.Lock()
	for _, p := range ps {
		var recs []*kgo.Record
		for off := int64(0); off < n; off++ {
			recs = append(recs, seen[p][off])
		}
		sameRecords(t, fmt.Sprintf("%s/%d via the group", topic, p), acked[p], recs)
	}
	gmu.Unlock()
	if err := gcl.CommitUncommittedOffsets(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("group commit: %v", err)
	}
	if have, want := committedOffsets(t, adm, group, topic), (map[int32]int64{0: n, 1: n, 2: n}); !maps.Equal(have, want) {
		t.Fatalf("group %s committed %v, want %v", group, have, want)
	}

	_, raw, err := c.dump(t, 1)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Topics map[string]struct {
			Parts []struct {
				Segments []struct {
					Base, End int64
					Epoch     int32
					Leader    int32
					State     string
				} `json:"segments"`
			} `json:"parts"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	led := map[int32]int{}
	rolls := 0
	for p, part := range d.Topics[topic].Parts {
		segs := part.Segments
		for i, s := range segs {
			led[s.Leader]++
			if i == len(segs)-1 {
				if s.State != "active" || s.End != -1 {
					t.Fatalf("%s/%d: last segment %+v is not active", topic, p, s)
				}
				continue
			}
			rolls++
			next := segs[i+1]
			if s.State != "sealed" || s.End != next.Base || next.Epoch != s.Epoch+1 || s.End < s.Base {
				t.Fatalf("%s/%d: segment %d %+v then %+v: want sealed at the next base with epoch+1", topic, p, i, s, next)
			}
		}
	}
	total := 0
	for _, n := range led {
		total += n
	}
	t.Logf("measure: %d rolls; segments led per node: %v", rolls, led)
	if rolls < 30 {
		t.Fatalf("%d rolls, want at least 30", rolls)
	}
	for _, id := range c.ids() {
		share := float64(led[id]) / float64(total)
		if share < 0.20 || share > 0.45 {
			t.Errorf("node %d led %d of %d segments (%.0f%%), want 20%%-45%%", id, led[id], total, 100*share)
		}
	}
}
