package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetFetch 1-9; v8+ batches groups, which may live on different
// coordinators, so each group is asked of its own. Runs in connection
// order after earlier group requests (a pipelined commit is seen).
func apiOffsetFetch() api {
	return api{key: kmsg.OffsetFetch, min: 1, max: 9, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.OffsetFetchRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			if req.Version < 8 {
				return b.coordinatorFor(req.Group).OffsetFetch(rc.groupCtx(), req)
			}
			resp := kmsg.NewPtrOffsetFetchResponse()
			for _, g := range req.Groups {
				sub := *req
				sub.Groups = []kmsg.OffsetFetchRequestGroup{g}
				r := b.coordinatorFor(g.Group).OffsetFetch(rc.groupCtx(), &sub)
				resp.Groups = append(resp.Groups, r.Groups...)
			}
			return resp
		})
	}}
}
