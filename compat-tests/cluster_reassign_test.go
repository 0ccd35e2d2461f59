package compat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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

	second := producePartitions(t, all, topic, []int32{0}, 1500, "during", map[int32]int64{0: 1500})

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
	t.Logf("reassignment done after %v", time.Since(began).Round(time.Millisecond))
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
	third := producePartitions(t, all, topic, []int32{0}, 500, "after", map[int32]int64{0: 3000})
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

	want := append(append(slices.Clone(first[0]), second[0]...), third[0]...)
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
