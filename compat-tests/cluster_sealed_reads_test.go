package compat

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// servedBy counts the record bytes a kgo client read from each node.
type servedBy struct {
	mu    sync.Mutex
	bytes map[int32]int
}

func (s *servedBy) OnFetchBatchRead(meta kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes == nil {
		s.bytes = map[int32]int{}
	}
	s.bytes[meta.NodeID] += m.UncompressedBytes
}

func (s *servedBy) get() map[int32]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]int{}
	for k, v := range s.bytes {
		out[k] = v
	}
	return out
}

// rawFetch fetches topic/0 at offset from one node with Fetch version v
// (rack: the consumer's rack id, v11+).
func rawFetch(t *testing.T, r *rawClient, v int16, topic string, offset int64, rack string) (kmsg.FetchResponseTopicPartition, error) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.Rack = rack
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = 1 << 20
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := r.do(req, v, 5*time.Second)
	if err != nil {
		return kmsg.FetchResponseTopicPartition{}, err
	}
	fr := resp.(*kmsg.FetchResponse)
	if fr.GetVersion() != v {
		t.Fatalf("fetch went out as v%d, want v%d", fr.GetVersion(), v)
	}
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
		return kmsg.FetchResponseTopicPartition{}, fmt.Errorf("fetch response shape: %d topics", len(fr.Topics))
	}
	return fr.Topics[0].Partitions[0], nil
}

// TestClusterSealedReads: a 3-node cluster whose nodes sit in racks r1-r3,
// an RF=3 topic that rolls every KiB. A follower serves a sealed range
// itself (Fetch v10: records; at the sealed end NOT_LEADER_OR_FOLLOWER,
// or PreferredReadReplica = the leader for a v11+ client with a rack). The leader sends a consumer
// of another rack to the follower there (KIP-392). A kgo consumer with
// that rack reads every record exactly, part of them from the follower.
// Then the first segment's leader is killed and consumers with and
// without a rack read everything from the beginning again.
func TestClusterSealedReads(t *testing.T) {
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	done := cardSetup(t, "tusk 3-node cluster in racks r1-r3")
	c := startClusterWith(t, 3, func(id int32) []startOpt { return []startOpt{withFlag("rack", fmt.Sprintf("r%d", id))} })
	done()
	card(t, "franz-go kgo + raw Fetch", "cluster: sealed segments served by any replica, KIP-392 preferred read replica")
	const topic = "sealed"
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	createClusterTopic(t, c, adm, topic, map[string]*string{"segment.bytes": strp("1024")})
	var err error
	// Rounds of 50 records (about 700 bytes compressed): every other one
	// makes the leader roll.
	const rounds, per, n = 12, 50, 12 * 50
	var acked []prodRec
	for i := 0; i < rounds; i++ {
		acked = append(acked, producePartitions(t, c.kafkaAddrs(c.ids()...), topic, []int32{0}, per, fmt.Sprintf("sealed%d", i), map[int32]int64{0: int64(len(acked))})[0]...)
	}
	// The checks below need the final segment chain, as every node has
	// it. The last round's roll may still be under way when the acks are
	// in (each roll hands the active segment to another replica, so the
	// follower picked from an earlier view can be the new leader, or the
	// earlier sealed end sealed), and a node's metadata may lag another's.
	// No roll can follow once the active segment holds fewer bytes than
	// segment.bytes.
	var segs []dumpSegment
	raws := map[int32]*rawClient{}
	waitFor(t, 15*time.Second, "rolls settled", func() (bool, string) {
		segs = nil
		for _, id := range c.ids() {
			s := c.segmentsVia(t, id, topic, 0)
			if len(s) == 0 {
				return false, fmt.Sprintf("no segments via node %d", id)
			}
			if segs != nil && !reflect.DeepEqual(s, segs) {
				return false, fmt.Sprintf("node %d has segments %+v, node %d %+v", id, s, c.ids()[0], segs)
			}
			segs = s
		}
		a := segs[len(segs)-1]
		if len(segs) < 4 || a.State != "active" || len(a.Replicas) != 3 {
			return false, fmt.Sprintf("segments %+v", segs)
		}
		if raws[a.Leader] == nil {
			raws[a.Leader] = newRawClient(t, c.node(a.Leader).Kafka)
		}
		got, err := rawFetch(t, raws[a.Leader], 10, topic, a.Base, "")
		if err != nil {
			return false, fmt.Sprintf("fetch from the active leader %d: %v", a.Leader, err)
		}
		if got.ErrorCode != 0 || got.HighWatermark != n || len(got.RecordBatches) >= 1024 {
			return false, fmt.Sprintf("active segment from %d on leader %d: %s, high watermark %d, %d bytes (segment.bytes 1024)",
				a.Base, a.Leader, errName(got.ErrorCode), got.HighWatermark, len(got.RecordBatches))
		}
		return true, ""
	})
	active := segs[len(segs)-1]
	leader, sealedEnd := active.Leader, active.Base
	var follower int32 = -1
	for _, id := range active.Replicas {
		if id != leader {
			follower = id
			break
		}
	}
	t.Logf("%d segments, sealed below %d, leader %d, follower %d", len(segs), sealedEnd, leader, follower)
	fr := newRawClient(t, c.node(follower).Kafka)
	// The follower serves the sealed range once it verified its copy.
	var got kmsg.FetchResponseTopicPartition
	waitFor(t, 10*time.Second, "records from the follower (Fetch v10)", func() (bool, string) {
		got, err = rawFetch(t, fr, 10, topic, 0, "")
		if err != nil {
			return false, err.Error()
		}
		return got.ErrorCode == 0 && len(got.RecordBatches) > 0, fmt.Sprintf("%s, %d bytes", errName(got.ErrorCode), len(got.RecordBatches))
	})
	if got.HighWatermark < sealedEnd {
		t.Fatalf("follower answered high watermark %d below the sealed end %d", got.HighWatermark, sealedEnd)
	}
	if last := lastOffsetOf(t, got.RecordBatches); last >= sealedEnd {
		t.Fatalf("follower served offset %d, at or beyond the sealed end %d", last, sealedEnd)
	}
	if got, err = rawFetch(t, fr, 10, topic, sealedEnd, ""); err != nil || got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("follower at the sealed end (v10): %s, %v; want NOT_LEADER_OR_FOLLOWER", errName(got.ErrorCode), err)
	}
	if got, err = rawFetch(t, fr, 11, topic, sealedEnd, "r9"); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != leader || len(got.RecordBatches) != 0 {
		t.Fatalf("follower at the sealed end (v11, rack r9): %s, preferred %d, %d bytes, %v; want the leader %d", errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), err, leader)
	}
	if got, err = rawFetch(t, fr, 11, topic, sealedEnd, ""); err != nil || got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("follower at the sealed end (v11, no rack): %s, %v; want NOT_LEADER_OR_FOLLOWER", errName(got.ErrorCode), err)
	}
	lr := newRawClient(t, c.node(leader).Kafka)
	rack := fmt.Sprintf("r%d", follower)
	if got, err = rawFetch(t, lr, 11, topic, 0, rack); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != follower || len(got.RecordBatches) != 0 {
		t.Fatalf("leader, consumer in %s: %s, preferred %d, %d bytes, %v; want node %d", rack, errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), err, follower)
	}
	if got, err = rawFetch(t, lr, 11, topic, 0, fmt.Sprintf("r%d", leader)); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != -1 || len(got.RecordBatches) == 0 {
		t.Fatalf("leader, consumer in its own rack: %s, preferred %d, %d bytes, %v; want records", errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), err)
	}
	if got, err = rawFetch(t, lr, 11, topic, sealedEnd, rack); err != nil || got.PreferredReadReplica != -1 {
		t.Fatalf("leader, active range: preferred %d, %v; want served by the leader", got.PreferredReadReplica, err)
	}

	// A kgo consumer in the follower's rack reads everything exactly.
	seen := &servedBy{}
	recs := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, map[int32]int64{0: 0}, map[int32]int{0: n}, 30*time.Second,
		kgo.Rack(rack), kgo.WithHooks(seen))
	sameRecords(t, topic+"/0 (rack "+rack+")", acked, recs[0])
	by := seen.get()
	if by[follower] == 0 {
		t.Fatalf("no record bytes came from the follower %d in the consumer's rack: %v", follower, by)
	}
	t.Logf("measure: rack %s consumer read bytes per node %v", rack, by)

	// The first segment's leader goes down: sealed reads go on.
	victim := segs[0].Leader
	c.node(victim).Kill9(t)
	var live []int32
	for _, id := range c.ids() {
		if id != victim {
			live = append(live, id)
		}
	}
	t.Logf("killed node %d, the first segment's leader", victim)
	waitFor(t, 15*time.Second, "an active leader other than the killed node", func() (bool, string) {
		s := c.segmentsVia(t, live[0], topic, 0)
		if len(s) == 0 {
			return false, "no metadata"
		}
		a := s[len(s)-1]
		return a.State == "active" && a.Leader != victim, fmt.Sprintf("active segment led by %d (%s)", a.Leader, a.State)
	})
	recs = readPartitions(t, c.kafkaAddrs(live...), topic, map[int32]int64{0: 0}, map[int32]int{0: n}, 30*time.Second)
	sameRecords(t, topic+"/0 (first leader down)", acked, recs[0])
	for _, id := range live {
		seen := &servedBy{}
		recs = readPartitions(t, c.kafkaAddrs(live...), topic, map[int32]int64{0: 0}, map[int32]int{0: n}, 30*time.Second,
			kgo.Rack(fmt.Sprintf("r%d", id)), kgo.WithHooks(seen))
		sameRecords(t, fmt.Sprintf("%s/0 (first leader down, rack r%d)", topic, id), acked, recs[0])
		if seen.get()[victim] > 0 {
			t.Fatalf("records came from the killed node %d", victim)
		}
	}
}

// lastOffsetOf is the last offset in a record set.
func lastOffsetOf(t *testing.T, b []byte) int64 {
	t.Helper()
	last := int64(-1)
	for len(b) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatalf("record set: %v", err)
		}
		last = rb.FirstOffset + int64(rb.LastOffsetDelta)
		b = b[12+int(rb.Length):]
	}
	return last
}
