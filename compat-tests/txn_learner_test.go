package compat

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterTxnLearnerOpenTransaction: 4 nodes, an RF=3 topic rolling
// every KiB. A transaction opens at F and stays open; DeleteRecords moves
// the log start past it (the leader's last stable offset stays at the log
// start). A follower is killed; the spare node, which never held the
// partition, is made a learner, restarts its copy at the leader's log
// start and joins. Whenever it then leads the partition, its
// ListOffsets read_committed answer is the log start, as the first
// leader's was (it took the leader's open transactions when it began its
// copy), never its high watermark; after the commit it is the high
// watermark.
func TestClusterTxnLearnerOpenTransaction(t *testing.T) {
	const topic = "txn-learner"
	restore := scaled(t, 2*time.Second)
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 4, env: map[string]string{"TUSK_REPLICA_RESTORE": restore.String()}, setupNote: fmt.Sprintf(", replica.restore %v", restore),
		client: "franz-go kgo transactional producer + kill -9", scenario: "cluster: a learner that copies from the leader's log start knows the transaction open below it",
		topics: []faultTopic{{name: topic, partitions: 1, configs: map[string]*string{"segment.bytes": strp("1024")}}},
	})
	ctx := ctxTimeout(t, 120*time.Second)
	seeds := c.kafkaAddrs(c.ids()...)
	segs := c.txnSegmentsVia(t, c.ids()[0], topic)
	if len(segs) == 0 || len(segs[0].Replicas) != 3 {
		t.Fatalf("segments %v: want one with 3 replicas", segs)
	}
	first := segs[len(segs)-1]
	var spare, victim int32 = -1, -1
	for _, id := range c.ids() {
		switch {
		case !slices.Contains(first.Replicas, id):
			spare = id
		case id != first.Leader && victim < 0:
			victim = id
		}
	}
	plain := newClusterClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(60*time.Second))
	n := 0
	producePlain := func(count int) {
		t.Helper()
		for i := 0; i < count; i++ {
			if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("plain-%03d-%080d", n, 0))}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", n, err)
			}
			n++
		}
	}
	producePlain(10)
	prod := newClusterClient(t, seeds, kgo.TransactionalID("txn-learner-producer"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(5*time.Minute))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	r, err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("txn-open")}).First()
	if err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	open := r.Offset
	producePlain(10)
	start := open + 5
	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: start}}})
	if err != nil {
		t.Fatal(err)
	}
	if e := dr[topic][0]; e.Err != nil || e.LowWatermark != start {
		t.Fatalf("delete records before %d: %+v", start, e)
	}
	// The last stable offset as the node leading the partition answers it
	// (code != 0: that node does not lead it).
	lsoOf := func(id int32) (int64, int16) {
		resp, err := newRawClient(t, c.node(id).Kafka).do(kmsgListOffsets(topic, 1), 5, 5*time.Second)
		if err != nil {
			return -1, -1
		}
		p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
		return p.Offset, p.ErrorCode
	}
	leaderNow := func() int32 {
		s := c.txnSegmentsVia(t, spare, topic)
		if len(s) == 0 {
			return -1
		}
		return s[len(s)-1].Leader
	}
	waitFor(t, 10*time.Second, "the leader's LSO at the new log start", func() (bool, string) {
		lso, code := lsoOf(leaderNow())
		return code == 0 && lso == start, fmt.Sprintf("LSO %d, %s", lso, errName(code))
	})

	// The victim is a follower of the active segment now (rolls may have
	// moved the leadership since).
	now := c.txnSegmentsVia(t, spare, topic)
	active := now[len(now)-1]
	victim = -1
	for _, id := range active.Replicas {
		if id != active.Leader {
			victim = id
			break
		}
	}
	c.node(victim).Kill9(t)
	t.Logf("transaction open at %d, log start %d; killed follower %d, spare %d", open, start, victim, spare)
	producePlain(5)
	waitFor(t, 60*time.Second, "the spare node in the active replica set", func() (bool, string) {
		s := c.txnSegmentsVia(t, spare, topic)
		if len(s) == 0 {
			return false, "no metadata"
		}
		a := s[len(s)-1]
		return slices.Contains(a.Replicas, spare), fmt.Sprintf("active %v replicas %v", a, a.Replicas)
	})
	// Rotation hands the partition to the least loaded replica: the spare
	// leads soon. Each answer it gives as leader must be the log start.
	answered := 0
	for i := 0; answered < 3; i++ {
		if i == 200 {
			t.Fatalf("the spare node %d did not lead the partition in %d records", spare, i)
		}
		producePlain(1)
		lso, code := lsoOf(spare)
		if code != 0 {
			continue
		}
		answered++
		// Its log begins at the start: it restarted its copy there.
		er := kmsgListOffsets(topic, 0)
		er.Topics[0].Partitions[0].Timestamp = -2
		if resp, err := newRawClient(t, c.node(spare).Kafka).do(er, 5, 5*time.Second); err == nil {
			if p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]; p.ErrorCode == 0 && p.Offset != start {
				t.Fatalf("spare node %d leading: log start %d; want %d (a copy restarted at the leader's log start)", spare, p.Offset, start)
			}
		}
		if lso != start {
			t.Fatalf("spare node %d leading: ListOffsets read_committed %d; want %d (the transaction open at %d holds it at the log start)", spare, lso, start, open)
		}
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the LSO past the committed transaction", func() (bool, string) {
		lso, code := lsoOf(leaderNow())
		return code == 0 && lso > start, fmt.Sprintf("LSO %d, %s", lso, errName(code))
	})
}
