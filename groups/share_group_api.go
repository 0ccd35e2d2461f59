package groups

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The coordinator's side of KIP-932 share groups (docs/groups-next.md,
// part B "Membership"): a ShareGroup lives in the name → group map as a
// group of type GroupShare (group.share), under the group's lock; its
// records go through the coordinator's Persister. A share group and a
// classic or consumer group never share an id: a request of the other
// kind answers GROUP_ID_NOT_FOUND (INCONSISTENT_GROUP_PROTOCOL for a
// JoinGroup), and a share heartbeat to another type's id GROUP_ID_NOT_FOUND.

// sharePersist is a ShareGroup's persister: its records, encoded in
// Kafka's formats, through the coordinator's Persister.
type sharePersist struct{ c *Coordinator }

func (p sharePersist) PersistShare(ctx context.Context, recs []ShareGroupRecord) error {
	rs := make([]Record, 0, len(recs))
	for _, r := range recs {
		k, v, err := EncodeShareGroupRecord(r)
		if err != nil {
			return fmt.Errorf("groups: encode share group records: %w", err)
		}
		rs = append(rs, Record{Key: k, Value: v})
	}
	if code := p.c.persist(ctx, rs); code != 0 {
		return kerr.ErrorForCode(code)
	}
	return nil
}

func (c *Coordinator) newShareGroup(name string) *ShareGroup {
	return NewShareGroup(name, c.cfg.Share, sharePersist{c})
}

// notShare is the message of a share-group request meeting a group of
// another type.
func notShare(name string) *string {
	return kmsg.StringPtr(fmt.Sprintf("Group %s is not a share group.", name))
}

// ShareGroupHeartbeat handles ShareGroupHeartbeat v0-1 (API 76). img is
// the cluster's topics. A join (epoch 0) creates the group; a heartbeat
// or leave for a group that does not exist answers GROUP_ID_NOT_FOUND (a
// kgo member then rejoins), as does a group id of another type. Put the
// client id and host in ctx with WithClientInfo. Members that left are
// reported to Config.OnShareMemberGone after the answer is persisted.
func (c *Coordinator) ShareGroupHeartbeat(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest, img TopicImage) *kmsg.ShareGroupHeartbeatResponse {
	fail := func(code int16, msg *string) *kmsg.ShareGroupHeartbeatResponse {
		resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
		resp.ErrorCode, resp.ErrorMessage = code, msg
		return resp
	}
	if c.closed.Load() {
		return fail(kerr.NotCoordinator.Code, nil)
	}
	if code, msg := ValidateShareHeartbeat(req); code != 0 {
		return fail(code, kmsg.StringPtr(msg))
	}
	if c.loading.Load() {
		return fail(kerr.CoordinatorLoadInProgress.Code, nil)
	}
	g, dead := c.lockLive(req.GroupID, req.MemberEpoch == joinEpoch)
	if g == nil {
		if dead {
			return fail(kerr.CoordinatorNotAvailable.Code, nil)
		}
		return fail(kerr.GroupIDNotFound.Code, kmsg.StringPtr(fmt.Sprintf("Group %s not found.", req.GroupID)))
	}
	defer g.unlock()
	if c.closed.Load() {
		return fail(kerr.NotCoordinator.Code, nil)
	}
	fresh := false
	switch {
	case g.typ == GroupShare:
	case g.typ == GroupClassic && req.MemberEpoch == joinEpoch && !g.hasMeta && g.state == StateEmpty &&
		len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 && len(g.pendingTxn) == 0:
		// Made by lockLive just now.
		g.typ, g.share, fresh = GroupShare, c.newShareGroup(g.name), true
	default:
		return fail(kerr.GroupIDNotFound.Code, notShare(req.GroupID))
	}
	resp := g.share.Heartbeat(ctx, req, img)
	if resp.ErrorCode != 0 && fresh {
		g.kill() // nothing of it was persisted
		return resp
	}
	if resp.ErrorCode == 0 && req.MemberEpoch == leaveEpoch && c.cfg.OnShareMemberGone != nil {
		c.cfg.OnShareMemberGone(g.name, req.MemberID)
	}
	return resp
}

// ShareGroupDescribe describes one group for ShareGroupDescribe v0-1
// (API 77); AuthorizedOperations and topic ACLs are the broker's.
func (c *Coordinator) ShareGroupDescribe(name string) kmsg.ShareGroupDescribeResponseGroup {
	rg := kmsg.NewShareGroupDescribeResponseGroup()
	rg.GroupID = name
	if code := c.preCheck(name); code != 0 {
		rg.ErrorCode = code
		return rg
	}
	g, _ := c.lockLive(name, false)
	if g == nil {
		rg.ErrorCode = kerr.GroupIDNotFound.Code
		rg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s not found.", name))
		return rg
	}
	defer g.unlock()
	if g.typ != GroupShare {
		rg.ErrorCode, rg.ErrorMessage = kerr.GroupIDNotFound.Code, notShare(name)
		return rg
	}
	return g.share.Describe()
}

// WithShareGroup runs fn with share group name locked, for the
// share-group offsets APIs (DescribeShareGroupOffsets and friends), which
// talk to the partitions' share state while no member may join. create
// makes (and persists) the group when it does not exist, as Kafka's
// AlterShareGroupOffsets does. It returns NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS, GROUP_ID_NOT_FOUND (no such group, or one
// of another type), the persist's code, or fn's.
func (c *Coordinator) WithShareGroup(ctx context.Context, name string, create bool, fn func(*ShareGroup) int16) int16 {
	if code := c.preCheck(name); code != 0 {
		return code
	}
	g, dead := c.lockLive(name, create)
	if g == nil {
		if dead {
			return kerr.CoordinatorNotAvailable.Code
		}
		return kerr.GroupIDNotFound.Code
	}
	defer g.unlock()
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	switch {
	case g.typ == GroupShare:
	case create && g.typ == GroupClassic && !g.hasMeta && g.state == StateEmpty &&
		len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 && len(g.pendingTxn) == 0:
		sg := c.newShareGroup(g.name)
		if code := sg.Create(ctx); code != 0 {
			g.kill()
			return code
		}
		g.typ, g.share = GroupShare, sg
	default:
		return kerr.GroupIDNotFound.Code
	}
	return fn(g.share)
}

// deleteShareGroup deletes an empty share group's records (DeleteGroups);
// the caller removes the group. g.mu held.
func (g *group) deleteShareGroup(ctx context.Context) int16 {
	return g.share.Delete(ctx)
}

// replayShare applies a share-group record (key types 10-15) while
// loading. A record for a group of another type makes it a share group
// (Kafka keeps one type per id); tombstones for a group that is not a
// share group change nothing.
func (c *Coordinator) replayShare(r Record) error {
	sr, err := DecodeShareGroupRecord(r.Key, r.Value)
	if err != nil {
		return err
	}
	g := c.getOrCreate(sr.Group)
	g.mu.Lock()
	defer g.unlock()
	if g.typ != GroupShare {
		if sr.Tombstone {
			return nil
		}
		g.typ, g.share, g.consumer = GroupShare, c.newShareGroup(g.name), nil
		g.members, g.static = make(map[string]*member), make(map[string]string)
		g.generation, g.protocolType, g.protocol, g.leader, g.hasMeta = 0, "", "", "", false
	}
	g.share.Replay(sr)
	return nil
}

// shareTick expires the sessions of a share group's members; g.mu held
// (the caller releases it).
func (c *Coordinator) shareTick(g *group) {
	gone, err := g.share.Tick(c.ctx)
	if err != nil {
		c.log.Debug().Err(err).Str("group", g.name).Msg("groups: share group expiry not persisted")
		return
	}
	if c.cfg.OnShareMemberGone != nil {
		for _, m := range gone {
			c.cfg.OnShareMemberGone(g.name, m)
		}
	}
}
