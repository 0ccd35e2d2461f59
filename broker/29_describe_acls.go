package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// DescribeAcls 0-3 (docs/security.md, "ACLs"): the ACLs a filter
// matches, grouped by resource pattern. It needs DESCRIBE on the cluster
// (CLUSTER_AUTHORIZATION_FAILED), answers SECURITY_DISABLED without the
// authorizer, as Kafka does, and INVALID_REQUEST for a filter with an
// unknown field. v0 has no pattern type: its filter is LITERAL and it
// lists LITERAL ACLs only. The node first catches up with the controller
// (a client may list right after creating through another node).
func apiDescribeACLs() api {
	return api{key: kmsg.DescribeACLs, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeACLsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
		if code, msg := rc.aclAPIRefusal(auth.OpDescribe); code != 0 {
			resp.ErrorCode, resp.ErrorMessage = code, msg
			return resp, nil
		}
		f := auth.Filter{
			ResourceType: auth.ResourceType(req.ResourceType), ResourceName: req.ResourceName,
			PatternType: auth.PatternType(req.ResourcePatternType), Principal: req.Principal, Host: req.Host,
			Operation: auth.Operation(req.Operation), Permission: auth.Permission(req.PermissionType),
		}
		if req.Version == 0 {
			f.PatternType = auth.PatternLiteral
		}
		if err := f.Validate(); err != nil {
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
			return resp, nil
		}
		return nil, func() kmsg.Response {
			b.syncWithController(rc.ctx()) //nolint:errcheck // without it the local ACLs answer, as Kafka's cache does
			for _, a := range auth.NewACLSet(b.store.FSM().ACLs()).Select(f) {
				n := len(resp.Resources)
				if n == 0 || resp.Resources[n-1].ResourceType != kmsg.ACLResourceType(a.ResourceType) ||
					resp.Resources[n-1].ResourceName != a.ResourceName || resp.Resources[n-1].ResourcePatternType != kmsg.ACLResourcePatternType(a.PatternType) {
					r := kmsg.NewDescribeACLsResponseResource()
					r.ResourceType, r.ResourceName, r.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.ResourceName, kmsg.ACLResourcePatternType(a.PatternType)
					resp.Resources = append(resp.Resources, r)
					n++
				}
				e := kmsg.NewDescribeACLsResponseResourceACL()
				e.Principal, e.Host = a.Principal, a.Host
				e.Operation, e.PermissionType = kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
				resp.Resources[n-1].ACLs = append(resp.Resources[n-1].ACLs, e)
			}
			return resp
		}
	}}
}
