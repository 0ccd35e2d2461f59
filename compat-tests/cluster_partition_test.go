//go:build linux

package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionAckMargin: how late after isolation + lease an answer the
// leader decided before its lease ran out may still reach a client over
// the leader's own loopback (× raceScale).
const partitionAckMargin = 250 * time.Millisecond

// TestClusterPartitionedLeader: each node of a 3-node cluster runs in its
// own network namespace. While idempotent acks=all producers write to an
// RF=3 topic, the segment leader of partition 0 is cut off from its peers
// (its veth leaves the bridge) while a producer inside its namespace stays
// connected to it and keeps writing to the partitions it leads. Asserted:
//   - the isolated leader acknowledges nothing after isolation + lease
//     timeout (+ 250 ms), and nothing that reached it after the cut;
//   - the majority fails its partitions over (new leaders in their
//     Metadata) and a producer through the bridge carries on there, and on
//     the other partitions, without a failed acknowledgement;
//   - after healing, the old leader rejoins (every node's Metadata lists it,
//     it is back in every replica set) and every partition reads back,
//     from offset 0, exactly the acknowledged records (offsets, keys,
//     values, no duplicates). A record handed to the isolated leader's
//     producer after the cut is never visible; an unacknowledged one from
//     before the cut may be (it may have been replicated just in time).
func TestClusterPartitionedLeader(t *testing.T) {
	skipClusterInKfakeMode(t)
	ft := setFaultTimings(t)
	lease, margin := ft.lease, scaled(t, partitionAckMargin)
	testStart := time.Now()
	lab := newNetnsLab(t, 3)
	done := cardSetup(t, fmt.Sprintf("tusk 3-node cluster in network namespaces, lease %v", lease))
	c := startNetnsCluster(t, lab, 3)
	done()
	card(t, "franz-go kgo + network namespaces", "cluster: partitioned segment leader stops acking within the lease; its later writes never visible")
	var victim int32 = -1
	// Registered after the cluster: runs before the nodes are stopped.
	t.Cleanup(func() {
		if victim >= 0 {
			lab.heal(victim)
		}
	})

	const topic = "partitioned"
	const nparts = 6
	all := c.ids()
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(all...)))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, nparts, 3, map[string]*string{"segment.rotate": strp("false")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range all {
		c.waitTopicsOn(t, id, map[string]int{topic: nparts}, 10*time.Second)
	}
	md := c.metadataOf(t, all[0], []string{topic})
	victim = md.Topics[topic].Leaders[0]
	var victimParts, otherParts []int32
	for p := int32(0); p < nparts; p++ {
		if md.Topics[topic].Leaders[p] == victim {
			victimParts = append(victimParts, p)
		} else {
			otherParts = append(otherParts, p)
		}
	}
	var others []int32
	for _, id := range all {
		if id != victim {
			others = append(others, id)
		}
	}
	st, err := c.status(t, all[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("victim: node %d (%s in %s) leads partitions %v; Raft leader is node %d; others lead %v",
		victim, c.node(victim).Kafka, lab.nsName(victim), victimParts, st.Leader, otherParts)

	// The isolated leader's producer dials inside its namespace, so its
	// connection survives the cut; the others go through the bridge.
	iso := startStreamProducer(t, c.node(victim).Kafka, lab.dialer(victim), topic, victimParts)
	var lpOthers *liveProducer
	if len(otherParts) > 0 {
		lpOthers = startBridgeProducer(t, c.kafkaAddrs(others...), topic, otherParts)
	}
	waitRounds := func(lp *liveProducer, what string, more int) {
		t.Helper()
		if lp == nil {
			return
		}
		r0, _ := lp.progress()
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			r, errs := lp.progress()
			return r >= r0+more, fmt.Sprintf("%d rounds (from %d), %d failed acks", r, r0, errs)
		})
	}
	waitFor(t, 20*time.Second, "warm-up of the producer on the victim's partitions", func() (bool, string) {
		n, failed := iso.counts()
		return n >= 200, fmt.Sprintf("%d acks, %d failed", n, failed)
	})
	waitRounds(lpOthers, "warm-up of the producer on the other partitions", 30)
	if _, failed := iso.counts(); failed > 0 {
		t.Fatalf("%d records to the victim failed before the cut, first: %v", failed, iso.firstErr())
	}

	// The cut.
	lab.isolate(victim)
	cutAt := time.Now()
	t.Logf("isolated node %d at +%v", victim, cutAt.Sub(testStart).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "new leaders for the victim's partitions in the majority's Metadata", func() (bool, string) {
		for _, id := range others {
			v := c.metadataOf(t, id, []string{topic}).Topics[topic]
			for _, p := range victimParts {
				if l := v.Leaders[p]; l < 0 || l == victim {
					return false, fmt.Sprintf("node %d: partition %d leader %d", id, p, l)
				}
			}
		}
		return true, ""
	})
	failover := time.Since(cutAt)
	t.Logf("measure: the majority reports new leaders for partitions %v %v after the cut", victimParts, failover.Round(time.Millisecond))
	lpMoved := startBridgeProducer(t, c.kafkaAddrs(others...), topic, victimParts)
	waitRounds(lpMoved, "progress on the failed-over partitions", 30)
	waitRounds(lpOthers, "progress on the other partitions during the cut", 10)
	// Keep the isolated leader's producer going well past its lease.
	if d := time.Until(cutAt.Add(lease + margin + time.Second)); d > 0 {
		time.Sleep(d)
	}
	closedOut := iso.halt(5 * time.Second)
	rep := iso.report(cutAt, lease+margin)
	t.Logf("measure: isolated leader's producer: %d records (%d before the cut), %d acknowledged, %d failed (%d of them by closing the client); last ack %v after the cut; %d produce requests (%d bytes) written to it after the cut; first error: %v",
		rep.total, rep.beforeCut, rep.acked, rep.failed, closedOut, rep.lastAck.Sub(cutAt).Round(time.Millisecond), rep.writesAfterCut, rep.bytesAfterCut, iso.firstErr())
	for i, r := range rep.lateAcks {
		if i == 5 {
			t.Errorf("... %d late acknowledgements in all", len(rep.lateAcks))
			break
		}
		t.Errorf("the isolated leader acknowledged %s (offset %d, handed to the client %v after the cut) %v after the cut: later than lease %v + %v",
			r.key, r.offset, r.bufferedAt.Sub(cutAt).Round(time.Millisecond), r.ackAt.Sub(cutAt).Round(time.Millisecond), lease, margin)
	}
	for i, r := range rep.ackedAfterCut {
		if i == 5 {
			t.Errorf("... %d such acknowledgements in all", len(rep.ackedAfterCut))
			break
		}
		t.Errorf("the isolated leader acknowledged %s (offset %d), handed to the client %v after the cut, so never replicated",
			r.key, r.offset, r.bufferedAt.Sub(cutAt).Round(time.Millisecond))
	}
	if rep.writesAfterCut == 0 {
		t.Errorf("no produce request reached the isolated leader after the cut: the scenario did not happen")
	}

	// Heal; the old leader rejoins.
	lab.heal(victim)
	healAt := time.Now()
	c.waitBrokers(t, all, all, 30*time.Second)
	// Not fatal: what the records read back below say matters more.
	rejoined := pollFor(30*time.Second, fmt.Sprintf("node %d sees the new leaders and is back in every replica set", victim), t.Errorf, func() (bool, string) {
		v := c.metadataOf(t, victim, []string{topic}).Topics[topic]
		for _, p := range victimParts {
			if l := v.Leaders[p]; l < 0 || l == victim {
				return false, fmt.Sprintf("node %d's Metadata: partition %d leader %d", victim, p, l)
			}
		}
		for p := 0; p < nparts; p++ {
			if r := activeReplicas(t, c, others[0], topic, p); len(r) != 3 || !slices.Contains(r, victim) {
				return false, fmt.Sprintf("partition %d replicas %v", p, r)
			}
		}
		return true, ""
	})
	if rejoined {
		t.Logf("measure: node %d rejoined (Metadata of every node, every replica set) %v after healing", victim, time.Since(healAt).Round(time.Millisecond))
		waitRounds(lpMoved, "progress on the failed-over partitions after the rejoin", 20)
		waitRounds(lpOthers, "progress on the other partitions after the rejoin", 20)
	}

	// Everything acknowledged, nothing else but pre-cut strays.
	acked := map[int32]map[string]prodRec{}
	for p := int32(0); p < nparts; p++ {
		acked[p] = map[string]prodRec{}
	}
	for _, lp := range []*liveProducer{lpOthers, lpMoved} {
		if lp == nil {
			continue
		}
		lp.halt()
		lp.mu.Lock()
		errs, longest := lp.errs, lp.longest
		for p, recs := range lp.acked {
			for _, r := range recs {
				acked[p][r.Key] = r
			}
		}
		lp.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%d failed acknowledgements through the bridge (partitions %v), first: %s", len(errs), lp.parts, errs[0])
		}
		t.Logf("measure: producer on partitions %v: longest round (stall) %v", lp.parts, longest.Round(time.Millisecond))
	}
	strays := map[string]*isoRec{}    // unacknowledged, handed over before the cut
	forbidden := map[string]*isoRec{} // handed over after the cut
	for _, r := range iso.recs {
		switch {
		case r.err == nil:
			acked[r.p][r.key] = prodRec{Key: r.key, Value: r.value, Offset: r.offset}
		case r.bufferedAt.Before(cutAt):
			strays[r.key] = r
		default:
			forbidden[r.key] = r
		}
	}
	ends := map[int32]int64{}
	ctx = ctxTimeout(t, 30*time.Second)
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Errorf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		ends[o.Partition] = o.Offset
	})
	start, want := map[int32]int64{}, map[int32]int{}
	for p := int32(0); p < nparts; p++ {
		start[p], want[p] = 0, int(ends[p])
	}
	got := readPartitions(t, c.kafkaAddrs(all...), topic, start, want, 30*time.Second)
	total, totalStrays := 0, 0
	var summary []string
	for p := int32(0); p < nparts; p++ {
		label := fmt.Sprintf("%s/%d", topic, p)
		seen := map[string]bool{}
		nStrays := 0
		for i, r := range got[p] {
			k, v := string(r.Key), string(r.Value)
			if r.Offset != int64(i) {
				t.Errorf("%s: record #%d at offset %d (offsets not contiguous from 0)", label, i, r.Offset)
			}
			if seen[k] {
				t.Errorf("%s: %s read twice (again at offset %d)", label, k, r.Offset)
				continue
			}
			seen[k] = true
			if w, ok := acked[p][k]; ok {
				if r.Offset != w.Offset || v != w.Value {
					t.Errorf("%s: %s=%q at offset %d, acknowledged as %q at offset %d", label, k, v, r.Offset, w.Value, w.Offset)
				}
				continue
			}
			if f, ok := forbidden[k]; ok {
				t.Errorf("%s: %s, handed to the isolated leader %v after the cut and never acknowledged (%v), is visible at offset %d",
					label, k, f.bufferedAt.Sub(cutAt).Round(time.Millisecond), f.err, r.Offset)
				continue
			}
			if s, ok := strays[k]; ok && s.p == p && s.value == v {
				nStrays++
				continue
			}
			t.Errorf("%s: unexpected record %s=%q at offset %d", label, k, v, r.Offset)
		}
		missing := 0
		for k, w := range acked[p] {
			if !seen[k] {
				if missing == 0 {
					t.Errorf("%s: acknowledged %s at offset %d is not there", label, k, w.Offset)
				}
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d acknowledged records missing", label, missing)
		}
		total += len(acked[p])
		totalStrays += nStrays
		summary = append(summary, fmt.Sprintf("p%d %d+%d", p, len(acked[p]), nStrays))
	}
	t.Logf("measure: read back %d acknowledged records exactly (+%d unacknowledged ones sent before the cut; per partition acked+strays: %s); none of the %d records sent to the isolated leader after the cut; test took %v",
		total, totalStrays, strings.Join(summary, ", "), len(forbidden), time.Since(testStart).Round(time.Millisecond))
}

// pollFor is waitFor that reports a timeout through fail and returns
// false instead of ending the test.
func pollFor(timeout time.Duration, what string, fail func(string, ...any), cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			fail("%s: not reached within %v: %s", what, timeout, desc)
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// activeReplicas is the replica set of the active segment of partition p,
// from node via's metadata dump (nil if unavailable).
func activeReplicas(t *testing.T, c *cluster, via int32, topic string, p int) []int32 {
	t.Helper()
	_, raw, err := c.dump(t, via)
	if err != nil {
		return nil
	}
	var d struct {
		Topics map[string]struct {
			Parts []struct {
				Segments []struct {
					Replicas []int32 `json:"replicas"`
				} `json:"segments"`
			} `json:"parts"`
		} `json:"topics"`
	}
	if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) <= p {
		return nil
	}
	segs := d.Topics[topic].Parts[p].Segments
	if len(segs) == 0 {
		return nil
	}
	return segs[len(segs)-1].Replicas
}

// startBridgeProducer is startLiveProducer with a client that gives up
// quickly on an unreachable broker (dial 1 s, request overhead 2 s): kgo
// sends metadata requests to any broker it knows, the isolated one
// included, and by default waits 10 s for a dial or an answer there.
func startBridgeProducer(t *testing.T, seeds []string, topic string, parts []int32) *liveProducer {
	lp := &liveProducer{
		cl: newClusterClient(t, seeds,
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.RecordDeliveryTimeout(10*time.Second),
			kgo.ProducerLinger(0),
			kgo.DialTimeout(time.Second),
			kgo.RequestTimeoutOverhead(2*time.Second),
		),
		topic: topic, parts: parts,
		acked: map[int32][]prodRec{},
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	t.Cleanup(lp.halt)
	go lp.run()
	return lp
}

// isoRec is one record given to a streamProducer.
type isoRec struct {
	p          int32
	key, value string
	bufferedAt time.Time // when Produce was called
	ackAt      time.Time // when the promise ran
	offset     int64
	err        error
}

// streamProducer produces to its partitions without waiting for acks
// (idempotent, acks=all, at most 64 records outstanding), through a
// client that only knows one seed and uses dial, and timestamps each
// record's hand-over and acknowledgement, and each produce request
// written to a broker.
type streamProducer struct {
	cl    *kgo.Client
	topic string
	parts []int32

	mu     sync.Mutex
	recs   []*isoRec
	writes []streamWrite

	wg       sync.WaitGroup
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type streamWrite struct {
	at    time.Time
	bytes int
}

func startStreamProducer(t *testing.T, seed string, dial func(ctx context.Context, network, host string) (net.Conn, error), topic string, parts []int32) *streamProducer {
	sp := &streamProducer{topic: topic, parts: parts, stop: make(chan struct{}), done: make(chan struct{})}
	sp.cl = newClusterClient(t, []string{seed},
		kgo.Dialer(dial),
		kgo.WithHooks(streamHook{sp}),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(3*time.Second),
		// Without it, records whose request timed out stay in flight
		// until the isolated leader gives a definite answer: never.
		kgo.AllowIdempotentProduceCancellation(),
		// The leader answers acks=all requests it cannot complete with
		// REQUEST_TIMED_OUT after this; the client then sends on (retries
		// and new batches). With the default 10 s, the pipeline (5
		// requests) stays full of requests from before the cut and nothing
		// new reaches the isolated leader while its lease still runs.
		kgo.ProduceRequestTimeout(300*time.Millisecond),
		kgo.ProducerLinger(0),
	)
	t.Cleanup(func() { sp.halt(0) })
	go sp.run()
	return sp
}

type streamHook struct{ sp *streamProducer }

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (h streamHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, err error) {
	if key == 0 && err == nil { // Produce
		h.sp.mu.Lock()
		h.sp.writes = append(h.sp.writes, streamWrite{time.Now(), n})
		h.sp.mu.Unlock()
	}
}

func (sp *streamProducer) run() {
	defer close(sp.done)
	sem := make(chan struct{}, 64)
	for i := 0; ; i++ {
		for _, p := range sp.parts {
			select {
			case <-sp.stop:
				return
			case sem <- struct{}{}:
			}
			key := fmt.Sprintf("iso-p%d-%d", p, i)
			r := &isoRec{p: p, key: key, value: "value-" + key, bufferedAt: time.Now()}
			sp.mu.Lock()
			sp.recs = append(sp.recs, r)
			sp.mu.Unlock()
			sp.wg.Add(1)
			sp.cl.Produce(context.Background(), &kgo.Record{Topic: sp.topic, Partition: p, Key: []byte(key), Value: []byte(r.value)}, func(kr *kgo.Record, err error) {
				defer sp.wg.Done()
				now := time.Now()
				sp.mu.Lock()
				r.ackAt, r.err, r.offset = now, err, kr.Offset
				sp.mu.Unlock()
				<-sem
			})
		}
		select {
		case <-sp.stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// halt stops producing and gives the records in flight grace to be
// acknowledged or to fail; then the client is closed, which fails the
// rest (a client cut off with its broker may retry metadata requests to
// unreachable brokers past its delivery timeout). It returns how many
// records the close failed.
func (sp *streamProducer) halt(grace time.Duration) (closedOut int) {
	sp.stopOnce.Do(func() {
		close(sp.stop)
		<-sp.done
		ch := make(chan struct{})
		go func() { sp.wg.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(grace):
			_, _, closedOut = sp.countsAll()
		}
		sp.cl.Close()
		<-ch
	})
	return closedOut
}

func (sp *streamProducer) counts() (acked, failed int) {
	acked, failed, _ = sp.countsAll()
	return acked, failed
}

func (sp *streamProducer) countsAll() (acked, failed, pending int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, r := range sp.recs {
		switch {
		case r.ackAt.IsZero():
			pending++
		case r.err == nil:
			acked++
		default:
			failed++
		}
	}
	return acked, failed, pending
}

func (sp *streamProducer) firstErr() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, r := range sp.recs {
		if r.err != nil {
			return fmt.Errorf("%s at %s: %w", r.key, r.ackAt.Format("15:04:05.000"), r.err)
		}
	}
	return nil
}

type streamReport struct {
	total, beforeCut, acked, failed int
	lastAck                         time.Time
	writesAfterCut, bytesAfterCut   int
	lateAcks                        []*isoRec // acknowledged after cut + lease + margin
	ackedAfterCut                   []*isoRec // acknowledged though handed over after the cut
}

// report sums up a halted producer against the time of the cut; an
// acknowledgement later than cut + late is late.
func (sp *streamProducer) report(cut time.Time, late time.Duration) streamReport {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var rep streamReport
	rep.total = len(sp.recs)
	deadline := cut.Add(late)
	for _, r := range sp.recs {
		if r.bufferedAt.Before(cut) {
			rep.beforeCut++
		}
		if r.err != nil {
			rep.failed++
			continue
		}
		rep.acked++
		if r.ackAt.After(rep.lastAck) {
			rep.lastAck = r.ackAt
		}
		if r.ackAt.After(deadline) {
			rep.lateAcks = append(rep.lateAcks, r)
		}
		if !r.bufferedAt.Before(cut) {
			rep.ackedAfterCut = append(rep.ackedAfterCut, r)
		}
	}
	sort.Slice(rep.lateAcks, func(i, j int) bool { return rep.lateAcks[i].ackAt.Before(rep.lateAcks[j].ackAt) })
	for _, w := range sp.writes {
		if w.at.After(cut) {
			rep.writesAfterCut++
			rep.bytesAfterCut += w.bytes
		}
	}
	return rep
}
