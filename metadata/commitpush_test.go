package metadata

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A command forwarded from a follower returns once the follower applied
// it; the leader tells the followers of the commit at once (pushCommits),
// not with its next CommitTimeout tick. With a 2 s heartbeat timeout the
// tick comes every 200-400 ms (and the controller's own lease barrier
// every renewal, stopped here), so each forwarded Apply returning within
// 150 ms shows the push: without it most of them took 100-400 ms.
func TestForwardedApplyDoesNotWaitForTheCommitTick(t *testing.T) {
	c := &testCluster{t: t, nodes: map[int32]*testNode{}, cut: map[int32]bool{}, paused: map[int32]bool{}, stop: make(chan struct{})}
	for id := int32(1); id <= 3; id++ {
		c.voters = append(c.voters, Voter{ID: id, Addr: string(nodeAddr(id))})
	}
	t.Cleanup(c.close)
	for id := int32(1); id <= 3; id++ {
		addr, trans := raft.NewInmemTransport(nodeAddr(id))
		nd := &testNode{id: id, addr: addr, trans: trans}
		for _, o := range c.nodes {
			o.trans.Connect(addr, trans)
			trans.Connect(o.addr, o.trans)
		}
		opts := fastOpts(id)
		opts.HeartbeatTimeout, opts.ElectionTimeout = 2*time.Second, 2*time.Second
		opts.LeaseRenew, opts.LeaseTimeout = 250*time.Millisecond, 10*time.Second
		opts.Transport, opts.Voters, opts.Forwarder = trans, c.voters, testForwarder{c: c, from: id}
		s, err := OpenRaft(opts)
		if err != nil {
			t.Fatal(err)
		}
		nd.store = s
		c.mu.Lock()
		c.nodes[id] = nd
		c.mu.Unlock()
	}
	leader := c.waitLeader()
	ctx := ctxT(t, 30*time.Second)
	// Register the brokers (placement needs them), then stop heartbeating:
	// the leases outlive the test.
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
