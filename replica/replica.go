package replica

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Errors of an append or an acks=all wait.
var (
	// ErrDeposed: the leadership ended (another segment or node leads
	// now); nothing more is appended or acknowledged under it.
	ErrDeposed = errors.New("replica: no longer the leader of this segment")
	// ErrLeaseExpired: this node holds no live lease (docs/architecture.md,
	// "Leases"); it appends nothing until the controller renews it.
	ErrLeaseExpired = errors.New("replica: this node's lease expired")
	// ErrRolled: a roll of the segment was in progress and has ended (or
	// was waited for long enough); look the leadership up again.
	ErrRolled = errors.New("replica: the segment rolled")
)

// Config is a node's replication settings.
type Config struct {
	NodeID int32
	// LagTimeMax is replica.lag-time-max: a follower silent this long is
	// left out by the next roll.
	LagTimeMax time.Duration
	// FsyncAlways: a follower acknowledges (by fetching on) only durable
	// records (storage.fsync=always).
	FsyncAlways bool
	// LeaseWait bounds how long Begin waits for a lease renewal.
	LeaseWait time.Duration
	// RollWait bounds how long a roll waits for replicas to catch up.
	RollWait time.Duration
	// ParkWait bounds how long an append waits for a roll to end.
	ParkWait time.Duration
	// FetchMaxWait is a follower fetch's long-poll time.
	FetchMaxWait time.Duration
	// Clock times lag and segment.ms (nil: the system clock).
	Clock Clock
	// Cleaner is the compaction cleaner's settings (clean.go).
	Cleaner CleanerConfig
}

// DefaultConfig returns the settings the broker starts from.
func DefaultConfig(node int32) Config {
	return Config{NodeID: node, LagTimeMax: 10 * time.Second, LeaseWait: 2 * time.Second,
		RollWait: 5 * time.Second, ParkWait: 5 * time.Second, FetchMaxWait: 500 * time.Millisecond,
		Cleaner: CleanerConfig{Enable: true, Threads: 1, MapBytes: 64 << 20, Backoff: 15 * time.Second, Timeout: 10 * time.Minute}}
}

// Clock is the time source for lag and segment age.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Metadata is what replication reads from and proposes to the metadata
// store (*metadata.FSM plus the store's Apply).
type Metadata interface {
	Broker(id int32) (metadata.Broker, bool)
	Topic(name string) (metadata.Topic, bool)
	// Partition is a topic without its partitions (Parts nil) and a copy
	// of partition p (metadata.FSM.Partition).
	Partition(topic string, p int32) (metadata.Topic, metadata.Partition, bool)
	TopicConfigValue(name, key string) (value string, set, internal, ok bool)
	Apply(ctx context.Context, c metadata.Command) error
}

// Lease is this node's lease from the controller.
type Lease interface {
	Valid() bool
	// Wait waits up to d for a live lease and reports whether it has one.
	Wait(ctx context.Context, d time.Duration) bool
}

// Transport carries a follower's Fetch to the leader node.
type Transport interface {
	// Fetch sends req to leader. The answer's record batches may live in
	// a buffer the transport reuses once release is called (it is never
	// nil when err is nil): nothing may refer to them after that.
	Fetch(ctx context.Context, leader int32, req *kmsg.FetchRequest) (resp *kmsg.FetchResponse, release func(), err error)
	// OpenTransactions asks leader, which leads tp, for its producers with
	// an open transaction (id, epoch, coordinator epoch, the
	// transaction's first offset): a learner that restarts its copy at
	// the leader's log start cannot see transactions opened below it
	// (DescribeProducers in production).
	OpenTransactions(ctx context.Context, leader int32, tp storage.TopicPartition) ([]fencing.ProducerEntry, error)
}

// Host is what replication needs of the node around it: its partition
// logs and per-topic settings.
type Host interface {
	// Log returns the open log of tp.
	Log(tp storage.TopicPartition) (*storage.Log, bool)
	// EnsureLog opens (creating if needed) t/p's log with t's config, or
	// pushes the config to it when open. nil, nil: not now (a log of an
	// earlier incarnation of the topic, and the node has not caught up).
	EnsureLog(t metadata.Topic, p int32, replicated bool) (*storage.Log, error)
	// LogTopicID is the topic ID recorded with tp's log.
	LogTopicID(tp storage.TopicPartition) (id metadata.TopicID, known bool, err error)
	// DeleteLog removes tp's log.
	DeleteLog(tp storage.TopicPartition) error
	// MinInsync is t's min.insync.replicas.
	MinInsync(t metadata.Topic) int
	// CaughtUp reports whether this node has seen the controller's
	// latest metadata (before that it neither learns nor deletes).
	CaughtUp() bool
	// Kick asks for a reconcile pass.
	Kick()
	// RestartLearner replaces tp's log, which ends below start (the
	// leader's log start), with an empty one starting there whose
	// producer state begins with producers (the leader's transactions
	// opened below start and still open: storage's
	// CreateLogAtWithProducers).
	RestartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64, producers []fencing.ProducerEntry)
	// Compaction is the named topic's compaction settings; ok is false
	// for an unknown topic. It is cheap (the roll loop asks it).
	Compaction(topic string) (c CompactionConfig, ok bool)
}

// Manager holds this node's replication roles.
type Manager struct {
	cfg   Config
	md    Metadata
	lease Lease
	tr    Transport
	host  Host
	log   zerolog.Logger
	clock Clock

	// OnRoll, if set, counts committed rolls by reason (metrics): size,
	// time, laggard, rejoin, reassign or elect.
	OnRoll func(reason string)

	rollKick chan struct{} // checkRoll queued a leadership for the roll loop
	sched    rollSched     // what the roll loop is to look at (roll.go)
	rolls    rollBatch     // rolls waiting to commit together (rollbatch.go)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// leadMu guards leading. The produce path reads it (Leader); it is
	// never held across I/O or while taking another lock.
	leadMu  sync.RWMutex
	leading map[storage.TopicPartition]*Leadership
	// newLeader is closed (and replaced) when this node takes the
	// leadership of a new segment (LeadershipStarted).
	newLeader chan struct{}

	// fetchMu guards fetchers and closed. Unfollow holds it while a
	// fetcher finishes an append in progress (fetcher.mu), so it is kept
	// apart from leadMu: appends never wait for a follower's disk write.
	fetchMu  sync.Mutex
	fetchers map[int32]*fetcher // by leader node
	closed   bool

	// recMu guards recLocks: one lock per partition orders Reconcile
	// calls for it (the reconcile loop, an append finding its leadership
	// missing, a committed roll), each reading the newest metadata.
	recMu    sync.Mutex
	recLocks map[storage.TopicPartition]*sync.Mutex

	// fuMu guards fuInflight: the failover-sealed segments whose first
	// unstable offset this node is proposing (recordFirstUnstable).
	fuMu       sync.Mutex
	fuInflight map[int64]bool

	clean *cleanState // the compaction cleaner (clean.go)
}

// New builds a Manager; Start runs its roll loop.
func New(cfg Config, md Metadata, lease Lease, tr Transport, host Host, log zerolog.Logger) *Manager {
	m := &Manager{cfg: cfg, md: md, lease: lease, tr: tr, host: host, log: log, clock: cfg.Clock,
		rollKick: make(chan struct{}, 1), leading: map[storage.TopicPartition]*Leadership{}, newLeader: make(chan struct{}), fetchers: map[int32]*fetcher{},
		recLocks: map[storage.TopicPartition]*sync.Mutex{}, clean: newCleanState(cfg.Cleaner.Threads), fuInflight: map[int64]bool{}}
	if m.clock == nil {
		m.clock = systemClock{}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Start runs the roll loop until Close.
func (m *Manager) Start() {
	m.wg.Add(1)
	go m.rollLoop()
	if m.cfg.Cleaner.Enable && m.cfg.Cleaner.Backoff > 0 {
		m.wg.Add(1)
		go m.cleanLoop()
	}
}

// Close stops the fetchers and the roll loop and waits for them; it
// deposes every leadership so that waits fail instead of hanging.
func (m *Manager) Close() {
	m.fetchMu.Lock()
	m.closed = true
	fs := m.fetchers
	m.fetchers = map[int32]*fetcher{}
	m.fetchMu.Unlock()
	// A copy: the broker's reconcile loop may still call Lead (which
	// writes m.leading) while Close deposes these.
	m.leadMu.Lock()
	ls := maps.Clone(m.leading)
	m.leadMu.Unlock()
	m.cancel()
	for _, f := range fs {
		f.close()
	}
	m.wg.Wait()
	for _, l := range ls {
		l.depose()
	}
}

// go runs fn on a goroutine Close waits for.
func (m *Manager) goTracked(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

// Leader returns this node's leadership of tp's active segment, or nil.
func (m *Manager) Leader(tp storage.TopicPartition) *Leadership {
	m.leadMu.RLock()
	defer m.leadMu.RUnlock()
	return m.leading[tp]
}

// Lead records that this node leads tp's active segment seg, with log l
// (and no longer fetches tp from anyone).
//
// target is the partition's reassignment target (nil: none): its nodes
// may fetch as learners and a roll takes them in, then drops the others.
//
// elect, if not nil, is the node a preferred-leader election asked to
// lead: the next roll, due at once, hands the next segment to it.
func (m *Manager) Lead(tp storage.TopicPartition, l *storage.Log, seg metadata.Segment, wantRF, minISR int, target []int32, elect *int32) {
	m.Unfollow(tp)
	m.leadMu.Lock()
	lp, ok := m.leading[tp]
	var old *Leadership
	if !ok || lp.segment != seg.ID {
		nl := newLeadership(m, tp, l, seg)
		if ok {
			old = lp
			lp.rollMu.Lock()
			lp.next = nl
			lp.rollMu.Unlock()
		}
		lp = nl
		m.leading[tp] = lp
		close(m.newLeader)
		m.newLeader = make(chan struct{})
	}
	m.leadMu.Unlock()
	if old != nil {
		old.depose() // a newer segment of this node replaces it
	}
	l.SetWriterEpoch(seg.Epoch) // storage appends at this epoch only (fencing)
	cfg := l.Config()
	lp.rollMu.Lock()
	lp.segBytes, lp.segMs = cfg.SegmentBytes, cfg.SegmentMs
	lp.rollMu.Unlock()
	lp.ackMu.Lock()
	lp.replicas = append([]int32(nil), seg.Replicas...)
	lp.wantRF, lp.minISR = wantRF, minISR
	lp.target = slices.Clone(target)
	lp.elect = -1
	if elect != nil {
		lp.elect = *elect
	}
	bound := lp.boundLocked()
	lp.ackMu.Unlock()
	if bound >= 0 {
		// No followers (a segment down to its leader): the high
		// watermark follows the leader's own log, or acks=all and rolls
		// would wait for a fetch that never comes.
		lp.advance(bound)
	}
	m.watchFollowers(seg.Replicas)
	m.checkRoll(lp) // the roll loop schedules its looks from here on
}

// LeadershipStarted returns a channel closed when this node next takes the
// leadership of a segment. A follower's long-polling fetch waits on it
// too: the follower's fetch that names the new segment's partition queues
// behind the long poll on the same connection, so the poll ends early and
// the follower starts copying the new segment at once instead of up to a
// fetch wait later (which would hold back acks=all and the next roll).
func (m *Manager) LeadershipStarted() <-chan struct{} {
	m.leadMu.RLock()
	defer m.leadMu.RUnlock()
	return m.newLeader
}

// Unlead forgets tp's leadership (another node or segment leads it now)
// and deposes it.
func (m *Manager) Unlead(tp storage.TopicPartition) {
	m.leadMu.Lock()
	lp := m.leading[tp]
	delete(m.leading, tp)
	m.leadMu.Unlock()
	if lp != nil {
		lp.log.SetWriterEpoch(fencing.NoWriter)
		lp.depose()
	} else if l, ok := m.host.Log(tp); ok {
		l.SetWriterEpoch(fencing.NoWriter)
	}
}

// Fetched records that follower replica holds everything below offset of
// tp and advances the leader's high watermark to the minimum over the
// counted followers. It reports false when this node does not lead tp or
// replica is neither a replica nor an admissible learner.
func (m *Manager) Fetched(tp storage.TopicPartition, replica int32, offset, logStart int64) bool {
	ok, _ := m.FetchedIn(tp, replica, offset, logStart, nil)
	return ok
}

// FetchRounds times one follower's fetch session with this node
// (docs/io-and-scale.md, "Scale"): the leader visits a session partition
// only when it or the follower's position changed, so each round of the
// session (FetchRound) counts as the follower's fetch of every partition
// the session holds, and a follower that stops fetching still lags after
// LagTimeMax.
type FetchRounds struct {
	at atomic.Int64 // Unix nanoseconds of the latest round
}

func (r *FetchRounds) last() time.Time { return time.Unix(0, r.at.Load()) }

// NewFetchRounds starts timing a fetch session, its first round now.
func (m *Manager) NewFetchRounds() *FetchRounds {
	r := &FetchRounds{}
	m.FetchRound(r)
	return r
}

// FetchRound records a round of session r now.
func (m *Manager) FetchRound(r *FetchRounds) { r.at.Store(m.clock.Now().UnixNano()) }

// FetchedIn is Fetched for a fetch in the rounds of session r (nil:
// none): until Forgot, each round of r counts as a fetch of tp by replica
// at the same offset. frozen reports that the high watermark stayed below
// what the followers hold (no live lease, or the leader's own durable
// offset behind): the caller looks at the partition again next round
// rather than waiting for news.
func (m *Manager) FetchedIn(tp storage.TopicPartition, replica int32, offset, logStart int64, r *FetchRounds) (ok, frozen bool) {
	lp := m.Leader(tp)
	if lp == nil {
		return false, false
	}
	return lp.fetched(replica, offset, logStart, r)
}

// Forgot ends FetchedIn's attachment of tp to session r: the session
// dropped the partition or ended.
func (m *Manager) Forgot(tp storage.TopicPartition, replica int32, r *FetchRounds) {
	if lp := m.Leader(tp); lp != nil {
		lp.forgot(replica, r)
	}
}

// Follow makes this node fetch tp from leader at epoch into l.
func (m *Manager) Follow(tp storage.TopicPartition, id metadata.TopicID, leader, epoch int32, l *storage.Log) {
	m.follow(tp, id, leader, epoch, l, false)
}

// follow is Follow; a learner's appends take tokens from the storage
// engine's background I/O budget first (they are not on the ack path).
func (m *Manager) follow(tp storage.TopicPartition, id metadata.TopicID, leader, epoch int32, l *storage.Log, learner bool) {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	if m.closed {
		return
	}
	for lid, f := range m.fetchers {
		if lid != leader {
			f.drop(tp)
		}
	}
	f, ok := m.fetchers[leader]
	if !ok {
		f = newFetcher(m, leader)
		m.fetchers[leader] = f
		m.goTracked(f.run)
	}
	f.add(tp, &followed{id: id, epoch: epoch, log: l, learner: learner})
}

// Unfollow stops fetching tp; once it returns no fetcher appends to tp.
func (m *Manager) Unfollow(tp storage.TopicPartition) {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	for _, f := range m.fetchers {
		f.drop(tp)
	}
}

// Following reports the leader tp is fetched from (-1: none).
func (m *Manager) Following(tp storage.TopicPartition) int32 {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	for id, f := range m.fetchers {
		if f.has(tp) {
			return id
		}
	}
	return -1
}

// sleep waits d unless the manager closes first (false then).
func (m *Manager) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.ctx.Done():
		return false
	}
}
