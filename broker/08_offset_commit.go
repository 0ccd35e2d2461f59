package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// OffsetCommit 2-9. The commit is answered once its record is durable.
// Group requests run in connection order (conn.go: inGroupOrder).
// Authorization (Kafka's): READ on the group, else every partition is
// answered GROUP_AUTHORIZATION_FAILED; READ on each topic, else its
// partitions are answered TOPIC_AUTHORIZATION_FAILED and the others
// committed.
func apiOffsetCommit() api {
	return api{key: kmsg.OffsetCommit, min: 2, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetCommitRequest)
		if code := rc.groupDenied(auth.OpRead, req.Group); code != 0 {
			return offsetCommitErrors(req.Topics, code, kmsg.NewPtrOffsetCommitResponse()), nil
		}
		var allowed, denied []kmsg.OffsetCommitRequestTopic
		for _, t := range req.Topics {
			if rc.topicDenied(auth.OpRead, t.Topic) != 0 {
				denied = append(denied, t)
			} else {
				allowed = append(allowed, t)
			}
		}
		if len(denied) > 0 && len(allowed) == 0 {
			return offsetCommitErrors(denied, kerr.TopicAuthorizationFailed.Code, kmsg.NewPtrOffsetCommitResponse()), nil
		}
		sub := *req
		sub.Topics = allowed
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := b.coordinatorFor(req.Group).OffsetCommit(rc.groupCtx(), &sub)
			return offsetCommitErrors(denied, kerr.TopicAuthorizationFailed.Code, resp)
		})
	}}
}

// offsetCommitErrors adds topics to resp with every partition answered
// code.
func offsetCommitErrors(topics []kmsg.OffsetCommitRequestTopic, code int16, resp *kmsg.OffsetCommitResponse) *kmsg.OffsetCommitResponse {
	for _, t := range topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
