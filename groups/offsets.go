package groups

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (g *group) sortedOffsets() []tp {
	ks := make([]tp, 0, len(g.offsets))
	for k := range g.offsets {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].topic != ks[j].topic {
			return ks[i].topic < ks[j].topic
		}
		return ks[i].partition < ks[j].partition
	})
	return ks
}

// OffsetCommit handles OffsetCommit v0–v9 (topic names; v10 topic ids are
// the broker's to translate). Kafka's rules: members of the group commit
// with their member id and current generation (REBALANCE_IN_PROGRESS while
// CompletingRebalance, allowed while PreparingRebalance); generation -1 with
// no member id and no instance id (simple consumers, admin tools) is allowed
// only while the group is Empty, and creates the group if needed. The
// offsets are persisted before they become visible; a Persist error fails
// every partition and changes nothing.
func (c *Coordinator) OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	fill := func(code int16) *kmsg.OffsetCommitResponse {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].ErrorCode == 0 {
					resp.Topics[i].Partitions[j].ErrorCode = code
				}
			}
		}
		return resp
	}
	if code := c.preCheck(req.Group); code != 0 {
		return fill(code)
	}
	g, dead := c.lockLive(req.Group, req.Generation < 0)
	if g == nil {
		if dead {
			return fill(kerr.CoordinatorNotAvailable.Code)
		}
		if req.Version >= 9 {
			return fill(kerr.GroupIDNotFound.Code) // as Kafka, for the member epoch of v9+
		}
		return fill(kerr.IllegalGeneration.Code)
	}
	defer g.unlock()
	if c.closed.Load() {
		return fill(kerr.NotCoordinator.Code)
	}

	var m *member
	if g.typ == GroupShare {
		return fill(kerr.GroupIDNotFound.Code) // share groups commit no offsets
	}
	if g.typ == GroupConsumer {
		// GenerationIdOrMemberEpoch is the member epoch (v9+).
		if code := g.consumer.validateOffsetCommit(req.MemberID, req.Generation, req.Version, false); code != 0 {
			return fill(code)
		}
	} else if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil {
		if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
			return fill(code)
		}
		if req.Generation != g.generation {
			return fill(kerr.IllegalGeneration.Code)
		}
		m = g.members[req.MemberID]
	} else if g.state != StateEmpty {
		// Only members may commit for a non-empty group.
		return fill(kerr.UnknownMemberID.Code)
	}
	if g.typ == GroupClassic && g.state == StateCompletingRebalance {
		return fill(kerr.RebalanceInProgress.Code)
	}

	now := g.now().UnixMilli()
	expire := int64(-1)
	if req.Version >= 2 && req.Version <= 4 && req.RetentionTimeMillis >= 0 {
		expire = now + req.RetentionTimeMillis
	}
	type pending struct {
		k tp
		v offsetValue
	}
	var (
		recs    []Record
		commits []pending
	)
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			md := ""
			if p.Metadata != nil {
				md = *p.Metadata
			}
			if len(md) > c.cfg.MaxMetadataSize {
				resp.Topics[i].Partitions[j].ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			epoch := int32(-1)
			if req.Version >= 6 {
				epoch = p.LeaderEpoch
			}
			ov := offsetValue{offset: p.Offset, leaderEpoch: epoch, metadata: md, commitTs: now, expireTs: expire}
			k := tp{t.Topic, p.Partition}
			commits = append(commits, pending{k, ov})
			recs = append(recs, Record{Key: offsetKey(g.name, k.topic, k.partition), Value: offsetRecordValue(ov)})
		}
	}
	if code := g.persist(ctx, recs); code != 0 {
		return fill(code)
	}
	for _, pc := range commits {
		pc.v.order = g.nextOrder()
		g.offsets[pc.k] = pc.v
	}
	if m != nil {
		m.deadline = g.now().Add(m.sessionTimeout)
	}
	return resp
}

type fetchTopic struct {
	topic string
	parts []int32 // nil: every committed partition
}

type fetchedTopic struct {
	topic string
	parts []kmsg.OffsetFetchResponseGroupTopicPartition
}

// fetch returns a group's committed offsets; nil topics means all. With
// requireStable, a partition with a transactional commit pending
// (TxnOffsetCommit before its marker) answers UNSTABLE_OFFSET_COMMIT.
//
// memberID and memberEpoch are OffsetFetch v9's: checked against a
// consumer group's members (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH), as
// Kafka's validateOffsetFetch; nil and -1 skip the check.
func (c *Coordinator) fetch(name string, topics []fetchTopic, all, requireStable bool, memberID *string, memberEpoch int32) (int16, []fetchedTopic) {
	if code := c.preCheck(name); code != 0 {
		return code, nil
	}
	g, _ := c.lockLive(name, false)
	var offsets map[tp]offsetValue
	if g != nil {
		defer g.unlock()
		offsets = g.offsets
		if g.typ == GroupConsumer {
			if code := g.consumer.validateOffsetFetch(memberID, memberEpoch); code != 0 {
				return code, nil
			}
		}
	}
	if all {
		byTopic := make(map[string][]int32)
		var names []string
		if g != nil {
			for _, k := range g.sortedOffsets() {
				if _, ok := byTopic[k.topic]; !ok {
					names = append(names, k.topic)
				}
				byTopic[k.topic] = append(byTopic[k.topic], k.partition)
			}
		}
		topics = topics[:0]
		for _, n := range names {
			topics = append(topics, fetchTopic{n, byTopic[n]})
		}
	}
	out := make([]fetchedTopic, 0, len(topics))
	for _, t := range topics {
		ft := fetchedTopic{topic: t.topic}
		for _, p := range t.parts {
			rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
			rp.Partition = p
			rp.Offset = -1
			rp.Metadata = strPtr("")
			if requireStable && g != nil && g.txnPending(tp{t.topic, p}) {
				rp.ErrorCode = kerr.UnstableOffsetCommit.Code
			} else if o, ok := offsets[tp{t.topic, p}]; ok {
				rp.Offset = o.offset
				rp.LeaderEpoch = o.leaderEpoch
				rp.Metadata = strPtr(o.metadata)
			}
			ft.parts = append(ft.parts, rp)
		}
		out = append(out, ft)
	}
	return 0, out
}

// OffsetFetch handles OffsetFetch v0–v9 (batched groups from v8). A group
// or partition without a committed offset yields offset -1 and no error, as
// in Kafka. RequireStable (v7+): a partition with a pending transactional
// commit answers UNSTABLE_OFFSET_COMMIT (offset -1), which clients retry.
func (c *Coordinator) OffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var topics []fetchTopic
			for _, t := range rg.Topics {
				topics = append(topics, fetchTopic{t.Topic, t.Partitions})
			}
			code, fetched := c.fetch(rg.Group, topics, rg.Topics == nil, req.RequireStable, rg.MemberID, rg.MemberEpoch)
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group = rg.Group
			sg.ErrorCode = code
			for _, ft := range fetched {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.Topic = ft.topic
				st.Partitions = ft.parts
				sg.Topics = append(sg.Topics, st)
			}
			resp.Groups = append(resp.Groups, sg)
		}
		return resp
	}
	var topics []fetchTopic
	for _, t := range req.Topics {
		topics = append(topics, fetchTopic{t.Topic, t.Partitions})
	}
	code, fetched := c.fetch(req.Group, topics, req.Topics == nil && req.Version >= 2, req.Version >= 7 && req.RequireStable, nil, -1)
	if code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return resp
		}
		// v0/v1 have no top-level error code: report it per partition.
		fetched = fetched[:0]
		for _, t := range topics {
			ft := fetchedTopic{topic: t.topic}
			for _, p := range t.parts {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset, rp.Metadata, rp.ErrorCode = p, -1, strPtr(""), code
				ft.parts = append(ft.parts, rp)
			}
			fetched = append(fetched, ft)
		}
	}
	for _, ft := range fetched {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = ft.topic
		for _, p := range ft.parts {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// OffsetDelete handles OffsetDelete v0 (KIP-496). An Empty group may drop
// any offsets; a non-empty group of protocol type "consumer" may drop the
// offsets of topics none of its members subscribes to
// (GROUP_SUBSCRIBED_TO_TOPIC otherwise); any other non-empty group answers
// NON_EMPTY_GROUP.
func (c *Coordinator) OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if code := c.preCheck(req.Group); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	g, _ := c.lockLive(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	defer g.unlock()
	if g.typ == GroupClassic && g.state != StateEmpty && g.protocolType != "consumer" {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	}
	consumerActive := g.typ == GroupConsumer && !g.consumer.Empty()
	var (
		recs []Record
		del  []tp
	)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		_, subscribed := g.subscribed[t.Topic]
		subscribed = subscribed && g.state != StateEmpty
		if g.typ == GroupConsumer {
			subscribed = consumerActive && g.consumer.subscribedTopic(t.Topic)
		}
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if subscribed {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else if _, ok := g.offsets[tp{t.Topic, p.Partition}]; ok {
				del = append(del, tp{t.Topic, p.Partition})
				recs = append(recs, Record{Key: offsetKey(g.name, t.Topic, p.Partition)})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if code := g.persist(ctx, recs); code != 0 {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].ErrorCode == 0 {
					resp.Topics[i].Partitions[j].ErrorCode = code
				}
			}
		}
		return resp
	}
	for _, k := range del {
		delete(g.offsets, k)
	}
	g.maybeDie(ctx)
	return resp
}

// maybeDie removes an Empty group that has nothing left (no offsets, no
// members, no pending members), writing the group metadata tombstone, as
// Kafka's cleanupGroupMetadata does. g.mu held.
//
// An empty consumer group goes the same way, with its tombstones.
func (g *group) maybeDie(ctx context.Context) {
	if g.state != StateEmpty || len(g.offsets) > 0 || len(g.members) > 0 || len(g.pending) > 0 || len(g.pendingTxn) > 0 || g.typ == GroupShare {
		return
	}
	recs := []Record{{Key: groupKey(g.name)}}
	if g.typ == GroupConsumer {
		if !g.consumer.Empty() {
			return
		}
		recs = consumerTombstones(g.name)
	}
	if g.persist(ctx, recs) != 0 {
		return
	}
	g.kill()
}

// ExpireOffsets is Kafka's offsets retention pass (run it every
// offsets.retention.check.interval.ms, 10m in Kafka). It drops:
//   - offsets of topics for which topicExists returns false (deleted topics;
//     topicExists may be nil);
//   - in Empty groups, offsets whose retention (OffsetsRetention, counted
//     from when the group became Empty, or the explicit expire timestamp of
//     an OffsetCommit v2–v4 retention) has passed;
//   - in Stable "consumer" groups, offsets of topics no member subscribes to
//     that were committed longer than OffsetsRetention ago.
//
// Tombstones are persisted first; an Empty group left with no offsets is
// deleted (group metadata tombstone).
func (c *Coordinator) ExpireOffsets(topicExists func(string) bool) {
	if c.loading.Load() || c.closed.Load() {
		return
	}
	ctx := context.Background()
	retention := c.cfg.OffsetsRetention.Milliseconds()
	for _, g := range c.snapshot() {
		if c.closed.Load() {
			return
		}
		g.mu.Lock()
		if g.state == StateDead {
			g.unlock()
			continue
		}
		now := g.now().UnixMilli()
		var (
			recs []Record
			del  []tp
		)
		for _, k := range g.sortedOffsets() {
			o := g.offsets[k]
			expired := topicExists != nil && !topicExists(k.topic)
			if !expired {
				switch {
				case g.typ == GroupConsumer:
					// Kafka's rule for consumer groups: offsets of
					// topics no member subscribes to, counted from
					// their commit.
					if g.consumer.Empty() || !g.consumer.subscribedTopic(k.topic) {
						if o.expireTs >= 0 {
							expired = now >= o.expireTs
						} else {
							expired = now-o.commitTs >= retention
						}
					}
				case g.state == StateEmpty:
					base := g.stateTs.UnixMilli()
					if o.expireTs >= 0 {
						expired = now >= o.expireTs
					} else {
						expired = now-base >= retention
					}
				case g.state == StateStable && g.protocolType == "consumer" && g.subscribed != nil:
					if _, sub := g.subscribed[k.topic]; !sub {
						if o.expireTs >= 0 {
							expired = now >= o.expireTs
						} else {
							expired = now-o.commitTs >= retention
						}
					}
				}
			}
			if expired {
				del = append(del, k)
				recs = append(recs, Record{Key: offsetKey(g.name, k.topic, k.partition)})
			}
		}
		if g.persist(ctx, recs) == 0 {
			for _, k := range del {
				delete(g.offsets, k)
			}
			if len(del) > 0 {
				c.log.Debug().Str("group", g.name).Int("offsets", len(del)).Msg("groups: expired offsets")
			}
			g.maybeDie(ctx)
		}
		g.unlock()
	}
}
