package broker

import (
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// ShareGroupHeartbeat 0-1 (KIP-932; docs/groups-next.md, part B): share
// group membership on the group's coordinator (groups.ShareGroup, the
// simple assignor). Authorization (Kafka's): READ on the group, else
// GROUP_AUTHORIZATION_FAILED; DESCRIBE on every subscribed topic, else
// TOPIC_AUTHORIZATION_FAILED naming them. A member that leaves (epoch -1)
// or whose session expires has its records released on this node
// (shareMemberLeft, through groups.Config.OnShareMemberGone).
// Group requests run in connection order (conn.go: inGroupOrder).
func apiShareGroupHeartbeat() api {
	return api{key: kmsg.ShareGroupHeartbeat, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ShareGroupHeartbeatRequest)
		fail := func(code int16, msg string) kmsg.Response {
			r := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
			r.ErrorCode = code
			if msg != "" {
				r.ErrorMessage = kmsg.StringPtr(msg)
			}
			return r
		}
		if code := rc.groupDenied(auth.OpRead, req.GroupID); code != 0 {
			return fail(code, ""), nil
		}
		var denied []string
		for _, t := range req.SubscribedTopicNames {
			if rc.topicDenied(auth.OpDescribe, t) != 0 {
				denied = append(denied, t)
			}
		}
		if len(denied) > 0 {
			sort.Strings(denied)
			return fail(kerr.TopicAuthorizationFailed.Code, "The following topics are not authorized: "+strings.Join(denied, ", ")), nil
		}
		img := b.topicImage(rc)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.GroupID).ShareGroupHeartbeat(rc.groupCtx(), req, img)
		})
	}}
}
