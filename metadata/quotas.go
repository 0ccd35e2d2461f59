package metadata

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Client quotas (Kafka's KIP-546 DescribeClientQuotas/AlterClientQuotas):
// byte rates and request percentages per user, client id, or both, kept in
// the metadata so every node enforces the same ones.

// Quota entity types and keys Tusk accepts (Kafka's names).
const (
	QuotaEntityUser     = "user"
	QuotaEntityClientID = "client-id"

	QuotaProducerByteRate  = "producer_byte_rate"
	QuotaConsumerByteRate  = "consumer_byte_rate"
	QuotaRequestPercentage = "request_percentage"
)

// QuotaKeys lists the quota keys Tusk accepts.
func QuotaKeys() []string {
	return []string{QuotaProducerByteRate, QuotaConsumerByteRate, QuotaRequestPercentage}
}

// QuotaEntityPart is one component of a quota entity: a user or a client
// id, by name, or the type's default (Name nil, Kafka's <default>).
type QuotaEntityPart struct {
	Type string  `json:"type"`
	Name *string `json:"name,omitempty"`
}

// QuotaEntity names what a quota applies to: a user, a client id, or a
// user and a client id; Validate orders it user first.
type QuotaEntity []QuotaEntityPart

// Key is the entity's canonical form, e.g. "user=alice/client-id=<default>".
func (e QuotaEntity) Key() string {
	parts := make([]string, len(e))
	for i, p := range e {
		name := "<default>"
		if p.Name != nil {
			name = "'" + *p.Name + "'"
		}
		parts[i] = p.Type + "=" + name
	}
	return strings.Join(parts, "/")
}

// ClientQuota is one entity's quota values.
type ClientQuota struct {
	Entity QuotaEntity        `json:"entity"`
	Values map[string]float64 `json:"values"`
}

func (q ClientQuota) clone() ClientQuota {
	e := make(QuotaEntity, len(q.Entity))
	for i, p := range q.Entity {
		e[i] = p
		if p.Name != nil {
			n := *p.Name
			e[i].Name = &n
		}
	}
	return ClientQuota{Entity: e, Values: maps.Clone(q.Values)}
}

// QuotaOp sets (or, with Remove, deletes) one quota value.
type QuotaOp struct {
	Key    string  `json:"key"`
	Value  float64 `json:"value"`
	Remove bool    `json:"remove,omitempty"`
}

// AlterClientQuotas applies ops to one entity's quotas; an entity left
// without values is dropped.
type AlterClientQuotas struct {
	Entity QuotaEntity `json:"entity"`
	Ops    []QuotaOp   `json:"ops"`
}

func (AlterClientQuotas) kind() string { return "alter_client_quotas" }

// ValidateQuotaEntity checks an entity: one user and/or one client id,
// each named (non-empty) or the default, user first.
func ValidateQuotaEntity(e QuotaEntity) error {
	if len(e) == 0 || len(e) > 2 {
		return fmt.Errorf("a quota entity has a user, a client id, or both; got %d components", len(e))
	}
	seen := map[string]bool{}
	for _, p := range e {
		if p.Type != QuotaEntityUser && p.Type != QuotaEntityClientID {
			return fmt.Errorf("unknown quota entity type %q (supported: %s, %s)", p.Type, QuotaEntityUser, QuotaEntityClientID)
		}
		if seen[p.Type] {
			return fmt.Errorf("quota entity type %q given twice", p.Type)
		}
		seen[p.Type] = true
		if p.Name != nil && *p.Name == "" && p.Type == QuotaEntityUser {
			return errors.New("empty user name (use the default entity instead)")
		}
	}
	if len(e) == 2 && e[0].Type != QuotaEntityUser {
		return errors.New("a user and client id entity lists the user first")
	}
	return nil
}

// ValidateQuotaOp checks one quota operation's key and value.
func ValidateQuotaOp(op QuotaOp) error {
	if !slices.Contains(QuotaKeys(), op.Key) {
		return fmt.Errorf("unknown quota key %q (supported: %s)", op.Key, strings.Join(QuotaKeys(), ", "))
	}
	if op.Remove {
		return nil
	}
	if math.IsNaN(op.Value) || math.IsInf(op.Value, 0) || op.Value <= 0 {
		return fmt.Errorf("quota %s = %v: must be a positive number", op.Key, op.Value)
	}
	return nil
}

func (c AlterClientQuotas) validate() error {
	if err := ValidateQuotaEntity(c.Entity); err != nil {
		return err
	}
	if len(c.Ops) == 0 {
		return errors.New("no quota operations")
	}
	keys := map[string]bool{}
	for _, op := range c.Ops {
		if err := ValidateQuotaOp(op); err != nil {
			return err
		}
		if keys[op.Key] {
			return fmt.Errorf("quota key %q given twice", op.Key)
		}
		keys[op.Key] = true
	}
	return nil
}

func (c AlterClientQuotas) apply(st *state) error {
	key := c.Entity.Key()
	q, ok := st.Quotas[key]
	if !ok {
		q = ClientQuota{Entity: c.Entity, Values: map[string]float64{}}
	} else {
		q = q.clone()
	}
	for _, op := range c.Ops {
		if op.Remove {
			delete(q.Values, op.Key)
		} else {
			q.Values[op.Key] = op.Value
		}
	}
	if len(q.Values) == 0 {
		delete(st.Quotas, key)
		return nil
	}
	if st.Quotas == nil {
		st.Quotas = map[string]ClientQuota{}
	}
	st.Quotas[key] = q.clone()
	return nil
}

// ClientQuotas returns every entity's quotas.
func (f *FSM) ClientQuotas() []ClientQuota {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]ClientQuota, 0, len(f.st.Quotas))
	for _, q := range f.st.Quotas {
		out = append(out, q.clone())
	}
	slices.SortFunc(out, func(a, b ClientQuota) int { return strings.Compare(a.Entity.Key(), b.Entity.Key()) })
	return out
}

// ClientQuota resolves the quota key applying to a client as Kafka does
// (the most specific entity that sets it, in this order: user and client
// id, user and default client id, user, default user and client id,
// default user and default client id, default user, client id, default
// client id). It returns the value and the key of the clients sharing it
// (the entity with its defaults replaced by the client's user and client
// id), or ok false when none applies.
func (f *FSM) ClientQuota(user, clientID, key string) (value float64, entity string, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.st.Quotas) == 0 {
		return 0, "", false
	}
	u, c := user, clientID
	for _, e := range []QuotaEntity{
		{{QuotaEntityUser, &u}, {QuotaEntityClientID, &c}},
		{{QuotaEntityUser, &u}, {QuotaEntityClientID, nil}},
		{{QuotaEntityUser, &u}},
		{{QuotaEntityUser, nil}, {QuotaEntityClientID, &c}},
		{{QuotaEntityUser, nil}, {QuotaEntityClientID, nil}},
		{{QuotaEntityUser, nil}},
		{{QuotaEntityClientID, &c}},
		{{QuotaEntityClientID, nil}},
	} {
		k := e.Key()
		if q, found := f.st.Quotas[k]; found {
			if v, set := q.Values[key]; set {
				// Clients share a quota where the entity names them
				// alike (Kafka's quota metric tags): a default
				// stands for the client's own user or client id.
				shared := make(QuotaEntity, len(e))
				for i, p := range e {
					shared[i] = p
					if p.Name == nil {
						name := u
						if p.Type == QuotaEntityClientID {
							name = c
						}
						shared[i].Name = &name
					}
				}
				return v, shared.Key(), true
			}
		}
	}
	return 0, "", false
}
