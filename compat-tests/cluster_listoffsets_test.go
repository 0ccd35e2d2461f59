package compat

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterListOffsetsAfterLeaderRestart: the leader of a partition's
// active segment (RF=3, 1,000 records acknowledged with acks=all) is
// killed with SIGKILL and restarted at once, before any failover, so it
// still leads the segment with a log whose high watermark restarts from
// the log start. For 5 s every node is asked ListOffsets latest (both
// isolation levels) of every partition: an answer without an error is
// exactly 1,000 (a retriable error, such as OFFSET_NOT_AVAILABLE while
// the high watermark is not known again, is fine), and in the end each partition is answered 1,000. Before the
// leader checked its high watermark, the restarted node answered 0 for a
// few hundred milliseconds.
func TestClusterListOffsetsAfterLeaderRestart(t *testing.T) {
	const topic, parts, n = "lo-restart", 3, 1000
	c, _ := startFaultScenario(t, faultScenario{nodes: 3, client: "raw ListOffsets + kill -9",
		scenario: "cluster: a segment leader restarted at once never answers ListOffsets below the acknowledged end",
		topics:   []faultTopic{{name: topic, partitions: parts}}})
	eosProduceInput(t, c.kafkaAddrs(c.ids()...), topic, parts*n)
	ss := c.segmentsVia(t, c.ids()[0], topic, 0)
	if len(ss) == 0 {
		t.Fatal("no segments in the dump")
	}
	victim := ss[len(ss)-1].Leader
	c.node(victim).Kill9(t)
	c.restartNodeSamePorts(t, victim)
	t.Logf("killed and restarted node %d, leader of %s/0's active segment %d", victim, topic, ss[len(ss)-1].ID)
	ask := func(id int32, isolation int8) (map[int32]int64, map[int32]int16, error) {
		r := c.raw(t, id)
		defer r.close()
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = isolation
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := int32(0); p < parts; p++ {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := r.do(req, 8, 2*time.Second)
		if err != nil {
			return nil, nil, err
		}
		offs, codes := map[int32]int64{}, map[int32]int16{}
		for _, p := range resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions {
			offs[p.Partition], codes[p.Partition] = p.Offset, p.ErrorCode
		}
		return offs, codes, nil
	}
	answered := map[int32]bool{}
	var wrong []string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) || len(answered) < parts; {
		if time.Since(end) > 30*time.Second {
			t.Fatalf("partitions answered %v within 35 s of the restart", answered)
		}
		for _, id := range c.ids() {
			for _, isolation := range []int8{0, 1} {
				offs, codes, err := ask(id, isolation)
				if err != nil {
					continue // the restarted node may not listen yet
				}
				for p, code := range codes {
					switch {
					case code == 0 && offs[p] == n:
						answered[p] = true
					case code == 0:
						wrong = append(wrong, fmt.Sprintf("node %d %s/%d isolation %d: %d", id, topic, p, isolation, offs[p]))
					case !retriable(code):
						wrong = append(wrong, fmt.Sprintf("node %d %s/%d isolation %d: %s", id, topic, p, isolation, errName(code)))
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(wrong) > 0 {
		t.Fatalf("%d wrong answers, the first: %s", len(wrong), strings.Join(wrong[:min(len(wrong), 10)], "; "))
	}
}
