package compat

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// testClusterForward: a Produce sent to a node that does not lead the
// partition is forwarded to the leader (produce.forward, the default) and
// answered with the leader's offsets; the records are then read back
// exactly, in order, from the leader. One batch goes to each non-leader.
func testClusterForward(t *testing.T, c *cluster) {
	card(t, "raw kmsg + franz-go kgo", "cluster: Produce to a non-leader is forwarded to the leader")
	const topic = "fwd"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 3, nil, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	ids := c.ids()
	for _, id := range ids {
		c.waitTopicsOn(t, id, map[string]int{topic: 3}, 10*time.Second)
	}
	md := c.metadataOf(t, 1, []string{topic})
	leader := md.Topics[topic].Leaders[0]
	var want [][]byte
	next := int64(0)
	for _, via := range ids {
		if via == leader {
			continue
		}
		for _, version := range []int16{3, 9} {
			vals := [][]byte{[]byte(fmt.Sprintf("via-%d-v%d-a", via, version)), []byte(fmt.Sprintf("via-%d-v%d-b", via, version))}
			// A node that just started may not hold its lease yet (the
			// leader answers NOT_LEADER_FOR_PARTITION, retriable and
			// nothing appended): retry those, as clients do.
			var code int16
			var base int64
			for deadline := time.Now().Add(10 * time.Second); ; {
				rc := dialRaw(t, c.node(via).Kafka)
				code, base = produceRaw(t, rc, version, topic, 0, buildBatch(vals, time.Now().UnixMilli()))
				rc.c.Close()
				if code == 0 || !retriable(code) || time.Now().After(deadline) {
					break
				}
				t.Logf("produce v%d via node %d: %s, retrying", version, via, errName(code))
				time.Sleep(100 * time.Millisecond)
			}
			if code != 0 || base != next {
				t.Fatalf("produce v%d to partition 0 (leader %d) via node %d: %s base %d, want NONE base %d", version, leader, via, errName(code), base, next)
			}
			next += int64(len(vals))
			want = append(want, vals...)
		}
	}
	recs := readPartitions(t, c.kafkaAddrs(leader), topic, map[int32]int64{0: 0}, map[int32]int{0: len(want)}, 15*time.Second)[0]
	if len(recs) != len(want) {
		t.Fatalf("read %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Offset != int64(i) || !bytes.Equal(r.Value, want[i]) {
			t.Fatalf("record %d: offset %d value %q, want offset %d value %q", i, r.Offset, r.Value, i, want[i])
		}
	}
	t.Logf("measure: %d forwarded records read back exactly from leader %d", len(want), leader)
}
