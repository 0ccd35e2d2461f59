package metadata

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/tlsutil"
)

// ErrNotLeader is returned by operations only the controller (the Raft
// leader) performs, when this node is not it and no forwarder is set.
var ErrNotLeader = errors.New("metadata: not the controller")

// Voter is one initial voter: node id and Raft address.
type Voter struct {
	ID   int32
	Addr string
}

// ParseVoters parses "1=host:port,2=host:port".
func ParseVoters(s string) ([]Voter, error) {
	var out []Voter
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		i := strings.IndexByte(part, '=')
		if i <= 0 {
			return nil, fmt.Errorf("metadata: voter %q: want id=host:port", part)
		}
		id, err := strconv.ParseInt(part[:i], 10, 32)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("metadata: voter %q: bad node id", part)
		}
		if _, _, err := net.SplitHostPort(part[i+1:]); err != nil {
			return nil, fmt.Errorf("metadata: voter %q: %w", part, err)
		}
		for _, v := range out {
			if v.ID == int32(id) {
				return nil, fmt.Errorf("metadata: voter id %d listed twice", id)
			}
		}
		out = append(out, Voter{ID: int32(id), Addr: part[i+1:]})
	}
	return out, nil
}

// Forwarder sends work to the controller on another node. The broker
// implements it over the internal listener.
type Forwarder interface {
	// ForwardApply has the controller (node leader) commit an encoded
	// command; it returns the command's log index.
	ForwardApply(ctx context.Context, leader int32, cmd []byte) (uint64, error)
}

// RaftOptions configure a RaftStore. Zero timing fields take the
// DefaultRaftOptions values.
type RaftOptions struct {
	NodeID int32
	Dir    string
	// Bind is the Raft TCP listen address; "" runs an in-memory transport
	// (a single node that no other node can join).
	Bind string
	// Voters are the initial voters. A node that is one of them and has
	// no Raft state bootstraps the cluster with exactly this list (every
	// initial node does the same; no node is special). Empty: this node
	// alone.
	Voters []Voter

	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// LeaseTimeout is how long a heartbeat keeps a broker alive, and how
	// long a new controller waits before fencing anyone. LeaseRenew is
	// the brokers' heartbeat interval.
	LeaseTimeout time.Duration
	LeaseRenew   time.Duration
	// ReplicaRestore is how long an active segment may have fewer
	// replicas than its topic's replication factor before the controller
	// has live non-replicas copy the partition (0: never).
	ReplicaRestore time.Duration

	Logger    zerolog.Logger
	Forwarder Forwarder
	// Transport overrides Bind (tests use raft.InmemTransport).
	Transport raft.Transport
	// TLS, with a CA, makes the transport on Bind mutual TLS between
	// nodes (raft_tls.go); nil or without a CA: plain TCP.
	TLS *tlsutil.Reloader
	// InMemory keeps the Raft log and snapshots in memory (tests).
	InMemory bool
}

// DefaultRaftOptions holds the timing defaults (the config package passes
// its own values; these serve tests and embedders).
func DefaultRaftOptions() RaftOptions {
	return RaftOptions{
		HeartbeatTimeout:  500 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		SnapshotThreshold: 8192,
		SnapshotInterval:  2 * time.Minute,
		TrailingLogs:      10240,
		LeaseTimeout:      2 * time.Second,
		LeaseRenew:        250 * time.Millisecond,
	}
}

// ValidateRaftOptions checks the timing rule of leases (docs/architecture.md,
// "Leases"): a lease outlives an election plus two renewals, so a controller
// failover fences no one.
func ValidateRaftOptions(o RaftOptions) error {
	if o.LeaseRenew <= 0 || o.LeaseTimeout <= 0 {
		return errors.New("metadata: lease timeout and renew interval must be positive")
	}
	if o.LeaseTimeout <= o.ElectionTimeout+2*o.LeaseRenew {
		return fmt.Errorf("metadata: lease timeout %v must exceed the election timeout %v plus two renewals (%v)", o.LeaseTimeout, o.ElectionTimeout, 2*o.LeaseRenew)
	}
	if o.HeartbeatTimeout < 5*time.Millisecond || o.ElectionTimeout < 5*time.Millisecond {
		return errors.New("metadata: raft timeouts below 5ms")
	}
	return nil
}

// RaftStore is the metadata Store of a cluster node: the FSM replicated by
// hashicorp/raft, with the controller (liveness, placement, fencing) running
// on whichever node is the Raft leader.
type RaftStore struct {
	opts  RaftOptions
	log   zerolog.Logger
	fsm   *FSM
	raft  *raft.Raft
	trans raft.Transport
	// stream tracks the network transport's connections, severed by
	// Close (raft_stream.go); nil on an in-memory or given transport.
	stream *trackedStream
	retry  *retryTransport       // wraps the transport (peerretry.go)
	bolt   *raftboltdb.BoltStore // nil in memory
	addr   raft.ServerAddress

	ctrl      *controller
	prober    atomic.Pointer[proberBox]    // set by SetProber
	forwarder atomic.Pointer[forwarderBox] // opts.Forwarder, replaced by SetForwarder

	stop chan struct{}
	// stopCtx ends when Close begins: the controller's own commands and
	// failover probes stop waiting (Close waits for them, wg).
	stopCtx    context.Context
	stopCancel context.CancelFunc
	wg         sync.WaitGroup
	// pushed (capacity 1) wakes pushCommits: an entry committed here, on
	// the leader, that the followers have not heard is committed.
	pushed chan struct{}
}

// OpenRaft starts the Raft node in opts.Dir and, on a node of the initial
// voters without state, bootstraps the cluster.
func OpenRaft(opts RaftOptions) (*RaftStore, error) {
	d := DefaultRaftOptions()
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if opts.ElectionTimeout == 0 {
		opts.ElectionTimeout = d.ElectionTimeout
	}
	if opts.SnapshotThreshold == 0 {
		opts.SnapshotThreshold = d.SnapshotThreshold
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = d.SnapshotInterval
	}
	if opts.TrailingLogs == 0 {
		opts.TrailingLogs = d.TrailingLogs
	}
	if opts.LeaseTimeout == 0 {
		opts.LeaseTimeout = d.LeaseTimeout
	}
	if opts.LeaseRenew == 0 {
		opts.LeaseRenew = d.LeaseRenew
	}
	if opts.Bind == "" && opts.Transport == nil {
		// A node alone on an in-memory transport can never gain peers:
		// elect it at once instead of after a network-sized timeout.
		opts.HeartbeatTimeout = min(opts.HeartbeatTimeout, 50*time.Millisecond)
		opts.ElectionTimeout = min(opts.ElectionTimeout, 50*time.Millisecond)
	}
	if err := ValidateRaftOptions(opts); err != nil {
		return nil, err
	}
	s := &RaftStore{opts: opts, log: opts.Logger, fsm: NewFSM(), stop: make(chan struct{}), pushed: make(chan struct{}, 1)}
	s.stopCtx, s.stopCancel = context.WithCancel(context.Background())
	s.SetForwarder(opts.Forwarder)
	s.ctrl = newController(s)

	conf := raft.DefaultConfig()
	conf.LocalID = serverID(opts.NodeID)
	conf.HeartbeatTimeout = opts.HeartbeatTimeout
	conf.ElectionTimeout = opts.ElectionTimeout
	// The Raft leader steps down once it has heard from no quorum for
	// LeaderLeaseTimeout. At half the heartbeat timeout (250 ms) a
	// starved machine lost its leader every few seconds while thousands
	// of partitions were created or failed over (docs/io-and-scale.md,
	// "Scale": "failed to contact quorum of nodes, stepping down", then
	// elections), and every loss stalls all metadata changes for an
	// election. The controller's safety does not rest on this lease
	// (brokers hold their own, docs/architecture.md, "Leases"; a leader
	// cut off commits nothing), so it is the whole heartbeat timeout,
	// the most hashicorp/raft allows.
	conf.LeaderLeaseTimeout = opts.HeartbeatTimeout
	// The leader sends each follower an AppendEntries every
	// CommitTimeout to 2×CommitTimeout even when idle (how followers
	// learn the commit index of the last entries): at 10 ms that was
	// about half of an idle controller's CPU (docs/io-and-scale.md,
	// "Scale"). A tenth of the heartbeat timeout, the period of
	// hashicorp/raft's heartbeats (50 ms by default, its own default
	// CommitTimeout), delays a follower's apply of an isolated entry by
	// at most two of them; entries in a stream carry each other's
	// commit index.
	conf.CommitTimeout = max(time.Millisecond, opts.HeartbeatTimeout/10)
	conf.SnapshotThreshold = opts.SnapshotThreshold
	conf.SnapshotInterval = opts.SnapshotInterval
	conf.TrailingLogs = opts.TrailingLogs
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: zerologWriter{opts.Logger}})

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		err    error
	)
	if opts.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("metadata: create %s: %w", opts.Dir, err)
		}
		s.bolt, err = raftboltdb.NewBoltStore(filepath.Join(opts.Dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("metadata: open raft log: %w", err)
		}
		// The leader reads back every entry it replicates, and the
		// entry before them (setPreviousLog) on each AppendEntries,
		// one every CommitTimeout per follower even when idle: served
		// from memory instead of a BoltDB read transaction each.
		cache, err := raft.NewLogCache(raftLogCache, s.bolt)
		if err != nil {
			s.bolt.Close()
			return nil, fmt.Errorf("metadata: raft log cache: %w", err)
		}
		logs, stable = cache, s.bolt
		snaps, err = raft.NewFileSnapshotStoreWithLogger(opts.Dir, 2, conf.Logger)
		if err != nil {
			s.bolt.Close()
			return nil, fmt.Errorf("metadata: open raft snapshots: %w", err)
		}
	}

	nodeAt := &raftNodeAt{voters: opts.Voters}
	switch {
	case opts.Transport != nil:
		s.trans = opts.Transport
	case opts.Bind == "":
		_, s.trans = raft.NewInmemTransport(raft.ServerAddress("inmem-" + strconv.Itoa(int(opts.NodeID))))
	case opts.TLS != nil && opts.TLS.HasCA():
		stream, err := newTLSStreamLayer(opts.Bind, opts.TLS, nodeAt.lookup, opts.Logger)
		if err != nil {
			s.closeStores()
			return nil, err
		}
		s.stream = newTrackedStream(stream)
		s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s.stream, MaxPool: 3, Timeout: raftRPCTimeout, Logger: conf.Logger})
	default:
		stream, err := newTCPStreamLayer(opts.Bind)
		if err != nil {
			s.closeStores()
			return nil, err
		}
		s.stream = newTrackedStream(stream)
		s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s.stream, MaxPool: 3, Timeout: raftRPCTimeout, Logger: conf.Logger})
	}
	// Retry AppendEntries to an unreachable peer instead of letting raft
	// back off for up to 10 s (see retryTransport).
	s.trans, s.retry = newRetryTransport(s.trans, opts.HeartbeatTimeout/10, raftRPCTimeout, s.stop)
	s.addr = s.trans.LocalAddr()

	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("metadata: read raft state: %w", err)
	}
	if !has {
		var servers []raft.Server
		if len(opts.Voters) == 0 {
			servers = []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: s.addr}}
		} else if slices.ContainsFunc(opts.Voters, func(v Voter) bool { return v.ID == opts.NodeID }) {
			for _, v := range opts.Voters {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: serverID(v.ID), Address: raft.ServerAddress(v.Addr)})
			}
		}
		if servers != nil {
			if err := raft.BootstrapCluster(conf, logs, stable, snaps, s.trans, raft.Configuration{Servers: servers}); err != nil {
				s.closeAll()
				return nil, fmt.Errorf("metadata: bootstrap raft: %w", err)
			}
			s.log.Info().Int("voters", len(servers)).Msg("bootstrapped raft cluster")
		} else {
			s.log.Info().Msg("not an initial voter: waiting to be added (tusk cluster add-node)")
		}
	}
	s.raft, err = raft.NewRaft(conf, (*raftFSM)(s), logs, stable, snaps, s.trans)
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("metadata: start raft: %w", err)
	}
	s.retry.node.Store(s.raft)
	nodeAt.node.Store(s.raft)
	s.wg.Add(2)
	go s.ctrl.run()
	go s.pushCommits()
	return s, nil
}

// pushCommits tells the followers of the entries committed here as soon
// as they are (docs/io-and-scale.md, "Scale"). hashicorp/raft's
// leader sends a follower the commit index only with its next
// AppendEntries: the next entry, or the CommitTimeout tick (50-100 ms at
// the default heartbeat timeout; lower, it costs an idle controller its
// CPU). So an isolated command, a roll above all, reached every other
// node 50-100 ms after it committed, and an Apply forwarded from a
// follower (which returns once the follower applied it) took that long:
// 80 ms, against 0.31 ms with the push (BenchmarkForwardedApply). After
// each commit this appends a barrier entry, whose AppendEntries carries
// the new commit index at once; one barrier at a time, so a burst of
// commands costs one or a few, and the entries of a stream carry each
// other's commit index anyway.
func (s *RaftStore) pushCommits() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.pushed:
		}
		if !s.IsLeader() {
			continue
		}
		if cf := s.raft.GetConfiguration(); cf.Error() != nil || len(cf.Configuration().Servers) < 2 {
			continue // no one to tell (a single node)
		}
		f := s.raft.Barrier(raftRPCTimeout)
		done := make(chan struct{})
		go func() { _ = f.Error(); close(done) }() // resolves when applied, or at shutdown
		select {
		case <-done:
		case <-s.stop:
			return
		}
	}
}

// pushCommit wakes pushCommits.
func (s *RaftStore) pushCommit() {
	select {
	case s.pushed <- struct{}{}:
	default:
	}
}

// raftRPCTimeout bounds a Raft RPC (and a dial) to a peer.
const raftRPCTimeout = 5 * time.Second

// raftLogCache is how many recent Raft log entries are kept in memory.
const raftLogCache = 1024

func serverID(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

func (s *RaftStore) closeStores() {
	if s.bolt != nil {
		s.bolt.Close()
	}
}

func (s *RaftStore) closeAll() {
	if c, ok := s.trans.(io.Closer); ok {
		c.Close()
	}
	s.closeStores()
}

// FSM returns the local replica of the state.
func (s *RaftStore) FSM() *FSM { return s.fsm }

// RaftAddr is this node's Raft address.
func (s *RaftStore) RaftAddr() string { return string(s.addr) }

// IsLeader reports whether this node is the controller.
func (s *RaftStore) IsLeader() bool { return s.raft.State() == raft.Leader }

// verifyLeader returns nil once a quorum has confirmed, after the call
// began, that this node still leads (raft.VerifyLeader), and an error
// wrapping ErrNotLeader if it does not.
func (s *RaftStore) verifyLeader(ctx context.Context) error {
	f := s.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // resolves when verified or when leadership ends
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("metadata: verify leadership: %w", ctx.Err())
	}
}

// barrier commits a barrier entry (raft.Barrier): once it returns nil, a
// quorum accepted an entry this node appended after the call began, so it
// led then. An error wraps ErrNotLeader.
func (s *RaftStore) barrier(ctx context.Context) error {
	f := s.raft.Barrier(0)
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // resolves when committed or when leadership ends
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: barrier not committed: %v", ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("metadata: barrier: %w", ctx.Err())
	}
}

// Leader returns the controller's node id, or -1 when unknown.
func (s *RaftStore) Leader() int32 {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return -1
	}
	n, err := strconv.ParseInt(string(id), 10, 32)
	if err != nil {
		return -1
	}
	return int32(n)
}

// Apply commits c through the controller and returns once this node's FSM
// has applied it, so a caller reads its own write. On a follower it is
// forwarded; it retries through leader changes until ctx ends.
func (s *RaftStore) Apply(ctx context.Context, c Command) error {
	if err := Validate(c); err != nil {
		return err
	}
	// One ID for every attempt: a retry after an ambiguous failure (the
	// leader lost mid-commit) is applied at most once.
	data, err := encodeCommandID(c, newRequestID())
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	for {
		var index uint64
		var err error
		if s.IsLeader() {
			index, err = s.ApplyLocal(ctx, data)
		} else if leader, fwd := s.Leader(), s.forwarder.Load(); leader >= 0 && fwd.Forwarder != nil {
			index, err = fwd.ForwardApply(ctx, leader, data)
		} else {
			err = ErrNotLeader
		}
		if err == nil {
			return s.fsm.WaitApplied(ctx, index)
		}
		if !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metadata: apply %s: %w (last error: %v)", c.kind(), ctx.Err(), err)
		case <-s.stop:
			return errors.New("metadata: store closed")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, ErrUnreachable)
}

// ErrUnreachable wraps transport failures of forwarded calls (retried).
var ErrUnreachable = errors.New("metadata: controller unreachable")

// ApplyLocal commits an encoded command on the leader, after resolving
// placement for proposals that leave it to the controller. It is the entry
// point of commands from other nodes: one that does not decode or fails
// Validate (before and after placement) is refused with ErrInvalidCommand
// and never reaches the Raft log. It returns the entry's index, or the
// command's precondition error.
func (s *RaftStore) ApplyLocal(ctx context.Context, data []byte) (uint64, error) {
	if !s.IsLeader() {
		return 0, ErrNotLeader
	}
	c, id, err := decodeCommandID(data)
	if err != nil {
		return 0, err
	}
	if err := Validate(c); err != nil {
		return 0, err
	}
	if c, err = s.ctrl.resolve(ctx, c); err != nil {
		return 0, err
	}
	if err := Validate(c); err != nil { // placement filled in
		return 0, err
	}
	if data, err = encodeCommandID(c, id); err != nil {
		return 0, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := s.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return 0, fmt.Errorf("metadata: commit %s: %w", c.kind(), leaderErr(err))
	}
	s.pushCommit() // the followers apply it now, not at the next tick
	if err, _ := f.Response().(error); err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

// Snapshot forces a Raft snapshot on this node.
func (s *RaftStore) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("metadata: snapshot: %w", err)
	}
	return nil
}

// Member is one server of the Raft configuration.
type Member struct {
	ID    int32  `json:"id"`
	Raft  string `json:"raft"`
	Voter bool   `json:"voter"`
}

// Members lists the Raft configuration.
func (s *RaftStore) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("metadata: raft configuration: %w", err)
	}
	var out []Member
	for _, srv := range f.Configuration().Servers {
		id, err := strconv.ParseInt(string(srv.ID), 10, 32)
		if err != nil {
			continue
		}
		out = append(out, Member{ID: int32(id), Raft: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddNode adds a voter (controller only).
func (s *RaftStore) AddNode(id int32, addr string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: raft address %q: %v", ErrInvalidCommand, addr, err)
	}
	if err := s.raft.AddVoter(serverID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("metadata: add node %d: %w", id, leaderErr(err))
	}
	s.log.Info().Int32("id", id).Str("raft", addr).Msg("node added")
	return nil
}

// RemoveNode removes a node that leads no partition from the Raft
// configuration and unregisters it (controller only). Removing the
// controller itself first hands leadership to another voter.
func (s *RaftStore) RemoveNode(ctx context.Context, id int32) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	if n := s.fsm.activeReplicas(id); n > 0 {
		return fmt.Errorf("%w: node %d still holds %d active segments", ErrPreconditionFailed, id, n)
	}
	if id == s.opts.NodeID {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("metadata: hand over leadership: %w", leaderErr(err))
		}
		return ErrNotLeader
	}
	// Refuse the node's heartbeats from now on, so none re-registers it
	// between leaving Raft and being unregistered.
	s.ctrl.setRemoving(id, true)
	defer s.ctrl.setRemoving(id, false)
	if err := s.raft.RemoveServer(serverID(id), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("metadata: remove node %d: %w", id, leaderErr(err))
	}
	s.ctrl.forget(id)
	if _, ok := s.fsm.Broker(id); ok {
		data, err := EncodeCommand(UnregisterBroker{ID: id})
		if err != nil {
			return err
		}
		if _, err := s.ApplyLocal(ctx, data); err != nil {
			return fmt.Errorf("metadata: node %d left raft but stays registered: %w", id, err)
		}
	}
	s.log.Info().Int32("id", id).Msg("node removed")
	return nil
}

// leaderErr maps raft's leadership errors to ErrNotLeader (retried by
// callers against the new controller).
func leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return err
}

// Close stops the controller and Raft.
func (s *RaftStore) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.stopCancel()
	s.wg.Wait()
	f := s.raft.Shutdown()
	// Nothing in flight to a peer holds the shutdown up: no pipeline
	// (raft_pipeline.go), no RPC (raft_stream.go).
	s.retry.pipes.closeAll()
	if s.stream != nil {
		_ = s.retry.Close() // stop accepting; closed again after the shutdown, as before
		s.stream.sever()
	}
	err := f.Error()
	s.closeAll()
	if err != nil {
		return fmt.Errorf("metadata: raft shutdown: %w", err)
	}
	return nil
}

// raftFSM adapts the FSM to raft.FSM.
type raftFSM RaftStore

func (r *raftFSM) Apply(l *raft.Log) any {
	c, id, err := decodeCommandID(l.Data)
	if err != nil {
		// Cannot happen for entries this code wrote; record and skip.
		r.log.Error().Err(err).Uint64("index", l.Index).Msg("undecodable raft entry")
		r.fsm.mu.Lock()
		r.fsm.applied = l.Index
		r.fsm.notify()
		r.fsm.mu.Unlock()
		return err
	}
	return r.fsm.applyAt(c, l.Index, id)
}

// newRequestID returns a random request ID for an Apply call.
func newRequestID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("metadata: request id: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// Snapshot persists the FSM's applied index (8 bytes, big endian) and then
// its JSON state, so a node restored from a snapshot knows which command
// entries it covers.
func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	r.fsm.mu.RLock()
	applied := r.fsm.applied
	r.fsm.mu.RUnlock()
	b, err := r.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return fsmSnapshot(append(binary.BigEndian.AppendUint64(nil, applied), b...)), nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("metadata: read snapshot: %w", err)
	}
	if len(b) < 8 {
		return fmt.Errorf("metadata: restore: snapshot of %d bytes", len(b))
	}
	return r.fsm.RestoreAt(b[8:], binary.BigEndian.Uint64(b[:8]))
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("metadata: write snapshot: %w", err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// zerologWriter feeds hclog's lines to zerolog.
type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	n := len(p)
	for n > 0 && p[n-1] == '\n' {
		n--
	}
	w.l.Warn().Str("component", "raft").Msg(string(p[:n]))
	return len(p), nil
}

// applyCommand commits a command on the leader.
func (s *RaftStore) applyCommand(ctx context.Context, c Command) (uint64, error) {
	data, err := EncodeCommand(c)
	if err != nil {
		return 0, err
	}
	return s.ApplyLocal(ctx, data)
}

// Heartbeat handles a broker's heartbeat on the controller.
func (s *RaftStore) Heartbeat(ctx context.Context, hb Heartbeat) (Lease, error) {
	return s.ctrl.heartbeat(ctx, hb)
}

// SetProber sets the ReplicaProber failover uses; call it at start-up.
func (s *RaftStore) SetProber(p ReplicaProber) { s.prober.Store(&proberBox{p}) }

type proberBox struct{ ReplicaProber }

// SetForwarder sets (or replaces) the Forwarder. It is safe to call while
// other goroutines Apply; an Apply in flight may still use the previous one.
func (s *RaftStore) SetForwarder(f Forwarder) { s.forwarder.Store(&forwarderBox{f}) }

type forwarderBox struct{ Forwarder }
