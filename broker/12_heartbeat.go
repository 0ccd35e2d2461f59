package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// Heartbeat 0-4.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiHeartbeat() api {
	return api{key: kmsg.Heartbeat, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.HeartbeatRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).Heartbeat(rc.groupCtx(), req)
		})
	}}
}
