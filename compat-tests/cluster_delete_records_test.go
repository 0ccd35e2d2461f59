package compat

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestClusterDeleteRecordsSurvivesLeaderKill: 3 nodes, an RF=3 topic
// that does not rotate. 30 records, then DeleteRecords to 15; right after
// the answer the leader is killed with SIGKILL. The new leader's log
// starts at 15 (ListOffsets earliest, from every survivor) and a consumer
// from the earliest offset reads exactly records 15..29: an answered
// deletion holds on every replica. (Before, the leader answered before
// its followers moved their log start and the new leader started at 0.)
func TestClusterDeleteRecordsSurvivesLeaderKill(t *testing.T) {
	const topic = "delrec"
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kadm DeleteRecords + kill -9", scenario: "cluster: DeleteRecords answered, leader killed, the deletion holds",
		topics: []faultTopic{{name: topic, partitions: 1, configs: map[string]*string{"segment.rotate": kadmStr("false")}}},
	})
	all := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 90*time.Second)
	recs := producePartitions(t, all, topic, []int32{0}, 30, "dr", map[int32]int64{0: 0})
	segs := c.segmentsVia(t, c.ids()[0], topic, 0)
	leader := segs[len(segs)-1].Leader

	resp, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 15}}})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := resp.Lookup(topic, 0)
	if !ok || r.Err != nil || r.LowWatermark != 15 {
		t.Fatalf("DeleteRecords to 15: %+v (found %v)", r, ok)
	}
	c.node(leader).Kill9(t)
	var others []int32
	for _, id := range c.ids() {
		if id != leader {
			others = append(others, id)
		}
	}
	survivors := c.kafkaAddrs(others...)
	sadm := kadm.NewClient(newClusterClient(t, survivors))
	waitFor(t, 30*time.Second, "a new leader whose log starts at 15", func() (bool, string) {
		lo, err := sadm.ListStartOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		o, ok := lo.Lookup(topic, 0)
		if !ok || o.Err != nil {
			return false, fmt.Sprintf("%+v", o)
		}
		if o.Offset != 15 {
			t.Fatalf("after the kill the log starts at %d, want 15 (the deleted records came back)", o.Offset)
		}
		return true, ""
	})
	got := readPartitions(t, survivors, topic, map[int32]int64{0: 15}, map[int32]int{0: 15}, 30*time.Second)
	sameRecords(t, "after the kill", recs[0][15:], got[0])
}
