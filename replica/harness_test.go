package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// The harness runs several nodes' Managers in one process over one
// metadata FSM (a Raft group that never lags), an InmemTransport, real
// storage engines in t.TempDir(), per-node fake leases and one fake clock.

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fakeLease struct{ valid atomic.Bool }

func (l *fakeLease) Valid() bool { return l.valid.Load() }
func (l *fakeLease) Wait(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l.valid.Load() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return l.valid.Load()
}

// testMeta is the shared metadata; hook, when set, runs instead of a
// plain apply (tests inject ambiguous or conflicting commits).
type testMeta struct {
	fsm *metadata.FSM

	mu   sync.Mutex
	hook func(c metadata.Command) error
}

func (m *testMeta) Broker(id int32) (metadata.Broker, bool) { return m.fsm.Broker(id) }
func (m *testMeta) Topic(name string) (metadata.Topic, bool) {
	return m.fsm.Topic(name)
}
func (m *testMeta) Partition(topic string, p int32) (metadata.Topic, metadata.Partition, bool) {
	return m.fsm.Partition(topic, p)
}
func (m *testMeta) TopicConfigValue(name, key string) (string, bool, bool, bool) {
	return m.fsm.TopicConfigValue(name, key)
}
func (m *testMeta) Apply(_ context.Context, c metadata.Command) error {
	m.mu.Lock()
	hook := m.hook
	m.mu.Unlock()
	if hook != nil {
		return hook(c)
	}
	return m.fsm.Apply(c)
}

func (m *testMeta) setHook(h func(c metadata.Command) error) {
	m.mu.Lock()
	m.hook = h
	m.mu.Unlock()
}

type testNode struct {
	id    int32
	dir   string // the storage engine's directory
	eng   *storage.Engine
	m     *Manager
	lease *fakeLease
	c     *cluster
	kicks atomic.Int64
}

// testNode is the Manager's Host.
func (n *testNode) Log(tp storage.TopicPartition) (*storage.Log, bool) { return n.eng.Log(tp) }
func (n *testNode) EnsureLog(t metadata.Topic, p int32, replicated bool) (*storage.Log, error) {
	tp := storage.TopicPartition{Topic: t.Name, Partition: p}
	cfg := storage.LogConfig{Replicated: replicated, SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1}
	if l, ok := n.eng.Log(tp); ok {
		l.SetConfig(cfg)
		return l, nil
	}
	l, err := n.eng.OpenLog(tp, cfg)
	if err != nil {
		return nil, err
	}
	return l, n.eng.SetLogTopicID(tp, t.ID)
}
func (n *testNode) LogTopicID(tp storage.TopicPartition) (metadata.TopicID, bool, error) {
	return n.eng.LogTopicID(tp)
}
func (n *testNode) DeleteLog(tp storage.TopicPartition) error { return n.eng.DeleteLog(tp) }
func (n *testNode) MinInsync(metadata.Topic) int              { return 1 }
func (n *testNode) CaughtUp() bool                            { return true }
func (n *testNode) Kick()                                     { n.kicks.Add(1) }

// RestartLearner does what the broker's does: the log, which ends below
// start, is replaced by an empty one starting there with producers'
// open transactions, and the node follows again.
func (n *testNode) RestartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64, producers []fencing.ProducerEntry) {
	n.m.Unfollow(tp)
	if err := n.eng.DeleteLog(tp); err != nil {
		n.c.t.Errorf("node %d: restart learner: %v", n.id, err)
		return
	}
	cfg := storage.LogConfig{Replicated: true, SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1}
	if _, err := n.eng.CreateLogAtWithProducers(tp, cfg, start, producers); err != nil {
		n.c.t.Errorf("node %d: restart learner: %v", n.id, err)
		return
	}
	if err := n.eng.SetLogTopicID(tp, id); err != nil {
		n.c.t.Errorf("node %d: restart learner: %v", n.id, err)
		return
	}
	if _, err := n.m.Reconcile(tp.Topic, tp.Partition, true); err != nil {
		n.c.t.Errorf("node %d: restart learner: reconcile: %v", n.id, err)
	}
}

// Compaction reads cleanup.policy from the topic's overrides (default
// delete); the other settings are the tests' fixed values.
func (n *testNode) Compaction(topic string) (CompactionConfig, bool) {
	v, _, _, ok := n.c.meta.fsm.TopicConfigValue(topic, "cleanup.policy")
	return CompactionConfig{Compact: strings.Contains(v, "compact"), Delete: v == "" || strings.Contains(v, "delete"),
		MinDirtyRatio: 0.5, MaxLagMs: math.MaxInt64, DeleteRetentionMs: n.c.deleteRetentionMs}, ok
}

func (n *testNode) reconcile(topic string) map[int32]Role {
	t, ok := n.c.meta.fsm.Topic(topic)
	if !ok {
		n.c.t.Fatalf("node %d: no topic %s", n.id, topic)
	}
	out := map[int32]Role{}
	for p := int32(0); p < t.Partitions; p++ {
		r, err := n.m.Reconcile(t.Name, p, true)
		if err != nil {
			n.c.t.Errorf("node %d: reconcile %s-%d: %v", n.id, topic, p, err)
		}
		out[p] = r
	}
	return out
}

type cluster struct {
	t     *testing.T
	meta  *testMeta
	tr    *InmemTransport
	clock *fakeClock
	nodes map[int32]*testNode
	// deleteRetentionMs is every topic's delete.retention.ms (Compaction).
	deleteRetentionMs int64
}

func testConfig(id int32, clock Clock) Config {
	cfg := DefaultConfig(id)
	cfg.LagTimeMax = 10 * time.Second // on the fake clock
	cfg.LeaseWait = 20 * time.Millisecond
	cfg.ParkWait = 50 * time.Millisecond
	cfg.RollWait = 5 * time.Second
	cfg.FetchMaxWait = 20 * time.Millisecond
	cfg.Clock = clock
	cfg.Cleaner.Backoff = 0 // tests drive the leader's cleaning checks (maybeClean)
	cfg.Cleaner.SpillDir = ""
	return cfg
}

// newCluster starts n nodes (ids 1..n) and creates topic "t" with one
// partition on replicas.
func newCluster(t *testing.T, n int, replicas []int32) *cluster {
	t.Helper()
	return newClusterWith(t, n, replicas, clusterOpts{})
}

// clusterOpts varies newClusterWith's nodes.
type clusterOpts struct {
	fsyncAlways bool                   // storage.fsync=always on every node
	fs          func(int32) storage.FS // each node's file system (nil: the OS's)
	cfg         func(*Config)          // changes every node's replica config (nil: none)
}

// newClusterWith is newCluster with opts.
func newClusterWith(t *testing.T, n int, replicas []int32, opts clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, meta: &testMeta{fsm: metadata.NewFSM()}, tr: NewInmemTransport(),
		clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, nodes: map[int32]*testNode{}}
	for id := int32(1); id <= int32(n); id++ {
		if err := c.meta.fsm.Apply(metadata.RegisterBroker{Broker: metadata.Broker{ID: id, Kafka: fmt.Sprintf("127.0.0.1:%d", 9000+id)}}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		sopts := storage.Options{Dir: dir, Fsync: storage.FsyncNever, Logger: zerolog.Nop()}
		if opts.fsyncAlways {
			sopts.Fsync = storage.FsyncAlways
		}
		if opts.fs != nil {
			sopts.FS = opts.fs(id)
		}
		eng, err := storage.Open(sopts)
		if err != nil {
			t.Fatal(err)
		}
		node := &testNode{id: id, dir: dir, eng: eng, lease: &fakeLease{}, c: c}
		node.lease.valid.Store(true)
		cfg := testConfig(id, c.clock)
		cfg.FsyncAlways = opts.fsyncAlways
		if opts.cfg != nil {
			opts.cfg(&cfg)
		}
		node.m = New(cfg, c.meta, node.lease, c.tr, node, zerolog.Nop())
		c.tr.Connect(id, node.m)
		c.nodes[id] = node
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.m.Close()
			if err := n.eng.Close(); err != nil {
				t.Errorf("node %d: close engine: %v", n.id, err)
			}
		}
	})
	err := c.meta.fsm.Apply(metadata.CreateTopic{Name: "t", ID: metadata.TopicID{1}, Partitions: 1,
		ReplicationFactor: int16(len(replicas)), Assignments: [][]int32{replicas}})
	if err != nil {
		t.Fatal(err)
	}
	c.reconcileAll()
	return c
}

var tp0 = storage.TopicPartition{Topic: "t", Partition: 0}

func (c *cluster) reconcileAll() map[int32]Role {
	roles := map[int32]Role{}
	for id, n := range c.nodes {
		roles[id] = n.reconcile("t")[0]
	}
	return roles
}

func (c *cluster) log(id int32) *storage.Log {
	l, ok := c.nodes[id].eng.Log(tp0)
	if !ok {
		c.t.Fatalf("node %d has no log", id)
	}
	return l
}

func (c *cluster) active() metadata.Segment {
	t, _ := c.meta.fsm.Topic("t")
	return t.Parts[0].Active()
}

// produce appends one batch of record "v<i>" under node id's leadership
// and returns its offset.
func (c *cluster) produce(id int32, i int) (*Leadership, int64) {
	c.t.Helper()
	lp := c.nodes[id].m.Leader(tp0)
	if lp == nil {
		c.t.Fatalf("node %d does not lead", id)
	}
	batch := kafkaproto.AppendBatch(nil, 1000+int64(i), []kafkaproto.KV{{Key: []byte("k"), Value: []byte(fmt.Sprintf("v%d", i))}})
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		c.t.Fatal(err)
	}
	epoch, release, err := lp.Begin(context.Background())
	if err != nil {
		c.t.Fatalf("node %d: begin: %v", id, err)
	}
	res, err := lp.log.Append(batch, h, epoch)
	if err != nil {
		release(0)
		c.t.Fatalf("node %d: append: %v", id, err)
	}
	release(int64(len(batch)))
	return lp, res.LastOffset
}

// eventually polls cond until it holds or 10 s pass.
func (c *cluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// bytesOf reads a log's [0, LEO) uncommitted.
func (c *cluster) bytesOf(id int32) []byte {
	l := c.log(id)
	var out []byte
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		res, err := l.ReadUncommitted(off, 1<<20, true)
		if err != nil {
			c.t.Fatalf("node %d: read at %d: %v", id, off, err)
		}
		if len(res.Data) == 0 {
			break
		}
		out = append(out, res.Data...)
		var last int64
		if err := kafkaproto.SplitBatches(res.Data, func(_ []byte, h kafkaproto.BatchHeader) error {
			last = h.BaseOffset + int64(h.LastOffsetDelta)
			return nil
		}); err != nil {
			c.t.Fatal(err)
		}
		off = last + 1
	}
	return out
}

func (c *cluster) sameBytes(a, b int32) bool { return bytes.Equal(c.bytesOf(a), c.bytesOf(b)) }

var _ = errors.Is
