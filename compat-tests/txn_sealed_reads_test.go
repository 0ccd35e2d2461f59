package compat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnSegment is a segment of the metadata dump with its first unstable
// offset (docs/transactions.md, "Sealed segments").
type txnSegment struct {
	ID            int64   `json:"id"`
	Base          int64   `json:"base"`
	End           int64   `json:"end"`
	Leader        int32   `json:"leader"`
	Replicas      []int32 `json:"replicas"`
	State         string  `json:"state"`
	FirstUnstable *int64  `json:"first_unstable"`
}

func (s txnSegment) String() string {
	fu := "unknown"
	if s.FirstUnstable != nil {
		fu = fmt.Sprint(*s.FirstUnstable)
	}
	return fmt.Sprintf("[%d, %d) %s leader %d first unstable %s", s.Base, s.End, s.State, s.Leader, fu)
}

// txnSegmentsVia is topic/0's segment chain as node via's metadata has it.
func (c *cluster) txnSegmentsVia(t *testing.T, via int32, topic string) []txnSegment {
	t.Helper()
	_, raw, err := c.dump(t, via)
	if err != nil {
		return nil
	}
	var d struct {
		Topics map[string]struct {
			Parts []struct {
				Segments []txnSegment `json:"segments"`
			} `json:"parts"`
		} `json:"topics"`
	}
	if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) == 0 {
		return nil
	}
	return d.Topics[topic].Parts[0].Segments
}

// rawFetchIsolation is rawFetch (Fetch v11) with an isolation level.
func rawFetchIsolation(t *testing.T, r *rawClient, v int16, topic string, offset int64, rack string, isolation int8) (kmsg.FetchResponseTopicPartition, error) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.Rack = rack
	req.IsolationLevel = isolation
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
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
		return kmsg.FetchResponseTopicPartition{}, fmt.Errorf("fetch response shape: %d topics", len(fr.Topics))
	}
	return fr.Topics[0].Partitions[0], nil
}

// TestClusterTxnSealedReads: a 3-node cluster in racks r1-r3, an RF=3
// topic rolling every KiB. A transaction opens at offset F and stays open
// while plain records roll several segments past it. Each seal records
// its first unstable offset: the segment's end below F, F above. A
// follower serves read_committed fetches of sealed segments only below
// F (records up to it, LastStableOffset = that bound) and sends the
// consumer to the leader at F; read_uncommitted it serves past F. The
// leader sends a read_committed consumer of the follower's rack to the
// follower below F (KIP-392) and serves it itself at F. After the
// commit, a read_committed kgo consumer in that rack reads every record
// exactly once, part of them from the follower. Then the leader is killed:
// the failover seals its segment without a first unstable offset, the
// next leader records it (nothing open: the end), and then the other
// survivor serves read_committed consumers of that segment, and the leader
// sends them there.
func TestClusterTxnSealedReads(t *testing.T) {
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	done := cardSetup(t, "tusk 3-node cluster in racks r1-r3")
	c := startClusterWith(t, 3, func(id int32) []startOpt { return []startOpt{withFlag("rack", fmt.Sprintf("r%d", id))} })
	done()
	card(t, "franz-go kgo transactional producer + raw Fetch read_committed", "cluster: sealed segments' first unstable offset bounds read_committed from replicas (KIP-392)")
	const topic = "txn-sealed"
	seeds := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, seeds))
	ctx := ctxTimeout(t, 90*time.Second)
	createClusterTopic(t, c, adm, topic, map[string]*string{"segment.bytes": strp("1024")})
	plain := newClusterClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	var want []string
	producePlain := func(tag string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("%s-%03d-%s", tag, i, strings.Repeat("x", 100))
			want = append(want, v)
			if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s %d: %v", tag, i, err)
			}
		}
	}
	producePlain("before", 30)
	prod := newClusterClient(t, seeds, kgo.TransactionalID("txn-sealed-producer"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	r, err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("txn-open")}).First()
	if err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	first := r.Offset
	want = append(want, "txn-open")
	producePlain("after", 40)

	// The chain settles (every node has the same one, the active segment
	// below segment.bytes) with sealed segments past first.
	var segs []txnSegment
	waitFor(t, 20*time.Second, "rolls settled past the open transaction", func() (bool, string) {
		segs = nil
		for _, id := range c.ids() {
			s := c.txnSegmentsVia(t, id, topic)
			if len(s) == 0 {
				return false, fmt.Sprintf("no segments via node %d", id)
			}
			if segs != nil && !reflect.DeepEqual(s, segs) {
				return false, fmt.Sprintf("node %d has segments %v, another %v", id, s, segs)
			}
			segs = s
		}
		a := segs[len(segs)-1]
		if a.State != "active" || len(a.Replicas) != 3 || a.Base <= first || len(segs) < 3 || segs[len(segs)-2].Base <= first {
			return false, fmt.Sprintf("segments %v, transaction at %d", segs, first)
		}
		return true, ""
	})
	t.Logf("transaction open at %d; segments %v", first, segs)
	var below, spanning *txnSegment // a sealed segment ending at or below first; the one holding it
	for i := range segs[:len(segs)-1] {
		s := segs[i]
		wantFU := s.End
		if s.End > first {
			wantFU = first
		}
		if s.State != "sealed" || s.FirstUnstable == nil || *s.FirstUnstable != wantFU {
			t.Fatalf("segment %v: want sealed with first unstable offset %d", s, wantFU)
		}
		if s.End <= first && below == nil {
			below = &segs[i]
		}
		if s.Base <= first && first < s.End {
			spanning = &segs[i]
		}
	}
	if below == nil || spanning == nil {
		t.Fatalf("segments %v: none wholly below the transaction at %d, or none holding it", segs, first)
	}
	active := segs[len(segs)-1]
	leader := active.Leader
	follower := int32(-1)
	for _, id := range active.Replicas {
		if id != leader {
			follower = id
			break
		}
	}
	fr := newRawClient(t, c.node(follower).Kafka)
	lr := newRawClient(t, c.node(leader).Kafka)
	// The follower serves a segment below the transaction read_committed
	// once it verified its copy: records up to the segment's end, with
	// that as the last stable offset (a read may stop at a local file's
	// end: read on from there).
	var got kmsg.FetchResponseTopicPartition
	readTo := func(from, stable int64) {
		t.Helper()
		for off := from; off < stable; {
			waitFor(t, 10*time.Second, fmt.Sprintf("read_committed records at %d from the follower", off), func() (bool, string) {
				got, err = rawFetchIsolation(t, fr, 11, topic, off, "", 1)
				if err != nil {
					return false, err.Error()
				}
				return got.ErrorCode == 0 && len(got.RecordBatches) > 0, fmt.Sprintf("%s, %d bytes", errName(got.ErrorCode), len(got.RecordBatches))
			})
			last := lastOffsetOf(t, got.RecordBatches)
			if last >= stable || got.LastStableOffset != stable {
				t.Fatalf("follower, read_committed at %d: last offset %d, LSO %d; want below %d, LSO %d", off, last, got.LastStableOffset, stable, stable)
			}
			off = last + 1
		}
	}
	readTo(below.Base, below.End)
	// In the segment holding the open transaction: up to it, not beyond.
	readTo(spanning.Base, first)
	if got, err = rawFetchIsolation(t, fr, 11, topic, first, "r9", 1); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != leader || len(got.RecordBatches) != 0 {
		t.Fatalf("follower, read_committed at the open transaction %d (rack r9): %s, preferred %d, %d bytes, %v; want the leader %d",
			first, errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), err, leader)
	}
	if got, err = rawFetchIsolation(t, fr, 10, topic, first, "", 1); err != nil || got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("follower, read_committed at the open transaction %d (v10): %s, %v; want NOT_LEADER_OR_FOLLOWER", first, errName(got.ErrorCode), err)
	}
	waitFor(t, 10*time.Second, "read_uncommitted records past the transaction from the follower", func() (bool, string) {
		got, err = rawFetchIsolation(t, fr, 11, topic, first, "", 0)
		if err != nil {
			return false, err.Error()
		}
		return got.ErrorCode == 0 && len(got.RecordBatches) > 0, fmt.Sprintf("%s, %d bytes", errName(got.ErrorCode), len(got.RecordBatches))
	})
	// The leader: a read_committed consumer in the follower's rack goes
	// there below the transaction, and is served here from it on.
	rack := fmt.Sprintf("r%d", follower)
	if got, err = rawFetchIsolation(t, lr, 11, topic, below.Base, rack, 1); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != follower || len(got.RecordBatches) != 0 {
		t.Fatalf("leader, read_committed consumer in %s at %d: %s, preferred %d, %d bytes, %v; want node %d",
			rack, below.Base, errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), err, follower)
	}
	if got, err = rawFetchIsolation(t, lr, 11, topic, first, rack, 1); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != -1 || len(got.RecordBatches) != 0 || got.LastStableOffset != first {
		t.Fatalf("leader, read_committed consumer in %s at the open transaction %d: %s, preferred %d, %d bytes, LSO %d, %v; want served here, nothing, LSO %d",
			rack, first, errName(got.ErrorCode), got.PreferredReadReplica, len(got.RecordBatches), got.LastStableOffset, err, first)
	}
	if got, err = rawFetchIsolation(t, lr, 11, topic, first, rack, 0); err != nil || got.ErrorCode != 0 || got.PreferredReadReplica != follower {
		t.Fatalf("leader, read_uncommitted consumer in %s at %d: %s, preferred %d, %v; want node %d", rack, first, errName(got.ErrorCode), got.PreferredReadReplica, err, follower)
	}

	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	seen := &servedBy{}
	recs := readPartitions(t, seeds, topic, map[int32]int64{0: 0}, map[int32]int{0: len(want)}, 30*time.Second,
		kgo.Rack(rack), kgo.WithHooks(seen), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(recs[0]) != len(want) {
		t.Fatalf("read_committed consumer in %s: %d records, want %d", rack, len(recs[0]), len(want))
	}
	for i, r := range recs[0] {
		if string(r.Value) != want[i] {
			t.Fatalf("read_committed consumer in %s: record %d at offset %d is %.20q, want %.20q", rack, i, r.Offset, r.Value, want[i])
		}
	}
	by := seen.get()
	if by[follower] == 0 {
		t.Fatalf("no record bytes came from the follower %d in the consumer's rack: %v", follower, by)
	}
	t.Logf("measure: read_committed rack %s consumer read bytes per node %v", rack, by)

	// A failover seal does not know its first unstable offset: no
	// replica serves that segment to read_committed consumers, and the
	// leader keeps such consumers (read_uncommitted ones still go to a
	// replica).
	// The active segment to be sealed by the failover holds a record
	// (a record that fills a segment rolls it: then one more).
	for i := 0; ; i++ {
		if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("tail-%d", i))}).FirstErr(); err != nil {
			t.Fatalf("produce tail %d: %v", i, err)
		}
		var hw int64
		waitFor(t, 10*time.Second, "the chain settled after the tail record", func() (bool, string) {
			var segs []txnSegment
			for _, id := range c.ids() {
				s := c.txnSegmentsVia(t, id, topic)
				if len(s) == 0 || (segs != nil && !reflect.DeepEqual(s, segs)) {
					return false, fmt.Sprintf("node %d has segments %v, another %v", id, s, segs)
				}
				segs = s
			}
			active = segs[len(segs)-1]
			got, err := rawFetchIsolation(t, newRawClient(t, c.node(active.Leader).Kafka), 11, topic, active.Base, "", 0)
			if err != nil || got.ErrorCode != 0 {
				return false, fmt.Sprintf("fetch from the leader %d: %s, %v", active.Leader, errName(got.ErrorCode), err)
			}
			hw = got.HighWatermark
			return active.State == "active", fmt.Sprintf("segments %v", segs)
		})
		if hw > active.Base {
			break
		}
		if i == 3 {
			t.Fatalf("active segment %v still empty after %d records", active, i+1)
		}
	}
	leader = active.Leader
	c.node(leader).Kill9(t)
	var live []int32
	for _, id := range c.ids() {
		if id != leader {
			live = append(live, id)
		}
	}
	var failed txnSegment
	var next txnSegment
	waitFor(t, 20*time.Second, "the killed leader's segment sealed by the failover", func() (bool, string) {
		s := c.txnSegmentsVia(t, live[0], topic)
		for _, id := range live[1:] {
			if o := c.txnSegmentsVia(t, id, topic); !reflect.DeepEqual(o, s) {
				return false, fmt.Sprintf("node %d has segments %v, node %d %v", id, o, live[0], s)
			}
		}
		for i, seg := range s {
			if seg.ID == active.ID && i+1 < len(s) {
				failed, next = seg, s[len(s)-1]
				return seg.State == "sealed" && next.State == "active" && next.Leader != leader, fmt.Sprintf("segments %v", s)
			}
		}
		return false, fmt.Sprintf("segments %v", s)
	})
	if failed.End <= failed.Base {
		t.Fatalf("failover-sealed segment %v is empty", failed)
	}
	// The new leader records it from its open transactions (none).
	waitFor(t, 10*time.Second, "the failover-sealed segment's first unstable offset", func() (bool, string) {
		for _, seg := range c.txnSegmentsVia(t, live[0], topic) {
			if seg.ID == failed.ID {
				failed = seg
			}
		}
		return failed.FirstUnstable != nil, failed.String()
	})
	if *failed.FirstUnstable != failed.End {
		t.Fatalf("failover-sealed segment %v: want first unstable offset %d", failed, failed.End)
	}
	other := live[0]
	if other == next.Leader {
		other = live[1]
	}
	or := newRawClient(t, c.node(other).Kafka)
	waitFor(t, 10*time.Second, "read_committed records of the failover-sealed segment from the other survivor", func() (bool, string) {
		got, err = rawFetchIsolation(t, or, 11, topic, failed.Base, "", 1)
		if err != nil {
			return false, err.Error()
		}
		return got.ErrorCode == 0 && len(got.RecordBatches) > 0, fmt.Sprintf("%s, %d bytes", errName(got.ErrorCode), len(got.RecordBatches))
	})
	if last := lastOffsetOf(t, got.RecordBatches); last >= failed.End || got.LastStableOffset != failed.End {
		t.Fatalf("node %d, read_committed at %d: last offset %d, LSO %d; want below %d, LSO %d", other, failed.Base, last, got.LastStableOffset, failed.End, failed.End)
	}
	nr := newRawClient(t, c.node(next.Leader).Kafka)
	orack := fmt.Sprintf("r%d", other)
	waitFor(t, 10*time.Second, "the leader sending a read_committed consumer to the other survivor", func() (bool, string) {
		got, err = rawFetchIsolation(t, nr, 11, topic, failed.Base, orack, 1)
		if err != nil {
			return false, err.Error()
		}
		return got.ErrorCode == 0 && got.PreferredReadReplica == other, fmt.Sprintf("%s, preferred %d", errName(got.ErrorCode), got.PreferredReadReplica)
	})
}
