package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// OffsetFetch 1-9; v8+ batches groups, which may live on different
// coordinators, so each group is asked of its own. Runs in connection
// order after earlier group requests (a pipelined commit is seen).
// Authorization (Kafka's): DESCRIBE on the group, else
// GROUP_AUTHORIZATION_FAILED; a topic the principal may not describe is
// answered TOPIC_AUTHORIZATION_FAILED when named, and left out of an
// all-topics answer.
func apiOffsetFetch() api {
	return api{key: kmsg.OffsetFetch, min: 1, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetFetchRequest)
		if req.Version < 8 {
			if code := rc.groupDenied(auth.OpDescribe, req.Group); code != 0 {
				resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
				resp.ErrorCode = code
				if req.Version < 2 { // no top-level error code: per partition
					for _, t := range req.Topics {
						rt := kmsg.NewOffsetFetchResponseTopic()
						rt.Topic = t.Topic
						for _, p := range t.Partitions {
							rp := kmsg.NewOffsetFetchResponseTopicPartition()
							rp.Partition, rp.Offset, rp.Metadata, rp.ErrorCode = p, -1, kmsg.StringPtr(""), code
							rt.Partitions = append(rt.Partitions, rp)
						}
						resp.Topics = append(resp.Topics, rt)
					}
				}
				return resp, nil
			}
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			if req.Version < 8 {
				resp := b.coordinatorFor(req.Group).OffsetFetch(rc.groupCtx(), req)
				named := req.Topics != nil
				kept := resp.Topics[:0]
				for _, t := range resp.Topics {
					if rc.allowed(auth.OpDescribe, auth.ResourceTopic, t.Topic) {
						kept = append(kept, t)
						continue
					}
					if named {
						for i := range t.Partitions {
							p := &t.Partitions[i]
							p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, kmsg.StringPtr(""), kerr.TopicAuthorizationFailed.Code
						}
						kept = append(kept, t)
					}
				}
				resp.Topics = kept
				return resp
			}
			resp := kmsg.NewPtrOffsetFetchResponse()
			for _, g := range req.Groups {
				if code := rc.groupDenied(auth.OpDescribe, g.Group); code != 0 {
					rg := kmsg.NewOffsetFetchResponseGroup()
					rg.Group, rg.ErrorCode = g.Group, code
					resp.Groups = append(resp.Groups, rg)
					continue
				}
				sub := *req
				sub.Groups = []kmsg.OffsetFetchRequestGroup{g}
				r := b.coordinatorFor(g.Group).OffsetFetch(rc.groupCtx(), &sub)
				for gi := range r.Groups {
					rg := &r.Groups[gi]
					kept := rg.Topics[:0]
					for _, t := range rg.Topics {
						if rc.allowed(auth.OpDescribe, auth.ResourceTopic, t.Topic) {
							kept = append(kept, t)
							continue
						}
						if g.Topics != nil {
							for i := range t.Partitions {
								p := &t.Partitions[i]
								p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, kmsg.StringPtr(""), kerr.TopicAuthorizationFailed.Code
							}
							kept = append(kept, t)
						}
					}
					rg.Topics = kept
				}
				resp.Groups = append(resp.Groups, r.Groups...)
			}
			return resp
		})
	}}
}
