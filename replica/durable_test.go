package replica

import (
	"os"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// syncGate holds the syncs of segment files while closed is false
// (hold), so a test can keep a follower's appends from becoming durable.
type syncGate struct {
	mu      sync.Mutex
	held    bool
	release chan struct{} // closed by open
}

func newSyncGate() *syncGate { return &syncGate{release: make(chan struct{})} }

func (g *syncGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		g.held, g.release = true, make(chan struct{})
	}
}

func (g *syncGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.held = false
		close(g.release)
	}
}

func (g *syncGate) wait() {
	g.mu.Lock()
	held, ch := g.held, g.release
	g.mu.Unlock()
	if held {
		<-ch
	}
}

// gateFS is the OS file system whose files' syncs wait for a gate.
type gateFS struct {
	storage.FS
	g *syncGate
}

func (f gateFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gateFile{File: file, g: f.g}, nil
}

type gateFile struct {
	storage.File
	g *syncGate
}

func (f gateFile) Sync() error {
	f.g.wait()
	return f.File.Sync()
}

// gatedCluster is a two-node fsync=always cluster, node 1 leading and
// node 2 following, whose node 2 syncs through gate.
func gatedCluster(t *testing.T) (*cluster, *syncGate) {
	gate := newSyncGate()
	c := newClusterWith(t, 2, []int32{1, 2}, clusterOpts{fsyncAlways: true, fs: func(id int32) storage.FS {
		if id == 2 {
			return gateFS{FS: storage.OSFS(), g: gate}
		}
		return storage.OSFS()
	}})
	t.Cleanup(gate.open) // before the cluster's cleanup closes the engines
	if roles := c.reconcileAll(); roles[1] != RoleLeader || roles[2] != RoleFollower {
		t.Fatalf("roles %v", roles)
	}
	return c, gate
}

// checkAcks fails the test if a fetch of node 2 acknowledges (AckOffset)
// more than node 2's log holds durably when it is sent; if its fetch
// offset passes that in a fetch that opens a session (it may reach a
// leader that counts fetch offsets); and with ackIsFetch (such a leader
// throughout), if its fetch offset passes that in any fetch.
func checkAcks(t *testing.T, c *cluster, ackIsFetch bool) {
	c.tr.OnFetch(func(req *kmsg.FetchRequest) {
		if req.ReplicaID != 2 {
			return
		}
		l, ok := c.nodes[2].eng.Log(tp0)
		if !ok {
			return
		}
		durable := l.DurableOffset()
		for _, rt := range req.Topics {
			for i := range rt.Partitions {
				rp := &rt.Partitions[i]
				if ack := AckOffset(rp); ack > durable {
					t.Errorf("node 2 acknowledges %d with %d durable", ack, durable)
				}
				if (ackIsFetch || req.SessionEpoch <= 0) && rp.FetchOffset > durable {
					t.Errorf("node 2 fetches from %d with %d durable, from a leader that counts fetch offsets", rp.FetchOffset, durable)
				}
			}
		}
	})
	t.Cleanup(func() { c.tr.OnFetch(nil) })
}

// A follower fetches on while its sync runs: with its sync held it still
// copies the leader's next records, and the leader's high watermark stays
// at what the follower holds durably until the sync ends.
func TestFollowerFetchesOnDuringItsSync(t *testing.T) {
	c, gate := gatedCluster(t)
	checkAcks(t, c, false)
	c.produce(1, 0)
	c.eventually("HW 1", func() bool { return c.log(1).HighWatermark() == 1 && c.log(2).HighWatermark() == 1 })
	gate.hold()
	c.produce(1, 1)
	c.eventually("node 2 to copy record 1", func() bool { return c.log(2).LogEndOffset() == 2 })
	c.produce(1, 2)
	// The sync of record 1 is held, yet record 2 is copied too.
	c.eventually("node 2 to copy record 2 with its sync held", func() bool { return c.log(2).LogEndOffset() == 3 })
	if d := c.log(2).DurableOffset(); d != 1 {
		t.Fatalf("node 2 durable offset %d with its sync held, want 1", d)
	}
	if hw := c.log(1).HighWatermark(); hw != 1 {
		t.Fatalf("leader HW %d with node 2 holding 1 record durably, want 1", hw)
	}
	gate.open()
	c.eventually("HW 3 on both nodes", func() bool { return c.log(1).HighWatermark() == 3 && c.log(2).HighWatermark() == 3 })
	if !c.sameBytes(1, 2) {
		t.Fatal("node 2's bytes differ from the leader's")
	}
	// An idle follower reports a sync that ends after its last copy:
	// nothing more is produced, and the HW still reaches 4.
	gate.hold()
	c.produce(1, 3)
	c.eventually("node 2 to copy record 3", func() bool { return c.log(2).LogEndOffset() == 4 })
	if hw := c.log(1).HighWatermark(); hw != 3 {
		t.Fatalf("leader HW %d with node 2's sync of record 3 held, want 3", hw)
	}
	gate.open()
	c.eventually("HW 4 on both nodes", func() bool { return c.log(1).HighWatermark() == 4 && c.log(2).HighWatermark() == 4 })
}

// heldSync runs the scenario the tests below share: record 0 replicated,
// then node 2's syncs held while records 1 and 2 are produced (between
// them, meanwhile runs); the leader's HW must stay at 1 until the syncs
// are let go, and then both nodes hold records 0-2 alike.
func heldSync(t *testing.T, c *cluster, gate *syncGate, meanwhile func()) {
	t.Helper()
	c.produce(1, 0)
	c.eventually("HW 1", func() bool { return c.log(1).HighWatermark() == 1 && c.log(2).HighWatermark() == 1 })
	gate.hold()
	c.produce(1, 1)
	c.eventually("node 2 to copy record 1", func() bool { return c.log(2).LogEndOffset() == 2 })
	meanwhile()
	c.produce(1, 2)
	if hw := c.log(1).HighWatermark(); hw != 1 {
		t.Fatalf("leader HW %d with node 2's sync held, want 1", hw)
	}
	gate.open()
	c.eventually("HW 3 on both nodes", func() bool { return c.log(1).HighWatermark() == 3 && c.log(2).HighWatermark() == 3 })
	if !c.sameBytes(1, 2) {
		t.Fatal("node 2's bytes differ from the leader's")
	}
}

// A follower whose appends are not yet durable opens a new fetch session
// (the leader restarted, and may now be an older one) only once they are.
func TestFollowerNewSessionOnlyDurable(t *testing.T) {
	c, gate := gatedCluster(t)
	checkAcks(t, c, false)
	heldSync(t, c, gate, func() {
		refused := c.tr.SessionRefusals()
		c.tr.Connect(1, c.nodes[1].m) // node 1 "restarts": its fetch sessions are gone
		c.eventually("node 2's session to be refused", func() bool { return c.tr.SessionRefusals() > refused })
	})
}

// A leader that does not count durable offsets (an older node): the
// follower waits for its sync before fetching on, since its fetch offset
// is all that leader counts.
func TestFollowerWaitsForSyncWithOldLeader(t *testing.T) {
	c, gate := gatedCluster(t)
	c.tr.OldLeaders(true)
	checkAcks(t, c, true)
	heldSync(t, c, gate, func() {})
}

// AckOffset takes the lower of the fetch offset and a reported durable
// offset; without one, or with a malformed one, it is safe.
func TestAckOffset(t *testing.T) {
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset = 10
	if got := AckOffset(&rp); got != 10 {
		t.Fatalf("no durable offset: %d, want 10", got)
	}
	SetDurableOffset(&rp, 7)
	if got := AckOffset(&rp); got != 7 {
		t.Fatalf("durable 7: %d, want 7", got)
	}
	SetDurableOffset(&rp, 12)
	if got := AckOffset(&rp); got != 10 {
		t.Fatalf("durable 12 past the fetch offset: %d, want 10", got)
	}
	rp.UnknownTags.Set(durableTag, []byte{1, 2, 3})
	if got := AckOffset(&rp); got != 0 {
		t.Fatalf("malformed durable offset: %d, want 0", got)
	}
	// Through the wire: v12+ carries the tag, v11 cannot.
	SetDurableOffset(&rp, 4)
	for _, v := range []int16{11, 12, 14} {
		req := kmsg.NewPtrFetchRequest()
		req.Version = v
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "t"
		rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
		req.Topics = []kmsg.FetchRequestTopic{rt}
		back := kmsg.NewPtrFetchRequest()
		back.Version = v
		if err := back.ReadFrom(req.AppendTo(nil)); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		want := int64(4)
		if v < 12 {
			want = 10
		}
		if got := AckOffset(&back.Topics[0].Partitions[0]); got != want {
			t.Fatalf("v%d: %d after a round trip, want %d", v, got, want)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = v
		MarkDurableAware(resp)
		rback := kmsg.NewPtrFetchResponse()
		rback.Version = v
		if err := rback.ReadFrom(resp.AppendTo(nil)); err != nil {
			t.Fatalf("v%d answer: %v", v, err)
		}
		if got := durableAware(rback); got != (v >= 12) {
			t.Fatalf("v%d: durable-aware answer after a round trip: %v", v, got)
		}
	}
}

// A partition that moves to another leader's fetcher with appends not
// yet durable (the previous leader's fetcher copied them just before the
// move) is named there with its durable offset below its log end; once
// the sync ends, that fetcher names it again. The new fetcher's session
// is an incremental one the new leader counts durable offsets in (node 3
// already copies topic u from node 2), so nothing else makes it name the
// partition again: the new leader's high watermark used to stay at the
// old durable offset, and acks=all and the next roll with it
// (compat-tests TestCompactionRetentionAndDeleteRecords, 1 run in 14).
func TestFollowerNamesAgainWhatAnotherFetcherAppended(t *testing.T) {
	gate := newSyncGate()
	c := newClusterWith(t, 3, []int32{1, 2, 3}, clusterOpts{fsyncAlways: true,
		fs: func(id int32) storage.FS {
			if id == 3 {
				return gateFS{FS: storage.OSFS(), g: gate}
			}
			return storage.OSFS()
		},
		// An idle fetcher's long poll is FetchMaxWait, which a partition
		// new to it does not cancel: its next fetch stays incremental.
		cfg: func(cfg *Config) { cfg.LagTimeMax = 4 * cfg.FetchMaxWait }})
	t.Cleanup(gate.open)
	if err := c.meta.fsm.Apply(metadata.CreateTopic{Name: "u", ID: metadata.TopicID{2}, Partitions: 1,
		ReplicationFactor: 2, Assignments: [][]int32{{2, 3}}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		n.reconcile("u")
	}
	tpU := storage.TopicPartition{Topic: "u", Partition: 0}
	logU := func(id int32) *storage.Log {
		l, ok := c.nodes[id].eng.Log(tpU)
		if !ok {
			t.Fatalf("node %d has no log of u", id)
		}
		return l
	}
	// Node 3's session with node 2 is counted: u's high watermark
	// passes a record only once node 3 reported it durable.
	c.produceKVTo(2, tpU, "k", []byte("u0"))
	c.eventually("u's HW 1", func() bool { return logU(2).HighWatermark() == 1 && logU(3).HighWatermark() == 1 })

	c.produce(1, 0)
	c.eventually("t's HW 1", func() bool {
		return c.log(1).HighWatermark() == 1 && c.log(2).HighWatermark() == 1 && c.log(3).HighWatermark() == 1
	})
	gate.hold()
	c.produce(1, 1)
	c.eventually("record 1 on nodes 2 and 3", func() bool { return c.log(2).LogEndOffset() == 2 && c.log(3).LogEndOffset() == 2 })
	if d := c.log(3).DurableOffset(); d != 1 {
		t.Fatalf("node 3 durable offset %d with its sync held, want 1", d)
	}
	// Node 2 leads the next segment from offset 2; node 3's copy of
	// record 1 is not durable yet.
	a := c.active()
	if err := c.meta.fsm.Apply(metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch,
		EndOffset: 2, NextLeader: 2, NextReplicas: []int32{2, 3, 1}, SealedAtMs: c.clock.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if roles := c.reconcileAll(); roles[2] != RoleLeader || roles[1] != RoleFollower || roles[3] != RoleFollower {
		t.Fatalf("roles after the roll %v", roles)
	}
	lp := c.nodes[2].m.Leader(tp0)
	if lp == nil {
		t.Fatal("node 2 does not lead t")
	}
	// Node 3 names the partition to node 2 with durable offset 1.
	c.eventually("node 2 to count node 3 at 1", func() bool {
		lp.ackMu.Lock()
		defer lp.ackMu.Unlock()
		off, ok := lp.acked[3]
		return ok && off == 1
	})
	if hw := c.log(2).HighWatermark(); hw > 1 {
		t.Fatalf("node 2's HW %d with node 3's sync of record 1 held, want at most 1", hw)
	}
	gate.open()
	c.eventually("node 2's HW 2 once node 3's sync ended", func() bool { return c.log(2).HighWatermark() == 2 })
	c.produce(2, 2)
	c.eventually("HW 3 on every node", func() bool {
		return c.log(1).HighWatermark() == 3 && c.log(2).HighWatermark() == 3 && c.log(3).HighWatermark() == 3
	})
	if !c.sameBytes(2, 3) || !c.sameBytes(2, 1) {
		t.Fatal("the followers' bytes differ from the new leader's")
	}
}
