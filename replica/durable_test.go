package replica

import (
	"os"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

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
