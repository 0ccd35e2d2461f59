package metadata

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// commitCluster starts 3 in-memory Raft nodes with heartbeat and
// election timeout hb and lease renewal renew, registers the brokers
// (placement needs them) and creates topic x through a follower, which
// it returns. No heartbeats run afterwards: the leases (10 s) outlive
// the caller.
func commitCluster(t testing.TB, hb, renew time.Duration) (*testCluster, *testNode) {
	c := newTunedCluster(t, 3, func(o *RaftOptions) {
		o.HeartbeatTimeout, o.ElectionTimeout = hb, hb
		o.LeaseRenew, o.LeaseTimeout = renew, 10*time.Second
	})
	leader := c.waitLeader()
	ctx := ctxT(t, 30*time.Second)
	for _, id := range []int32{1, 2, 3} {
		if _, err := leader.store.Heartbeat(ctx, hbFor(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.all() {
		waitBrokers(t, n, BrokerAlive, 1, 2, 3)
	}
	from := c.followers(leader.id)[0]
	if err := from.store.Apply(ctx, CreateTopic{Name: "x", ID: topicID(1), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	return c, from
}

// A command forwarded from a follower returns once the follower applied
// it; the leader tells the followers of the commit at once (pushCommits),
// not with its next CommitTimeout tick. With a 2 s heartbeat timeout the
// tick comes every 200-400 ms (and the controller's own lease barrier
// every renewal, none here), so each forwarded Apply returning within
// 150 ms shows the push: without it the first one timed out.
func TestForwardedApplyDoesNotWaitForTheCommitTick(t *testing.T) {
	_, from := commitCluster(t, 2*time.Second, 250*time.Millisecond)
	ctx := ctxT(t, 30*time.Second)
	var cur map[string]string
	for i := range 10 {
		next := map[string]string{"retention.ms": fmt.Sprint(1000 + i)}
		actx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		err := from.store.Apply(actx, SetTopicConfigs{Name: "x", ID: topicID(1), Expected: cur, Configs: next})
		cancel()
		if err != nil {
			t.Fatalf("forwarded Apply %d from node %d: %v", i, from.id, err)
		}
		if tp, _ := from.store.FSM().Topic("x"); tp.Configs["retention.ms"] != next["retention.ms"] {
			t.Fatalf("node %d reads %v after its Apply returned, want %v", from.id, tp.Configs, next)
		}
		cur = next
	}
}

// BenchmarkForwardedApply: config changes forwarded from a follower of a
// 3-node in-memory cluster with the production timings (heartbeat
// timeout 500 ms, lease renewal 250 ms), one after another; each returns
// once the follower applied it (docs/io-and-scale.md, "Scale").
//
//	go test -run '^$' -bench BenchmarkForwardedApply -benchtime 30x ./metadata
func BenchmarkForwardedApply(b *testing.B) {
	_, from := commitCluster(b, 500*time.Millisecond, 250*time.Millisecond)
	ctx := ctxT(b, 10*time.Minute)
	var cur map[string]string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next := map[string]string{"retention.ms": fmt.Sprint(1000 + i)}
		if err := from.store.Apply(ctx, SetTopicConfigs{Name: "x", ID: topicID(1), Expected: cur, Configs: next}); err != nil {
			b.Fatal(err)
		}
		cur = next
	}
}
