package compat

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterCoordinatorFailover: __consumer_offsets is replicated
// (min(3, brokers) by default). A kgo consumer group commits its offsets;
// the group's coordinator is killed with SIGKILL. Another node takes over
// the offsets partition, answers FindCoordinator for the group and
// returns exactly the committed offsets, and a new member of the group
// resumes from them: it reads only records produced after the commit.
func TestClusterCoordinatorFailover(t *testing.T) {
	const topic, group = "cofo", "cofo-group"
	parts := []int32{0, 1, 2}
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo group + kill -9", scenario: "cluster: group coordinator killed, committed offsets survive on the new one",
		topics: []faultTopic{{name: topic, partitions: int32(len(parts))}},
	})
	all := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 60*time.Second)
	first := producePartitions(t, all, topic, parts, 40, "before", map[int32]int64{0: 0, 1: 0, 2: 0})

	// Consume everything in the group and commit it.
	consume := func(want int) map[int32][]*kgo.Record {
		cl := newClusterClient(t, all, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
		defer cl.Close()
		got := map[int32][]*kgo.Record{}
		n := 0
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for n < want {
			fs := cl.PollFetches(cctx)
			if cctx.Err() != nil {
				t.Fatalf("group consumed %d of %d records", n, want)
			}
			fs.EachError(func(tp string, p int32, err error) { t.Fatalf("group fetch %s/%d: %v", tp, p, err) })
			fs.EachRecord(func(r *kgo.Record) { got[r.Partition] = append(got[r.Partition], r); n++ })
		}
		if err := cl.CommitUncommittedOffsets(cctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
		return got
	}
	got := consume(40 * len(parts))
	for _, p := range parts {
		sameRecords(t, fmt.Sprintf("%s/%d first read", topic, p), first[p], got[p])
	}
	want := map[int32]int64{0: 40, 1: 40, 2: 40}
	if have := committedOffsets(t, adm, group, topic); !maps.Equal(have, want) {
		t.Fatalf("committed offsets %v, want %v", have, want)
	}
	var coord int32 = -1
	adm.FindGroupCoordinators(ctx, group).Each(func(d kadm.FindCoordinatorResponse) {
		if d.Err != nil {
			t.Fatalf("FindCoordinator: %v", d.Err)
		}
		coord = d.NodeID
	})
	if coord < 0 {
		t.Fatalf("no coordinator for %s", group)
	}
	c.node(coord).Kill9(t)
	killed := time.Now()
	var live []int32
	for _, id := range c.ids() {
		if id != coord {
			live = append(live, id)
		}
	}
	t.Logf("killed the coordinator, node %d", coord)
	ladm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(live...)))
	waitFor(t, 20*time.Second, "another coordinator with the committed offsets", func() (bool, string) {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var now int32 = -1
		var cerr error
		ladm.FindGroupCoordinators(cctx, group).Each(func(d kadm.FindCoordinatorResponse) { now, cerr = d.NodeID, d.Err })
		if cerr != nil || now < 0 || now == coord {
			return false, fmt.Sprintf("coordinator %d (%v)", now, cerr)
		}
		r, err := ladm.FetchOffsets(cctx, group)
		if err != nil {
			return false, err.Error()
		}
		have := map[int32]int64{}
		var oerr error
		r.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil {
				oerr = o.Err
			}
			if o.Topic == topic && o.At >= 0 {
				have[o.Partition] = o.At
			}
		})
		if oerr != nil {
			return false, oerr.Error()
		}
		if !maps.Equal(have, want) {
			t.Fatalf("new coordinator %d returned committed offsets %v, want %v", now, have, want)
		}
		return true, ""
	})
	t.Logf("measure: committed offsets served by a new coordinator %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	// A new member resumes from the commit: only the new records.
	all = c.kafkaAddrs(live...)
	second := producePartitions(t, all, topic, parts, 10, "after", map[int32]int64{0: 40, 1: 40, 2: 40})
	got = consume(10 * len(parts))
	for _, p := range parts {
		sameRecords(t, fmt.Sprintf("%s/%d after the failover", topic, p), second[p], got[p])
	}
	if have := committedOffsets(t, ladm, group, topic); !maps.Equal(have, map[int32]int64{0: 50, 1: 50, 2: 50}) {
		t.Fatalf("committed offsets after the failover %v, want 50 each", have)
	}
}
