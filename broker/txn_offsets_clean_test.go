package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
)

// TestTxnOffsetsSurviveCleaning: on __consumer_offsets, a group's plain
// committed offset followed by an aborted transactional one (in/0), an
// aborted then a committed transactional one (in/1), and a transactional
// one followed by a plain commit before its COMMIT (in/2, the plain one
// wins as in Kafka) give the same committed offsets after the cleaner
// cleaned past all of them, to the live coordinator and to one replayed
// from the cleaned log after a restart; the aborted records are gone
// from the log and its last stable offset is its high watermark.
func TestTxnOffsetsSurviveCleaning(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *configs.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Groups.OffsetsSegmentBytes = 4096
		c.Groups.InitialRebalanceDelay = 0
		c.Cleaner.Backoff = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const group = "txn-clean"
	var b *Broker
	var cl *kgo.Client
	start := func() {
		b = startBroker(t, dir, cfg)
		cl = newClient(t, b)
		if _, err := kadm.NewClient(cl).FetchOffsets(ctx, group); err != nil {
			t.Fatal(err)
		}
	}
	start()
	for topic, n := range map[string]int32{"in": 3, "filler": 1} {
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, n, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	plainCommit := func(p int32, offset int64) {
		t.Helper()
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: "in", Partition: p, At: offset, LeaderEpoch: -1})
		if r, err := kadm.NewClient(cl).CommitOffsets(ctx, group, os); err != nil || r.Error() != nil {
			t.Fatalf("commit in/%d at %d: %v %v", p, offset, err, r.Error())
		}
	}
	txnCommit := func(pid int64, p int32, offset int64) {
		t.Helper()
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = "T", group, pid, 0
		req.Generation = -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "in"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("TxnOffsetCommit in/%d at %d: %+v, %v", p, offset, resp, err)
		}
	}
	var aborted []int64 // log offsets of the aborted transactional records
	marker := func(pid int64, commit bool) int64 {
		t.Helper()
		off := testLogAppend(t, b, offsetsTopic, 0, nil, pid, 0, commit)
		b.offsetsMarkerCommitted(0, pid, commit)
		return off
	}
	logEnd := func() int64 {
		l, _ := b.partitionLog(offsetsTopic, 0)
		return l.LogEndOffset()
	}
	want := map[int32]int64{0: 10, 1: 30, 2: 45}
	check := func(step string) {
		t.Helper()
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		for p, w := range want {
			if o, ok := offs.Lookup("in", p); !ok || o.At != w {
				t.Errorf("%s: in/%d committed %+v, want %d", step, p, o, w)
			}
		}
	}

	plainCommit(0, 10)
	aborted = append(aborted, logEnd())
	txnCommit(800, 0, 20)
	marker(800, false)
	plainCommit(1, 10)
	aborted = append(aborted, logEnd())
	txnCommit(801, 1, 20)
	marker(801, false)
	txnCommit(801, 1, 30)
	marker(801, true)
	txnCommit(802, 2, 40)
	plainCommit(2, 45)
	last := marker(802, true)
	check("before cleaning")

	// Other groups' commits roll the partition until a cleaning covers
	// every record above.
	cleanedTo := func() int64 {
		md, _ := b.store.FSM().Topic(offsetsTopic)
		if c := md.Parts[0].Cleaned; c != nil {
			return c.UpTo
		}
		return 0
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; cleanedTo() <= last; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no cleaning past offset %d (cleaned to %d, log end %d)", last, cleanedTo(), logEnd())
		}
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: "filler", Partition: 0, At: int64(i), LeaderEpoch: -1})
		if _, err := kadm.NewClient(cl).CommitOffsets(ctx, "filler", os); err != nil {
			t.Fatal(err)
		}
	}
	// The cleaned generation is swapped in on this (the only) node.
	l, _ := b.partitionLog(offsetsTopic, 0)
	md, _ := b.store.FSM().Topic(offsetsTopic)
	gen := md.Parts[0].Cleaned.Generation
	for l.CleanGeneration() < gen {
		if time.Now().After(deadline) {
			t.Fatalf("generation %d not swapped in (log at %d)", gen, l.CleanGeneration())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The aborted records are gone (their batches dropped, or kept empty
	// as their producer's last).
	for _, off := range aborted {
		res, err := l.Read(off, 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		_ = kafkaproto.SplitBatches(res.Data, func(_ []byte, h kafkaproto.BatchHeader) error {
			if h.BaseOffset == off && h.RecordCount != 0 {
				t.Errorf("aborted transactional offset commit at %d kept (%d records)", off, h.RecordCount)
			}
			return errStopSplit
		})
	}
	if lso, hw := l.LastStableOffset(), l.HighWatermark(); lso != hw {
		t.Errorf("LSO %d, HW %d after cleaning", lso, hw)
	}
	check("after cleaning")

	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	start()
	check("replayed from the cleaned log")
	l, _ = b.partitionLog(offsetsTopic, 0)
	if lso, hw := l.LastStableOffset(), l.HighWatermark(); lso != hw {
		t.Errorf("LSO %d, HW %d after a restart", lso, hw)
	}
}
