package compat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterReassignPartition: 4 nodes, an RF=3 topic with one
// partition. kadm's AlterPartitionAssignments moves the partition off
// its current leader onto the node that holds nothing, while records are
// produced before and during the move. ListPartitionReassignments shows
// the move with the exact adding and removing replicas, then nothing;
// the active segment's and every sealed segment's replicas are the target
// (sealed reads may only go to nodes that hold the bytes); the removed
// node deletes its copy (DescribeLogDirs no longer lists the partition);
// every acknowledged record is read back exactly once, in order. Bad
// requests get Kafka's errors and change nothing: a cancel with nothing in
// progress, a replica list of the wrong size, an unknown broker, an
// unknown partition.
func TestClusterReassignPartition(t *testing.T) {
	const topic = "reasg"
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 4, client: "franz-go kadm AlterPartitionAssignments", scenario: "cluster: reassign a partition off its leader while producing",
		env:    map[string]string{"TUSK_REPLICA_RESTORE": "0s"},
		topics: []faultTopic{{name: topic, partitions: 1, configs: map[string]*string{"segment.bytes": kadmStr("65536"), "segment.rotate": kadmStr("false")}}},
	})
	all := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 120*time.Second)

	first := producePartitions(t, all, topic, []int32{0}, 1500, "before", map[int32]int64{0: 0})

	segs := c.segmentsVia(t, c.ids()[0], topic, 0)
	if len(segs) == 0 {
		t.Fatal("no segments in the dump")
	}
	active := segs[len(segs)-1]
	var spare int32 = -1
	for _, id := range c.ids() {
		if !slices.Contains(active.Replicas, id) {
			spare = id
		}
	}
	leader := active.Leader
	var target []int32
	for _, id := range active.Replicas {
		if id != leader {
			target = append(target, id)
		}
	}
	target = append(target, spare)
	t.Logf("moving %s/0 from %v (leader %d) to %v", topic, active.Replicas, leader, target)

	// Bad requests first: each answered with Kafka's error, nothing changes.
	bad := func(label string, replicas []int32, p int32, want error) {
		t.Helper()
		var req kadm.AlterPartitionAssignmentsReq
		req.Assign(topic, p, replicas)
		resp, err := adm.AlterPartitionAssignments(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		got := resp[topic][p].Err
		if !errors.Is(got, want) {
			t.Fatalf("%s: error %v, want %v", label, got, want)
		}
	}
	bad("cancel with nothing in progress", nil, 0, kerr.NoReassignmentInProgress)
	bad("two replicas for RF 3", target[:2], 0, kerr.InvalidReplicationFactor)
	bad("unknown broker", []int32{target[0], target[1], 99}, 0, kerr.InvalidReplicaAssignment)
	bad("unknown partition", target, 5, kerr.UnknownTopicOrPartition)
	if lr, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}}); err != nil || len(lr[topic]) != 0 {
		t.Fatalf("reassignments after bad requests: %v %v", lr, err)
	}

	if found, err := holdsPartition(ctx, adm, leader, topic); err != nil || !found {
		t.Fatalf("node %d does not list %s/0 in DescribeLogDirs before the move (%v)", leader, topic, err)
	}
	// Load: a producer goes on writing through the whole move (acks=all,
	// idempotent, 100 records at a time) until the old leader deleted its
	// copy. It starts before the move, which can take less time than the
	// producer's first acknowledgement (the leader rolls as soon as the
	// new replica caught up).
	load := startLoad(t, all, topic, "during")
	waitFor(t, 30*time.Second, "the load's first acknowledgement", func() (bool, string) {
		return load.acked() > 0, "none yet"
	})
	began := time.Now()
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(topic, 0, target)
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil || resp[topic][0].Err != nil {
		t.Fatalf("reassign: %v %+v", err, resp)
	}
	lr, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	st, ok := lr[topic][0]
	wantReplicas := append(slices.Clone(target), leader)
	if !ok || !slices.Equal(st.Replicas, wantReplicas) || !slices.Equal(st.AddingReplicas, []int32{spare}) || !slices.Equal(st.RemovingReplicas, []int32{leader}) {
		t.Fatalf("ListPartitionReassignments right after the request = %+v (found %v), want replicas %v adding [%d] removing [%d]", st, ok, wantReplicas, spare, leader)
	}

	waitFor(t, 60*time.Second, "the reassignment completes", func() (bool, string) {
		lr, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			return false, err.Error()
		}
		if len(lr[topic]) != 0 {
			return false, fmt.Sprintf("in progress: %+v", lr[topic][0])
		}
		segs := c.segmentsVia(t, target[0], topic, 0)
		for _, s := range segs {
			if slices.Contains(s.Replicas, leader) || !holdsAs(s, target) {
				return false, fmt.Sprintf("segment %d [%d, %d) replicas %v", s.ID, s.Base, s.End, s.Replicas)
			}
		}
		return len(segs) > 0, "segments"
	})
	atDone := load.acked()
	t.Logf("reassignment done after %v, %d records acknowledged by then", time.Since(began).Round(time.Millisecond), atDone)
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d deletes its copy", leader), func() (bool, string) {
		found, err := holdsPartition(ctx, adm, leader, topic)
		if err != nil {
			return false, err.Error()
		}
		return !found, "still listed"
	})
	for _, id := range target {
		if found, err := holdsPartition(ctx, adm, id, topic); err != nil || !found {
			t.Fatalf("node %d of the target does not list %s/0 in DescribeLogDirs (%v)", id, topic, err)
		}
	}
	// The load ran before, through and after the move.
	waitFor(t, 30*time.Second, "more records acknowledged after the move", func() (bool, string) {
		n := load.acked()
		return n > atDone, fmt.Sprintf("%d acknowledged, %d at the move's end", n, atDone)
	})
	second := load.stop(t, 1500)
	if atDone == 0 {
		t.Fatalf("no record acknowledged by the reassignment's end")
	}
	t.Logf("load: %d records acknowledged, %d of them by the move's end", len(second), atDone)

	if v := metricValue(t, c.node(leader), `tusk_segment_rolls_total{reason="reassign"}`); v != 1 {
		t.Errorf("node %d: tusk_segment_rolls_total{reason=\"reassign\"} = %v, want 1", leader, v)
	}
	if v := metricValue(t, c.node(leader), `tusk_segment_rolls_total{reason="rejoin"}`); v < 1 {
		t.Errorf("node %d: tusk_segment_rolls_total{reason=\"rejoin\"} = %v, want >= 1", leader, v)
	}
	// sarama's admin moves it back to the original replicas.
	scfg := sarama.NewConfig()
	scfg.Version = sarama.V3_7_0_0
	scfg.Admin.Retry.Max = 0
	ca, err := sarama.NewClusterAdmin(all, scfg)
	if err != nil {
		t.Fatalf("sarama NewClusterAdmin: %v", err)
	}
	defer ca.Close()
	if err := ca.AlterPartitionReassignments(topic, [][]int32{active.Replicas}); err != nil {
		t.Fatalf("sarama AlterPartitionReassignments back to %v: %v", active.Replicas, err)
	}
	waitFor(t, 60*time.Second, "sarama's reassignment back completes", func() (bool, string) {
		st, err := ca.ListPartitionReassignments(topic, []int32{0})
		if err != nil {
			return false, err.Error()
		}
		if s := st[topic][0]; s != nil {
			return false, fmt.Sprintf("in progress: replicas %v adding %v removing %v", s.Replicas, s.AddingReplicas, s.RemovingReplicas)
		}
		segs := c.segmentsVia(t, target[0], topic, 0)
		for _, s := range segs {
			if !holdsAs(s, active.Replicas) {
				return false, fmt.Sprintf("segment %d [%d, %d) replicas %v", s.ID, s.Base, s.End, s.Replicas)
			}
		}
		return len(segs) > 0, "segments"
	})
	// A one-replica topic moves too: its only copy goes to another node,
	// which then leads it, and the first node deletes its log.
	const single = "reasg-rf1"
	if r, err := adm.CreateTopic(ctx, 1, 1, nil, single); err != nil || r.Err != nil {
		t.Fatalf("create %s: %v %v", single, err, r.Err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{single: 1}, 10*time.Second)
	}
	singleRecs := producePartitions(t, all, single, []int32{0}, 800, "single", map[int32]int64{0: 0})
	ss := c.segmentsVia(t, c.ids()[0], single, 0)
	owner := ss[len(ss)-1].Leader
	dest := owner%4 + 1
	var req1 kadm.AlterPartitionAssignmentsReq
	req1.Assign(single, 0, []int32{dest})
	if resp, err := adm.AlterPartitionAssignments(ctx, req1); err != nil || resp[single][0].Err != nil {
		t.Fatalf("reassign %s from %d to %d: %v %+v", single, owner, dest, err, resp)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%s moves from node %d to node %d", single, owner, dest), func() (bool, string) {
		segs := c.segmentsVia(t, dest, single, 0)
		for _, s := range segs {
			if !holdsAs(s, []int32{dest}) {
				return false, fmt.Sprintf("segment %d [%d, %d) replicas %v leader %d", s.ID, s.Base, s.End, s.Replicas, s.Leader)
			}
		}
		return len(segs) > 0 && segs[len(segs)-1].Leader == dest, "segments"
	})
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d deletes its copy of %s", owner, single), func() (bool, string) {
		found, err := holdsPartition(ctx, adm, owner, single)
		if err != nil {
			return false, err.Error()
		}
		return !found, "still listed"
	})
	moreSingle := producePartitions(t, all, single, []int32{0}, 200, "single-after", map[int32]int64{0: 800})
	gotSingle := readPartitions(t, all, single, map[int32]int64{0: 0}, map[int32]int{0: 1000}, 60*time.Second)
	sameRecords(t, single+" after its move", append(slices.Clone(singleRecs[0]), moreSingle[0]...), gotSingle[0])

	third := producePartitions(t, all, topic, []int32{0}, 500, "after", map[int32]int64{0: 1500 + int64(len(second))})
	want := append(append(slices.Clone(first[0]), second...), third[0]...)
	got := readPartitions(t, all, topic, map[int32]int64{0: 0}, map[int32]int{0: len(want)}, 60*time.Second)
	sameRecords(t, "after the reassignment", want, got[0])
}

// holdsPartition reports whether broker id's DescribeLogDirs lists
// topic's partition 0.
func holdsPartition(ctx context.Context, adm *kadm.Client, id int32, topic string) (bool, error) {
	dirs, err := adm.DescribeBrokerLogDirs(ctx, id, kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		return false, err
	}
	found := false
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == topic && p.Partition == 0 {
				found = true
			}
		})
	})
	return found, nil
}

// holdsAs reports whether segment s is held by exactly the nodes of want;
// an empty sealed segment (no bytes to copy) by a subset of them.
func holdsAs(s dumpSegment, want []int32) bool {
	if s.State == "sealed" && s.End == s.Base {
		for _, id := range s.Replicas {
			if !slices.Contains(want, id) {
				return false
			}
		}
		return len(s.Replicas) > 0
	}
	return sameIDs(s.Replicas, want)
}

// sameIDs reports whether a and b hold the same ids in any order.
func sameIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}

func kadmStr(s string) *string { return &s }

// load is a producer writing to partition 0 of a topic in the
// background, 100 records at a time (idempotent, acks=all, keys
// "<tag>-p0-<i>"), until stopped.
type load struct {
	tag  string
	done chan struct{}
	quit chan struct{}
	mu   sync.Mutex
	recs []prodRec
	errs []string
}

func startLoad(t *testing.T, seeds []string, topic, tag string) *load {
	t.Helper()
	cl := newClusterClient(t, seeds,
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30*time.Second),
		kgo.ProducerLinger(time.Millisecond))
	l := &load{tag: tag, done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(l.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for i := 0; ; {
			select {
			case <-l.quit:
				return
			default:
			}
			for end := i + 100; i < end; i++ {
				key := fmt.Sprintf("%s-p0-%d", tag, i)
				cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(key), Value: []byte("value-" + key)}, func(r *kgo.Record, err error) {
					l.mu.Lock()
					defer l.mu.Unlock()
					if err != nil {
						l.errs = append(l.errs, fmt.Sprintf("%s/0 key %s: %v", topic, r.Key, err))
						return
					}
					l.recs = append(l.recs, prodRec{Key: string(r.Key), Value: string(r.Value), Offset: r.Offset})
				})
			}
			if err := cl.Flush(ctx); err != nil {
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Sprintf("flush: %v", err))
				l.mu.Unlock()
				return
			}
		}
	}()
	return l
}

// acked is the number of records acknowledged so far.
func (l *load) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// stop ends the load once its current 100 are acknowledged, asserts that
// every record was acknowledged at contiguous offsets from start in
// production order, and returns them in offset order.
func (l *load) stop(t *testing.T, start int64) []prodRec {
	t.Helper()
	close(l.quit)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("load: %d failed, first: %s", len(l.errs), l.errs[0])
	}
	recs := slices.Clone(l.recs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
	for i, r := range recs {
		if r.Offset != start+int64(i) || r.Key != fmt.Sprintf("%s-p0-%d", l.tag, i) {
			t.Fatalf("load: ack #%d is key %s at offset %d, want key #%d at offset %d (contiguous, in order)", i, r.Key, r.Offset, i, start+int64(i))
		}
	}
	return recs
}

// TestClusterReassignCompacted: 4 nodes, an RF=3 compacted topic written
// through many rolls and cleaned at least once. AlterPartitionAssignments
// moves it off its leader onto the spare node while a record a roll check
// goes on being produced: the move completes (ListPartitionReassignments
// empty, every segment held by the target), the target nodes commit a
// cleaning past the workload's tombstones, the old leader deletes its
// copy, the target nodes end byte-identical over the cleaned range, and
// a fresh consumer reads exactly the last value of every live key.
func TestClusterReassignCompacted(t *testing.T) {
	const topic = "reasg-compact"
	c, adm := startCompactCluster(t, 4, topic, "cluster: reassign a cleaned compacted partition off its leader", nil, nil)
	seeds := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 4*time.Minute)
	want, sentinel, _ := writeCompactWorkload(t, seeds, topic, func() int64 { return sealedEndVia(t, c, c.ids()[0], topic) },
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	var d dumpClean
	waitFor(t, compactWait, "a committed cleaning", func() (bool, string) {
		var ok bool
		d, ok = c.cleanVia(t, c.ids()[0], topic)
		return ok && d.committedUpTo() > 0, fmt.Sprintf("cleaned %+v, in flight %v", d.Cleaned, d.Clean != nil)
	})
	a := d.active()
	var spare int32 = -1
	for _, id := range c.ids() {
		if !slices.Contains(a.Replicas, id) {
			spare = id
		}
	}
	leader := a.Leader
	var target []int32
	for _, id := range a.Replicas {
		if id != leader {
			target = append(target, id)
		}
	}
	target = append(target, spare)
	if spare < 0 || len(target) != 3 {
		t.Fatalf("active segment %+v: want 3 replicas of 4 nodes", a)
	}
	t.Logf("moving %s/0 from %v (leader %d, cleaned up to %d) to %v", topic, a.Replicas, leader, d.committedUpTo(), target)
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(topic, 0, target)
	if resp, err := adm.AlterPartitionAssignments(ctx, req); err != nil || resp[topic][0].Err != nil {
		t.Fatalf("reassign: %v %+v", err, resp)
	}
	began := time.Now()
	tombstones := sentinel
	var moved time.Duration
	sentinel = produceUntil(t, seeds, topic, "during", want, 90*time.Second, "the reassignment completes and the target cleans past the tombstones", func() (bool, string) {
		if moved > 0 {
			d, ok := c.cleanVia(t, target[0], topic)
			return ok && d.committedUpTo() > tombstones, fmt.Sprintf("moved; cleaned %+v", d.Cleaned)
		}
		lr, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			return false, err.Error()
		}
		if len(lr[topic]) != 0 {
			return false, fmt.Sprintf("in progress: %+v", lr[topic][0])
		}
		segs := c.segmentsVia(t, target[0], topic, 0)
		for _, s := range segs {
			if !holdsAs(s, target) {
				return false, fmt.Sprintf("segment %d [%d, %d) replicas %v", s.ID, s.Base, s.End, s.Replicas)
			}
		}
		if len(segs) > 0 {
			moved = time.Since(began)
		}
		return false, "moved"
	})
	t.Logf("measure: reassignment done after %v, a cleaning past the tombstones after %v", moved.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d deletes its copy", leader), func() (bool, string) {
		found, err := holdsPartition(ctx, adm, leader, topic)
		if err != nil {
			return false, err.Error()
		}
		return !found, "still listed"
	})
	d, _ = c.cleanVia(t, target[0], topic)
	upTo, sum := waitIdentical(t, c, target, target[0], topic, d.committedUpTo(), compactWait)
	t.Logf("measure: nodes %v byte-identical below %d (%s)", target, upTo, sum)
	waitCompacted(t, c.kafkaAddrs(target...), topic, want, sentinel)
}

// TestClusterReassignOffsetsTopic: 4 nodes, __consumer_offsets with one
// RF=3 partition (an internal, compacted topic that never rotates, led by
// the group coordinator). AlterPartitionAssignments moves it off its
// leader onto the spare node while a group commits an offset after
// another: every commit is acknowledged, the move completes (no
// reassignment listed, every segment held by the target, a target node
// leads), the old leader deletes its copy, and OffsetFetch returns the
// last commit of every partition, before and after one more commit.
func TestClusterReassignOffsetsTopic(t *testing.T) {
	const offsets, topic, group = "__consumer_offsets", "reasg-data", "reasg-group"
	c := startClusterWith(t, 4, func(int32) []startOpt {
		return []startOpt{withFlag("groups-offsets-partitions", "1"), withFlag("replica-restore", "0s")}
	})
	card(t, "franz-go kadm AlterPartitionAssignments", "cluster: reassign __consumer_offsets while a group commits")
	all := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, all))
	ctx := ctxTimeout(t, 3*time.Minute)
	if r, err := adm.CreateTopic(ctx, 2, 3, nil, topic); err != nil || r.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, r.Err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 2}, 10*time.Second)
	}
	commit := func(at int64) error {
		var offs kadm.Offsets
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1})
		offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 2 * at, LeaderEpoch: -1})
		resp, err := adm.CommitOffsets(ctx, group, offs)
		if err == nil {
			err = resp.Error()
		}
		return err
	}
	fetched := func() (string, error) {
		resp, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resp.Error()
		}
		var out []string
		resp.Each(func(o kadm.OffsetResponse) { out = append(out, fmt.Sprintf("%s/%d=%d", o.Topic, o.Partition, o.At)) })
		slices.Sort(out)
		return fmt.Sprint(out), err
	}
	want := func(at int64) string { return fmt.Sprintf("[%s/0=%d %s/1=%d]", topic, at, topic, 2*at) }
	if err := commit(1); err != nil { // creates __consumer_offsets
		t.Fatalf("first commit: %v", err)
	}
	var segs []dumpSegment
	waitFor(t, 20*time.Second, offsets+" in the metadata", func() (bool, string) {
		segs = c.segmentsVia(t, c.ids()[0], offsets, 0)
		return len(segs) > 0 && len(segs[len(segs)-1].Replicas) == 3, fmt.Sprintf("%+v", segs)
	})
	active := segs[len(segs)-1]
	leader := active.Leader
	var spare int32 = -1
	var target []int32
	for _, id := range c.ids() {
		if !slices.Contains(active.Replicas, id) {
			spare = id
		} else if id != leader {
			target = append(target, id)
		}
	}
	target = append(target, spare)
	t.Logf("moving %s/0 from %v (leader %d) to %v", offsets, active.Replicas, leader, target)
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(offsets, 0, target)
	if resp, err := adm.AlterPartitionAssignments(ctx, req); err != nil || resp[offsets][0].Err != nil {
		t.Fatalf("reassign: %v %+v", err, resp)
	}
	began := time.Now()
	at := int64(1)
	waitFor(t, 90*time.Second, "the reassignment completes while the group commits", func() (bool, string) {
		at++
		if err := commit(at); err != nil {
			t.Fatalf("commit %d while moving: %v", at, err)
		}
		lr, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{offsets: {0: {}}})
		if err != nil {
			return false, err.Error()
		}
		if len(lr[offsets]) != 0 {
			return false, fmt.Sprintf("in progress: %+v", lr[offsets][0])
		}
		segs := c.segmentsVia(t, target[0], offsets, 0)
		for _, s := range segs {
			if !holdsAs(s, target) {
				return false, fmt.Sprintf("segment %d [%d, %d) replicas %v", s.ID, s.Base, s.End, s.Replicas)
			}
		}
		return len(segs) > 0 && slices.Contains(target, segs[len(segs)-1].Leader), fmt.Sprintf("segments %+v", segs)
	})
	t.Logf("measure: reassignment done after %v, %d commits", time.Since(began).Round(time.Millisecond), at)
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d deletes its copy", leader), func() (bool, string) {
		found, err := holdsPartition(ctx, adm, leader, offsets)
		if err != nil {
			return false, err.Error()
		}
		return !found, "still listed"
	})
	waitFor(t, 30*time.Second, "the last commit fetched back", func() (bool, string) {
		got, err := fetched()
		return err == nil && got == want(at), fmt.Sprintf("%s (err %v), want %s", got, err, want(at))
	})
	at++
	if err := commit(at); err != nil {
		t.Fatalf("commit after the move: %v", err)
	}
	if got, err := fetched(); err != nil || got != want(at) {
		t.Fatalf("after one more commit: %s (err %v), want %s", got, err, want(at))
	}
}
