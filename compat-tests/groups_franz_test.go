package compat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rebalanceTracker is the shared ledger of a group run: what was
// processed (by key, with position), what was committed successfully.
type rebalanceTracker struct {
	topic string

	mu         sync.Mutex
	pos        map[string]tp   // key → position it was consumed at
	count      map[string]int  // key → times processed
	committed  map[int32]int64 // partition → highest successfully committed offset
	dups       int             // reprocessings
	violations []string        // duplicates below the committed offset
	commitErrs []string        // failed commits (diagnostic)
	perMember  map[string]int  // member name → records processed
	assigned   map[string][]int32
}

func newRebalanceTracker(topic string) *rebalanceTracker {
	return &rebalanceTracker{
		topic:     topic,
		pos:       map[string]tp{},
		count:     map[string]int{},
		committed: map[int32]int64{},
		perMember: map[string]int{},
		assigned:  map[string][]int32{},
	}
}

func (tr *rebalanceTracker) unique() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.count)
}

// process records one processed batch. A reprocessing is legitimate only
// if its offset was not yet covered by a successful commit when it was
// processed again (duplicates only within uncommitted ranges).
func (tr *rebalanceTracker) process(member string, recs []*kgo.Record) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, r := range recs {
		k := string(r.Key)
		at := tp{r.Partition, r.Offset}
		if prev, ok := tr.pos[k]; ok {
			tr.dups++
			if prev != at {
				tr.violations = append(tr.violations, fmt.Sprintf("key %s consumed at %d/%d and at %d/%d", k, prev.p, prev.o, at.p, at.o))
			}
			if c := tr.committed[r.Partition]; r.Offset < c {
				tr.violations = append(tr.violations, fmt.Sprintf("%s reprocessed %d/%d (key %s) although offset %d was already committed",
					member, r.Partition, r.Offset, k, c))
			}
		}
		tr.pos[k] = at
		tr.count[k]++
		tr.perMember[member]++
	}
}

// commit commits offsets synchronously and records, per partition, what
// the broker accepted.
func (tr *rebalanceTracker) commit(ctx context.Context, member string, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if err != nil {
			tr.commitErrs = append(tr.commitErrs, fmt.Sprintf("%s: %v", member, err))
			return
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					tr.commitErrs = append(tr.commitErrs, fmt.Sprintf("%s: %s/%d: %v", member, rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode)))
					continue
				}
				if o, ok := offsets[rt.Topic][rp.Partition]; ok && rt.Topic == tr.topic && o.Offset > tr.committed[rp.Partition] {
					tr.committed[rp.Partition] = o.Offset
				}
			}
		}
	})
}

type trackedConsumer struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	errs   []string
}

// processAndCommit processes recs for member and commits exactly their
// offsets synchronously (15 s at most), as a member that commits what it
// processed before it polls again.
func (tr *rebalanceTracker) processAndCommit(member string, cl *kgo.Client, recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	tr.process(member, recs)
	offs := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		if offs[r.Topic] == nil {
			offs[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		offs[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr.commit(ctx, member, cl, offs)
}

// startTrackedConsumer starts a group consumer that, per poll, processes
// every record, commits exactly the processed offsets synchronously and
// only then allows a rebalance. OnPartitionsRevoked commits what is still
// uncommitted (the eager-protocol safety net).
func startTrackedConsumer(t *testing.T, n *node, tr *rebalanceTracker, group, name string, balancer kgo.GroupBalancer) *trackedConsumer {
	t.Helper()
	tc := &trackedConsumer{name: name, done: make(chan struct{})}
	cl := newKgo(t, n,
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(tr.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(balancer),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(grpSession),
		kgo.RebalanceTimeout(grpRebalance),
		kgo.HeartbeatInterval(grpHeartbeat),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			tr.assigned[name] = append(tr.assigned[name], m[tr.topic]...)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			tr.commit(ctx, name+"(revoke)", cl, cl.UncommittedOffsets())
			tr.mu.Lock()
			defer tr.mu.Unlock()
			revoked := map[int32]bool{}
			for _, p := range m[tr.topic] {
				revoked[p] = true
			}
			keep := tr.assigned[name][:0]
			for _, p := range tr.assigned[name] {
				if !revoked[p] {
					keep = append(keep, p)
				}
			}
			tr.assigned[name] = keep
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			tr.commitErrs = append(tr.commitErrs, fmt.Sprintf("%s: partitions lost %v", name, m))
			tr.assigned[name] = nil
		}),
	)
	tc.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	tc.cancel = cancel
	go func() {
		defer close(tc.done)
		for {
			fs := cl.PollFetches(ctx)
			fs.EachError(func(topic string, p int32, err error) {
				if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
					return
				}
				tc.errs = append(tc.errs, fmt.Sprintf("%s/%d: %v", topic, p, err))
			})
			tr.processAndCommit(name, cl, fs.Records())
			cl.AllowRebalance()
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
		}
	}()
	return tc
}

// stop ends the poll loop and closes the client (revoke commit, LeaveGroup).
func (tc *trackedConsumer) stop(t *testing.T) {
	t.Helper()
	tc.cancel()
	select {
	case <-tc.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("consumer %s: poll loop did not stop", tc.name)
	}
	closed := make(chan struct{})
	go func() { tc.cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatalf("consumer %s: Close (leave group) did not return within 20s", tc.name)
	}
}

func (tr *rebalanceTracker) owned(name string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.assigned[name])
}

// TestGroupFranzRebalance: three kgo consumers in one group read a
// 12-partition topic while 100,000 records are produced; one leaves, later
// a new one joins. Every record is processed, exactly the produced set, and
// reprocessings only happen above the committed offset.
func TestGroupFranzRebalance(t *testing.T) {
	for _, bc := range []struct {
		name string
		bal  func() kgo.GroupBalancer
	}{
		{"range", kgo.RangeBalancer},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer},
	} {
		t.Run(bc.name, func(t *testing.T) {
			card(t, "franz-go kgo", "group 3 consumers, leave+join, 100k records ("+bc.name+")")
			const (
				partitions = 12
				total      = 100_000
			)
			topic := "grp-franz-" + bc.name
			group := "grp-franz-" + bc.name
			n := startTusk(t)
			adm, _ := newAdm(t, n)
			createTopic(t, adm, topic, partitions, nil)
			tr := newRebalanceTracker(topic)

			var consumers []*trackedConsumer
			for i := range 3 {
				consumers = append(consumers, startTrackedConsumer(t, n, tr, group, fmt.Sprintf("c%d", i), bc.bal()))
			}
			t.Cleanup(func() {
				for _, c := range consumers {
					c.cancel()
				}
			})
			waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 3, partitions))
			waitUntil(t, 20*time.Second, "all three consumers own partitions", func() bool {
				return tr.owned("c0") > 0 && tr.owned("c1") > 0 && tr.owned("c2") > 0
			})

			keys := seqKeys("fk", total)
			// Background producer: chunks of 1000 (acks=all), never more
			// than 5000 records ahead of processing, so production,
			// consumption and both rebalances overlap.
			acks := map[string]tp{}
			var prodErr error
			prodDone := make(chan struct{})
			leaveDone, joinDone := make(chan struct{}), make(chan struct{})
			quit := make(chan struct{}) // closed on cleanup: the producer gives up
			start := time.Now()
			go func() {
				defer close(prodDone)
				pcl, err := kgo.NewClient(kgo.SeedBrokers(n.Kafka), kgo.DefaultProduceTopic(topic),
					kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(2*time.Millisecond),
					kgo.RecordDeliveryTimeout(30*time.Second))
				if err != nil {
					prodErr = err
					return
				}
				defer pcl.Close()
				var mu sync.Mutex
				for c := 0; c < total; c += 1000 {
					// The leave and the join happen while records keep flowing:
					// production continues past 40k only after c2 left and past
					// 70k only after c3 owns partitions.
					for _, gate := range []struct {
						at int
						ch chan struct{}
					}{{40_000, leaveDone}, {70_000, joinDone}} {
						if c == gate.at {
							select {
							case <-gate.ch:
							case <-quit:
								prodErr = errors.New("test ended")
								return
							case <-time.After(60 * time.Second):
								prodErr = fmt.Errorf("producer gate at %d never opened", gate.at)
								return
							}
						}
					}
					stallUntil := time.Now().Add(30 * time.Second)
					for c-tr.unique() > 5000 {
						if time.Now().After(stallUntil) {
							prodErr = fmt.Errorf("processing stalled at %d of %d produced", tr.unique(), c)
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					for _, k := range keys[c : c+1000] {
						pcl.Produce(ctx, &kgo.Record{Key: []byte(k), Value: []byte("v-" + k)}, func(r *kgo.Record, err error) {
							mu.Lock()
							defer mu.Unlock()
							if err != nil && prodErr == nil {
								prodErr = err
							}
							if err == nil {
								acks[string(r.Key)] = tp{r.Partition, r.Offset}
							}
						})
					}
					err := pcl.Flush(ctx)
					cancel()
					mu.Lock()
					if err != nil && prodErr == nil {
						prodErr = err
					}
					failed := prodErr != nil
					mu.Unlock()
					if failed {
						return
					}
				}
			}()
			t.Cleanup(func() { close(quit); <-prodDone })
			producing := func() bool {
				select {
				case <-prodDone:
					return false
				default:
					return true
				}
			}

			// c2 leaves after 30k processed, c3 joins after 60k.
			waitUntil(t, 30*time.Second, "30k records processed", func() bool { return tr.unique() >= 30_000 || !producing() })
			consumers[2].stop(t)
			leftAt, leftDuringProduce := tr.unique(), producing()
			waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 2, partitions))
			close(leaveDone)
			waitUntil(t, 30*time.Second, "60k records processed", func() bool { return tr.unique() >= 60_000 || !producing() })
			joinAt, joinDuringProduce := tr.unique(), producing()
			consumers = append(consumers, startTrackedConsumer(t, n, tr, group, "c3", bc.bal()))
			waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 3, partitions))
			waitUntil(t, 20*time.Second, "c3 owns partitions", func() bool { return tr.owned("c3") > 0 })
			close(joinDone)
			select {
			case <-prodDone:
			case <-time.After(60 * time.Second):
				t.Fatal("producer did not finish within 60s")
			}
			if prodErr != nil {
				t.Fatalf("produce: %v", prodErr)
			}
			if len(acks) != total {
				t.Fatalf("%d produce acks, want %d", len(acks), total)
			}
			if !leftDuringProduce || !joinDuringProduce {
				t.Errorf("production finished before the leave (%v) / join (%v): the scenario did not overlap", leftDuringProduce, joinDuringProduce)
			}
			waitUntil(t, 45*time.Second, "all 100k records processed", func() bool { return tr.unique() >= total })
			for _, i := range []int{0, 1, 3} {
				consumers[i].stop(t)
			}
			t.Logf("%s: 100k produced and consumed in %v (c2 left at %d processed, c3 joined at %d)", bc.name, time.Since(start), leftAt, joinAt)

			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, c := range consumers {
				for _, e := range c.errs {
					t.Errorf("consumer %s fetch error: %s", c.name, e)
				}
			}
			for _, e := range tr.commitErrs {
				t.Logf("commit/group error: %s", e)
			}
			// Exactly the produced set, each at its acknowledged position.
			if len(tr.pos) != total {
				t.Errorf("processed %d distinct keys, want %d", len(tr.pos), total)
			}
			missing := 0
			for _, k := range keys {
				a := acks[k]
				got, ok := tr.pos[k]
				if !ok {
					if missing++; missing <= 5 {
						t.Errorf("key %s (acked at %d/%d) never processed", k, a.p, a.o)
					}
					continue
				}
				if got != a {
					t.Errorf("key %s processed at %d/%d, acknowledged at %d/%d", k, got.p, got.o, a.p, a.o)
				}
			}
			if missing > 0 {
				t.Errorf("%d keys never processed", missing)
			}
			for k := range tr.pos {
				if _, ok := acks[k]; !ok {
					t.Errorf("processed key %q that was never produced", k)
				}
			}
			for i, v := range tr.violations {
				if i == 10 {
					t.Errorf("... %d violations in all", len(tr.violations))
					break
				}
				t.Errorf("duplicate outside the uncommitted range: %s", v)
			}
			for _, name := range []string{"c0", "c1", "c2", "c3"} {
				if tr.perMember[name] == 0 {
					t.Errorf("consumer %s processed nothing", name)
				}
			}
			t.Logf("%s: %d reprocessings (all above the committed offset), per member %v, %d commit/group errors",
				bc.name, tr.dups, tr.perMember, len(tr.commitErrs))

			// Everything processed was committed: the group's offsets are the end offsets.
			ends := endOffsets(t, adm, topic)
			com := committedOffsets(t, adm, group, topic)
			for p := range int32(partitions) {
				if com[p] != ends[p] {
					t.Errorf("partition %d: committed offset %d, end offset %d", p, com[p], ends[p])
				}
				if tr.committed[p] != ends[p] {
					t.Errorf("partition %d: last acknowledged commit %d, end offset %d", p, tr.committed[p], ends[p])
				}
			}
		})
	}
}
