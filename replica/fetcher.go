package replica

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// followed is one partition a fetcher replicates.
type followed struct {
	id    metadata.TopicID
	epoch int32
	log   *storage.Log
	// learner: copying the partition to join it, off the ack path; its
	// appends wait for the background I/O budget.
	learner bool
}

// fetcher replicates every partition this node follows (or learns) from
// one leader node: it fetches with ReplicaID set from each log's end
// offset, appends the leader's batches unchanged (offsets and epochs
// kept), waits for them to be durable under fsync=always before fetching
// on, and takes the leader's high watermark and log start as its bounds.
type fetcher struct {
	m      *Manager
	leader int32
	kick   chan struct{}
	stop   chan struct{}

	// mu orders appends with drop: once drop returns, nothing more is
	// appended to the partition. It is never held across an append's
	// durability wait or the network.
	mu    sync.Mutex
	parts map[storage.TopicPartition]*followed
	// gen counts changes of parts: a fetch built before one is not sent.
	gen uint64
	// names maps the followed topics' IDs to their names (v13 answers
	// name topics by ID).
	names map[metadata.TopicID]string
	// watches end the watch of each followed log (see dirty).
	watches map[storage.TopicPartition]func()
	// inflight cancels the fetch in flight (a long poll that does not
	// carry a partition just added or changed); nil between fetches.
	inflight context.CancelFunc
	// inflightIdle: the fetch in flight is an idle long poll (see
	// quiet), which a partition new to the fetcher cancels too.
	inflightIdle bool
	// added is when a partition new to the fetcher was last added: no
	// idle long poll starts within idleFetchWait of it (see fetchOnce).
	added time.Time

	// sess is the fetch session (KIP-227) with the leader; only the run
	// goroutine uses it.
	sess fetchSession
	// dmu guards dirty: the partitions whose fetch position may differ
	// from what the leader's session holds (docs/io-and-scale.md,
	// "Scale"): added, changed or dropped, or their log moved (a watch on
	// it: log end, log start, high watermark). Only these are looked at
	// to build an incremental fetch. Watches take it under the log's
	// lock; nothing holding it calls into a log or takes mu.
	dmu   sync.Mutex
	dirty map[storage.TopicPartition]struct{}

	// quiet: the last answer was an incremental one naming no partition
	// (nothing new anywhere), so the next fetch long-polls for
	// Config.idleFetchWait instead of FetchMaxWait. Run goroutine only.
	quiet bool
	// pending: under fsync=always with a leader that counts durable
	// offsets (durable.go), the partitions whose appends were not yet
	// durable when last reported (appended by this fetcher, or named
	// with a durable offset below their log end), with the last offset
	// to report durable. While any is pending the fetcher does not
	// long-poll: the leader must hear of the sync soon. Run goroutine
	// only.
	pending map[storage.TopicPartition]int64
	// awareSession is the fetch session (its ID) whose leader said it
	// counts durable offsets; 0: none. Only an incremental fetch of that
	// session may carry a log end past what is durable: it reaches the
	// same leader process or is refused. Run goroutine only.
	awareSession int32
}

// idleFetchWait is the long poll of a follower's fetch after an answer
// with nothing new at all (docs/io-and-scale.md, "Scale"): each round of
// a fetch session costs the leader and the follower work per partition
// it holds, and an idle cluster's rounds end only at the wait, so a
// longer one cuts an idle node's CPU about in proportion. Records end
// any poll at once; what waits longer is only a high watermark or log
// start that moved without new records (one answer with news brings the
// wait back to FetchMaxWait). It is 4 fetch waits, at most a quarter of
// LagTimeMax: every round counts as the follower's fetch of each
// partition, and a follower silent for LagTimeMax is rolled out.
func (c Config) idleFetchWait() time.Duration {
	return max(c.FetchMaxWait, min(4*c.FetchMaxWait, c.LagTimeMax/4))
}

// fetchSession is a fetcher's incremental fetch session with its leader:
// after a full fetch that the leader answers with a session ID, each
// fetch names only the partitions whose fetch position changed, forgets
// the ones no longer followed, and gets back only partitions with news.
type fetchSession struct {
	id, epoch int32 // id 0: the next fetch is a full one
	// sent is what the leader's session holds for each partition.
	sent map[storage.TopicPartition]sentPart
}

// sentPart is a partition's fetch position as the leader's session has it.
type sentPart struct {
	id       metadata.TopicID
	offset   int64
	epoch    int32
	logStart int64 // reported so that DeleteRecords can wait for it
	durable  int64 // fsync=always: the offset below which the copy is durable
}

// reset makes the next fetch a full one that replaces the session.
func (s *fetchSession) reset() {
	s.epoch = 0 // keep id: a full fetch naming it closes it on the leader
	s.sent = nil
}

func newFetcher(m *Manager, leader int32) *fetcher {
	return &fetcher{m: m, leader: leader, parts: map[storage.TopicPartition]*followed{}, names: map[metadata.TopicID]string{},
		watches: map[storage.TopicPartition]func(){}, dirty: map[storage.TopicPartition]struct{}{},
		pending: map[storage.TopicPartition]int64{},
		kick:    make(chan struct{}, 1), stop: make(chan struct{})}
}

// markDirty queues tp to be looked at by the next fetch.
func (f *fetcher) markDirty(tp storage.TopicPartition) {
	f.dmu.Lock()
	f.dirty[tp] = struct{}{}
	f.dmu.Unlock()
}

// takeDirty returns the queued partitions and empties the queue.
func (f *fetcher) takeDirty() map[storage.TopicPartition]struct{} {
	f.dmu.Lock()
	defer f.dmu.Unlock()
	out := f.dirty
	f.dirty = make(map[storage.TopicPartition]struct{}, len(out))
	return out
}

// watchLocked watches tp's log l (replacing an earlier watch). mu held.
func (f *fetcher) watchLocked(tp storage.TopicPartition, l *storage.Log) {
	if unwatch := f.watches[tp]; unwatch != nil {
		unwatch()
	}
	f.watches[tp] = l.Watch(func() { f.markDirty(tp) })
}

// unwatchLocked ends tp's watch. mu held.
func (f *fetcher) unwatchLocked(tp storage.TopicPartition) {
	if unwatch := f.watches[tp]; unwatch != nil {
		unwatch()
		delete(f.watches, tp)
	}
}

func (f *fetcher) add(tp storage.TopicPartition, p *followed) {
	f.mu.Lock()
	cur, had := f.parts[tp]
	if had && *cur == *p {
		f.mu.Unlock()
		return // unchanged: keep in-flight answers valid
	}
	f.parts[tp] = p
	f.gen++
	f.names[p.id] = tp.Topic
	if (!had || cur.log != p.log) && p.log != nil {
		f.watchLocked(tp, p.log)
	}
	f.markDirty(tp)
	if !had {
		f.added = time.Now()
	}
	if f.inflight != nil && (had || f.inflightIdle) {
		// A partition the fetch in flight carries changed (a new
		// epoch), or the fetch is an idle long poll: re-fetch at once.
		// Otherwise a partition new to this fetcher joins at the next
		// fetch, at most FetchMaxWait later: the leader ends its
		// followers' long polls when it takes a segment's leadership
		// (Manager.LeadershipStarted), and cancelling closes the
		// connection, which restarts the fetch session with a full
		// fetch of every partition; while thousands of partitions are
		// created that was a full fetch per reconcile pass
		// (docs/io-and-scale.md, "Scale").
		f.inflight()
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// addedWithin reports whether a partition new to the fetcher was added
// within d before now. While partitions keep coming (thousands of topics
// being created) the fetcher does not go to idle long polls: a new
// partition cancels an idle poll, and cancelling closes the connection,
// so each one restarted the fetch session with a full fetch of every
// partition (docs/io-and-scale.md, "Scale").
func (f *fetcher) addedWithin(now time.Time, d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.added.IsZero() && now.Sub(f.added) < d
}

func (f *fetcher) drop(tp storage.TopicPartition) {
	f.mu.Lock()
	if _, ok := f.parts[tp]; ok {
		delete(f.parts, tp)
		f.gen++
		f.unwatchLocked(tp)
		f.markDirty(tp)
	}
	f.mu.Unlock()
}

func (f *fetcher) has(tp storage.TopicPartition) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.parts[tp]
	return ok
}

func (f *fetcher) close() {
	f.mu.Lock()
	if f.inflight != nil {
		f.inflight()
	}
	for tp := range f.watches {
		f.unwatchLocked(tp)
	}
	f.mu.Unlock()
	close(f.stop)
}

// count is the number of partitions followed.
func (f *fetcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.parts)
}

func (f *fetcher) run() {
	backoff := time.Duration(0)
	for {
		select {
		case <-f.stop:
			return
		case <-f.m.ctx.Done():
			return
		default:
		}
		if f.count() == 0 {
			select {
			case <-f.kick:
			case <-f.stop:
				return
			case <-f.m.ctx.Done():
				return
			}
			continue
		}
		progressed, err := f.fetchOnce()
		if err == nil || progressed || errors.Is(err, context.Canceled) {
			// Some partitions moved on, or the set changed: go on at
			// once (a partition that failed is retried next round).
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), 500*time.Millisecond)
		f.m.log.Debug().Err(err).Int32("leader", f.leader).Msg("replica fetch")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-f.kick: // the metadata moved on (new epoch, new partition)
		case <-f.stop:
			t.Stop()
			return
		case <-f.m.ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// fetchOnce sends one Fetch to the leader for the followed partitions and
// appends what comes back. An incremental fetch looks only at the
// partitions queued in dirty and names those whose position differs from
// what the leader's session holds (a full one names every partition). It
// reports whether any partition was answered without an error (then the
// fetcher goes on without backing off), and the first error.
func (f *fetcher) fetchOnce() (progressed bool, err error) {
	m := f.m
	if br, ok := m.md.Broker(f.leader); !ok || br.State != metadata.BrokerAlive {
		return false, errors.New("replica: leader not alive")
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = m.cfg.NodeID
	wait := m.cfg.FetchMaxWait
	if f.quiet && !f.addedWithin(time.Now(), m.cfg.idleFetchWait()) {
		wait = m.cfg.idleFetchWait()
	}
	f.quiet = false // until an answer says so
	sess := &f.sess
	incremental := sess.id != 0 && sess.epoch > 0 && sess.sent != nil
	// counted: this fetch reaches the leader process that said it counts
	// durable offsets, or is refused (an incremental fetch of its
	// session). Any other may reach one that counts the fetch offset (an
	// older version, after a restart): it names a partition only once
	// the partition's log end is durable (claimOnlyDurable).
	counted := incremental && sess.id == f.awareSession
	if f.checkPending() {
		// Appends not yet durable: answer at once, so that the fetch
		// after their sync tells the leader (durable.go).
		wait = 0
	}
	req.MaxWaitMillis = int32(wait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = 16 << 20
	req.SessionID, req.SessionEpoch = sess.id, sess.epoch
	// look: the partitions to look at; changes: what the leader's session
	// will hold for them once it answered (del: forgotten).
	type change struct {
		tp  storage.TopicPartition
		sp  sentPart
		del bool
	}
	dirty := f.takeDirty()
	requeue := func() {
		for tp := range dirty {
			f.markDirty(tp)
		}
	}
	f.mu.Lock()
	gen := f.gen
	var look []storage.TopicPartition
	if incremental {
		look = make([]storage.TopicPartition, 0, len(dirty))
		for tp := range dirty {
			look = append(look, tp)
		}
	} else {
		look = make([]storage.TopicPartition, 0, len(f.parts))
		for tp := range f.parts {
			look = append(look, tp)
		}
	}
	parts := make(map[storage.TopicPartition]*followed, len(look))
	for _, tp := range look {
		if p := f.parts[tp]; p != nil {
			parts[tp] = p
		}
	}
	f.mu.Unlock()
	changes := make([]change, 0, len(look))
	byTopic := map[string]int{}
	for _, tp := range look {
		p := parts[tp]
		if p == nil {
			if sp, ok := sess.sent[tp]; ok && incremental {
				ft := kmsg.NewFetchRequestForgottenTopic()
				ft.Topic, ft.TopicID = tp.Topic, sp.id
				ft.Partitions = []int32{tp.Partition}
				req.ForgottenTopics = append(req.ForgottenTopics, ft)
				changes = append(changes, change{tp: tp, del: true})
			}
			continue
		}
		if m.cfg.FsyncAlways && !counted {
			if err := f.claimOnlyDurable(tp, p); err != nil {
				if m.ctx.Err() != nil {
					requeue()
					return false, err
				}
				continue // a failed log: not named, the leader rolls this node out
			}
		}
		sp := sentPart{id: p.id, offset: p.log.LogEndOffset(), epoch: p.epoch, logStart: p.log.LogStartOffset(), durable: -1}
		if m.cfg.FsyncAlways {
			sp.durable = p.log.DurableOffset()
		}
		if incremental {
			cur, ok := sess.sent[tp]
			if ok && cur == sp {
				continue // the leader's session has it
			}
			if ok && cur.id != sp.id {
				// Another topic of the same name: the leader's session
				// forgets the old one's partition.
				ft := kmsg.NewFetchRequestForgottenTopic()
				ft.Topic, ft.TopicID = tp.Topic, cur.id
				ft.Partitions = []int32{tp.Partition}
				req.ForgottenTopics = append(req.ForgottenTopics, ft)
			}
		}
		if sp.durable >= 0 && sp.durable < sp.offset {
			// Named with less durable than it holds: this fetcher names
			// it again once the rest is synced, whoever appended it. A
			// durable offset's advance moves no watch, and the appends
			// may be another fetcher's: one that copied them from the
			// segment's previous leader just before the partition moved
			// here. Its pending entry went with it; without this one the
			// leader counted this node at the old durable offset, and
			// acks=all and the next roll waited for good.
			f.pending[tp] = max(f.pending[tp], sp.offset-1)
		}
		changes = append(changes, change{tp: tp, sp: sp})
		i, ok := byTopic[tp.Topic]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = tp.Topic, p.id
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			byTopic[tp.Topic] = i
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = tp.Partition
		rp.FetchOffset = sp.offset
		rp.CurrentLeaderEpoch = p.epoch
		rp.LogStartOffset = sp.logStart
		rp.PartitionMaxBytes = 4 << 20
		if sp.durable >= 0 {
			SetDurableOffset(&rp, sp.durable)
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	f.mu.Lock()
	if f.gen != gen {
		f.mu.Unlock()
		requeue()
		return false, context.Canceled // changed since the look
	}
	f.inflight, f.inflightIdle = cancel, wait > m.cfg.FetchMaxWait
	f.mu.Unlock()
	resp, release, err := m.tr.Fetch(ctx, f.leader, req)
	f.mu.Lock()
	f.inflight, f.inflightIdle = nil, false
	f.mu.Unlock()
	if err != nil {
		// The leader may or may not have taken the session epoch.
		sess.reset()
		if errors.Is(ctx.Err(), context.Canceled) {
			return false, context.Canceled
		}
		return false, err
	}
	// The answer's batches may live in the transport's recycled buffer:
	// everything below is done with them when fetchOnce returns.
	defer release()
	if resp.ErrorCode == kerr.FetchSessionIDNotFound.Code || resp.ErrorCode == kerr.InvalidFetchSessionEpoch.Code {
		// The leader restarted or evicted the session: start over with
		// a full fetch, at once.
		if resp.ErrorCode == kerr.FetchSessionIDNotFound.Code {
			sess.id = 0
		}
		sess.reset()
		return false, context.Canceled
	}
	if resp.ErrorCode != 0 {
		sess.reset()
		return false, kerr.ErrorForCode(resp.ErrorCode)
	}
	switch {
	case resp.SessionID == 0:
		sess.id, sess.epoch, sess.sent = 0, 0, nil // the leader keeps none
	case incremental:
		sess.epoch = nextEpoch(sess.epoch)
		f.quiet = true
		for _, rt := range resp.Topics {
			f.quiet = f.quiet && len(rt.Partitions) == 0
		}
	default:
		sess.id, sess.epoch, sess.sent = resp.SessionID, 1, make(map[storage.TopicPartition]sentPart, len(changes))
	}
	if sess.sent != nil {
		for _, c := range changes {
			if c.del {
				delete(sess.sent, c.tp)
			} else {
				sess.sent[c.tp] = c.sp
			}
		}
	}
	// Every partition's batches are appended first, then made durable
	// and followed: one group commit covers the whole answer, where
	// waiting after each partition's append cost one commit per
	// partition in turn. A leader that counts durable offsets
	// (durable.go) is told of the sync by a later fetch instead: the
	// follower fetches on while it runs.
	aware := m.cfg.FsyncAlways && durableAware(resp)
	switch {
	case aware && resp.SessionID != 0 && resp.SessionID == sess.id:
		f.awareSession = sess.id
	case sess.id != f.awareSession:
		f.awareSession = 0
	}
	var firstErr error
	var applied []appliedPart
	for ti := range resp.Topics {
		rt := &resp.Topics[ti]
		topic := rt.Topic
		var p *followed
		f.mu.Lock()
		if n, ok := f.names[rt.TopicID]; ok && topic == "" {
			topic = n // v13+ names topics by ID
		}
		f.mu.Unlock()
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			tp := storage.TopicPartition{Topic: topic, Partition: rp.Partition}
			f.mu.Lock()
			p = f.parts[tp]
			f.mu.Unlock()
			if p == nil || (rt.TopicID != [16]byte{} && [16]byte(p.id) != rt.TopicID) {
				continue
			}
			a, err := f.apply(ctx, tp, p, rp)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if a.ok {
				applied = append(applied, a)
			}
		}
	}
	for _, a := range applied {
		if aware && a.last >= 0 {
			f.pending[a.tp] = a.last
		}
		ok, err := f.follow(ctx, a, !aware)
		progressed = progressed || ok
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if aware && len(f.pending) > 0 {
		// Wait for the pending syncs, which the next fetch reports, but
		// only up to pendingPoll: an idle follower's sync ends well
		// within it (one fetch per answer, as when it waited for each
		// sync), and past it the follower fetches on while the sync
		// runs, copying what was produced meanwhile.
		if err := f.waitPending(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return progressed, firstErr
}

// claimOnlyDurable waits until everything p's log holds is durable, for
// a fetch that may reach a leader counting the fetch offset (fetchOnce).
// Only this fetcher appends to the log, so its end stays put meanwhile.
// It fails if the log failed (nothing more becomes durable) or the
// manager closes.
func (f *fetcher) claimOnlyDurable(tp storage.TopicPartition, p *followed) error {
	leo := p.log.LogEndOffset()
	if done, err := p.log.Durable(leo - 1); done {
		if err != nil {
			f.m.log.Debug().Err(err).Str("tp", tp.String()).Msg("replica fetch: log not durable")
		}
		return err
	}
	return p.log.WaitDurable(f.m.ctx, leo-1)
}

// checkPending queues the pending partitions to be looked at (their
// durable offset may have moved), forgets those now durable, no longer
// followed, or whose log failed, and reports whether any is still
// pending. Run goroutine only.
func (f *fetcher) checkPending() bool {
	if len(f.pending) == 0 {
		return false
	}
	for tp, last := range f.pending {
		f.markDirty(tp)
		f.mu.Lock()
		p := f.parts[tp]
		f.mu.Unlock()
		if p == nil {
			delete(f.pending, tp)
			continue
		}
		done, err := p.log.Durable(last)
		if err != nil {
			// A fenced or closed log syncs nothing more: its follower
			// claims no more and falls behind (the leader rolls it out).
			f.m.log.Warn().Err(err).Str("tp", tp.String()).Msg("replica append not durable")
		}
		if done {
			delete(f.pending, tp)
		}
	}
	return len(f.pending) > 0
}

// pendingPoll bounds waitPending: a follower whose sync takes longer
// asks its leader again meanwhile (an answer at once), so records
// produced during a slow sync are copied without waiting for its end.
// An fdatasync takes 0.3-0.5 ms on an idle machine here (README,
// Performance), 1-2 ms under load.
const pendingPoll = time.Millisecond

// waitPending waits until every pending partition's appends are durable
// (or its log failed), or pendingPoll has passed. Run goroutine only.
func (f *fetcher) waitPending(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, pendingPoll)
	defer cancel()
	for tp, last := range f.pending {
		f.mu.Lock()
		p := f.parts[tp]
		f.mu.Unlock()
		if p == nil {
			continue
		}
		if err := p.log.WaitDurable(wctx, last); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if wctx.Err() != nil {
				return nil // the next fetch asks the leader, at once
			}
			// A failed log: checkPending forgets it.
		}
	}
	return nil
}

// appliedPart is a partition whose answer apply took: what follow
// still has to do for it.
type appliedPart struct {
	ok   bool
	tp   storage.TopicPartition
	p    *followed
	rp   *kmsg.FetchResponseTopicPartition
	last int64 // the last offset appended, -1 if none
}

func nextEpoch(e int32) int32 {
	if e == math.MaxInt32 {
		return 1
	}
	return e + 1
}

// apply takes one partition's answer: appends its batches. follow then
// makes them durable and follows the leader's high watermark and log
// start; a partition apply refused (ok false) is not healthy.
func (f *fetcher) apply(ctx context.Context, tp storage.TopicPartition, p *followed, rp *kmsg.FetchResponseTopicPartition) (appliedPart, error) {
	m := f.m
	a := appliedPart{tp: tp, p: p, rp: rp, last: -1}
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code && rp.LogStartOffset > p.log.LogEndOffset() {
		// The leader no longer has what this node lacks: a learner
		// restarts its copy at the leader's log start (the host leaves a
		// replica's log alone).
		f.drop(tp)
		start, leader := rp.LogStartOffset, f.leader
		m.goTracked(func() { m.restartLearner(tp, p.id, leader, start) })
	}
	if rp.ErrorCode != 0 {
		return a, kerr.ErrorForCode(rp.ErrorCode)
	}
	if len(rp.RecordBatches) > 0 {
		if p.learner {
			// A learner's copy must not crowd out the acks of the
			// partitions this node serves (storage.background-io-rate).
			if err := p.log.WaitBackgroundIO(ctx, len(rp.RecordBatches)); err != nil {
				return a, err
			}
		}
		// Append only while this fetcher still follows the partition: a
		// drop (leadership moved, or a failover's fence) holds f.mu, so
		// nothing is appended after it.
		f.mu.Lock()
		if f.parts[tp] != p {
			f.mu.Unlock()
			return a, nil
		}
		append := p.log.AppendReplica
		if p.learner {
			// A learner copies sealed ranges, which cleaning may have
			// left with offset gaps (docs/compaction.md).
			append = p.log.AppendReplicaGap
		}
		res, err := append(rp.RecordBatches)
		f.mu.Unlock()
		if err != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Msg("replica append failed")
			return a, err
		}
		a.last = res.LastOffset
	}
	a.ok = true
	return a, nil
}

// follow finishes a partition apply took: under fsync=always with sync
// set it waits until the appended batches are durable (the next fetch
// tells the leader this node holds everything below its log end offset;
// see durable.go for the leaders that need not wait), then takes the
// leader's high watermark and log start (the high watermark stays within
// what is durable here: storage.Log.AdvanceHighWatermark). It reports
// whether the partition is healthy.
func (f *fetcher) follow(ctx context.Context, a appliedPart, sync bool) (bool, error) {
	m, tp, p, rp := f.m, a.tp, a.p, a.rp
	if a.last >= 0 && m.cfg.FsyncAlways && sync {
		// Not bounded by the fetch's timeout: past it the next fetch
		// would claim what is not durable. A sync that never ends stops
		// this fetcher, and the leader rolls the follower out.
		if err := p.log.WaitDurable(m.ctx, a.last); err != nil {
			return true, err
		}
	}
	p.log.AdvanceHighWatermark(rp.HighWatermark)
	// The leader's log start (retention, DeleteRecords, group
	// checkpoints) moves here too, within what is committed.
	if start := min(rp.LogStartOffset, p.log.HighWatermark()); start > p.log.LogStartOffset() {
		if _, err := p.log.DeleteRecordsBefore(start); err != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Int64("start", start).Msg("follow the leader's log start")
		}
	}
	return true, nil
}

// restartLearner has the host restart tp's copy at start, the leader's
// log start, with the leader's transactions that opened below start and
// are still open (docs/transactions.md, "Learners"): the copy will never
// hold their first batches, and without them its last stable offset
// would pass records of transactions not decided yet. If the leader does
// not answer, the copy is not restarted now: a later reconcile follows
// the partition again and meets the same answer.
func (m *Manager) restartLearner(tp storage.TopicPartition, id metadata.TopicID, leader int32, start int64) {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	producers, err := m.tr.OpenTransactions(ctx, leader, tp)
	if err != nil {
		m.log.Warn().Err(err).Str("tp", tp.String()).Int32("leader", leader).Msg("learner: the leader's open transactions; the copy restarts later")
		m.host.Kick()
		return
	}
	var seed []fencing.ProducerEntry
	for _, e := range producers {
		if e.TxnFirstOffset >= 0 && e.TxnFirstOffset < start {
			seed = append(seed, e)
		}
	}
	m.host.RestartLearner(tp, id, start, seed)
}
