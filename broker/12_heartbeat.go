package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// Heartbeat 0-4.
// READ on the group, else GROUP_AUTHORIZATION_FAILED.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiHeartbeat() api {
	return api{key: kmsg.Heartbeat, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.HeartbeatRequest)
		if code := rc.groupDenied(auth.OpRead, req.Group); code != 0 {
			r := req.ResponseKind().(*kmsg.HeartbeatResponse)
			r.ErrorCode = code
			return r, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).Heartbeat(rc.groupCtx(), req)
		})
	}}
}
