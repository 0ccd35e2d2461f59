package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// JoinGroup 0-9, advertised from v0 (docs/architecture.md, "Kafka compatibility"). It parks until the
// rebalance completes, so it answers from its own goroutine.
// READ on the group, else GROUP_AUTHORIZATION_FAILED.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiJoinGroup() api {
	return api{key: kmsg.JoinGroup, min: 0, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.JoinGroupRequest)
		if code := rc.groupDenied(auth.OpRead, req.Group); code != 0 {
			r := req.ResponseKind().(*kmsg.JoinGroupResponse)
			r.ErrorCode = code
			r.Generation = -1
			return r, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).JoinGroup(rc.groupCtx(), req)
		})
	}}
}
