package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
	"github.com/tuskdb/tusk/tlsutil"
)

// Broker is one Tusk node's Kafka front end.
type Broker struct {
	cfg    configs.Config
	log    zerolog.Logger
	store  metadata.Store
	engine *storage.Engine
	apis   apiTable
	m      *metrics

	// httpMounts are extra handlers on the HTTP listener (the console,
	// broker/console.go), set before Listen; consoleVersion is the version
	// the console reports for this node.
	httpMounts     []httpMount
	consoleVersion string

	// listeners are the Kafka listeners, in configuration order
	// (listeners.go); internal is the node-to-node one.
	listeners []*listener
	internal  *listener
	httpSrv   *http.Server
	httpLn    net.Listener

	pids producerIDs
	// frames recycles Produce request frames (see framePool).
	frames framePool
	gc     *groupCoordinators
	txnc   *txnCoordinators // transaction coordinators (txn.go)
	fwd    forwarders       // clients for forwarded Produce requests and replica fetches
	repl   *replica.Manager // this node's roles in the segment chains
	sealed sealedChecks     // sealed segments verified for reads from this replica
	// badConfigs are stored topic config values that did not parse
	// (topicConfigInt warns once about each).
	badConfigs badConfigValues
	// topicDefaults caches the topic config defaults (topicConfigValue).
	topicDefaults topicDefaults
	// keys refuses records without a key produced to compacted topics
	// (00_produce.go).
	keys keyCheck
	// builtin is the default configuration, for DescribeConfigs' sources.
	builtin builtinConfig
	// authz decides ACL checks; nil when the authorizer is off (authz.go).
	authz *auth.Authorizer
	// quotas meters clients against their byte-rate quotas (quota.go).
	quotas quotaMeters
	// saslMechs are the enabled SASL mechanisms (sasl.mechanisms) and
	// authFailures the recent failed authentications per address
	// (36_sasl_authenticate.go).
	saslMechs    []string
	authFailures authFailures
	// hashes bounds the PBKDF2 hashes running at once
	// (sasl.max-concurrent-hashes): PLAIN logins and bootstrap users.
	hashes *auth.HashGate
	// saslAuthTimeout, when set (tests), replaces the time a SASL
	// connection has to authenticate (36_sasl_authenticate.go).
	saslAuthTimeout atomic.Int64
	// bootUsers are the bootstrap users file's entries until Serve
	// hands them to startBootstrapUsers (bootstrap_users.go).
	bootUsers []bootstrapUser

	// tls is the node's TLS material (nil: none): the certificate of the
	// SSL and SASL_SSL listeners (listeners.go) and, with a CA, of
	// node-to-node traffic (internal_tls.go). Set by SetTLS or loaded
	// from tls.* in Listen.
	tls *tlsutil.Reloader

	internalLn     net.Listener
	internalHTTP   *connQueue // the internal listener's HTTP connections (internal_kafka.go)
	internalSrv    *http.Server
	internalClient *rpc.Client // calls to other nodes' internal listeners

	// caughtUp is set once the controller registered this node and the
	// local metadata reached the controller's; only then does reconcile
	// delete anything.
	caughtUp atomic.Bool
	leaseMu  sync.Mutex
	lease    fencing.Lease // from the controller, timed from each heartbeat's send time
	leaseCh  chan struct{} // closed and replaced at every lease renewal
	// leaseExpiry mirrors lease.Expiry() (unix nanos) for lock-free reads
	// on the append path.
	leaseExpiry atomic.Int64

	// bgCtx ends when Close begins: the heartbeat, reconcile, rotation
	// and replica-fetch loops stop waiting on the network at once.
	bgCtx    context.Context
	bgCancel context.CancelFunc

	reconcileMu   sync.Mutex // one reconcile pass at a time
	reconcileKick chan struct{}
	// reconcileRetry holds partitions the next reconcile pass handles
	// although the metadata did not change them (a failed open, a
	// learner restarted at the leader's log start).
	reconcileRetryMu sync.Mutex
	reconcileRetry   map[storage.TopicPartition]bool
	bgWG             sync.WaitGroup // heartbeat and reconcile loops

	// ctx ends when shutdown gives up waiting for in-flight requests.
	ctx    context.Context
	cancel context.CancelFunc
	// reqCtx ends when Close begins: requests' waits on the cluster
	// (request.ctx).
	reqCtx    context.Context
	reqCancel context.CancelFunc

	shutdown     chan struct{} // closed when Close begins
	shutdownOnce sync.Once
	// nodesStop is closed once the client connections drained: until
	// then, other nodes' connections to the internal listener (replica
	// fetches) are still served, so that acks=all produces in flight can
	// complete.
	nodesStop chan struct{}

	// sendfileOff makes Fetch copy record bytes even on TCP connections
	// (tests compare both paths).
	sendfileOff atomic.Bool

	// txnVerify answers a partition leader's KIP-890 part 1 check of a
	// transactional batch (00_produce.go); nil until the transaction
	// coordinators are hosted, and then transactional batches are
	// refused. Set with Store (before or while serving).
	txnVerify atomic.Pointer[txnVerifier]

	// fetchSessions holds the incremental fetch sessions (KIP-227) of
	// clients and followers (fetch_session.go).
	fetchSessions *fetchSessions
	// share hosts the share-partitions this node leads and the share
	// sessions of share-group members (share_partitions.go).
	share *shareHost
	// shareCoords are the share coordinators of the __share_group_state
	// partitions this node leads (share_coordinator.go).
	shareCoords shareCoords

	connMu   sync.Mutex
	conns    map[*conn]struct{}
	connWG   sync.WaitGroup // every connection
	clientWG sync.WaitGroup // client (non-node) connections
	serveW   sync.WaitGroup
}

// New builds a broker over a metadata store and a storage engine. Logs are
// opened (and logs of deleted topics removed) by the reconcile loop that
// Serve starts, as the metadata says which partitions this node leads.
// The broker becomes the store's Forwarder.
func New(cfg configs.Config, log zerolog.Logger, store metadata.Store, engine *storage.Engine) (*Broker, error) {
	b := &Broker{
		fetchSessions:  newFetchSessions(cfg.Kafka.FetchSessionCacheSlots),
		cfg:            cfg,
		log:            log,
		store:          store,
		engine:         engine,
		apis:           newAPITable(),
		m:              newMetrics(cfg.Metrics.PerPartition),
		shutdown:       make(chan struct{}),
		nodesStop:      make(chan struct{}),
		conns:          map[*conn]struct{}{},
		internalClient: rpc.NewClient(nil),
		reconcileKick:  make(chan struct{}, 1),
		leaseCh:        make(chan struct{}),
	}
	b.pids.b = b
	b.share = newShareHost(b)
	authz, err := b.newAuthorizer()
	if err != nil {
		return nil, err
	}
	b.authz = authz
	mechs, err := cfg.SASL.MechanismList()
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.saslMechs = mechs
	b.hashes = auth.NewHashGate(cfg.SASL.HashConcurrency())
	if f := cfg.SASL.BootstrapUsersFile; f != "" {
		if b.bootUsers, err = readBootstrapUsers(f); err != nil {
			return nil, err
		}
	}
	engine.SetLeaseSource(b.currentLease) // replicated appends need a live lease (fencing.CheckAppend)
	b.m.addStorage(engine)
	b.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tusk_fetch_sessions", Help: "Incremental fetch sessions (KIP-227) this node holds for clients and followers.",
	}, func() float64 { return float64(b.fetchSessions.len()) }))
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.reqCtx, b.reqCancel = context.WithCancel(b.ctx)
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	b.gc = b.newGroupCoordinators()
	b.txnc = b.newTxnCoordinators()
	var verifier txnVerifier = b.txnc
	b.txnVerify.Store(&verifier)
	b.repl = b.newReplicaManager()
	b.fetchSessions.repl = b.repl // followers' sessions (fetch_replica.go)
	b.m.reg.MustRegister(newCleanerCollector(b.repl))
	b.m.reg.MustRegister(newStateCollector(b))
	store.SetForwarder(b)
	store.SetProber(b)
	return b, nil
}

// ensureClusterID gives the cluster its ID once (any node may; the
// command is compare-and-set).
func (b *Broker) ensureClusterID(ctx context.Context) error {
	if b.store.FSM().ClusterID() != "" {
		return nil
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("broker: cluster id: %w", err)
	}
	id := "tusk-" + strconv.FormatUint(binary.BigEndian.Uint64(raw[:]), 36)
	if err := b.store.Apply(ctx, metadata.InitCluster{ClusterID: id}); err != nil && !errors.Is(err, metadata.ErrPreconditionFailed) {
		return fmt.Errorf("broker: init cluster: %w", err)
	}
	return nil
}

// SetTLS gives the broker the node's TLS material (loaded once by the
// caller, which shares it with the Raft transport): the certificate of
// the SSL and SASL_SSL listeners and, with a CA, of node-to-node traffic.
// Call it before Listen; without it Listen loads tls.* itself when they
// are set.
func (b *Broker) SetTLS(r *tlsutil.Reloader) { b.tls = r }

// Listen binds the Kafka listeners (listeners.go), the internal and the
// HTTP listener. Port 0 picks a free port.
func (b *Broker) Listen() error {
	if b.tls == nil {
		files := tlsutil.Files{CertFile: b.cfg.TLS.CertFile, KeyFile: b.cfg.TLS.KeyFile, CAFile: b.cfg.TLS.CAFile}
		if files.Set() {
			r, err := tlsutil.Load(files)
			if err != nil {
				return fmt.Errorf("broker: %w", err)
			}
			b.tls = r
		}
	}
	if err := b.checkNodeSecurity(); err != nil {
		return err
	}
	b.internalClient = b.newInternalClient()
	b.fwd.tls = b.fwdTLS()
	if err := b.listenKafka(); err != nil {
		return err
	}
	closeKafka := func() {
		for _, l := range b.listeners {
			l.ln.Close()
		}
	}

	il, err := net.Listen("tcp", b.cfg.Internal.Listen)
	if err != nil {
		closeKafka()
		return fmt.Errorf("broker: listen internal %s: %w", b.cfg.Internal.Listen, err)
	}
	b.internalLn = il
	b.internal = &listener{name: internalListener, protocol: configs.ProtocolPlaintext, ln: il, internal: true}
	if b.nodeTLS() {
		b.internal.protocol = configs.ProtocolSSL // handshaken before the first byte is sniffed (internal_tls.go)
	}
	b.internalHTTP = newConnQueue(il.Addr())
	b.internalSrv = &http.Server{Handler: b.internalMux(), ReadHeaderTimeout: 10 * time.Second, ConnContext: peerContext}

	if b.cfg.HTTP.Listen != "" {
		hl, err := net.Listen("tcp", b.cfg.HTTP.Listen)
		if err != nil {
			closeKafka()
			il.Close()
			return fmt.Errorf("broker: listen http %s: %w", b.cfg.HTTP.Listen, err)
		}
		b.httpLn = hl
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-b.shutdown:
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
			default:
				fmt.Fprintln(w, "ok")
			}
		})
		mux.Handle("/metrics", promhttp.HandlerFor(b.m.reg, promhttp.HandlerOpts{Registry: b.m.reg}))
		// /healthz and /metrics are open; the rest needs the admin
		// token, or loopback without the authorizer (adminGate).
		mux.Handle("/debug/pprof/", b.adminGate(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", b.adminGate(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", b.adminGate(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", b.adminGate(http.HandlerFunc(pprof.Trace)))
		for _, m := range b.httpMounts {
			for _, p := range m.patterns {
				mux.Handle(p, b.adminGate(m.h))
			}
		}
		b.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// KafkaAddr is the bound address of the first Kafka listener.
func (b *Broker) KafkaAddr() string { return b.listeners[0].ln.Addr().String() }

// HTTPAddr is the bound HTTP listener address, or "".
func (b *Broker) HTTPAddr() string {
	if b.httpLn == nil {
		return ""
	}
	return b.httpLn.Addr().String()
}

// InternalAddr is the bound internal listener address.
func (b *Broker) InternalAddr() string { return b.internalLn.Addr().String() }

// Registry exposes the Prometheus registry (for tests and embedding).
func (b *Broker) Registry() *prometheus.Registry { return b.m.reg }

// Serve accepts connections until Close. It returns after writing the
// ready file (if configured) and starting the accept loops.
func (b *Broker) Serve() error {
	if b.httpSrv != nil {
		b.serveW.Add(1)
		go func() {
			defer b.serveW.Done()
			if err := b.httpSrv.Serve(b.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error().Err(err).Msg("http server stopped")
			}
		}()
	}
	b.serveW.Add(1)
	go func() {
		defer b.serveW.Done()
		if err := b.internalSrv.Serve(b.internalHTTP); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error().Err(err).Msg("internal server stopped")
		}
	}()
	b.bgWG.Add(2)
	go b.heartbeatLoop()
	go b.reconcileLoop()
	if b.tls != nil {
		b.bgWG.Add(1)
		go b.reloadTLSLoop()
	}
	b.repl.Start()
	if b.single() {
		// A cluster of one elects and registers itself at once; report
		// ready only when it serves its partitions.
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err := b.waitRegistered(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	waitBootstrap, err := b.startBootstrapUsers()
	if err != nil {
		return err
	}
	b.serveW.Add(1 + len(b.listeners))
	for _, l := range b.listeners {
		go b.acceptLoop(l.ln, l.name, func(nc net.Conn) bool { return b.startConn(nc, l) })
	}
	go b.acceptLoop(b.internalLn, "internal", b.routeInternal)
	b.log.Info().Str("kafka", b.KafkaAddr()).Interface("listeners", b.listenerAddrs()).Str("http", b.HTTPAddr()).Str("internal", b.InternalAddr()).
		Str("raft", b.store.RaftAddr()).Int32("node_id", b.cfg.NodeID).Str("fsync", b.cfg.Storage.Fsync).Msg("serving")
	waitBootstrap()
	if b.cfg.ReadyFile != "" {
		if err := b.writeReadyFile(); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) writeReadyFile() error {
	body, err := json.Marshal(map[string]any{"node_id": b.cfg.NodeID, "kafka": b.KafkaAddr(), "http": b.HTTPAddr(),
		"internal": b.InternalAddr(), "raft": b.store.RaftAddr(), "listeners": b.listenerAddrs()})
	if err != nil {
		return fmt.Errorf("broker: ready file: %w", err)
	}
	tmp := b.cfg.ReadyFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(b.cfg.ReadyFile), 0o755); err != nil {
		return fmt.Errorf("broker: ready file: %w", err)
	}
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("broker: ready file: %w", err)
	}
	if err := os.Rename(tmp, b.cfg.ReadyFile); err != nil {
		return fmt.Errorf("broker: ready file: %w", err)
	}
	return nil
}

// acceptLoop accepts connections on ln until it closes, handing each to
// serve; serve returns false to stop accepting (shutdown). Temporary
// failures such as EMFILE back off and retry.
func (b *Broker) acceptLoop(ln net.Listener, name string, serve func(net.Conn) bool) {
	defer b.serveW.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if b.shuttingDown() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.log.Warn().Err(err).Str("listener", name).Dur("backoff", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-b.shutdown:
				return
			}
			continue
		}
		backoff = 0
		if !serve(nc) {
			return
		}
	}
}

// startConn serves a Kafka connection accepted on l (node traffic if l
// is the internal listener). It reports false once shutting down.
func (b *Broker) startConn(nc net.Conn, l *listener) bool {
	if l.tlsConf != nil {
		// The handshake runs on the connection's goroutine (conn.serve);
		// set before the conn is registered, its deadline cannot undo a
		// stopReading.
		nc.SetDeadline(time.Now().Add(handshakeTimeout)) //nolint:errcheck // a closed conn fails its handshake anyway
		nc = tls.Server(nc, l.tlsConf)
	}
	c := newConn(b, nc, l)
	node := c.node
	stop := b.shutdown
	if node {
		stop = b.nodesStop // node connections are served while clients drain
	}
	b.connMu.Lock()
	select {
	case <-stop:
		b.connMu.Unlock()
		nc.Close()
		return false
	default:
	}
	b.conns[c] = struct{}{}
	b.connWG.Add(1)
	if !node {
		b.clientWG.Add(1)
	}
	b.connMu.Unlock()
	go c.serve()
	return true
}

func (b *Broker) dropConn(c *conn) {
	b.connMu.Lock()
	delete(b.conns, c)
	b.connMu.Unlock()
	if !c.node {
		b.clientWG.Done()
	}
	b.connWG.Done()
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stopped reports whether c should stop reading requests: clients once
// Close begins, other nodes once the clients drained.
func (b *Broker) stopped(c *conn) bool {
	if c.node {
		return closed(b.nodesStop)
	}
	return closed(b.shutdown)
}

// Close shuts down gracefully: stop accepting, stop reading new requests,
// answer the in-flight ones, then close storage (fsync + close segments)
// and metadata. It is safe to call more than once.
func (b *Broker) Close(ctx context.Context) error {
	var err error
	b.shutdownOnce.Do(func() {
		close(b.shutdown)
		b.reqCancel()
		for _, l := range b.listeners {
			l.ln.Close()
		}

		// Clients first: their requests in flight finish (acks=all
		// produces need the followers' fetches, which other nodes'
		// connections keep serving meanwhile), then the node
		// connections.
		stopReading := func(node bool) {
			b.connMu.Lock()
			for c := range b.conns {
				if c.node == node {
					c.stopReading()
				}
			}
			b.connMu.Unlock()
		}
		stopReading(false)
		// Answer parked JoinGroup/SyncGroup calls (NOT_COORDINATOR) so
		// their connections can drain.
		b.gc.close()
		b.txnc.close()
		b.share.close()
		drain := func(wg *sync.WaitGroup) {
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				b.log.Warn().Msg("shutdown timeout: closing connections with requests in flight")
				b.cancel()
				b.connMu.Lock()
				for c := range b.conns {
					c.nc.Close()
				}
				b.connMu.Unlock()
				<-done
			}
		}
		drain(&b.clientWG)
		close(b.nodesStop)
		stopReading(true)
		drain(&b.connWG)
		if b.httpSrv != nil {
			hctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b.httpSrv.Shutdown(hctx) //nolint:errcheck // best effort; the listener is closed either way
			cancel()
		}
		if b.internalLn != nil {
			b.internalLn.Close()
		}
		if b.internalSrv != nil {
			hctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b.internalSrv.Shutdown(hctx) //nolint:errcheck // as above
			cancel()
		}
		b.bgCancel()
		b.repl.Close()
		b.bgWG.Wait()
		b.fwd.close()
		b.serveW.Wait()
		b.cancel()
		if e := b.engine.Close(); e != nil {
			err = fmt.Errorf("broker: close storage: %w", e)
		}
		if e := b.store.Close(); e != nil && err == nil {
			err = fmt.Errorf("broker: close metadata: %w", e)
		}
	})
	return err
}

// untilShutdown returns a child of ctx that also ends when Close begins,
// for waits on other nodes that a shutdown must not wait out (they may be
// stopping too).
//
// It starts no goroutine: reqCtx, cancelled as Close begins, calls
// cancel (context.AfterFunc registers with a cancelCtx parent), so a
// produce request waiting for its followers costs no goroutine start and
// wake-up.
func (b *Broker) untilShutdown(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.reqCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// shuttingDown reports whether Close has begun.
func (b *Broker) shuttingDown() bool {
	select {
	case <-b.shutdown:
		return true
	default:
		return false
	}
}
