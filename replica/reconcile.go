package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Role is this node's part in a partition's active segment.
type Role int

const (
	// RoleNone: neither leads, follows nor learns the partition.
	RoleNone Role = iota
	// RoleLeader: leads the active segment (replicated or not).
	RoleLeader
	// RoleFollower: a replica of the active segment fetching from its leader.
	RoleFollower
	// RoleLearner: not a replica, copying the partition to join it.
	RoleLearner
	// RoleFenced: the active segment is being failed over; nobody
	// appends or fetches until the controller seals it.
	RoleFenced
)

func (r Role) String() string {
	return [...]string{"none", "leader", "follower", "learner", "fenced"}[r]
}

// Reconcile makes this node's role in partition p of topic match the
// metadata's chain as it is now, opening the partition's log through the
// host when this node holds a replica. Calls for one partition run one at
// a time; those for different partitions in parallel, so an append that
// finds its leadership not installed yet installs it without waiting for
// a reconcile pass over every partition. Before caughtUp (the node has
// not yet seen the controller's latest metadata) it neither learns nor
// deletes anything. It returns the role taken.
func (m *Manager) Reconcile(topic string, p int32, caughtUp bool) (Role, error) {
	tp := storage.TopicPartition{Topic: topic, Partition: p}
	mu := m.recLock(tp)
	mu.Lock()
	defer mu.Unlock()
	t, part, ok := m.md.Partition(topic, p)
	if !ok || p >= t.Partitions || len(part.Segments) == 0 {
		// Deleted meanwhile: no role (the host removes the log).
		m.Unlead(tp)
		m.Unfollow(tp)
		return RoleNone, nil
	}
	self := m.cfg.NodeID
	seg := part.Active()
	wantRF := t.ReplicationFactor()
	if !slices.Contains(seg.Replicas, self) {
		// Not (or no longer) a replica of the active segment, e.g. a
		// leader replaced by failover: neither lead nor follow, but
		// catch up as a learner if the partition lacks replicas.
		m.Unlead(tp)
		if m.learn(t, part, p, seg, wantRF, caughtUp) {
			return RoleLearner, nil
		}
		m.Unfollow(tp)
		m.dropUnlisted(t, part, p, wantRF, caughtUp)
		return RoleNone, nil
	}
	// A compacted partition is led through a Leadership even with one
	// replica: its segments roll, so its sealed range can be cleaned
	// (docs/compaction.md, "Rolls of compacted topics").
	// So is a partition being reassigned (its learners fetch from the
	// leader and a roll takes them in), one replica or not.
	replicated := wantRF > 1 || m.compacts(topic) || part.Target != nil
	l, err := m.host.EnsureLog(t, p, replicated)
	if err != nil || l == nil {
		return RoleNone, err
	}
	if !replicated {
		m.Unlead(tp) // a segment down to one replica
		m.Unfollow(tp)
		if seg.Leader == self {
			return RoleLeader, nil
		}
		return RoleNone, nil
	}
	if seg.State == metadata.SegmentFenced {
		m.Unlead(tp)
		m.Unfollow(tp)
		return RoleFenced, nil
	}
	// Records above the segment's base that carry an older epoch are
	// leftovers of the previous segment beyond where it was sealed (a
	// failover sealed below this log's end): drop them before leading or
	// following the segment.
	if l.LatestEpoch() < seg.Epoch && l.LogEndOffset() > seg.BaseOffset {
		if err := l.TruncateTo(seg.BaseOffset); err != nil {
			return RoleNone, fmt.Errorf("replica: truncate %s to the segment's base %d: %w", tp, seg.BaseOffset, err)
		}
		m.log.Warn().Str("tp", tp.String()).Int64("base", seg.BaseOffset).Msg("truncated records the previous segment's seal left out")
	}
	m.checkClean(t, part, p, l)
	if seg.Leader == self {
		m.recordFirstUnstable(t, part, p, l) // before any append of the segment
		m.Lead(tp, l, seg, wantRF, m.host.MinInsync(t), part.Target, part.Elect)
		return RoleLeader, nil
	}
	m.Unlead(tp)
	m.Follow(tp, t.ID, seg.Leader, seg.Epoch, l)
	return RoleFollower, nil
}

// recLock is tp's reconcile lock.
func (m *Manager) recLock(tp storage.TopicPartition) *sync.Mutex {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	mu, ok := m.recLocks[tp]
	if !ok {
		mu = &sync.Mutex{}
		m.recLocks[tp] = mu
	}
	return mu
}

// learn makes this node, a former replica of t/p that still holds its
// log or a learner the controller assigned, fetch from the leader without
// counting for the high watermark, when the active segment has fewer
// replicas than the partition's replication factor. Once caught up, the
// leader's next roll takes it into the replica set. First it drops what
// it holds beyond the sealed end of the segment its newest batch belongs
// to (a deposed leader's unacknowledged tail). It reports whether it is
// learning.
func (m *Manager) learn(t metadata.Topic, part metadata.Partition, p int32, seg metadata.Segment, wantRF int, caughtUp bool) bool {
	// A reassignment's learners join a full replica set.
	reassigned := slices.Contains(part.Target, m.cfg.NodeID) && slices.Contains(seg.Learners, m.cfg.NodeID)
	if !caughtUp || (wantRF < 2 && !reassigned) || (len(seg.Replicas) >= wantRF && !reassigned) || seg.State != metadata.SegmentActive || seg.Leader < 0 {
		return false
	}
	if br, ok := m.md.Broker(seg.Leader); !ok || br.State != metadata.BrokerAlive {
		return false
	}
	tp := storage.TopicPartition{Topic: t.Name, Partition: p}
	// A node the controller assigned (re-replication) copies the whole
	// partition; otherwise only a node that held it rejoins.
	assigned := slices.Contains(seg.Learners, m.cfg.NodeID)
	if id, known, err := m.host.LogTopicID(tp); !assigned && (err != nil || !known || id != t.ID) {
		return false
	}
	l, err := m.host.EnsureLog(t, p, true)
	if err != nil || l == nil {
		return false
	}
	e := l.LatestEpoch()
	var mine *metadata.Segment
	for i := range part.Segments {
		if part.Segments[i].HasEpoch(e) {
			mine = &part.Segments[i]
		}
	}
	if e >= 0 && mine == nil {
		return false // an epoch the metadata does not know: do not guess
	}
	if mine != nil && mine.State == metadata.SegmentSealed && l.LogEndOffset() > mine.EndOffset {
		if err := l.TruncateTo(mine.EndOffset); err != nil {
			m.log.Error().Err(err).Str("tp", tp.String()).Int64("end", mine.EndOffset).Msg("learner: truncate to the sealed end")
			return false
		}
		m.log.Warn().Str("tp", tp.String()).Int64("end", mine.EndOffset).Int32("epoch", e).Msg("learner: dropped records past the sealed end of its last segment")
	}
	m.log.Debug().Str("tp", tp.String()).Int64("leo", l.LogEndOffset()).Msg("learner: fetching to join")
	m.follow(tp, t.ID, seg.Leader, seg.Epoch, l, true)
	return true
}

// dropUnlisted deletes this node's log of t/p once no segment of the
// partition lists this node as a replica any more and the active segment
// has its full replica set: re-replication put the data elsewhere, and
// nobody will read it here.
func (m *Manager) dropUnlisted(t metadata.Topic, part metadata.Partition, p int32, wantRF int, caughtUp bool) {
	seg := part.Active()
	self := m.cfg.NodeID
	if !caughtUp || len(seg.Replicas) < wantRF || seg.State != metadata.SegmentActive || slices.Contains(seg.Learners, self) {
		return
	}
	// A one-replica partition's log is dropped only once a reassignment
	// moved it away (its segments list another node and it has a live
	// leader): its only copy must never go otherwise.
	if wantRF < 2 {
		if br, ok := m.md.Broker(seg.Leader); !ok || br.State != metadata.BrokerAlive || seg.Leader == self {
			return
		}
	}
	for _, s := range part.Segments {
		if slices.Contains(s.Replicas, self) {
			return
		}
	}
	tp := storage.TopicPartition{Topic: t.Name, Partition: p}
	if id, known, err := m.host.LogTopicID(tp); err != nil || !known || id != t.ID {
		return
	}
	if err := m.host.DeleteLog(tp); err != nil {
		m.log.Error().Err(err).Str("tp", tp.String()).Msg("delete the log of a partition this node no longer holds")
		return
	}
	m.log.Info().Str("tp", tp.String()).Ints32("replicas", seg.Replicas).Msg("deleted the log of a partition re-replicated elsewhere")
}

// recordFirstUnstable fills in the first unstable offset of the segment
// before t/p's active one when a failover sealed it without one
// (docs/transactions.md, "Sealed segments"): this node is about to lead
// the active segment and its log l ends exactly at that seal (nothing is
// appended to the new segment yet), so its open transactions are those
// open at the sealed end. It proposes SetFirstUnstable in the background;
// a failed proposal leaves the value unknown (a later pass retries while
// nothing is appended).
func (m *Manager) recordFirstUnstable(t metadata.Topic, part metadata.Partition, p int32, l *storage.Log) {
	segs := part.Segments
	if len(segs) < 2 {
		return
	}
	prev, cur := segs[len(segs)-2], segs[len(segs)-1]
	if prev.State != metadata.SegmentSealed || prev.FirstUnstable != nil || prev.EndOffset <= prev.BaseOffset ||
		prev.EndOffset != cur.BaseOffset || l.LogEndOffset() != prev.EndOffset {
		return
	}
	fu := prev.EndOffset
	if open := l.OpenTransactions(); len(open) > 0 {
		fu = min(open[0].FirstOffset, fu)
	}
	m.fuMu.Lock()
	if m.fuInflight[prev.ID] {
		m.fuMu.Unlock()
		return
	}
	m.fuInflight[prev.ID] = true
	m.fuMu.Unlock()
	cmd := metadata.SetFirstUnstable{Topic: t.Name, ID: t.ID, Partition: p, Segment: prev.ID, EndOffset: prev.EndOffset, FirstUnstable: fu}
	m.goTracked(func() {
		defer func() {
			m.fuMu.Lock()
			delete(m.fuInflight, cmd.Segment)
			m.fuMu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		defer cancel()
		if err := m.md.Apply(ctx, cmd); err != nil {
			m.log.Warn().Err(err).Str("topic", t.Name).Int32("partition", p).Int64("segment", cmd.Segment).
				Msg("record the first unstable offset of a segment sealed by failover")
		}
	})
}
