package compat

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readCompactedIso is readCompacted with an isolation level: every
// record of partition 0 of topic up to the sentinel, key → record, a key
// read twice an error.
func readCompactedIso(seeds []string, topic string, sentinel int64, iso kgo.IsolationLevel) (map[string]compactRec, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.FetchIsolationLevel(iso))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]compactRec{}
	var dup error
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("sentinel at %d not reached: %w", sentinel, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return got, ferr
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset > sentinel {
				return
			}
			if prev, ok := got[string(r.Key)]; ok && dup == nil {
				dup = fmt.Errorf("key %s read twice (offsets %d and %d)", r.Key, prev.off, r.Offset)
			}
			got[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
			done = done || r.Offset == sentinel
		})
		if done {
			return got, dup
		}
	}
}

// TestCompactionTransactions: a compacted topic written by a kgo
// transactional producer, committed and aborted transactions in turn on
// overlapping keys (the last one aborted, and keys written only by
// aborted transactions). Once the cleaner ran over the whole log, a
// read_uncommitted consumer and a read_committed one both read exactly
// the last committed value of every key at the offset it was written
// at, nothing aborted, and the partition's last stable offset equals
// its high watermark; the same after a restart.
func TestCompactionTransactions(t *testing.T) {
	done := cardSetup(t, "tusk single node, cleaner.backoff 200ms")
	dir := t.TempDir()
	n := startTusk(t, withDataDir(dir), withFlag("cleaner-backoff", "200ms"))
	done()
	card(t, "franz-go kgo transactional producer", "compaction: aborted transactions removed, last committed value per key, LSO = HW")
	const topic = "compacted-txn"
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, 1, compactTopicConfigs())
	seeds := []string{n.Kafka}
	prod := newClusterClient(t, seeds, kgo.TransactionalID("compact-txn"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(30*time.Second), kgo.ProducerBatchMaxBytes(64<<10))
	ctx := ctxTimeout(t, 120*time.Second)
	const rounds, keys = 12, 40
	pad := strings.Repeat("x", 2000)
	want := map[string]compactRec{}
	txn := func(commit bool, recs []*kgo.Record) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit %v): %v", commit, err)
		}
		if commit {
			for _, r := range recs {
				want[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
			}
		}
	}
	for r := range rounds {
		commit := r%3 != 1 && r != rounds-2
		var recs []*kgo.Record
		for k := range keys {
			if (r+k)%4 == 0 {
				continue // keys overlap, not all in every round
			}
			recs = append(recs, &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "k%02d", k), Value: fmt.Appendf(nil, "k%02d-r%02d-commit=%v-%s", k, r, commit, pad)})
		}
		if !commit {
			recs = append(recs, &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "aborted-only-%02d", r), Value: []byte("aborted")})
		}
		txn(commit, recs)
	}
	sentinel := &kgo.Record{Partition: 0, Key: []byte("zz-sentinel"), Value: []byte("end")}
	txn(true, []*kgo.Record{sentinel})
	// The last transaction: aborted, over keys that have committed values.
	var last []*kgo.Record
	for k := range 5 {
		last = append(last, &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "k%02d", k), Value: []byte("aborted last")})
	}
	txn(false, last)
	end := last[len(last)-1].Offset + 2 // its ABORT marker, then the end

	check := func(step string) {
		t.Helper()
		waitFor(t, compactWait, step+": read_uncommitted reads exactly the last committed value of every key", func() (bool, string) {
			got, err := readCompactedIso(seeds, topic, sentinel.Offset, kgo.ReadUncommitted())
			if err != nil {
				return false, err.Error()
			}
			return maps.Equal(got, want), fmt.Sprintf("%d keys read, %d wanted", len(got), len(want))
		})
		got, err := readCompactedIso(seeds, topic, sentinel.Offset, kgo.ReadCommitted())
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: read_committed read %d keys (want %d), %v", step, len(got), len(want), err)
		}
		adm, _ := newAdm(t, n)
		hw, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := hw.Lookup(topic, 0)
		l, _ := lso.Lookup(topic, 0)
		if h.Offset != end || l.Offset != end || h.Err != nil || l.Err != nil {
			t.Fatalf("%s: high watermark %d (%v), last stable offset %d (%v); want both %d", step, h.Offset, h.Err, l.Offset, l.Err, end)
		}
	}
	check("after cleaning")
	// The whole log is cleaned when the last transaction's aborted
	// records are gone too: read past the sentinel.
	waitFor(t, compactWait, "the aborted last transaction removed", func() (bool, string) {
		if sealed := sealedEndViaConsole(t, n, topic); sealed < end {
			return false, fmt.Sprintf("sealed up to %d, the log ends at %d", sealed, end)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(sentinel.Offset + 1)}}),
			kgo.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return false, err.Error()
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		fs := cl.PollFetches(pctx)
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded {
				ferr = err
			}
		})
		return ferr == nil && len(fs.Records()) == 0, fmt.Sprintf("%d records after the sentinel, %v", len(fs.Records()), ferr)
	})

	n.Stop(t)
	n = startTusk(t, withDataDir(dir), withFlag("cleaner-backoff", "200ms"), withFlag("kafka-listen", n.Kafka))
	check("after a restart")
}
