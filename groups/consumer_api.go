package groups

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The coordinator's side of KIP-848 consumer groups (docs/groups-next.md,
// part A): a ConsumerGroup lives in the name → group map as a group of
// type GroupConsumer (group.consumer), under the group's lock, next to the
// offsets it commits; its records go through the coordinator's Persister.

// consumerPersist is a ConsumerGroup's persister: its records, encoded in
// Kafka's formats, through the coordinator's Persister (cut short by
// Close, when the caller is answered NOT_COORDINATOR).
type consumerPersist struct{ c *Coordinator }

func (p consumerPersist) PersistConsumer(ctx context.Context, recs []ConsumerRecord) error {
	rs, err := ConsumerRecordsToRecords(recs)
	if err != nil {
		return fmt.Errorf("groups: encode consumer group records: %w", err)
	}
	if code := p.c.persist(ctx, rs); code != 0 {
		return kerr.ErrorForCode(code)
	}
	return nil
}

func (c *Coordinator) newConsumerGroup(name string) *ConsumerGroup {
	return NewConsumerGroup(name, c.cfg.Consumer, consumerPersist{c})
}

// classicEmpty reports whether g is a classic group with nobody in it
// (conversion to a consumer group is allowed); g.mu held.
func (g *group) classicEmpty() bool {
	return g.typ == GroupClassic && g.state == StateEmpty && len(g.members) == 0 && len(g.pending) == 0
}

// consumerTombstones are the records that delete an empty consumer
// group's state (Kafka's createGroupTombstoneRecords for a group without
// members: target assignment metadata, then group metadata).
func consumerTombstones(name string) []Record {
	var out []Record
	for _, t := range []ConsumerRecordType{RecordTargetMetadata, RecordGroupMetadata} {
		k, _, err := EncodeConsumerRecord(ConsumerRecord{Type: t, Group: name, Tombstone: true})
		if err == nil {
			out = append(out, Record{Key: k})
		}
	}
	return out
}

// toClassic converts an empty consumer group to a classic one (a
// JoinGroup's, docs/groups-next.md "Conversion"), persisting the consumer
// group's tombstones first; g.mu held.
func (g *group) toClassic(ctx context.Context) int16 {
	if code := g.persist(ctx, consumerTombstones(g.name)); code != 0 {
		return code
	}
	g.typ, g.consumer = GroupClassic, nil
	g.transition(StateEmpty)
	g.c.log.Info().Str("group", g.name).Msg("groups: empty consumer group converted to a classic group")
	return 0
}

// ConsumerGroupHeartbeat handles ConsumerGroupHeartbeat v0–v1 (API 68).
// img is the cluster's topics as the requesting principal may see them
// (regex subscriptions resolve on it). A join (epoch 0) creates the
// group, or converts an empty classic group of that id (its group
// metadata tombstone is persisted first); a non-empty classic group
// answers GROUP_ID_NOT_FOUND, as Kafka does. Put the client id and host in
// ctx with WithClientInfo.
func (c *Coordinator) ConsumerGroupHeartbeat(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest, img TopicImage) *kmsg.ConsumerGroupHeartbeatResponse {
	fail := func(code int16, msg string) *kmsg.ConsumerGroupHeartbeatResponse {
		resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = code
		if msg != "" {
			resp.ErrorMessage = kmsg.StringPtr(msg)
		}
		return resp
	}
	if c.closed.Load() {
		return fail(kerr.NotCoordinator.Code, "")
	}
	if code, msg := validateHeartbeat(req); code != 0 {
		return fail(code, msg)
	}
	if c.loading.Load() {
		return fail(kerr.CoordinatorLoadInProgress.Code, "")
	}
	g, dead := c.lockLive(req.Group, req.MemberEpoch == joinEpoch)
	if g == nil {
		if dead {
			return fail(kerr.CoordinatorNotAvailable.Code, "")
		}
		return fail(kerr.UnknownMemberID.Code, fmt.Sprintf("Consumer group %s not found.", req.Group))
	}
	defer g.unlock()
	if c.closed.Load() {
		return fail(kerr.NotCoordinator.Code, "")
	}
	switch g.typ {
	case GroupConsumer:
		return g.consumer.Heartbeat(ctx, req, img)
	case GroupClassic:
		if req.MemberEpoch != joinEpoch || !g.classicEmpty() {
			return fail(kerr.GroupIDNotFound.Code, fmt.Sprintf("Group %s is not a consumer group.", req.Group))
		}
	default:
		return fail(kerr.GroupIDNotFound.Code, fmt.Sprintf("Group %s is not a consumer group.", req.Group))
	}
	// An empty classic group (or one just made by lockLive) becomes a
	// consumer group.
	fresh := !g.hasMeta && len(g.offsets) == 0 && len(g.pendingTxn) == 0
	if g.hasMeta {
		if code := g.persist(ctx, []Record{{Key: groupKey(g.name)}}); code != 0 {
			return fail(code, "")
		}
		g.hasMeta = false
		c.log.Info().Str("group", g.name).Msg("groups: empty classic group converted to a consumer group")
	}
	g.typ, g.consumer = GroupConsumer, c.newConsumerGroup(g.name)
	resp := g.consumer.Heartbeat(ctx, req, img)
	if resp.ErrorCode != 0 && fresh {
		g.kill() // nothing of it was persisted
	}
	return resp
}

// ConsumerGroupDescribe handles ConsumerGroupDescribe v0–v1 (API 69);
// AuthorizedOperations is the broker's to fill.
func (c *Coordinator) ConsumerGroupDescribe(ctx context.Context, req *kmsg.ConsumerGroupDescribeRequest) *kmsg.ConsumerGroupDescribeResponse {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewConsumerGroupDescribeResponseGroup()
		rg.Group = name
		if code := c.preCheck(name); code != 0 {
			rg.ErrorCode = code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		g, _ := c.lockLive(name, false)
		switch {
		case g == nil:
			rg.ErrorCode = kerr.GroupIDNotFound.Code
			rg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s not found.", name))
		case g.typ != GroupConsumer:
			rg.ErrorCode = kerr.GroupIDNotFound.Code
			rg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", name))
		default:
			rg = g.consumer.Describe()
		}
		if g != nil {
			g.unlock()
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// replayConsumer applies a consumer-group record (key types 3, 5-8) while
// loading. A tombstone of a group that is not a consumer group changes
// nothing; a GroupMetadata tombstone ends the consumer group (deleted or
// converted; the group id keeps its offsets).
func (c *Coordinator) replayConsumer(r Record) error {
	cr, err := DecodeConsumerRecord(r.Key, r.Value)
	if err != nil {
		return err
	}
	g := c.getOrCreate(cr.Group)
	g.mu.Lock()
	defer g.unlock()
	if g.typ != GroupConsumer {
		if cr.Tombstone {
			return nil
		}
		g.typ, g.consumer = GroupConsumer, c.newConsumerGroup(g.name)
		// A classic group's metadata before this was tombstoned by
		// the conversion.
		g.members, g.static = make(map[string]*member), make(map[string]string)
		g.generation, g.protocolType, g.protocol, g.leader, g.hasMeta = 0, "", "", "", false
	}
	if cr.Type == RecordGroupMetadata && cr.Tombstone {
		g.typ, g.consumer = GroupClassic, nil
		return nil
	}
	g.consumer.Replay(cr)
	return nil
}
