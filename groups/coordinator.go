package groups

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Config configures a Coordinator. Zero values take Kafka's defaults.
type Config struct {
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout (group.min/max.session.timeout.ms: 6s, 30m).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is group.initial.rebalance.delay.ms (Kafka:
	// 3s). It delays the first rebalance of an Empty group so that more
	// members can join. Zero means Kafka's 3s; negative disables it.
	InitialRebalanceDelay time.Duration
	// NewMemberJoinTimeout bounds how long a member that has never
	// completed a join may wait in JoinGroup (Kafka: 5m).
	NewMemberJoinTimeout time.Duration
	// OffsetsRetention is offsets.retention.minutes (Kafka: 7d).
	OffsetsRetention time.Duration
	// MaxMetadataSize is offset.metadata.max.bytes (Kafka: 4096).
	MaxMetadataSize int
	// TickInterval is how often a background goroutine calls Tick to
	// expire sessions and rebalance deadlines. Zero means 100ms; negative
	// disables the goroutine (tests call Tick themselves).
	TickInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives state transitions at debug level.
	Logger zerolog.Logger
	// Consumer configures KIP-848 consumer groups (group.consumer.*);
	// its Now defaults to Now.
	Consumer ConsumerConfig
	// Share configures KIP-932 share groups (group.share.*); its Now
	// defaults to Now.
	Share ShareConfig
	// OnShareMemberGone, if set, hears of every member that left a
	// share group or whose session expired, after that is persisted (the
	// broker releases the member's records). It runs under the group's
	// lock and must not call the coordinator.
	OnShareMemberGone func(group, member string)
	// Topics is the cluster's topics (internal ones left out) on which
	// ReplayDone resolves a loaded consumer group's subscriptions; nil
	// means none. A heartbeat passes its own image (the principal's).
	Topics TopicImage
	// OnRebalance, if set, hears of every completed join phase of a
	// group (a new generation; metrics). It runs under the group's lock
	// and must not call the coordinator.
	OnRebalance func(group string, generation int32)
}

func (cfg *Config) fill() {
	if cfg.MinSessionTimeout == 0 {
		cfg.MinSessionTimeout = 6 * time.Second
	}
	if cfg.MaxSessionTimeout == 0 {
		cfg.MaxSessionTimeout = 30 * time.Minute
	}
	if cfg.InitialRebalanceDelay == 0 {
		cfg.InitialRebalanceDelay = 3 * time.Second
	}
	if cfg.InitialRebalanceDelay < 0 {
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.NewMemberJoinTimeout == 0 {
		cfg.NewMemberJoinTimeout = 5 * time.Minute
	}
	if cfg.OffsetsRetention == 0 {
		cfg.OffsetsRetention = 7 * 24 * time.Hour
	}
	if cfg.MaxMetadataSize == 0 {
		cfg.MaxMetadataSize = 4096
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Consumer.Now == nil {
		cfg.Consumer.Now = cfg.Now
	}
	if cfg.Share.Now == nil {
		cfg.Share.Now = cfg.Now
	}
	if cfg.Topics == nil {
		cfg.Topics = noTopics{}
	}
}

type noTopics struct{}

func (noTopics) Topic(string) ([16]byte, int32, bool) { return [16]byte{}, 0, false }
func (noTopics) Names() []string                      { return nil }

// Persister durably stores __consumer_offsets records. The coordinator
// answers success only after Persist returned nil. Persist is called with
// the group's lock held (never the coordinator-wide lock), so records of one
// group reach it in order; it may wait (for replicas, for an fsync), and
// nothing that walks every group waits for it (see doc.go, Concurrency).
// Persist must return promptly once ctx is done: Close cancels the ctx of
// every Persist in flight. If the error is (or wraps) a *kerr.Error, that
// code is returned to the client (e.g. kerr.NotCoordinator when leadership
// of the partition was lost); any other error becomes
// COORDINATOR_NOT_AVAILABLE (NOT_COORDINATOR after Close).
type Persister interface {
	Persist(ctx context.Context, records []Record) error
}

// Record is one __consumer_offsets record. Value nil is a tombstone.
type Record struct {
	Key, Value []byte
}

// ClientInfo is the client id (from the request header) and host of the
// connection a request came from; it is what DescribeGroups shows.
type ClientInfo struct {
	ClientID string
	Host     string
}

type clientInfoKey struct{}

// WithClientInfo attaches the client id and host of the requesting
// connection to ctx; JoinGroup records them for DescribeGroups and uses
// the client id as the prefix of generated member ids.
func WithClientInfo(ctx context.Context, ci ClientInfo) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, ci)
}

func clientInfo(ctx context.Context) ClientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(ClientInfo)
	return ci
}

// GroupType is the protocol a group id speaks; ListGroups v5 reports it
// (String) and filters on it. A coordinator's name → group map holds every
// type: one *group per id, with the type's state beside the offsets every
// type shares (docs/groups-next.md, "Typed groups").
type GroupType int8

const (
	// GroupClassic is a JoinGroup/SyncGroup group (group.go); groups
	// made by an offset commit alone are classic and Empty.
	GroupClassic GroupType = iota
	// GroupConsumer is a KIP-848 group (ConsumerGroupHeartbeat,
	// consumer.go), in group.consumer.
	GroupConsumer
	// GroupShare is a KIP-932 share group (ShareGroupHeartbeat,
	// share_group.go), in group.share.
	GroupShare
)

func (t GroupType) String() string {
	switch t {
	case GroupClassic:
		return "classic"
	case GroupConsumer:
		return "consumer"
	case GroupShare:
		return "share"
	}
	return "unknown"
}

// listing is what ListGroups shows of g as it stands; g.mu held.
func (g *group) listing() listing {
	l := listing{state: g.state, protocolType: g.protocolType, typ: g.typ}
	if g.typ == GroupConsumer && g.consumer != nil {
		l.protocolType = "consumer"
		l.typedState = g.consumer.State()
	}
	if g.typ == GroupShare && g.share != nil {
		l.protocolType = "share"
		l.typedState = g.share.State()
	}
	return l
}

// stateName is the state ListGroups and DescribeGroups show.
func (l *listing) stateName() string {
	if l.typ != GroupClassic && l.state != StateDead {
		return l.typedState
	}
	return l.state.String()
}

// Coordinator is the classic group coordinator for one __consumer_offsets
// partition (or for any set of groups sharing a Persister). See doc.go.
type Coordinator struct {
	cfg Config
	p   Persister
	log zerolog.Logger

	mu     sync.Mutex // guards groups only; never held while a group lock is acquired
	groups map[string]*group

	loading atomic.Bool
	closed  atomic.Bool

	// ctx is the parent of every Persist's ctx; Close cancels it so
	// that no persist outlives the coordinator.
	ctx    context.Context
	cancel context.CancelFunc

	stop chan struct{}
	done chan struct{}
}

// New returns a Coordinator in the loading state: every request is answered
// with COORDINATOR_LOAD_IN_PROGRESS (Kafka's meaning) until the broker has
// fed the partition's log to Replay and called ReplayDone.
func New(cfg Config, p Persister) *Coordinator {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		ctx:    ctx,
		cancel: cancel,
		cfg:    cfg,
		p:      p,
		log:    cfg.Logger,
		groups: make(map[string]*group),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.loading.Store(true)
	if cfg.TickInterval > 0 {
		go c.ticker()
	} else {
		close(c.done)
	}
	return c
}

func (c *Coordinator) ticker() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.Tick()
		}
	}
}

// Close stops the coordinator (e.g. on losing leadership of the partition).
// Waiting JoinGroup/SyncGroup calls and all later calls are answered with
// NOT_COORDINATOR. Persists in flight are cancelled (their callers are
// answered NOT_COORDINATOR), so Close waits for no replica and no disk.
func (c *Coordinator) Close() {
	if c.closed.Swap(true) {
		return
	}
	c.cancel()
	close(c.stop)
	<-c.done
	for _, g := range c.snapshot() {
		g.mu.Lock() // held at most until a cancelled Persist returns
		for _, m := range g.members {
			g.failWaiters(m, kerr.NotCoordinator.Code)
		}
		g.unlock()
	}
}

// Tick expires member sessions, pending (MEMBER_ID_REQUIRED) members,
// rebalance and initial-rebalance-delay deadlines and pending-sync deadlines
// against Config.Now. It runs every TickInterval; tests with a fake clock
// call it directly.
//
// Tick never waits for a group: a group whose lock is held (by a request
// that may be waiting in Persist) is marked, and the holder runs the tick
// as it releases the lock (group.unlock), or the next Tick does. A tick
// that has records to persist (a group left Empty) hands the locked group
// to a goroutine that persists them and then releases the lock, so the
// records keep their place in the group's order.
func (c *Coordinator) Tick() {
	if !c.tickable() {
		return
	}
	for _, g := range c.snapshot() {
		if !g.mu.TryLock() {
			g.tickDue.Store(true)
			continue
		}
		g.tickDue.Store(false)
		if g.typ == GroupConsumer && g.state != StateDead && c.tickable() && g.consumer.due() {
			// Its expiry persists: the lock goes with it (as below).
			go func() {
				if err := g.consumer.Tick(c.ctx); err != nil {
					c.log.Debug().Err(err).Str("group", g.name).Msg("groups: consumer group expiry not persisted")
				}
				g.unlock()
			}()
			continue
		}
		if g.typ == GroupShare && g.state != StateDead && c.tickable() && g.share.due() {
			// As a consumer group's: the lock goes with the persist.
			go func() {
				c.shareTick(g)
				g.unlock()
			}()
			continue
		}
		if g.typ == GroupClassic && g.state != StateDead && c.tickable() {
			g.tick(c.cfg.Now())
		}
		if len(g.outbox) > 0 {
			// Close waits for this goroutine: it takes every
			// group's lock, after cancelling the persist.
			go g.unlock()
			continue
		}
		g.unlock()
	}
}

// tickable reports whether deadlines are being enforced: not while loading
// (sessions restart at ReplayDone) and not after Close.
func (c *Coordinator) tickable() bool {
	return !c.loading.Load() && !c.closed.Load()
}

func (c *Coordinator) snapshot() []*group {
	c.mu.Lock()
	defer c.mu.Unlock()
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	return gs
}

func (c *Coordinator) get(name string) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[name]
}

func (c *Coordinator) getOrCreate(name string) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil {
		g = newGroup(c, name)
		c.groups[name] = g
	}
	return g
}

// remove drops g from the map; called with g.mu held (lock order g.mu → c.mu).
func (c *Coordinator) remove(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups[g.name] == g {
		delete(c.groups, g.name)
	}
}

// preCheck returns the error code every group API answers before touching
// a group: NOT_COORDINATOR after Close, COORDINATOR_LOAD_IN_PROGRESS while
// loading, INVALID_GROUP_ID for an empty id.
func (c *Coordinator) preCheck(groupID string) int16 {
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	if groupID == "" {
		return kerr.InvalidGroupID.Code
	}
	if c.loading.Load() {
		return kerr.CoordinatorLoadInProgress.Code
	}
	return 0
}

// persist hands recs to the Persister with ctx, cut short by Close. Call
// it through group.persist, which keeps the group's records in order.
func (c *Coordinator) persist(ctx context.Context, recs []Record) int16 {
	if len(recs) == 0 {
		return 0
	}
	return c.persistWith(ctx, len(recs), func(ctx context.Context) error { return c.p.Persist(ctx, recs) })
}

// persistWith runs a persist of n records, cut short by Close, and maps
// its error to a Kafka error code.
func (c *Coordinator) persistWith(ctx context.Context, n int, persist func(context.Context) error) int16 {
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	if err := persist(ctx); err != nil {
		if c.closed.Load() {
			return kerr.NotCoordinator.Code
		}
		c.log.Warn().Err(err).Int("records", n).Msg("groups: persisting __consumer_offsets records failed")
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return ke.Code
		}
		return kerr.CoordinatorNotAvailable.Code
	}
	return 0
}

func newMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return prefix + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
