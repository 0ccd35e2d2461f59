package txn

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Config configures a Coordinator. Zero values take Kafka's defaults.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxTimeout is transaction.max.timeout.ms (Kafka: 15m): an
	// InitProducerID asking for more is answered
	// INVALID_TRANSACTION_TIMEOUT.
	MaxTimeout time.Duration
	// IDExpiration is transactional.id.expiration.ms (Kafka: 7d): an id
	// with no transaction in progress and no update for this long is
	// removed (a tombstone is persisted).
	IDExpiration time.Duration
	// OffsetsPartition maps a consumer group to its __consumer_offsets
	// partition (AddOffsetsToTxn adds that partition to the
	// transaction). Required.
	OffsetsPartition func(group string) (topic string, partition int32)
	// PartitionExists, when set, is asked for every partition of an
	// AddPartitionsToTxn; a partition that does not exist is answered
	// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED,
	// as Kafka does. Nil: every partition exists.
	PartitionExists func(topic string, partition int32) bool
	// TickInterval is how often a background goroutine calls Tick (Kafka
	// checks timed-out transactions every 10s). Zero means 10s; negative
	// disables the goroutine (tests call Tick themselves).
	TickInterval time.Duration
	// RetryBackoff is the wait between attempts to write a transaction's
	// markers or persist its Complete* record after a failure. Zero
	// means 100ms.
	RetryBackoff time.Duration
	// Logger receives transitions at debug level and failures at warn.
	Logger zerolog.Logger
}

func (cfg *Config) fill() {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = 15 * time.Minute
	}
	if cfg.IDExpiration == 0 {
		cfg.IDExpiration = 7 * 24 * time.Hour
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 10 * time.Second
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
}

// Persister writes the coordinator's records to its __transaction_state
// partition and returns once they are committed (the high watermark
// covers them). It is called with the transactional id's lock held, so
// one id's records reach it in order. It must return promptly once ctx is
// done (Close cancels every Persist in flight). A *kerr.Error (possibly
// wrapped) is mapped as Kafka maps log append errors (NOT_LEADER_OR_FOLLOWER
// and KAFKA_STORAGE_ERROR → NOT_COORDINATOR; NOT_ENOUGH_REPLICAS,
// REQUEST_TIMED_OUT, UNKNOWN_TOPIC_OR_PARTITION → COORDINATOR_NOT_AVAILABLE;
// MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE → UNKNOWN_SERVER_ERROR; others
// as is); any other error becomes COORDINATOR_NOT_AVAILABLE.
type Persister interface {
	Persist(ctx context.Context, recs []Record) error
}

// Record is one __transaction_state record. Value nil is a tombstone.
type Record struct{ Key, Value []byte }

// Markers writes COMMIT/ABORT markers to a transaction's partitions (the
// broker sends WriteTxnMarkers to each partition's leader) and returns
// nil once every partition acknowledged. A partition that no longer
// exists counts as acknowledged (Kafka drops it). On an error the
// coordinator calls Write again with the same request after
// Config.RetryBackoff (markers are idempotent at the partitions), until
// ctx is done (Close). An error that is or wraps
// kerr.TransactionCoordinatorFenced or kerr.NotCoordinator stops the
// retries: a newer coordinator owns the transaction.
type Markers interface {
	Write(ctx context.Context, m MarkerRequest) error
}

// MarkerRequest is the markers of one transaction.
type MarkerRequest struct {
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
	// Partitions maps each topic to its partitions, sorted.
	Partitions map[string][]int32
}

// ProducerIDs allocates producer ids (the broker's block from Raft). An
// error that is a *kerr.Error is answered as is, any other as
// COORDINATOR_NOT_AVAILABLE.
type ProducerIDs interface {
	Next(ctx context.Context) (int64, error)
}

// Coordinator is the transaction coordinator of one __transaction_state
// partition. See doc.go.
type Coordinator struct {
	cfg     Config
	epoch   int32
	p       Persister
	markers Markers
	ids     ProducerIDs
	log     zerolog.Logger

	mu   sync.Mutex // guards txns only; never held while an id's lock is acquired or anything waits
	txns map[string]*txnMeta

	loading atomic.Bool
	closed  atomic.Bool

	// ctx is the parent of every Persist and marker write; Close
	// cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	bgMu      sync.Mutex // guards bgStopped and bg.Add
	bgStopped bool
	bg        sync.WaitGroup

	stop chan struct{}
	done chan struct{}
}

// New returns a Coordinator in the loading state (every request is
// answered COORDINATOR_LOAD_IN_PROGRESS) until the broker has fed the
// partition's log to Replay and called ReplayDone. epoch is the
// coordinator epoch (the __transaction_state partition's leader epoch),
// sent with every marker.
func New(cfg Config, epoch int32, p Persister, m Markers, ids ProducerIDs) *Coordinator {
	if cfg.OffsetsPartition == nil {
		panic("txn: Config.OffsetsPartition is required")
	}
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		cfg:     cfg,
		epoch:   epoch,
		p:       p,
		markers: m,
		ids:     ids,
		log:     cfg.Logger,
		txns:    make(map[string]*txnMeta),
		ctx:     ctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
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

// Close stops the coordinator (on losing leadership of the partition).
// Persists, marker writes and producer id allocations in flight are
// cancelled; their callers and
// every later call are answered NOT_COORDINATOR. A transaction left in
// Prepare* is completed by the next coordinator (ReplayDone).
func (c *Coordinator) Close() {
	if c.closed.Swap(true) {
		return
	}
	c.cancel()
	close(c.stop)
	<-c.done
	c.bgMu.Lock()
	c.bgStopped = true
	c.bgMu.Unlock()
	c.bg.Wait()
}

// spawn runs f in a goroutine Close waits for; false after Close.
func (c *Coordinator) spawn(f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgStopped {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
	return true
}

// Tick aborts every Ongoing transaction past its timeout (the epoch is
// bumped first, fencing the producer, as Kafka's PrepareEpochFence) and
// removes every id idle past Config.IDExpiration (a tombstone). It never
// waits: an id whose lock is held is left for the next Tick, and the
// persists run in goroutines that hold the id's lock.
func (c *Coordinator) Tick() {
	if c.loading.Load() || c.closed.Load() {
		return
	}
	nowMs := c.cfg.Now().UnixMilli()
	expireBefore := nowMs - c.cfg.IDExpiration.Milliseconds()
	for _, m := range c.snapshot() {
		if !m.mu.TryLock() {
			continue
		}
		if m.removed || !m.stored {
			m.mu.Unlock()
			continue
		}
		var f func()
		switch m.state {
		case StateOngoing:
			if m.startMs+int64(m.timeoutMs) < nowMs {
				f = func() {
					if code := c.fence(c.ctx, m); code != 0 {
						c.log.Warn().Str("transactional_id", m.id).Int16("error", code).Msg("txn: aborting a timed-out transaction failed; the next tick retries")
					}
				}
			}
		case StateEmpty, StateCompleteCommit, StateCompleteAbort:
			if m.updateMs <= expireBefore {
				f = func() { c.expire(m) }
			}
		}
		if f == nil {
			m.mu.Unlock()
			continue
		}
		if !c.spawn(func() { defer m.mu.Unlock(); f() }) {
			m.mu.Unlock()
		}
	}
}

// expire persists m's tombstone and drops it; m.mu held.
func (c *Coordinator) expire(m *txnMeta) {
	if code := c.persist(c.ctx, []Record{{Key: keyBytes(m.id)}}); code != 0 {
		c.log.Warn().Str("transactional_id", m.id).Int16("error", code).Msg("txn: expiring a transactional id failed; the next tick retries")
		return
	}
	c.log.Debug().Str("transactional_id", m.id).Msg("txn: transactional id expired")
	c.removeLocked(m)
}

func (c *Coordinator) snapshot() []*txnMeta {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]*txnMeta, 0, len(c.txns))
	for _, m := range c.txns {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
	return ms
}

// lockMeta returns id's metadata locked, creating a placeholder (not yet
// stored) when create is set; nil if there is none.
func (c *Coordinator) lockMeta(id string, create bool) *txnMeta {
	for {
		c.mu.Lock()
		m := c.txns[id]
		if m == nil {
			if !create {
				c.mu.Unlock()
				return nil
			}
			m = newMeta(id)
			c.txns[id] = m
		}
		c.mu.Unlock()
		m.mu.Lock()
		if !m.removed {
			return m
		}
		m.mu.Unlock()
	}
}

// view is id's state as of its last committed transition; nil if unknown.
func (c *Coordinator) view(id string) *txnView {
	c.mu.Lock()
	m := c.txns[id]
	c.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.view.Load()
}

// removeLocked drops m from the map; m.mu held (lock order m.mu → c.mu).
func (c *Coordinator) removeLocked(m *txnMeta) {
	m.removed = true
	m.view.Store(nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.txns[m.id] == m {
		delete(c.txns, m.id)
	}
}

// preCheck is what every transactional API answers before looking at an
// id: INVALID_REQUEST for an empty id (first, as Kafka checks it before
// the ownership of the id: the closed stand-in of a node that does not
// coordinate it answers so too), NOT_COORDINATOR after Close,
// COORDINATOR_LOAD_IN_PROGRESS while loading.
func (c *Coordinator) preCheck(id string) int16 {
	if id == "" {
		return kerr.InvalidRequest.Code
	}
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	if c.loading.Load() {
		return kerr.CoordinatorLoadInProgress.Code
	}
	return 0
}

// persist hands recs to the Persister with ctx, cut short by Close, and
// maps its error to the code the client gets.
func (c *Coordinator) persist(ctx context.Context, recs []Record) int16 {
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	err := c.p.Persist(ctx, recs)
	if err == nil {
		return 0
	}
	if c.closed.Load() {
		return kerr.NotCoordinator.Code
	}
	c.log.Warn().Err(err).Int("records", len(recs)).Msg("txn: persisting __transaction_state records failed")
	return appendErrorCode(err)
}

// nextID allocates a producer id with ctx, cut short by Close (it is
// called with the id's lock held, which Close's completions may wait
// for).
func (c *Coordinator) nextID(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	return c.ids.Next(ctx)
}

// appendErrorCode maps a log append error as Kafka's
// TransactionStateManager.appendTransactionToLog does.
func appendErrorCode(err error) int16 {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return kerr.CoordinatorNotAvailable.Code
	}
	switch ke {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
		return kerr.CoordinatorNotAvailable.Code
	case kerr.NotLeaderForPartition, kerr.KafkaStorageError:
		return kerr.NotCoordinator.Code
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return kerr.UnknownServerError.Code
	}
	return ke.Code
}

// idErrorCode maps a ProducerIDs error.
func idErrorCode(err error) int16 {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}

// wait sleeps for the retry backoff; false once the coordinator closed.
func (c *Coordinator) wait() bool {
	t := time.NewTimer(c.cfg.RetryBackoff)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// epochExhausted is Kafka's TransactionMetadata.isEpochExhausted: the
// last epoch a client may be given; the next bump takes a new producer id.
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }
