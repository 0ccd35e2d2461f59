package metadata

import (
	"errors"
	"maps"
	"testing"
)

// TestGroupConfigs: SetGroupConfigs sets and drops a group's overrides
// under compare-and-set, a snapshot keeps them, the command round-trips
// through its encoding, and an empty group id is invalid.
func TestGroupConfigs(t *testing.T) {
	f := NewFSM()
	apply := func(c Command) error {
		t.Helper()
		if err := Validate(c); err != nil {
			t.Fatal(err)
		}
		return f.Apply(c)
	}
	set := map[string]string{"share.auto.offset.reset": "earliest"}
	if err := apply(SetGroupConfigs{Group: "g", Configs: set}); err != nil {
		t.Fatal(err)
	}
	if got := f.GroupConfigs("g"); !maps.Equal(got, set) {
		t.Fatalf("configs %v", got)
	}
	if err := apply(SetGroupConfigs{Group: "g", Configs: map[string]string{"x": "1"}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale expected: %v", err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := g.GroupConfigs("g"); !maps.Equal(got, set) {
		t.Fatalf("after a snapshot %v", got)
	}
	if err := apply(SetGroupConfigs{Group: "g", Expected: set}); err != nil {
		t.Fatal(err)
	}
	if got := f.GroupConfigs("g"); got != nil {
		t.Fatalf("dropped configs %v", got)
	}
	if err := Validate(SetGroupConfigs{Configs: set}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("empty group: %v", err)
	}
	raw, err := EncodeCommand(SetGroupConfigs{Group: "g", Configs: set})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := DecodeCommand(raw); err != nil || !maps.Equal(c.(SetGroupConfigs).Configs, set) {
		t.Fatalf("decode: %+v %v", c, err)
	}
}
