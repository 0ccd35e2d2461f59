package replica

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Rolls (docs/architecture.md, "Rotation and failover"): when a
// replicated partition's active segment reaches segment.bytes or
// segment.ms on its leader, or a follower lags, or a learner caught up,
// the leader stops appending, waits until every replica holds everything
// it has, and commits RollSegment (a compare-and-set on the segment and
// epoch) sealing the segment at its log end offset. The controller picks
// the next leader of a rotation among the sealed segment's live replicas,
// the least loaded one, so write load wanders over the cluster; a roll
// that only drops laggards or takes learners in keeps the leader. Every
// node's reconcile pass then swaps roles.

// rollLoop rolls the partitions this node leads when a roll is due. It
// looks at a leadership only when something may have made one due
// (docs/io-and-scale.md, "Scale"), never at every leadership per tick:
//   - checkRoll queues a leadership to be looked at on the next pass: Lead
//     (a new segment, a changed replica set, reassignment or election), an
//     append that fills the segment (segment.bytes) or is the segment's
//     first (segment.ms counts only for a segment with records), and a
//     learner's fetch that moved on (it may have caught up);
//   - each look schedules the next one (a deadline heap, read against
//     Config.Clock every 500 ms): when a follower's last fetch would pass
//     LagTimeMax, or the segment reaches segment.ms. A follower fetching
//     in a session (FetchRounds) keeps moving that deadline, so an idle,
//     healthy leadership is looked at about once per LagTimeMax;
//   - a follower's broker that stops being alive (fenced) makes every
//     leadership due at once (a rare, whole-node event), and a roll that
//     ended without committing is looked at again 500 ms later.
func (m *Manager) rollLoop() {
	defer m.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	busy := map[*Leadership]bool{}
	done := make(chan *Leadership, 16)
	down := map[int32]bool{} // followers' brokers not alive at the last tick
	for {
		select {
		case <-m.ctx.Done():
			return
		case lp := <-done:
			delete(busy, lp)
			m.scheduleRoll(lp, m.clock.Now().Add(500*time.Millisecond))
			continue
		case <-t.C:
			if m.followersWentDown(down) {
				for _, lp := range m.leadingList() {
					m.checkRoll(lp)
				}
			}
		case <-m.rollKick:
		}
		alive := m.aliveBrokers() // looked up once per pass, not per partition
		now := m.clock.Now()
		for _, lp := range m.takeRollChecks(now) {
			if busy[lp] || m.Leader(lp.tp) != lp {
				continue // rolling (looked at again when it ends), or superseded
			}
			due, next := m.rollDue(lp, now, alive)
			if !due {
				if !next.IsZero() {
					m.scheduleRoll(lp, next)
				}
				continue
			}
			busy[lp] = true
			m.goTracked(func() {
				m.Roll(lp)
				select {
				case done <- lp:
				case <-m.ctx.Done():
				}
			})
		}
	}
}

// rollSched is what the roll loop is to look at (rollLoop).
type rollSched struct {
	mu     sync.Mutex
	due    map[*Leadership]struct{} // look at on the next pass
	heap   rollHeap                 // look at when the time comes
	nodes  map[int32]struct{}       // every follower of a leadership Lead saw
	queued []*Leadership            // takeRollChecks' buffer
}

// rollAt is a scheduled look at a leadership.
type rollAt struct {
	at time.Time
	lp *Leadership
}

// rollHeap is a min-heap of rollAt by time. An entry whose time is not
// its leadership's schedAt is stale and skipped.
type rollHeap []rollAt

func (h rollHeap) Len() int           { return len(h) }
func (h rollHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h rollHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rollHeap) Push(x any)        { *h = append(*h, x.(rollAt)) }
func (h *rollHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = rollAt{}
	*h = old[:len(old)-1]
	return x
}

// checkRoll has the roll loop look at lp on its next pass.
func (m *Manager) checkRoll(lp *Leadership) {
	m.sched.mu.Lock()
	if m.sched.due == nil {
		m.sched.due = map[*Leadership]struct{}{}
	}
	m.sched.due[lp] = struct{}{}
	m.sched.mu.Unlock()
	select {
	case m.rollKick <- struct{}{}:
	default:
	}
}

// scheduleRoll has the roll loop look at lp at (Config.Clock's) time at,
// replacing the look scheduled before.
func (m *Manager) scheduleRoll(lp *Leadership, at time.Time) {
	m.sched.mu.Lock()
	lp.schedAt = at
	heap.Push(&m.sched.heap, rollAt{at: at, lp: lp})
	m.sched.mu.Unlock()
}

// takeRollChecks returns the leaderships to look at now: those queued and
// those whose scheduled time passed. The slice is reused by the next call.
func (m *Manager) takeRollChecks(now time.Time) []*Leadership {
	s := &m.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.queued[:0]
	for lp := range s.due {
		out = append(out, lp)
	}
	clear(s.due)
	for len(s.heap) > 0 && !s.heap[0].at.After(now) {
		e := heap.Pop(&s.heap).(rollAt)
		if !e.at.Equal(e.lp.schedAt) {
			continue // replaced by a later schedule
		}
		e.lp.schedAt = time.Time{}
		if _, queued := s.due[e.lp]; !queued {
			out = append(out, e.lp)
		}
	}
	s.queued = out
	return out
}

// watchFollowers adds ids to the brokers followersWentDown watches.
func (m *Manager) watchFollowers(ids []int32) {
	m.sched.mu.Lock()
	defer m.sched.mu.Unlock()
	if m.sched.nodes == nil {
		m.sched.nodes = map[int32]struct{}{}
	}
	for _, id := range ids {
		if id != m.cfg.NodeID {
			m.sched.nodes[id] = struct{}{}
		}
	}
}

// followersWentDown reports whether a follower's broker stopped being
// alive since the last call (down holds those that were not then).
func (m *Manager) followersWentDown(down map[int32]bool) bool {
	m.sched.mu.Lock()
	ids := make([]int32, 0, len(m.sched.nodes))
	for id := range m.sched.nodes {
		ids = append(ids, id)
	}
	m.sched.mu.Unlock()
	went := false
	for _, id := range ids {
		br, ok := m.md.Broker(id)
		isDown := !ok || br.State != metadata.BrokerAlive
		if isDown && !down[id] {
			went = true
		}
		down[id] = isDown
	}
	return went
}

// rotates reports whether tp's topic hands leadership on at a full
// segment (segment.rotate, never for internal topics).
func (m *Manager) rotates(topic string) bool {
	v, set, internal, ok := m.md.TopicConfigValue(topic, "segment.rotate")
	return ok && !internal && !(set && v == "false")
}

// rollsWhenFull reports whether a full segment of topic rolls: it
// rotates, or it is compacted (a sealed range is what the cleaner
// cleans; a compacted topic that does not rotate keeps its leader).
func (m *Manager) rollsWhenFull(topic string) bool {
	return m.rotates(topic) || m.compacts(topic)
}

// rollDue reports whether lp's segment should roll now: a follower lags
// or is not alive, a learner caught up, a reassignment or election asks
// for it, or (rotating and compacted topics) the segment is full. alive
// holds the brokers the metadata lists as alive. If not due, next is when
// it may become due without news (a follower's lag limit, segment.ms; zero:
// only news makes it due). The cheap checks come first and the topic's
// metadata is read only when one says yes.
func (m *Manager) rollDue(lp *Leadership, now time.Time, alive func(id int32) bool) (due bool, next time.Time) {
	lp.rollMu.RLock()
	rolling, segMs := lp.rolling, lp.segMs
	lp.rollMu.RUnlock()
	if rolling {
		return false, now.Add(500 * time.Millisecond)
	}
	due, learning, lagAt := lp.lagging(now, alive)
	if !due && learning {
		due = len(lp.caughtUpLearners(lp.log.LogEndOffset())) > 0 // take a caught-up node in
	}
	if !due {
		due = lp.reassignDone() || lp.electDue() // drop the nodes a reassignment moves away from; hand on to an elected node
	}
	if !due {
		full := lp.full()
		if full && m.rollsWhenFull(lp.tp.Topic) {
			return true, time.Time{}
		}
		next = lagAt
		if !full && segMs > 0 && lp.bytes.Load() > 0 {
			if at := lp.since.Add(time.Duration(segMs) * time.Millisecond); next.IsZero() || at.Before(next) {
				next = at
			}
		}
		return false, next
	}
	_, _, _, ok := m.md.TopicConfigValue(lp.tp.Topic, "segment.rotate") // the topic still exists
	return ok, time.Time{}
}

// lagging reports, under one lock, whether a counted follower lags (has
// not fetched for LagTimeMax at now, see laggards) or is not alive (its
// broker is fenced: no need to wait for the lag limit), whether any
// learner is catching up, and (if none lags) when the first follower
// would lag without fetching again.
func (lp *Leadership) lagging(now time.Time, alive func(id int32) bool) (lags, learning bool, lagAt time.Time) {
	lp.ackMu.Lock()
	defer lp.ackMu.Unlock()
	for _, id := range lp.replicas {
		if id == lp.m.cfg.NodeID {
			continue
		}
		last, ok := lp.lastFetchLocked(id)
		if !ok {
			last = lp.since
		}
		if now.Sub(last) > lp.m.cfg.LagTimeMax || !alive(id) {
			return true, len(lp.learners) > 0, time.Time{}
		}
		// Lagging is "more than LagTimeMax": a millisecond past it.
		if at := last.Add(lp.m.cfg.LagTimeMax + time.Millisecond); lagAt.IsZero() || at.Before(lagAt) {
			lagAt = at
		}
	}
	return false, len(lp.learners) > 0, lagAt
}

// leadingList lists the leaderships (the roll loop's snapshot).
func (m *Manager) leadingList() []*Leadership {
	m.leadMu.RLock()
	defer m.leadMu.RUnlock()
	out := make([]*Leadership, 0, len(m.leading))
	for _, lp := range m.leading {
		out = append(out, lp)
	}
	return out
}

// aliveBrokers returns whether the metadata lists a broker as alive,
// looking each broker up once.
func (m *Manager) aliveBrokers() func(id int32) bool {
	seen := map[int32]bool{}
	return func(id int32) bool {
		alive, ok := seen[id]
		if !ok {
			br, found := m.md.Broker(id)
			alive = found && br.State == metadata.BrokerAlive
			seen[id] = alive
		}
		return alive
	}
}

// fullReason says why a full segment rolls: "size" (segment.bytes) or
// "time" (segment.ms, and any roll that is neither).
func (lp *Leadership) fullReason() string {
	lp.rollMu.RLock()
	segBytes := lp.segBytes
	lp.rollMu.RUnlock()
	if segBytes > 0 && lp.bytes.Load() >= segBytes {
		return "size"
	}
	return "time"
}

// full reports whether the segment reached segment.bytes or segment.ms.
func (lp *Leadership) full() bool {
	n := lp.bytes.Load()
	if n == 0 {
		return false
	}
	lp.rollMu.RLock()
	segBytes, segMs := lp.segBytes, lp.segMs
	lp.rollMu.RUnlock()
	return (segBytes > 0 && n >= segBytes) || (segMs > 0 && lp.m.clock.Now().Sub(lp.since) >= time.Duration(segMs)*time.Millisecond)
}

// laggards are the followers a roll should leave out: those that have not
// fetched for LagTimeMax, and those whose broker the controller has
// fenced (its lease ran out: no need to wait for the lag limit).
func (m *Manager) laggards(lp *Leadership) []int32 {
	out := lp.laggards()
	for _, id := range lp.Replicas() {
		if id == m.cfg.NodeID || slices.Contains(out, id) {
			continue
		}
		if br, ok := m.md.Broker(id); !ok || br.State != metadata.BrokerAlive {
			out = append(out, id)
		}
	}
	return out
}

// Roll seals lp's segment and hands leadership on (see above). It
// returns once the roll committed or was abandoned.
func (m *Manager) Roll(lp *Leadership) {
	tp, l := lp.tp, lp.log
	t, part, ok := m.md.Partition(tp.Topic, tp.Partition)
	if !ok || tp.Partition >= t.Partitions || len(part.Segments) == 0 {
		return
	}
	seg := part.Active()
	if seg.Leader != m.cfg.NodeID || seg.ID != lp.segment {
		return
	}
	joining := lp.caughtUpLearners(l.LogEndOffset())
	target := part.Target
	// A segment with one replica rolls only to seal a compacted range
	// for the cleaner: there is no one to hand leadership or bytes to.
	if len(seg.Replicas) < 2 && len(joining) == 0 && !m.compacts(tp.Topic) {
		return
	}
	began := time.Now()
	lp.rollMu.Lock()
	if lp.deposed {
		lp.rollMu.Unlock()
		return
	}
	lp.rolling = true
	lp.rollDone = make(chan struct{})
	end := l.LogEndOffset() // no append in progress: rollMu is held
	// The transactions open at the end (no marker either: markers are
	// appended under the leadership too) bound what a replica may serve
	// of the sealed segment to read_committed consumers.
	firstUnstable := end
	if open := l.OpenTransactions(); len(open) > 0 {
		firstUnstable = min(open[0].FirstOffset, end)
	}
	lp.rollMu.Unlock()
	// Appends parked on the roll go on once it ends: to the new leader
	// after a commit, here after an abandoned roll.
	defer close(lp.rollDone)
	resume := func(why string, err error) {
		lp.rollMu.Lock()
		lp.rolling = false
		lp.rollMu.Unlock()
		m.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Msg("roll abandoned: " + why)
	}
	// Followers that stopped fetching are left out of the sealed segment
	// and of the next one (rolling replaces Kafka's ISR shrinking).
	lagging := m.laggards(lp)
	healthy := slices.DeleteFunc(slices.Clone(seg.Replicas), func(id int32) bool { return slices.Contains(lagging, id) })
	if len(lagging) > 0 {
		m.log.Warn().Str("tp", tp.String()).Ints32("laggards", lagging).Dur("lag_time_max", m.cfg.LagTimeMax).Msg("rolling to a segment without lagging replicas")
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RollWait)
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
			err = lp.waitProgress(ctx, healthy, end, false)
		}
		if err != nil {
			resume("replicas did not catch up", err)
			return
		}
	}
	// Nodes joining must hold everything up to the end too.
	if err := lp.waitProgress(ctx, joining, end, true); err != nil {
		resume("a joining replica did not catch up", err)
		return
	}
	sealedBy := slices.Clone(healthy) // who holds the sealed segment as a replica
	if len(joining) > 0 {
		healthy = append(healthy, joining...)
		m.log.Info().Str("tp", tp.String()).Ints32("joining", joining).Msg("rolling to take caught-up replicas in")
	}
	// A rotation hands leadership on (the controller picks by load); a
	// roll that only drops laggards or takes learners in keeps it here,
	// so producers need not move.
	next := m.cfg.NodeID
	if m.rotates(tp.Topic) && lp.full() {
		next = -1
	}
	// A preferred-leader election (docs/replication.md, "Preferred
	// leader elections") names the next leader, if it holds the segment.
	if e := part.Elect; e != nil && *e != m.cfg.NodeID && slices.Contains(healthy, *e) && slices.Contains(sealedBy, *e) {
		next = *e
	}
	// A reassignment (docs/replication.md, "Reassigning partitions"):
	// once every target node is a replica, the roll keeps only them and
	// the nodes it drops stop being replicas of the sealed segments.
	var drop []int32
	if target != nil && len(joining) == 0 && containsAll(healthy, target) && len(healthy) > len(target) {
		for _, id := range healthy {
			if !slices.Contains(target, id) {
				drop = append(drop, id)
			}
		}
		healthy = slices.Clone(target)
		if !slices.Contains(target, next) {
			next = -1 // the controller picks among the target
		}
		m.log.Info().Str("tp", tp.String()).Ints32("target", target).Ints32("dropped", drop).Msg("rolling to complete a reassignment")
	}
	cmd := metadata.RollSegment{
		Topic: t.Name, ID: t.ID, Partition: tp.Partition,
		ExpectedSegment: seg.ID, ExpectedEpoch: seg.Epoch, EndOffset: end,
		NextLeader: next, NextReplicas: healthy, SealedAtMs: m.clock.Now().UnixMilli(),
		FirstUnstable: &firstUnstable,
	}
	if len(lagging) > 0 {
		cmd.SealedReplicas = sealedBy
	}
	cmd.DropSealed = drop
	if len(joining) > 0 {
		// They copied the partition from this log's start: replicas of
		// the sealed segments above it too (re-replication).
		cmd.Joined, cmd.JoinedFrom = joining, l.LogStartOffset()
	}
	// The seal records the range's checksum when this log holds the
	// whole segment (retention may have removed its front). A checksum
	// that cannot be computed is a read error: the roll is abandoned
	// rather than sealing a segment whose bytes this node cannot vouch
	// for (a later pass retries).
	if end > seg.BaseOffset && l.LogStartOffset() <= seg.BaseOffset {
		crc, n, err := l.SegmentChecksum(seg.BaseOffset, end)
		if err != nil {
			m.log.Error().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Msg("checksum of the segment to seal")
			resume("checksum failed", fmt.Errorf("replica: checksum of %s [%d, %d): %w", tp, seg.BaseOffset, end, err))
			return
		}
		cmd.Checksum, cmd.Bytes = crc, n
	}
	reason := lp.fullReason()
	switch {
	case len(drop) > 0:
		reason = "reassign"
	case next >= 0 && next != m.cfg.NodeID:
		reason = "elect"
	case len(lagging) > 0:
		reason = "laggard"
	case len(joining) > 0:
		reason = "rejoin"
	}
	if !m.commitRoll(tp, seg, cmd) {
		return
	}
	if len(lagging) > 0 {
		// Committed: the sealed segment's replicas are the healthy ones,
		// and they hold everything below end.
		lp.advance(end)
	}
	if m.OnRoll != nil {
		m.OnRoll(reason)
	}
	// Install the new segment's roles before the parked appends go on
	// (deferred close of rollDone): they then append under the new
	// leadership here, or are forwarded to the new leader, instead of
	// meeting the old one's end.
	if _, err := m.Reconcile(tp.Topic, tp.Partition, m.host.CaughtUp()); err != nil {
		m.log.Error().Err(err).Str("tp", tp.String()).Msg("install the roles after a roll")
	}
	m.host.Kick() // the rest (group coordinators of internal partitions)
	m.log.Info().Str("tp", tp.String()).Int64("segment", seg.ID).Int64("end", end).Dur("took", time.Since(began)).Msg("segment rolled")
}

// containsAll reports whether set holds every id of ids.
func containsAll(set, ids []int32) bool {
	for _, id := range ids {
		if !slices.Contains(set, id) {
			return false
		}
	}
	return true
}

// commitRoll commits a roll's RollSegment. A failed Apply is ambiguous
// (it may have committed after a timeout or a controller change), so the
// roll never resumes appending to the segment after one: that could hand
// out offsets at or above the sealed end that the next segment reuses, and
// acknowledge them. It retries the same compare-and-set until it commits
// (true) or the metadata shows the segment superseded, by this roll or a
// failover (false: reconcile hands the partition on, and appends stay
// blocked meanwhile).
func (m *Manager) commitRoll(tp storage.TopicPartition, seg metadata.Segment, cmd metadata.RollSegment) bool {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(m.ctx, 10*time.Second)
		err := m.applyRoll(actx, cmd)
		acancel()
		if err == nil {
			return true
		}
		moved := errors.Is(err, metadata.ErrPreconditionFailed)
		if t, part, ok := m.md.Partition(tp.Topic, tp.Partition); !ok || tp.Partition >= t.Partitions || part.Active().ID != seg.ID {
			moved = true
		}
		if moved || m.ctx.Err() != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Int("attempts", attempt).
				Msg("roll not committed by this node: the segment was superseded; appends to it stay stopped")
			m.host.Kick()
			return false
		}
		m.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", seg.ID).Int("attempt", attempt).Msg("roll commit failed; retrying the same compare-and-set")
		if !m.sleep(backoff) {
			m.host.Kick()
			return false
		}
		backoff = min(2*backoff, time.Second)
	}
}
