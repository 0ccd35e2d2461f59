package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ShareGroupHeartbeat 0-1 (KIP-932; docs/groups-next.md, part B): share
// group membership on the group's coordinator (groups.ShareGroup, the
// simple assignor). Authorization (Kafka's): READ on the group, else
// GROUP_AUTHORIZATION_FAILED; DESCRIBE on every subscribed topic, else
// TOPIC_AUTHORIZATION_FAILED naming them (heartbeatDenied). A member that leaves (epoch -1)
// or whose session expires has its records released on this node
// (shareMemberLeft, through groups.Config.OnShareMemberGone).
// Group requests run in connection order (conn.go: inGroupOrder).
func apiShareGroupHeartbeat() api {
	return api{key: kmsg.ShareGroupHeartbeat, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ShareGroupHeartbeatRequest)
		if code, msg := rc.heartbeatDenied(req.GroupID, req.SubscribedTopicNames); code != 0 {
			r := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
			r.ErrorCode, r.ErrorMessage = code, msg
			return r, nil
		}
		img := b.topicImage(rc)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.GroupID).ShareGroupHeartbeat(rc.groupCtx(), req, img)
		})
	}}
}
