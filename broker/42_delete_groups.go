package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// DeleteGroups 0-2, each group deleted by its own coordinator: DELETE on
// the group, else GROUP_AUTHORIZATION_FAILED for it. An empty share
// group's share state is deleted first (deleteShareGroupState).
func apiDeleteGroups() api {
	return api{key: kmsg.DeleteGroups, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DeleteGroupsRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := kmsg.NewPtrDeleteGroupsResponse()
			for _, g := range req.Groups {
				if code := rc.groupDenied(auth.OpDelete, g); code != 0 {
					rg := kmsg.NewDeleteGroupsResponseGroup()
					rg.Group, rg.ErrorCode = g, code
					resp.Groups = append(resp.Groups, rg)
					continue
				}
				c := b.coordinatorFor(g)
				// A share group's share state goes first.
				if code := b.deleteShareGroupState(rc.groupCtx(), c, g); code != 0 {
					rg := kmsg.NewDeleteGroupsResponseGroup()
					rg.Group, rg.ErrorCode = g, code
					resp.Groups = append(resp.Groups, rg)
					continue
				}
				sub := *req
				sub.Groups = []string{g}
				r := c.DeleteGroups(rc.groupCtx(), &sub)
				resp.Groups = append(resp.Groups, r.Groups...)
			}
			return resp
		})
	}}
}
