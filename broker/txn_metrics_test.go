package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/configs"
)

// TestMetricsTransactions: the partition leader's open transactions, the
// age of the oldest and the LSO lag (per topic, and per partition with
// metrics.per-partition), and the coordinator's transactional ids by
// state, with exact values at each step.
func TestMetricsTransactions(t *testing.T) {
	b := startBroker(t, t.TempDir(), txnTestConfig, func(c *configs.Config) { c.Metrics.PerPartition = true })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "txn-metrics"
	begin := time.Now()
	setupTxnLog(t, ctx, b, topic) // pid 300 open from 9; HW 11
	series := func(name string) string { return name + `{topic="` + topic + `"}` }
	part := func(name string) string { return name + `{partition="0",topic="` + topic + `"}` }
	m := gathered(t, b)
	for name, want := range map[string]float64{
		series("tusk_topic_open_transactions"): 1, series("tusk_topic_lso_lag"): 2,
		part("tusk_partition_open_transactions"): 1, part("tusk_partition_lso_lag"): 2,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	// The open transaction's first batch was stamped between begin and
	// now.
	age, bound := m[series("tusk_topic_oldest_open_transaction_seconds")], time.Since(begin).Seconds()+1
	if age <= 0 || age > bound || m[part("tusk_partition_oldest_open_transaction_seconds")] != age {
		t.Errorf("oldest open transaction %v s (partition %v); want in (0, %v]", age, m[part("tusk_partition_oldest_open_transaction_seconds")], bound)
	}
	// No coordinator is hosted here yet: no state series.
	for k := range m {
		if len(k) > len("tusk_transactions{") && k[:len("tusk_transactions{")] == "tusk_transactions{" {
			t.Errorf("series %s before any transaction coordinator", k)
		}
	}
	// Its COMMIT: nothing open, no lag.
	testLogAppend(t, b, topic, 0, nil, 300, 0, true)
	m = gathered(t, b)
	for _, name := range []string{series("tusk_topic_open_transactions"), series("tusk_topic_lso_lag"), series("tusk_topic_oldest_open_transaction_seconds"),
		part("tusk_partition_open_transactions"), part("tusk_partition_lso_lag"), part("tusk_partition_oldest_open_transaction_seconds")} {
		if got, ok := m[name]; !ok || got != 0 {
			t.Errorf("after the commit: %s = %v (present %v), want 0", name, got, ok)
		}
	}

	// The coordinator side: one id Ongoing, then CompleteCommit.
	if _, err := kadm.NewClient(newClient(t, b)).CreateTopic(ctx, 1, 1, nil, "txn-metrics-out"); err != nil {
		t.Fatal(err)
	}
	prod := newClient(t, b, kgo.TransactionalID("metrics-txn"), kgo.DefaultProduceTopic("txn-metrics-out"), kgo.TransactionTimeout(30*time.Second))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	states := func() map[string]float64 {
		out := map[string]float64{}
		for _, s := range []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"} {
			out[s] = gathered(t, b)[`tusk_transactions{state="`+s+`"}`]
		}
		return out
	}
	want := map[string]float64{"Empty": 0, "Ongoing": 1, "PrepareCommit": 0, "PrepareAbort": 0, "CompleteCommit": 0, "CompleteAbort": 0}
	if got := states(); !mapsEqual(got, want) {
		t.Fatalf("coordinator states during the transaction %v; want %v", got, want)
	}
	m = gathered(t, b)
	if got := m[`tusk_topic_open_transactions{topic="txn-metrics-out"}`]; got != 1 {
		t.Errorf("open transactions of the output topic %v; want 1", got)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	want["Ongoing"], want["CompleteCommit"] = 0, 1
	waitFor(t, func() bool { return mapsEqual(states(), want) }, "the id CompleteCommit in the metrics")
	checkDocumented(t, gathered(t, b))
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
