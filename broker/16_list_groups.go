package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// ListGroups 0-5 (state filter from v4, group types and type filter from
// v5) over every local coordinator.
// With DESCRIBE on the cluster every group is listed, else only those the
// principal may describe (Kafka's rule).
func apiListGroups() api {
	return api{key: kmsg.ListGroups, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ListGroupsRequest)
		resp := kmsg.NewPtrListGroupsResponse()
		all := rc.allowedCluster(auth.OpDescribe)
		for _, c := range b.gc.local() {
			r := c.ListGroups(rc.groupCtx(), req)
			if r.ErrorCode != 0 && resp.ErrorCode == 0 {
				resp.ErrorCode = r.ErrorCode
			}
			for _, g := range r.Groups {
				if all || rc.allowed(auth.OpDescribe, auth.ResourceGroup, g.Group) {
					resp.Groups = append(resp.Groups, g)
				}
			}
		}
		return resp, nil
	}}
}
