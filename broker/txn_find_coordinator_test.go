package broker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// gatedProber holds the controller's failover probes until release is
// closed: entered is closed when the first probe arrives, after the
// failover fenced the segments and before it seals them.
type gatedProber struct {
	inner   metadata.ReplicaProber
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedProber) ReplicaLEOs(ctx context.Context, node int32, fenceIndex uint64, probes []metadata.LEOProbe) ([]metadata.LEOAnswer, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.inner.ReplicaLEOs(ctx, node, fenceIndex, probes)
}

// TestFindCoordinatorWaitsForFailover: FindCoordinator for a transactional
// id whose __transaction_state partition is led by a fenced node, while
// the controller fails that partition over to a live replica, waits for
// the failover (at most twice lease.timeout) instead of answering
// COORDINATOR_NOT_AVAILABLE at once. Kafka moves leadership in the step
// that fences a broker, so its clients never see that answer for a
// partition with a live replica, and kgo takes it as final for a
// transaction: an AddPartitionsToTxn whose coordinator lookup gets it
// fails the producer id, and the produce with it (compat
// TestClusterTxnReadCommitted failed so when the killed partition leader
// was also the transaction coordinator).
//
// Node 2 is a registration only; the failover's probe of this node is
// held (gatedProber) so the window between the fence and the seal lasts
// as long as the test needs.
func TestFindCoordinatorWaitsForFailover(t *testing.T) {
	b := startBroker(t, t.TempDir(), txnTestConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	gate := &gatedProber{inner: b, entered: make(chan struct{}), release: make(chan struct{})}
	b.store.SetProber(gate)
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	const T = "find-coordinator-failover"
	me := b.cfg.NodeID
	if err := b.store.Apply(ctx, metadata.RegisterBroker{Broker: metadata.Broker{ID: 2, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	id := metadata.TopicID{7, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, 16}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: txnTopic, ID: id, Partitions: 1, Internal: true,
		Configs: map[string]string{"cleanup.policy": "compact"}, Assignments: [][]int32{{2, me}}}); err != nil {
		t.Fatal(err)
	}
	// Fence node 2 (the controller fences it too once its lease runs
	// out: whichever commits first).
	if err := b.store.Apply(ctx, metadata.SetBrokerState{ID: 2, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
		if br, _ := b.store.FSM().Broker(2); br.State != metadata.BrokerFenced {
			t.Fatalf("fence node 2: %v", err)
		}
	}
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("the controller did not start the failover of node 2's partition")
	}
	if tp, _ := b.store.FSM().Topic(txnTopic); tp.Parts[0].Active().Leader != 2 {
		t.Fatalf("the failover is held, yet node %d leads %s-0", tp.Parts[0].Active().Leader, txnTopic)
	}

	cl := newClient(t, b)
	seed := cl.SeedBrokers()[0]
	find := func() (kmsg.FindCoordinatorResponseCoordinator, error) {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType = 1
		req.CoordinatorKeys = []string{T}
		resp, err := seed.Request(ctx, req)
		if err != nil {
			return kmsg.FindCoordinatorResponseCoordinator{}, err
		}
		cs := resp.(*kmsg.FindCoordinatorResponse).Coordinators
		if len(cs) != 1 {
			return kmsg.FindCoordinatorResponseCoordinator{}, errors.New("not one coordinator in the answer")
		}
		return cs[0], nil
	}

	// While the failover cannot finish, the lookup waits twice
	// lease.timeout and then answers COORDINATOR_NOT_AVAILABLE.
	start := time.Now()
	c, err := find()
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if wait := 2 * b.cfg.Lease.Timeout; c.ErrorCode != kerr.CoordinatorNotAvailable.Code || took < wait {
		t.Fatalf("FindCoordinator during the failover: %s node %d after %v, want COORDINATOR_NOT_AVAILABLE after waiting %v for the failover",
			kerr.ErrorForCode(c.ErrorCode), c.NodeID, took.Round(time.Millisecond), wait)
	}

	// A lookup that the failover's end overtakes answers the new leader.
	type answer struct {
		c   kmsg.FindCoordinatorResponseCoordinator
		err error
	}
	got := make(chan answer, 1)
	go func() {
		c, err := find()
		got <- answer{c, err}
	}()
	close(gate.release)
	released = true
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.c.ErrorCode != 0 || a.c.NodeID != me {
		t.Fatalf("FindCoordinator as the failover ends: %s node %d, want node %d", kerr.ErrorForCode(a.c.ErrorCode), a.c.NodeID, me)
	}
	if tp, _ := b.store.FSM().Topic(txnTopic); tp.Parts[0].Active().Leader != me {
		t.Fatalf("after the failover node %d leads %s-0, want %d", tp.Parts[0].Active().Leader, txnTopic, me)
	}
}
