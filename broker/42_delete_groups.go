package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// DeleteGroups 0-2, each group deleted by its own coordinator.
func apiDeleteGroups() api {
	return api{key: kmsg.DeleteGroups, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DeleteGroupsRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			resp := kmsg.NewPtrDeleteGroupsResponse()
			for _, g := range req.Groups {
				sub := *req
				sub.Groups = []string{g}
				r := b.coordinatorFor(g).DeleteGroups(rc.groupCtx(), &sub)
				resp.Groups = append(resp.Groups, r.Groups...)
			}
			return resp
		})
	}}
}
