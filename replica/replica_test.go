package replica

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Follower catch-up and the high watermark: the HW is the minimum over
// the followers' fetch offsets, never more; a follower that catches up
// holds the leader's bytes exactly.
func TestFollowerCatchUpAndHighWatermark(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	if roles := c.reconcileAll(); roles[1] != RoleLeader || roles[2] != RoleFollower || roles[3] != RoleFollower {
		t.Fatalf("roles %v", roles)
	}
	for i := range 4 {
		c.produce(1, i)
	}
	c.eventually("HW 4", func() bool { return c.log(1).HighWatermark() == 4 })
	c.tr.Disconnect(3)
	for i := 4; i < 10; i++ {
		c.produce(1, i)
	}
	c.eventually("node 2 to hold 10 records", func() bool { return c.log(2).LogEndOffset() == 10 })
	// Node 2 fetched everything, node 3 only 4: the HW stays at 4.
	c.eventually("node 2's fetch from 10 to reach the leader", func() bool {
		lp := c.nodes[1].m.Leader(tp0)
		lp.ackMu.Lock()
		defer lp.ackMu.Unlock()
		return lp.acked[2] == 10
	})
	if hw := c.log(1).HighWatermark(); hw != 4 {
		t.Fatalf("leader HW %d with node 3 holding 4 records; want 4", hw)
	}
	c.tr.Reconnect(3)
	c.eventually("HW 10 everywhere", func() bool {
		return c.log(1).HighWatermark() == 10 && c.log(2).HighWatermark() == 10 && c.log(3).HighWatermark() == 10
	})
	for _, id := range []int32{2, 3} {
		if c.log(id).LogEndOffset() != 10 || !c.sameBytes(1, id) {
			t.Fatalf("node %d: LEO %d, bytes equal to the leader's: %v", id, c.log(id).LogEndOffset(), c.sameBytes(1, id))
		}
	}
}

// Followers apply answers whose batches live in a recycled buffer that
// is overwritten once released (the broker's replica connections reuse
// theirs): nothing of an answer is used after its release, so the
// followers hold the leader's bytes exactly, answer after answer.
func TestFollowersApplyRecycledAnswers(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.tr.Recycle(true)
	for round, end := range []int64{5, 12} {
		for i := int(c.log(1).LogEndOffset()); i < int(end); i++ {
			c.produce(1, i)
		}
		c.eventually("the HW everywhere", func() bool {
			return c.log(1).HighWatermark() == end && c.log(2).HighWatermark() == end && c.log(3).HighWatermark() == end
		})
		for _, id := range []int32{2, 3} {
			if c.log(id).LogEndOffset() != end || !c.sameBytes(1, id) {
				t.Fatalf("round %d, node %d: LEO %d (want %d), bytes equal to the leader's: %v", round, id, c.log(id).LogEndOffset(), end, c.sameBytes(1, id))
			}
		}
	}
	// The leader's log holds batches 0..11, one record each, v0..v11.
	var offsets []int64
	err := kafkaproto.SplitBatches(c.bytesOf(1), func(b []byte, h kafkaproto.BatchHeader) error {
		if _, err := kafkaproto.ValidateBatch(b); err != nil {
			return err
		}
		offsets = append(offsets, h.BaseOffset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(offsets, want) {
		t.Fatalf("leader's batches at %v, want %v", offsets, want)
	}
	if n := c.tr.Released(); n < 2 {
		t.Fatalf("%d recycled answers released, want at least 2", n)
	}
}

// acks=all: a wait is released once every replica holds the record, and
// not before.
func TestAcksAllRelease(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.tr.Disconnect(2)
	lp, last := c.produce(1, 0)
	done := make(chan error, 1)
	go func() { done <- lp.WaitAcked(context.Background(), last) }()
	c.eventually("node 3 to hold the record", func() bool { return c.log(3).LogEndOffset() == 1 })
	if ok, err := lp.Acked(last); ok || err != nil {
		t.Fatalf("acked with node 2 cut off: %v, %v", ok, err)
	}
	select {
	case err := <-done:
		t.Fatalf("acks=all wait returned %v with node 2 cut off", err)
	default:
	}
	c.tr.Reconnect(2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("acks=all wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acks=all wait not released after node 2 caught up")
	}
	if c.log(2).LogEndOffset() != 1 {
		t.Fatalf("released before node 2 held the record (LEO %d)", c.log(2).LogEndOffset())
	}
}

// A deposed leader appends nothing more and fails its pending waits.
func TestDeposedLeaderRefusesAppendsAndFailsWaits(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.tr.Disconnect(2)
	c.tr.Disconnect(3)
	lp, last := c.produce(1, 0)
	done := make(chan error, 1)
	go func() { done <- lp.WaitAcked(context.Background(), last) }()
	c.nodes[1].m.Unlead(tp0)
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeposed) {
			t.Fatalf("wait after deposing: %v; want ErrDeposed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait not failed by deposing")
	}
	if _, _, err := lp.Begin(context.Background()); !errors.Is(err, ErrDeposed) {
		t.Fatalf("Begin on a deposed leadership: %v; want ErrDeposed", err)
	}
	if ok, err := lp.Acked(last); !ok || !errors.Is(err, ErrDeposed) {
		t.Fatalf("Acked on a deposed leadership: %v, %v", ok, err)
	}
	// Even a high watermark learned later (as a follower) acknowledges
	// nothing appended under the deposed leadership.
	c.log(1).AdvanceHighWatermark(1)
	if err := lp.WaitAcked(context.Background(), last); !errors.Is(err, ErrDeposed) {
		t.Fatalf("wait with the HW past the record: %v; want ErrDeposed", err)
	}
}

// A lapsed lease freezes the high watermark: followers' fetches are
// recorded but move it only after a renewal; appends are refused.
func TestLeaseExpiryFreezesHighWatermark(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.tr.Disconnect(2)
	c.tr.Disconnect(3)
	for i := range 5 {
		c.produce(1, i)
	}
	c.nodes[1].lease.valid.Store(false)
	c.tr.Reconnect(2)
	c.tr.Reconnect(3)
	lp := c.nodes[1].m.Leader(tp0)
	c.eventually("both followers to report offset 5", func() bool {
		lp.ackMu.Lock()
		defer lp.ackMu.Unlock()
		return lp.acked[2] == 5 && lp.acked[3] == 5
	})
	if hw := c.log(1).HighWatermark(); hw != 0 {
		t.Fatalf("HW moved to %d without a lease", hw)
	}
	if _, _, err := lp.Begin(context.Background()); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Begin without a lease: %v; want ErrLeaseExpired", err)
	}
	c.nodes[1].lease.valid.Store(true)
	c.eventually("HW 5 after the renewal", func() bool { return c.log(1).HighWatermark() == 5 })
}

// A roll commits RollSegment at the log end offset with the range's
// checksum; the next segment starts there at epoch+1 and appends go on.
func TestRollCommits(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	lp := c.nodes[1].m.Leader(tp0)
	c.nodes[1].m.Roll(lp)
	tpc, _ := c.meta.fsm.Topic("t")
	segs := tpc.Parts[0].Segments
	if len(segs) != 2 || segs[0].State != metadata.SegmentSealed || segs[0].EndOffset != 5 || segs[0].Bytes == 0 || segs[0].Checksum == 0 {
		t.Fatalf("segments after the roll: %+v", segs)
	}
	if segs[1].BaseOffset != 5 || segs[1].Epoch != segs[0].Epoch+1 {
		t.Fatalf("next segment %+v", segs[1])
	}
	c.reconcileAll()
	leader := segs[1].Leader
	_, last := c.produce(leader, 5)
	if last != 5 {
		t.Fatalf("first offset of the next segment %d; want 5", last)
	}
	if !lp.Deposed() {
		t.Fatal("the sealed segment's leadership was not deposed")
	}
}

// An ambiguous roll commit (the command applied, the answer lost) never
// lets appends resume on the sealed segment: the retry finds the segment
// superseded, appends stay stopped, and the next segment takes over.
func TestRollCompareAndSetAmbiguousCommit(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	lp := c.nodes[1].m.Leader(tp0)
	first := true
	c.meta.setHook(func(cmd metadata.Command) error {
		err := c.meta.fsm.Apply(cmd)
		if _, ok := cmd.(metadata.RollSegment); ok && first {
			first = false
			if err != nil {
				return err
			}
			return errors.New("raft: timed out enqueuing operation") // committed, answer lost
		}
		return err
	})
	c.nodes[1].m.Roll(lp)
	if c.nodes[1].kicks.Load() == 0 {
		t.Fatal("a superseded roll did not ask for a reconcile")
	}
	// Not yet reconciled: the old leadership must not append at or
	// above the sealed end.
	if _, release, err := lp.Begin(context.Background()); err == nil {
		release(0)
		t.Fatal("appends resumed on a segment whose roll may have committed")
	}
	if leo := c.log(1).LogEndOffset(); leo != 5 {
		t.Fatalf("LEO %d; want 5", leo)
	}
	c.meta.setHook(nil)
	c.reconcileAll()
	next := c.active()
	if next.BaseOffset != 5 {
		t.Fatalf("next segment %+v", next)
	}
	if _, last := c.produce(next.Leader, 5); last != 5 {
		t.Fatalf("next segment's first offset %d", last)
	}
}

// A roll whose compare-and-set fails because the controller fenced the
// segment meanwhile (a failover) commits nothing and appends stay stopped.
func TestRollCompareAndSetConflict(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.produce(1, 0)
	lp := c.nodes[1].m.Leader(tp0)
	seg := c.active()
	c.meta.setHook(func(cmd metadata.Command) error {
		if roll, ok := cmd.(metadata.RollSegment); ok && roll.NextLeader != 2 {
			// The controller failed the segment over first: fenced
			// and sealed, node 2 leads the next one.
			if err := c.meta.fsm.Apply(metadata.FenceSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch}); err != nil {
				return err
			}
			if err := c.meta.fsm.Apply(metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
				EndOffset: 1, NextLeader: 2, NextReplicas: []int32{2, 3}}); err != nil {
				return err
			}
		}
		return c.meta.fsm.Apply(cmd)
	})
	c.nodes[1].m.Roll(lp)
	if got := c.active(); got.ID == seg.ID || got.Leader != 2 || got.BaseOffset != 1 {
		t.Fatalf("active segment %+v; want node 2's from 1", got)
	}
	if _, release, err := lp.Begin(context.Background()); err == nil {
		release(0)
		t.Fatal("appends resumed after a failed compare-and-set")
	}
	if roles := c.reconcileAll(); roles[1] != RoleLearner || roles[2] != RoleLeader {
		t.Fatalf("roles %v", roles)
	}
	if !lp.Deposed() {
		t.Fatal("a fenced segment's leadership was not deposed")
	}
}

// A follower that stops fetching is left out by a roll; it rejoins as a
// learner (dropping what it holds past its last segment's sealed end) and
// the next roll takes it back once caught up.
func TestLaggardRollAndLearnerRejoin(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	c.eventually("HW 5", func() bool { return c.log(1).HighWatermark() == 5 })
	c.tr.Disconnect(3)
	c.clock.Advance(11 * time.Second) // node 3 lags past replica.lag-time-max
	c.produce(1, 5)
	lp := c.nodes[1].m.Leader(tp0)
	c.eventually("node 2 to report offset 6", func() bool {
		lp.ackMu.Lock()
		defer lp.ackMu.Unlock()
		return lp.acked[2] == 6
	})
	if got := c.nodes[1].m.laggards(lp); !slices.Equal(got, []int32{3}) {
		t.Fatalf("laggards %v; want [3]", got)
	}
	c.nodes[1].m.Roll(lp)
	tpc, _ := c.meta.fsm.Topic("t")
	segs := tpc.Parts[0].Segments
	if len(segs) != 2 || !slices.Equal(segs[0].Replicas, []int32{1, 2}) || !slices.Equal(segs[1].Replicas, []int32{1, 2}) || segs[1].Leader != 1 {
		t.Fatalf("segments after the laggard roll: %+v", segs)
	}
	if roles := c.reconcileAll(); roles[3] != RoleLearner || roles[1] != RoleLeader {
		t.Fatalf("roles %v", roles)
	}
	c.tr.Reconnect(3)
	for i := 6; i < 9; i++ {
		c.produce(1, i)
	}
	lp = c.nodes[1].m.Leader(tp0)
	c.eventually("node 3 caught up as a learner", func() bool {
		return slices.Equal(lp.caughtUpLearners(c.log(1).LogEndOffset()), []int32{3}) && c.log(3).LogEndOffset() == 9
	})
	c.nodes[1].m.Roll(lp)
	if got := c.active(); !slices.Equal(got.Replicas, []int32{1, 2, 3}) || got.BaseOffset != 9 {
		t.Fatalf("active segment after the rejoin roll: %+v", got)
	}
	if roles := c.reconcileAll(); roles[3] != RoleFollower {
		t.Fatalf("roles %v", roles)
	}
	// It copied the partition from the log start: a replica of the
	// sealed segments it was dropped from, too.
	tpc, _ = c.meta.fsm.Topic("t")
	for _, s := range tpc.Parts[0].Segments {
		if !slices.Contains(s.Replicas, 3) {
			t.Fatalf("segment %d [%d, %d) does not list node 3: %v", s.ID, s.BaseOffset, s.EndOffset, s.Replicas)
		}
	}
	if !c.sameBytes(1, 3) {
		t.Fatal("node 3 does not hold the leader's bytes")
	}
	// The learner's copy went through the background I/O budget; a
	// follower's appends (on the ack path) did not.
	if n := c.nodes[3].eng.BackgroundStats().BackgroundIOBytes; n <= 0 {
		t.Fatalf("the learner's appends did not take from the background I/O budget (%d bytes)", n)
	}
	if n := c.nodes[2].eng.BackgroundStats().BackgroundIOBytes; n != 0 {
		t.Fatalf("a follower's appends took %d bytes from the background I/O budget", n)
	}
}

// A node about to follow a segment drops the records of an older epoch
// beyond its base: a failover sealed the previous segment below them.
func TestTruncateOlderEpochLeftovers(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	c.eventually("HW 5", func() bool { return c.log(1).HighWatermark() == 5 })
	c.tr.Disconnect(3)
	for i := 5; i < 8; i++ {
		c.produce(1, i) // reach node 2, not node 3: never acknowledged
	}
	c.eventually("node 2 at 8", func() bool { return c.log(2).LogEndOffset() == 8 })
	// Failover as the controller does it: fence, then seal at the
	// smallest log end offset among the replicas (node 3's 5), next
	// leader 3 with node 2.
	seg := c.active()
	if err := c.meta.fsm.Apply(metadata.FenceSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch}); err != nil {
		t.Fatal(err)
	}
	if roles := c.reconcileAll(); roles[1] != RoleFenced || roles[2] != RoleFenced {
		t.Fatalf("roles while fenced %v", roles)
	}
	if err := c.meta.fsm.Apply(metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch,
		EndOffset: 5, NextLeader: 3, NextReplicas: []int32{3, 2}}); err != nil {
		t.Fatal(err)
	}
	c.tr.Reconnect(3)
	if roles := c.reconcileAll(); roles[3] != RoleLeader || roles[2] != RoleFollower {
		t.Fatalf("roles after the failover %v", roles)
	}
	if leo := c.log(2).LogEndOffset(); leo != 5 {
		t.Fatalf("node 2's LEO %d after following epoch %d; want 5 (the unacknowledged tail dropped)", leo, seg.Epoch+1)
	}
	for i := 100; i < 103; i++ {
		c.produce(3, i)
	}
	c.eventually("node 2 at 8 again", func() bool { return c.log(2).LogEndOffset() == 8 })
	if !c.sameBytes(3, 2) {
		t.Fatal("node 2's bytes differ from the new leader's")
	}
}

// Only replicas count for the high watermark, and a node outside the
// replica set is served as a learner only while the set is short.
func TestFetchedByNonReplica(t *testing.T) {
	c := newCluster(t, 4, []int32{1, 2, 3})
	if c.nodes[1].m.Fetched(tp0, 4, 0, -1) {
		t.Fatal("node 4 admitted as a learner of a full replica set")
	}
	if c.nodes[1].m.Fetched(tp0, 1, 0, -1) {
		t.Fatal("the leader counted as its own follower")
	}
	if c.nodes[2].m.Fetched(tp0, 3, 0, -1) {
		t.Fatal("a follower accepted a replica fetch")
	}
}

// The append path's lookup of its leadership never waits for a follower's
// disk write: Unfollow waits for a fetcher's append in progress, but not
// under the lock Leader takes.
func TestLeaderLookupNotBlockedByFollowerAppend(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	m := c.nodes[2].m
	m.fetchMu.Lock()
	f := m.fetchers[1]
	m.fetchMu.Unlock()
	if f == nil {
		t.Fatal("node 2 has no fetcher for node 1")
	}
	f.mu.Lock() // a replica append in progress
	unfollowed := make(chan struct{})
	go func() {
		m.Unfollow(tp0)
		close(unfollowed)
	}()
	c.eventually("Unfollow to wait for the append", func() bool {
		if !m.fetchMu.TryLock() {
			return true
		}
		m.fetchMu.Unlock()
		return false
	})
	looked := make(chan struct{})
	go func() {
		m.Leader(storage.TopicPartition{Topic: "other", Partition: 0})
		close(looked)
	}()
	select {
	case <-looked:
	case <-time.After(10 * time.Second):
		f.mu.Unlock()
		t.Fatal("Leader blocked behind a follower's append")
	}
	f.mu.Unlock()
	<-unfollowed
	if m.Following(tp0) != -1 {
		t.Fatal("still following after Unfollow")
	}
}

// Four producers append to one replicated partition while the roll loop
// checks whether the segment is full: the appended-bytes count is shared
// by all of them (the -race detector found writes under a shared lock
// racing each other and the roll check when it was a plain field).
func TestConcurrentAppendsAndRollCheck(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	lp := c.nodes[1].m.Leader(tp0)
	stop := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		for {
			select {
			case <-stop:
				return
			default:
				_ = lp.full()
				_, _ = c.nodes[1].m.rollDue(lp, c.nodes[1].m.clock.Now(), c.nodes[1].m.aliveBrokers())
			}
		}
	}()
	done := make(chan int64, 4)
	for g := range 4 {
		go func() {
			n := int64(0)
			for i := range 50 {
				batch := kafkaproto.AppendBatch(nil, 1, []kafkaproto.KV{{Key: []byte("k"), Value: []byte{byte(g), byte(i)}}})
				h, err := kafkaproto.ValidateBatch(batch)
				if err != nil {
					t.Error(err)
					break
				}
				epoch, release, err := lp.Begin(context.Background())
				if err != nil {
					t.Error(err)
					break
				}
				if _, err := lp.log.Append(batch, h, epoch); err != nil {
					release(0)
					t.Error(err)
					break
				}
				release(int64(len(batch)))
				n += int64(len(batch))
			}
			done <- n
		}()
	}
	total := int64(0)
	for range 4 {
		total += <-done
	}
	close(stop)
	<-checked
	if got := lp.bytes.Load(); got != total {
		t.Fatalf("appended bytes counted %d; want %d", got, total)
	}
	if leo := c.log(1).LogEndOffset(); leo != 200 {
		t.Fatalf("LEO %d; want 200", leo)
	}
}

// Reconcile of one partition does not wait for another partition's, whose
// log open (recovery) may take long: an append that finds its leadership
// not installed yet installs it at once.
func TestReconcileOfOnePartitionDoesNotWaitForAnother(t *testing.T) {
	c := newCluster(t, 1, []int32{1})
	n := c.nodes[1]
	blocked := storage.TopicPartition{Topic: "t", Partition: 0}
	mu := n.m.recLock(blocked) // a reconcile of t-0 in progress
	mu.Lock()
	defer mu.Unlock()
	if err := c.meta.fsm.Apply(metadata.CreateTopic{Name: "u", ID: metadata.TopicID{2}, Partitions: 1,
		ReplicationFactor: 1, Assignments: [][]int32{{1}}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan Role, 1)
	go func() {
		r, err := n.m.Reconcile("u", 0, true)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case r := <-done:
		if r != RoleLeader {
			t.Fatalf("role %v; want leader", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reconcile of u-0 waited for t-0's")
	}
}

// A roll whose checksum of the segment cannot be read seals nothing: it
// never records a seal without the checksum it could not compute, and
// appends resume (a later pass retries).
func TestRollAbandonedOnChecksumError(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	c.eventually("HW 5", func() bool { return c.log(1).HighWatermark() == 5 })
	files, err := filepath.Glob(filepath.Join(c.nodes[1].dir, "t-0", "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("segment files of t-0: %v, %v", files, err)
	}
	for _, f := range files {
		if err := os.Truncate(f, 0); err != nil { // the bytes are gone: reads fail
			t.Fatal(err)
		}
	}
	lp := c.nodes[1].m.Leader(tp0)
	c.nodes[1].m.Roll(lp)
	if got := c.active(); got.BaseOffset != 0 || got.State != metadata.SegmentActive {
		t.Fatalf("active segment %+v: sealed although its checksum could not be read", got)
	}
	_, release, err := lp.Begin(context.Background())
	if err != nil {
		t.Fatalf("appends did not resume after the abandoned roll: %v", err)
	}
	release(0)
}

// LeadershipStarted fires when a node takes the leadership of a new
// segment (a follower's long poll on it ends then), and not when a
// reconcile finds the leadership it already has, nor on other nodes.
func TestLeadershipStartedSignal(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 3 {
		c.produce(1, i)
	}
	before := map[int32]<-chan struct{}{}
	for _, id := range []int32{1, 2, 3} {
		before[id] = c.nodes[id].m.LeadershipStarted()
	}
	c.reconcileAll() // nothing changed: no signal
	for id, ch := range before {
		select {
		case <-ch:
			t.Fatalf("node %d signalled without a new leadership", id)
		default:
		}
	}
	lp := c.nodes[1].m.Leader(tp0)
	c.nodes[1].m.Roll(lp)
	c.reconcileAll()
	tpc, _ := c.meta.fsm.Topic("t")
	leader := tpc.Parts[0].Active().Leader
	for id, ch := range before {
		select {
		case <-ch:
			if id != leader {
				t.Fatalf("node %d signalled; node %d leads the next segment", id, leader)
			}
		default:
			if id == leader {
				t.Fatalf("node %d leads the next segment but was not signalled", id)
			}
		}
	}
	select {
	case <-c.nodes[leader].m.LeadershipStarted():
		t.Fatal("the fresh channel is already closed")
	default:
	}
}
