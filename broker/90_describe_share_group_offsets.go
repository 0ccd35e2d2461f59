package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/groups"
)

// DescribeShareGroupOffsets 0-1 (KIP-932): each share-partition's start
// offset and leader epoch, as persisted in its share state
// (shareStateSummary). DESCRIBE on the group, else
// GROUP_AUTHORIZATION_FAILED for it; DESCRIBE on each topic, else
// TOPIC_AUTHORIZATION_FAILED on its partitions. Topics null describes every
// partition the group has state for (groups.ShareGroup.StatePartitions),
// leaving out topics the principal may not DESCRIBE. A group that does
// not exist, or is not a share group, answers GROUP_ID_NOT_FOUND; a topic
// that does not exist answers start offset -1, as Kafka. Lag (v1) is
// KIP-1226's: the partition's high watermark (asked of its leader,
// share_lag.go) less the start offset and the offsets above it already
// acknowledged or archived; -1 when the partition has no state or its
// leader cannot tell.
func apiDescribeShareGroupOffsets() api {
	return api{key: kmsg.DescribeShareGroupOffsets, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeShareGroupOffsetsRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
			for _, rg := range req.Groups {
				resp.Groups = append(resp.Groups, b.describeShareGroupOffsets(rc, rg, req.Version >= 1))
			}
			return resp
		})
	}}
}

func (b *Broker) describeShareGroupOffsets(rc *request, rg kmsg.DescribeShareGroupOffsetsRequestGroup, withLag bool) kmsg.DescribeShareGroupOffsetsResponseGroup {
	out := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
	out.GroupID = rg.GroupID
	if code := rc.groupDenied(auth.OpDescribe, rg.GroupID); code != 0 {
		out.ErrorCode = code
		return out
	}
	ctx := rc.groupCtx()
	var state []groups.ShareStateTopic
	code := b.coordinatorFor(rg.GroupID).WithShareGroup(ctx, rg.GroupID, false, func(g *groups.ShareGroup) int16 {
		state = g.StatePartitions()
		return 0
	})
	if code != 0 {
		out.ErrorCode = code
		if code == kerr.GroupIDNotFound.Code {
			out.ErrorMessage = kmsg.StringPtr("Group " + rg.GroupID + " not found.")
		}
		return out
	}
	topics := rg.Topics
	all := topics == nil
	if all {
		fsm := b.store.FSM()
		for _, st := range state {
			name, ok := fsm.TopicNameByID(st.ID)
			if !ok || rc.topicDenied(auth.OpDescribe, name) != 0 {
				continue
			}
			t := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
			t.Topic, t.Partitions = name, st.Partitions
			topics = append(topics, t)
		}
	}
	type lagAt struct {
		topic, part int // indexes into out.Topics and its Partitions
		complete    int64
	}
	var (
		lags []lagAt
		hwms []hwmPartition
	)
	for _, rt := range topics {
		ot := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
		ot.Topic = rt.Topic
		denied := rc.topicDenied(auth.OpDescribe, rt.Topic)
		t, exists := b.store.FSM().Topic(rt.Topic)
		if exists && denied == 0 {
			ot.TopicID = t.ID
		}
		for _, p := range rt.Partitions {
			op := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
			op.Partition, op.StartOffset, op.LeaderEpoch = p, -1, -1
			switch {
			case denied != 0:
				op.ErrorCode = denied
			case !exists || p < 0 || p >= t.Partitions:
				// Absence of data, not an error (Kafka's answer).
			default:
				var complete int64
				op.StartOffset, op.LeaderEpoch, complete, op.ErrorCode = b.shareStateSummary(ctx, rg.GroupID, t.ID, p)
				if op.ErrorCode != 0 {
					op.StartOffset, op.LeaderEpoch = -1, -1
				} else if op.StartOffset >= 0 && withLag {
					lags = append(lags, lagAt{len(out.Topics), len(ot.Partitions), complete})
					hwms = append(hwms, hwmPartition{Topic: rt.Topic, Partition: p})
				}
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		out.Topics = append(out.Topics, ot)
	}
	if len(lags) > 0 {
		for i, hwm := range b.highWatermarks(ctx, hwms) {
			la := lags[i]
			op := &out.Topics[la.topic].Partitions[la.part]
			if hwm >= 0 {
				op.Lag = max(0, hwm-op.StartOffset-la.complete)
			}
		}
	}
	return out
}
