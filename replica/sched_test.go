package replica

import (
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/storage"
)

// Each round of a follower's fetch session counts as its fetch of every
// partition the session acknowledged (FetchedIn), so an idle partition
// the leader does not visit does not lag; a follower whose session stops
// does, LagTimeMax after its last round, also once its session forgot the
// partition.
func TestFetchRoundsTimeLag(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.produce(1, 0)
	c.eventually("HW 1", func() bool { return c.log(1).HighWatermark() == 1 })
	c.tr.Disconnect(2) // the test fetches for nodes 2 and 3 itself
	c.tr.Disconnect(3)
	m := c.nodes[1].m
	lp := m.Leader(tp0)
	r2, r3 := m.NewFetchRounds(), m.NewFetchRounds()
	for id, r := range map[int32]*FetchRounds{2: r2, 3: r3} {
		if ok, frozen := m.FetchedIn(tp0, id, 1, 0, r); !ok || frozen {
			t.Fatalf("node %d: FetchedIn = %v, %v; want true, false", id, ok, frozen)
		}
	}
	c.clock.Advance(6 * time.Second)
	m.FetchRound(r2)
	m.FetchRound(r3)
	c.clock.Advance(6 * time.Second) // 12 s after the fetches, 6 s after the rounds
	if got := m.laggards(lp); len(got) != 0 {
		t.Fatalf("laggards %v with rounds 6 s ago; want none", got)
	}
	if !lp.FetchingNow(2) || !lp.FetchingNow(3) {
		t.Fatal("FetchingNow false for followers whose sessions had a round 6 s ago")
	}
	m.FetchRound(r2) // node 3's session stops
	c.clock.Advance(5 * time.Second)
	if got := m.laggards(lp); !slices.Equal(got, []int32{3}) {
		t.Fatalf("laggards %v 11 s after node 3's last round; want [3]", got)
	}
	due, _ := m.rollDue(lp, c.clock.Now(), m.aliveBrokers())
	if !due {
		t.Fatal("no roll due with node 3 lagging")
	}
	// Node 2's session drops the partition: its last round stays its
	// last fetch.
	m.Forgot(tp0, 2, r2)
	m.FetchRound(r2)
	c.clock.Advance(6 * time.Second) // 11 s after the round before Forgot
	if got := m.laggards(lp); !slices.Equal(got, []int32{2, 3}) {
		t.Fatalf("laggards %v after node 2's session forgot the partition; want [2 3]", got)
	}
	// A fetch outside a session detaches it too.
	if ok, _ := m.FetchedIn(tp0, 3, 1, 0, nil); !ok {
		t.Fatal("FetchedIn without a session refused")
	}
	m.FetchRound(r3)
	c.clock.Advance(11 * time.Second)
	if got := m.laggards(lp); !slices.Equal(got, []int32{2, 3}) {
		t.Fatalf("laggards %v; want [2 3]", got)
	}
}

// A fetch while this node holds no live lease leaves the high watermark
// frozen, and FetchedIn says so: the caller fetches the partition again
// instead of waiting for news that may never come.
func TestFetchedInFrozen(t *testing.T) {
	c := newCluster(t, 2, []int32{1, 2})
	c.tr.Disconnect(2)
	m := c.nodes[1].m
	c.produce(1, 0)
	r := m.NewFetchRounds()
	c.nodes[1].lease.valid.Store(false)
	if ok, frozen := m.FetchedIn(tp0, 2, 1, 0, r); !ok || !frozen {
		t.Fatalf("FetchedIn without a lease = %v, %v; want true, true", ok, frozen)
	}
	if hw := c.log(1).HighWatermark(); hw != 0 {
		t.Fatalf("HW %d without a lease; want 0", hw)
	}
	c.nodes[1].lease.valid.Store(true)
	if ok, frozen := m.FetchedIn(tp0, 2, 1, 0, r); !ok || frozen {
		t.Fatalf("FetchedIn with the lease back = %v, %v; want true, false", ok, frozen)
	}
	if hw := c.log(1).HighWatermark(); hw != 1 {
		t.Fatalf("HW %d after the renewal; want 1", hw)
	}
}

// The roll loop looks at a leadership when something may have made a roll
// due, not every tick: Lead queues it, the look schedules the next at the
// followers' lag limit, an idle leadership is not looked at before it, and
// an append that fills the segment queues it again.
func TestRollChecksOnlyWhenDue(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	m := c.nodes[1].m
	lp := m.Leader(tp0)
	now := c.clock.Now()
	if got := m.takeRollChecks(now); !slices.Contains(got, lp) {
		t.Fatalf("Lead did not queue the leadership: %v", got)
	}
	due, next := m.rollDue(lp, now, m.aliveBrokers())
	if due {
		t.Fatal("a roll due on a new, healthy leadership")
	}
	// The fake clock has not moved: every follower's fetch, and the
	// leadership, are at now.
	want := now.Add(m.cfg.LagTimeMax + time.Millisecond)
	if !next.Equal(want) {
		t.Fatalf("next look at %v; want %v (the first lag limit)", next, want)
	}
	m.scheduleRoll(lp, next)
	if got := m.takeRollChecks(next.Add(-time.Millisecond)); len(got) != 0 {
		t.Fatalf("looked at %d leaderships before the lag limit; want 0", len(got))
	}
	if got := m.takeRollChecks(next); !slices.Equal(got, []*Leadership{lp}) {
		t.Fatalf("looks at the lag limit: %v; want the leadership", got)
	}
	if got := m.takeRollChecks(next.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("looked at %d leaderships after the scheduled look was taken; want 0", len(got))
	}
	// A later schedule replaces an earlier one.
	m.scheduleRoll(lp, now.Add(time.Second))
	m.scheduleRoll(lp, now.Add(2*time.Second))
	if got := m.takeRollChecks(now.Add(1500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("a replaced schedule was taken: %v", got)
	}
	if got := m.takeRollChecks(now.Add(2 * time.Second)); !slices.Equal(got, []*Leadership{lp}) {
		t.Fatalf("looks at the replacing schedule: %v; want the leadership", got)
	}
	// An append that fills the segment queues it.
	lp.rollMu.Lock()
	lp.segBytes = 1
	lp.rollMu.Unlock()
	c.produce(1, 0)
	if got := m.takeRollChecks(now); !slices.Equal(got, []*Leadership{lp}) {
		t.Fatalf("looks after a filling append: %v; want the leadership", got)
	}
}

// A follower's fetcher looks at a partition only when it changed: added,
// or its log moved (the log's watch: here a moved log start and an
// append), or dropped; an idle one is not queued.
func TestFetcherLooksOnlyAtChanges(t *testing.T) {
	eng, err := storage.Open(storage.Options{Dir: t.TempDir(), Fsync: storage.FsyncNever, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	l, err := eng.OpenLog(tp0, storage.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFetcher(nil, 1)
	look := func(what string, want ...storage.TopicPartition) {
		t.Helper()
		got := f.takeDirty()
		if len(got) != len(want) {
			t.Fatalf("%s: queued %v, want %v", what, got, want)
		}
		for _, tp := range want {
			if _, ok := got[tp]; !ok {
				t.Fatalf("%s: queued %v, want %v", what, got, want)
			}
		}
	}
	f.add(tp0, &followed{epoch: 1, log: l})
	look("added", tp0)
	look("idle")
	batch := kafkaproto.AppendBatch(nil, 1, []kafkaproto.KV{{Key: []byte("k"), Value: []byte("v")}})
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(batch, h, 0); err != nil {
		t.Fatal(err)
	}
	look("appended", tp0)
	look("idle after the append")
	if _, err := l.DeleteRecordsBefore(1); err != nil {
		t.Fatal(err)
	}
	look("log start moved", tp0)
	f.drop(tp0)
	look("dropped", tp0)
	if _, err := l.Append(batch, h, 0); err != nil {
		t.Fatal(err)
	}
	look("appended after the drop (no watch left)")
}
