package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// JoinGroup 0-9, advertised from v0 (docs/architecture.md, "Kafka compatibility"). It parks until the
// rebalance completes, so it answers from its own goroutine.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiJoinGroup() api {
	return api{key: kmsg.JoinGroup, min: 0, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.JoinGroupRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).JoinGroup(rc.groupCtx(), req)
		})
	}}
}
