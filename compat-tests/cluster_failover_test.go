package compat

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// liveProducer keeps producing one record to each of its partitions per
// round (acks=all, idempotent), waiting for every ack of a round before
// the next; it records acks, failed acks and the slowest round.
type liveProducer struct {
	cl    *kgo.Client
	topic string
	parts []int32
	tag   string // key prefix

	mu        sync.Mutex
	acked     map[int32][]prodRec
	errs      []string
	failed    map[string]bool // keys whose produce failed (outcome unknown)
	rounds    int
	longest   time.Duration
	longestAt time.Time

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func startLiveProducer(t *testing.T, seeds []string, topic string, parts []int32, opts ...kgo.Opt) *liveProducer {
	return startTaggedProducer(t, seeds, topic, parts, "live", opts...)
}

// startTaggedProducer is startLiveProducer with keys "<tag>-p<p>-<i>".
func startTaggedProducer(t *testing.T, seeds []string, topic string, parts []int32, tag string, opts ...kgo.Opt) *liveProducer {
	lp := &liveProducer{
		tag: tag, failed: map[string]bool{},
		cl: newClusterClient(t, seeds, append([]kgo.Opt{
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.RecordDeliveryTimeout(10 * time.Second),
			kgo.ProducerLinger(0),
		}, opts...)...),
		topic: topic, parts: parts,
		acked: map[int32][]prodRec{},
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	t.Cleanup(lp.halt)
	go lp.run()
	return lp
}

func (lp *liveProducer) run() {
	defer close(lp.done)
	// Rounds are never cut short: a record whose ack was abandoned might
	// still be in the log and break the exact read-back. Each record
	// gives up after the delivery timeout, so stopping takes ≤ 10 s.
	ctx := context.Background()
	for i := 0; ; i++ {
		select {
		case <-lp.stop:
			return
		default:
		}
		began := time.Now()
		var wg sync.WaitGroup
		for _, p := range lp.parts {
			key := fmt.Sprintf("%s-p%d-%d", lp.tag, p, i)
			wg.Add(1)
			lp.cl.Produce(ctx, &kgo.Record{Topic: lp.topic, Partition: p, Key: []byte(key), Value: []byte("value-" + key)}, func(r *kgo.Record, err error) {
				defer wg.Done()
				lp.mu.Lock()
				defer lp.mu.Unlock()
				if err != nil {
					lp.errs = append(lp.errs, fmt.Sprintf("%s at %s: %v", r.Key, time.Now().Format("15:04:05.000"), err))
					lp.failed[string(r.Key)] = true
					return
				}
				lp.acked[r.Partition] = append(lp.acked[r.Partition], prodRec{Key: string(r.Key), Value: string(r.Value), Offset: r.Offset})
			})
		}
		wg.Wait()
		d := time.Since(began)
		lp.mu.Lock()
		lp.rounds++
		if d > lp.longest {
			lp.longest, lp.longestAt = d, began
		}
		lp.mu.Unlock()
	}
}

func (lp *liveProducer) halt() {
	lp.stopOnce.Do(func() { close(lp.stop) })
	<-lp.done
}

func (lp *liveProducer) progress() (rounds int, errs int) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.rounds, len(lp.errs)
}

func (lp *liveProducer) ackedCount() int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	n := 0
	for _, rs := range lp.acked {
		n += len(rs)
	}
	return n
}

// liveConsumer reads partitions from offset 0 in the background.
type liveConsumer struct {
	mu   sync.Mutex
	recs map[int32][]*kgo.Record
	errs []string

	cancel context.CancelFunc
	done   chan struct{}
}

func startLiveConsumer(t *testing.T, seeds []string, topic string, parts []int32) *liveConsumer {
	offs := map[int32]kgo.Offset{}
	for _, p := range parts {
		offs[p] = kgo.NewOffset().At(0)
	}
	cl := newClusterClient(t, seeds,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	ctx, cancel := context.WithCancel(context.Background())
	lc := &liveConsumer{recs: map[int32][]*kgo.Record{}, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(lc.halt)
	go func() {
		defer close(lc.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			lc.mu.Lock()
			fs.EachError(func(tp string, p int32, err error) {
				if ctx.Err() == nil {
					lc.errs = append(lc.errs, fmt.Sprintf("%s/%d at %s: %v", tp, p, time.Now().Format("15:04:05.000"), err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) { lc.recs[r.Partition] = append(lc.recs[r.Partition], r) })
			lc.mu.Unlock()
		}
	}()
	return lc
}

func (lc *liveConsumer) halt() {
	lc.cancel()
	<-lc.done
}

func (lc *liveConsumer) count() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	n := 0
	for _, rs := range lc.recs {
		n += len(rs)
	}
	return n
}

// TestClusterFailover kills the Raft leader with SIGKILL while a producer
// writes to the partitions led by the other nodes and a consumer reads
// them. Asserted: a surviving node answers CreateTopics within 5 s of the
// kill; the survivors agree on a new leader; every produce to a surviving
// partition is acknowledged (no failed ack, longest stall ≤ 5 s) and read
// back exactly; the killed node restarts, rejoins (3 brokers in Metadata
// of every node), serves all records acknowledged before the kill at their
// offsets, and accepts writes again.
func TestClusterFailover(t *testing.T) {
	card(t, "franz-go kgo + tusk cluster CLI", "cluster: kill -9 Raft leader; CreateTopics ≤ 5 s; survivors serve throughout; rejoin without loss")
	c := startCluster(t, 3)
	ids := c.ids()
	const topic, nParts, preN = "failover", 6, 50

	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(ids...)))
	createTopic(t, adm, topic, nParts, nil)
	md := c.waitTopicsOn(t, 1, map[string]int{topic: nParts}, 10*time.Second).Topics[topic]
	leader := c.waitLeader(t, ids, ids, 10*time.Second)
	var survivors []int32
	for _, id := range ids {
		if id != leader {
			survivors = append(survivors, id)
		}
	}
	var all, survParts, deadParts []int32
	for p := int32(0); p < nParts; p++ {
		all = append(all, p)
		if md.Leaders[p] == leader {
			deadParts = append(deadParts, p)
		} else {
			survParts = append(survParts, p)
		}
	}
	t.Logf("Raft leader (to be killed): node %d; %s leaders %v; surviving partitions %v, partitions on the leader %v", leader, topic, md, survParts, deadParts)
	if len(survParts) == 0 {
		t.Fatalf("every partition of %s is on the Raft leader %d; placement should spread them", topic, leader)
	}
	if len(deadParts) == 0 {
		t.Errorf("no partition of %s is on the Raft leader %d (placement should spread 6 partitions over 3 nodes); the rejoin data check is empty", topic, leader)
	}

	pre := producePartitions(t, c.kafkaAddrs(ids...), topic, all, preN, "pre", map[int32]int64{})

	survSeeds := c.kafkaAddrs(survivors...)
	lp := startLiveProducer(t, survSeeds, topic, survParts)
	lc := startLiveConsumer(t, survSeeds, topic, survParts)
	waitFor(t, 15*time.Second, "live producer warm-up (20 rounds)", func() (bool, string) {
		r, e := lp.progress()
		return r >= 20 || e > 0, fmt.Sprintf("%d rounds, %d failed acks", r, e)
	})
	roundsBeforeKill, _ := lp.progress()

	tKill := time.Now()
	c.node(leader).Kill9(t)
	t.Logf("killed node %d (Raft leader) with SIGKILL", leader)

	// CreateTopics through a surviving node, retried on retriable errors,
	// must succeed within 5 s of the kill.
	const newTopic = "after-failover"
	r := c.raw(t, survivors[0])
	var created time.Duration
	var last string
	attempts := 0
	for created == 0 {
		left := 5*time.Second - time.Since(tKill)
		if left <= 0 {
			break
		}
		attempts++
		codes, msgs, err := r.createTopics([]string{newTopic}, 3, nil, max(left, 100*time.Millisecond))
		switch {
		case err != nil:
			last = err.Error()
		case codes[newTopic] == 0 || (codes[newTopic] == 36 && attempts > 1): // TOPIC_ALREADY_EXISTS: an earlier attempt committed
			created = time.Since(tKill)
		case retriable(codes[newTopic]):
			last = fmt.Sprintf("%s %q", errName(codes[newTopic]), msgs[newTopic])
		default:
			t.Fatalf("CreateTopics %s via surviving node %d after the kill: %s %q (not retriable)", newTopic, survivors[0], errName(codes[newTopic]), msgs[newTopic])
		}
		if created == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if created == 0 || created > 5*time.Second {
		t.Errorf("CreateTopics via surviving node %d did not succeed within 5 s of killing the Raft leader (%d attempts; last: %s)", survivors[0], attempts, last)
	} else {
		t.Logf("measure: CreateTopics via surviving node %d succeeded %v after the kill (%d attempts)", survivors[0], created.Round(time.Millisecond), attempts)
	}
	newLeader := c.waitLeader(t, survivors, survivors, 10*time.Second)
	t.Logf("measure: survivors agree on new Raft leader node %d %v after the kill", newLeader, time.Since(tKill).Round(time.Millisecond))
	if created != 0 {
		for _, id := range survivors {
			rs := c.raw(t, id)
			waitFor(t, 5*time.Second, fmt.Sprintf("topic %s listed by node %d", newTopic, id), func() (bool, string) {
				v, err := rs.metadata([]string{newTopic})
				if err != nil {
					return false, err.Error()
				}
				m := v.Topics[newTopic]
				return m.Err == 0 && len(m.Leaders) == 3, m.String()
			})
		}
	}

	// Keep producing well past a lease timeout, so the dead node gets
	// fenced while the survivors keep writing.
	waitFor(t, 30*time.Second, "8 s of producing after the kill and 20 rounds after it", func() (bool, string) {
		r, e := lp.progress()
		return (time.Since(tKill) >= 8*time.Second && r-roundsBeforeKill >= 20) || e > 0, fmt.Sprintf("%d rounds after the kill, %d failed acks", r-roundsBeforeKill, e)
	})
	for _, id := range survivors {
		m := c.metadataOf(t, id, []string{topic}).Topics[topic]
		for _, p := range survParts {
			if m.Leaders[p] != md.Leaders[p] || m.PErr[p] != 0 {
				t.Errorf("node %d with node %d down: %s/%d leader %d err %s, want leader %d", id, leader, topic, p, m.Leaders[p], errName(m.PErr[p]), md.Leaders[p])
			}
		}
		t.Logf("node %d's Metadata with node %d down: %s %v", id, leader, topic, m)
	}
	ackedNow := lp.ackedCount() + len(survParts)*preN
	waitFor(t, 10*time.Second, "live consumer catching up while the node is down", func() (bool, string) {
		n := lc.count()
		return n >= ackedNow, fmt.Sprintf("%d/%d records", n, ackedNow)
	})

	// Restart the killed node: it rejoins and serves its partitions.
	tRestart := time.Now()
	c.restartNode(t, leader)
	c.waitBrokers(t, ids, ids, 30*time.Second)
	t.Logf("measure: killed node %d restarted; all nodes list 3 brokers %v after relaunch", leader, time.Since(tRestart).Round(time.Millisecond))
	for _, id := range ids {
		v := c.waitTopicsOn(t, id, map[string]int{topic: nParts, newTopic: 3}, 30*time.Second)
		for _, p := range deadParts {
			if l := v.Topics[topic].Leaders[p]; l != leader {
				t.Logf("note: after rejoin node %d reports %s/%d led by %d (was %d)", id, topic, p, l, leader)
			}
		}
	}
	rounds, _ := lp.progress()
	waitFor(t, 15*time.Second, "10 more produce rounds after the rejoin", func() (bool, string) {
		r, e := lp.progress()
		return r-rounds >= 10 || e > 0, fmt.Sprintf("%d rounds, %d failed acks", r-rounds, e)
	})
	lp.halt()
	total := lp.ackedCount() + len(survParts)*preN
	waitFor(t, 15*time.Second, "live consumer reading every acknowledged record", func() (bool, string) {
		n := lc.count()
		return n >= total, fmt.Sprintf("%d/%d records", n, total)
	})
	lc.halt()

	lp.mu.Lock()
	t.Logf("measure: live producer %d rounds over %v, %d failed acks, longest round (stall) %v at %s (kill at %s)",
		lp.rounds, time.Since(tKill).Round(time.Millisecond), len(lp.errs), lp.longest.Round(time.Millisecond),
		lp.longestAt.Format("15:04:05.000"), tKill.Format("15:04:05.000"))
	if len(lp.errs) > 0 {
		t.Errorf("%d produces to surviving partitions failed; first: %s", len(lp.errs), lp.errs[0])
	}
	if lp.longest > 5*time.Second {
		t.Errorf("a produce round to surviving partitions stalled %v (limit 5 s)", lp.longest)
	}
	want := map[int32][]prodRec{}
	for _, p := range survParts {
		sort.Slice(lp.acked[p], func(i, j int) bool { return lp.acked[p][i].Offset < lp.acked[p][j].Offset })
		want[p] = append(append([]prodRec(nil), pre[p]...), lp.acked[p]...)
		for i, rec := range lp.acked[p] {
			if w := fmt.Sprintf("live-p%d-%d", p, i); rec.Offset != int64(preN+i) || rec.Key != w {
				t.Errorf("live acks %s/%d: #%d is %s at offset %d, want %s at %d", topic, p, i, rec.Key, rec.Offset, w, preN+i)
				break
			}
		}
	}
	lp.mu.Unlock()
	lc.mu.Lock()
	for _, p := range survParts {
		sameRecords(t, fmt.Sprintf("live consumer %s/%d", topic, p), want[p], lc.recs[p])
	}
	if len(lc.errs) > 0 {
		t.Errorf("live consumer saw %d fetch errors; first: %s", len(lc.errs), lc.errs[0])
	}
	lc.mu.Unlock()

	// The rejoined node's partitions: every record acknowledged before
	// the kill, exactly, read through the rejoined node; then new writes.
	rejoined := c.kafkaAddrs(leader)
	if len(deadParts) > 0 {
		start, n := map[int32]int64{}, map[int32]int{}
		for _, p := range deadParts {
			start[p], n[p] = 0, preN
		}
		got := readPartitions(t, rejoined, topic, start, n, 30*time.Second)
		for _, p := range deadParts {
			sameRecords(t, fmt.Sprintf("%s/%d after node %d rejoined", topic, p, leader), pre[p], got[p])
		}
		for _, p := range deadParts {
			start[p], n[p] = preN, 10
		}
		post := producePartitions(t, rejoined, topic, deadParts, 10, "post", start)
		got = readPartitions(t, survSeeds, topic, start, n, 30*time.Second)
		for _, p := range deadParts {
			sameRecords(t, fmt.Sprintf("%s/%d written after rejoin", topic, p), post[p], got[p])
		}
	}
	// Surviving partitions read through the rejoined node: exact.
	start, n := map[int32]int64{}, map[int32]int{}
	for _, p := range survParts {
		start[p], n[p] = 0, len(want[p])
	}
	got := readPartitions(t, rejoined, topic, start, n, 30*time.Second)
	for _, p := range survParts {
		sameRecords(t, fmt.Sprintf("%s/%d read via rejoined node %d", topic, p, leader), want[p], got[p])
	}
}

// waitFor polls cond (every 50 ms) until it reports true; it fails the
// test after timeout with cond's last description.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %s", what, timeout, desc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
