package compat

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterFrozenLeader: the segment leader of an RF=3 partition is
// frozen (SIGSTOP), so it loses contact with everyone while its process,
// sockets and state survive, the closest a single machine gets to a
// leader cut off from the cluster. Its lease (1 s) runs out, the
// controller fails the segment over, and then the old leader is thawed.
// Produce requests sent straight to it afterwards (as an unforwarded,
// node-to-node request, so it must answer for itself) are never
// acknowledged, and none of their records is ever visible; every record
// acknowledged before and after is read back exactly.
func TestClusterFrozenLeader(t *testing.T) {
	const topic = "frozen"
	c, _ := startFaultScenario(t, faultScenario{
		nodes: 3, client: "raw kmsg + franz-go kgo + SIGSTOP", scenario: "cluster: a cut-off segment leader never acknowledges, its writes never visible",
		topics: []faultTopic{{name: topic, partitions: 1, configs: map[string]*string{"segment.rotate": strp("false")}}},
		// Forwarding off: a node that knows it no longer leads answers
		// NOT_LEADER_OR_FOLLOWER instead of passing the write on to the
		// new leader (which would acknowledge it, rightly), so a success
		// from the thawed node can only be a write it took itself.
		env: map[string]string{"TUSK_PRODUCE_FORWARD": "false"},
	})
	lp := startLiveProducer(t, c.kafkaAddrs(c.ids()...), topic, []int32{0})
	var acked []prodRec
	collect := func() {
		t.Helper()
		lp.halt()
		lp.mu.Lock()
		defer lp.mu.Unlock()
		if len(lp.errs) > 0 {
			t.Fatalf("%d failed acknowledgements, first: %s", len(lp.errs), lp.errs[0])
		}
		acked = append(acked, lp.acked[0]...)
	}
	waitRounds := func(what string, more int) {
		t.Helper()
		r0, _ := lp.progress()
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			r, errs := lp.progress()
			return r >= r0+more, fmt.Sprintf("%d rounds (from %d), %d failed acks", r, r0, errs)
		})
	}
	waitRounds("producer warm-up", 50)
	// A producer connected to a frozen broker waits for its request
	// timeout (as with any Kafka broker); stop it before the freeze and
	// produce through the other nodes meanwhile.
	collect()
	old := c.metadataOf(t, c.ids()[0], []string{topic}).Topics[topic].Leaders[0]
	var others []int32
	for _, id := range c.ids() {
		if id != old {
			others = append(others, id)
		}
	}
	pid := c.node(old).cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	waitFor(t, 15*time.Second, "a new leader while the old one is frozen", func() (bool, string) {
		l := c.metadataOf(t, others[0], []string{topic}).Topics[topic].Leaders[0]
		return l >= 0 && l != old, fmt.Sprintf("leader %d", l)
	})
	lp = startLiveProducer(t, c.kafkaAddrs(others...), topic, []int32{0})
	waitRounds("producer progress on the new leader", 30)
	thaw()
	// Straight to the old leader, which may not pass the records on
	// (forwarding is off): whatever it answers, it must not be success.
	marker := []byte("written-to-the-deposed-leader")
	for i, acks := range []int16{-1, 1, -1} {
		rc := dialRaw(t, c.node(old).Kafka)
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, acks, 3000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = buildBatch([][]byte{append(append([]byte{}, marker...), byte('0'+i))}, time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		rc.corr++
		payload := appendRequestHeader(nil, req.Key(), req.Version, rc.corr, "frozen-test", req.IsFlexible())
		if err := rc.write(frame(req.AppendTo(payload))); err != nil {
			t.Fatalf("produce to the thawed old leader: %v", err)
		}
		raw, err := rc.readFrame(10 * time.Second)
		rc.c.Close()
		if err != nil {
			t.Logf("old leader closed or timed out (acks=%d): %v", acks, err)
			continue
		}
		pr := kmsg.NewPtrProduceResponse()
		pr.Version = req.Version
		body := raw[4:] // correlation id
		if req.IsFlexible() {
			body = body[1:] // response header tagged fields
		}
		if err := pr.ReadFrom(body); err != nil {
			t.Fatalf("decode produce response: %v", err)
		}
		code := pr.Topics[0].Partitions[0].ErrorCode
		if code == 0 {
			t.Fatalf("the deposed leader acknowledged a write (acks=%d) at offset %d", acks, pr.Topics[0].Partitions[0].BaseOffset)
		}
		t.Logf("deposed leader answered acks=%d with %s", acks, errName(code))
	}
	waitRounds("producer progress after the thaw", 30)
	collect()
	acked = sortedRecs(acked)
	got := readPartitions(t, c.kafkaAddrs(others...), topic, map[int32]int64{0: 0}, map[int32]int{0: len(acked)}, 30*time.Second)[0]
	sameRecords(t, topic+"/0", acked, got)
	for _, r := range got {
		if bytes.HasPrefix(r.Value, marker) {
			t.Fatalf("a record written to the deposed leader is visible at offset %d", r.Offset)
		}
	}
	t.Logf("measure: %d acknowledged records read back exactly; none of the deposed leader's", len(acked))
}
