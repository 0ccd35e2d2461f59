package compat

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterTxnReadCommitted: a 3-node cluster, an RF=3 topic rolling
// every KiB (so transactions span segments and leaders). A franz-go
// transactional producer commits and aborts transactions in turn; a
// read_committed consumer reads exactly the committed records in order, a
// read_uncommitted one every record; while a transaction is open,
// ListOffsets under read_committed stops at its first offset. From
// halfway on, the partition's active segment leader is killed with SIGKILL
// (once it is not the transaction coordinator too, see below).
func TestClusterTxnReadCommitted(t *testing.T) {
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	done := cardSetup(t, "tusk 3-node cluster")
	c := startCluster(t, 3)
	done()
	card(t, "franz-go kgo transactional producer + read_committed consumer", "cluster: aborted transactions invisible to read_committed, across segment rolls")
	const topic = "txn-rc"
	seeds := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, seeds))
	ctx := ctxTimeout(t, 90*time.Second)
	createClusterTopic(t, c, adm, topic, map[string]*string{"segment.bytes": strp("1024")})
	prod := newClusterClient(t, seeds, kgo.TransactionalID("txn-rc-producer"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(30*time.Second))
	const txns, per = 16, 20
	var committed, all []string
	victim := int32(-1)
	for i := 0; i < txns; i++ {
		if i >= txns/2 && victim < 0 {
			// kill -9 the partition's active segment leader between
			// two transactions, from halfway on, once that leader is
			// not also the transaction coordinator (the segments roll
			// every KiB and their leadership wanders). Killing the
			// coordinator with it is another scenario: kgo's
			// AddPartitionsToTxn then keeps dialling the dead
			// coordinator until a metadata refresh drops its node, and a
			// lookup in flight at that moment fails the producer id
			// ("unknown broker", a client race, 1 run in 20 here),
			// which an application meets with an abort and a retry;
			// Kafka does not promise a transaction survives its
			// coordinator. The broker's side of it, FindCoordinator
			// during that failover, is TestFindCoordinatorWaitsForFailover.
			segs := c.segmentsVia(t, c.ids()[0], topic, 0)
			leader := segs[len(segs)-1].Leader
			coord := int32(-1)
			adm.FindTxnCoordinators(ctx, "txn-rc-producer").Each(func(d kadm.FindCoordinatorResponse) {
				if d.Err == nil {
					coord = d.NodeID
				}
			})
			if coord < 0 {
				t.Fatalf("txn %d: no transaction coordinator for txn-rc-producer", i)
			}
			if leader != coord {
				victim = leader
				c.node(victim).Kill9(t)
				t.Logf("before txn %d: killed node %d, leader of the active segment %d (the transaction coordinator is node %d)", i, victim, segs[len(segs)-1].ID, coord)
			}
		}
		if err := prod.BeginTransaction(); err != nil {
			t.Fatalf("txn %d: begin: %v", i, err)
		}
		for j := 0; j < per; j++ {
			v := fmt.Sprintf("txn%02d-%02d", i, j)
			all = append(all, v)
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("txn %d: produce: %v", i, err)
			}
		}
		commit := i%2 == 0
		if commit {
			committed = append(committed, all[len(all)-per:]...)
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("txn %d: end (commit %v): %v", i, commit, err)
		}
	}
	// An open transaction holds the last stable offset at its first
	// record.
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	openAt := int64(-1)
	waitFor(t, 10*time.Second, "the open transaction's offset", func() (bool, string) {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		o, _ := ends.Lookup(topic, 0)
		openAt = o.Offset - 1
		return o.Err == nil && openAt > 0, fmt.Sprintf("%+v", o)
	})
	cl := newClusterClient(t, seeds)
	lso := listCommittedEnd(t, ctx, cl, topic)
	if lso != openAt {
		t.Fatalf("read_committed end offset %d while a transaction is open at %d", lso, openAt)
	}
	read := func(n int, opts ...kgo.Opt) []string {
		t.Helper()
		cons := newClusterClient(t, seeds, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})}, opts...)...)
		var got []string
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for len(got) < n {
			fs := cons.PollFetches(rctx)
			if rctx.Err() != nil {
				t.Fatalf("read %d of %d records: %v", len(got), n, rctx.Err())
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		return got
	}
	if got := read(len(all) + 1); !slices.Equal(got, append(slices.Clone(all), "open")) {
		t.Fatalf("read_uncommitted: %d records %v..., want %d", len(got), got[:min(len(got), 5)], len(all)+1)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	committed = append(committed, "open")
	if got := read(len(committed), kgo.FetchIsolationLevel(kgo.ReadCommitted())); !slices.Equal(got, committed) {
		t.Fatalf("read_committed: %d records, want %d: got %v", len(got), len(committed), got)
	}
	if victim < 0 {
		t.Fatalf("the active segment's leader was the transaction coordinator at every transaction from %d on: nothing killed", txns/2)
	}
	via := c.ids()[0]
	if via == victim {
		via = c.ids()[1]
	}
	segs := c.segmentsVia(t, via, topic, 0)
	t.Logf("%d transactions over %d segments", txns+1, len(segs))
	if len(segs) < 3 {
		t.Fatalf("only %d segments: the transactions did not span rolls", len(segs))
	}
}

// listCommittedEnd is ListOffsets latest under read_committed of topic/0.
func listCommittedEnd(t *testing.T, ctx context.Context, cl *kgo.Client, topic string) int64 {
	t.Helper()
	req := kmsgListOffsets(topic, 1)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("ListOffsets read_committed: %s", errName(p.ErrorCode))
	}
	return p.Offset
}

// kmsgListOffsets is a ListOffsets of topic/0's latest offset at an
// isolation level.
func kmsgListOffsets(topic string, isolation int8) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}
