package metadata

import (
	"errors"
	"testing"
)

func strp(s string) *string { return &s }

// TestClientQuotas: AlterClientQuotas sets and removes values, an entity
// left without values is dropped, ClientQuota resolves Kafka's precedence
// and names the clients sharing the quota, snapshots keep quotas, and bad
// entities or keys are invalid commands.
func TestClientQuotas(t *testing.T) {
	f := NewFSM()
	apply := func(c Command) {
		t.Helper()
		if err := Validate(c); err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	apply(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityClientID}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 100}}})
	apply(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityClientID, Name: strp("fast")}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 1000}, {Key: QuotaConsumerByteRate, Value: 2000}}})
	apply(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityUser, Name: strp("alice")}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 50}}})

	for _, c := range []struct {
		user, client, key string
		value             float64
		who               string
		ok                bool
	}{
		{"ANONYMOUS", "fast", QuotaProducerByteRate, 1000, "client-id='fast'", true},
		{"ANONYMOUS", "other", QuotaProducerByteRate, 100, "client-id='other'", true},
		{"alice", "fast", QuotaProducerByteRate, 50, "user='alice'", true},
		{"ANONYMOUS", "fast", QuotaConsumerByteRate, 2000, "client-id='fast'", true},
		{"ANONYMOUS", "other", QuotaConsumerByteRate, 0, "", false},
	} {
		v, who, ok := f.ClientQuota(c.user, c.client, c.key)
		if v != c.value || who != c.who || ok != c.ok {
			t.Errorf("ClientQuota(%s, %s, %s) = %v %q %v, want %v %q %v", c.user, c.client, c.key, v, who, ok, c.value, c.who, c.ok)
		}
	}

	apply(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityClientID, Name: strp("fast")}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Remove: true}}})
	apply(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityUser, Name: strp("alice")}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Remove: true}}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	got := g.ClientQuotas()
	if len(got) != 2 || got[0].Entity.Key() != "client-id='fast'" || len(got[0].Values) != 1 || got[0].Values[QuotaConsumerByteRate] != 2000 ||
		got[1].Entity.Key() != "client-id=<default>" || got[1].Values[QuotaProducerByteRate] != 100 {
		t.Errorf("quotas after removals and a snapshot: %+v", got)
	}

	for _, bad := range []AlterClientQuotas{
		{Entity: QuotaEntity{{Type: "ip", Name: strp("1.2.3.4")}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 1}}},
		{Entity: QuotaEntity{{Type: QuotaEntityClientID}}, Ops: []QuotaOp{{Key: "io_rate", Value: 1}}},
		{Entity: QuotaEntity{{Type: QuotaEntityClientID}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 0}}},
		{Entity: QuotaEntity{{Type: QuotaEntityClientID}, {Type: QuotaEntityUser}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 1}}},
		{Entity: QuotaEntity{}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 1}}},
	} {
		if err := Validate(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidCommand", bad, err)
		}
	}
	raw, err := EncodeCommand(AlterClientQuotas{Entity: QuotaEntity{{Type: QuotaEntityClientID}}, Ops: []QuotaOp{{Key: QuotaProducerByteRate, Value: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := DecodeCommand(raw); err != nil || c.(AlterClientQuotas).Ops[0].Value != 7 {
		t.Errorf("decode: %+v %v", c, err)
	}
}
