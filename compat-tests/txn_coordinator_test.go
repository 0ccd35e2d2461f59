package compat

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterTxnCoordinatorFailover: a kgo transactional producer commits
// a transaction over three partitions of an RF=3 topic; right after its
// EndTxn is answered, the transaction coordinator (the leader of the
// id's __transaction_state partition) is killed with SIGKILL. Another
// node loads the coordinator from the replicated log and completes the
// transaction (DescribeTransactions shows CompleteCommit) within 30 s; a
// read_committed consumer then reads every record of the transaction
// exactly once, and a new producer with the same transactional id
// commits a second transaction through the new coordinator.
func TestClusterTxnCoordinatorFailover(t *testing.T) {
	const topic, T = "txfo", "txfo-producer"
	parts := []int32{0, 1, 2}
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo transactional producer + kill -9", scenario: "cluster: transaction coordinator killed after EndTxn, the new one completes the commit",
		env:    map[string]string{"TUSK_TRANSACTIONS_PARTITIONS": "5"},
		topics: []faultTopic{{name: topic, partitions: int32(len(parts))}},
	})
	all := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 120*time.Second)

	commit := func(seeds []string, tag string, n int) []string {
		cl := newClusterClient(t, seeds, kgo.TransactionalID(T), kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
		defer cl.Close()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var values []string
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("%s-%03d", tag, i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: parts[i%len(parts)], Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
			values = append(values, v)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatalf("commit %s: %v", tag, err)
		}
		return values
	}
	coordinator := func(a *kadm.Client) (int32, error) {
		var node int32 = -1
		var err error
		a.FindTxnCoordinators(ctx, T).Each(func(d kadm.FindCoordinatorResponse) { node, err = d.NodeID, d.Err })
		return node, err
	}

	first := commit(all, "first", 60)
	coord, err := coordinator(adm)
	if err != nil || coord < 0 {
		t.Fatalf("FindCoordinator key type 1: node %d, %v", coord, err)
	}
	c.node(coord).Kill9(t)
	killed := time.Now()
	t.Logf("killed the transaction coordinator, node %d", coord)
	var live []int32
	for _, id := range c.ids() {
		if id != coord {
			live = append(live, id)
		}
	}
	liveAddrs := c.kafkaAddrs(live...)
	ladm := kadm.NewClient(newClusterClient(t, liveAddrs))
	waitFor(t, 30*time.Second, "the new coordinator completes the commit", func() (bool, string) {
		now, err := coordinator(ladm)
		if err != nil || now < 0 || now == coord {
			return false, fmt.Sprintf("coordinator %d (%v)", now, err)
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		ds, err := ladm.DescribeTransactions(dctx, T)
		if err != nil {
			return false, err.Error()
		}
		d, ok := ds[T]
		if !ok || d.Err != nil {
			return false, fmt.Sprintf("describe: %v %v", ok, d.Err)
		}
		return d.State == "CompleteCommit", "state " + d.State
	})
	t.Logf("measure: the new coordinator completed the commit %v after the kill", time.Since(killed).Round(10*time.Millisecond))

	readCommitted := func(want []string) {
		t.Helper()
		cl := newClusterClient(t, liveAddrs, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
		defer cl.Close()
		var got []string
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for len(got) < len(want) && rctx.Err() == nil {
			fs := cl.PollFetches(rctx)
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		defer qcancel()
		cl.PollFetches(qctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		sort.Strings(got)
		w := append([]string(nil), want...)
		sort.Strings(w)
		if len(got) != len(w) {
			t.Fatalf("read_committed read %d records, want %d: %v", len(got), len(w), got)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("read_committed record %d: %q, want %q", i, got[i], w[i])
			}
		}
	}
	readCommitted(first)

	second := commit(liveAddrs, "second", 30)
	readCommitted(append(first, second...))
}
