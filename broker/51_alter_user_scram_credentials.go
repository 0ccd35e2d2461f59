package broker

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// AlterUserScramCredentials (KIP-554) deletes and upserts SCRAM
// credentials. An upsertion carries the salt, the iterations and the
// salted password the client computed; this node derives StoredKey and
// ServerKey from it, so neither the password nor the salted password
// enters the Raft log (metadata/users.go). Kafka's checks, each failing
// only its user: an unknown mechanism is UNSUPPORTED_SASL_MECHANISM; an
// empty name, iterations outside 4096-16384, an empty salt or a salted
// password of the wrong size UNACCEPTABLE_CREDENTIAL; a user and mechanism
// given twice DUPLICATE_RESOURCE; deleting a credential that does not
// exist RESOURCE_NOT_FOUND. The changes of all other users are one Raft
// command. It needs ALTER on the cluster.
func apiAlterUserSCRAMCredentials() api {
	return api{key: kmsg.AlterUserSCRAMCredentials, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return nil, func() kmsg.Response {
			return b.handleAlterUserSCRAMCredentials(rc, rc.req.(*kmsg.AlterUserSCRAMCredentialsRequest))
		}
	}}
}

// userError is the first error of one user's changes.
type userError struct {
	code int16
	msg  string
}

func (b *Broker) handleAlterUserSCRAMCredentials(rc *request, req *kmsg.AlterUserSCRAMCredentialsRequest) kmsg.Response {
	resp := kmsg.NewPtrAlterUserSCRAMCredentialsResponse()
	var order []string
	errs := map[string]*userError{}
	note := func(user string) {
		if _, ok := errs[user]; !ok {
			errs[user] = nil
			order = append(order, user)
		}
	}
	fail := func(user string, code int16, msg string) {
		if errs[user] == nil {
			errs[user] = &userError{code, msg}
		}
	}
	for _, d := range req.Deletions {
		note(d.Name)
	}
	for _, u := range req.Upsertions {
		note(u.Name)
	}
	denied := rc.clusterDenied(auth.OpAlter)
	seen := map[[2]string]int{}
	for _, d := range req.Deletions {
		seen[[2]string{d.Name, scramMechanismName(d.Mechanism)}]++
	}
	for _, u := range req.Upsertions {
		seen[[2]string{u.Name, scramMechanismName(u.Mechanism)}]++
	}
	check := func(user string, code int8) string {
		mech := scramMechanismName(code)
		switch {
		case denied != 0:
			fail(user, denied, "")
		case mech == "":
			fail(user, kerr.UnsupportedSaslMechanism.Code, fmt.Sprintf("Unknown SCRAM mechanism %d", code))
		case user == "":
			fail(user, kerr.UnacceptableCredential.Code, "Username must not be empty")
		case seen[[2]string{user, mech}] > 1:
			fail(user, kerr.DuplicateResource.Code, "A user credential cannot be altered twice in the same request")
		default:
			if err := metadata.ValidateUserName(user); err != nil {
				fail(user, kerr.UnacceptableCredential.Code, err.Error())
			}
		}
		return mech
	}
	fsm := b.store.FSM()
	var cmd metadata.AlterScramCredentials
	for _, d := range req.Deletions {
		mech := check(d.Name, d.Mechanism)
		if errs[d.Name] != nil {
			continue
		}
		if _, ok := fsm.ScramCredential(d.Name, mech); !ok {
			fail(d.Name, kerr.ResourceNotFound.Code, "Attempt to delete a user credential that does not exist")
			continue
		}
		cmd.Deletions = append(cmd.Deletions, metadata.ScramDeletion{User: d.Name, Mechanism: mech})
	}
	for _, u := range req.Upsertions {
		mech := check(u.Name, u.Mechanism)
		if errs[u.Name] != nil {
			continue
		}
		switch it := int(u.Iterations); {
		case it < auth.MinScramIterations:
			fail(u.Name, kerr.UnacceptableCredential.Code, fmt.Sprintf("Too few iterations: %d below %d", it, auth.MinScramIterations))
			continue
		case it > auth.MaxScramIterations:
			fail(u.Name, kerr.UnacceptableCredential.Code, fmt.Sprintf("Too many iterations: %d above %d", it, auth.MaxScramIterations))
			continue
		}
		cred, err := auth.CredentialFromSalted(mech, u.SaltedPassword, u.Salt, int(u.Iterations))
		if err == nil {
			err = metadata.ValidateScramCredential(mech, metadata.ScramCredential(cred))
		}
		if err != nil {
			fail(u.Name, kerr.UnacceptableCredential.Code, err.Error())
			continue
		}
		cmd.Upserts = append(cmd.Upserts, metadata.ScramUpsert{User: u.Name, Mechanism: mech, Credential: metadata.ScramCredential(cred)})
	}
	// A user with an error changes nothing, although some of its
	// changes passed.
	cmd.Deletions = dropFailed(cmd.Deletions, errs, func(d metadata.ScramDeletion) string { return d.User })
	cmd.Upserts = dropFailed(cmd.Upserts, errs, func(u metadata.ScramUpsert) string { return u.User })
	if len(cmd.Deletions)+len(cmd.Upserts) > 0 {
		if err := b.store.Apply(rc.ctx(), cmd); err != nil {
			code := applyErrorCode(err)
			if errors.Is(err, metadata.ErrInvalidCommand) {
				code = kerr.UnacceptableCredential.Code
			}
			for _, user := range order {
				fail(user, code, err.Error())
			}
		}
	}
	for _, user := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = user
		if e := errs[user]; e != nil {
			r.ErrorCode = e.code
			if e.msg != "" {
				r.ErrorMessage = kmsg.StringPtr(e.msg)
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp
}

func dropFailed[T any](list []T, errs map[string]*userError, user func(T) string) []T {
	out := list[:0]
	for _, x := range list {
		if errs[user(x)] == nil {
			out = append(out, x)
		}
	}
	return out
}
