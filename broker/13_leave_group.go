package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// LeaveGroup 0-5 (batch leave from v3).
// READ on the group, else GROUP_AUTHORIZATION_FAILED.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiLeaveGroup() api {
	return api{key: kmsg.LeaveGroup, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.LeaveGroupRequest)
		if code := rc.groupDenied(auth.OpRead, req.Group); code != 0 {
			r := req.ResponseKind().(*kmsg.LeaveGroupResponse)
			r.ErrorCode = code
			return r, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).LeaveGroup(rc.groupCtx(), req)
		})
	}}
}
