package compat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterShareConsumerKilled: 3 nodes, a partition of RF 3 with
// 256 KiB segments (1 KiB uncompressed records: the produce rolls it, and
// each roll moves the active segment's leader), share.auto-offset-reset
// earliest and 3 s locks. kgo share consumer a (strict, 50 records per
// fetch, no prefetch) polls one batch, offsets 0-49, and never
// acknowledges it; then its connections are cut as a killed process's
// are (no ShareFetch with epoch -1, no leave heartbeat) and the client is
// abandoned until the test ends. Consumer b, in the same group, gets
// exactly 0-49 again with delivery count 2 and every other record once
// with count 1, accepts everything, and the share-partition start offset
// reaches the end. The broker releases a session's records when its
// connection closes (docs/groups-next.md, "Serving share-partitions"),
// so a's records must be back within the lock duration (plus a margin)
// of the cut; the log says whether they came back before a's lock ran
// out (the connection's close) or after (lock expiry).
func TestClusterShareConsumerKilled(t *testing.T) {
	skipClusterInKfakeMode(t)
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	const lock = 3 * time.Second
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("share-auto-offset-reset", "earliest"), withFlag("share-record-lock-duration", lock.String())}
	})
	const topic, group, total, batch = "share-kill", "sg-kill", 600, 50
	seeds := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, seeds))
	resp, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), 1, 3, map[string]*string{"segment.bytes": strp("262144")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	prod := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for next := int64(0); next < total; next += 100 {
		produceShareValues(t, prod, topic, next, 100)
	}
	segs := c.segmentsVia(t, c.ids()[0], topic, 0)
	leaders := map[int32]bool{}
	for _, s := range segs {
		leaders[s.Leader] = true
	}
	if len(segs) < 2 || len(leaders) < 2 {
		t.Fatalf("%d records of 1 KiB made %d segments led by %d nodes, want a roll that moved the leader", total, len(segs), len(leaders))
	}

	checkValue := func(r *kgo.Record) error {
		if want := fmt.Sprintf("v%d", r.Offset); strings.TrimRight(string(r.Value), ".") != want {
			return fmt.Errorf("offset %d value %.10q, want %s", r.Offset, r.Value, want)
		}
		return nil
	}

	// a: one poll, never acknowledged.
	d := &killableDialer{}
	a := newClusterClient(t, seeds, kgo.Dialer(d.dial), kgo.ClientID("share-kill-a"), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
		kgo.ShareMaxRecords(batch), kgo.ShareMaxRecordsStrict(), kgo.FetchMaxWait(200*time.Millisecond))
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	fs := a.PollFetches(pctx)
	cancel()
	acquired := time.Now()
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatalf("a's poll: %v", errs)
	}
	var aOffsets []int64
	for _, r := range fs.Records() {
		if r.DeliveryCount() != 1 {
			t.Errorf("a got offset %d with delivery count %d, want 1", r.Offset, r.DeliveryCount())
		}
		if err := checkValue(r); err != nil {
			t.Error(err)
		}
		aOffsets = append(aOffsets, r.Offset)
	}
	if len(aOffsets) != batch || aOffsets[0] != 0 || aOffsets[batch-1] != batch-1 {
		t.Fatalf("a's poll got %d records %v, want offsets 0-%d", len(aOffsets), aOffsets, batch-1)
	}
	d.kill()
	killed := time.Now()
	t.Logf("a acquired 0-%d; its connections were cut %v later", batch-1, killed.Sub(acquired).Round(time.Millisecond))

	// b: everything, accepted as it comes.
	type delivery struct {
		count int32
		at    time.Time
	}
	deliveries := map[int64][]delivery{}
	b := newClusterClient(t, seeds, kgo.ClientID("share-kill-b"), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
		kgo.ShareMaxRecords(100), kgo.FetchMaxWait(200*time.Millisecond))
	deadline := time.Now().Add(scaled(t, 60*time.Second))
	done := func() bool {
		if len(deliveries) < total {
			return false
		}
		for o := int64(0); o < batch; o++ {
			if ds := deliveries[o]; len(ds) == 0 || ds[len(ds)-1].count < 2 {
				return false
			}
		}
		return true
	}
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("b got %d of %d offsets by the deadline; a's: %v", len(deliveries), total, func() map[int64][]delivery {
				out := map[int64][]delivery{}
				for o := int64(0); o < batch; o++ {
					out[o] = deliveries[o]
				}
				return out
			}())
		}
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := b.PollFetches(pctx)
		cancel()
		now := time.Now()
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded {
				t.Logf("b's poll: %v", err)
			}
		})
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			if err := checkValue(r); err != nil {
				t.Error(err)
			}
			deliveries[r.Offset] = append(deliveries[r.Offset], delivery{r.DeliveryCount(), now})
			r.Ack(kgo.AckAccept)
			n++
		})
		if n == 0 {
			continue
		}
		fctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := b.FlushAcks(fctx)
		cancel()
		if err != nil {
			t.Fatalf("b's FlushAcks: %v", err)
		}
	}
	var back time.Time
	for o := int64(0); o < total; o++ {
		want := int32(1)
		if o < batch {
			want = 2
		}
		ds := deliveries[o]
		if len(ds) != 1 || ds[0].count != want {
			t.Errorf("offset %d: b's deliveries %v, want one with count %d", o, ds, want)
			continue
		}
		if o < batch && ds[0].at.After(back) {
			back = ds[0].at
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	how := "at the connection's close"
	if back.Sub(acquired) >= lock {
		how = "after the lock ran out"
	}
	t.Logf("a's 0-%d all back at b %v after the cut, %v after a acquired them (lock %v): released %s", batch-1,
		back.Sub(killed).Round(time.Millisecond), back.Sub(acquired).Round(time.Millisecond), lock, how)
	if limit := lock + scaled(t, 5*time.Second); back.Sub(killed) > limit {
		t.Errorf("a's records came back %v after its connections were cut, more than the lock %v and a margin (%v)", back.Sub(killed), lock, limit)
	}
	waitFor(t, 30*time.Second, "the start offset at the end", func() (bool, string) {
		got, err := shareOffsets(t, adm, group)
		return err == nil && got[topic+"/0"] == total, fmt.Sprint(got, err)
	})
}
