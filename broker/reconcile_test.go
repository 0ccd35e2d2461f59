package broker

import (
	"context"
	"testing"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// TestFullPassKeepsLogsCreatedMeanwhile: logs are created outside the
// reconcile lock, so a full pass may list the log of a topic created after
// it read the metadata. It must keep that log (before the re-check it was
// deleted as "a log of a deleted topic"), and still delete the log of a
// topic that does not exist.
func TestFullPassKeepsLogsCreatedMeanwhile(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	id := metadata.TopicID{1, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, 16}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: "fresh", ID: id, Partitions: 1, Assignments: [][]int32{{b.cfg.NodeID}}}); err != nil {
		t.Fatal(err)
	}
	fresh := storage.TopicPartition{Topic: "fresh", Partition: 0}
	gone := storage.TopicPartition{Topic: "gone", Partition: 0}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := b.engine.Log(fresh); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log of the new topic was not opened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.engine.OpenLog(gone, storage.LogConfig{}); err != nil {
		t.Fatal(err)
	}
	b.reconcileMu.Lock()
	// want as a full pass that read the metadata before "fresh" existed.
	b.removeUnwanted([]storage.TopicPartition{fresh, gone}, map[storage.TopicPartition]metadata.TopicID{})
	b.reconcileMu.Unlock()
	if _, ok := b.engine.Log(fresh); !ok {
		t.Fatal("the full pass deleted the log of a topic created after it read the metadata")
	}
	if got, known, err := b.engine.LogTopicID(fresh); err != nil || !known || got != id {
		t.Fatalf("topic id of %s: %x %v %v", fresh, got, known, err)
	}
	if _, ok := b.engine.Log(gone); ok {
		t.Fatal("the log of a topic that does not exist was kept")
	}
	dirs, err := b.engine.ListLogDirs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range dirs {
		if tp == gone {
			t.Fatalf("%s still has a directory", gone)
		}
	}
}

// TestIncrementalReconcileFollowsChanges: the reconcile loop acts on the
// partitions a metadata change touched within a pass, not at the next
// full pass (minutes away): a topic created and then deleted through the
// metadata alone (not through this node's CreateTopics/DeleteTopics
// handlers, which reconcile themselves) has its log opened and then
// removed.
func TestIncrementalReconcileFollowsChanges(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	id := metadata.TopicID{9, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, 16}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: "inc", ID: id, Partitions: 2, Assignments: [][]int32{{b.cfg.NodeID}, {b.cfg.NodeID}}}); err != nil {
		t.Fatal(err)
	}
	tps := []storage.TopicPartition{{Topic: "inc", Partition: 0}, {Topic: "inc", Partition: 1}}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // well below reconcileFullEvery
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("logs of the new topic opened", func() bool {
		for _, tp := range tps {
			if _, ok := b.engine.Log(tp); !ok {
				return false
			}
		}
		return true
	})
	if err := b.store.Apply(ctx, metadata.DeleteTopic{Name: "inc", ID: id}); err != nil {
		t.Fatal(err)
	}
	waitUntil("logs of the deleted topic removed", func() bool {
		dirs, err := b.engine.ListLogDirs()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if d.Topic == "inc" {
				return false
			}
		}
		_, open0 := b.engine.Log(tps[0])
		_, open1 := b.engine.Log(tps[1])
		return !open0 && !open1
	})
	if lp := b.repl.Leader(tps[0]); lp != nil {
		t.Fatal("still leading a partition of the deleted topic")
	}
}
