package replica

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
)

// sealTxnBatch is a transactional batch of values from producer pid at epoch,
// starting at sequence seq.
func sealTxnBatch(pid int64, epoch int16, seq int32, values ...string) []byte {
	kvs := make([]kafkaproto.KV, len(values))
	for i, v := range values {
		kvs[i] = kafkaproto.KV{Key: []byte("k"), Value: []byte(v)}
	}
	b := kafkaproto.AppendBatch(nil, 1000, kvs)
	binary.BigEndian.PutUint16(b[21:], kafkaproto.AttrTransactional)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// appendTxn appends batch under node id's leadership (as Produce does) and
// returns its base offset.
func (c *cluster) appendTxn(id int32, batch []byte) int64 {
	c.t.Helper()
	lp := c.nodes[id].m.Leader(tp0)
	if lp == nil {
		c.t.Fatalf("node %d does not lead", id)
	}
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		c.t.Fatal(err)
	}
	epoch, release, err := lp.Begin(context.Background())
	if err != nil {
		c.t.Fatalf("node %d: begin: %v", id, err)
	}
	res, err := lp.log.Append(batch, h, epoch)
	release(int64(len(batch)))
	if err != nil {
		c.t.Fatalf("node %d: append: %v", id, err)
	}
	return res.BaseOffset
}

// marker writes pid's COMMIT or ABORT under node id's leadership (as
// WriteTxnMarkers does) and returns its offset.
func (c *cluster) marker(id int32, pid int64, epoch int16, commit bool) int64 {
	c.t.Helper()
	lp := c.nodes[id].m.Leader(tp0)
	if lp == nil {
		c.t.Fatalf("node %d does not lead", id)
	}
	le, release, err := lp.Begin(context.Background())
	if err != nil {
		c.t.Fatalf("node %d: begin: %v", id, err)
	}
	off, err := lp.log.AppendMarker(pid, epoch, 0, commit, le)
	release(1)
	if err != nil {
		c.t.Fatalf("node %d: marker: %v", id, err)
	}
	return off
}

func firstUnstable(s metadata.Segment) int64 {
	if s.FirstUnstable == nil {
		return -1
	}
	return *s.FirstUnstable
}

// A planned roll records the sealed segment's first unstable offset: the
// first offset of the oldest transaction open at its end, or its end.
func TestRollRecordsFirstUnstableOffset(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.produce(1, 0)                                 // 0
	c.appendTxn(1, sealTxnBatch(7, 0, 0, "a", "b")) // 1-2, pid 7 open from 1
	c.produce(1, 3)                                 // 3
	c.appendTxn(1, sealTxnBatch(8, 0, 0, "c"))      // 4, pid 8 open from 4
	if off := c.marker(1, 8, 0, true); off != 5 {   // pid 8 committed
		t.Fatalf("marker at %d; want 5", off)
	}
	c.nodes[1].m.Roll(c.nodes[1].m.Leader(tp0))
	tpc, _ := c.meta.fsm.Topic("t")
	s := tpc.Parts[0].Segments[0]
	if s.EndOffset != 6 || firstUnstable(s) != 1 || s.StableEnd() != 1 {
		t.Fatalf("sealed segment [%d, %d): first unstable %d, stable end %d; want end 6, 1, 1", s.BaseOffset, s.EndOffset, firstUnstable(s), s.StableEnd())
	}
	c.reconcileAll()
	next := c.active().Leader
	// The next leader knows pid 7's transaction from the bytes: its
	// ABORT closes it, and the next seal records its end.
	if off := c.marker(next, 7, 0, false); off != 6 {
		t.Fatalf("abort at %d; want 6", off)
	}
	c.produce(next, 7)
	c.nodes[next].m.Roll(c.nodes[next].m.Leader(tp0))
	tpc, _ = c.meta.fsm.Topic("t")
	s = tpc.Parts[0].Segments[1]
	if s.BaseOffset != 6 || s.EndOffset != 8 || firstUnstable(s) != 8 || s.StableEnd() != 8 {
		t.Fatalf("second sealed segment [%d, %d): first unstable %d, stable end %d; want [6, 8) 8, 8", s.BaseOffset, s.EndOffset, firstUnstable(s), s.StableEnd())
	}
}

// A learner that restarts its copy at the leader's log start (retention
// or DeleteRecords moved it past the learner's end) never sees the first
// batch of a transaction opened below that start. It must still count
// the transaction open, or as a replica (and later a segment leader) its
// last stable offset would pass records that are not decided: it takes
// the leader's open transactions that began below its copy start.
func TestLearnerKnowsTransactionsOpenBelowItsStart(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2})
	c.produce(1, 0)                                 // 0
	c.appendTxn(1, sealTxnBatch(7, 0, 0, "a"))      // 1: pid 7 opens, no later batch
	c.produce(1, 2)                                 // 2
	c.appendTxn(1, sealTxnBatch(8, 0, 0, "b"))      // 3: pid 8 opens
	c.produce(1, 4)                                 // 4
	c.appendTxn(1, sealTxnBatch(8, 0, 1, "c", "d")) // 5-6: pid 8 again
	c.produce(1, 7)                                 // 7
	c.eventually("HW 8", func() bool { return c.log(1).HighWatermark() == 8 })
	if _, err := c.log(1).DeleteRecordsBefore(4); err != nil {
		t.Fatal(err)
	}
	if lso := c.log(1).LastStableOffset(); lso != 4 {
		t.Fatalf("leader's LSO %d; want 4 (its log start: pid 7 is open from 1)", lso)
	}
	// Node 2 leaves the set (a laggard roll), and node 3 is assigned as a
	// learner.
	seg := c.active()
	if err := c.meta.fsm.Apply(metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
		EndOffset: 8, NextLeader: 1, NextReplicas: []int32{1}, SealedReplicas: []int32{1}}); err != nil {
		t.Fatal(err)
	}
	seg = c.active()
	if err := c.meta.fsm.Apply(metadata.AssignLearners{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
		Learners: []int32{3}}); err != nil {
		t.Fatal(err)
	}
	c.tr.Disconnect(2)
	if roles := c.reconcileAll(); roles[1] != RoleLeader || roles[3] != RoleLearner {
		t.Fatalf("roles %v", roles)
	}
	c.produce(1, 8) // 8
	c.eventually("node 3 restarted its copy at 4 and caught up", func() bool {
		l, ok := c.nodes[3].eng.Log(tp0)
		return ok && l.LogStartOffset() == 4 && l.LogEndOffset() == 9 && l.HighWatermark() == 9
	})
	open := func(id int32) []int64 {
		var out []int64
		for _, o := range c.log(id).OpenTransactions() {
			out = append(out, o.ProducerID, o.FirstOffset)
		}
		return out
	}
	if lso, want := c.log(3).LastStableOffset(), c.log(1).LastStableOffset(); lso != want || want != 4 {
		t.Fatalf("learner's LSO %d, leader's %d; want 4 on both (open: learner %v, leader %v)", lso, want, open(3), open(1))
	}
	if got, want := open(3), open(1); !slices.Equal(got, want) {
		t.Fatalf("learner's open transactions (pid, first) %v; leader's %v", got, want)
	}
	// The markers close them on the learner too.
	c.marker(1, 7, 0, true)  // 9
	c.marker(1, 8, 0, false) // 10
	c.eventually("node 3 copied the markers", func() bool { return c.log(3).HighWatermark() == 11 })
	if lso := c.log(3).LastStableOffset(); lso != 11 || len(open(3)) != 0 {
		t.Fatalf("learner's LSO %d after the markers, open %v; want 11, none", lso, open(3))
	}
}

// A failover seal records no first unstable offset; the next segment's
// leader, whose log ends at the seal when it begins to lead, records it
// from its open transactions (SetFirstUnstable).
func TestFailoverSealGetsFirstUnstable(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.produce(1, 0)                            // 0
	c.appendTxn(1, sealTxnBatch(7, 0, 0, "a")) // 1: pid 7 opens
	c.produce(1, 2)                            // 2
	c.eventually("HW 3", func() bool { return c.log(1).HighWatermark() == 3 && c.log(2).LogEndOffset() == 3 })
	// Node 1 is lost: the controller fences its segment and seals it at
	// 3 (node 2's and 3's log end), node 2 leads the next one.
	c.tr.Disconnect(1)
	seg := c.active()
	for _, cmd := range []metadata.Command{
		metadata.FenceSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch},
		metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
			EndOffset: 3, NextLeader: 2, NextReplicas: []int32{2, 3}},
	} {
		if err := c.meta.fsm.Apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	sealed := func() metadata.Segment {
		tpc, _ := c.meta.fsm.Topic("t")
		return tpc.Parts[0].Segments[0]
	}
	if s := sealed(); s.FirstUnstable != nil {
		t.Fatalf("failover seal recorded first unstable %d", *s.FirstUnstable)
	}
	c.nodes[3].reconcile("t")
	if roles := c.nodes[2].reconcile("t"); roles[0] != RoleLeader {
		t.Fatalf("node 2: %v", roles)
	}
	c.eventually("the failover-sealed segment's first unstable offset", func() bool { return sealed().FirstUnstable != nil })
	if s := sealed(); *s.FirstUnstable != 1 || s.StableEnd() != 1 {
		t.Fatalf("sealed segment [%d, %d): first unstable %d; want 1 (pid 7's transaction)", s.BaseOffset, s.EndOffset, *s.FirstUnstable)
	}
}
