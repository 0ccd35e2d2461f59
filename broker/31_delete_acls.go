package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// DeleteAcls 0-3 (docs/security.md, "ACLs"): the valid filters are
// committed in one metadata.DeleteACLs, which deletes what they match
// when it applies; each filter's answer lists the ACLs it matched on this
// node, caught up with the controller, just before. A filter with an
// unknown field gets INVALID_REQUEST. It needs ALTER on the cluster and
// answers SECURITY_DISABLED without the authorizer, as Kafka does. v0 has
// no pattern type: LITERAL.
func apiDeleteACLs() api {
	return api{key: kmsg.DeleteACLs, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DeleteACLsRequest)
		resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
		resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
		code, msg := rc.aclAPIRefusal(auth.OpAlter)
		var cmd metadata.DeleteACLs
		var valid []int // indexes of the filters in cmd
		for i, rf := range req.Filters {
			r := &resp.Results[i]
			*r = kmsg.NewDeleteACLsResponseResult()
			if code != 0 {
				r.ErrorCode, r.ErrorMessage = code, msg
				continue
			}
			f := auth.Filter{
				ResourceType: auth.ResourceType(rf.ResourceType), ResourceName: rf.ResourceName,
				PatternType: auth.PatternType(rf.ResourcePatternType), Principal: rf.Principal, Host: rf.Host,
				Operation: auth.Operation(rf.Operation), Permission: auth.Permission(rf.PermissionType),
			}
			if req.Version == 0 {
				f.PatternType = auth.PatternLiteral
			}
			if err := f.Validate(); err != nil {
				r.ErrorCode, r.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
				continue
			}
			cmd.Filters = append(cmd.Filters, f)
			valid = append(valid, i)
		}
		if len(valid) == 0 {
			return resp, nil
		}
		return nil, func() kmsg.Response {
			b.syncWithController(rc.ctx()) //nolint:errcheck // the matches are then the local ones
			set := auth.NewACLSet(b.store.FSM().ACLs())
			matched := false
			for j, i := range valid {
				for _, a := range set.Select(cmd.Filters[j]) {
					m := kmsg.NewDeleteACLsResponseResultMatchingACL()
					m.ResourceType, m.ResourceName, m.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.ResourceName, kmsg.ACLResourcePatternType(a.PatternType)
					m.Principal, m.Host = a.Principal, a.Host
					m.Operation, m.PermissionType = kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
					resp.Results[i].MatchingACLs = append(resp.Results[i].MatchingACLs, m)
					matched = true
				}
			}
			if !matched {
				return resp
			}
			if err := b.store.Apply(rc.ctx(), cmd); err != nil {
				code, msg := applyErrorCode(err), kmsg.StringPtr(err.Error())
				for _, i := range valid {
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
					resp.Results[i].MatchingACLs = nil
				}
			}
			return resp
		}
	}}
}
