package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// Heartbeat 0-4.
func apiHeartbeat() api {
	return api{key: kmsg.Heartbeat, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.HeartbeatRequest)
		return b.coordinatorFor(req.Group).Heartbeat(rc.groupCtx(), req), nil
	}}
}
