package broker

import (
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// DescribeClientQuotas (KIP-546) lists the client quotas kept in the
// metadata (metadata/quotas.go) whose entity matches every component of
// the filter: a name (exact), the type's default, or any entity with the
// type; strict filters also leave out entities with types the filter does
// not name. An entity type other than user and client-id is
// INVALID_REQUEST, as Kafka answers.
func apiDescribeClientQuotas() api {
	return api{key: kmsg.DescribeClientQuotas, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		if code := rc.clusterDenied(auth.OpDescribeConfigs); code != 0 { // DESCRIBE_CONFIGS on the cluster
			resp := kmsg.NewPtrDescribeClientQuotasResponse()
			resp.ErrorCode = code
			return resp, nil
		}
		return b.handleDescribeClientQuotas(rc.req.(*kmsg.DescribeClientQuotasRequest)), nil
	}}
}

// Kafka's DescribeClientQuotas match types.
const (
	quotaMatchExact   = 0
	quotaMatchDefault = 1
	quotaMatchAny     = 2
)

func (b *Broker) handleDescribeClientQuotas(req *kmsg.DescribeClientQuotasRequest) kmsg.Response {
	resp := kmsg.NewPtrDescribeClientQuotasResponse()
	seen := map[string]bool{}
	for _, c := range req.Components {
		var msg string
		switch {
		case c.EntityType != metadata.QuotaEntityUser && c.EntityType != metadata.QuotaEntityClientID:
			msg = "unknown quota entity type " + strconv.Quote(c.EntityType) + " (supported: user, client-id)"
		case seen[c.EntityType]:
			msg = "quota entity type " + strconv.Quote(c.EntityType) + " filtered twice"
		case c.MatchType == quotaMatchExact && c.Match == nil:
			msg = "an exact match of " + c.EntityType + " needs a name"
		case c.MatchType != quotaMatchExact && c.MatchType != quotaMatchDefault && c.MatchType != quotaMatchAny:
			msg = "unknown match type"
		}
		if msg != "" {
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(msg)
			return resp
		}
		seen[c.EntityType] = true
	}
	for _, q := range b.store.FSM().ClientQuotas() {
		if !quotaMatches(q.Entity, req.Components, req.Strict) {
			continue
		}
		e := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, p := range q.Entity {
			ee := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			e.Entity = append(e.Entity, ee)
		}
		for _, k := range metadata.QuotaKeys() {
			if v, ok := q.Values[k]; ok {
				ev := kmsg.NewDescribeClientQuotasResponseEntryValue()
				ev.Key, ev.Value = k, v
				e.Values = append(e.Values, ev)
			}
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp
}

// quotaMatches reports whether an entity passes a DescribeClientQuotas
// filter.
func quotaMatches(e metadata.QuotaEntity, components []kmsg.DescribeClientQuotasRequestComponent, strict bool) bool {
	for _, c := range components {
		i := slices.IndexFunc(e, func(p metadata.QuotaEntityPart) bool { return p.Type == c.EntityType })
		if i < 0 {
			return false
		}
		switch c.MatchType {
		case quotaMatchExact:
			if e[i].Name == nil || *e[i].Name != *c.Match {
				return false
			}
		case quotaMatchDefault:
			if e[i].Name != nil {
				return false
			}
		}
	}
	return !strict || len(e) == len(components)
}
