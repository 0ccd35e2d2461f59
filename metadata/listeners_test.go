package metadata

import (
	"errors"
	"maps"
	"testing"
	"time"
)

// A heartbeat whose listener map changed re-registers the broker; an
// unchanged one writes nothing.
func TestHeartbeatListenersReRegister(t *testing.T) {
	s := openSingle(t, fastOpts(1))
	ctx := ctxT(t, 10*time.Second)
	hb := Heartbeat{ID: 1, Kafka: "k1:9092", Internal: "i1:9093", Raft: "inmem-1",
		Listeners: map[string]string{"PLAINTEXT": "k1:9092", "SSL": "k1:9093"}}
	if _, err := s.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	b, ok := s.FSM().Broker(1)
	if !ok || !maps.Equal(b.Listeners, hb.Listeners) {
		t.Fatalf("registered %+v", b)
	}
	idx := s.FSM().AppliedIndex()
	same := hb
	same.Listeners = map[string]string{"SSL": "k1:9093", "PLAINTEXT": "k1:9092"}
	if _, err := s.Heartbeat(ctx, same); err != nil {
		t.Fatal(err)
	}
	if s.FSM().AppliedIndex() != idx {
		t.Fatal("an unchanged heartbeat wrote a log entry")
	}
	changed := hb
	changed.Listeners = map[string]string{"PLAINTEXT": "k1:9092", "SSL": "k1:19093"}
	if _, err := s.Heartbeat(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.FSM().Broker(1); b.Listeners["SSL"] != "k1:19093" || len(b.Listeners) != 2 {
		t.Fatalf("after a listener change: %+v", b)
	}
	if a, ok := (Broker{Kafka: "old:1"}).Endpoint("ANY"); !ok || a != "old:1" {
		t.Fatalf("a registration without listeners: %q %v", a, ok)
	}
	if a, ok := b.Endpoint("SASL_SSL"); ok {
		t.Fatalf("Endpoint of a missing listener: %q", a)
	}
}

func TestValidateRegisterBrokerListeners(t *testing.T) {
	for _, l := range []map[string]string{{"": "h:1"}, {"SSL": "h"}} {
		err := Validate(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1", Listeners: l}})
		if !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("listeners %v: %v", l, err)
		}
	}
	if err := Validate(RegisterBroker{Broker: Broker{ID: 1, Kafka: "h:1", Listeners: map[string]string{"SSL": "h:2"}}}); err != nil {
		t.Fatal(err)
	}
}
