package broker

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// fakeSessionRepl records Forgot calls.
type fakeSessionRepl struct {
	mu     sync.Mutex
	forgot []storage.TopicPartition
}

func (f *fakeSessionRepl) NewFetchRounds() *replica.FetchRounds { return &replica.FetchRounds{} }
func (f *fakeSessionRepl) FetchRound(*replica.FetchRounds)      {}
func (f *fakeSessionRepl) FetchedIn(storage.TopicPartition, int32, int64, int64, *replica.FetchRounds) (bool, bool) {
	return true, false
}
func (f *fakeSessionRepl) Forgot(tp storage.TopicPartition, _ int32, _ *replica.FetchRounds) {
	f.mu.Lock()
	f.forgot = append(f.forgot, tp)
	f.mu.Unlock()
}

// replicaFetchReq is a follower's Fetch v13 of partitions ps of topic id.
func replicaFetchReq(id, epoch int32, topic [16]byte, ps ...int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.SessionID, req.SessionEpoch = 13, 2, id, epoch
	if len(ps) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.TopicID = topic
		for _, p := range ps {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = p
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// A follower's session queues only what changed: every partition of the
// full fetch, then only those an incremental fetch names or whose watched
// log moved; a forgotten partition is released (its watch ended, Forgot
// called), and so is every partition of a session that ends.
func TestReplicaSessionQueuesOnlyNews(t *testing.T) {
	eng, err := storage.Open(storage.Options{Dir: t.TempDir(), Fsync: storage.FsyncNever, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	log0, err := eng.OpenLog(storage.TopicPartition{Topic: "t", Partition: 0}, storage.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	repl := &fakeSessionRepl{}
	c := newFetchSessions(4)
	c.repl = repl
	topic := [16]byte{7}
	now := time.Now()
	sess, full, code := c.begin(replicaFetchReq(0, 0, topic, 0, 1, 2), now)
	if sess == nil || !full || code != 0 || sess.rs == nil {
		t.Fatalf("begin: session %v, full %v, code %d", sess, full, code)
	}
	queued := func(what string, want ...int32) []*sessionPart {
		t.Helper()
		ps := sess.rs.take()
		var got []int32
		for _, p := range ps {
			got = append(got, p.key.partition)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: queued %v, want %v", what, got, want)
		}
		return ps
	}
	ps := queued("full fetch", 0, 1, 2)
	// What a round's visit does for partition 0: watch its log, attach.
	sess.mu.Lock()
	for _, p := range ps {
		if p.key.partition == 0 {
			p.tp, p.attached, p.log = storage.TopicPartition{Topic: "t", Partition: 0}, true, log0
			p.unwatch = log0.Watch(func() { sess.rs.mark(p, true) })
		}
	}
	sess.mu.Unlock()
	queued("idle")
	if _, _, code := c.begin(replicaFetchReq(sess.id, 1, topic, 2), now); code != 0 {
		t.Fatalf("incremental begin: code %d", code)
	}
	queued("incremental naming partition 2", 2)
	if _, _, code := c.begin(replicaFetchReq(sess.id, 2, topic), now); code != 0 {
		t.Fatalf("incremental begin: code %d", code)
	}
	queued("incremental naming nothing")
	select {
	case <-sess.rs.wake:
		t.Fatal("woken with nothing new")
	default:
	}
	batch := kafkaproto.AppendBatch(nil, 1, []kafkaproto.KV{{Key: []byte("k"), Value: []byte("v")}})
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log0.Append(batch, h, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.rs.wake:
	default:
		t.Fatal("an append to a watched log did not wake the session")
	}
	queued("appended to partition 0", 0)
	// Forgetting partition 0 ends its watch and attachment.
	forget := replicaFetchReq(sess.id, 3, topic)
	ft := kmsg.NewFetchRequestForgottenTopic()
	ft.TopicID, ft.Partitions = topic, []int32{0}
	forget.ForgottenTopics = append(forget.ForgottenTopics, ft)
	if _, _, code := c.begin(forget, now); code != 0 {
		t.Fatalf("forget: code %d", code)
	}
	if !slices.Equal(repl.forgot, []storage.TopicPartition{{Topic: "t", Partition: 0}}) {
		t.Fatalf("Forgot calls %v, want t-0", repl.forgot)
	}
	if _, err := log0.Append(batch, h, 0); err != nil {
		t.Fatal(err)
	}
	queued("appended to the forgotten partition")
	// A consumer cannot continue a follower's session.
	cons := replicaFetchReq(sess.id, 4, topic)
	cons.ReplicaID = -1
	if _, _, code := c.begin(cons, now); code == 0 {
		t.Fatal("a consumer's fetch continued a follower's session")
	}
	// The session ends (a sessionless fetch naming it): its partitions
	// are released; none was attached any more.
	c.begin(replicaFetchReq(sess.id, -1, topic), now)
	if c.len() != 0 || len(repl.forgot) != 1 || !sess.rs.closed {
		t.Fatalf("after the end: %d sessions, Forgot calls %v, closed %v", c.len(), repl.forgot, sess.rs.closed)
	}
}

// A follower's read checks, each time, that this node still leads the
// partition's segment at the epoch it was looked up with (fetchPart.epoch):
// a long poll that outlives a roll answers FENCED_LEADER_EPOCH, not what
// the log holds since, as Kafka re-checks leadership when a delayed fetch
// completes. A read at the new epoch goes on.
func TestFollowerReadChecksLeadership(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b)
	if code, msg := createTopicWith(t, cl, "t", nil); code != 0 {
		t.Fatalf("create t: %v %s", kerr.ErrorForCode(code), msg)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	l, code, epoch := b.partitionLogEpoch("t", 0)
	if code != 0 {
		t.Fatalf("partitionLogEpoch: code %d", code)
	}
	read := func(epoch int32, wantMoved bool) (kmsg.FetchResponseTopicPartition, []int64) {
		t.Helper()
		sp := kmsg.NewFetchResponseTopicPartition()
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes = 1 << 20
		parts := []fetchPart{{resp: &sp, log: l, tp: b.tp("t", 0), offset: 0, max: 1 << 20, replica: true, epoch: epoch, sealedEnd: -1, sealedStable: -1}}
		if _, moved := b.readFetch(req, parts, false); moved != wantMoved {
			t.Fatalf("read at epoch %d: moved %v, want %v (the poll answers at once only when leadership moved)", epoch, moved, wantMoved)
		}
		return sp, batchLasts(t, sp.RecordBatches)
	}
	if sp, lasts := read(epoch, false); sp.ErrorCode != 0 || sp.HighWatermark != 1 || !slices.Equal(lasts, []int64{0}) {
		t.Fatalf("read at epoch %d: code %d HW %d batches ending %v; want 0, HW 1, [0]", epoch, sp.ErrorCode, sp.HighWatermark, lasts)
	}
	// Roll the segment to this node again: a new epoch.
	topic, ok := b.store.FSM().Topic("t")
	if !ok {
		t.Fatal("topic t not in the metadata")
	}
	a := topic.Parts[0].Active()
	if err := b.store.Apply(ctx, metadata.RollSegment{Topic: "t", ID: topic.ID, Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch,
		EndOffset: 1, NextLeader: b.cfg.NodeID, NextReplicas: []int32{b.cfg.NodeID}, SealedAtMs: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	_, _, next := b.partitionLogEpoch("t", 0)
	if next == epoch {
		t.Fatalf("epoch %d after the roll, want a new one", next)
	}
	if sp, lasts := read(epoch, true); sp.ErrorCode != kerr.FencedLeaderEpoch.Code || sp.HighWatermark != -1 || len(lasts) != 0 {
		t.Fatalf("read at the old epoch %d: code %d HW %d batches ending %v; want FENCED_LEADER_EPOCH, HW -1, none", epoch, sp.ErrorCode, sp.HighWatermark, lasts)
	}
	if sp, lasts := read(next, false); sp.ErrorCode != 0 || sp.HighWatermark != 1 || !slices.Equal(lasts, []int64{0}) {
		t.Fatalf("read at the new epoch %d: code %d HW %d batches ending %v; want 0, HW 1, [0]", next, sp.ErrorCode, sp.HighWatermark, lasts)
	}
	// A partition that is gone.
	if code := b.stillLeads(b.tp("t", 1), next); code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("stillLeads of a partition t does not have: %d", code)
	}
}
