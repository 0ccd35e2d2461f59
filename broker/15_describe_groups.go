package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// DescribeGroups 0-5, each group asked of its own coordinator: DESCRIBE
// on the group, else GROUP_AUTHORIZATION_FAILED for it; v3+ answers the
// authorized operations when asked.
func apiDescribeGroups() api {
	return api{key: kmsg.DescribeGroups, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeGroupsRequest)
		resp := kmsg.NewPtrDescribeGroupsResponse()
		for _, g := range req.Groups {
			if code := rc.groupDenied(auth.OpDescribe, g); code != 0 {
				rg := kmsg.NewDescribeGroupsResponseGroup()
				rg.Group, rg.ErrorCode = g, code
				resp.Groups = append(resp.Groups, rg)
				continue
			}
			sub := *req
			sub.Groups = []string{g}
			r := b.coordinatorFor(g).DescribeGroups(rc.groupCtx(), &sub)
			if req.IncludeAuthorizedOperations {
				for i := range r.Groups {
					r.Groups[i].AuthorizedOperations = rc.authorizedOps(auth.ResourceGroup, g)
				}
			}
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return resp, nil
	}}
}
