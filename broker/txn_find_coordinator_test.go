package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
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

// failingProber makes the controller's failover probes fail at once, so a
// failover never ends: the partitions stay fenced (the controller retries
// each scan) without a probe holding the controller.
type failingProber struct{}

func (failingProber) ReplicaLEOs(context.Context, int32, uint64, []metadata.LEOProbe) ([]metadata.LEOAnswer, error) {
	return nil, errors.New("test: probe refused")
}

// TestFindCoordinatorWaitEndsAtClose: a FindCoordinator waiting for the
// failover of its coordinator's partition (waitCoordinatorFailovers) ends
// when Close begins, so it does not hold the shutdown: the drain of client
// requests waited for it (up to twice lease.timeout, 60 s here), while
// the failover it waits for needs peers that may be stopping too. The
// lookup is answered as things stand (COORDINATOR_NOT_AVAILABLE) and Close
// returns. Before, Close returned only when the wait ran out.
func TestFindCoordinatorWaitEndsAtClose(t *testing.T) {
	b := startBroker(t, t.TempDir(), txnTestConfig, func(c *configs.Config) { c.Lease.Timeout = 30 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	b.store.SetProber(failingProber{})
	const T = "find-coordinator-close"
	me := b.cfg.NodeID
	if err := b.store.Apply(ctx, metadata.RegisterBroker{Broker: metadata.Broker{ID: 2, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	id := metadata.TopicID{7, 2, 3, 4, 5, 6, 0x40, 8, 0x80, 10, 11, 12, 13, 14, 15, 17}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: txnTopic, ID: id, Partitions: 1, Internal: true,
		Configs: map[string]string{"cleanup.policy": "compact"}, Assignments: [][]int32{{2, me}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Apply(ctx, metadata.SetBrokerState{ID: 2, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
		t.Fatalf("fence node 2: %v", err)
	}

	// FindCoordinator v4 then ApiVersions v0 on one connection: once the
	// ApiVersions answer sits in the connection's output queue behind the
	// FindCoordinator's, the lookup is parked in its wait.
	nc, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.Version = 4
	find.CoordinatorType = 1
	find.CoordinatorKeys = []string{T}
	var out []byte
	out = appendRawRequest(out, find, 1)
	out = appendRawRequest(out, kmsg.NewPtrApiVersionsRequest(), 2)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	parked := func() bool {
		b.connMu.Lock()
		defer b.connMu.Unlock()
		for c := range b.conns {
			if len(c.out) > 0 {
				return true
			}
		}
		return false
	}
	for !parked() {
		if ctx.Err() != nil {
			t.Fatal("the FindCoordinator never parked waiting for the failover")
		}
		time.Sleep(5 * time.Millisecond)
	}

	closed := make(chan error, 1)
	began := time.Now()
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		closed <- b.Close(cctx)
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Close has not returned %v after it began, with a FindCoordinator waiting for a failover (the wait is %v)", time.Since(began).Round(time.Millisecond), 2*b.cfg.Lease.Timeout)
	}
	resp := kmsg.NewPtrFindCoordinatorResponse()
	resp.Version = 4
	readRawResponse(t, nc, 1, resp)
	if len(resp.Coordinators) != 1 || resp.Coordinators[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("FindCoordinator answered at shutdown: %+v; want one coordinator, COORDINATOR_NOT_AVAILABLE", resp.Coordinators)
	}
}

// appendRawRequest appends req's frame (client id "test", correlation id
// corr) to out.
func appendRawRequest(out []byte, req kmsg.Request, corr int32) []byte {
	var msg []byte
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.GetVersion()))
	msg = binary.BigEndian.AppendUint32(msg, uint32(corr))
	msg = binary.BigEndian.AppendUint16(msg, 4)
	msg = append(msg, "test"...)
	if req.IsFlexible() {
		msg = append(msg, 0)
	}
	msg = req.AppendTo(msg)
	out = binary.BigEndian.AppendUint32(out, uint32(len(msg)))
	return append(out, msg...)
}

// readRawResponse reads one response frame from nc into resp (its version
// set), checking its correlation id.
func readRawResponse(t *testing.T, nc net.Conn, corr int32, resp kmsg.Response) {
	t.Helper()
	if err := nc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var sz [4]byte
	if _, err := io.ReadFull(nc, sz[:]); err != nil {
		t.Fatalf("read a response: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(sz[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatalf("read a response: %v", err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		t.Fatalf("response correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	if resp.IsFlexible() {
		body = body[1:] // empty header tags
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("decode %T: %v", resp, err)
	}
}
