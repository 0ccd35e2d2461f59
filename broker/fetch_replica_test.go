package broker

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
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
