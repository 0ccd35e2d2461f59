package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// AlterClientQuotas (KIP-546) sets or removes producer_byte_rate,
// consumer_byte_rate and request_percentage of a user, a client id, or
// both (a null name is the type's default), one Raft command per entry
// (metadata/quotas.go). Unknown entity types or keys and values that are
// not positive get INVALID_REQUEST with the reason, as Kafka answers. The
// byte rates are enforced by every node (quota.go); request_percentage is
// stored and described but not enforced.
func apiAlterClientQuotas() api {
	return api{key: kmsg.AlterClientQuotas, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleAlterClientQuotas(rc, rc.req.(*kmsg.AlterClientQuotasRequest)), nil
	}}
}

func (b *Broker) handleAlterClientQuotas(rc *request, req *kmsg.AlterClientQuotasRequest) kmsg.Response {
	resp := kmsg.NewPtrAlterClientQuotasResponse()
	denied := rc.clusterDenied(auth.OpAlterConfigs) // ALTER_CONFIGS on the cluster
	for _, e := range req.Entries {
		out := kmsg.NewAlterClientQuotasResponseEntry()
		if denied != 0 {
			for _, p := range e.Entity {
				ee := kmsg.NewAlterClientQuotasResponseEntryEntity()
				ee.Type, ee.Name = p.Type, p.Name
				out.Entity = append(out.Entity, ee)
			}
			out.ErrorCode = denied
			resp.Entries = append(resp.Entries, out)
			continue
		}
		var cmd metadata.AlterClientQuotas
		for _, p := range e.Entity {
			ee := kmsg.NewAlterClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			out.Entity = append(out.Entity, ee)
			cmd.Entity = append(cmd.Entity, metadata.QuotaEntityPart{Type: p.Type, Name: p.Name})
		}
		// Kafka names user before client-id whatever the order given.
		if len(cmd.Entity) == 2 && cmd.Entity[1].Type == metadata.QuotaEntityUser {
			cmd.Entity[0], cmd.Entity[1] = cmd.Entity[1], cmd.Entity[0]
		}
		for _, op := range e.Ops {
			cmd.Ops = append(cmd.Ops, metadata.QuotaOp{Key: op.Key, Value: op.Value, Remove: op.Remove})
		}
		code, msg := b.alterClientQuotas(rc, cmd, req.ValidateOnly)
		out.ErrorCode = code
		if msg != "" {
			out.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Entries = append(resp.Entries, out)
	}
	return resp
}

func (b *Broker) alterClientQuotas(rc *request, cmd metadata.AlterClientQuotas, validateOnly bool) (int16, string) {
	if err := metadata.ValidateQuotaEntity(cmd.Entity); err != nil {
		return kerr.InvalidRequest.Code, err.Error()
	}
	for _, op := range cmd.Ops {
		if err := metadata.ValidateQuotaOp(op); err != nil {
			return kerr.InvalidRequest.Code, err.Error()
		}
	}
	if err := metadata.Validate(cmd); err != nil {
		return kerr.InvalidRequest.Code, err.Error()
	}
	if validateOnly {
		return 0, ""
	}
	if err := b.store.Apply(rc.ctx(), cmd); err != nil {
		return applyErrorCode(err), err.Error()
	}
	return 0, ""
}
