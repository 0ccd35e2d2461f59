package groups

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStateTransitions covers every transition of the classic state
// machine. Each case drives the group from a known state with requests and
// deterministic clock ticks, and checks the state after each step.
func TestStateTransitions(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		run  func(t *testing.T, h *harness)
	}{
		{"Empty→PreparingRebalance→CompletingRebalance after the initial rebalance delay", func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second }, func(t *testing.T, h *harness) {
			ch := h.startJoin(joinOpt{version: 3})
			waitFor(t, "join parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance)
			h.advance(2 * time.Second)
			notReady(t, ch)
			h.wantState(StatePreparingRebalance)
			h.advance(time.Second)
			r := recv(t, ch)
			if r.ErrorCode != 0 || r.Generation != 1 || r.LeaderID != r.MemberID {
				t.Fatalf("join: %+v", r)
			}
			h.wantState(StateCompletingRebalance)
		}},
		{"PreparingRebalance→CompletingRebalance when every member (and pending member) joined", nil, func(t *testing.T, h *harness) {
			a, b := h.pendingID(), h.pendingID()
			cha := h.startJoin(joinOpt{memberID: a})
			waitFor(t, "a parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance) // b is still pending
			notReady(t, cha)
			chb := h.startJoin(joinOpt{memberID: b})
			ra, rb := recv(t, cha), recv(t, chb)
			if ra.Generation != 1 || rb.Generation != 1 || ra.LeaderID != rb.LeaderID {
				t.Fatalf("joins: %+v %+v", ra, rb)
			}
			h.wantState(StateCompletingRebalance)
		}},
		{"CompletingRebalance→Stable on the leader's SyncGroup", nil, func(t *testing.T, h *harness) {
			h.stable(2) // asserts Stable
		}},
		{"Stable→PreparingRebalance when a new member joins", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(2)
			ch := h.startJoin(joinOpt{version: 3})
			waitFor(t, "new member parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance)
			if code := h.heartbeat(ids[1], gen); code != kerr.RebalanceInProgress.Code {
				t.Fatalf("heartbeat: %v", kerr.ErrorForCode(code))
			}
			c0, c1 := h.startJoin(joinOpt{memberID: ids[0]}), h.startJoin(joinOpt{memberID: ids[1]})
			for _, c := range []<-chan *kmsg.JoinGroupResponse{ch, c0, c1} {
				if r := recv(t, c); r.ErrorCode != 0 || r.Generation != gen+1 {
					t.Fatalf("rejoin: %+v", r)
				}
			}
			h.wantState(StateCompletingRebalance)
		}},
		{"Stable→PreparingRebalance when the leader rejoins; Stable stays when a follower rejoins unchanged", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(2)
			r := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{memberID: ids[1]}))
			if r.ErrorCode != 0 || r.Generation != gen || len(r.Members) != 0 {
				t.Fatalf("follower rejoin: %+v", r)
			}
			h.wantState(StateStable)
			ch := h.startJoin(joinOpt{memberID: ids[0]})
			waitFor(t, "leader parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance)
			notReady(t, ch)
		}},
		{"Stable→PreparingRebalance when a follower rejoins with new metadata", nil, func(t *testing.T, h *harness) {
			ids, _ := h.stable(2)
			h.startJoin(joinOpt{memberID: ids[1], protos: []proto{{"range", consumerMeta("t", "u")}}})
			waitFor(t, "follower parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance)
		}},
		{"Stable→PreparingRebalance→CompletingRebalance on LeaveGroup", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(2)
			if r := h.leave(ids[1]); r.ErrorCode != 0 || r.Members[0].ErrorCode != 0 {
				t.Fatalf("leave: %+v", r)
			}
			h.wantState(StatePreparingRebalance)
			r := recv(t, h.startJoin(joinOpt{memberID: ids[0]}))
			if r.Generation != gen+1 || len(r.Members) != 1 {
				t.Fatalf("rejoin: %+v", r)
			}
			h.wantState(StateCompletingRebalance)
		}},
		{"Stable→PreparingRebalance on session-timeout expiry", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(2)
			h.advance(6 * time.Second)
			if code := h.heartbeat(ids[0], gen); code != 0 {
				t.Fatalf("heartbeat: %v", kerr.ErrorForCode(code))
			}
			h.advance(4 * time.Second) // follower's 10s session is over
			h.wantState(StatePreparingRebalance)
			if code := h.heartbeat(ids[1], gen); code != kerr.UnknownMemberID.Code {
				t.Fatalf("expired member heartbeat: %v", kerr.ErrorForCode(code))
			}
			if code := h.heartbeat(ids[0], gen); code != kerr.RebalanceInProgress.Code {
				t.Fatalf("leader heartbeat: %v", kerr.ErrorForCode(code))
			}
			r := recv(t, h.startJoin(joinOpt{memberID: ids[0]}))
			if r.Generation != gen+1 || len(r.Members) != 1 || r.Members[0].MemberID != ids[0] {
				t.Fatalf("rejoin: %+v", r)
			}
			h.wantState(StateCompletingRebalance)
		}},
		{"PreparingRebalance→CompletingRebalance at the rebalance timeout, removing members that did not rejoin", nil, func(t *testing.T, h *harness) {
			h.session, h.rebal = 30*time.Second, 5*time.Second
			ids, gen := h.stable(3)
			chNew := h.startJoin(joinOpt{version: 3})
			waitFor(t, "new member parked", func() bool { return h.joiners() == 1 })
			chL := h.startJoin(joinOpt{memberID: ids[0]})
			waitFor(t, "leader parked", func() bool { return h.joiners() == 2 })
			h.advance(4 * time.Second)
			h.wantState(StatePreparingRebalance)
			notReady(t, chL)
			h.advance(time.Second)
			h.wantState(StateCompletingRebalance)
			rl, rn := recv(t, chL), recv(t, chNew)
			if rl.Generation != gen+1 || len(rl.Members) != 2 || rn.Generation != gen+1 {
				t.Fatalf("joins: %+v %+v", rl, rn)
			}
			for _, gone := range ids[1:] {
				if code := h.heartbeat(gone, gen); code != kerr.UnknownMemberID.Code {
					t.Fatalf("removed member heartbeat: %v", kerr.ErrorForCode(code))
				}
			}
		}},
		{"PreparingRebalance→Empty when the last member leaves", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(1)
			h.leave(ids[0])
			h.wantState(StateEmpty)
			if h.generation() != gen+1 {
				t.Fatalf("generation %d", h.generation())
			}
		}},
		{"a member parked in its first JoinGroup expires after NewMemberJoinTimeout; PreparingRebalance→Empty when the rest leave", func(c *Config) { c.NewMemberJoinTimeout = 5 * time.Second }, func(t *testing.T, h *harness) {
			ids, _ := h.stable(2)
			ch := h.startJoin(joinOpt{version: 3})
			waitFor(t, "new member parked", func() bool { return h.joiners() == 1 })
			h.wantState(StatePreparingRebalance)
			h.advance(5 * time.Second)
			if r := recv(t, ch); r.ErrorCode != kerr.UnknownMemberID.Code {
				t.Fatalf("expired joiner: %+v", r)
			}
			h.wantState(StatePreparingRebalance)
			h.leave(ids...)
			h.wantState(StateEmpty)
		}},
		{"CompletingRebalance→PreparingRebalance when a member leaves; parked SyncGroup gets REBALANCE_IN_PROGRESS", nil, func(t *testing.T, h *harness) {
			ids, gen := h.stable(2)
			h.leave(ids[1])
			h.startJoin(joinOpt{version: 3})
			waitFor(t, "new member parked", func() bool { return h.joiners() == 1 })
			r := recv(t, h.startJoin(joinOpt{memberID: ids[0]}))
			h.wantState(StateCompletingRebalance)
			follower := r.Members[1].MemberID
			if follower == ids[0] {
				follower = r.Members[0].MemberID
			}
			ch := h.startSync(follower, gen+1, nil)
			waitFor(t, "follower sync parked", func() bool { return h.syncers() == 1 })
			h.leave(ids[0])
			h.wantState(StatePreparingRebalance)
			if s := recv(t, ch); s.ErrorCode != kerr.RebalanceInProgress.Code {
				t.Fatalf("parked sync: %v", kerr.ErrorForCode(s.ErrorCode))
			}
		}},
		{"CompletingRebalance→PreparingRebalance→Empty when nobody syncs within the rebalance timeout", nil, func(t *testing.T, h *harness) {
			a := h.pendingID()
			recv(t, h.startJoin(joinOpt{memberID: a}))
			h.wantState(StateCompletingRebalance)
			h.advance(h.rebal)
			h.wantState(StateEmpty)
		}},
		{"Stable→PreparingRebalance when a follower never syncs (pending-sync timeout)", nil, func(t *testing.T, h *harness) {
			h.session = 30 * time.Second
			a, b := h.pendingID(), h.pendingID()
			cha, chb := h.startJoin(joinOpt{memberID: a}), h.startJoin(joinOpt{memberID: b})
			ra := recv(t, cha)
			recv(t, chb)
			leader := ra.LeaderID
			if s := recv(t, h.startSync(leader, ra.Generation, nil)); s.ErrorCode != 0 {
				t.Fatal(s.ErrorCode)
			}
			h.wantState(StateStable)
			h.advance(h.rebal)
			h.wantState(StatePreparingRebalance)
			follower := a
			if follower == leader {
				follower = b
			}
			if code := h.heartbeat(follower, ra.Generation); code != kerr.UnknownMemberID.Code {
				t.Fatalf("unsynced follower: %v", kerr.ErrorForCode(code))
			}
		}},
		{"Empty→Dead on DeleteGroups", nil, func(t *testing.T, h *harness) {
			ids, _ := h.stable(1)
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Groups = []string{h.group}
			if r := h.c.DeleteGroups(context.Background(), req); r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
				t.Fatalf("delete stable: %v", r.Groups[0].ErrorCode)
			}
			h.leave(ids[0])
			h.wantState(StateEmpty)
			if r := h.c.DeleteGroups(context.Background(), req); r.Groups[0].ErrorCode != 0 {
				t.Fatalf("delete empty: %v", r.Groups[0].ErrorCode)
			}
			h.wantState(StateDead)
			if r := h.c.DeleteGroups(context.Background(), req); r.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code {
				t.Fatalf("delete dead: %v", r.Groups[0].ErrorCode)
			}
		}},
		{"Empty→Dead when its offsets expire", func(c *Config) { c.OffsetsRetention = time.Hour }, func(t *testing.T, h *harness) {
			if code := h.commit("", -1, "t", 0, 5); code != 0 {
				t.Fatal(code)
			}
			h.clk.Advance(59 * time.Minute)
			h.c.ExpireOffsets(nil)
			h.wantState(StateEmpty)
			h.clk.Advance(time.Minute)
			h.c.ExpireOffsets(nil)
			h.wantState(StateDead)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newHarness(t, tc.mod))
		})
	}
}

func TestInitialRebalanceDelayExtendsForNewMembers(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	h.rebal = 10 * time.Second
	ch1 := h.startJoin(joinOpt{version: 3})
	waitFor(t, "first parked", func() bool { return h.joiners() == 1 })
	h.advance(2 * time.Second)
	ch2 := h.startJoin(joinOpt{version: 3})
	waitFor(t, "second parked", func() bool { return h.joiners() == 2 })
	h.advance(time.Second) // first delay over, a member was added: extend by 3s
	h.wantState(StatePreparingRebalance)
	h.advance(3 * time.Second)
	r1, r2 := recv(t, ch1), recv(t, ch2)
	if r1.Generation != 1 || r2.Generation != 1 || r1.LeaderID != r2.LeaderID {
		t.Fatalf("%+v %+v", r1, r2)
	}
	leader := r1
	if r2.MemberID == r2.LeaderID {
		leader = r2
	}
	if len(leader.Members) != 2 {
		t.Fatalf("leader saw %d members", len(leader.Members))
	}
}
