package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/configs"
)

// TestGroupTransactSession: franz-go's consume-transform-produce loop
// (GroupTransactSession) on one node copies every input record to the
// output exactly once under read_committed, one aborted round included.
func TestGroupTransactSession(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) { c.Groups.InitialRebalanceDelay = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 3000
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "eos-in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "eos-out"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		var rs []*kgo.Record
		for j := i; j < i+100; j++ {
			rs = append(rs, &kgo.Record{Topic: "eos-in", Partition: int32(j % 3), Value: []byte(fmt.Sprint(j))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b.KafkaAddr()), kgo.TransactionalID("eos-1"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumerGroup("eos-g"), kgo.ConsumeTopics("eos-in"),
		kgo.DefaultProduceTopic("eos-out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(8<<10), kgo.FetchMaxPartitionBytes(4<<10), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	rounds, aborted, abortedRecs := 0, 0, 0
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fs := sess.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("round %d: %v", rounds, ctx.Err())
		}
		if fs.NumRecords() == 0 {
			if rounds > 0 {
				break
			}
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, &kgo.Record{Topic: "eos-out", Partition: r.Partition, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil && !errors.Is(err, kgo.ErrAborting) {
					t.Errorf("produce: %v", err)
				}
			})
		})
		commit := kgo.TryCommit
		if rounds == 2 {
			// The records reach the partitions before the abort.
			if err := sess.Client().Flush(ctx); err != nil {
				t.Fatal(err)
			}
			commit = kgo.TryAbort
			aborted++
			abortedRecs = fs.NumRecords()
		}
		if _, err := sess.End(ctx, commit); err != nil {
			t.Fatalf("round %d: end: %v", rounds, err)
		}
		rounds++
	}
	seen := map[string]int{}
	got := consumeN(t, ctx, b, "eos-out", n, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	for _, r := range got {
		seen[r.Value]++
	}
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Fatalf("input %d appears %d times in the committed output (%d rounds, %d aborted)", i, seen[fmt.Sprint(i)], rounds, aborted)
		}
	}
	// read_uncommitted also sees what the aborted round produced.
	if aborted != 1 || abortedRecs == 0 {
		t.Fatalf("%d rounds, %d aborted with %d records: want one aborted round with records", rounds, aborted, abortedRecs)
	}
	all := consumeN(t, ctx, b, "eos-out", n+abortedRecs)
	if len(all) != n+abortedRecs {
		t.Fatalf("read_uncommitted: %d records, want %d", len(all), n+abortedRecs)
	}
}
