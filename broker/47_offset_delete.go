package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// OffsetDelete 0. DELETE on the group, else GROUP_AUTHORIZATION_FAILED;
// READ on each topic, else its partitions are answered
// TOPIC_AUTHORIZATION_FAILED (Kafka's rules).
// Group requests run in connection order (conn.go: inGroupOrder).
func apiOffsetDelete() api {
	return api{key: kmsg.OffsetDelete, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetDeleteRequest)
		if code := rc.groupDenied(auth.OpDelete, req.Group); code != 0 {
			resp := kmsg.NewPtrOffsetDeleteResponse()
			resp.ErrorCode = code
			return resp, nil
		}
		var allowed, denied []kmsg.OffsetDeleteRequestTopic
		for _, t := range req.Topics {
			if rc.topicDenied(auth.OpRead, t.Topic) != 0 {
				denied = append(denied, t)
			} else {
				allowed = append(allowed, t)
			}
		}
		sub := *req
		sub.Topics = allowed
		deniedTopics := func(resp *kmsg.OffsetDeleteResponse) *kmsg.OffsetDeleteResponse {
			for _, t := range denied {
				rt := kmsg.NewOffsetDeleteResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetDeleteResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}
		if len(denied) > 0 && len(allowed) == 0 {
			return deniedTopics(kmsg.NewPtrOffsetDeleteResponse()), nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return deniedTopics(b.coordinatorFor(req.Group).OffsetDelete(rc.groupCtx(), &sub))
		})
	}}
}
