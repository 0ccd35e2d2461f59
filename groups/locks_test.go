package groups

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests hold one group's Persist (as a replicated __consumer_offsets
// partition does for up to 5 s while its followers lag) and check that
// nothing that walks every group waits for it.

// startCommit commits offset off of t/0 for group from a goroutine and
// returns the partition's error code on the channel.
func (h *harness) startCommit(group, memberID string, gen int32, off int64) <-chan int16 {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group = group
	req.MemberID = memberID
	req.Generation = gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition = 0
	rp.Offset = off
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ch := make(chan int16, 1)
	go func() { ch <- h.c.OffsetCommit(context.Background(), req).Topics[0].Partitions[0].ErrorCode }()
	return ch
}

// startTick runs Tick in a goroutine; the channel is closed when it returns.
func (h *harness) startTick() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.c.Tick()
	}()
	return done
}

func (h *harness) stalledCommit(group, memberID string, gen int32, off int64) <-chan int16 {
	h.t.Helper()
	ch := h.startCommit(group, memberID, gen, off)
	waitFor(h.t, "the commit of "+group+" held in Persist", func() bool { return h.p.stalled.Load() == 1 })
	return ch
}

func TestTickDoesNotWaitForAnotherGroupsPersist(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stable(1) // group "g", session 10s
	release := h.p.stallGroup(t, "a-slow")
	// "a-slow" sorts before "g": a Tick that waits for its lock never
	// reaches "g".
	committed := h.stalledCommit("a-slow", "", -1, 7)

	h.clk.Advance(h.session + time.Second)
	recv(t, h.startTick())
	waitFor(t, "g empty after its member's session expired", func() bool { return h.state() == StateEmpty })
	if code := h.heartbeat(ids[0], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the expired member: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(code))
	}

	release()
	if code := recv(t, committed); code != 0 {
		t.Fatalf("stalled commit: %v", kerr.ErrorForCode(code))
	}
	h.group = "a-slow"
	if got := h.fetched("t", 0); got != 7 {
		t.Fatalf("a-slow committed offset = %d, want 7", got)
	}
}

func TestBusyGroupIsTickedWhenItsLockIsReleased(t *testing.T) {
	h := newHarness(t, nil)
	h.group = "slow"
	ids, gen := h.stable(2)
	release := h.p.stallGroup(t, "slow")
	committed := h.stalledCommit("slow", ids[0], gen, 9)

	// Both sessions are past due; the commit (a heartbeat, as in Kafka)
	// renews ids[0]'s once it is persisted.
	h.clk.Advance(h.session + time.Second)
	recv(t, h.startTick())
	release()
	if code := recv(t, committed); code != 0 {
		t.Fatalf("stalled commit: %v", kerr.ErrorForCode(code))
	}
	// No further Tick: the tick skipped while the commit held the lock
	// ran when the commit released it.
	g := h.grp()
	g.mu.Lock()
	state, n, committer := g.state, len(g.members), g.members[ids[0]]
	g.mu.Unlock()
	if state != StatePreparingRebalance || n != 1 || committer == nil {
		t.Fatalf("after the stalled commit: %v with %d members (committer kept: %v), want PreparingRebalance with the committer only", state, n, committer != nil)
	}
	if code := h.heartbeat(ids[1], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the expired member: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(code))
	}
}

func TestListGroupsDoesNotWaitForAPersist(t *testing.T) {
	h := newHarness(t, nil)
	h.stable(1)
	h.p.stallGroup(t, "a-slow")
	h.stalledCommit("a-slow", "", -1, 7)

	done := make(chan *kmsg.ListGroupsResponse, 1)
	go func() { done <- h.c.ListGroups(context.Background(), &kmsg.ListGroupsRequest{Version: 5}) }()
	resp := recv(t, done)
	got := map[string]string{}
	for _, g := range resp.Groups {
		got[g.Group] = g.GroupState
	}
	// a-slow was created Empty by its (not yet persisted) commit.
	if len(got) != 2 || got["g"] != "Stable" || got["a-slow"] != "Empty" {
		t.Fatalf("ListGroups = %v, want a-slow Empty and g Stable", got)
	}
}

func TestCloseDoesNotWaitForAPersist(t *testing.T) {
	h := newHarness(t, nil)
	h.p.stallGroup(t, "slow")
	committed := h.stalledCommit("slow", "", -1, 7)

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		h.c.Close()
	}()
	recv(t, closed)
	if code := recv(t, committed); code != kerr.NotCoordinator.Code {
		t.Fatalf("commit cut short by Close: %v, want NOT_COORDINATOR", kerr.ErrorForCode(code))
	}
}

func TestTickDoesNotWaitForItsOwnPersist(t *testing.T) {
	h := newHarness(t, nil)
	h.group = "a-slow"
	h.stable(1)
	h.group = "g"
	ids, gen := h.stable(1)
	release := h.p.stallGroup(t, "a-slow")

	// Both members expire; both groups are left Empty, and a-slow's
	// Empty group metadata record is held in Persist.
	h.clk.Advance(h.session + time.Second)
	recv(t, h.startTick())
	waitFor(t, "a-slow's Empty group metadata held in Persist", func() bool { return h.p.stalled.Load() == 1 })
	waitFor(t, "g empty after its member's session expired", func() bool { return h.state() == StateEmpty })
	if code := h.heartbeat(ids[0], gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the expired member: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(code))
	}
	// A commit of a-slow queues behind the record the tick made.
	committed := h.startCommit("a-slow", "", -1, 5)
	release()
	if code := recv(t, committed); code != 0 {
		t.Fatalf("commit after the stalled metadata: %v", kerr.ErrorForCode(code))
	}

	// a-slow's records in order: the Stable generation 1, the Empty
	// generation 2, then the commit.
	var got []string
	for _, r := range h.p.records() {
		if !recordsOf([]Record{r}, "a-slow") {
			continue
		}
		if binary.BigEndian.Uint16(r.Key) != groupKeyVersion {
			got = append(got, "offset")
			continue
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(r.Value); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("generation %d with %d members", v.Generation, len(v.Members)))
	}
	want := []string{"generation 1 with 1 members", "generation 2 with 0 members", "offset"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a-slow's records: %q, want %q", got, want)
	}
}
