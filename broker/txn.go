package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
	"github.com/tuskdb/tusk/txn"
)

// Transaction coordinator hosting (docs/transactions.md, "Broker glue"):
// one txn.Coordinator per __transaction_state partition this node leads,
// loaded from the partition's log when the leadership arrives and closed
// when it moves, exactly as group coordinators are hosted
// (broker/groups.go). A transactional id T lives on partition
// abs(javaHash(T)) % N; its coordinator is that partition's leader and the
// coordinator epoch is the partition's leader epoch.

// txnTopic holds the transaction coordinators' state in Kafka's
// TxnMetadataKey/Value schemas.
const txnTopic = "__transaction_state"

// txnMarkerTimeout bounds how long a marker append waits for the high
// watermark (the coordinator retries after it, and a marker written twice
// is harmless).
const txnMarkerTimeout = 5 * time.Second

// txnCoordinators holds the coordinators of the __transaction_state
// partitions this node leads.
type txnCoordinators struct {
	b       *Broker
	notHere *txn.Coordinator // closed: answers NOT_COORDINATOR

	mu     sync.Mutex // guards the fields below
	n      int32      // partitions of __transaction_state, 0 before it exists
	parts  map[int32]*txn.Coordinator
	since  map[int32]int64 // partition → the segment its coordinator was loaded in
	closed bool
}

func (b *Broker) newTxnCoordinators() *txnCoordinators {
	tc := &txnCoordinators{b: b, parts: map[int32]*txn.Coordinator{}, since: map[int32]int64{}}
	cfg := b.txnConfig()
	cfg.TickInterval = -1
	tc.notHere = txn.New(cfg, -1, nil, nil, nil)
	tc.notHere.Close()
	return tc
}

// txnConfig is the coordinators' configuration.
func (b *Broker) txnConfig() txn.Config {
	return txn.Config{
		MaxTimeout:   b.cfg.Transactions.MaxTimeout,
		IDExpiration: b.cfg.Transactions.IDExpiration,
		OffsetsPartition: func(group string) (string, int32) {
			n := b.cfg.Groups.OffsetsPartitions
			if t, ok := b.store.FSM().Topic(offsetsTopic); ok {
				n = t.Partitions
			}
			return offsetsTopic, groupPartition(group, n)
		},
		PartitionExists: func(topic string, p int32) bool {
			t, ok := b.store.FSM().Topic(topic)
			return ok && p >= 0 && p < t.Partitions
		},
		Logger: b.log.With().Str("component", "txn").Logger(),
	}
}

// load rebuilds the coordinator of __transaction_state partition p (of n)
// from its log, unless it is loaded already and this node has led every
// segment since (as groupCoordinators.load). A coordinator left with
// transactions in PrepareCommit/PrepareAbort completes them in the
// background (ReplayDone is not waited for here: the markers go to other
// nodes, and reconcile must not wait for them).
func (tc *txnCoordinators) load(n, p int32, epoch int32, l *storage.Log, segs []metadata.Segment) error {
	b := tc.b
	cur := segs[len(segs)-1].ID
	tc.mu.Lock()
	if tc.closed {
		tc.mu.Unlock()
		return nil
	}
	if _, ok := tc.parts[p]; ok {
		if ledSince(segs, tc.since[p], b.cfg.NodeID) {
			tc.since[p] = cur
			tc.mu.Unlock()
			return nil
		}
		tc.mu.Unlock()
		b.log.Info().Int32("partition", p).Msg("transaction coordinator stale: another node led the partition since it was loaded")
		tc.unload(p)
		tc.mu.Lock()
	}
	tc.n = n
	tc.mu.Unlock()
	started := time.Now()
	ol := b.internalLog(txnTopic, p, l)
	c := txn.New(b.txnConfig(), epoch, txnLog{ol}, txnMarkers{b}, txnProducerIDs{b})
	records, err := replayTxnLog(l, c)
	if err != nil {
		c.Close()
		return fmt.Errorf("broker: replay %s-%d: %w", txnTopic, p, err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	c.ReplayDone(done) // starts completing Prepare* transactions; does not wait
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.closed {
		c.Close()
		return nil
	}
	tc.parts[p] = c
	tc.since[p] = cur
	b.log.Info().Int32("partition", p).Int32("coordinator_epoch", epoch).Int("records", records).Dur("took", time.Since(started)).Msg("transaction coordinator loaded")
	return nil
}

// unload stops the coordinator of partition p.
func (tc *txnCoordinators) unload(p int32) {
	tc.mu.Lock()
	c := tc.parts[p]
	delete(tc.parts, p)
	delete(tc.since, p)
	tc.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (tc *txnCoordinators) close() {
	tc.mu.Lock()
	if tc.closed {
		tc.mu.Unlock()
		return
	}
	tc.closed = true
	parts := tc.parts
	tc.parts = map[int32]*txn.Coordinator{}
	tc.mu.Unlock()
	for _, c := range parts {
		c.Close()
	}
}

// local returns the loaded coordinators.
func (tc *txnCoordinators) local() []*txn.Coordinator {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	out := make([]*txn.Coordinator, 0, len(tc.parts))
	for _, c := range tc.parts {
		out = append(out, c)
	}
	return out
}

// coordinatorFor returns the coordinator of transactional id T, or one
// that answers NOT_COORDINATOR when this node does not lead T's partition.
func (tc *txnCoordinators) coordinatorFor(T string) *txn.Coordinator {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.n > 0 {
		if c, ok := tc.parts[groupPartition(T, tc.n)]; ok {
			return c
		}
	}
	return tc.notHere
}

// Verify answers a partition leader's KIP-890 part 1 check (Produce of a
// transactional batch): is topic/partition part of T's ongoing
// transaction at (pid, epoch)? It returns nil or the txn.Coordinator's
// Verify errors. When another node coordinates T, that node is asked with
// a DescribeTransactions over its internal listener, and the answer is
// judged the same way (NOT_COORDINATOR when it cannot be reached).
func (tc *txnCoordinators) Verify(ctx context.Context, T string, pid int64, epoch int16, topic string, partition int32) error {
	b := tc.b
	t, ok := b.store.FSM().Topic(txnTopic)
	if !ok || T == "" {
		return kerr.NotCoordinator
	}
	leader, _ := t.Leader(groupPartition(T, t.Partitions))
	if leader == b.cfg.NodeID {
		return tc.coordinatorFor(T).Verify(T, pid, epoch, topic, partition)
	}
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.State != metadata.BrokerAlive || br.Internal == "" {
		return kerr.NotCoordinator
	}
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{T}
	kresp, err := b.nodeRequest(ctx, leader, br.Internal, req)
	if err != nil {
		return fmt.Errorf("%w: broker: verify %q with node %d: %w", kerr.NotCoordinator, T, leader, err)
	}
	resp := kresp.(*kmsg.DescribeTransactionsResponse)
	if len(resp.TransactionStates) != 1 {
		return fmt.Errorf("%w: broker: node %d answered %d transactions", kerr.NotCoordinator, leader, len(resp.TransactionStates))
	}
	st := resp.TransactionStates[0]
	switch {
	case st.ErrorCode == kerr.TransactionalIDNotFound.Code:
		return kerr.InvalidProducerIDMapping
	case st.ErrorCode != 0:
		return kerr.ErrorForCode(st.ErrorCode)
	case st.ProducerID != pid:
		return kerr.InvalidProducerIDMapping
	case st.ProducerEpoch != epoch:
		return kerr.ProducerFenced
	case st.State == txn.StatePrepareCommit.String() || st.State == txn.StatePrepareAbort.String():
		return kerr.ConcurrentTransactions
	case st.State != txn.StateOngoing.String():
		return kerr.InvalidTxnState
	}
	for _, rt := range st.Topics {
		if rt.Topic != topic {
			continue
		}
		for _, q := range rt.Partitions {
			if q == partition {
				return nil
			}
		}
	}
	return kerr.InvalidTxnState
}

// nodeRequest sends a Kafka request to another node's internal listener
// (addr), as replica fetches are sent.
func (b *Broker) nodeRequest(ctx context.Context, node int32, addr string, req kmsg.Request) (kmsg.Response, error) {
	cl, err := b.fwd.client(node, addr)
	if err != nil {
		return nil, err
	}
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return nil, fmt.Errorf("broker: no connection to %s", addr)
	}
	return seeds[0].Request(ctx, req)
}

// txnLog is a __transaction_state partition as a txn.Persister: the same
// append-under-leadership and wait-for-the-high-watermark path as
// __consumer_offsets (offsetsLog).
type txnLog struct{ ol *offsetsLog }

func (p txnLog) Persist(ctx context.Context, recs []txn.Record) error {
	grs := make([]groups.Record, len(recs))
	for i, r := range recs {
		grs[i] = groups.Record{Key: r.Key, Value: r.Value}
	}
	return p.ol.Persist(ctx, grs)
}

// txnProducerIDs hands the coordinators producer ids from this node's
// blocks (as the idempotent InitProducerId).
type txnProducerIDs struct{ b *Broker }

func (p txnProducerIDs) Next(ctx context.Context) (int64, error) { return p.b.pids.next(ctx) }

// replayTxnLog feeds every record of l, in order, to c (replayLog).
func replayTxnLog(l *storage.Log, c *txn.Coordinator) (int, error) {
	return replayLog(l, func(key, value []byte) error {
		return c.Replay(txn.Record{Key: key, Value: value})
	})
}

// ensureTxnTopic creates __transaction_state when missing (the first
// FindCoordinator for a transactional id does, as in Kafka): compacted,
// internal, placed by the controller over the live brokers.
func (b *Broker) ensureTxnTopic(ctx context.Context) (metadata.Topic, error) {
	tc := b.cfg.Transactions
	return b.ensureCoordinatorTopic(ctx, txnTopic, tc.Partitions, tc.RF, tc.SegmentBytes, func() { b.reconcileTopic(txnTopic) })
}

// reconcileTxnPartition starts or stops the coordinator of
// __transaction_state partition p with this node's leadership (role
// from replica.Manager.Reconcile). b.reconcileMu held.
func (b *Broker) reconcileTxnPartition(t metadata.Topic, p int32, role replica.Role) {
	seg := t.Parts[p].Active()
	if role != replica.RoleLeader || seg.State != metadata.SegmentActive {
		b.txnc.unload(p)
		return
	}
	l, ok := b.engine.Log(b.tp(t.Name, p))
	if !ok {
		return
	}
	if err := b.txnc.load(t.Partitions, p, seg.Epoch, l, t.Parts[p].Segments); err != nil {
		b.log.Error().Err(err).Int32("partition", p).Msg("load transaction coordinator")
		b.retryReconcile(b.tp(t.Name, p))
	}
}

// txnMarkers writes a transaction's markers for the coordinators: each
// partition's marker is appended here when this node leads it, else sent
// in a WriteTxnMarkers to its leader's internal listener. Partitions that
// fail (a leader moving, a roll) are retried until each is written, the
// coordinator closes (ctx), or a partition answers
// TRANSACTION_COORDINATOR_FENCED. A partition that no longer exists counts
// as written.
type txnMarkers struct{ b *Broker }

// txnMarkerRetry is the wait between attempts at the partitions left.
const txnMarkerRetry = 100 * time.Millisecond

type txnPart struct {
	topic string
	p     int32
}

func (m txnMarkers) Write(ctx context.Context, req txn.MarkerRequest) error {
	b := m.b
	var pending []txnPart
	for topic, ps := range req.Partitions {
		for _, p := range ps {
			pending = append(pending, txnPart{topic, p})
		}
	}
	sort.Slice(pending, func(i, j int) bool {
		if pending[i].topic != pending[j].topic {
			return pending[i].topic < pending[j].topic
		}
		return pending[i].p < pending[j].p
	})
	if d := b.cfg.Transactions.TestMarkerDelay; d > 0 {
		// A fault test's window between the committed Prepare* record
		// and the first marker (transactions.test-marker-delay).
		b.log.Warn().Int64("producer_id", req.ProducerID).Dur("delay", d).Msg("transactions.test-marker-delay: waiting before the transaction markers")
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	for attempt := 0; ; attempt++ {
		byLeader := map[int32][]txnPart{}
		var left []txnPart
		for _, tp := range pending {
			t, ok := b.store.FSM().Topic(tp.topic)
			if !ok || tp.p < 0 || tp.p >= t.Partitions {
				continue // deleted: nothing to mark
			}
			leader, _ := t.Leader(tp.p)
			byLeader[leader] = append(byLeader[leader], tp)
		}
		var mu sync.Mutex // guards left and fenced
		var fenced error
		var wg sync.WaitGroup
		for leader, parts := range byLeader {
			wg.Add(1)
			go func() {
				defer wg.Done()
				failed, err := m.writeTo(ctx, leader, req, parts)
				mu.Lock()
				defer mu.Unlock()
				left = append(left, failed...)
				if err != nil {
					fenced = err
				}
			}()
		}
		wg.Wait()
		if fenced != nil {
			return fenced
		}
		if len(left) == 0 {
			return nil
		}
		if attempt%50 == 0 {
			b.log.Warn().Int64("producer_id", req.ProducerID).Int("partitions", len(left)).Msg("transaction markers not written yet; retrying")
		}
		pending = left
		t := time.NewTimer(txnMarkerRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// writeTo writes the markers of parts (led by leader, per the metadata)
// and returns the partitions to retry, or a TRANSACTION_COORDINATOR_FENCED
// error.
func (m txnMarkers) writeTo(ctx context.Context, leader int32, req txn.MarkerRequest, parts []txnPart) ([]txnPart, error) {
	b := m.b
	if leader == b.cfg.NodeID {
		var left []txnPart
		for _, tp := range parts {
			code, _ := b.appendMarker(ctx, tp.topic, tp.p, req.ProducerID, req.ProducerEpoch, req.CoordinatorEpoch, req.Commit)
			switch code {
			case 0:
			case kerr.TransactionCoordinatorFenced.Code:
				return nil, kerr.TransactionCoordinatorFenced
			default:
				left = append(left, tp)
			}
		}
		return left, nil
	}
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.State != metadata.BrokerAlive || br.Internal == "" {
		return parts, nil
	}
	wr := kmsg.NewPtrWriteTxnMarkersRequest()
	mk := kmsg.NewWriteTxnMarkersRequestMarker()
	mk.ProducerID, mk.ProducerEpoch, mk.Committed, mk.CoordinatorEpoch = req.ProducerID, req.ProducerEpoch, req.Commit, req.CoordinatorEpoch
	for _, tp := range parts {
		if n := len(mk.Topics); n == 0 || mk.Topics[n-1].Topic != tp.topic {
			rt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			rt.Topic = tp.topic
			mk.Topics = append(mk.Topics, rt)
		}
		mk.Topics[len(mk.Topics)-1].Partitions = append(mk.Topics[len(mk.Topics)-1].Partitions, tp.p)
	}
	wr.Markers = []kmsg.WriteTxnMarkersRequestMarker{mk}
	kresp, err := b.nodeRequest(ctx, leader, br.Internal, wr)
	if err != nil {
		b.log.Debug().Err(err).Int32("leader", leader).Msg("send transaction markers")
		return parts, nil
	}
	resp := kresp.(*kmsg.WriteTxnMarkersResponse)
	done := map[txnPart]bool{}
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				switch rp.ErrorCode {
				case 0:
					done[txnPart{rt.Topic, rp.Partition}] = true
				case kerr.TransactionCoordinatorFenced.Code:
					return nil, kerr.TransactionCoordinatorFenced
				}
			}
		}
	}
	var left []txnPart
	for _, tp := range parts {
		if !done[tp] {
			left = append(left, tp)
		}
	}
	return left, nil
}

// markerBatchBytes is the size of a marker's control batch (for the
// leadership's roll accounting).
var markerBatchBytes = int64(len(kafkaproto.AppendBatch(nil, 0, []kafkaproto.KV{{Key: make([]byte, 4), Value: make([]byte, 6)}})))

// appendMarker appends the COMMIT/ABORT marker of producer pid to a
// partition this node leads (under its leadership, as a Produce) and waits
// until the high watermark covers it: a marker counts as written only
// then. It returns a Kafka error code (NOT_LEADER_OR_FOLLOWER when another
// node leads, TRANSACTION_COORDINATOR_FENCED for a coordinator epoch below
// the producer's last marker's) and a message.
func (b *Broker) appendMarker(ctx context.Context, topic string, p int32, pid int64, epoch int16, coordinatorEpoch int32, commit bool) (int16, string) {
	for attempt := 0; ; attempt++ {
		l, code := b.partitionLog(topic, p)
		if code != 0 {
			return code, ""
		}
		var lead *replica.Leadership
		var off int64
		var err error
		if l.Replicated() {
			if lead = b.repl.Leader(b.tp(topic, p)); lead == nil {
				if attempt == 0 {
					if _, err := b.repl.Reconcile(topic, p, b.caughtUp.Load()); err != nil {
						b.log.Warn().Err(err).Str("topic", topic).Int32("partition", p).Msg("install a leadership for a transaction marker")
					}
					continue
				}
				return kerr.NotLeaderForPartition.Code, "no leadership installed"
			}
			leaderEpoch, release, berr := lead.Begin(ctx)
			if berr != nil {
				if errors.Is(berr, replica.ErrRolled) && attempt == 0 {
					continue
				}
				return kerr.NotLeaderForPartition.Code, berr.Error()
			}
			off, err = l.AppendMarker(pid, epoch, coordinatorEpoch, commit, leaderEpoch)
			appended := int64(0)
			if err == nil {
				appended = markerBatchBytes
			}
			release(appended)
		} else {
			_, leaderEpoch, _ := b.store.FSM().PartitionLeader(topic, p)
			off, err = l.AppendMarker(pid, epoch, coordinatorEpoch, commit, max(leaderEpoch, 0))
		}
		if err != nil {
			switch {
			case errors.Is(err, storage.ErrCoordinatorFenced):
				return kerr.TransactionCoordinatorFenced.Code, err.Error()
			case errors.Is(err, storage.ErrInvalidProducerEpoch):
				return kerr.InvalidProducerEpoch.Code, err.Error()
			case errors.Is(err, storage.ErrClosed), errors.Is(err, fencing.ErrNotWriter), errors.Is(err, fencing.ErrLeaseExpired),
				errors.Is(err, fencing.ErrStaleEpoch), errors.Is(err, fencing.ErrUnknownEpoch):
				return kerr.NotLeaderForPartition.Code, err.Error()
			default:
				return kerr.KafkaStorageError.Code, err.Error()
			}
		}
		wctx, cancel := context.WithTimeout(ctx, txnMarkerTimeout)
		if lead != nil {
			err = lead.WaitAcked(wctx, off)
		} else {
			err = l.WaitDurable(wctx, off)
		}
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, replica.ErrDeposed):
			return kerr.NotLeaderForPartition.Code, err.Error()
		case errors.Is(err, context.DeadlineExceeded):
			return kerr.RequestTimedOut.Code, "the marker was not replicated in time"
		case errors.Is(err, context.Canceled):
			return kerr.NotLeaderForPartition.Code, "broker shutting down"
		default:
			return kerr.KafkaStorageError.Code, err.Error()
		}
		if topic == offsetsTopic {
			b.offsetsMarkerCommitted(p, pid, commit)
		}
		return 0, ""
	}
}
