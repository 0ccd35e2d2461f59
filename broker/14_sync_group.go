package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// SyncGroup 0-5; followers park until the leader's assignment arrives.
// READ on the group, else GROUP_AUTHORIZATION_FAILED.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiSyncGroup() api {
	return api{key: kmsg.SyncGroup, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.SyncGroupRequest)
		if code := rc.groupDenied(auth.OpRead, req.Group); code != 0 {
			r := req.ResponseKind().(*kmsg.SyncGroupResponse)
			r.ErrorCode = code
			return r, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).SyncGroup(rc.groupCtx(), req)
		})
	}}
}
