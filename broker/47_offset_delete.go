package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetDelete 0.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiOffsetDelete() api {
	return api{key: kmsg.OffsetDelete, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetDeleteRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).OffsetDelete(rc.groupCtx(), req)
		})
	}}
}
