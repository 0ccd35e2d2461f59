package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// offsetsTopic holds group metadata and committed offsets as records in
// Kafka's own __consumer_offsets schemas.
const offsetsTopic = "__consumer_offsets"

// groupCoordinators holds one groups.Coordinator per __consumer_offsets
// partition this node leads; a group lives on partition
// abs(javaHash(group)) % N, as in Kafka, and its coordinator is that
// partition's leader.
type groupCoordinators struct {
	cfg     groups.Config
	notHere *groups.Coordinator // closed: answers NOT_COORDINATOR

	mu     sync.Mutex
	n      int32 // partitions of __consumer_offsets, 0 before it exists
	parts  map[int32]*groups.Coordinator
	since  map[int32]int64 // partition → the segment its coordinator was loaded in
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// offsetsLog is one __consumer_offsets partition as the coordinator's
// Persister. It appends records and waits until they are durable per the
// fsync policy. The topic is compacted (docs/compaction.md): the cleaner
// keeps each key's latest record, so replaying what remains gives the
// same state.
//
// Records are appended only under this node's leadership of the active
// segment with a live lease (never during a roll), and Persist returns
// once the high watermark covers them, so a committed offset is on every
// replica and survives a failover; a leadership that ends first answers
// NOT_COORDINATOR.
type offsetsLog struct {
	log    *storage.Log
	now    func() time.Time
	epoch  func() int32 // the partition's leader epoch, stamped into batches
	logger zerolog.Logger
	// leader returns this node's leadership of the partition (nil when
	// it has none); nil for an unreplicated partition.
	leader func() *replica.Leadership

	mu sync.Mutex // orders appends
}

func newOffsetsLog(l *storage.Log, epoch func() int32) *offsetsLog {
	return &offsetsLog{log: l, now: time.Now, epoch: epoch}
}

// begin starts an append: it returns the leadership to append under,
// its epoch and the release to call after appending (replica.Leadership.
// Begin), or a nil leadership and a no-op release for an unreplicated
// partition. A roll in progress is waited for once.
func (p *offsetsLog) begin(ctx context.Context) (*replica.Leadership, int32, func(int64), error) {
	if p.leader == nil || !p.log.Replicated() {
		epoch := int32(0)
		if p.epoch != nil {
			epoch = p.epoch()
		}
		return nil, epoch, func(int64) {}, nil
	}
	for attempt := 0; ; attempt++ {
		lp := p.leader()
		if lp == nil {
			return nil, 0, nil, kerr.NotCoordinator
		}
		epoch, release, err := lp.Begin(ctx)
		switch {
		case err == nil:
			return lp, epoch, release, nil
		case errors.Is(err, replica.ErrRolled) && attempt == 0:
			continue
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return nil, 0, nil, err
		default:
			return nil, 0, nil, fmt.Errorf("%w: %w", kerr.NotCoordinator, err)
		}
	}
}

// wait returns once records up to last are durable (unreplicated) or
// under the high watermark (replicated, appended under lp).
func (p *offsetsLog) wait(ctx context.Context, lp *replica.Leadership, last int64) error {
	if lp == nil {
		return p.log.WaitDurable(ctx, last)
	}
	// As Kafka's offsets.commit.timeout.ms: a commit the replicas do not
	// confirm within 5 s is answered REQUEST_TIMED_OUT (the group's lock
	// is held meanwhile).
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := lp.WaitAcked(ctx, last)
	switch {
	case errors.Is(err, replica.ErrDeposed):
		return fmt.Errorf("%w: %w", kerr.NotCoordinator, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
	}
	return err
}

// appendLocked encodes kvs as one batch and appends it (under lp's epoch
// when replicated). p.mu held.
func (p *offsetsLog) appendLocked(epoch int32, kvs []kafkaproto.KV) (storage.AppendResult, int64, error) {
	batch := kafkaproto.AppendBatch(nil, p.now().UnixMilli(), kvs)
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		return storage.AppendResult{}, 0, fmt.Errorf("broker: encode group records: %w", err)
	}
	res, err := p.log.Append(batch, h, epoch)
	if err != nil {
		return res, 0, fmt.Errorf("broker: persist group records: %w", err)
	}
	return res, int64(len(batch)), nil
}

// Persist implements groups.Persister.
func (p *offsetsLog) Persist(ctx context.Context, recs []groups.Record) error {
	kvs := make([]kafkaproto.KV, len(recs))
	for i, r := range recs {
		kvs[i] = kafkaproto.KV{Key: r.Key, Value: r.Value}
	}
	lp, epoch, release, err := p.begin(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	res, appended, err := p.appendLocked(epoch, kvs)
	p.mu.Unlock()
	release(appended)
	if err != nil {
		return err
	}
	if err := p.wait(ctx, lp, res.LastOffset); err != nil {
		return fmt.Errorf("broker: persist group records: %w", err)
	}
	return nil
}

// groupsConfig is the coordinators' configuration.
func (b *Broker) groupsConfig() groups.Config {
	cfg := groups.Config{
		MinSessionTimeout:     b.cfg.Groups.MinSessionTimeout,
		MaxSessionTimeout:     b.cfg.Groups.MaxSessionTimeout,
		InitialRebalanceDelay: b.cfg.Groups.InitialRebalanceDelay,
		OffsetsRetention:      b.cfg.Groups.OffsetsRetention,
		Logger:                b.log.With().Str("component", "groups").Logger(),
		OnRebalance:           func(string, int32) { b.m.rebalances.Inc() },
		Consumer: groups.ConsumerConfig{
			SessionTimeout:    b.cfg.Groups.ConsumerSessionTimeout,
			HeartbeatInterval: b.cfg.Groups.ConsumerHeartbeatInterval,
			MaxSize:           b.cfg.Groups.ConsumerMaxSize,
		},
		Share: groups.ShareConfig{
			SessionTimeout:    b.cfg.Groups.ShareSessionTimeout,
			HeartbeatInterval: b.cfg.Groups.ShareHeartbeatInterval,
			MaxSize:           b.cfg.Groups.ShareMaxSize,
			Overrides:         b.shareGroupTimeouts, // groupconfig.go
		},
		OnShareMemberGone: b.shareMemberLeft,
		Topics:            b.topicImage(nil),
	}
	if cfg.InitialRebalanceDelay == 0 {
		cfg.InitialRebalanceDelay = -1 // groups: negative disables, zero means Kafka's 3s
	}
	return cfg
}

// newGroupCoordinators starts offset expiry; coordinators are loaded by
// reconcile as this node comes to lead __consumer_offsets partitions.
func (b *Broker) newGroupCoordinators() *groupCoordinators {
	gc := &groupCoordinators{stop: make(chan struct{}), parts: map[int32]*groups.Coordinator{}, since: map[int32]int64{}, cfg: b.groupsConfig()}
	gc.notHere = groups.New(gc.cfg, nil)
	gc.notHere.Close() // answers NOT_COORDINATOR
	gc.wg.Add(1)
	go func() {
		defer gc.wg.Done()
		t := time.NewTicker(b.cfg.Groups.OffsetsExpireInterval)
		defer t.Stop()
		for {
			select {
			case <-gc.stop:
				return
			case <-t.C:
				exists := func(topic string) bool { _, ok := b.store.FSM().Topic(topic); return ok }
				for _, c := range gc.local() {
					c.ExpireOffsets(exists)
				}
			}
		}
	}()
	return gc
}

// load rebuilds the coordinator of __consumer_offsets partition p (of n)
// from its log, unless it is loaded already and this node has led every
// segment since (segs is the partition's chain, the last one led here);
// a coordinator loaded before another node led the partition is stale
// and is replaced.
func (gc *groupCoordinators) load(b *Broker, n, p int32, l *storage.Log, segs []metadata.Segment) error {
	cur := segs[len(segs)-1].ID
	gc.mu.Lock()
	if gc.closed {
		gc.mu.Unlock()
		return nil
	}
	if _, ok := gc.parts[p]; ok {
		if ledSince(segs, gc.since[p], b.cfg.NodeID) {
			gc.since[p] = cur
			gc.mu.Unlock()
			return nil
		}
		gc.mu.Unlock()
		b.log.Info().Int32("partition", p).Msg("group coordinator stale: another node led the partition since it was loaded")
		gc.unload(p)
		gc.mu.Lock()
	}
	gc.n = n
	gc.mu.Unlock()
	started := time.Now()
	ol := b.internalLog(offsetsTopic, p, l)
	c := groups.New(gc.cfg, ol)
	records, replayed, err := replayOffsets(l, c, ol)
	if err != nil {
		c.Close()
		return fmt.Errorf("broker: replay %s-%d: %w", offsetsTopic, p, err)
	}
	c.ReplayDone()
	gc.mu.Lock()
	if gc.closed {
		gc.mu.Unlock()
		c.Close()
		return nil
	}
	gc.parts[p] = c
	gc.since[p] = cur
	gc.mu.Unlock()
	// Transaction markers appended since the replay ended found no
	// coordinator here to tell (offsetsMarkerCommitted); later ones find
	// c.
	if err := replayMarkersSince(l, c, replayed); err != nil {
		b.log.Warn().Err(err).Int32("partition", p).Msg("group coordinator: read the transaction markers appended while loading")
	}
	b.log.Info().Int32("partition", p).Int("records", records).Dur("took", time.Since(started)).Msg("group coordinator loaded")
	return nil
}

// ledSince reports whether this node (self) led every segment of the
// chain segs after segment since: a coordinator loaded then is still
// current (one loaded before another node led the partition is stale).
func ledSince(segs []metadata.Segment, since int64, self int32) bool {
	for _, s := range segs {
		if s.ID > since && s.Leader != self {
			return false
		}
	}
	return true
}

// internalLog is the Persister log of partition p of an internal topic
// (__consumer_offsets, __transaction_state) whose log l this node leads.
func (b *Broker) internalLog(topic string, p int32, l *storage.Log) *offsetsLog {
	tp := b.tp(topic, p)
	ol := newOffsetsLog(l, func() int32 {
		t, _ := b.store.FSM().Topic(topic)
		_, e := t.Leader(p)
		return max(e, 0)
	})
	ol.leader = func() *replica.Leadership { return b.repl.Leader(tp) }
	ol.logger = b.log.With().Str("tp", tp.String()).Logger()
	return ol
}

// unload stops the coordinator of partition p.
func (gc *groupCoordinators) unload(p int32) {
	gc.mu.Lock()
	c := gc.parts[p]
	delete(gc.parts, p)
	delete(gc.since, p)
	gc.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// local returns the loaded coordinators.
func (gc *groupCoordinators) local() []*groups.Coordinator {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	out := make([]*groups.Coordinator, 0, len(gc.parts))
	for _, c := range gc.parts {
		out = append(out, c)
	}
	return out
}

// ensureOffsetsTopic creates __consumer_offsets when missing (the first
// FindCoordinator does, as in Kafka), placed by the controller over the
// live brokers.
func (b *Broker) ensureOffsetsTopic(ctx context.Context) (metadata.Topic, error) {
	if t, ok := b.store.FSM().Topic(offsetsTopic); ok {
		if err := b.compactOffsetsTopic(ctx, t); err != nil {
			b.log.Warn().Err(err).Msg("upgrade __consumer_offsets to a compacted topic; retried at the next FindCoordinator")
		}
		return t, nil
	}
	id, err := newTopicID()
	if err != nil {
		return metadata.Topic{}, err
	}
	rf := int16(b.cfg.Groups.OffsetsRF)
	if rf == 0 {
		rf = metadata.AutoReplicationFactor
	}
	cmd := metadata.CreateTopic{Name: offsetsTopic, ID: id, Partitions: b.cfg.Groups.OffsetsPartitions, Internal: true, ReplicationFactor: rf,
		Configs: offsetsTopicConfigs(b.cfg.Groups.OffsetsSegmentBytes)}
	return b.createInternalTopic(ctx, cmd, b.reconcile)
}

// offsetsTopicConfigs are __consumer_offsets' configs: compacted
// (docs/compaction.md), as Kafka's, with segments of segBytes
// (offsets.topic.segment.bytes) so the cleaner has sealed ranges to clean.
func offsetsTopicConfigs(segBytes int64) map[string]string {
	return map[string]string{"cleanup.policy": "compact", "segment.bytes": strconv.FormatInt(segBytes, 10)}
}

// compactOffsetsTopic upgrades a __consumer_offsets created before it was
// compacted (an older version bounded it with checkpoints of its own):
// it sets the configs a new one gets. Replaying the old log gives the
// same state (a checkpoint repeated live records), and the cleaner takes
// over from there.
func (b *Broker) compactOffsetsTopic(ctx context.Context, t metadata.Topic) error {
	if t.Configs["cleanup.policy"] == "compact" {
		return nil
	}
	cmd := metadata.SetTopicConfigs{Name: t.Name, ID: t.ID, Expected: t.Configs, Configs: offsetsTopicConfigs(b.cfg.Groups.OffsetsSegmentBytes)}
	if err := b.store.Apply(ctx, cmd); err != nil && !errors.Is(err, metadata.ErrPreconditionFailed) {
		return fmt.Errorf("broker: make %s compacted: %w", offsetsTopic, err)
	}
	b.log.Info().Msg("__consumer_offsets is now a compacted topic (upgraded from checkpoints)")
	return nil
}

// replayOffsets feeds every record of l, in order, to c and ol; it returns
// how many and the offset it read to.
func replayOffsets(l *storage.Log, c *groups.Coordinator, ol *offsetsLog) (int, int64, error) {
	n := 0
	end, err := walkLog(l, func(h kafkaproto.BatchHeader, recs []kafkaproto.Record) error {
		if h.IsControl() {
			// A transaction's marker (28_txn_offset_commit.go), unless
			// an earlier read handed it over already.
			if len(recs) == 0 {
				return nil
			}
			return replayControl(c, h, recs)
		}
		for _, r := range recs {
			rec := groups.Record{Key: r.Key, Value: r.Value}
			var err error
			if h.IsTransactional() {
				err = c.ReplayTxn(h.ProducerID, rec)
			} else {
				err = c.Replay(rec)
			}
			if err != nil {
				return fmt.Errorf("record %d: %w", r.Offset, err)
			}
			n++
		}
		return nil
	})
	return n, end, err
}

func (gc *groupCoordinators) close() {
	gc.mu.Lock()
	if gc.closed {
		gc.mu.Unlock()
		return
	}
	gc.closed = true
	parts := gc.parts
	gc.parts = map[int32]*groups.Coordinator{}
	gc.mu.Unlock()
	close(gc.stop)
	// Close the coordinators first: that cancels their persists in
	// flight, so an expiry pass waiting on one (up to the 5 s commit
	// timeout per group) ends at once instead of holding up shutdown.
	for _, c := range parts {
		c.Close()
	}
	gc.wg.Wait()
}

// javaStringHash is Java's String.hashCode, which Kafka uses to place a
// group on a __consumer_offsets partition.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 { // UTF-16 surrogate pair
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// groupPartition is the __consumer_offsets partition of a group (of n).
func groupPartition(group string, n int32) int32 {
	h := javaStringHash(group)
	if h < 0 {
		h = -h
		if h < 0 { // math.MinInt32: Kafka's Utils.abs maps it to 0
			h = 0
		}
	}
	return h % n
}

// coordinatorFor returns the coordinator of a group, or one that answers
// NOT_COORDINATOR when this node does not lead the group's partition.
func (b *Broker) coordinatorFor(group string) *groups.Coordinator {
	b.gc.mu.Lock()
	defer b.gc.mu.Unlock()
	if b.gc.n > 0 {
		if c, ok := b.gc.parts[groupPartition(group, b.gc.n)]; ok {
			return c
		}
	}
	return b.gc.notHere
}

// groupCtx is the context group calls run under: it carries the client's
// id and host for member ids and DescribeGroups.
func (rc *request) groupCtx() context.Context {
	host := rc.conn.nc.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return groups.WithClientInfo(rc.ctx(), groups.ClientInfo{ClientID: rc.hdr.ClientID, Host: "/" + host})
}
