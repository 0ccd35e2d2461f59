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

// A kgo share consumer killed mid-batch (issue 17): its acquired records
// go to another member of the group with delivery count 2, released when
// its connection closes (Kafka's rule and Tusk's: docs/groups-next.md,
// "Serving share-partitions") or, when the share-partition has moved to
// another leader since (a roll), when its lock runs out.

// shareKill is a 3-node cluster with a topic of 1 partition, RF 3 and
// 256 KiB segments, share.auto-offset-reset earliest and lock-long locks.
type shareKill struct {
	c      *cluster
	seeds  []string
	adm    *kadm.Client
	prod   *kgo.Client
	topic  string
	group  string
	lock   time.Duration
	killed *killableDialer
}

func startShareKill(t *testing.T, topic string, lock time.Duration) *shareKill {
	t.Helper()
	skipClusterInKfakeMode(t)
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("share-auto-offset-reset", "earliest"), withFlag("share-record-lock-duration", lock.String())}
	})
	k := &shareKill{c: c, seeds: c.kafkaAddrs(c.ids()...), topic: topic, group: topic + "-group", lock: lock}
	k.adm = createRollingTopic(t, c, topic)
	k.prod = newClusterClient(t, k.seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	return k
}

func checkShareValue(r *kgo.Record) error {
	if want := fmt.Sprintf("v%d", r.Offset); strings.TrimRight(string(r.Value), ".") != want {
		return fmt.Errorf("offset %d value %.10q, want %s", r.Offset, r.Value, want)
	}
	return nil
}

// pollVictim starts consumer a (strict, batch records a fetch, no
// prefetch: it acquires only what it polls) with a killable dialer, polls
// once, checks it got exactly offsets 0..batch-1 with count 1 and returns
// when the poll started (before the share-partition leader acquired them)
// and returned (after). It never acknowledges them; k.killed cuts it off.
func (k *shareKill) pollVictim(t *testing.T, batch int) (started, acquired time.Time) {
	t.Helper()
	k.killed = &killableDialer{}
	a := newClusterClient(t, k.seeds, kgo.Dialer(k.killed.dial), kgo.ClientID(k.topic+"-a"), kgo.ShareGroup(k.group), kgo.ConsumeTopics(k.topic),
		kgo.ShareMaxRecords(int32(batch)), kgo.ShareMaxRecordsStrict(), kgo.FetchMaxWait(200*time.Millisecond))
	started = time.Now()
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	fs := a.PollFetches(pctx)
	cancel()
	acquired = time.Now()
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatalf("a's poll: %v", errs)
	}
	var offs []int64
	for _, r := range fs.Records() {
		if r.DeliveryCount() != 1 {
			t.Errorf("a got offset %d with delivery count %d, want 1", r.Offset, r.DeliveryCount())
		}
		if err := checkShareValue(r); err != nil {
			t.Error(err)
		}
		offs = append(offs, r.Offset)
	}
	if len(offs) != batch || offs[0] != 0 || offs[batch-1] != int64(batch-1) {
		t.Fatalf("a's poll got %d records %v, want offsets 0-%d", len(offs), offs, batch-1)
	}
	return started, acquired
}

// consumeRest runs consumer b until it has every offset below total and
// a's 0..batch-1 again, accepting each poll's records; it checks b got
// a's offsets exactly once with count 2 and the others exactly once with
// count 1, that the start offset reaches total, and returns when the last
// of a's records reached b.
func (k *shareKill) consumeRest(t *testing.T, batch, total int) time.Time {
	t.Helper()
	type delivery struct {
		count int32
		at    time.Time
	}
	deliveries := map[int64][]delivery{}
	b := newClusterClient(t, k.seeds, kgo.ClientID(k.topic+"-b"), kgo.ShareGroup(k.group), kgo.ConsumeTopics(k.topic),
		kgo.ShareMaxRecords(100), kgo.FetchMaxWait(200*time.Millisecond))
	done := func() bool {
		if len(deliveries) < total {
			return false
		}
		for o := int64(0); o < int64(batch); o++ {
			if ds := deliveries[o]; len(ds) == 0 || ds[len(ds)-1].count < 2 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(k.lock + scaled(t, 60*time.Second)); !done(); {
		if time.Now().After(deadline) {
			first := map[int64][]delivery{}
			for o := int64(0); o < int64(batch); o++ {
				first[o] = deliveries[o]
			}
			t.Fatalf("b got %d of %d offsets by the deadline; a's: %v", len(deliveries), total, first)
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
			if err := checkShareValue(r); err != nil {
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
	for o := int64(0); o < int64(total); o++ {
		want := int32(1)
		if o < int64(batch) {
			want = 2
		}
		ds := deliveries[o]
		if len(ds) != 1 || ds[0].count != want {
			t.Errorf("offset %d: b's deliveries %v, want one with count %d", o, ds, want)
			continue
		}
		if o < int64(batch) && ds[0].at.After(back) {
			back = ds[0].at
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	waitFor(t, 30*time.Second, "the start offset at the end", func() (bool, string) {
		got, err := shareOffsets(t, k.adm, k.group)
		return err == nil && got[k.topic+"/0"] == int64(total), fmt.Sprint(got, err)
	})
	return back
}

// TestClusterShareConsumerKilled: 600 records of 1 KiB (uncompressed: the
// produce rolls the partition and each roll moves the active segment's
// leader), 3 s locks. Consumer a polls 0-49 and never acknowledges them;
// then its connections are cut as a killed process's are (no ShareFetch
// with epoch -1, no leave heartbeat) and the client is abandoned until
// the test ends. Consumer b gets exactly 0-49 again with delivery count 2
// and 50-599 once with count 1, and accepts everything. The
// share-partition leader releases a's records when a's connection to it
// closes, so they must be back within the lock duration (plus a margin)
// of the cut; the log says whether they came back before a's lock ran out
// (the connection's close) or after (lock expiry).
func TestClusterShareConsumerKilled(t *testing.T) {
	const batch, total = 50, 600
	k := startShareKill(t, "share-kill", 3*time.Second)
	for next := int64(0); next < total; next += 100 {
		produceShareValues(t, k.prod, k.topic, next, 100)
	}
	segs := k.c.segmentsVia(t, k.c.ids()[0], k.topic, 0)
	leaders := map[int32]bool{}
	for _, s := range segs {
		leaders[s.Leader] = true
	}
	if len(segs) < 2 || len(leaders) < 2 {
		t.Fatalf("%d records of 1 KiB made %d segments led by %d nodes, want a roll that moved the leader", total, len(segs), len(leaders))
	}
	_, acquired := k.pollVictim(t, batch)
	k.killed.kill()
	killed := time.Now()
	back := k.consumeRest(t, batch, total)
	how := "at the connection's close"
	if back.Sub(acquired) >= k.lock {
		how = "after the lock ran out"
	}
	t.Logf("a's 0-%d all back at b %v after the cut, %v after a acquired them (lock %v): released %s", batch-1,
		back.Sub(killed).Round(time.Millisecond), back.Sub(acquired).Round(time.Millisecond), k.lock, how)
	if limit := k.lock + scaled(t, 5*time.Second); back.Sub(killed) > limit {
		t.Errorf("a's records came back %v after its connections were cut, more than the lock %v and a margin (%v)", back.Sub(killed), k.lock, limit)
	}
}

// TestClusterShareConsumerKilledAfterRoll: consumer a polls 0-49 on the
// partition's leader, records are produced until a roll moves the
// share-partition to another node (the handover keeps a's locks and their
// deadlines), and only then are a's connections cut. The new leader has
// no connection of a's whose close would release them, so b gets 0-49
// with count 2 when a's lock runs out: not before (a would otherwise
// have lost records it still held; bounded by when a's poll started), and
// within a margin after (bounded by when it returned).
func TestClusterShareConsumerKilledAfterRoll(t *testing.T) {
	const batch = 50
	k := startShareKill(t, "share-kill-roll", scaled(t, 8*time.Second))
	produceShareValues(t, k.prod, k.topic, 0, 100)
	first, segs := k.c.activeShareLeader(t, k.c.ids()[0], k.topic)
	if first < 0 {
		t.Fatalf("no active leader of %s", k.topic)
	}
	started, acquired := k.pollVictim(t, batch)
	next := int64(100)
	second := int32(-1)
	for deadline := time.Now().Add(60 * time.Second); second < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no roll moved %s off node %d", k.topic, first)
		}
		produceShareValues(t, k.prod, k.topic, next, 64)
		next += 64
		if l, n := k.c.activeShareLeader(t, first, k.topic, first); l >= 0 && n > segs {
			second = l
		}
	}
	k.killed.kill()
	killed := time.Now()
	if held := killed.Sub(acquired); held >= k.lock {
		t.Fatalf("the roll took %v, not less than the lock (%v): a's lock ran out before its connections were cut", held, k.lock)
	}
	t.Logf("rolled from node %d to node %d after %d records; a's connections cut %v after it acquired 0-%d",
		first, second, next, killed.Sub(acquired).Round(time.Millisecond), batch-1)
	back := k.consumeRest(t, batch, int(next))
	t.Logf("a's 0-%d all back at b %v after the cut, %v after a's poll returned, %v after it started (lock %v)", batch-1,
		back.Sub(killed).Round(time.Millisecond), back.Sub(acquired).Round(time.Millisecond), back.Sub(started).Round(time.Millisecond), k.lock)
	// The leader acquired them after a's poll started: the lock cannot
	// have run out before started+lock.
	if back.Sub(started) < k.lock {
		t.Errorf("a's records were redelivered %v after a's poll started, before its %v lock ran out", back.Sub(started), k.lock)
	}
	if limit := k.lock + scaled(t, 5*time.Second); back.Sub(acquired) > limit {
		t.Errorf("a's records came back %v after a acquired them, more than the lock and a margin (%v)", back.Sub(acquired), limit)
	}
}
