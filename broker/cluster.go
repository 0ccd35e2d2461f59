package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// This file is the broker's side of the cluster: heartbeats to the
// controller (which register the node and earn its lease), and the
// reconcile loop that makes the local logs and group coordinators follow
// the metadata (open the partitions this node leads, delete the logs of
// deleted topics).

// heartbeat builds this node's heartbeat.
func (b *Broker) heartbeat() metadata.Heartbeat {
	return metadata.Heartbeat{
		ID:       b.cfg.NodeID,
		Kafka:    fmt.Sprintf("%s:%d", b.advertise.host, b.advertise.port),
		Internal: b.InternalAddr(),
		Raft:     b.store.RaftAddr(),
		Rack:     b.cfg.Rack,
	}
}

// heartbeatLoop heartbeats the controller every lease.renew.
func (b *Broker) heartbeatLoop() {
	defer b.bgWG.Done()
	t := time.NewTicker(b.cfg.Lease.Renew)
	defer t.Stop()
	var failing bool
	for {
		err := b.heartbeatOnce()
		switch {
		case err != nil && !failing:
			failing = true
			b.log.Warn().Err(err).Msg("heartbeat to controller failed")
		case err == nil && failing:
			failing = false
			b.log.Info().Int32("controller", b.store.Leader()).Msg("heartbeat to controller restored")
		}
		select {
		case <-b.shutdown:
			return
		case <-t.C:
		}
	}
}

func (b *Broker) heartbeatOnce() error {
	ctx, cancel := context.WithTimeout(b.bgCtx, b.cfg.Lease.Timeout)
	defer cancel()
	sent := time.Now()
	hb := b.heartbeat()
	var lease metadata.Lease
	var err error
	if b.store.IsLeader() {
		lease, err = b.store.Heartbeat(ctx, hb)
	} else {
		var addr string
		if addr, err = b.controllerAddr(); err == nil {
			body, _ := json.Marshal(hb)
			err = b.call(ctx, addr, "/v1/heartbeat", body, &lease)
		}
	}
	if err != nil {
		return err
	}
	// A lease counts only once the local metadata has caught up with the
	// controller's: a node that was cut off must first learn that its
	// segments moved on before it may append again.
	if err := b.store.FSM().WaitApplied(ctx, lease.AppliedIndex); err != nil {
		return fmt.Errorf("broker: catch up with the controller's metadata: %w", err)
	}
	b.leaseMu.Lock()
	b.lease.Renew(sent, lease.Timeout)
	b.leaseExpiry.Store(b.lease.Expiry().UnixNano())
	close(b.leaseCh)
	b.leaseCh = make(chan struct{})
	b.leaseMu.Unlock()
	if !b.caughtUp.Load() && b.store.FSM().AppliedIndex() >= lease.AppliedIndex {
		if cur, ok := b.store.FSM().Broker(b.cfg.NodeID); ok && cur.State == metadata.BrokerAlive && cur.Kafka == hb.Kafka {
			b.caughtUp.Store(true)
			b.log.Info().Int32("controller", lease.Controller).Msg("registered with the controller")
			b.kickReconcile()
		}
	}
	return nil
}

// leaseValid reports whether this node holds an unexpired lease (counted
// from the send time of the heartbeat that earned it).
func (b *Broker) leaseValid() bool {
	return b.currentLease().Valid(time.Now())
}

// currentLease is this node's lease (storage checks every replicated
// append against it, so it reads an atomic rather than taking leaseMu).
func (b *Broker) currentLease() fencing.Lease {
	exp := b.leaseExpiry.Load()
	if exp == 0 {
		return fencing.Lease{} // never granted: expired
	}
	return fencing.NewLease(time.Unix(0, exp), 0)
}

// waitLease waits up to d for a live lease (one that ran out while the
// controller moved, say, is usually renewed within a heartbeat or two).
func (b *Broker) waitLease(ctx context.Context, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !b.leaseValid() {
		b.leaseMu.Lock()
		ch := b.leaseCh
		b.leaseMu.Unlock()
		if b.leaseValid() {
			break
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-b.shutdown:
			return false
		}
	}
	return true
}

// kickReconcile asks the reconcile loop for a pass.
func (b *Broker) kickReconcile() {
	select {
	case b.reconcileKick <- struct{}{}:
	default:
	}
}

// reconcileLoop runs reconcile after every metadata change.
func (b *Broker) reconcileLoop() {
	defer b.bgWG.Done()
	for {
		changed := b.store.FSM().Changed()
		if b.caughtUp.Load() && b.store.FSM().ClusterID() == "" {
			ctx, cancel := context.WithTimeout(b.bgCtx, b.cfg.Lease.Timeout)
			if err := b.ensureClusterID(ctx); err != nil {
				b.log.Warn().Err(err).Msg("set cluster id")
			}
			cancel()
		}
		b.reconcile()
		select {
		case <-b.shutdown:
			return
		case <-changed:
		case <-b.reconcileKick:
		case <-time.After(5 * time.Second):
		}
	}
}

// reconcile opens the logs of the partitions this node leads, pushes topic
// configs to them, starts group coordinators of local __consumer_offsets
// partitions, and, once this node has caught up with the metadata, deletes
// logs whose topic is gone. Before catching up it deletes nothing: a stale
// view must never remove data.
func (b *Broker) reconcile() {
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	if b.shuttingDown() {
		return
	}
	caughtUp := b.caughtUp.Load()
	topics := b.store.FSM().Topics()
	b.openMissing(topics, caughtUp)
	want := map[storage.TopicPartition]metadata.TopicID{}
	for _, t := range topics {
		for p := int32(0); p < t.Partitions; p++ {
			want[b.tp(t.Name, p)] = t.ID
		}
		b.reconcileLocal(t, caughtUp)
	}
	if !caughtUp {
		return
	}
	dirs, err := b.engine.ListLogDirs()
	if err != nil {
		b.log.Error().Err(err).Msg("list log dirs")
		return
	}
	for _, tp := range dirs {
		id, ok := want[tp]
		if ok {
			if have, known, err := b.engine.LogTopicID(tp); err != nil || !known || have == id {
				continue
			}
		}
		b.log.Warn().Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("removing log of a deleted topic")
		if tp.Topic == offsetsTopic {
			b.gc.unload(tp.Partition)
		}
		if err := b.engine.DeleteLog(tp); err != nil {
			b.log.Error().Err(err).Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("delete log")
		}
	}
}

// openMissing opens, four at a time, the logs of partitions this node
// holds a replica of that are not open yet (a restart recovers them in
// parallel). Failures are left to reconcileLocal, which logs them.
func (b *Broker) openMissing(topics []metadata.Topic, caughtUp bool) {
	type job struct {
		tp  storage.TopicPartition
		id  metadata.TopicID
		cfg storage.LogConfig
	}
	var jobs []job
	for _, t := range topics {
		base := b.logConfig(t.Configs)
		for p := int32(0); p < t.Partitions; p++ {
			seg := t.Parts[p].Active()
			tp := b.tp(t.Name, p)
			if !slices.Contains(seg.Replicas, b.cfg.NodeID) {
				continue
			}
			if _, ok := b.engine.Log(tp); ok {
				continue
			}
			cfg := base
			cfg.Replicated = t.ReplicationFactor() > 1
			jobs = append(jobs, job{tp, t.ID, cfg})
		}
	}
	if len(jobs) < 2 {
		return
	}
	parallel(len(jobs), 4, func(i int) {
		_, _ = b.openPartition(jobs[i].tp, jobs[i].id, jobs[i].cfg, caughtUp) // reconcileLocal retries and logs failures
	})
}

// reconcileTopic is reconcile for one topic that was just created or
// changed through this node (it deletes nothing).
func (b *Broker) reconcileTopic(name string) {
	t, ok := b.store.FSM().Topic(name)
	if !ok {
		return
	}
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	if !b.shuttingDown() {
		b.reconcileLocal(t, b.caughtUp.Load())
	}
}

// reconcileLocal opens the partitions of t this node leads and pushes t's
// configs to them. b.reconcileMu held.
func (b *Broker) reconcileLocal(t metadata.Topic, caughtUp bool) {
	base := b.logConfig(t.Configs)
	for p := int32(0); p < t.Partitions; p++ {
		seg := t.Parts[p].Active()
		tp := b.tp(t.Name, p)
		wantRF := t.ReplicationFactor()
		if t.Name == offsetsTopic && (seg.Leader != b.cfg.NodeID || seg.State != metadata.SegmentActive) {
			// Another node coordinates these groups now. Depose first:
			// a commit waiting for the high watermark then fails at once,
			// instead of holding up the coordinator's Close forever.
			b.repl.unlead(tp)
			b.gc.unload(p)
		}
		if !slices.Contains(seg.Replicas, b.cfg.NodeID) {
			// Not (or no longer) a replica of the active segment, e.g. a
			// leader replaced by failover: neither lead nor follow, but
			// catch up as a learner if the partition lacks replicas.
			b.repl.unlead(tp)
			if !b.learn(t, p, seg, wantRF, base, caughtUp) {
				b.repl.unfollow(tp)
				b.dropUnlisted(t, p, wantRF, caughtUp)
			}
			continue
		}
		cfg := base
		cfg.Replicated = wantRF > 1
		l, ok := b.engine.Log(tp)
		if !ok {
			var err error
			if l, err = b.openPartition(tp, t.ID, cfg, caughtUp); err != nil {
				b.log.Error().Err(err).Str("topic", t.Name).Int32("partition", p).Msg("open partition log")
				continue
			}
			if l == nil {
				continue
			}
		} else {
			l.SetConfig(cfg)
		}
		if cfg.Replicated {
			if seg.State == metadata.SegmentFenced {
				// Failing over: nobody appends or fetches until the
				// controller seals the segment.
				b.repl.unlead(tp)
				b.repl.unfollow(tp)
				continue
			}
			// Records above the segment's base that carry an older epoch
			// are leftovers of the previous segment beyond where it was
			// sealed (a failover sealed below this log's end): drop them
			// before leading or following the segment.
			if l.LatestEpoch() < seg.Epoch && l.LogEndOffset() > seg.BaseOffset {
				if err := l.TruncateTo(seg.BaseOffset); err != nil {
					b.log.Error().Err(err).Str("tp", tp.String()).Int64("base", seg.BaseOffset).Msg("truncate to the segment's base")
					continue
				}
				b.log.Warn().Str("tp", tp.String()).Int64("base", seg.BaseOffset).Msg("truncated records the previous segment's seal left out")
			}
			if seg.Leader == b.cfg.NodeID {
				b.repl.lead(tp, l, seg, wantRF, int(b.topicConfigInt(t.Configs, "min.insync.replicas")), cfg.SegmentBytes, cfg.SegmentMs)
			} else {
				b.repl.unlead(tp)
				b.repl.follow(tp, t.ID, seg.Leader, seg.Epoch, l)
				continue
			}
		}
		if !cfg.Replicated {
			b.repl.unlead(tp) // a segment down to one replica
			b.repl.unfollow(tp)
		}
		if seg.Leader != b.cfg.NodeID {
			continue
		}
		if t.Name == offsetsTopic {
			if err := b.gc.load(b, t.Partitions, p, l, t.Parts[p].Segments); err != nil {
				b.log.Error().Err(err).Int32("partition", p).Msg("load group coordinator")
			}
		}
	}
}

// learn makes this node, a former replica of t/p that still holds its
// log, fetch from the leader without counting for the high watermark,
// when the active segment has fewer replicas than the partition's
// replication factor. Once caught up, the leader's next roll takes it back
// into the replica set (rotation.go). First it drops what it holds beyond
// the sealed end of the segment its newest batch belongs to (a deposed
// leader's unacknowledged tail). It reports whether it is learning.
func (b *Broker) learn(t metadata.Topic, p int32, seg metadata.Segment, wantRF int, base storage.LogConfig, caughtUp bool) bool {
	if !caughtUp || wantRF < 2 || len(seg.Replicas) >= wantRF || seg.State != metadata.SegmentActive || seg.Leader < 0 {
		return false
	}
	if br, ok := b.store.FSM().Broker(seg.Leader); !ok || br.State != metadata.BrokerAlive {
		return false
	}
	tp := b.tp(t.Name, p)
	// A node the controller assigned (re-replication) copies the whole
	// partition; otherwise only a node that held it rejoins.
	assigned := slices.Contains(seg.Learners, b.cfg.NodeID)
	if id, known, err := b.engine.LogTopicID(tp); !assigned && (err != nil || !known || id != t.ID) {
		return false
	}
	cfg := base
	cfg.Replicated = true
	l, ok := b.engine.Log(tp)
	if !ok {
		var err error
		if l, err = b.openPartition(tp, t.ID, cfg, caughtUp); err != nil || l == nil {
			return false
		}
	} else {
		l.SetConfig(cfg)
	}
	e := l.LatestEpoch()
	var mine *metadata.Segment
	for i := range t.Parts[p].Segments {
		if t.Parts[p].Segments[i].Epoch == e {
			mine = &t.Parts[p].Segments[i]
		}
	}
	if e >= 0 && mine == nil {
		return false // an epoch the metadata does not know: do not guess
	}
	if mine != nil && mine.State == metadata.SegmentSealed && l.LogEndOffset() > mine.EndOffset {
		if err := l.TruncateTo(mine.EndOffset); err != nil {
			b.log.Error().Err(err).Str("tp", tp.String()).Int64("end", mine.EndOffset).Msg("learner: truncate to the sealed end")
			return false
		}
		b.log.Warn().Str("tp", tp.String()).Int64("end", mine.EndOffset).Int32("epoch", e).Msg("learner: dropped records past the sealed end of its last segment")
	}
	b.log.Debug().Str("tp", tp.String()).Int64("leo", l.LogEndOffset()).Msg("learner: fetching to rejoin")
	b.repl.follow(tp, t.ID, seg.Leader, seg.Epoch, l)
	return true
}

// dropUnlisted deletes this node's log of t/p once no segment of the
// partition lists this node as a replica any more and the active segment
// has its full replica set: re-replication put the data elsewhere, and
// nobody will read it here.
func (b *Broker) dropUnlisted(t metadata.Topic, p int32, wantRF int, caughtUp bool) {
	seg := t.Parts[p].Active()
	if !caughtUp || wantRF < 2 || len(seg.Replicas) < wantRF || seg.State != metadata.SegmentActive || slices.Contains(seg.Learners, b.cfg.NodeID) {
		return
	}
	for _, s := range t.Parts[p].Segments {
		if slices.Contains(s.Replicas, b.cfg.NodeID) {
			return
		}
	}
	tp := b.tp(t.Name, p)
	if id, known, err := b.engine.LogTopicID(tp); err != nil || !known || id != t.ID {
		return
	}
	if err := b.engine.DeleteLog(tp); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("delete the log of a partition this node no longer holds")
		return
	}
	b.log.Info().Str("tp", tp.String()).Ints32("replicas", seg.Replicas).Msg("deleted the log of a partition re-replicated elsewhere")
}

// restartLearner replaces this node's log of tp, which ends below start,
// the leader's log start offset, with an empty one beginning there: a
// learner copying a partition whose older records the leader no longer
// has (retention). It never touches the log of a replica of the active
// segment.
func (b *Broker) restartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64) {
	defer b.kickReconcile()
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	t, ok := b.store.FSM().Topic(tp.Topic)
	if !ok || t.ID != id || tp.Partition >= t.Partitions || b.shuttingDown() {
		return
	}
	if slices.Contains(t.Parts[tp.Partition].Active().Replicas, b.cfg.NodeID) {
		return
	}
	if l, ok := b.engine.Log(tp); ok && l.LogEndOffset() >= start {
		return
	}
	b.repl.unfollow(tp)
	cfg := b.logConfig(t.Configs)
	cfg.Replicated = true
	if err := b.engine.DeleteLog(tp); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: drop the log to restart at the leader's log start")
		return
	}
	if _, err := b.engine.CreateLogAt(tp, cfg, start); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: create log at the leader's log start")
		return
	}
	if err := b.engine.SetLogTopicID(tp, id); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: record topic id")
		return
	}
	b.log.Info().Str("tp", tp.String()).Int64("start", start).Msg("learner: copying from the leader's log start")
}

// deleteTopicLogs removes this node's logs of a deleted topic (those
// recorded for its ID).
func (b *Broker) deleteTopicLogs(t metadata.Topic) {
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	for p := int32(0); p < t.Partitions; p++ {
		tp := b.tp(t.Name, p)
		if id, known, err := b.engine.LogTopicID(tp); err != nil || (known && id != t.ID) {
			continue
		}
		if err := b.engine.DeleteLog(tp); err != nil {
			// Reconcile retries once caught up.
			b.log.Error().Err(err).Str("topic", t.Name).Int32("partition", p).Msg("delete log failed")
		}
	}
}

// openPartition opens (creating if needed) a partition's log and checks it
// belongs to topic id. A log recorded for another incarnation of the topic
// is replaced, but only once caught up (otherwise nil, nil: try later).
func (b *Broker) openPartition(tp storage.TopicPartition, id metadata.TopicID, cfg storage.LogConfig, caughtUp bool) (*storage.Log, error) {
	have, known, err := b.engine.LogTopicID(tp)
	if err != nil {
		return nil, err
	}
	if known && have != id {
		if !caughtUp {
			return nil, nil
		}
		b.log.Warn().Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("replacing the log of an earlier topic with the same name")
		if err := b.engine.DeleteLog(tp); err != nil {
			return nil, err
		}
		known = false
	}
	l, err := b.engine.OpenLog(tp, cfg)
	if err != nil {
		return nil, err
	}
	if !known {
		if err := b.engine.SetLogTopicID(tp, id); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// waitRegistered waits until the controller has registered this node and
// its metadata has caught up (single-node start-up waits for it before
// reporting ready).
func (b *Broker) waitRegistered(ctx context.Context) error {
	for !b.caughtUp.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: registering with the controller: %w", ctx.Err())
		case <-b.shutdown:
			return errors.New("broker: shut down while registering")
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.reconcile()
	return nil
}

// single reports a cluster of one (no voters, or only this node).
func (b *Broker) single() bool {
	voters, err := metadata.ParseVoters(b.cfg.Voters)
	return err == nil && len(voters) <= 1
}

// aliveBrokers returns the registered brokers that are not fenced, by id.
func (b *Broker) aliveBrokers() map[int32]metadata.Broker {
	out := map[int32]metadata.Broker{}
	for _, br := range b.store.FSM().Brokers() {
		if br.State == metadata.BrokerAlive {
			out[br.ID] = br
		}
	}
	return out
}

// hostPort splits a registered Kafka address for Metadata responses.
func hostPort(addr string) (string, int32) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", -1
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return "", -1
	}
	return host, int32(p)
}
