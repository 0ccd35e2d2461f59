package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// ShareGroupDescribe 0-1 (KIP-932), each group asked of its own
// coordinator: DESCRIBE on the group, else GROUP_AUTHORIZATION_FAILED for
// it; DESCRIBE on every topic its members are assigned, else the group is
// answered TOPIC_AUTHORIZATION_FAILED with nothing else (Kafka's
// all-or-nothing rule); the authorized operations when asked.
func apiShareGroupDescribe() api {
	return api{key: kmsg.ShareGroupDescribe, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ShareGroupDescribeRequest)
		resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
		for _, g := range req.GroupIDs {
			if code := rc.groupDenied(auth.OpDescribe, g); code != 0 {
				rg := kmsg.NewShareGroupDescribeResponseGroup()
				rg.GroupID, rg.ErrorCode = g, code
				resp.Groups = append(resp.Groups, rg)
				continue
			}
			rg := b.coordinatorFor(g).ShareGroupDescribe(g)
			if code := shareDescribeTopicsDenied(rc, rg); code != 0 {
				rg = kmsg.NewShareGroupDescribeResponseGroup()
				rg.GroupID, rg.ErrorCode = g, code
			} else if req.IncludeAuthorizedOperations && rg.ErrorCode == 0 {
				rg.AuthorizedOperations = rc.authorizedOps(auth.ResourceGroup, g)
			}
			resp.Groups = append(resp.Groups, rg)
		}
		return resp, nil
	}}
}

// shareDescribeTopicsDenied is TOPIC_AUTHORIZATION_FAILED when the
// principal may not DESCRIBE a topic some member is assigned.
func shareDescribeTopicsDenied(rc *request, rg kmsg.ShareGroupDescribeResponseGroup) int16 {
	for _, m := range rg.Members {
		for _, tp := range m.Assignment.TopicPartitions {
			if code := rc.topicDenied(auth.OpDescribe, tp.Topic); code != 0 {
				return code
			}
		}
	}
	return 0
}
