package compat

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestClusterForwardIdentity: a Produce forwarded to the partition's
// leader is metered there as the client that sent it (an Envelope on the
// internal listener carries its principal, host and listener). User app
// has producer_byte_rate 1000 B/s; it produces 5000 bytes through each of
// the two nodes that do not lead the partition, over SASL_PLAINTEXT with
// SCRAM-SHA-512. The leader's one bucket for app throttles the second
// request by about 9 s (both requests' bytes), where each forwarding node
// metering its own share would throttle it by about 4 s; both records are
// read back at offsets 0 and 1. A client listener does not list Envelope
// in ApiVersions and closes a connection that sends one.
func TestClusterForwardIdentity(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster, SASL_PLAINTEXT clients, produce.forward on")
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("app:app-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withListeners("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"), withFlag("sasl-bootstrap-users-file", users)}
	})
	done()
	card(t, "franz-go kgo (SASL_PLAINTEXT, SCRAM-SHA-512) + raw kmsg", "cluster: a forwarded Produce is metered on the leader as its client (Envelope)")
	const topic = "envq"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 1, nil, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	alter := kmsg.NewPtrAlterClientQuotasRequest()
	e := kmsg.NewAlterClientQuotasRequestEntry()
	e.Entity = []kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: kmsg.StringPtr("app")}}
	e.Ops = []kmsg.AlterClientQuotasRequestEntryOp{{Key: "producer_byte_rate", Value: 1000}}
	alter.Entries = append(alter.Entries, e)
	resp, err := dialRaw(t, c.node(1).Kafka).roundTrip(alter)
	if err != nil || resp.(*kmsg.AlterClientQuotasResponse).Entries[0].ErrorCode != 0 {
		t.Fatalf("alter quotas: %v %+v", err, resp)
	}
	ids := c.ids()
	for _, id := range ids {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
		for deadline := time.Now().Add(10 * time.Second); ; {
			d := kmsg.NewPtrDescribeClientQuotasRequest()
			d.Components = []kmsg.DescribeClientQuotasRequestComponent{{EntityType: "user", Match: kmsg.StringPtr("app"), MatchType: 0}}
			r, err := dialRaw(t, c.node(id).Kafka).roundTrip(d)
			if err == nil && len(r.(*kmsg.DescribeClientQuotasResponse).Entries) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not show the quota: %v %+v", id, err, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	leader := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	var via []int32
	for _, id := range ids {
		if id != leader {
			via = append(via, id)
		}
	}
	mech := kgo.SASL(scram.Auth{User: "app", Pass: "app-secret"}.AsSha512Mechanism())
	values := [][]byte{bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("b"), 5000)}
	var throttles []int32
	for i, id := range via {
		cl := newClusterClient(t, []string{c.node(id).listener(t, "SASL_PLAINTEXT")}, mech)
		seed := cl.SeedBrokers()[0]
		if i == 0 {
			av, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxTimeout(t, 10*time.Second), seed)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range av.ApiKeys {
				if k.ApiKey == int16(kmsg.Envelope) {
					t.Fatalf("node %d's SASL_PLAINTEXT listener lists Envelope in ApiVersions", id)
				}
			}
		}
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, 1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = buildBatch([][]byte{values[i]}, time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		var pr *kmsg.ProduceResponse
		for deadline := time.Now().Add(10 * time.Second); ; {
			if pr, err = req.RequestWith(ctxTimeout(t, 15*time.Second), seed); err != nil {
				t.Fatalf("produce via node %d: %v", id, err)
			}
			// A node that just started may not hold its lease yet
			// (retriable, nothing appended).
			if code := pr.Topics[0].Partitions[0].ErrorCode; code == 0 || !retriable(code) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		p := pr.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != int64(i) {
			t.Fatalf("produce via node %d (leader %d): %s base %d, want NONE base %d", id, leader, errName(p.ErrorCode), p.BaseOffset, i)
		}
		throttles = append(throttles, pr.ThrottleMillis)
	}
	t.Logf("measure: throttle %d ms via node %d, then %d ms via node %d (leader %d)", throttles[0], via[0], throttles[1], via[1], leader)
	if throttles[0] < 3500 || throttles[0] > 4200 {
		t.Errorf("first produce throttled %d ms, want about 4000 (5000-odd bytes at 1000 B/s, 1 s burst)", throttles[0])
	}
	if throttles[1] < 6000 {
		t.Errorf("second produce, through another node, throttled %d ms: want above 6000, the leader metering both requests as user app", throttles[1])
	}
	recs := readPartitions(t, c.kafkaAddrs(leader), topic, map[int32]int64{0: 0}, map[int32]int{0: 2}, 15*time.Second)[0]
	for i, r := range recs {
		if r.Offset != int64(i) || !bytes.Equal(r.Value, values[i]) {
			t.Fatalf("record %d: offset %d value %.10q, want offset %d value %.10q", i, r.Offset, r.Value, i, values[i])
		}
	}

	// A client listener closes a connection that sends an Envelope.
	rc := dialRaw(t, c.node(via[0]).Kafka)
	env := kmsg.NewPtrEnvelopeRequest()
	env.RequestData = []byte(fmt.Sprintf("%020d", 0))
	env.ClientHostAddress = []byte{127, 0, 0, 1}
	if _, err := rc.send(env); err != nil {
		t.Fatal(err)
	}
	b, err := rc.readFrame(10 * time.Second)
	if err == nil {
		t.Fatalf("an Envelope on a client listener was answered (%d bytes)", len(b))
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a client connection that sent an Envelope is still open after 10 s")
	}
}
