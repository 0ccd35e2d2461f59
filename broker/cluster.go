package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
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
		ID:        b.cfg.NodeID,
		Kafka:     b.listeners[0].advertised,
		Internal:  b.InternalAddr(),
		Raft:      b.store.RaftAddr(),
		Rack:      b.cfg.Rack,
		Listeners: b.advertisedListeners(),
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
		if cur, ok := b.store.FSM().Broker(b.cfg.NodeID); ok && cur.State == metadata.BrokerAlive && cur.Kafka == hb.Kafka && maps.Equal(cur.Listeners, hb.Listeners) {
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

// Reconcile pacing (docs/io-and-scale.md, "Scale"): after a metadata
// change the loop reconciles only the partitions the change touched
// (metadata.FSM.Changes); a full pass over every topic runs when the FSM
// cannot tell (a snapshot restore, a broker or cluster-config change),
// when this node catches up with the controller, and every
// reconcileFullEvery as a safety net. Partitions whose reconcile failed
// are retried every reconcileRetryEvery.
const (
	reconcileFullEvery  = 2 * time.Minute
	reconcileRetryEvery = 5 * time.Second
)

// reconcileLoop reconciles after every metadata change.
func (b *Broker) reconcileLoop() {
	defer b.bgWG.Done()
	fsm := b.store.FSM()
	var seen uint64 // the applied index the last pass covered
	var lastFull time.Time
	wasCaughtUp := false
	for {
		changed := fsm.Changed()
		caughtUp := b.caughtUp.Load()
		if caughtUp && fsm.ClusterID() == "" {
			ctx, cancel := context.WithTimeout(b.bgCtx, b.cfg.Lease.Timeout)
			if err := b.ensureClusterID(ctx); err != nil {
				b.log.Warn().Err(err).Msg("set cluster id")
			}
			cancel()
		}
		ch := fsm.Changes(seen)
		if ch.All || caughtUp != wasCaughtUp || time.Since(lastFull) >= reconcileFullEvery {
			b.takeReconcileRetries() // the full pass covers them
			b.reconcile()
			lastFull = time.Now()
		} else {
			b.reconcileChanged(ch.Partitions)
		}
		seen, wasCaughtUp = ch.Through, caughtUp
		select {
		case <-b.shutdown:
			return
		case <-changed:
		case <-b.reconcileKick:
		case <-time.After(reconcileRetryEvery):
		}
	}
}

// retryReconcile has the next reconcile pass handle tp even if the
// metadata did not change it.
func (b *Broker) retryReconcile(tp storage.TopicPartition) {
	b.reconcileRetryMu.Lock()
	if b.reconcileRetry == nil {
		b.reconcileRetry = map[storage.TopicPartition]bool{}
	}
	b.reconcileRetry[tp] = true
	b.reconcileRetryMu.Unlock()
}

// takeReconcileRetries returns and clears the partitions to retry.
func (b *Broker) takeReconcileRetries() map[storage.TopicPartition]bool {
	b.reconcileRetryMu.Lock()
	defer b.reconcileRetryMu.Unlock()
	out := b.reconcileRetry
	b.reconcileRetry = nil
	return out
}

// reconcileChanged is reconcile for the partitions a metadata change
// touched (and those queued for a retry): it opens, leads, follows or
// deletes each as a full pass would, and touches no other.
func (b *Broker) reconcileChanged(refs []metadata.PartitionRef) {
	retries := b.takeReconcileRetries()
	if len(refs) == 0 && len(retries) == 0 {
		return
	}
	todo := make([]storage.TopicPartition, 0, len(refs)+len(retries))
	seen := make(map[storage.TopicPartition]bool, len(refs)+len(retries))
	for _, r := range refs {
		tp := b.tp(r.Topic, r.Partition)
		if !seen[tp] {
			seen[tp] = true
			todo = append(todo, tp)
		}
	}
	for tp := range retries {
		if !seen[tp] {
			seen[tp] = true
			todo = append(todo, tp)
		}
	}
	// One copy per topic, however many of its partitions changed.
	topics := map[string]*metadata.Topic{}
	topicOf := func(name string) *metadata.Topic {
		t, ok := topics[name]
		if !ok {
			if c, found := b.store.FSM().Topic(name); found {
				t = &c
			}
			topics[name] = t
		}
		return t
	}
	var open []partitionJob
	for _, tp := range todo {
		if t := topicOf(tp.Topic); t != nil && tp.Partition < t.Partitions {
			if job, ok := b.missingLog(*t, tp.Partition); ok {
				open = append(open, job)
			}
		}
	}
	// New logs are created before taking reconcileMu (creating replaces
	// or deletes nothing), so a CreateTopics waiting for it does not wait
	// for their fsyncs too.
	open = b.createLogs(open)

	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	if b.shuttingDown() {
		return
	}
	caughtUp := b.caughtUp.Load()
	clear(topics) // what follows (deleting above all) goes by the metadata as it is now
	b.openJobs(open, caughtUp)
	for _, tp := range todo {
		t := topicOf(tp.Topic)
		if t != nil && tp.Partition < t.Partitions {
			b.reconcilePartition(*t, tp.Partition, caughtUp)
		} else if _, err := b.repl.Reconcile(tp.Topic, tp.Partition, caughtUp); err != nil { // gone: stop leading and following it
			b.log.Error().Err(err).Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("reconcile partition")
		}
		if !caughtUp {
			continue
		}
		// Delete the log of a partition that is gone, or of an earlier
		// topic of the same name, as reconcile does.
		have, known, err := b.engine.LogTopicID(tp)
		if err != nil {
			b.log.Error().Err(err).Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("read the topic id of a log")
			b.retryReconcile(tp)
			continue
		}
		_, isOpen := b.engine.Log(tp)
		if !known && !isOpen {
			continue
		}
		// The metadata as it is now, read after the log was seen: a log
		// created meanwhile (createLogs runs without reconcileMu) was
		// created for a topic this read shows.
		if cur, ok := b.store.FSM().Topic(tp.Topic); ok && tp.Partition < cur.Partitions && (!known || have == cur.ID) {
			continue
		}
		b.log.Warn().Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("removing log of a deleted topic")
		b.unloadDeleted(tp, have, known)
		if err := b.engine.DeleteLog(tp); err != nil {
			b.log.Error().Err(err).Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("delete log")
			b.retryReconcile(tp)
		}
	}
}

// reconcile is a full reconcile pass: it opens the logs of the partitions
// this node leads, pushes topic configs to them, starts group coordinators
// of local __consumer_offsets partitions, and, once this node has caught
// up with the metadata, deletes logs whose topic is gone. Before catching
// up it deletes nothing: a stale view must never remove data.
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
	b.removeUnwanted(dirs, want)
}

// removeUnwanted deletes the logs among dirs that no partition in want
// (the metadata a full pass read) holds, or that belong to an earlier
// topic of the same name. Logs are created outside reconcileMu
// (createLogs), so a log listed in dirs may belong to a topic created
// after want was read: each candidate is checked again against the
// metadata as it is now before it is deleted. b.reconcileMu held.
func (b *Broker) removeUnwanted(dirs []storage.TopicPartition, want map[storage.TopicPartition]metadata.TopicID) {
	for _, tp := range dirs {
		if id, ok := want[tp]; ok {
			if have, known, err := b.engine.LogTopicID(tp); err != nil || !known || have == id {
				continue
			}
		}
		if t, ok := b.store.FSM().Topic(tp.Topic); ok && tp.Partition < t.Partitions {
			if have, known, err := b.engine.LogTopicID(tp); err != nil || !known || have == t.ID {
				continue // created since want was read
			}
		}
		b.log.Warn().Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("removing log of a deleted topic")
		have, known, _ := b.engine.LogTopicID(tp)
		b.unloadDeleted(tp, have, known)
		if err := b.engine.DeleteLog(tp); err != nil {
			b.log.Error().Err(err).Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("delete log")
		}
	}
}

// unloadDeleted stops what this node hosts on the log of tp before the
// log is deleted: the group or transaction coordinator of an internal
// partition, the share coordinator of a __share_group_state partition,
// and the share-partitions of the topic the log belonged to (id, when
// known), which nothing looks up again once their topic is gone.
func (b *Broker) unloadDeleted(tp storage.TopicPartition, id metadata.TopicID, known bool) {
	switch tp.Topic {
	case offsetsTopic:
		b.gc.unload(tp.Partition)
	case txnTopic:
		b.txnc.unload(tp.Partition)
	case shareStateTopic:
		b.shareCoords.unload(tp.Partition)
	}
	if known {
		b.share.dropPartition(id, tp.Partition)
	}
}

// partitionJob is a log to open.
type partitionJob struct {
	tp  storage.TopicPartition
	id  metadata.TopicID
	cfg storage.LogConfig
}

// missingLog reports partition p of t as a log to open if this node holds
// a replica of its active segment and has not opened it yet.
func (b *Broker) missingLog(t metadata.Topic, p int32) (partitionJob, bool) {
	if !slices.Contains(t.Parts[p].Active().Replicas, b.cfg.NodeID) {
		return partitionJob{}, false
	}
	tp := b.tp(t.Name, p)
	if _, ok := b.engine.Log(tp); ok {
		return partitionJob{}, false
	}
	cfg := b.logConfig(t.Configs)
	cfg.Replicated = t.ReplicationFactor() > 1
	return partitionJob{tp, t.ID, cfg}, true
}

// openMissing opens, four at a time, the logs of partitions this node
// holds a replica of that are not open yet (a restart recovers them in
// parallel). Failures are left to reconcileLocal, which logs them.
func (b *Broker) openMissing(topics []metadata.Topic, caughtUp bool) {
	var jobs []partitionJob
	for _, t := range topics {
		for p := int32(0); p < t.Partitions; p++ {
			if job, ok := b.missingLog(t, p); ok {
				jobs = append(jobs, job)
			}
		}
	}
	b.openJobs(jobs, caughtUp)
}

// createLogs creates together the logs of jobs that have no directory yet
// (storage.Engine.CreateLogs: their fsyncs are shared) and returns the
// jobs it did not create (open already, to recover, an earlier topic's
// log, or a failure: openPartition handles those). It creates, never
// replaces or deletes, so it needs no reconcileMu.
func (b *Broker) createLogs(jobs []partitionJob) []partitionJob {
	if len(jobs) == 0 {
		return nil
	}
	specs := make([]storage.NewLog, len(jobs))
	for i, j := range jobs {
		specs[i] = storage.NewLog{TP: j.tp, Config: j.cfg, TopicID: j.id}
	}
	_, errs := b.engine.CreateLogs(specs)
	var rest []partitionJob
	for i, err := range errs {
		if err != nil {
			rest = append(rest, jobs[i])
		}
	}
	return rest
}

// openJobs opens logs: new ones are created together (createLogs), the
// others (a restart's recovery) opened four at a time. A single one is
// left to reconcilePartition; so are failures, which it retries and logs.
// b.reconcileMu held.
func (b *Broker) openJobs(jobs []partitionJob, caughtUp bool) {
	if len(jobs) < 2 {
		return
	}
	rest := b.createLogs(jobs)
	parallel(len(rest), 4, func(i int) {
		_, _ = b.openPartition(rest[i].tp, rest[i].id, rest[i].cfg, caughtUp)
	})
}

// reconcileTopic is reconcile for one topic that was just created or
// changed through this node (it deletes nothing).
func (b *Broker) reconcileTopic(name string) {
	t, ok := b.store.FSM().Topic(name)
	if !ok {
		return
	}
	// Create this node's new logs of the topic first, without
	// reconcileMu: concurrent creations share their fsyncs.
	var jobs []partitionJob
	for p := int32(0); p < t.Partitions; p++ {
		if job, ok := b.missingLog(t, p); ok {
			jobs = append(jobs, job)
		}
	}
	b.createLogs(jobs)
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	if b.shuttingDown() {
		return
	}
	if cur, ok := b.store.FSM().Topic(name); ok && cur.ID == t.ID {
		b.reconcileLocal(cur, b.caughtUp.Load())
		return
	}
	// Deleted (or replaced) meanwhile: the reconcile loop removes what
	// was created for it.
	for _, j := range jobs {
		b.retryReconcile(j.tp)
	}
	b.kickReconcile()
}

// reconcileLocal makes this node's roles in t's partitions match the
// metadata (reconcilePartition for each). b.reconcileMu held.
func (b *Broker) reconcileLocal(t metadata.Topic, caughtUp bool) {
	for p := int32(0); p < t.Partitions; p++ {
		b.reconcilePartition(t, p, caughtUp)
	}
}

// reconcilePartition makes this node's role in partition p of t match the
// metadata (replica.Manager.Reconcile) and starts or stops the group
// coordinator of a __consumer_offsets partition with its leadership. A
// failure is logged and the partition queued for a retry.
// b.reconcileMu held.
func (b *Broker) reconcilePartition(t metadata.Topic, p int32, caughtUp bool) {
	role, err := b.repl.Reconcile(t.Name, p, caughtUp)
	if err != nil {
		b.log.Error().Err(err).Str("topic", t.Name).Int32("partition", p).Msg("reconcile partition")
		b.retryReconcile(b.tp(t.Name, p))
	}
	b.share.reconciled(t, p, role) // share-partitions and coordinators follow leadership
	if t.Name == txnTopic {
		b.reconcileTxnPartition(t, p, role)
		return
	}
	if t.Name != offsetsTopic {
		return
	}
	seg := t.Parts[p].Active()
	if role != replica.RoleLeader || seg.State != metadata.SegmentActive {
		// Another node coordinates these groups now. Reconcile
		// deposed the leadership first: a commit waiting for the
		// high watermark fails at once instead of holding up the
		// coordinator's Close.
		b.gc.unload(p)
		return
	}
	l, ok := b.engine.Log(b.tp(t.Name, p))
	if !ok {
		return
	}
	if err := b.gc.load(b, t.Partitions, p, l, t.Parts[p].Segments); err != nil {
		b.log.Error().Err(err).Int32("partition", p).Msg("load group coordinator")
		b.retryReconcile(b.tp(t.Name, p))
	}
}

// restartLearner replaces this node's log of tp, which ends below start,
// the leader's log start offset, with an empty one beginning there: a
// learner copying a partition whose older records the leader no longer
// has (retention). The new log's producer state begins with producers,
// the leader's transactions opened below start and still open
// (docs/transactions.md, "Learners"). It never touches the log of a
// replica of the active segment.
func (b *Broker) restartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64, producers []fencing.ProducerEntry) {
	defer b.kickReconcile()
	defer b.retryReconcile(tp) // follow again from the new log's start
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
	b.repl.Unfollow(tp)
	cfg := b.logConfig(t.Configs)
	cfg.Replicated = true
	if err := b.engine.DeleteLog(tp); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: drop the log to restart at the leader's log start")
		return
	}
	if _, err := b.engine.CreateLogAtWithProducers(tp, cfg, start, producers); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: create log at the leader's log start")
		return
	}
	if err := b.engine.SetLogTopicID(tp, id); err != nil {
		b.log.Error().Err(err).Str("tp", tp.String()).Msg("learner: record topic id")
		return
	}
	b.log.Info().Str("tp", tp.String()).Int64("start", start).Int("open_transactions", len(producers)).Msg("learner: copying from the leader's log start")
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
