package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// badConfigCommands are commands whose topic configs do not parse; they
// address topic "a" of baseFSM (or create "b").
func badConfigCommands() []Command {
	bad := map[string]string{"retention.ms": "abc"}
	return []Command{
		CreateTopic{Name: "b", ID: topicID(9), Partitions: 1, Configs: bad, Assignments: [][]int32{{1}}},
		SetTopicConfigs{Name: "a", ID: topicID(1), Expected: map[string]string{"retention.ms": "10"}, Configs: bad},
	}
}

// TestFSMRefusesInvalidEntry feeds the FSM commands that bypassed
// validation (as an entry an older version wrote to the log would): each
// fails with ErrInvalidCommand, changes nothing and counts as applied.
func TestFSMRefusesInvalidEntry(t *testing.T) {
	for _, c := range append(badConfigCommands(),
		CreateTopic{Name: "b", ID: topicID(9), Partitions: 1, Configs: map[string]string{"cleanup.policy": "compaction"}, Assignments: [][]int32{{1}}},
		CreateTopic{Name: "b", ID: topicID(9), Partitions: 1, Configs: map[string]string{"no.such.config": "1"}, Assignments: [][]int32{{1}}},
		CreateTopic{Name: "b/c", ID: topicID(9), Partitions: 1, Assignments: [][]int32{{1}}},
		SetTopicConfigs{Name: "a", ID: topicID(1), Expected: map[string]string{"retention.ms": "10"}, Configs: map[string]string{"segment.bytes": "1"}},
		AllocateProducerIDs{Expected: 100, Count: 1 << 62},
	) {
		t.Run(fmt.Sprintf("%s %+v", c.kind(), c), func(t *testing.T) {
			f := baseFSM(t)
			before, idx := snap(t, f), f.AppliedIndex()
			if err := f.Apply(c); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("apply: %v, want ErrInvalidCommand", err)
			}
			if !bytes.Equal(before, snap(t, f)) || f.AppliedIndex() != idx+1 {
				t.Fatalf("state changed or entry not counted (index %d -> %d)", idx, f.AppliedIndex())
			}
		})
	}
}

// TestApplyRefusesInvalidCommands: RaftStore.Apply and ApplyLocal (the
// internal /v1/apply endpoint) refuse commands with bad topic configs, bad
// counts or unknown kinds before they reach the Raft log.
func TestApplyRefusesInvalidCommands(t *testing.T) {
	s := openSingle(t, fastOpts(1))
	ctx := ctxT(t, 10*time.Second)
	if _, err := s.Heartbeat(ctx, hbFor(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, CreateTopic{Name: "a", ID: topicID(1), Partitions: 1, Configs: map[string]string{"retention.ms": "10"}}); err != nil {
		t.Fatal(err)
	}
	last := s.raft.LastIndex()
	for _, c := range badConfigCommands() {
		if err := s.Apply(ctx, c); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Apply %+v: %v, want ErrInvalidCommand", c, err)
		}
		data, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ApplyLocal(ctx, data); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("ApplyLocal %s: %v, want ErrInvalidCommand", data, err)
		}
	}
	for _, raw := range []string{
		`{"v":1,"kind":"drop_everything","body":{}}`,
		`not json`,
		// Placed by the controller: a negative count used to reach Place.
		`{"v":1,"kind":"create_topic","body":{"name":"neg","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":-1}}`,
		`{"v":1,"kind":"create_partitions","body":{"name":"a","id":[0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,171],"expected":1,"count":1000000}}`,
		`{"v":1,"kind":"create_topic","body":{"name":"rf","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":1,"replication_factor":-7}}`,
		`{"v":1,"kind":"roll_segment","body":{"topic":"a","id":[0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,171],"partition":0,"expected_segment":0,"expected_epoch":0,"end_offset":-5,"next_leader":1,"next_replicas":[1]}}`,
	} {
		if _, err := s.ApplyLocal(ctx, []byte(raw)); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("ApplyLocal %s: %v, want ErrInvalidCommand", raw, err)
		}
	}
	if got := s.raft.LastIndex(); got != last {
		t.Fatalf("raft log grew from %d to %d: an invalid command was committed", last, got)
	}
	if tp, _ := s.FSM().Topic("a"); len(tp.Configs) != 1 || tp.Configs["retention.ms"] != "10" {
		t.Fatalf("configs of a: %v", tp.Configs)
	}
}

// TestInvalidLogEntryAppliesAlikeEverywhere commits an invalid command
// straight into the Raft log (as an older version could have): every node
// applies it as a failed entry, stays up and ends with the same state.
func TestInvalidLogEntryAppliesAlikeEverywhere(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	c.startHeartbeats(1, 2, 3)
	for _, n := range c.all() {
		waitBrokers(t, n, BrokerAlive, 1, 2, 3)
	}
	ctx := ctxT(t, 20*time.Second)
	if err := leader.store.Apply(ctx, CreateTopic{Name: "a", ID: topicID(1), Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	tp, _ := leader.store.FSM().Topic("a")
	for _, cmd := range []Command{
		CreateTopic{Name: "b", ID: topicID(9), Partitions: 1, Configs: map[string]string{"retention.ms": "abc"}, Assignments: [][]int32{{1}}},
		SetTopicConfigs{Name: "a", ID: tp.ID, Expected: tp.Configs, Configs: map[string]string{"retention.ms": "abc"}},
	} {
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		f := leader.store.raft.Apply(data, 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		if err, _ := f.Response().(error); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("leader applied %+v: %v, want ErrInvalidCommand", cmd, err)
		}
	}
	want := leader.store.FSM().Dump()
	for _, n := range c.all() {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d converges", n.id), func() error {
			if err := n.store.FSM().WaitApplied(context.Background(), leader.store.FSM().AppliedIndex()); err != nil {
				return err
			}
			if got := n.store.FSM().Dump(); !bytes.Equal(got, want) {
				return fmt.Errorf("node %d state differs:\n%s\nwant\n%s", n.id, got, want)
			}
			return nil
		})
	}
	if _, ok := leader.store.FSM().Topic("b"); ok {
		t.Fatal("topic b with retention.ms=abc was created")
	}
	if got, _ := leader.store.FSM().Topic("a"); len(got.Configs) != 0 {
		t.Fatalf("configs of a: %v", got.Configs)
	}
}

// TestRestoreDropsNullEntries: a snapshot with a null topic or broker (no
// version of this code writes one) restores without them, so commands that
// walk the maps do not dereference nil.
func TestRestoreDropsNullEntries(t *testing.T) {
	f := NewFSM()
	if err := f.Restore([]byte(`{"version":2,"topics":{"x":null},"brokers":{"1":null,"2":{"id":2,"kafka":"k:1","state":"alive"}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(CreateTopic{Name: "y", ID: topicID(1), Partitions: 1, Assignments: [][]int32{{2}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(RollSegment{Topic: "y", ID: topicID(1), EndOffset: 1, NextLeader: 2, NextReplicas: []int32{2, 1}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("roll onto the dropped broker 1: %v", err)
	}
	if tps, bs := f.Topics(), f.Brokers(); len(tps) != 1 || tps[0].Name != "y" || len(bs) != 1 || bs[0].ID != 2 {
		t.Fatalf("topics %+v brokers %+v", tps, bs)
	}
}
