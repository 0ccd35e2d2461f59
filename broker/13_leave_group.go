package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// LeaveGroup 0-5 (batch leave from v3).
// Group requests run in connection order (conn.go: inGroupOrder).
func apiLeaveGroup() api {
	return api{key: kmsg.LeaveGroup, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.LeaveGroupRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).LeaveGroup(rc.groupCtx(), req)
		})
	}}
}
