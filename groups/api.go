package groups

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// lockLive returns g locked and not Dead, re-resolving the group when it
// died between lookup and lock (DeleteGroups/expiry). create decides whether
// a missing group is created. It returns nil when the group does not exist
// (create false) or stays Dead.
func (c *Coordinator) lockLive(name string, create bool) (g *group, dead bool) {
	for attempt := 0; attempt < 3; attempt++ {
		if create {
			g = c.getOrCreate(name)
		} else if g = c.get(name); g == nil {
			return nil, false
		}
		g.mu.Lock()
		if g.state != StateDead {
			return g, false
		}
		g.unlock()
	}
	return nil, true
}

// JoinGroup handles JoinGroup v0–v9. It blocks until the rebalance
// completes (or ctx is done, in which case the member stops counting as
// rejoined and REBALANCE_IN_PROGRESS is returned for a connection that is
// gone anyway). Put the connection's client id and host in ctx with
// WithClientInfo.
func (c *Coordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	v := req.Version
	if code := c.preCheck(req.Group); code != 0 {
		return joinError(v, req.MemberID, code)
	}
	if st := sessionTimeout(req); st < c.cfg.MinSessionTimeout || st > c.cfg.MaxSessionTimeout {
		return joinError(v, req.MemberID, kerr.InvalidSessionTimeout.Code)
	}
	g, dead := c.lockLive(req.Group, req.MemberID == "")
	if g == nil {
		if dead {
			return joinError(v, req.MemberID, kerr.CoordinatorNotAvailable.Code)
		}
		return joinError(v, req.MemberID, kerr.UnknownMemberID.Code)
	}
	if c.closed.Load() {
		g.unlock()
		return joinError(v, req.MemberID, kerr.NotCoordinator.Code)
	}
	if g.typ == GroupShare {
		g.unlock()
		return joinError(v, req.MemberID, kerr.InconsistentGroupProtocol.Code)
	}
	if g.typ == GroupConsumer {
		// docs/groups-next.md, Conversion: an empty consumer group
		// becomes classic; no online migration of a non-empty one.
		code := kerr.InconsistentGroupProtocol.Code
		if g.consumer.Empty() {
			code = g.toClassic(ctx)
		}
		if code != 0 {
			g.unlock()
			return joinError(v, req.MemberID, code)
		}
	}
	resp, w := g.join(ctx, req, clientInfo(ctx))
	g.unlock()
	if resp != nil {
		return resp
	}
	if r, ok := awaitParked(ctx, g, w.ch, func(m *member) {
		if m.join == w {
			m.join = nil
		}
	}); ok {
		return r
	}
	return joinError(v, req.MemberID, kerr.RebalanceInProgress.Code)
}

// SyncGroup handles SyncGroup v0–v5. Followers block until the leader's
// assignment arrives; the leader's assignment is persisted (group metadata
// record) before anyone is answered.
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	v := req.Version
	if code := c.preCheck(req.Group); code != 0 {
		if code == kerr.CoordinatorLoadInProgress.Code {
			// Kafka: the rebalance state is lost on load; make the
			// member rejoin without rediscovering the coordinator.
			code = kerr.RebalanceInProgress.Code
		}
		return syncResponse(v, code)
	}
	g, dead := c.lockLive(req.Group, false)
	if g == nil {
		if dead {
			return syncResponse(v, kerr.CoordinatorNotAvailable.Code)
		}
		return syncResponse(v, kerr.UnknownMemberID.Code)
	}
	if c.closed.Load() {
		g.unlock()
		return syncResponse(v, kerr.NotCoordinator.Code)
	}
	resp, w := g.syncGroup(ctx, req)
	g.unlock()
	if resp != nil {
		return resp
	}
	if r, ok := awaitParked(ctx, g, w.ch, func(m *member) {
		if m.sync == w {
			m.sync = nil
		}
	}); ok {
		return r
	}
	return syncResponse(v, kerr.RebalanceInProgress.Code)
}

// awaitParked waits for a parked JoinGroup or SyncGroup answer. If ctx ends
// first it takes the group lock, returns an answer that raced in, or else
// lets forget drop the waiter from every member and reports false.
func awaitParked[T any](ctx context.Context, g *group, ch <-chan T, forget func(*member)) (T, bool) {
	select {
	case r := <-ch:
		return r, true
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.unlock()
	select {
	case r := <-ch:
		return r, true
	default:
	}
	for _, m := range g.members {
		forget(m)
	}
	var zero T
	return zero, false
}

// Heartbeat handles Heartbeat v0–v4.
func (c *Coordinator) Heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if code := c.preCheck(req.Group); code != 0 {
		if code != kerr.CoordinatorLoadInProgress.Code { // Kafka answers NONE while loading
			resp.ErrorCode = code
		}
		return resp
	}
	g, dead := c.lockLive(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		if dead {
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		}
		return resp
	}
	defer g.unlock()
	resp.ErrorCode = g.heartbeat(req)
	return resp
}

// LeaveGroup handles LeaveGroup v0–v5 (batched members from v3).
func (c *Coordinator) LeaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	finish := func() *kmsg.LeaveGroupResponse {
		if req.Version < 3 {
			if resp.ErrorCode == 0 && len(resp.Members) > 0 {
				resp.ErrorCode = resp.Members[0].ErrorCode
			}
			resp.Members = nil
		}
		return resp
	}
	if code := c.preCheck(req.Group); code != 0 {
		resp.ErrorCode = code
		return finish()
	}
	answer := func(lm kmsg.LeaveGroupRequestMember, code int16) {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = lm.MemberID
		rm.InstanceID = lm.InstanceID
		rm.ErrorCode = code
		resp.Members = append(resp.Members, rm)
	}
	g, dead := c.lockLive(req.Group, false)
	if g == nil {
		if dead {
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return finish()
		}
		for _, lm := range leaving {
			answer(lm, kerr.UnknownMemberID.Code)
		}
		return finish()
	}
	defer g.unlock()
	for _, lm := range leaving {
		_, code := g.leave(lm.MemberID, lm.InstanceID)
		if lm.Reason != nil && code == 0 {
			c.log.Debug().Str("group", req.Group).Str("member", lm.MemberID).Str("reason", *lm.Reason).Msg("groups: member left")
		}
		answer(lm, code)
	}
	return finish()
}

// DescribeGroups handles DescribeGroups v0–v6. AuthorizedOperations is left
// at kmsg's default (not requested); the broker fills it when asked.
func (c *Coordinator) DescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		if code := c.preCheck(name); code != 0 {
			rg.ErrorCode = code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		g, _ := c.lockLive(name, false)
		if g != nil && g.typ != GroupClassic {
			// As Kafka: DescribeGroups describes classic groups;
			// consumer groups answer ConsumerGroupDescribe.
			g.unlock()
			g = nil
			if req.Version >= 6 {
				rg.ErrorMessage = kmsg.StringPtr("Group " + name + " is not a classic group.")
			}
		}
		if g == nil {
			rg.State = StateDead.String()
			if req.Version >= 6 {
				rg.ErrorCode = kerr.GroupIDNotFound.Code
			}
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.State = g.state.String()
		rg.ProtocolType = g.protocolType
		stable := g.state == StateStable
		if stable {
			rg.Protocol = g.protocol
		}
		for _, id := range g.sortedMemberIDs() {
			m := g.members[id]
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID = m.id
			rm.InstanceID = m.instanceID
			rm.ClientID = m.clientID
			rm.ClientHost = m.clientHost
			if stable {
				rm.ProtocolMetadata = m.metadataFor(g.protocol)
				rm.MemberAssignment = m.assignment
			}
			rg.Members = append(rg.Members, rm)
		}
		g.unlock()
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// ListGroups handles ListGroups v0–v5 (StatesFilter v4+, TypesFilter v5+,
// both case-insensitive as in Kafka). GroupType is the group's (GroupType).
func (c *Coordinator) ListGroups(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	if c.closed.Load() {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	if c.loading.Load() {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	matches := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	for _, g := range c.snapshot() {
		// Not g.mu: it may be held across a Persist.
		l := g.listed.Load()
		if l.state == StateDead {
			continue
		}
		state := l.stateName()
		if !matches(req.StatesFilter, state) || !matches(req.TypesFilter, l.typ.String()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.ProtocolType = l.protocolType
		lg.GroupState = state
		lg.GroupType = l.typ.String()
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// DeleteGroups handles DeleteGroups v0–v2: only Empty groups can be deleted
// (NON_EMPTY_GROUP otherwise); tombstones for every offset and for the group
// metadata are persisted before the group is dropped.
func (c *Coordinator) DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		rg.ErrorCode = c.deleteGroup(ctx, name)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *Coordinator) deleteGroup(ctx context.Context, name string) int16 {
	if code := c.preCheck(name); code != 0 {
		return code
	}
	g, _ := c.lockLive(name, false)
	if g == nil {
		return kerr.GroupIDNotFound.Code
	}
	defer g.unlock()
	if g.typ == GroupShare {
		if code := g.deleteShareGroup(ctx); code != 0 {
			return code
		}
		g.kill()
		return 0
	}
	if g.state != StateEmpty || (g.typ == GroupConsumer && !g.consumer.Empty()) {
		return kerr.NonEmptyGroup.Code
	}
	recs := make([]Record, 0, len(g.offsets)+2)
	for _, k := range g.sortedOffsets() {
		recs = append(recs, Record{Key: offsetKey(g.name, k.topic, k.partition)})
	}
	if g.typ == GroupConsumer {
		recs = append(recs, consumerTombstones(g.name)...)
	} else {
		recs = append(recs, Record{Key: groupKey(g.name)})
	}
	if code := g.persist(ctx, recs); code != 0 {
		return code
	}
	clear(g.offsets)
	g.kill()
	return 0
}

// kill transitions g to Dead and drops it from the coordinator; g.mu held.
func (g *group) kill() {
	for _, m := range g.members {
		g.failWaiters(m, kerr.CoordinatorNotAvailable.Code)
	}
	clear(g.pending)
	g.transition(StateDead)
	g.c.remove(g)
}
