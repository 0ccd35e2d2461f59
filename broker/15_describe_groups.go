package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeGroups 0-5, each group asked of its own coordinator.
func apiDescribeGroups() api {
	return api{key: kmsg.DescribeGroups, min: 0, max: 5, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeGroupsRequest)
		resp := kmsg.NewPtrDescribeGroupsResponse()
		for _, g := range req.Groups {
			sub := *req
			sub.Groups = []string{g}
			r := b.coordinatorFor(g).DescribeGroups(rc.groupCtx(), &sub)
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return resp, nil
	}}
}
