package broker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Rotation (DESIGN.md, planned roll): when a replicated partition's active
// segment reaches segment.bytes or segment.ms on its leader, the leader
// stops appending, waits until every replica holds everything it has,
// and asks the controller to commit RollSegment (a compare-and-set on the
// segment and epoch) sealing the segment at its log end offset. The
// controller picks the next leader among the sealed segment's live
// replicas, the least loaded one other than the current leader, so write
// load wanders over the cluster. Every node's reconcile pass then swaps
// roles: the new leader stops fetching and accepts writes at the next
// epoch (its log already holds the sealed bytes and, through
// AppendReplica, the producer state); the old leader fetches from it.
// Produce requests that reach the old leader meanwhile are answered
// NOT_LEADER_OR_FOLLOWER, or forwarded once the metadata moved on.

// rollWaitReplicas bounds how long a roll waits for replicas to catch up
// before giving up (and resuming appends).
const rollWaitReplicas = 5 * time.Second

// rotationLoop checks the partitions this node leads for due rolls.
func (b *Broker) rotationLoop() {
	defer b.bgWG.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	busy := map[storage.TopicPartition]bool{}
	done := make(chan storage.TopicPartition, 16)
	for {
		select {
		case <-b.shutdown:
			return
		case tp := <-done:
			delete(busy, tp)
			continue
		case <-t.C:
		case <-b.repl.rollKick:
		}
		for tp, lp := range b.repl.snapshotLeading() {
			if busy[tp] || !b.rollDue(tp, lp) {
				continue
			}
			busy[tp] = true
			b.bgWG.Add(1)
			go func() {
				defer b.bgWG.Done()
				b.roll(tp, lp)
				select {
				case done <- tp:
				case <-b.shutdown:
				}
			}()
		}
	}
}

// commitRoll commits a roll's RollSegment. A failed Apply is ambiguous
// (it may have committed after a timeout or a controller change), so the
// roll never resumes appending to the segment after one: that could hand
// out offsets at or above the sealed end that the next segment reuses, and
// acknowledge them. It retries the same compare-and-set until it commits
// (true) or the metadata shows the segment superseded — by this roll or a
// failover — (false: reconcile hands the partition on, and appends stay
// blocked meanwhile).
func (b *Broker) commitRoll(tp storage.TopicPartition, seg metadata.Segment, cmd metadata.RollSegment) bool {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(b.bgCtx, 10*time.Second)
		err := b.store.Apply(actx, cmd)
		acancel()
		if err == nil {
			return true
		}
		moved := errors.Is(err, metadata.ErrPreconditionFailed)
		if t, ok := b.store.FSM().Topic(tp.Topic); !ok || tp.Partition >= t.Partitions || t.Parts[tp.Partition].Active().ID != seg.ID {
			moved = true
		}
		if moved || b.shuttingDown() {
			b.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Int("attempts", attempt).
				Msg("roll not committed by this node: the segment was superseded; appends to it stay stopped")
			b.kickReconcile()
			return false
		}
		b.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Int("attempt", attempt).Msg("roll commit failed; retrying the same compare-and-set")
		select {
		case <-time.After(backoff):
		case <-b.shutdown:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// laggards are the followers a roll should leave out: those that have not
// fetched for replica.lag-time-max, and those whose broker the controller
// has fenced (its lease ran out: no need to wait for the lag limit).
func (b *Broker) laggards(lp *leaderPart) []int32 {
	out := lp.laggards(b.cfg.NodeID, b.cfg.Replica.LagTimeMax)
	lp.mu.Lock()
	replicas := slices.Clone(lp.replicas)
	lp.mu.Unlock()
	for _, id := range replicas {
		if id == b.cfg.NodeID || slices.Contains(out, id) {
			continue
		}
		if br, ok := b.store.FSM().Broker(id); !ok || br.State != metadata.BrokerAlive {
			out = append(out, id)
		}
	}
	return out
}

// snapshotLeading copies the set of replicated partitions this node leads.
func (r *replication) snapshotLeading() map[storage.TopicPartition]*leaderPart {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[storage.TopicPartition]*leaderPart, len(r.leading))
	for k, v := range r.leading {
		out[k] = v
	}
	return out
}

// rollDue reports whether tp's active segment reached segment.bytes or
// segment.ms and its topic rotates.
func (b *Broker) rollDue(tp storage.TopicPartition, lp *leaderPart) bool {
	v, set, internal, ok := b.store.FSM().TopicConfigValue(tp.Topic, "segment.rotate")
	if !ok {
		return false
	}
	if internal || (set && v == "false") {
		if len(b.laggards(lp)) > 0 {
			return true
		}
		l, ok := b.engine.Log(tp)
		return ok && len(lp.caughtUpLearners(l.LogEndOffset())) > 0
	}
	lp.rollMu.RLock()
	rolling := lp.rolling
	lp.rollMu.RUnlock()
	if rolling {
		return false
	}
	if len(b.laggards(lp)) > 0 {
		return true // roll to a segment without the laggards, rotation or not
	}
	if l, ok := b.engine.Log(tp); ok && len(lp.caughtUpLearners(l.LogEndOffset())) > 0 {
		return true // take a caught-up former replica back
	}
	return lp.full()
}

// full reports whether the active segment reached segment.bytes or
// segment.ms (a rotating topic's roll moves leadership on; other rolls
// keep it).
func (lp *leaderPart) full() bool {
	lp.rollMu.RLock()
	defer lp.rollMu.RUnlock()
	if lp.bytes == 0 {
		return false
	}
	return (lp.segBytes > 0 && lp.bytes >= lp.segBytes) || (lp.segMs > 0 && time.Since(lp.since) >= time.Duration(lp.segMs)*time.Millisecond)
}

// roll seals tp's active segment and hands leadership on (see above).
func (b *Broker) roll(tp storage.TopicPartition, lp *leaderPart) {
	t, ok := b.store.FSM().Topic(tp.Topic)
	if !ok || tp.Partition >= t.Partitions {
		return
	}
	seg := t.Parts[tp.Partition].Active()
	l, ok := b.engine.Log(tp)
	if !ok || seg.Leader != b.cfg.NodeID || seg.ID != lp.segment {
		return
	}
	joining := lp.caughtUpLearners(l.LogEndOffset())
	if len(seg.Replicas) < 2 && len(joining) == 0 {
		return
	}
	began := time.Now()
	lp.rollMu.Lock()
	lp.rolling = true
	lp.rollDone = make(chan struct{})
	end := l.LogEndOffset()
	lp.rollMu.Unlock()
	// Produce requests parked on the roll go on once it ends: to the new
	// leader after a commit, here after an abandoned roll.
	defer close(lp.rollDone)
	resume := func(why string, err error) {
		lp.rollMu.Lock()
		lp.rolling = false
		lp.rollMu.Unlock()
		b.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Msg("roll abandoned: " + why)
	}
	// Followers that stopped fetching are left out of the sealed segment
	// and of the next one (DESIGN.md: rolling replaces ISR shrinking).
	lagging := b.laggards(lp)
	healthy := slices.DeleteFunc(slices.Clone(seg.Replicas), func(id int32) bool { return slices.Contains(lagging, id) })
	if len(lagging) > 0 {
		b.log.Warn().Str("tp", tp.String()).Ints32("laggards", lagging).Dur("lag_time_max", b.cfg.Replica.LagTimeMax).Msg("rolling to a segment without lagging replicas")
	}
	ctx, cancel := context.WithTimeout(b.bgCtx, rollWaitReplicas)
	defer cancel()
	if end > seg.BaseOffset {
		var err error
		if len(lagging) == 0 {
			err = l.WaitHighWatermark(ctx, end-1)
		} else {
			// Only the healthy replicas must hold [base, end). The HW
			// still counts the laggards until the roll commits: until
			// then an acknowledgement must mean "on every replica of the
			// segment" (a leader cut off from all its followers would
			// otherwise acknowledge records that only it holds, and that
			// a failover seals away).
			err = lp.waitFollowers(ctx, b.cfg.NodeID, healthy, end)
		}
		if err != nil {
			resume("replicas did not catch up", err)
			return
		}
	}
	// Former replicas rejoining must hold everything up to the end too.
	for _, id := range joining {
		for lp.learnerAt(id) < end {
			select {
			case <-ctx.Done():
				resume("a rejoining replica did not catch up", ctx.Err())
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	sealedBy := slices.Clone(healthy) // who holds the sealed segment as a replica
	if len(joining) > 0 {
		healthy = append(healthy, joining...)
		b.log.Info().Str("tp", tp.String()).Ints32("rejoining", joining).Msg("rolling to take former replicas back")
	}
	// A rotation hands leadership on (the controller picks by load); a
	// roll that only drops laggards or takes learners in keeps it here,
	// so producers need not move.
	next := b.cfg.NodeID
	if v, set, internal, _ := b.store.FSM().TopicConfigValue(tp.Topic, "segment.rotate"); !internal && !(set && v == "false") && lp.full() {
		next = -1
	}
	cmd := metadata.RollSegment{
		Topic: t.Name, ID: t.ID, Partition: tp.Partition,
		ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: end,
		NextLeader: next, NextReplicas: healthy,
	}
	if len(lagging) > 0 {
		cmd.SealedReplicas = sealedBy
	}
	if len(joining) > 0 {
		// They copied the partition from this log's start: replicas of
		// the sealed segments above it too (re-replication).
		cmd.Joined, cmd.JoinedFrom = joining, l.LogStartOffset()
	}
	if start := max(seg.BaseOffset, l.LogStartOffset()); end > start {
		if crc, n, err := l.SegmentChecksum(start, end); err == nil && start == seg.BaseOffset {
			cmd.Checksum, cmd.Bytes = crc, n
		}
	}
	if !b.commitRoll(tp, seg, cmd) {
		return
	}
	if len(lagging) > 0 {
		// Committed: the sealed segment's replicas are the healthy ones,
		// and they hold everything below end.
		l.AdvanceHighWatermark(end)
	}
	b.m.rolls.Inc()
	// Install the new segment's roles before the parked Produce requests
	// go on (deferred close of rollDone): they then append under the new
	// leadership here, or are forwarded to the new leader, instead of
	// meeting the old one's end.
	b.reconcileTopic(tp.Topic)
	b.log.Info().Str("tp", tp.String()).Int64("segment", seg.ID).Int64("end", end).Dur("took", time.Since(began)).Msg("segment rolled")
}
