package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// DescribeUserScramCredentials (KIP-554) lists users' SCRAM mechanisms and
// iteration counts from the Raft metadata (metadata/users.go), never the
// salts or keys: every user when the request names none, else each named
// user, RESOURCE_NOT_FOUND for one without credentials and
// DUPLICATE_RESOURCE for a name given twice, as Kafka answers. It needs
// DESCRIBE on the cluster.
func apiDescribeUserSCRAMCredentials() api {
	return api{key: kmsg.DescribeUserSCRAMCredentials, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleDescribeUserSCRAMCredentials(rc, rc.req.(*kmsg.DescribeUserSCRAMCredentialsRequest)), nil
	}}
}

// scramMechanismCodes are Kafka's ScramMechanism codes.
var scramMechanismCodes = map[string]int8{auth.MechanismScramSHA256: 1, auth.MechanismScramSHA512: 2}

// scramMechanismName is the mechanism of a Kafka code, "" if unknown.
func scramMechanismName(code int8) string {
	for name, c := range scramMechanismCodes {
		if c == code {
			return name
		}
	}
	return ""
}

func (b *Broker) handleDescribeUserSCRAMCredentials(rc *request, req *kmsg.DescribeUserSCRAMCredentialsRequest) kmsg.Response {
	resp := kmsg.NewPtrDescribeUserSCRAMCredentialsResponse()
	if code := rc.clusterDenied(auth.OpDescribe); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	users := b.store.FSM().ScramUsers()
	result := func(user string, creds []metadata.UserScram) kmsg.DescribeUserSCRAMCredentialsResponseResult {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = user
		for _, c := range creds {
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = scramMechanismCodes[c.Mechanism], int32(c.Iterations)
			r.CredentialInfos = append(r.CredentialInfos, ci)
		}
		return r
	}
	if len(req.Users) == 0 {
		names := make([]string, 0, len(users))
		for u := range users {
			names = append(names, u)
		}
		slices.Sort(names)
		for _, u := range names {
			resp.Results = append(resp.Results, result(u, users[u]))
		}
		return resp
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	seen := map[string]bool{}
	for _, u := range req.Users {
		if seen[u.Name] {
			continue
		}
		seen[u.Name] = true
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = u.Name
		switch creds, ok := users[u.Name]; {
		case count[u.Name] > 1:
			r.ErrorCode, r.ErrorMessage = kerr.DuplicateResource.Code, kmsg.StringPtr("user "+u.Name+" named more than once")
		case !ok:
			r.ErrorCode, r.ErrorMessage = kerr.ResourceNotFound.Code, kmsg.StringPtr("Attempt to describe a user credential that does not exist")
		default:
			r = result(u.Name, creds)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp
}
