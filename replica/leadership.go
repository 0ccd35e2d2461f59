package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Leadership is this node's leadership of one replicated partition's
// active segment: the followers' progress, the high watermark derived
// from it, and the order of appends with a roll.
type Leadership struct {
	m   *Manager
	tp  storage.TopicPartition
	log *storage.Log

	// Fixed at creation.
	segment int64 // the active segment this leadership belongs to
	epoch   int32
	base    int64     // the segment's base offset
	since   time.Time // when this node began leading the segment
	// start is the log end offset when this node began leading the
	// segment (at least base): every offset below it may have been
	// acknowledged before, so a high watermark below it is not known yet
	// (HighWatermarkKnown).
	start int64

	bytes atomic.Int64 // appended since this node began leading the segment

	ackMu    sync.Mutex
	replicas []int32             // the active segment's replicas that count for the HW
	acked    map[int32]int64     // follower → the offset it fetched from last
	fetchAt  map[int32]time.Time // follower → when it last fetched
	// rounds: follower → the fetch session whose rounds count as its
	// fetches of this partition (FetchedIn): an idle partition is not
	// visited each round, so its fetchAt does not move.
	rounds map[int32]*FetchRounds
	// logStarts are the log start offsets the followers reported in
	// their fetches (DeleteRecords waits for them, as Kafka's
	// DelayedDeleteRecords waits for the replicas' low watermarks).
	logStarts map[int32]int64
	learners  map[int32]int64 // nodes catching up to join (not counted for the HW)
	wantRF    int             // the partition's replication factor
	target    []int32         // a reassignment's replica set (nil: none)
	elect     int32           // a preferred-leader election's node (-1: none)
	minISR    int             // min.insync.replicas: fewer counted replicas refuse acks=all
	progress  chan struct{}   // closed and replaced whenever acked or learners move

	// rollMu orders appends with a roll and with deposing: appends hold
	// it shared from Begin to their release, a roll and depose take it
	// exclusively (never across I/O).
	rollMu    sync.RWMutex
	rolling   bool          // a roll is in progress: appends wait for rollDone
	rollDone  chan struct{} // closed when the roll in progress ends
	deposed   bool          // the leadership ended: appends refused
	deposedCh chan struct{} // closed when deposed
	next      *Leadership   // this node's leadership of the next segment, once installed
	// segBytes, segMs: the topic's segment.bytes and segment.ms.
	segBytes, segMs int64

	// schedAt is when the roll loop is to look at this leadership next
	// (zero: not scheduled). Guarded by Manager.sched.mu.
	schedAt time.Time
}

func newLeadership(m *Manager, tp storage.TopicPartition, l *storage.Log, seg metadata.Segment) *Leadership {
	return &Leadership{m: m, tp: tp, log: l, segment: seg.ID, epoch: seg.Epoch, base: seg.BaseOffset, since: m.clock.Now(),
		start: max(seg.BaseOffset, l.LogEndOffset()),
		acked: map[int32]int64{}, fetchAt: map[int32]time.Time{}, rounds: map[int32]*FetchRounds{}, learners: map[int32]int64{}, logStarts: map[int32]int64{},
		progress: make(chan struct{}), deposedCh: make(chan struct{})}
}

// Epoch is the segment's leader epoch, stamped into every batch.
func (lp *Leadership) Epoch() int32 { return lp.epoch }

// HighWatermarkKnown reports whether the log's high watermark reached the
// log end this node had when it began leading the segment. Below it the
// high watermark can be behind offsets already acknowledged: a new
// segment leader's is the one it last learned as a follower, and a leader
// restarted without a clean close starts from its log start until the
// followers fetch again. Offsets derived from it are then not answered
// (ListOffsets: OFFSET_NOT_AVAILABLE, as Kafka's leader answers below its
// leader epoch's start offset).
func (lp *Leadership) HighWatermarkKnown() bool { return lp.log.HighWatermark() >= lp.start }

// Segment is the id of the active segment led.
func (lp *Leadership) Segment() int64 { return lp.segment }

// Log is the partition's log.
func (lp *Leadership) Log() *storage.Log { return lp.log }

// Begin starts an append under this leadership: it checks the lease
// (waiting up to Config.LeaseWait for a renewal) and that the leadership
// is neither deposed nor rolling. On success the caller appends at epoch
// and then calls release with the bytes it appended (0 if the append
// failed); no roll or depose completes in between. A roll in progress is
// waited for (up to Config.ParkWait) and answered ErrRolled: the caller
// looks the partition's leader up again, since it may have moved.
func (lp *Leadership) Begin(ctx context.Context) (epoch int32, release func(appended int64), err error) {
	if !lp.m.lease.Valid() && !lp.m.lease.Wait(ctx, lp.m.cfg.LeaseWait) {
		return 0, nil, ErrLeaseExpired
	}
	lp.rollMu.RLock()
	if lp.deposed {
		lp.rollMu.RUnlock()
		return 0, nil, ErrDeposed
	}
	if lp.rolling {
		done := lp.rollDone
		lp.rollMu.RUnlock()
		t := time.NewTimer(lp.m.cfg.ParkWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-lp.m.ctx.Done():
		}
		return 0, nil, ErrRolled
	}
	return lp.epoch, lp.release, nil
}

// release ends an append begun by Begin.
func (lp *Leadership) release(appended int64) {
	check := false
	if appended > 0 {
		n := lp.bytes.Add(appended)
		// The segment is full (segBytes changes under rollMu, held shared
		// here), or this is its first append: segment.ms counts from
		// now on (the roll loop schedules it).
		check = (lp.segBytes > 0 && n >= lp.segBytes && n-appended < lp.segBytes) || (n == appended && lp.segMs > 0)
	}
	lp.rollMu.RUnlock()
	if check {
		lp.m.checkRoll(lp)
	}
}

// EnoughReplicas reports whether the replicas counted for the high
// watermark (the leader included) reach min.insync.replicas.
func (lp *Leadership) EnoughReplicas() bool {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	return len(lp.replicas) >= lp.minISR
}

// Deposed reports whether the leadership ended.
func (lp *Leadership) Deposed() bool {
	select {
	case <-lp.deposedCh:
		return true
	default:
		return false
	}
}

// depose ends this leadership: no append starts after it returns (an
// append in progress holds rollMu shared), and acks=all waits for appends
// made under it fail instead of being released by a high watermark the
// node learns later as a follower or learner.
func (lp *Leadership) depose() {
	lp.rollMu.Lock()
	defer lp.rollMu.Unlock()
	if !lp.deposed {
		lp.deposed = true
		close(lp.deposedCh)
	}
}

// sealedByOwnRoll reports whether a record at or below last, appended
// under this (now deposed) leadership, lies in the segment this node
// sealed by a roll that kept it the leader: the next segment's epoch is
// one higher and starts above last. Such a roll committed only once every
// replica of the sealed segment held it, so the record is acknowledged.
// (A failover never hands the next segment to the deposed leader.)
func (lp *Leadership) sealedByOwnRoll(last int64) bool {
	lp.rollMu.RLock()
	n := lp.next
	lp.rollMu.RUnlock()
	return n != nil && n.epoch == lp.epoch+1 && last < n.base
}

// Acked reports, without blocking, whether the record at last (appended
// under this leadership) is acknowledged (true, nil), lost to a deposing
// (true, ErrDeposed), or still pending (false, nil).
func (lp *Leadership) Acked(last int64) (bool, error) {
	if lp.Deposed() {
		if lp.sealedByOwnRoll(last) {
			return true, nil
		}
		return true, ErrDeposed
	}
	return lp.log.HighWatermark() > last, nil
}

// WaitAcked waits until the high watermark covers last (acks=all). It
// fails with ErrDeposed if the leadership ends first, or had ended by the
// time the high watermark covers it: a deposed leader acknowledges
// nothing, except what its own roll sealed.
func (lp *Leadership) WaitAcked(ctx context.Context, last int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lp.deposedCh:
			cancel()
		case <-wctx.Done():
		}
	}()
	err := lp.log.WaitHighWatermark(wctx, last)
	if lp.Deposed() {
		if lp.sealedByOwnRoll(last) {
			return nil
		}
		return ErrDeposed
	}
	return err
}

// WaitLogStart waits until every counted follower reported a log start
// at or above start (DeleteRecords: an answered deletion holds on every
// replica, so a failover cannot bring the records back). It fails with
// ErrDeposed when the leadership ends first.
func (lp *Leadership) WaitLogStart(ctx context.Context, start int64) error {
	for {
		lp.ackMu.Lock()
		done := true
		for _, id := range lp.replicas {
			if id != lp.m.cfg.NodeID && lp.logStarts[id] < start {
				done = false
			}
		}
		ch := lp.progress
		lp.ackMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-lp.deposedCh:
			return ErrDeposed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// advance moves the log's high watermark to bound, but only under a live
// lease: without one it stays frozen (docs/architecture.md, "Leases"), and
// the next fetch after a renewal moves it on.
func (lp *Leadership) advance(bound int64) {
	if lp.m.lease.Valid() {
		lp.log.AdvanceHighWatermark(bound)
	}
}

// fetched records a follower's fetch from offset, with its log start
// (-1: not reported; see Manager.Fetched), made in the rounds of session r
// (nil: none). frozen reports that the high watermark stayed below what
// the followers acknowledged (no live lease, see advance; or the leader's
// own durable offset behind): the fetch must be looked at again.
func (lp *Leadership) fetched(replica int32, offset, logStart int64, r *FetchRounds) (ok, frozen bool) {
	self := lp.m.cfg.NodeID
	lp.ackMu.Lock()
	if replica == self {
		lp.ackMu.Unlock()
		return false, false
	}
	if !slices.Contains(lp.replicas, replica) {
		// A node catching up to join: served, not counted.
		if len(lp.replicas) >= lp.wantRF && !slices.Contains(lp.target, replica) {
			lp.ackMu.Unlock()
			return false, false
		}
		prev, seen := lp.learners[replica]
		lp.learners[replica] = offset
		lp.notifyLocked()
		lp.ackMu.Unlock()
		if !seen || prev != offset {
			// A roll takes a caught-up learner in (caughtUpLearners).
			lp.m.checkRoll(lp)
		}
		return true, false
	}
	prev, seen := lp.acked[replica]
	lp.acked[replica] = offset
	now := lp.m.clock.Now()
	lp.fetchAt[replica] = now
	if r != nil {
		lp.rounds[replica] = r
	} else {
		delete(lp.rounds, replica)
	}
	prevStart, startSeen := lp.logStarts[replica]
	if logStart >= 0 {
		lp.logStarts[replica] = logStart
	}
	if !seen || prev != offset || (logStart >= 0 && (!startSeen || prevStart != logStart)) {
		lp.notifyLocked() // an idle follower's repeated fetch wakes nobody
	}
	bound := lp.boundLocked()
	lp.ackMu.Unlock()
	if bound >= 0 {
		lp.advance(bound)
		// Below the bound: no live lease (advance), or the leader's own
		// durable offset is behind (storage moves the HW on by itself
		// then). Either way the caller looks again; a lease renewed
		// right after advance is not missed.
		frozen = bound > lp.log.HighWatermark()
	}
	return true, frozen
}

// forgot detaches follower replica's fetches of this partition from
// session r (the session dropped the partition, or ended): its last round
// counts as its last fetch.
func (lp *Leadership) forgot(replica int32, r *FetchRounds) {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	if lp.rounds[replica] != r {
		return
	}
	delete(lp.rounds, replica)
	if at := r.last(); at.After(lp.fetchAt[replica]) {
		lp.fetchAt[replica] = at
	}
}

// lastFetchLocked is when follower id last fetched this partition: its
// own fetch, or the latest round of the session it fetches it in. ok is
// false if it never did. ackMu held.
func (lp *Leadership) lastFetchLocked(id int32) (time.Time, bool) {
	last, ok := lp.fetchAt[id]
	if r := lp.rounds[id]; r != nil {
		if at := r.last(); !ok || at.After(last) {
			last, ok = at, true
		}
	}
	return last, ok
}

// notifyLocked wakes those waiting for followers' progress. ackMu held.
func (lp *Leadership) notifyLocked() {
	close(lp.progress)
	lp.progress = make(chan struct{})
}

// boundLocked is the minimum offset the counted followers acknowledged,
// or -1 while one of them has not fetched yet. ackMu held.
func (lp *Leadership) boundLocked() int64 {
	bound := int64(-1)
	for _, id := range lp.replicas {
		if id == lp.m.cfg.NodeID {
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

// Replicas is the active segment's replica set as this leader counts it.
func (lp *Leadership) Replicas() []int32 {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	return slices.Clone(lp.replicas)
}

// laggards returns the counted followers that have not fetched for
// LagTimeMax (counting from when this node began leading the segment).
func (lp *Leadership) laggards() []int32 {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	now := lp.m.clock.Now()
	var out []int32
	for _, id := range lp.replicas {
		if id == lp.m.cfg.NodeID {
			continue
		}
		last, ok := lp.lastFetchLocked(id)
		if !ok {
			last = lp.since
		}
		if now.Sub(last) > lp.m.cfg.LagTimeMax {
			out = append(out, id)
		}
	}
	return out
}

// FollowerLag is how far one follower of a segment this node leads is
// behind: records below the leader's log end it has not fetched, and the
// time since its last fetch (since the leadership began if none).
type FollowerLag struct {
	TP      storage.TopicPartition
	Replica int32
	Records int64
	Since   time.Duration
}

// FollowerLags lists the lag of every follower of the segments this node
// leads (metrics).
func (m *Manager) FollowerLags() []FollowerLag {
	now := m.clock.Now()
	var out []FollowerLag
	for _, lp := range m.leadingList() {
		leo := lp.log.LogEndOffset()
		lp.ackMu.Lock()
		for _, id := range lp.replicas {
			if id == m.cfg.NodeID {
				continue
			}
			last, ok := lp.lastFetchLocked(id)
			if !ok {
				last = lp.since
			}
			acked, seen := lp.acked[id]
			if !seen {
				acked = lp.base
			}
			out = append(out, FollowerLag{TP: lp.tp, Replica: id, Records: max(0, leo-acked), Since: now.Sub(last)})
		}
		lp.ackMu.Unlock()
	}
	return out
}

// FetchingNow reports whether follower id of the active segment fetched
// within LagTimeMax.
func (lp *Leadership) FetchingNow(id int32) bool {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	last, ok := lp.lastFetchLocked(id)
	return ok && slices.Contains(lp.replicas, id) && lp.m.clock.Now().Sub(last) <= lp.m.cfg.LagTimeMax
}

// learnerSlack is how far (in offsets) behind the log end a learner may
// be for a roll to take it in; the roll then waits for it to catch up
// fully while appends pause.
const learnerSlack = 10000

// caughtUpLearners returns learners whose fetch offset is within
// learnerSlack of leo, at most as many as the replica set lacks.
func (lp *Leadership) caughtUpLearners(leo int64) []int32 {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	room := lp.wantRF - len(lp.replicas)
	var out []int32
	for id, off := range lp.learners {
		if off >= leo-learnerSlack && (len(out) < room || slices.Contains(lp.target, id)) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// reassignDone reports whether a reassignment's target nodes are all
// replicas while others still are: the roll that drops those is due.
func (lp *Leadership) reassignDone() bool {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	if lp.target == nil {
		return false
	}
	for _, id := range lp.target {
		if !slices.Contains(lp.replicas, id) {
			return false
		}
	}
	return len(lp.replicas) > len(lp.target)
}

// electDue reports whether a preferred-leader election asks this
// leadership to hand on to another node.
func (lp *Leadership) electDue() bool {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	return lp.elect >= 0 && lp.elect != lp.m.cfg.NodeID
}

// waitProgress waits until every node among ids (self excepted) has
// fetched from offset end or beyond, counting followers (acked) or
// learners. It does not touch the HW: a roll that leaves laggards out
// waits with it and advances the HW only once the smaller replica set is
// committed.
func (lp *Leadership) waitProgress(ctx context.Context, ids []int32, end int64, learners bool) error {
	for {
		lp.ackMu.Lock()
		behind := int32(-1)
		for _, id := range ids {
			if id == lp.m.cfg.NodeID {
				continue
			}
			off, ok := lp.acked[id]
			if learners {
				off, ok = lp.learners[id]
			}
			if !ok || off < end {
				behind = id
				break
			}
		}
		ch := lp.progress
		lp.ackMu.Unlock()
		if behind < 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica: node %d short of offset %d: %w", behind, end, ctx.Err())
		case <-ch:
		case <-lp.deposedCh:
			return ErrDeposed
		}
	}
}
