package txn

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestInitProducerIDNewID(t *testing.T) {
	h := newHarness(t)
	r := h.init("a", 60000)
	if r.ErrorCode != 0 || r.ProducerID != 1000 || r.ProducerEpoch != 0 {
		t.Fatalf("InitProducerID = %d/%d err %d, want 1000/0", r.ProducerID, r.ProducerEpoch, r.ErrorCode)
	}
	recs := h.decodedRecords()
	want := []decoded{{id: "a", pid: 1000, epoch: 0, timeoutMs: 60000, state: StateEmpty, parts: map[string][]int32{}, startMs: -1, updateMs: t0.UnixMilli()}}
	if !reflect.DeepEqual(recs, want) {
		t.Fatalf("records = %+v, want %+v", recs, want)
	}
	d := h.describe("a")
	if d.ErrorCode != 0 || d.State != "Empty" || d.ProducerID != 1000 || d.ProducerEpoch != 0 || d.TimeoutMillis != 60000 || d.StartTimestamp != -1 || len(d.Topics) != 0 {
		t.Fatalf("describe = %+v", d)
	}
	// A second id gets the next producer id.
	if pid, epoch := h.mustInit("b"); pid != 1001 || epoch != 0 {
		t.Fatalf("second id = %d/%d", pid, epoch)
	}
}

func TestInitProducerIDBadRequests(t *testing.T) {
	h := newHarness(t)
	for _, timeout := range []int32{0, -1, int32((15*time.Minute)/time.Millisecond) + 1} {
		if r := h.init("a", timeout); r.ErrorCode != kerr.InvalidTransactionTimeout.Code || r.ProducerID != -1 || r.ProducerEpoch != -1 {
			t.Fatalf("timeout %d: %+v", timeout, r)
		}
	}
	if r := h.init("a", int32((15*time.Minute)/time.Millisecond)); r.ErrorCode != 0 {
		t.Fatalf("max timeout: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := h.init("", 1000); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("empty id: %d", r.ErrorCode)
	}
	// v3+: only one of producer id and epoch set.
	if r := h.initExpect(4, "a", 1000, -1); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("pid without epoch: %d", r.ErrorCode)
	}
	if n := len(h.p.records()); n != 1 {
		t.Fatalf("%d records persisted, want 1", n)
	}
}

func TestEpochBumpFencesOldProducer(t *testing.T) {
	h := newHarness(t)
	pid, e0 := h.mustInit("a")
	pid1, e1 := h.mustInit("a")
	if pid1 != pid || e1 != e0+1 {
		t.Fatalf("second init = %d/%d, want %d/%d", pid1, e1, pid, e0+1)
	}
	// The zombie (epoch 0) is fenced: PRODUCER_FENCED from v2,
	// INVALID_PRODUCER_EPOCH before.
	if c := h.addV(2, "a", pid, e0, "t", 0)[tp{"t", 0}]; c != kerr.ProducerFenced.Code {
		t.Fatalf("zombie AddPartitions v2 = %d", c)
	}
	if c := h.addV(1, "a", pid, e0, "t", 0)[tp{"t", 0}]; c != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("zombie AddPartitions v1 = %d", c)
	}
	if c := h.addOffsets(2, "a", pid, e0, "g"); c != kerr.ProducerFenced.Code {
		t.Fatalf("zombie AddOffsets = %d", c)
	}
	if c := h.add("a", pid, e1, "t", 0); c != 0 {
		t.Fatalf("AddPartitions = %d", c)
	}
	if c := h.end(2, "a", pid, e0, true); c != kerr.ProducerFenced.Code {
		t.Fatalf("zombie EndTxn v2 = %d", c)
	}
	if c := h.end(1, "a", pid, e0, true); c != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("zombie EndTxn v1 = %d", c)
	}
	if c := h.end(2, "a", pid+1, e1, true); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("EndTxn other pid = %d", c)
	}
	if c := h.end(2, "nope", pid, e1, true); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("EndTxn unknown id = %d", c)
	}
	if c := h.add("nope", pid, e1, "t", 0); c != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("AddPartitions unknown id = %d", c)
	}
	h.waitState("a", StateOngoing, e1)
	if len(h.markers.written()) != 0 {
		t.Fatalf("markers written for fenced requests: %+v", h.markers.written())
	}
}

func TestCommitFlow(t *testing.T) {
	h := newHarness(t)
	pid, epoch := h.mustInit("a")
	h.clock.Advance(time.Second)
	if c := h.add("a", pid, epoch, "t", 1, 0); c != 0 {
		t.Fatalf("AddPartitions = %d", c)
	}
	h.clock.Advance(time.Second)
	// Already added: answered without a record.
	if c := h.add("a", pid, epoch, "t", 0); c != 0 {
		t.Fatalf("AddPartitions again = %d", c)
	}
	if c := h.addOffsets(3, "a", pid, epoch, "grp"); c != 0 {
		t.Fatalf("AddOffsets = %d", c)
	}
	if err := h.c.Verify("a", pid, epoch, "t", 1); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	release := h.markers.blockAll()
	h.clock.Advance(time.Second)
	if c := h.end(3, "a", pid, epoch, true); c != 0 {
		t.Fatalf("EndTxn = %d", c)
	}
	// Answered after PrepareCommit is persisted, before the markers.
	h.waitState("a", StatePrepareCommit, epoch)
	waitFor(t, "marker write started", func() bool { return h.markers.callCount() == 1 })
	// Retried while preparing: CONCURRENT_TRANSACTIONS; abort: INVALID_TXN_STATE.
	if c := h.end(3, "a", pid, epoch, true); c != kerr.ConcurrentTransactions.Code {
		t.Fatalf("EndTxn while preparing = %d", c)
	}
	if c := h.end(3, "a", pid, epoch, false); c != kerr.InvalidTxnState.Code {
		t.Fatalf("abort while preparing commit = %d", c)
	}
	if c := h.add("a", pid, epoch, "t", 5); c != kerr.ConcurrentTransactions.Code {
		t.Fatalf("AddPartitions while preparing = %d", c)
	}
	if r := h.init("a", 60000); r.ErrorCode != kerr.ConcurrentTransactions.Code {
		t.Fatalf("InitProducerID while preparing = %d", r.ErrorCode)
	}
	if err := h.c.Verify("a", pid, epoch, "t", 1); err != kerr.ConcurrentTransactions {
		t.Fatalf("Verify while preparing: %v", err)
	}
	release()
	h.waitState("a", StateCompleteCommit, epoch)
	wantMarkers := []MarkerRequest{{ProducerID: pid, ProducerEpoch: epoch, Commit: true, CoordinatorEpoch: 7,
		Partitions: map[string][]int32{"t": {0, 1}, "__consumer_offsets": {3}}}}
	if got := h.markers.written(); !reflect.DeepEqual(got, wantMarkers) {
		t.Fatalf("markers = %+v, want %+v", got, wantMarkers)
	}
	ms := t0.UnixMilli()
	parts := map[string][]int32{"t": {0, 1}, "__consumer_offsets": {3}}
	want := []decoded{
		{id: "a", pid: pid, epoch: epoch, timeoutMs: 60000, state: StateEmpty, parts: map[string][]int32{}, startMs: -1, updateMs: ms},
		{id: "a", pid: pid, epoch: epoch, timeoutMs: 60000, state: StateOngoing, parts: map[string][]int32{"t": {0, 1}}, startMs: ms + 1000, updateMs: ms + 1000},
		{id: "a", pid: pid, epoch: epoch, timeoutMs: 60000, state: StateOngoing, parts: parts, startMs: ms + 1000, updateMs: ms + 2000},
		{id: "a", pid: pid, epoch: epoch, timeoutMs: 60000, state: StatePrepareCommit, parts: parts, startMs: ms + 1000, updateMs: ms + 3000},
		{id: "a", pid: pid, epoch: epoch, timeoutMs: 60000, state: StateCompleteCommit, parts: map[string][]int32{}, startMs: ms + 1000, updateMs: ms + 3000},
	}
	if got := h.decodedRecords(); !reflect.DeepEqual(got, want) {
		t.Fatalf("records:\n got %+v\nwant %+v", got, want)
	}
	// A retry of the EndTxn that completed succeeds; the other result is
	// INVALID_TXN_STATE; nothing is written for either.
	if c := h.end(3, "a", pid, epoch, true); c != 0 {
		t.Fatalf("EndTxn retry = %d", c)
	}
	if c := h.end(3, "a", pid, epoch, false); c != kerr.InvalidTxnState.Code {
		t.Fatalf("abort after commit = %d", c)
	}
	if n := len(h.p.records()); n != 5 {
		t.Fatalf("%d records after retries, want 5", n)
	}
	if err := h.c.Verify("a", pid, epoch, "t", 1); err != kerr.InvalidTxnState {
		t.Fatalf("Verify after commit: %v", err)
	}
	// The next transaction starts with only its own partitions.
	h.clock.Advance(time.Second)
	if c := h.add("a", pid, epoch, "u", 2); c != 0 {
		t.Fatalf("AddPartitions next txn = %d", c)
	}
	d := h.describe("a")
	if d.State != "Ongoing" || d.StartTimestamp != ms+4000 || len(d.Topics) != 1 || d.Topics[0].Topic != "u" || !reflect.DeepEqual(d.Topics[0].Partitions, []int32{2}) {
		t.Fatalf("next txn = %+v", d)
	}
	if c := h.end(0, "a", pid, epoch, false); c != 0 {
		t.Fatalf("abort = %d", c)
	}
	h.waitState("a", StateCompleteAbort, epoch)
	if got := h.markers.written(); len(got) != 2 || got[1].Commit || !reflect.DeepEqual(got[1].Partitions, map[string][]int32{"u": {2}}) {
		t.Fatalf("abort markers = %+v", got)
	}
	if c := h.end(0, "a", pid, epoch, false); c != 0 {
		t.Fatalf("abort retry = %d", c)
	}
	if c := h.end(0, "a", pid, epoch, true); c != kerr.InvalidTxnState.Code {
		t.Fatalf("commit after abort = %d", c)
	}
}

func TestEndTxnOnEmpty(t *testing.T) {
	h := newHarness(t)
	pid, epoch := h.mustInit("a")
	for _, commit := range []bool{true, false} {
		if c := h.end(3, "a", pid, epoch, commit); c != kerr.InvalidTxnState.Code {
			t.Fatalf("EndTxn(commit=%v) on Empty = %d", commit, c)
		}
	}
}

func TestInitProducerIDAbortsOngoing(t *testing.T) {
	h := newHarness(t)
	pid, e0 := h.mustInit("a")
	if c := h.add("a", pid, e0, "t", 0); c != 0 {
		t.Fatalf("AddPartitions = %d", c)
	}
	// A new instance: the ongoing transaction is aborted at a bumped
	// epoch and the client is told to retry.
	if r := h.init("a", 60000); r.ErrorCode != kerr.ConcurrentTransactions.Code {
		t.Fatalf("InitProducerID on Ongoing = %+v", r)
	}
	h.waitState("a", StateCompleteAbort, e0+1)
	want := []MarkerRequest{{ProducerID: pid, ProducerEpoch: e0 + 1, Commit: false, CoordinatorEpoch: 7, Partitions: map[string][]int32{"t": {0}}}}
	if got := h.markers.written(); !reflect.DeepEqual(got, want) {
		t.Fatalf("markers = %+v, want %+v", got, want)
	}
	recs := h.decodedRecords()
	if len(recs) != 4 || recs[2].state != StatePrepareAbort || recs[2].epoch != e0+1 || recs[3].state != StateCompleteAbort {
		t.Fatalf("records = %+v", recs)
	}
	// The zombie cannot commit.
	if c := h.end(3, "a", pid, e0, true); c != kerr.ProducerFenced.Code {
		t.Fatalf("zombie EndTxn = %d", c)
	}
	// The retry gets the next epoch.
	if p, e := h.mustInit("a"); p != pid || e != e0+2 {
		t.Fatalf("retry = %d/%d, want %d/%d", p, e, pid, e0+2)
	}
}

func TestKIP360EpochBump(t *testing.T) {
	h := newHarness(t)
	r := h.initExpect(3, "a", -1, -1)
	if r.ErrorCode != 0 || r.ProducerEpoch != 0 {
		t.Fatalf("first init = %+v", r)
	}
	pid := r.ProducerID
	// The producer recovers with its current id and epoch: bumped.
	if r := h.initExpect(4, "a", pid, 0); r.ErrorCode != 0 || r.ProducerID != pid || r.ProducerEpoch != 1 {
		t.Fatalf("bump = %+v", r)
	}
	// A retry of that bump (answer lost) gets the same epoch.
	if r := h.initExpect(4, "a", pid, 0); r.ErrorCode != 0 || r.ProducerID != pid || r.ProducerEpoch != 1 {
		t.Fatalf("retry = %+v", r)
	}
	// Another epoch is fenced (INVALID_PRODUCER_EPOCH before v4).
	if r := h.initExpect(4, "a", pid, 5); r.ErrorCode != kerr.ProducerFenced.Code || r.ProducerID != -1 {
		t.Fatalf("wrong epoch v4 = %+v", r)
	}
	if r := h.initExpect(3, "a", pid, 5); r.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("wrong epoch v3 = %+v", r)
	}
	// Another producer id is fenced.
	if r := h.initExpect(4, "a", pid+7, 1); r.ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("wrong pid = %+v", r)
	}
	// A fresh InitProducerID bumps and forgets the previous epoch: the
	// old retry is fenced now.
	if p, e := h.mustInit("a"); p != pid || e != 2 {
		t.Fatalf("fresh init = %d/%d", p, e)
	}
	if r := h.initExpect(4, "a", pid, 0); r.ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("stale retry = %+v", r)
	}
	// An unknown id with a producer id (recovery after expiration):
	// a new producer id at epoch 0.
	if r := h.initExpect(4, "b", 555, 3); r.ErrorCode != 0 || r.ProducerID != pid+1 || r.ProducerEpoch != 0 {
		t.Fatalf("unknown id with pid = %+v", r)
	}
}

// replayOne loads a coordinator from one stored state of id.
func replayState(t *testing.T, h *harness, id string, s txnState) {
	t.Helper()
	c := New(h.cfg, 7, h.p, h.markers, h.ids)
	t.Cleanup(c.Close)
	if err := c.Replay(record(id, s)); err != nil {
		t.Fatal(err)
	}
	c.ReplayDone(context.Background())
	h.c.Close()
	h.c = c
}

func TestEpochExhaustion(t *testing.T) {
	h := newHarness(t)
	replayState(t, h, "a", txnState{pid: 50, epoch: math.MaxInt16 - 2, timeoutMs: 1000, state: StateCompleteCommit, startMs: 1, updateMs: 2})
	if p, e := h.mustInit("a"); p != 50 || e != math.MaxInt16-1 {
		t.Fatalf("bump to the last epoch = %d/%d", p, e)
	}
	// Exhausted: a new producer id.
	if p, e := h.mustInit("a"); p != 1000 || e != 0 {
		t.Fatalf("after exhaustion = %d/%d", p, e)
	}
	// KIP-360 with the exhausted epoch: rotation, and its retry
	// returns the same new id.
	replayState(t, h, "b", txnState{pid: 60, epoch: math.MaxInt16 - 1, timeoutMs: 1000, state: StateEmpty, startMs: -1, updateMs: 2})
	r := h.initExpect(4, "b", 60, math.MaxInt16-1)
	if r.ErrorCode != 0 || r.ProducerID != 1001 || r.ProducerEpoch != 0 {
		t.Fatalf("KIP-360 at exhaustion = %+v", r)
	}
	if r := h.initExpect(4, "b", 60, math.MaxInt16-1); r.ErrorCode != 0 || r.ProducerID != 1001 || r.ProducerEpoch != 0 {
		t.Fatalf("retry of the rotation = %+v", r)
	}
	if r := h.initExpect(4, "b", 1001, 0); r.ErrorCode != 0 || r.ProducerID != 1001 || r.ProducerEpoch != 1 {
		t.Fatalf("bump after rotation = %+v", r)
	}
	// An Ongoing transaction at the last epoch is fenced at MaxInt16, and
	// the retry takes a new producer id.
	replayState(t, h, "c", txnState{pid: 70, epoch: math.MaxInt16 - 1, timeoutMs: 1000, state: StateOngoing, parts: map[tp]struct{}{{"t", 0}: {}}, startMs: t0.UnixMilli(), updateMs: t0.UnixMilli()})
	if r := h.init("c", 1000); r.ErrorCode != kerr.ConcurrentTransactions.Code {
		t.Fatalf("init on Ongoing = %+v", r)
	}
	h.waitState("c", StateCompleteAbort, math.MaxInt16)
	if p, e := h.mustInit("c"); p != 1002 || e != 0 {
		t.Fatalf("after fence at MaxInt16 = %d/%d", p, e)
	}
}

func TestTransactionTimeout(t *testing.T) {
	h := newHarness(t)
	r := h.init("a", 1000)
	pid, e0 := r.ProducerID, r.ProducerEpoch
	if c := h.add("a", pid, e0, "t", 3); c != 0 {
		t.Fatalf("AddPartitions = %d", c)
	}
	h.clock.Advance(time.Second)
	h.c.Tick()
	h.waitState("a", StateOngoing, e0)
	if n := len(h.p.records()); n != 2 {
		t.Fatalf("tick at the timeout wrote: %d records", n)
	}
	h.clock.Advance(time.Millisecond)
	h.c.Tick()
	h.waitState("a", StateCompleteAbort, e0+1)
	want := []MarkerRequest{{ProducerID: pid, ProducerEpoch: e0 + 1, CoordinatorEpoch: 7, Partitions: map[string][]int32{"t": {3}}}}
	if got := h.markers.written(); !reflect.DeepEqual(got, want) {
		t.Fatalf("markers = %+v", got)
	}
	recs := h.decodedRecords()
	if len(recs) != 4 || recs[2].state != StatePrepareAbort || recs[2].epoch != e0+1 || recs[3].state != StateCompleteAbort || recs[3].epoch != e0+1 {
		t.Fatalf("records = %+v", recs)
	}
	// The timed-out producer is fenced.
	if c := h.end(3, "a", pid, e0, true); c != kerr.ProducerFenced.Code {
		t.Fatalf("EndTxn after timeout = %d", c)
	}
	if c := h.add("a", pid, e0, "t", 3); c != kerr.ProducerFenced.Code {
		t.Fatalf("AddPartitions after timeout = %d", c)
	}
}

func TestIDExpiration(t *testing.T) {
	h := newHarness(t)
	h.mustInit("a")
	pb, eb := h.mustInit("b")
	if c := h.add("b", pb, eb, "t", 0); c != 0 {
		t.Fatal(c)
	}
	// b is Ongoing with a blocked abort: never expired while it has a
	// transaction.
	release := h.markers.blockAll()
	defer release()
	h.clock.Advance(7*24*time.Hour - time.Millisecond)
	h.c.Tick()
	h.waitState("b", StatePrepareAbort, eb+1)
	h.waitState("a", StateEmpty, 0)
	h.clock.Advance(time.Millisecond)
	h.c.Tick()
	waitFor(t, "tombstone of a", func() bool { return h.describe("a").ErrorCode == kerr.TransactionalIDNotFound.Code })
	recs := h.decodedRecords()
	last := recs[len(recs)-1]
	if !last.tombstone || last.id != "a" {
		t.Fatalf("last record = %+v", last)
	}
	h.waitState("b", StatePrepareAbort, eb+1)
	// The id can be used again: a new producer id.
	if p, e := h.mustInit("a"); p != 1002 || e != 0 {
		t.Fatalf("reused id = %d/%d", p, e)
	}
}

func TestPersistFailureLeavesStateUnchanged(t *testing.T) {
	h := newHarness(t)
	// A first InitProducerID that fails leaves no id behind.
	h.p.setFail(kerr.NotEnoughReplicas)
	if r := h.init("a", 1000); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("init with failing persist = %+v", r)
	}
	if d := h.describe("a"); d.ErrorCode != kerr.TransactionalIDNotFound.Code {
		t.Fatalf("describe after failed init = %+v", d)
	}
	h.p.setFail(nil)
	pid, e0 := h.mustInit("a")
	// A failed bump keeps the epoch.
	h.p.setFail(kerr.NotLeaderForPartition)
	if r := h.init("a", 1000); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("bump with failing persist = %+v", r)
	}
	h.waitState("a", StateEmpty, e0)
	// A failed AddPartitions keeps the state Empty.
	h.p.setFail(fmt.Errorf("disk on fire"))
	if c := h.add("a", pid, e0, "t", 0); c != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("AddPartitions with failing persist = %d", c)
	}
	h.waitState("a", StateEmpty, e0)
	h.p.setFail(nil)
	if c := h.add("a", pid, e0, "t", 0); c != 0 {
		t.Fatal(c)
	}
	// A failed EndTxn keeps it Ongoing, writes no marker.
	h.p.setFail(kerr.RequestTimedOut)
	if c := h.end(3, "a", pid, e0, true); c != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("EndTxn with failing persist = %d", c)
	}
	d := h.describe("a")
	if d.State != "Ongoing" || len(d.Topics) != 1 {
		t.Fatalf("after failed EndTxn = %+v", d)
	}
	// A failed timeout abort keeps the epoch; the next tick does it.
	h.clock.Advance(2 * time.Second)
	h.c.Tick()
	h.c.Close() // waits for the tick's persist
	if n := len(h.p.records()); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	if len(h.markers.written()) != 0 {
		t.Fatalf("markers written: %+v", h.markers.written())
	}
	// The producer id allocator failing.
	h2 := newHarness(t)
	h2.ids.fail = kerr.CoordinatorLoadInProgress
	if r := h2.init("x", 1000); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("init with failing ids = %+v", r)
	}
	if len(h2.p.records()) != 0 {
		t.Fatal("records persisted")
	}
}

func TestFailedTimeoutAbortRetriedByNextTick(t *testing.T) {
	h := newHarness(t)
	r := h.init("a", 1000)
	if c := h.add("a", r.ProducerID, r.ProducerEpoch, "t", 0); c != 0 {
		t.Fatal(c)
	}
	h.clock.Advance(2 * time.Second)
	h.p.setFail(kerr.NotEnoughReplicas)
	h.c.Tick()
	m := h.c.snapshot()[0]
	waitFor(t, "failed abort", func() bool {
		if !m.mu.TryLock() {
			return false
		}
		m.mu.Unlock()
		return true
	})
	h.waitState("a", StateOngoing, r.ProducerEpoch)
	h.p.setFail(nil)
	h.c.Tick()
	h.waitState("a", StateCompleteAbort, r.ProducerEpoch+1)
}

func TestMarkerRetries(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	h.add("a", pid, e, "t", 0)
	h.markers.mu.Lock()
	h.markers.failures = 3
	h.markers.mu.Unlock()
	if c := h.end(3, "a", pid, e, true); c != 0 {
		t.Fatal(c)
	}
	h.waitState("a", StateCompleteCommit, e)
	if n := h.markers.callCount(); n != 4 {
		t.Fatalf("%d marker writes, want 4", n)
	}
	// A fenced coordinator stops: the transaction stays PrepareCommit
	// (the newer coordinator completes it).
	h.add("a", pid, e, "t", 1)
	h.markers.mu.Lock()
	h.markers.failures, h.markers.failWith = 100, kerr.TransactionCoordinatorFenced
	h.markers.mu.Unlock()
	if c := h.end(3, "a", pid, e, true); c != 0 {
		t.Fatal(c)
	}
	waitFor(t, "fenced marker write", func() bool { return h.markers.callCount() == 5 })
	h.c.Close()
	if n := h.markers.callCount(); n != 5 {
		t.Fatalf("%d marker writes after fencing, want 5", n)
	}
}

func TestFailoverMidPrepare(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	h.add("a", pid, e, "t", 0, 1)
	h.addOffsets(3, "a", pid, e, "g")
	pb, eb := h.mustInit("b")
	h.add("b", pb, eb, "u", 0)
	pc, ec := h.mustInit("c")
	h.add("c", pc, ec, "v", 0)
	// The markers never reach the partitions; the coordinator dies.
	release := h.markers.blockAll()
	if c := h.end(3, "a", pid, e, true); c != 0 {
		t.Fatal(c)
	}
	if c := h.end(3, "b", pb, eb, false); c != 0 {
		t.Fatal(c)
	}
	h.waitState("a", StatePrepareCommit, e)
	h.waitState("b", StatePrepareAbort, eb)
	h.c.Close()
	release()
	if got := h.markers.written(); len(got) != 0 {
		t.Fatalf("markers written by the old coordinator: %+v", got)
	}
	log := h.p.records()

	// A new coordinator (epoch 8) loads the log.
	p2 := &memPersister{}
	m2 := &fakeMarkers{}
	c2 := New(h.cfg, 8, p2, m2, h.ids)
	defer c2.Close()
	if r := c2.InitProducerID(context.Background(), &kmsg.InitProducerIDRequest{TransactionalID: strp("a"), TransactionTimeoutMillis: 1000, ProducerID: -1, ProducerEpoch: -1}); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("while loading = %d", r.ErrorCode)
	}
	for _, r := range log {
		if err := c2.Replay(r); err != nil {
			t.Fatal(err)
		}
	}
	c2.ReplayDone(context.Background())
	if err := c2.Replay(log[0]); err != ErrNotLoading {
		t.Fatalf("Replay after ReplayDone: %v", err)
	}
	got := m2.written()
	if len(got) == 2 && got[0].ProducerID != pid {
		got[0], got[1] = got[1], got[0]
	}
	want := []MarkerRequest{
		{ProducerID: pid, ProducerEpoch: e, Commit: true, CoordinatorEpoch: 8, Partitions: map[string][]int32{"t": {0, 1}, "__consumer_offsets": {1}}},
		{ProducerID: pb, ProducerEpoch: eb, Commit: false, CoordinatorEpoch: 8, Partitions: map[string][]int32{"u": {0}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("markers:\n got %+v\nwant %+v", got, want)
	}
	states := map[string]State{}
	for _, r := range p2.records() {
		d := decode(t, r)
		states[d.id] = d.state
	}
	if !reflect.DeepEqual(states, map[string]State{"a": StateCompleteCommit, "b": StateCompleteAbort}) {
		t.Fatalf("persisted by the new coordinator: %v", states)
	}
	h.c = c2
	h.waitState("a", StateCompleteCommit, e)
	h.waitState("c", StateOngoing, ec)
	// The producers go on with the new coordinator.
	if c := h.end(3, "a", pid, e, true); c != 0 {
		t.Fatalf("EndTxn retry at the new coordinator = %d", c)
	}
	if c := h.end(3, "c", pc, ec, true); c != 0 {
		t.Fatal(c)
	}
	h.waitState("c", StateCompleteCommit, ec)
}

func TestCloseCancelsPersist(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	stalled, release := h.p.stallAll()
	defer release()
	done := make(chan int16)
	go func() { done <- h.add("a", pid, e, "t", 0) }()
	<-stalled
	// Tick and other ids do not wait for a's persist.
	h.c.Tick()
	h.c.Close()
	if c := <-done; c != kerr.NotCoordinator.Code {
		t.Fatalf("AddPartitions cancelled by Close = %d", c)
	}
	if c := h.end(3, "a", pid, e, true); c != kerr.NotCoordinator.Code {
		t.Fatalf("after Close = %d", c)
	}
	if err := h.c.Verify("a", pid, e, "t", 0); err != kerr.NotCoordinator {
		t.Fatalf("Verify after Close: %v", err)
	}
}

func TestVerify(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	h.add("a", pid, e, "t", 0)
	for _, c := range []struct {
		id    string
		pid   int64
		epoch int16
		topic string
		p     int32
		want  error
	}{
		{"a", pid, e, "t", 0, nil},
		{"a", pid, e, "t", 1, kerr.InvalidTxnState},
		{"a", pid, e + 1, "t", 0, kerr.ProducerFenced},
		{"a", pid + 1, e, "t", 0, kerr.InvalidProducerIDMapping},
		{"b", pid, e, "t", 0, kerr.InvalidProducerIDMapping},
		{"", pid, e, "t", 0, kerr.InvalidRequest},
	} {
		if err := h.c.Verify(c.id, c.pid, c.epoch, c.topic, c.p); err != c.want {
			t.Errorf("Verify(%q, %d, %d, %s/%d) = %v, want %v", c.id, c.pid, c.epoch, c.topic, c.p, err, c.want)
		}
	}
}

func TestAddPartitionsUnknownPartition(t *testing.T) {
	clock := &fakeClock{t: t0}
	cfg := testConfig(clock)
	cfg.PartitionExists = func(topic string, p int32) bool { return topic == "t" && p < 2 }
	p := &memPersister{}
	c := New(cfg, 1, p, &fakeMarkers{}, &fakeIDs{})
	defer c.Close()
	c.ReplayDone(context.Background())
	h := &harness{t: t, clock: clock, p: p, c: c}
	pid, e := h.mustInit("a")
	codes := h.addV(3, "a", pid, e, "t", 0, 1, 2)
	want := map[tp]int16{{"t", 0}: kerr.OperationNotAttempted.Code, {"t", 1}: kerr.OperationNotAttempted.Code, {"t", 2}: kerr.UnknownTopicOrPartition.Code}
	if !reflect.DeepEqual(codes, want) {
		t.Fatalf("codes = %v", codes)
	}
	if d := h.describe("a"); d.State != "Empty" {
		t.Fatalf("state %s", d.State)
	}
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 4
	if r := c.AddPartitionsToTxn(context.Background(), req); r.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("v4 = %d", r.ErrorCode)
	}
}

func TestListAndDescribeTransactions(t *testing.T) {
	h := newHarness(t)
	pa, ea := h.mustInit("a")
	h.add("a", pa, ea, "t", 0)
	h.clock.Advance(10 * time.Second)
	pb, eb := h.mustInit("b")
	h.add("b", pb, eb, "t", 1)
	h.mustInit("c")
	h.clock.Advance(time.Second)
	list := func(version int16, states []string, pids []int64, dur int64, pattern *string) *kmsg.ListTransactionsResponse {
		req := kmsg.NewPtrListTransactionsRequest()
		req.Version, req.StateFilters, req.ProducerIDFilters, req.DurationFilterMillis, req.TransactionalIDPattern = version, states, pids, dur, pattern
		return h.c.ListTransactions(context.Background(), req)
	}
	ids := func(r *kmsg.ListTransactionsResponse) []string {
		var out []string
		for _, s := range r.TransactionStates {
			out = append(out, fmt.Sprintf("%s:%d:%s", s.TransactionalID, s.ProducerID, s.TransactionState))
		}
		return out
	}
	if got := ids(list(0, nil, nil, -1, nil)); !reflect.DeepEqual(got, []string{"a:1000:Ongoing", "b:1001:Ongoing", "c:1002:Empty"}) {
		t.Fatalf("all = %v", got)
	}
	r := list(0, []string{"Ongoing", "Bogus"}, []int64{1001, 1002}, -1, nil)
	if got := ids(r); !reflect.DeepEqual(got, []string{"b:1001:Ongoing"}) || !reflect.DeepEqual(r.UnknownStateFilters, []string{"Bogus"}) {
		t.Fatalf("filtered = %v unknown %v", got, r.UnknownStateFilters)
	}
	if got := ids(list(1, []string{"Ongoing"}, nil, 5000, nil)); !reflect.DeepEqual(got, []string{"a:1000:Ongoing"}) {
		t.Fatalf("duration = %v", got)
	}
	if got := ids(list(2, nil, nil, -1, strp("^[bc]$"))); !reflect.DeepEqual(got, []string{"b:1001:Ongoing", "c:1002:Empty"}) {
		t.Fatalf("pattern = %v", got)
	}
	if r := list(2, nil, nil, -1, strp("(")); r.ErrorCode != kerr.InvalidRegularExpression.Code {
		t.Fatalf("bad pattern = %d", r.ErrorCode)
	}
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{"a", "zz", ""}
	resp := h.c.DescribeTransactions(context.Background(), req)
	if len(resp.TransactionStates) != 3 {
		t.Fatal(len(resp.TransactionStates))
	}
	a := resp.TransactionStates[0]
	if a.ErrorCode != 0 || a.State != "Ongoing" || a.ProducerID != pa || a.StartTimestamp != t0.UnixMilli() || a.TimeoutMillis != 60000 ||
		len(a.Topics) != 1 || a.Topics[0].Topic != "t" || !reflect.DeepEqual(a.Topics[0].Partitions, []int32{0}) {
		t.Fatalf("a = %+v", a)
	}
	if resp.TransactionStates[1].ErrorCode != kerr.TransactionalIDNotFound.Code || resp.TransactionStates[2].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("errors = %+v", resp.TransactionStates[1:])
	}
}

func TestLoadingAnswers(t *testing.T) {
	clock := &fakeClock{t: t0}
	c := New(testConfig(clock), 1, &memPersister{}, &fakeMarkers{}, &fakeIDs{})
	defer c.Close()
	ctx := context.Background()
	if r := c.EndTxn(ctx, &kmsg.EndTxnRequest{TransactionalID: "a"}); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatal(r.ErrorCode)
	}
	if r := c.AddOffsetsToTxn(ctx, &kmsg.AddOffsetsToTxnRequest{TransactionalID: "a"}); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatal(r.ErrorCode)
	}
	if r := c.ListTransactions(ctx, kmsg.NewPtrListTransactionsRequest()); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatal(r.ErrorCode)
	}
	if err := c.Verify("a", 1, 0, "t", 0); err != kerr.CoordinatorLoadInProgress {
		t.Fatal(err)
	}
}

func TestReplayRecords(t *testing.T) {
	h := newHarness(t)
	c := New(h.cfg, 1, h.p, h.markers, h.ids)
	defer c.Close()
	s := txnState{pid: 5, epoch: 2, timeoutMs: 100, state: StateCompleteAbort, startMs: 1, updateMs: 2}
	if err := c.Replay(record("a", s)); err != nil {
		t.Fatal(err)
	}
	if err := c.Replay(record("gone", s)); err != nil {
		t.Fatal(err)
	}
	if err := c.Replay(Record{Key: keyBytes("gone")}); err != nil {
		t.Fatal(err)
	}
	dead := s
	dead.state = StateDead
	if err := c.Replay(record("dead", s)); err != nil {
		t.Fatal(err)
	}
	if err := c.Replay(record("dead", dead)); err != nil {
		t.Fatal(err)
	}
	fence := s
	fence.state = StatePrepareEpochFence
	bad := []Record{
		{Key: []byte{0}},
		{Key: []byte{0, 1, 0, 1, 'a'}, Value: []byte{0, 0}},
		{Key: keyBytes("x"), Value: []byte{0}},
		{Key: keyBytes("x"), Value: []byte{0, 2, 0}},
		{Key: keyBytes("x"), Value: record("x", s).Value[:10]},
		record("x", fence),
	}
	for i, r := range bad {
		if err := c.Replay(r); err == nil {
			t.Errorf("bad record %d replayed", i)
		}
	}
	c.ReplayDone(context.Background())
	h.c.Close()
	h.c = c
	if d := h.describe("a"); d.ErrorCode != 0 || d.State != "CompleteAbort" || d.ProducerID != 5 || d.ProducerEpoch != 2 || d.TimeoutMillis != 100 {
		t.Fatalf("a = %+v", d)
	}
	for _, id := range []string{"gone", "dead", "x"} {
		if d := h.describe(id); d.ErrorCode != kerr.TransactionalIDNotFound.Code {
			t.Fatalf("%s = %+v", id, d)
		}
	}
}

// TestConcurrentProducers runs many producers (and two instances per id,
// fencing each other) at once under -race; every committed transaction's
// markers are written exactly once.
func TestConcurrentProducers(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		for inst := 0; inst < 2; inst++ {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				for n := 0; n < 20; n++ {
					r := h.init(id, 60000)
					if r.ErrorCode == kerr.ConcurrentTransactions.Code {
						continue
					}
					if r.ErrorCode != 0 {
						errs <- fmt.Errorf("%s init: %d", id, r.ErrorCode)
						return
					}
					if c := h.add(id, r.ProducerID, r.ProducerEpoch, "t", int32(n%3)); c != 0 && c != kerr.ProducerFenced.Code && c != kerr.ConcurrentTransactions.Code {
						errs <- fmt.Errorf("%s add: %d", id, c)
						return
					}
					if c := h.end(3, id, r.ProducerID, r.ProducerEpoch, n%2 == 0); c != 0 && c != kerr.ProducerFenced.Code && c != kerr.ConcurrentTransactions.Code && c != kerr.InvalidTxnState.Code {
						errs <- fmt.Errorf("%s end: %d", id, c)
						return
					}
					h.c.Tick()
				}
			}(fmt.Sprintf("id%d", i))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every Prepare* record is followed by exactly one marker write.
	waitFor(t, "all transactions complete", func() bool {
		for _, m := range h.c.snapshot() {
			m.mu.Lock()
			s := m.state
			m.mu.Unlock()
			if s == StatePrepareAbort || s == StatePrepareCommit {
				return false
			}
		}
		return true
	})
	prepares := 0
	for _, d := range h.decodedRecords() {
		if d.state == StatePrepareAbort || d.state == StatePrepareCommit {
			prepares++
		}
	}
	if n := len(h.markers.written()); n != prepares {
		t.Fatalf("%d marker writes for %d prepared transactions", n, prepares)
	}
}

// TestListAndDescribeDoNotWaitForPersist: an id whose lock is held by a
// slow Persist (waiting for the replicas of __transaction_state) is
// listed and described as of its last committed transition, without
// waiting.
func TestListAndDescribeDoNotWaitForPersist(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	h.mustInit("b")
	stalled, release := h.p.stallAll()
	defer release()
	done := make(chan int16, 1)
	go func() { done <- h.add("a", pid, e, "t", 0) }()
	<-stalled
	answered := make(chan []string, 1)
	go func() {
		var got []string
		for _, s := range h.c.ListTransactions(context.Background(), kmsg.NewPtrListTransactionsRequest()).TransactionStates {
			got = append(got, s.TransactionalID+":"+s.TransactionState)
		}
		d := h.describe("a")
		got = append(got, fmt.Sprintf("describe:%s:%d:%d", d.State, d.ProducerID, len(d.Topics)))
		answered <- got
	}()
	select {
	case got := <-answered:
		want := []string{"a:Empty", "b:Empty", fmt.Sprintf("describe:Empty:%d:0", pid)}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListTransactions/DescribeTransactions waited for a's Persist")
	}
	release()
	if c := <-done; c != 0 {
		t.Fatal(c)
	}
	h.waitState("a", StateOngoing, e)
}

// TestVerifyDoesNotWaitForPersist: a partition leader's check answers
// from the committed state while the id's next AddPartitions is being
// persisted (the new partition is not part of the transaction until then).
func TestVerifyDoesNotWaitForPersist(t *testing.T) {
	h := newHarness(t)
	pid, e := h.mustInit("a")
	if c := h.add("a", pid, e, "t", 0); c != 0 {
		t.Fatal(c)
	}
	stalled, release := h.p.stallAll()
	defer release()
	done := make(chan int16, 1)
	go func() { done <- h.add("a", pid, e, "t", 1) }()
	<-stalled
	answered := make(chan [2]error, 1)
	go func() { answered <- [2]error{h.c.Verify("a", pid, e, "t", 0), h.c.Verify("a", pid, e, "t", 1)} }()
	select {
	case got := <-answered:
		if got[0] != nil || got[1] != kerr.InvalidTxnState {
			t.Fatalf("Verify during persist = %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Verify waited for a's Persist")
	}
	release()
	if c := <-done; c != 0 {
		t.Fatal(c)
	}
	if err := h.c.Verify("a", pid, e, "t", 1); err != nil {
		t.Fatalf("Verify after persist: %v", err)
	}
}

// TestTickerAbortsTimedOutTransactions: with TickInterval set, the
// background goroutine runs Tick; Close stops it.
func TestTickerAbortsTimedOutTransactions(t *testing.T) {
	clock := &fakeClock{t: t0}
	cfg := testConfig(clock)
	cfg.TickInterval = time.Millisecond
	p := &memPersister{}
	c := New(cfg, 1, p, &fakeMarkers{}, &fakeIDs{})
	defer c.Close()
	c.ReplayDone(context.Background())
	h := &harness{t: t, clock: clock, p: p, c: c}
	r := h.init("a", 1000)
	if code := h.add("a", r.ProducerID, r.ProducerEpoch, "t", 0); code != 0 {
		t.Fatal(code)
	}
	clock.Advance(2 * time.Second)
	h.waitState("a", StateCompleteAbort, r.ProducerEpoch+1)
	c.Close()
}

// TestEmptyIDBeforeOwnership: an empty transactional id is INVALID_REQUEST
// even from a coordinator that is loading or closed (a node that does not
// coordinate the id), as Kafka checks it before the ownership of the id.
func TestEmptyIDBeforeOwnership(t *testing.T) {
	clock := &fakeClock{t: t0}
	c := New(testConfig(clock), 1, &memPersister{}, &fakeMarkers{}, &fakeIDs{})
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		ap := &kmsg.AddPartitionsToTxnRequest{Version: 3}
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = "t", []int32{0}
		ap.Topics = append(ap.Topics, rt)
		if r := c.AddPartitionsToTxn(ctx, ap); len(r.Topics) != 1 || r.Topics[0].Partitions[0].ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("%s: AddPartitionsToTxn: %+v", when, r.Topics)
		}
		if r := c.AddOffsetsToTxn(ctx, &kmsg.AddOffsetsToTxnRequest{Group: "g"}); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("%s: AddOffsetsToTxn: %d", when, r.ErrorCode)
		}
		if r := c.EndTxn(ctx, &kmsg.EndTxnRequest{Version: 3}); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("%s: EndTxn: %d", when, r.ErrorCode)
		}
		if r := c.InitProducerID(ctx, &kmsg.InitProducerIDRequest{Version: 4, TransactionalID: kmsg.StringPtr(""), TransactionTimeoutMillis: 1000}); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("%s: InitProducerId: %d", when, r.ErrorCode)
		}
	}
	check("loading")
	c.Close()
	check("closed")
}

// blockingIDs holds Next until its ctx ends; entered gets a value when a
// call starts waiting.
type blockingIDs struct{ entered chan struct{} }

func (b *blockingIDs) Next(ctx context.Context) (int64, error) {
	b.entered <- struct{}{}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestCloseCancelsProducerIDAllocation: an InitProducerID waiting for a
// producer id (the broker's block comes from Raft, which may be stopping
// too) is answered NOT_COORDINATOR when the coordinator closes, although
// its request's context goes on; before, it waited for that context,
// holding the id's lock. The id is not left behind.
func TestCloseCancelsProducerIDAllocation(t *testing.T) {
	clock := &fakeClock{t: t0}
	ids := &blockingIDs{entered: make(chan struct{}, 1)}
	c := New(testConfig(clock), 7, &memPersister{}, &fakeMarkers{}, ids)
	t.Cleanup(c.Close)
	c.ReplayDone(context.Background())
	done := make(chan int16, 1)
	go func() {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 4
		req.TransactionalID = strp("a")
		req.TransactionTimeoutMillis = 60000
		done <- c.InitProducerID(context.Background(), req).ErrorCode
	}()
	<-ids.entered
	c.Close()
	select {
	case code := <-done:
		if code != kerr.NotCoordinator.Code {
			t.Fatalf("InitProducerID cancelled by Close = %v, want NOT_COORDINATOR", kerr.ErrorForCode(code))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("InitProducerID still waiting for a producer id 10s after Close")
	}
	if v := c.view("a"); v != nil {
		t.Fatalf("id a left behind after the failed InitProducerID: %+v", v)
	}
}
