package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Replication of the active segment (DESIGN.md, write path steps 4-5;
// docs/replication.md step 1). For a partition with more than one replica:
//   - the leader's log is in replicated high-watermark mode: its HW is the
//     minimum offset its followers have fetched (and, under
//     storage.fsync=always, its own durable offset);
//   - every follower runs one fetcher per leader node, which fetches with
//     its ReplicaID set from its log end offset, appends the leader's
//     batches unchanged (offsets and epochs kept), waits for them to be
//     durable under fsync=always before fetching on, and takes the leader's
//     HW as its own bound;
//   - acks=all waits for the HW, acks=1 for the leader's own log;
//     consumers read below the HW only.
// Leadership does not move yet: rolls, failover and repair are the next
// steps of docs/replication.md.

// replication is this node's replication state.
type replication struct {
	b *Broker

	// rollKick wakes the rotation loop when an append crossed segment.bytes.
	rollKick chan struct{}

	mu       sync.RWMutex // read-locked on the produce path (leader)
	leading  map[storage.TopicPartition]*leaderPart
	fetchers map[int32]*fetcher // by leader node
}

// leaderPart is a leader's view of one replicated partition.
type leaderPart struct {
	mu       sync.Mutex
	replicas []int32             // the active segment's replicas that count for the HW
	acked    map[int32]int64     // follower → the offset it fetched from last
	fetched  map[int32]time.Time // follower → when it last fetched
	learners map[int32]int64     // former replicas catching up (not counted for the HW)
	wantRF   int                 // the partition's replication factor
	minISR   int                 // min.insync.replicas: fewer counted replicas refuse acks=all

	// rollMu orders appends with a roll: Produce holds it shared across
	// its append, a roll exclusively while it freezes the end offset.
	rollMu    sync.RWMutex
	rolling   bool          // set by a roll: appends wait for rollDone
	rollDone  chan struct{} // closed when the roll in progress ends
	deposed   bool          // leadership ended (unlead): appends refused
	deposedCh chan struct{} // closed when deposed
	bytes     int64         // appended since this node began leading the segment
	since     time.Time     // when it began
	segment   int64         // the active segment this leadership belongs to
	epoch     int32
	base      int64       // the segment's base offset
	next      *leaderPart // this node's leadership of the next segment, once installed (rollMu)
	// limits: the topic's segment.bytes and segment.ms (set by reconcile)
	segBytes, segMs int64
}

func newReplication(b *Broker) *replication {
	return &replication{b: b, leading: map[storage.TopicPartition]*leaderPart{}, fetchers: map[int32]*fetcher{}, rollKick: make(chan struct{}, 1)}
}

// lead records that this node leads tp's active segment seg (and no
// longer fetches tp from anyone).
func (r *replication) lead(tp storage.TopicPartition, l *storage.Log, seg metadata.Segment, wantRF, minISR int, segBytes, segMs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.fetchers {
		f.drop(tp)
	}
	lp, ok := r.leading[tp]
	if !ok || lp.segment != seg.ID {
		lp = &leaderPart{acked: map[int32]int64{}, fetched: map[int32]time.Time{}, learners: map[int32]int64{}, since: time.Now(),
			segment: seg.ID, epoch: seg.Epoch, base: seg.BaseOffset, deposedCh: make(chan struct{})}
		if ok {
			old := r.leading[tp]
			old.rollMu.Lock()
			old.next = lp
			old.rollMu.Unlock()
			defer old.depose() // a newer segment of this node replaces it
		}
		r.leading[tp] = lp
	}
	l.SetWriterEpoch(seg.Epoch) // storage appends at this epoch only (fencing)
	lp.mu.Lock()
	lp.replicas = slices.Clone(seg.Replicas)
	lp.wantRF, lp.minISR = wantRF, minISR
	bound := lp.boundLocked(r.b.cfg.NodeID)
	lp.mu.Unlock()
	if bound >= 0 {
		// No followers (a segment down to its leader): the high
		// watermark follows the leader's own log, or acks=all and rolls
		// would wait for a fetch that never comes.
		l.AdvanceHighWatermark(bound)
	}
	lp.rollMu.Lock()
	lp.segBytes, lp.segMs = segBytes, segMs
	lp.rollMu.Unlock()
}

// unlead forgets tp's leadership (another node leads it now).
func (r *replication) unlead(tp storage.TopicPartition) {
	r.mu.Lock()
	lp := r.leading[tp]
	delete(r.leading, tp)
	r.mu.Unlock()
	if l, ok := r.b.engine.Log(tp); ok {
		l.SetWriterEpoch(fencing.NoWriter)
	}
	if lp != nil {
		lp.depose()
	}
}

// depose ends this leadership: no append starts after it returns (an
// append in progress holds rollMu shared), and acks=all waits for appends
// made under it fail instead of being released by a high watermark the
// node learns later as a follower or learner.
func (lp *leaderPart) depose() {
	lp.rollMu.Lock()
	defer lp.rollMu.Unlock()
	if !lp.deposed {
		lp.deposed = true
		close(lp.deposedCh)
	}
}

// isDeposed reports whether the leadership ended.
func (lp *leaderPart) isDeposed() bool {
	select {
	case <-lp.deposedCh:
		return true
	default:
		return false
	}
}

// sealedByOwnRoll reports whether a record at or below last, appended
// under this (now deposed) leadership, lies in the segment this node
// sealed by a roll that kept it the leader: the next segment's epoch is
// one higher and starts above last. Such a roll committed only once every
// replica of the sealed segment held it, so the record is acknowledged.
// (A failover never hands the next segment to the deposed leader.)
func (lp *leaderPart) sealedByOwnRoll(last int64) bool {
	lp.rollMu.RLock()
	n := lp.next
	lp.rollMu.RUnlock()
	return n != nil && n.epoch == lp.epoch+1 && last < n.base
}

// errDeposed fails acks=all waits of a leadership that ended.
var errDeposed = errors.New("broker: no longer the leader of this segment")

func (r *replication) leader(tp storage.TopicPartition) *leaderPart {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.leading[tp]
}

// fetched records that follower replica has everything below offset of tp
// and advances the leader's HW to the minimum over the followers. It
// reports false when replica is not in tp's replica set.
func (r *replication) fetched(tp storage.TopicPartition, l *storage.Log, replica int32, offset int64) bool {
	lp := r.leader(tp)
	if lp == nil {
		return false
	}
	lp.mu.Lock()
	if replica == r.b.cfg.NodeID {
		lp.mu.Unlock()
		return false
	}
	if !slices.Contains(lp.replicas, replica) {
		// A former replica catching up to rejoin: served, not counted.
		if len(lp.replicas) >= lp.wantRF {
			lp.mu.Unlock()
			return false
		}
		lp.learners[replica] = offset
		lp.mu.Unlock()
		return true
	}
	lp.acked[replica] = offset
	lp.fetched[replica] = time.Now()
	bound := lp.boundLocked(r.b.cfg.NodeID)
	lp.mu.Unlock()
	// Without a live lease the high watermark stays frozen (DESIGN.md,
	// leases): nothing is acknowledged by a leader that may have been
	// replaced; the next fetch after a renewal moves it on.
	if bound >= 0 && r.b.leaseValid() {
		l.AdvanceHighWatermark(bound)
	}
	return true
}

// boundLocked is the minimum offset the counted followers acknowledged, or
// -1 while one of them has not fetched yet. lp.mu held.
func (lp *leaderPart) boundLocked(self int32) int64 {
	bound := int64(-1)
	for _, id := range lp.replicas {
		if id == self {
			continue
		}
		off, ok := lp.acked[id]
		if !ok {
			return -1
		}
		if bound < 0 || off < bound {
			bound = off
		}
	}
	if bound < 0 { // no followers left: the leader alone
		return 1<<63 - 1
	}
	return bound
}

// laggards returns the counted followers that have not fetched for lagMax
// (counting from when this node began leading the segment).
func (lp *leaderPart) laggards(self int32, lagMax time.Duration) []int32 {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var out []int32
	for _, id := range lp.replicas {
		if id == self {
			continue
		}
		last, ok := lp.fetched[id]
		if !ok {
			last = lp.since
		}
		if time.Since(last) > lagMax {
			out = append(out, id)
		}
	}
	return out
}

// fetchingNow reports whether follower id of the active segment fetched
// within lagMax.
func (lp *leaderPart) fetchingNow(id int32, lagMax time.Duration) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	last, ok := lp.fetched[id]
	return ok && slices.Contains(lp.replicas, id) && time.Since(last) <= lagMax
}

// enoughReplicas reports whether the replicas counted for the HW (the
// leader included) reach min.insync.replicas.
func (lp *leaderPart) enoughReplicas() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return len(lp.replicas) >= lp.minISR
}

// learnerSlack is how far (in offsets) behind the log end a learner may
// be for a roll to take it back; the roll then waits for it to catch up
// fully while appends pause.
const learnerSlack = 10000

// caughtUpLearners returns learners whose fetch offset is within
// learnerSlack of leo, at most as many as the replica set lacks.
func (lp *leaderPart) caughtUpLearners(leo int64) []int32 {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	room := lp.wantRF - len(lp.replicas)
	var out []int32
	for id, off := range lp.learners {
		if off >= leo-learnerSlack && len(out) < room {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// learnerAt is the fetch offset a learner last reported (-1: none).
func (lp *leaderPart) learnerAt(id int32) int64 {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if off, ok := lp.learners[id]; ok {
		return off
	}
	return -1
}

// waitFollowers waits until every follower among ids (self excepted) has
// fetched from offset end or beyond, i.e. holds everything below end. It
// does not touch the HW: a roll that leaves laggards out waits with it
// and advances the HW only once the smaller replica set is committed.
func (lp *leaderPart) waitFollowers(ctx context.Context, self int32, ids []int32, end int64) error {
	for {
		lp.mu.Lock()
		behind := int32(-1)
		for _, id := range ids {
			if id == self {
				continue
			}
			if off, ok := lp.acked[id]; !ok || off < end {
				behind = id
				break
			}
		}
		lp.mu.Unlock()
		if behind < 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %d short of offset %d: %w", behind, end, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// follow makes this node fetch tp from leader.
func (r *replication) follow(tp storage.TopicPartition, id metadata.TopicID, leader, epoch int32, l *storage.Log) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for lid, f := range r.fetchers {
		if lid != leader {
			f.drop(tp)
		}
	}
	f, ok := r.fetchers[leader]
	if !ok {
		f = &fetcher{r: r, leader: leader, parts: map[storage.TopicPartition]*followed{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
		r.fetchers[leader] = f
		r.b.bgWG.Add(1)
		go f.run()
	}
	f.add(tp, &followed{id: id, epoch: epoch, log: l})
}

// unfollow stops fetching tp from anyone; once it returns no fetcher
// appends to tp.
func (r *replication) unfollow(tp storage.TopicPartition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.fetchers {
		f.drop(tp)
	}
}

// stopAll stops the fetchers (shutdown).
func (r *replication) stopAll() {
	r.mu.Lock()
	fs := r.fetchers
	r.fetchers = map[int32]*fetcher{}
	r.mu.Unlock()
	for _, f := range fs {
		close(f.stop)
	}
}

// followed is one partition a fetcher replicates.
type followed struct {
	id    metadata.TopicID
	epoch int32
	log   *storage.Log
}

// fetcher replicates every partition this node follows from one leader.
type fetcher struct {
	r      *replication
	leader int32

	mu    sync.Mutex
	parts map[storage.TopicPartition]*followed
	// inflight cancels the fetch in flight (a long poll that does not
	// carry a partition just added or changed); nil between fetches.
	inflight context.CancelFunc

	kick chan struct{}
	stop chan struct{}
}

func (f *fetcher) add(tp storage.TopicPartition, p *followed) {
	f.mu.Lock()
	if cur, ok := f.parts[tp]; ok && *cur == *p {
		f.mu.Unlock()
		return // unchanged: keep in-flight answers valid
	}
	f.parts[tp] = p
	if f.inflight != nil {
		f.inflight() // re-fetch at once with the new partition or epoch
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *fetcher) drop(tp storage.TopicPartition) {
	f.mu.Lock()
	delete(f.parts, tp)
	f.mu.Unlock()
}

func (f *fetcher) snapshot() map[storage.TopicPartition]*followed {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[storage.TopicPartition]*followed, len(f.parts))
	for k, v := range f.parts {
		out[k] = v
	}
	return out
}

func (f *fetcher) run() {
	b := f.r.b
	defer b.bgWG.Done()
	backoff := time.Duration(0)
	for {
		select {
		case <-f.stop:
			return
		case <-b.shutdown:
			return
		default:
		}
		parts := f.snapshot()
		if len(parts) == 0 {
			select {
			case <-f.kick:
			case <-f.stop:
				return
			case <-b.shutdown:
				return
			}
			continue
		}
		progressed, err := f.fetchOnce(parts)
		if err == nil || progressed || errors.Is(err, context.Canceled) {
			// Some partitions moved on, or the set changed: go on at
			// once (a partition that failed is retried next round).
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), 500*time.Millisecond)
		b.log.Debug().Err(err).Int32("leader", f.leader).Msg("replica fetch")
		select {
		case <-time.After(backoff):
		case <-f.kick: // the metadata moved on (new epoch, new partition)
		case <-f.stop:
			return
		case <-b.shutdown:
			return
		}
	}
}

// fetchOnce sends one Fetch to the leader for every followed partition and
// appends what comes back. It reports whether any partition was answered
// without an error (then the fetcher goes on without backing off), and
// the first error.
func (f *fetcher) fetchOnce(parts map[storage.TopicPartition]*followed) (progressed bool, err error) {
	b := f.r.b
	br, ok := b.store.FSM().Broker(f.leader)
	if !ok || br.State != metadata.BrokerAlive {
		return false, errors.New("leader not alive")
	}
	cl, err := b.fwd.client(br.Kafka)
	if err != nil {
		return false, err
	}
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return false, errors.New("no connection to the leader")
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = b.cfg.NodeID
	req.MaxWaitMillis = 500
	req.MinBytes = 1
	req.MaxBytes = 16 << 20
	byTopic := map[string]int{}
	byID := map[[16]byte]string{}
	for tp, p := range parts {
		i, ok := byTopic[tp.Topic]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = tp.Topic, p.id
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			byTopic[tp.Topic] = i
			byID[p.id] = tp.Topic
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = tp.Partition
		rp.FetchOffset = p.log.LogEndOffset()
		rp.CurrentLeaderEpoch = p.epoch
		rp.PartitionMaxBytes = 4 << 20
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	ctx, cancel := context.WithTimeout(b.bgCtx, 10*time.Second)
	defer cancel()
	f.mu.Lock()
	same := len(f.parts) == len(parts)
	for tp, p := range parts {
		same = same && f.parts[tp] == p
	}
	if !same {
		f.mu.Unlock()
		return false, context.Canceled // changed since the snapshot
	}
	f.inflight = cancel
	f.mu.Unlock()
	kresp, err := seeds[0].Request(ctx, req)
	f.mu.Lock()
	f.inflight = nil
	f.mu.Unlock()
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return false, context.Canceled
		}
		return false, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 {
		return false, kerr.ErrorForCode(resp.ErrorCode)
	}
	var firstErr error
	for _, rt := range resp.Topics {
		topic := rt.Topic
		if n, ok := byID[rt.TopicID]; ok && topic == "" {
			topic = n
		}
		for _, rp := range rt.Partitions {
			tp := storage.TopicPartition{Topic: topic, Partition: rp.Partition}
			p := parts[tp]
			if p == nil {
				continue
			}
			if rp.ErrorCode == kerr.OffsetOutOfRange.Code && rp.LogStartOffset > p.log.LogEndOffset() {
				// The leader no longer has what this node lacks: a
				// learner restarts its copy at the leader's log start
				// (restartLearner leaves a replica's log alone).
				f.drop(tp)
				b.bgWG.Add(1)
				go func() {
					defer b.bgWG.Done()
					b.restartLearner(tp, p.id, rp.LogStartOffset)
				}()
			}
			if rp.ErrorCode != 0 {
				if firstErr == nil {
					firstErr = kerr.ErrorForCode(rp.ErrorCode)
				}
				continue
			}
			if len(rp.RecordBatches) > 0 {
				// Append only while this fetcher still follows the
				// partition: a drop (leadership moved, or a failover's
				// fence) holds f.mu, so nothing is appended after it.
				f.mu.Lock()
				if f.parts[tp] != p {
					f.mu.Unlock()
					continue
				}
				res, err := p.log.AppendReplica(rp.RecordBatches)
				f.mu.Unlock()
				if err != nil {
					b.log.Warn().Err(err).Str("tp", tp.String()).Msg("replica append failed")
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				progressed = true
				// The next fetch tells the leader we hold everything below
				// our log end offset: under fsync=always that must be durable.
				if b.cfg.Storage.Fsync == "always" {
					if err := p.log.WaitDurable(ctx, res.LastOffset); err != nil {
						return progressed, err
					}
				}
			}
			p.log.AdvanceHighWatermark(rp.HighWatermark)
			progressed = true // this partition is healthy
			// The leader's log start (retention, DeleteRecords, group
			// checkpoints) moves here too, within what is committed.
			if start := min(rp.LogStartOffset, p.log.HighWatermark()); start > p.log.LogStartOffset() {
				if _, err := p.log.DeleteRecordsBefore(start); err != nil {
					b.log.Warn().Err(err).Str("tp", tp.String()).Int64("start", start).Msg("follow the leader's log start")
				}
			}
		}
	}
	return progressed, firstErr
}

// isReplicaFetch reports a follower's fetch.
func isReplicaFetch(req *kmsg.FetchRequest) bool { return req.ReplicaID >= 0 }

// ReplicaLEO implements metadata.ReplicaProber: node's log end offset of
// a partition once it applied the fence (fenceIndex) and stopped fetching.
func (b *Broker) ReplicaLEO(ctx context.Context, node int32, topic string, partition int32, segment int64, epoch int32, fenceIndex uint64) (int64, error) {
	if node == b.cfg.NodeID {
		return b.localReplicaLEO(ctx, topic, partition, fenceIndex)
	}
	br, ok := b.store.FSM().Broker(node)
	if !ok || br.Internal == "" {
		return 0, fmt.Errorf("%w: node %d has no internal address", metadata.ErrUnreachable, node)
	}
	body, err := json.Marshal(replicaLEORequest{Topic: topic, Partition: partition, Segment: segment, Epoch: epoch, FenceIndex: fenceIndex})
	if err != nil {
		return 0, err
	}
	var out struct {
		LEO int64 `json:"leo"`
	}
	if err := b.call(ctx, br.Internal, "/v1/replica-leo", body, &out); err != nil {
		return 0, err
	}
	return out.LEO, nil
}

type replicaLEORequest struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	Segment    int64  `json:"segment"`
	Epoch      int32  `json:"epoch"`
	FenceIndex uint64 `json:"fence_index"`
}

// localReplicaLEO waits for the fence, stops fetching the partition and
// reports the log end offset.
func (b *Broker) localReplicaLEO(ctx context.Context, topic string, partition int32, fenceIndex uint64) (int64, error) {
	if err := b.store.FSM().WaitApplied(ctx, fenceIndex); err != nil {
		return 0, err
	}
	tp := b.tp(topic, partition)
	b.repl.unfollow(tp)
	l, ok := b.engine.Log(tp)
	if !ok {
		return 0, fmt.Errorf("%w: no local log of %s", metadata.ErrUnknownTopic, tp)
	}
	return l.LogEndOffset(), nil
}
