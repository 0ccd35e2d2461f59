package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// CreateAcls 0-3 (docs/security.md, "ACLs"): the valid creations are
// committed in one metadata.CreateACLs; each invalid one (unknown or
// filter-only resource type, pattern type, operation or permission, an
// empty resource name, a CLUSTER not named kafka-cluster, a principal
// that is not Type:name) gets INVALID_REQUEST with the reason. It needs
// ALTER on the cluster and answers SECURITY_DISABLED without the
// authorizer, as Kafka does. v0 has no pattern type: LITERAL.
func apiCreateACLs() api {
	return api{key: kmsg.CreateACLs, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.CreateACLsRequest)
		resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
		resp.Results = make([]kmsg.CreateACLsResponseResult, len(req.Creations))
		code, msg := rc.aclAPIRefusal(auth.OpAlter)
		var cmd metadata.CreateACLs
		var valid []int // indexes of the creations in cmd
		for i, c := range req.Creations {
			r := &resp.Results[i]
			*r = kmsg.NewCreateACLsResponseResult()
			if code != 0 {
				r.ErrorCode, r.ErrorMessage = code, msg
				continue
			}
			a := auth.ACL{
				Principal: c.Principal, Host: c.Host,
				ResourceType: auth.ResourceType(c.ResourceType), ResourceName: c.ResourceName, PatternType: auth.PatternType(c.ResourcePatternType),
				Operation: auth.Operation(c.Operation), Permission: auth.Permission(c.PermissionType),
			}
			if req.Version == 0 {
				a.PatternType = auth.PatternLiteral
			}
			if err := a.Validate(); err != nil {
				r.ErrorCode, r.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
				continue
			}
			cmd.ACLs = append(cmd.ACLs, a)
			valid = append(valid, i)
		}
		if len(valid) == 0 {
			return resp, nil
		}
		return nil, func() kmsg.Response {
			if err := b.store.Apply(rc.ctx(), cmd); err != nil {
				code, msg := applyErrorCode(err), kmsg.StringPtr(err.Error())
				for _, i := range valid {
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
				}
			}
			return resp
		}
	}}
}
