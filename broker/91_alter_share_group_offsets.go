package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/groups"
)

// AlterShareGroupOffsets 0 (KIP-932): sets the start offset of
// share-partitions of an empty share group (shareStateInitialize; their
// in-flight state and delivery counts go), creating the group if it does
// not exist, as Kafka's does. READ on the group (Kafka's choice), else
// GROUP_AUTHORIZATION_FAILED; READ on each topic, else
// TOPIC_AUTHORIZATION_FAILED on its partitions. A group with members
// answers NON_EMPTY_GROUP, a group id of another type GROUP_ID_NOT_FOUND,
// an unknown topic or partition UNKNOWN_TOPIC_OR_PARTITION. The group is
// held (no member can join) while the share state is set, and the
// partitions set are recorded as having state.
func apiAlterShareGroupOffsets() api {
	return api{key: kmsg.AlterShareGroupOffsets, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.AlterShareGroupOffsetsRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
			if code := rc.groupDenied(auth.OpRead, req.GroupID); code != 0 {
				resp.ErrorCode = code
				return resp
			}
			ctx := rc.groupCtx()
			code := b.coordinatorFor(req.GroupID).WithShareGroup(ctx, req.GroupID, true, func(g *groups.ShareGroup) int16 {
				if !g.Empty() {
					return kerr.NonEmptyGroup.Code
				}
				var set []groups.ShareStateTopic
				for _, rt := range req.Topics {
					ot := kmsg.NewAlterShareGroupOffsetsResponseTopic()
					ot.Topic = rt.Topic
					denied := rc.topicDenied(auth.OpRead, rt.Topic)
					t, exists := b.store.FSM().Topic(rt.Topic)
					if exists && denied == 0 {
						ot.TopicID = t.ID
					}
					done := groups.ShareStateTopic{ID: t.ID, Name: rt.Topic}
					for _, p := range rt.Partitions {
						op := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
						op.Partition = p.Partition
						switch {
						case denied != 0:
							op.ErrorCode = denied
						case !exists || t.Internal || p.Partition < 0 || p.Partition >= t.Partitions:
							op.ErrorCode = kerr.UnknownTopicOrPartition.Code
						default:
							if op.ErrorCode = b.shareStateInitialize(ctx, req.GroupID, t.ID, p.Partition, p.StartOffset); op.ErrorCode == 0 {
								done.Partitions = append(done.Partitions, p.Partition)
							}
						}
						ot.Partitions = append(ot.Partitions, op)
					}
					if len(done.Partitions) > 0 {
						set = append(set, done)
					}
					resp.Topics = append(resp.Topics, ot)
				}
				if len(set) == 0 {
					return 0
				}
				return g.AddStatePartitions(ctx, set)
			})
			if code != 0 {
				resp.ErrorCode, resp.Topics = code, nil
				if code == kerr.NonEmptyGroup.Code {
					resp.ErrorMessage = kmsg.StringPtr("The group has active members.")
				}
			}
			return resp
		})
	}}
}
