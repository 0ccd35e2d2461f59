package broker

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/groups"
)

// DeleteShareGroupOffsets 0 (KIP-932): deletes the share state of whole
// topics of an empty share group (shareStateDelete on each partition it
// has state for). DELETE on the group, else GROUP_AUTHORIZATION_FAILED;
// READ on each topic, else TOPIC_AUTHORIZATION_FAILED for it. A group
// that does not exist (or is of another type) answers GROUP_ID_NOT_FOUND,
// one with members NON_EMPTY_GROUP, an unknown topic
// UNKNOWN_TOPIC_OR_PARTITION.
func apiDeleteShareGroupOffsets() api {
	return api{key: kmsg.DeleteShareGroupOffsets, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DeleteShareGroupOffsetsRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
			if code := rc.groupDenied(auth.OpDelete, req.GroupID); code != 0 {
				resp.ErrorCode = code
				return resp
			}
			ctx := rc.groupCtx()
			code := b.coordinatorFor(req.GroupID).WithShareGroup(ctx, req.GroupID, false, func(g *groups.ShareGroup) int16 {
				if !g.Empty() {
					return kerr.NonEmptyGroup.Code
				}
				state := g.StatePartitions()
				var gone [][16]byte
				for _, rt := range req.Topics {
					ot := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
					ot.Topic = rt.Topic
					t, exists := b.store.FSM().Topic(rt.Topic)
					switch {
					case rc.topicDenied(auth.OpRead, rt.Topic) != 0:
						ot.ErrorCode = kerr.TopicAuthorizationFailed.Code
					case !exists || t.Internal:
						ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
					default:
						ot.TopicID = t.ID
						if ot.ErrorCode = b.deleteShareTopicState(ctx, req.GroupID, t.ID, state); ot.ErrorCode == 0 {
							gone = append(gone, t.ID)
						}
					}
					resp.Topics = append(resp.Topics, ot)
				}
				if len(gone) == 0 {
					return 0
				}
				return g.RemoveStateTopics(ctx, gone)
			})
			if code != 0 {
				resp.ErrorCode, resp.Topics = code, nil
			}
			return resp
		})
	}}
}

// deleteShareTopicState deletes the share state of every partition of
// topic id that state lists; the first error code, or 0.
func (b *Broker) deleteShareTopicState(ctx context.Context, group string, id [16]byte, state []groups.ShareStateTopic) int16 {
	i := slices.IndexFunc(state, func(s groups.ShareStateTopic) bool { return s.ID == id })
	if i < 0 {
		return 0
	}
	for _, p := range state[i].Partitions {
		if code := b.shareStateDelete(ctx, group, id, p); code != 0 {
			return code
		}
	}
	return 0
}

// deleteShareGroupState deletes every share-partition state of an empty
// share group before DeleteGroups removes the group (Kafka deletes the
// share state first). A group that is not a share group, or does not
// exist, is left to DeleteGroups; a non-empty one answers NON_EMPTY_GROUP.
func (b *Broker) deleteShareGroupState(ctx context.Context, c *groups.Coordinator, group string) int16 {
	code := c.WithShareGroup(ctx, group, false, func(g *groups.ShareGroup) int16 {
		if !g.Empty() {
			return kerr.NonEmptyGroup.Code
		}
		state := g.StatePartitions()
		var ids [][16]byte
		for _, st := range state {
			// A deleted topic's share state went with it.
			if _, ok := b.store.FSM().TopicByID(st.ID); ok {
				if code := b.deleteShareTopicState(ctx, group, st.ID, state); code != 0 {
					return code
				}
			}
			ids = append(ids, st.ID)
		}
		if len(ids) == 0 {
			return 0
		}
		return g.RemoveStateTopics(ctx, ids)
	})
	if code == kerr.GroupIDNotFound.Code {
		return 0
	}
	return code
}
