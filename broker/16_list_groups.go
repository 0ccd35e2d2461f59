package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// ListGroups 0-4 (state filter from v4) over every local coordinator.
func apiListGroups() api {
	return api{key: kmsg.ListGroups, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ListGroupsRequest)
		resp := kmsg.NewPtrListGroupsResponse()
		for _, c := range b.gc.local() {
			r := c.ListGroups(rc.groupCtx(), req)
			if r.ErrorCode != 0 && resp.ErrorCode == 0 {
				resp.ErrorCode = r.ErrorCode
			}
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return resp, nil
	}}
}
