package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetCommit 2-9. The commit is answered once its record is durable.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiOffsetCommit() api {
	return api{key: kmsg.OffsetCommit, min: 2, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetCommitRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).OffsetCommit(rc.groupCtx(), req)
		})
	}}
}
