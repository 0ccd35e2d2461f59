package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tuskdb/tusk/fencing"
)

// The learner's question to the leader (replicaTransport.OpenTransactions,
// a DescribeProducers over the internal listener) lists exactly the
// producers with an open transaction: here producer 300's from 9
// (setupTxnLog: 100 committed, 200 aborted).
func TestReplicaTransportOpenTransactions(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-learner"
	setupTxnLog(t, ctx, b, topic)
	got, err := replicaTransport{b}.OpenTransactions(ctx, b.cfg.NodeID, b.tp(topic, 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].LastTimestamp = 0 // the batch's time
	}
	want := []fencing.ProducerEntry{{ProducerID: 300, Epoch: 0, TxnFirstOffset: 9, CoordinatorEpoch: -1}}
	if !slices.EqualFunc(got, want, func(a, b fencing.ProducerEntry) bool {
		return a.ProducerID == b.ProducerID && a.Epoch == b.Epoch && a.TxnFirstOffset == b.TxnFirstOffset && a.CoordinatorEpoch == b.CoordinatorEpoch && len(a.Batches) == 0
	}) {
		t.Fatalf("open transactions %+v; want %+v", got, want)
	}
	// A partition the leader does not have is an error.
	if _, err := (replicaTransport{b}).OpenTransactions(ctx, b.cfg.NodeID, b.tp(topic, 5)); err == nil {
		t.Fatal("open transactions of a partition that does not exist: no error")
	}
}
