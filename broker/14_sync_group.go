package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// SyncGroup 0-5; followers park until the leader's assignment arrives.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiSyncGroup() api {
	return api{key: kmsg.SyncGroup, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.SyncGroupRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).SyncGroup(rc.groupCtx(), req)
		})
	}}
}
