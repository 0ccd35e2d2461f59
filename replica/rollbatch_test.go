package replica

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// TestLaggardRollsCommitTogether: when a node dies, the rolls that leave
// it out of the segments of every partition it followed commit as a few
// SealSegments instead of a RollSegment each. The first roll's commit is
// held until the other seven wait behind it: they then go as one
// SealSegments of seven entries, and every partition's next segment is
// node 1's without node 2.
func TestLaggardRollsCommitTogether(t *testing.T) {
	const n = 8
	c := newCluster(t, 2, []int32{1, 2})
	assign := make([][]int32, n)
	for p := range assign {
		assign[p] = []int32{1, 2}
	}
	if err := c.meta.fsm.Apply(metadata.CreateTopic{Name: "b", ID: metadata.TopicID{2}, Partitions: n, ReplicationFactor: 2, Assignments: assign}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int32{1, 2} {
		c.nodes[id].reconcile("b")
	}
	if err := c.meta.fsm.Apply(metadata.SetBrokerState{ID: 2, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
		t.Fatal(err)
	}
	m := c.nodes[1].m
	var mu sync.Mutex
	var applied []string // each command's kind and entry count
	first := true
	c.meta.setHook(func(cmd metadata.Command) error {
		mu.Lock()
		hold := first
		first = false
		mu.Unlock()
		if hold {
			// The other rolls queue behind the one committing. The
			// first command may already carry more than one roll (the
			// goroutines race to the queue).
			k := 1
			if v, ok := cmd.(metadata.SealSegments); ok {
				k = len(v.Entries)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				m.rolls.mu.Lock()
				queued := len(m.rolls.queue)
				m.rolls.mu.Unlock()
				if queued == n-k {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%d rolls queued behind the first %d, want %d", queued, k, n-k)
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		mu.Lock()
		switch v := cmd.(type) {
		case metadata.RollSegment:
			applied = append(applied, "roll 1")
		case metadata.SealSegments:
			applied = append(applied, fmt.Sprintf("seal %d", len(v.Entries)))
		default:
			applied = append(applied, fmt.Sprintf("%T", cmd))
		}
		mu.Unlock()
		return c.meta.fsm.Apply(cmd)
	})
	var wg sync.WaitGroup
	for p := range int32(n) {
		lp := m.Leader(storage.TopicPartition{Topic: "b", Partition: p})
		if lp == nil {
			t.Fatalf("node 1 does not lead b-%d", p)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Roll(lp)
		}()
	}
	wg.Wait()
	// At most two commands: the first (one roll, or the few that reached
	// the queue together) and all the others in one batch; not one each.
	entries := 0
	for _, a := range applied {
		var kind string
		var k int
		if _, err := fmt.Sscanf(a, "%s %d", &kind, &k); err != nil {
			t.Fatalf("command %q: %v", a, err)
		}
		entries += k
	}
	if len(applied) > 2 || entries != n {
		t.Fatalf("commands %v, want %d rolls in at most two commands", applied, n)
	}
	tb, _ := c.meta.fsm.Topic("b")
	for p, part := range tb.Parts {
		segs := part.Segments
		if len(segs) != 2 || segs[1].Leader != 1 || !slices.Equal(segs[1].Replicas, []int32{1}) || !slices.Equal(segs[0].Replicas, []int32{1}) {
			t.Fatalf("b-%d segments after the laggard roll: %+v", p, segs)
		}
		if lp := m.Leader(storage.TopicPartition{Topic: "b", Partition: int32(p)}); lp == nil || lp.segment != segs[1].ID {
			t.Fatalf("node 1 does not lead b-%d's new segment", p)
		}
	}
}
