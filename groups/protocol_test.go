package groups

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestEagerThreeMembersLeaderGetsAllMetadata(t *testing.T) {
	h := newHarness(t, nil)
	metas := map[string][]byte{}
	ids := []string{h.pendingID(), h.pendingID(), h.pendingID()}
	var chs []<-chan *kmsg.JoinGroupResponse
	for i, id := range ids {
		metas[id] = consumerMeta(fmt.Sprintf("topic-%d", i))
		chs = append(chs, h.startJoin(joinOpt{memberID: id, protos: []proto{{"range", metas[id]}, {"roundrobin", []byte("rr")}}}))
	}
	var leader *kmsg.JoinGroupResponse
	for _, ch := range chs {
		r := recv(t, ch)
		if r.ErrorCode != 0 || r.Generation != 1 || *r.Protocol != "range" || *r.ProtocolType != "consumer" {
			t.Fatalf("join: %+v", r)
		}
		if r.MemberID == r.LeaderID {
			leader = r
		} else if len(r.Members) != 0 {
			t.Fatalf("follower got member metadata")
		}
	}
	if leader == nil || len(leader.Members) != 3 {
		t.Fatalf("leader response: %+v", leader)
	}
	for _, m := range leader.Members {
		if !reflect.DeepEqual(m.ProtocolMetadata, metas[m.MemberID]) {
			t.Fatalf("metadata of %s not passed through", m.MemberID)
		}
	}
	h.syncAll(ids, leader.LeaderID, 1)

	d := h.c.DescribeGroups(context.Background(), &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	dg := d.Groups[0]
	if dg.State != "Stable" || dg.Protocol != "range" || len(dg.Members) != 3 {
		t.Fatalf("describe: %+v", dg)
	}
	for _, m := range dg.Members {
		if string(m.MemberAssignment) != string(assignmentFor(m.MemberID)) || !reflect.DeepEqual(m.ProtocolMetadata, metas[m.MemberID]) {
			t.Fatalf("describe member %+v", m)
		}
	}
	// The metadata record of the completed rebalance was persisted.
	recs := h.p.records()
	var gv kmsg.GroupMetadataValue
	if err := gv.ReadFrom(recs[len(recs)-1].Value); err != nil || gv.Generation != 1 || len(gv.Members) != 3 || *gv.Protocol != "range" {
		t.Fatalf("persisted metadata %+v %v", gv, err)
	}
}

func TestProtocolVote(t *testing.T) {
	h := newHarness(t, nil)
	a, b, c := h.pendingID(), h.pendingID(), h.pendingID()
	coop, rng := proto{"cooperative-sticky", consumerMeta("t")}, rangeProto
	ca := h.startJoin(joinOpt{memberID: a, protos: []proto{coop, rng}})
	cb := h.startJoin(joinOpt{memberID: b, protos: []proto{coop, rng}})
	cc := h.startJoin(joinOpt{memberID: c, protos: []proto{rng, coop}})
	for _, ch := range []<-chan *kmsg.JoinGroupResponse{ca, cb, cc} {
		if r := recv(t, ch); *r.Protocol != "cooperative-sticky" {
			t.Fatalf("protocol %q, want the majority's cooperative-sticky", *r.Protocol)
		}
	}
	// A member supporting none of the group's protocols is rejected.
	r := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{version: 3, protos: []proto{{"other", nil}}}))
	if r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("got %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

func TestCooperativeSecondRebalance(t *testing.T) {
	h := newHarness(t, nil)
	coop := func(owned string) []proto { return []proto{{"cooperative-sticky", []byte("owned:" + owned)}} }
	a, b := h.pendingID(), h.pendingID()
	ca, cb := h.startJoin(joinOpt{memberID: a, protos: coop("")}), h.startJoin(joinOpt{memberID: b, protos: coop("")})
	ra, _ := recv(t, ca), recv(t, cb)
	h.syncAll([]string{a, b}, ra.LeaderID, 1)

	// A third member joins: first cooperative rebalance (generation 2).
	cn := h.startJoin(joinOpt{version: 3, protos: coop("")})
	waitFor(t, "joiner parked", func() bool { return h.joiners() == 1 })
	if code := h.heartbeat(a, 1); code != kerr.RebalanceInProgress.Code {
		t.Fatal(kerr.ErrorForCode(code))
	}
	ca, cb = h.startJoin(joinOpt{memberID: a, protos: coop("p0,p1")}), h.startJoin(joinOpt{memberID: b, protos: coop("p2,p3")})
	rs := []*kmsg.JoinGroupResponse{recv(t, ca), recv(t, cb), recv(t, cn)}
	var leader *kmsg.JoinGroupResponse
	for _, r := range rs {
		if r.Generation != 2 {
			t.Fatalf("generation %d", r.Generation)
		}
		if r.MemberID == r.LeaderID {
			leader = r
		}
	}
	owned := map[string]string{}
	for _, m := range leader.Members {
		owned[m.MemberID] = string(m.ProtocolMetadata)
	}
	if owned[a] != "owned:p0,p1" || owned[b] != "owned:p2,p3" || len(owned) != 3 {
		t.Fatalf("owned partitions not passed to the leader: %v", owned)
	}
	ids := []string{a, b, rs[2].MemberID}
	h.syncAll(ids, leader.LeaderID, 2)

	// The leader, having revoked partitions, rejoins: second rebalance.
	cl := h.startJoin(joinOpt{memberID: leader.LeaderID, protos: coop("p0")})
	waitFor(t, "leader parked", func() bool { return h.joiners() == 1 })
	h.wantState(StatePreparingRebalance)
	var chs []<-chan *kmsg.JoinGroupResponse
	for _, id := range ids {
		if id != leader.LeaderID {
			if code := h.heartbeat(id, 2); code != kerr.RebalanceInProgress.Code {
				t.Fatal(kerr.ErrorForCode(code))
			}
			chs = append(chs, h.startJoin(joinOpt{memberID: id, protos: coop("x")}))
		}
	}
	r := recv(t, cl)
	for _, ch := range chs {
		recv(t, ch)
	}
	if r.Generation != 3 || len(r.Members) != 3 {
		t.Fatalf("second rebalance: %+v", r)
	}
	h.syncAll(ids, r.LeaderID, 3)
}

func TestStaticMemberRestartKeepsGeneration(t *testing.T) {
	for _, v := range []int16{5, 9} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
			ca := h.startJoin(joinOpt{instance: "a", version: v})
			cb := h.startJoin(joinOpt{instance: "b", version: v})
			waitFor(t, "both parked", func() bool { return h.joiners() == 2 })
			h.advance(3 * time.Second) // b joined during the delay: extended once
			h.advance(3 * time.Second)
			ra, rb := recv(t, ca), recv(t, cb)
			if ra.ErrorCode != 0 || rb.ErrorCode != 0 {
				t.Fatalf("static joins need no MEMBER_ID_REQUIRED: %v %v", ra.ErrorCode, rb.ErrorCode)
			}
			h.syncAll([]string{ra.MemberID, rb.MemberID}, ra.LeaderID, 1)
			leaderIsA := ra.LeaderID == ra.MemberID

			// "a" restarts: joins with its instance id and no member id.
			r := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{instance: "a", version: v}))
			if r.ErrorCode != 0 || r.Generation != 1 || r.MemberID == ra.MemberID {
				t.Fatalf("restart join: %+v", r)
			}
			h.wantState(StateStable)
			if v >= 9 && leaderIsA != r.SkipAssignment {
				t.Fatalf("SkipAssignment=%v for leader=%v", r.SkipAssignment, leaderIsA)
			}
			if v < 9 && r.LeaderID != ra.LeaderID {
				t.Fatalf("pre-v9 must return the old leader id")
			}
			// The old incarnation is fenced.
			hb := kmsg.NewPtrHeartbeatRequest()
			hb.Version, hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = 4, "g", ra.MemberID, 1, kmsg.StringPtr("a")
			if code := h.c.Heartbeat(context.Background(), hb).ErrorCode; code != kerr.FencedInstanceID.Code {
				t.Fatalf("old member: %v", kerr.ErrorForCode(code))
			}
			hb.MemberID = r.MemberID
			if code := h.c.Heartbeat(context.Background(), hb).ErrorCode; code != 0 {
				t.Fatalf("new member: %v", kerr.ErrorForCode(code))
			}
			s := recv(t, h.startSync(r.MemberID, 1, nil))
			if s.ErrorCode != 0 || string(s.MemberAssignment) != string(assignmentFor(ra.MemberID)) {
				t.Fatalf("restarted member's assignment: %+v", s)
			}
			if h.generation() != 1 {
				t.Fatalf("generation changed to %d", h.generation())
			}
			// Kafka rebalances on a static restart only if the group's
			// selected protocol would change, not on new metadata.
			r2 := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{instance: "a", version: v, protos: []proto{{"range", consumerMeta("t", "u")}}}))
			if r2.ErrorCode != 0 || r2.Generation != 1 || h.state() != StateStable {
				t.Fatalf("restart with new metadata: %+v", r2)
			}
			// The old id of a static member that left is unknown after LeaveGroup by instance id.
			lr := h.c.LeaveGroup(context.Background(), &kmsg.LeaveGroupRequest{Version: 4, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("a")}}})
			if lr.Members[0].ErrorCode != 0 || h.state() != StatePreparingRebalance {
				t.Fatalf("static leave: %+v", lr)
			}
		})
	}
}

func TestMemberIDRequiredOnlyFromV4(t *testing.T) {
	h := newHarness(t, nil)
	r := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{version: 4}))
	if r.ErrorCode != kerr.MemberIDRequired.Code || r.MemberID == "" {
		t.Fatalf("v4: %+v", r)
	}
	h.wantState(StateEmpty) // a pending member does not start a rebalance
	// v3 (kafka-go) gets an id and the rebalance proceeds; the pending v4
	// member blocks completion until it rejoins.
	ch := h.startJoin(joinOpt{version: 3})
	waitFor(t, "v3 parked", func() bool { return h.joiners() == 1 })
	notReady(t, ch)
	r4 := recv(t, h.startJoin(joinOpt{version: 4, memberID: r.MemberID}))
	r3 := recv(t, ch)
	if r3.ErrorCode != 0 || r3.MemberID == "" || r3.Generation != 1 || r4.ErrorCode != 0 || r4.MemberID != r.MemberID {
		t.Fatalf("v3 %+v v4 %+v", r3, r4)
	}
	// v0 joins too (rebalance timeout = session timeout).
	h2 := newHarness(t, nil)
	r0 := h2.c.JoinGroup(context.Background(), h2.joinReq(joinOpt{version: 1}))
	if r0.ErrorCode != 0 || r0.Generation != 1 {
		t.Fatalf("v1: %+v", r0)
	}
}

func TestErrorCodes(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	if r := h.c.JoinGroup(ctx, h.joinReq(joinOpt{session: 500 * time.Millisecond})); r.ErrorCode != kerr.InvalidSessionTimeout.Code {
		t.Fatalf("session: %v", r.ErrorCode)
	}
	if r := h.c.JoinGroup(ctx, h.joinReq(joinOpt{memberID: "nobody"})); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %v", r.ErrorCode)
	}
	ids, gen := h.stable(2)
	if code := h.heartbeat(ids[1], gen+5); code != kerr.IllegalGeneration.Code {
		t.Fatalf("heartbeat gen: %v", code)
	}
	if code := h.heartbeat("nobody", gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat member: %v", code)
	}
	if s := recv(t, h.startSync(ids[1], gen-1, nil)); s.ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("sync gen: %v", s.ErrorCode)
	}
	// Simple (generation -1, no member) commits are refused for a live group.
	if code := h.commit("", -1, "t", 0, 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("simple commit to a live group: %v", kerr.ErrorForCode(code))
	}
	if code := h.commit(ids[1], gen-1, "t", 0, 1); code != kerr.IllegalGeneration.Code {
		t.Fatalf("stale commit: %v", kerr.ErrorForCode(code))
	}
	if code := h.commit(ids[1], gen, "t", 0, 1); code != 0 {
		t.Fatalf("member commit: %v", kerr.ErrorForCode(code))
	}
	// Commits in PreparingRebalance are allowed (eager revocation commits);
	// in CompletingRebalance they are REBALANCE_IN_PROGRESS.
	cl := h.startJoin(joinOpt{memberID: ids[0]})
	waitFor(t, "leader parked", func() bool { return h.joiners() == 1 })
	if code := h.commit(ids[1], gen, "t", 0, 2); code != 0 {
		t.Fatalf("commit while preparing: %v", kerr.ErrorForCode(code))
	}
	cf := h.startJoin(joinOpt{memberID: ids[1]})
	recv(t, cl)
	recv(t, cf)
	if code := h.commit(ids[1], gen+1, "t", 0, 3); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit while completing: %v", kerr.ErrorForCode(code))
	}
	if r := h.c.OffsetCommit(ctx, &kmsg.OffsetCommitRequest{Version: 8, Group: "other", Generation: 3, MemberID: "x", Topics: []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0}}}}}); r.Topics[0].Partitions[0].ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("commit to unknown group with generation: %v", r.Topics[0].Partitions[0].ErrorCode)
	}
	// LeaveGroup v3+ batch: one unknown, one known.
	lr := h.leave("nobody", ids[1])
	if lr.ErrorCode != 0 || lr.Members[0].ErrorCode != kerr.UnknownMemberID.Code || lr.Members[1].ErrorCode != 0 {
		t.Fatalf("batch leave: %+v", lr)
	}
	// LeaveGroup v0 carries the member error at top level.
	if r := h.c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 0, Group: "g", MemberID: "nobody"}); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("v0 leave: %v", r.ErrorCode)
	}
	// DescribeGroups of an unknown group: Dead (v5) or GROUP_ID_NOT_FOUND (v6).
	if d := h.c.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"zz"}}); d.Groups[0].State != "Dead" || d.Groups[0].ErrorCode != 0 {
		t.Fatalf("describe v5: %+v", d.Groups[0])
	}
	if d := h.c.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 6, Groups: []string{"zz"}}); d.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe v6: %+v", d.Groups[0])
	}
	if r := h.c.OffsetDelete(ctx, &kmsg.OffsetDeleteRequest{Group: "zz"}); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("offset delete: %v", r.ErrorCode)
	}
	if r := h.c.JoinGroup(ctx, &kmsg.JoinGroupRequest{Version: 5, SessionTimeoutMillis: 10000}); r.ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("empty group id: %v", r.ErrorCode)
	}
}

func TestLoadInProgress(t *testing.T) {
	p := &memPersister{}
	c := New(Config{TickInterval: -1, Logger: zerolog.Nop()}, p)
	defer c.Close()
	ctx := context.Background()
	if r := c.JoinGroup(ctx, &kmsg.JoinGroupRequest{Version: 5, Group: "g", SessionTimeoutMillis: 10000}); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("join: %v", r.ErrorCode)
	}
	if r := c.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g"}); r.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("sync: %v", r.ErrorCode)
	}
	if r := c.Heartbeat(ctx, &kmsg.HeartbeatRequest{Version: 4, Group: "g"}); r.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", r.ErrorCode)
	}
	if r := fetchAll(c, "g"); r.Groups[0].ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("fetch: %v", r.Groups[0].ErrorCode)
	}
	if r := c.ListGroups(ctx, &kmsg.ListGroupsRequest{Version: 4}); r.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("list: %v", r.ErrorCode)
	}
	c.ReplayDone()
	if err := c.Replay(Record{Key: groupKey("g")}); !errors.Is(err, ErrNotLoading) {
		t.Fatalf("replay after done: %v", err)
	}
}

func TestOffsetsCommitFetchReplayRoundTrip(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	// A simple consumer's commits (generation -1, no member id) create the group.
	h.group = "simple"
	for p := int32(0); p < 3; p++ {
		if code := h.commit("", -1, "t1", p, int64(100+p)); code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	h.commit("", -1, "t1", 1, 555) // overwrite
	h.commit("", -1, "t2", 0, 7)
	// A consumer group's commits.
	h.group = "g"
	ids, gen := h.stable(2)
	h.commit(ids[0], gen, "t1", 0, 42)
	h.commit(ids[1], gen, "t3", 4, 43)
	// OffsetDelete of an unsubscribed topic in a live consumer group is fine,
	// of a subscribed one is GROUP_SUBSCRIBED_TO_TOPIC ("t" is subscribed).
	h.commit(ids[1], gen, "t", 0, 1)
	od := h.c.OffsetDelete(ctx, &kmsg.OffsetDeleteRequest{Group: "g", Topics: []kmsg.OffsetDeleteRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "t3", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 4}}},
	}})
	if od.ErrorCode != 0 || od.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || od.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset delete: %+v", od)
	}
	// A deleted group's offsets are tombstoned.
	h.group = "doomed"
	h.commit("", -1, "t1", 0, 9)
	if r := h.c.DeleteGroups(ctx, &kmsg.DeleteGroupsRequest{Groups: []string{"doomed"}}); r.Groups[0].ErrorCode != 0 {
		t.Fatal(r.Groups[0].ErrorCode)
	}

	// v1 fetch of specific partitions, including one never committed.
	v1 := h.c.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 1, Group: "simple", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{1, 9}}}})
	if p := v1.Topics[0].Partitions; p[0].Offset != 555 || p[1].Offset != -1 || p[1].ErrorCode != 0 {
		t.Fatalf("v1 fetch: %+v", p)
	}
	before := map[string]*kmsg.OffsetFetchResponse{}
	for _, g := range []string{"simple", "g", "doomed"} {
		before[g] = fetchAll(h.c, g)
	}
	if n := len(before["simple"].Groups[0].Topics); n != 2 {
		t.Fatalf("simple has %d topics", n)
	}
	if p := before["simple"].Groups[0].Topics[0].Partitions[0]; p.Offset != 100 || p.LeaderEpoch != 3 || *p.Metadata != "md" {
		t.Fatalf("fetched %+v", p)
	}
	if len(before["doomed"].Groups[0].Topics) != 0 {
		t.Fatalf("deleted group still has offsets")
	}

	// Replay the log into a fresh coordinator.
	c2 := New(Config{TickInterval: -1, Now: h.clk.Now, Logger: zerolog.Nop()}, &memPersister{})
	defer c2.Close()
	for _, r := range h.p.records() {
		if err := c2.Replay(r); err != nil {
			t.Fatal(err)
		}
	}
	c2.ReplayDone()
	for g, want := range before {
		if got := fetchAll(c2, g); !reflect.DeepEqual(got, want) {
			t.Fatalf("group %s after replay:\n got %+v\nwant %+v", g, got, want)
		}
	}
	d := c2.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g", "simple", "doomed"}})
	if g := d.Groups[0]; g.State != "Stable" || g.Protocol != "range" || len(g.Members) != 2 {
		t.Fatalf("replayed group: %+v", g)
	}
	if g := d.Groups[1]; g.State != "Empty" {
		t.Fatalf("replayed simple group: %+v", g)
	}
	if g := d.Groups[2]; g.State != "Dead" {
		t.Fatalf("deleted group came back: %+v", g)
	}
	// The replayed generation is live: members can heartbeat and commit.
	h2 := &harness{t: t, c: c2, clk: h.clk, group: "g"}
	if code := h2.heartbeat(ids[1], gen); code != 0 {
		t.Fatalf("heartbeat after replay: %v", kerr.ErrorForCode(code))
	}
	lg := c2.ListGroups(ctx, &kmsg.ListGroupsRequest{Version: 4, StatesFilter: []string{"stable"}})
	if len(lg.Groups) != 1 || lg.Groups[0].Group != "g" {
		t.Fatalf("list stable: %+v", lg.Groups)
	}
}

func TestPersistErrorFailsCommitAndKeepsState(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stable(2)
	if code := h.commit(ids[0], gen, "t", 0, 10); code != 0 {
		t.Fatal(code)
	}
	n := len(h.p.records())
	h.p.setFail(errors.New("disk full"))
	if code := h.commit(ids[0], gen, "t", 0, 20); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit with failing persister: %v", kerr.ErrorForCode(code))
	}
	h.p.setFail(fmt.Errorf("lost leadership: %w", kerr.NotCoordinator))
	if code := h.commit(ids[0], gen, "t", 0, 20); code != kerr.NotCoordinator.Code {
		t.Fatalf("kerr passthrough: %v", kerr.ErrorForCode(code))
	}
	if got := h.fetched("t", 0); got != 10 {
		t.Fatalf("offset after failed commit = %d, want 10", got)
	}
	h.wantState(StateStable)
	if len(h.p.records()) != n {
		t.Fatal("records appended despite failure")
	}

	// A failed assignment store fails the SyncGroup and restarts the rebalance.
	cl := h.startJoin(joinOpt{memberID: ids[0]})
	waitFor(t, "leader parked", func() bool { return h.joiners() == 1 })
	cf := h.startJoin(joinOpt{memberID: ids[1]})
	recv(t, cl)
	recv(t, cf)
	h.p.setFail(errors.New("disk full"))
	chf := h.startSync(ids[1], gen+1, nil)
	waitFor(t, "follower sync parked", func() bool { return h.syncers() == 1 })
	sl := recv(t, h.startSync(ids[0], gen+1, map[string][]byte{ids[0]: []byte("x")}))
	if sl.ErrorCode != kerr.CoordinatorNotAvailable.Code || recv(t, chf).ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("sync with failing persister: %v", sl.ErrorCode)
	}
	h.wantState(StatePreparingRebalance)
}

func TestExpireOffsets(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.OffsetsRetention = time.Hour })
	ids, gen := h.stable(1) // subscribed to "t"
	h.commit(ids[0], gen, "t", 0, 1)
	h.commit(ids[0], gen, "old", 0, 1)
	h.commit(ids[0], gen, "deleted", 0, 1)
	h.clk.Advance(30 * time.Minute)
	h.heartbeat(ids[0], gen)
	h.c.ExpireOffsets(func(topic string) bool { return topic != "deleted" })
	if h.fetched("deleted", 0) != -1 || h.fetched("old", 0) != 1 {
		t.Fatal("deleted topic's offsets should go, others stay")
	}
	h.clk.Advance(30 * time.Minute)
	h.heartbeat(ids[0], gen)
	h.c.ExpireOffsets(nil)
	if h.fetched("old", 0) != -1 || h.fetched("t", 0) != 1 {
		t.Fatal("unsubscribed topic's offsets expire in a Stable group, subscribed stay")
	}
	var tombstones int
	for _, r := range h.p.records() {
		if r.Value == nil {
			tombstones++
		}
	}
	if tombstones != 2 {
		t.Fatalf("%d tombstones, want 2", tombstones)
	}
}

// TestConcurrentGroupsRebalance runs twenty groups of three members that
// rebalance at the same time (join, then one leaves and a new one joins),
// with clients behaving like real consumers. No member may ever see
// UNKNOWN_MEMBER_ID and every group must end Stable with all members synced
// on the final generation.
func TestConcurrentGroupsRebalance(t *testing.T) {
	c := New(Config{MinSessionTimeout: time.Second, InitialRebalanceDelay: -1, TickInterval: -1, Logger: zerolog.Nop()}, &memPersister{})
	defer c.Close()
	c.ReplayDone()
	var unknown atomic.Int64
	type client struct {
		stop    chan struct{}
		syncGen atomic.Int32
		id      atomic.Value
	}
	run := func(group string, cl *client, wg *sync.WaitGroup) {
		defer wg.Done()
		ctx := context.Background()
		memberID := ""
		for {
			jr := c.JoinGroup(ctx, &kmsg.JoinGroupRequest{Version: 5, Group: group, MemberID: memberID, SessionTimeoutMillis: 30000, RebalanceTimeoutMillis: 60000,
				ProtocolType: "consumer", Protocols: []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMeta("t")}}})
			switch jr.ErrorCode {
			case 0:
			case kerr.MemberIDRequired.Code:
				memberID = jr.MemberID
				continue
			case kerr.UnknownMemberID.Code:
				unknown.Add(1)
				return
			default:
				continue
			}
			memberID = jr.MemberID
			cl.id.Store(memberID)
			sreq := &kmsg.SyncGroupRequest{Version: 5, Group: group, MemberID: memberID, Generation: jr.Generation}
			if jr.LeaderID == memberID {
				for _, m := range jr.Members {
					sreq.GroupAssignment = append(sreq.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m.MemberID, MemberAssignment: []byte(m.MemberID)})
				}
			}
			sr := c.SyncGroup(ctx, sreq)
			if sr.ErrorCode == kerr.UnknownMemberID.Code {
				unknown.Add(1)
				return
			}
			if sr.ErrorCode != 0 {
				continue
			}
			if string(sr.MemberAssignment) != memberID {
				t.Errorf("member %s got assignment %q", memberID, sr.MemberAssignment)
			}
			cl.syncGen.Store(jr.Generation)
			for rejoin := false; !rejoin; {
				select {
				case <-cl.stop:
					c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 3, Group: group, Members: []kmsg.LeaveGroupRequestMember{{MemberID: memberID}}})
					return
				case <-time.After(time.Millisecond): // heartbeat interval
				}
				switch code := c.Heartbeat(ctx, &kmsg.HeartbeatRequest{Version: 4, Group: group, MemberID: memberID, Generation: jr.Generation}).ErrorCode; code {
				case 0:
				case kerr.RebalanceInProgress.Code:
					rejoin = true
				default:
					if code == kerr.UnknownMemberID.Code {
						unknown.Add(1)
					}
					t.Errorf("heartbeat: %v", kerr.ErrorForCode(code))
					return
				}
			}
		}
	}
	const nGroups = 20
	var wg sync.WaitGroup
	clients := make([][]*client, nGroups)
	start := func(gi int) *client {
		cl := &client{stop: make(chan struct{})}
		clients[gi] = append(clients[gi], cl)
		wg.Add(1)
		go run(fmt.Sprintf("group-%d", gi), cl, &wg)
		return cl
	}
	settled := func(gi int, live []*client) bool {
		g := c.get(fmt.Sprintf("group-%d", gi))
		if g == nil {
			return false
		}
		g.mu.Lock()
		state, gen, n := g.state, g.generation, len(g.members)
		g.mu.Unlock()
		if state != StateStable || n != len(live) {
			return false
		}
		for _, cl := range live {
			if cl.syncGen.Load() != gen {
				return false
			}
		}
		return true
	}
	for gi := 0; gi < nGroups; gi++ {
		for i := 0; i < 3; i++ {
			start(gi)
		}
	}
	for gi := 0; gi < nGroups; gi++ {
		waitFor(t, fmt.Sprintf("group-%d stable", gi), func() bool {
			ok := settled(gi, clients[gi])
			if g := c.get(fmt.Sprintf("group-%d", gi)); !ok && g != nil && testing.Verbose() {
				g.mu.Lock()
				var gens []int32
				for _, cl := range clients[gi] {
					gens = append(gens, cl.syncGen.Load())
				}
				t.Logf("state %v gen %d members %d pending %d clients %v", g.state, g.generation, len(g.members), len(g.pending), gens)
				g.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
			return ok
		})
	}
	for gi := 0; gi < nGroups; gi++ {
		close(clients[gi][0].stop)
		start(gi)
	}
	for gi := 0; gi < nGroups; gi++ {
		waitFor(t, fmt.Sprintf("group-%d stable again", gi), func() bool { return settled(gi, clients[gi][1:]) })
	}
	for gi := 0; gi < nGroups; gi++ {
		for _, cl := range clients[gi][1:] {
			close(cl.stop)
		}
	}
	wg.Wait()
	if n := unknown.Load(); n != 0 {
		t.Fatalf("%d UNKNOWN_MEMBER_ID responses", n)
	}
	for gi := 0; gi < nGroups; gi++ {
		g := c.get(fmt.Sprintf("group-%d", gi))
		g.mu.Lock()
		if g.state != StateEmpty || g.generation < 3 {
			t.Errorf("group-%d ended %v at generation %d", gi, g.state, g.generation)
		}
		g.mu.Unlock()
	}
}

func TestCloseAnswersWaiters(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = time.Hour })
	ch := h.startJoin(joinOpt{version: 3})
	waitFor(t, "parked", func() bool { return h.joiners() == 1 })
	h.c.Close()
	if r := recv(t, ch); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("got %v", r.ErrorCode)
	}
	if r := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{})); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("after close: %v", r.ErrorCode)
	}
}

func TestJoinContextCancelled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- h.c.JoinGroup(ctx, h.joinReq(joinOpt{version: 3})) }()
	waitFor(t, "parked", func() bool { return h.joiners() == 1 })
	cancel()
	if r := recv(t, ch); r.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("got %v", r.ErrorCode)
	}
	if h.joiners() != 0 {
		t.Fatal("cancelled joiner still counted")
	}
}
