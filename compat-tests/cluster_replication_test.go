package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// testClusterReplication: a topic with replication factor 3 on a 3-node
// cluster. kgo produces with acks=all (idempotent); every acknowledgement
// is read back exactly from the leader, and each partition's log is
// byte-identical on all three replicas up to the acknowledged end
// (invariant I1: an acks=all record is on every replica).
func testClusterReplication(t *testing.T, c *cluster) {
	card(t, "franz-go kgo + internal checksum", "cluster: RF=3 acks=all, every ack on all 3 replicas byte for byte")
	const topic, parts, n = "repl3", 3, 300
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, parts, 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s with RF 3: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: parts}, 10*time.Second)
	}
	ps := []int32{0, 1, 2}
	start := map[int32]int64{0: 0, 1: 0, 2: 0}
	acked := producePartitions(t, c.kafkaAddrs(c.ids()...), topic, ps, n, "r", start)
	got := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, start, map[int32]int{0: n, 1: n, 2: n}, 20*time.Second)
	for _, p := range ps {
		sameRecords(t, fmt.Sprintf("%s/%d", topic, p), acked[p], got[p])
	}
	type sum struct {
		Start, End, CRC, Bytes, LEO int64
	}
	for _, p := range ps {
		var first *sum
		var firstID int32
		for _, id := range c.ids() {
			body, _ := json.Marshal(map[string]any{"topic": topic, "partition": p, "end": int64(n)})
			r, err := c.internalPost(id, "/v1/log-checksum", body)
			if err != nil {
				t.Fatalf("checksum of %s/%d on node %d: %v", topic, p, id, err)
			}
			var out struct {
				Start  int64  `json:"start"`
				End    int64  `json:"end"`
				CRC    int64  `json:"crc32c"`
				Bytes  int64  `json:"bytes"`
				LEO    int64  `json:"leo"`
				HW     int64  `json:"hw"`
				ErrMsg string `json:"error"`
			}
			err = json.NewDecoder(r.Body).Decode(&out)
			r.Body.Close()
			if err != nil || r.StatusCode != http.StatusOK {
				t.Fatalf("checksum of %s/%d on node %d: %s %v %s", topic, p, id, r.Status, err, out.ErrMsg)
			}
			s := &sum{out.Start, out.End, out.CRC, out.Bytes, out.LEO}
			if s.LEO < n || s.Bytes == 0 {
				t.Fatalf("node %d holds %s/%d only up to %d (%d bytes), want %d acknowledged records", id, topic, p, s.LEO, s.Bytes, n)
			}
			if first == nil {
				first, firstID = s, id
				continue
			}
			if s.CRC != first.CRC || s.Bytes != first.Bytes || s.Start != first.Start {
				t.Fatalf("%s/%d differs: node %d %+v, node %d %+v", topic, p, firstID, *first, id, *s)
			}
		}
		t.Logf("measure: %s/%d identical on 3 replicas: %d bytes, crc32c %08x", topic, p, first.Bytes, first.CRC)
	}
}
