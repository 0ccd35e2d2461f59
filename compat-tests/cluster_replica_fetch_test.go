package compat

import (
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterReplicaFetchOnClientListener: replica fetches are node
// traffic. A client that sends the leader's Kafka port a Fetch carrying a
// real follower's ReplicaID and an offset above what the followers hold
// gets CLUSTER_AUTHORIZATION_FAILED, and neither the high watermark nor a
// pending acks=all Produce moves (before the fix the fetch counted as
// the follower's acknowledgement: invariant I1). Both followers are frozen
// (SIGSTOP) meanwhile, with a lease long enough that nobody is fenced.
func TestClusterReplicaFetchOnClientListener(t *testing.T) {
	skipClusterInKfakeMode(t)
	const topic = "spoofed"
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, 8*time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", "200ms")
	t.Setenv("TUSK_REPLICA_LAG_TIME_MAX", scaled(t, 30*time.Second).String())
	c := startCluster(t, 3)
	card(t, "raw kmsg", "cluster: a Fetch with a follower's ReplicaID on the client port is refused; HW and acks=all waits stay")
	ids := c.ids()
	ctrl := c.waitLeader(t, ids, ids, 15*time.Second)
	var followers []int32
	for _, id := range ids {
		if id != ctrl {
			followers = append(followers, id)
		}
	}
	// The Raft leader leads the partition, so its lease never depends on
	// the frozen followers.
	leader := c.raw(t, ctrl)
	ct := kmsg.NewCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
	ra.Partition, ra.Replicas = 0, []int32{ctrl, followers[0], followers[1]}
	rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
	cfg := kmsg.NewCreateTopicsRequestTopicConfig()
	cfg.Name, cfg.Value = "segment.rotate", strp("false")
	rt.Configs = append(rt.Configs, cfg)
	ct.Topics = append(ct.Topics, rt)
	ct.TimeoutMillis = 10000
	resp, err := leader.do(&ct, 5, 15*time.Second)
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if code := resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic: %s", errName(code))
	}
	for _, id := range ids {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	if l := c.metadataOf(t, ctrl, []string{topic}).Topics[topic].Leaders[0]; l != ctrl {
		t.Fatalf("leader %d; want %d (the assignment's first replica)", l, ctrl)
	}
	// Five records on all three replicas: HW 5.
	producePartitions(t, c.kafkaAddrs(ctrl), topic, []int32{0}, 5, "before", nil)
	waitFor(t, 10*time.Second, "HW 5", func() (bool, string) {
		hw := listEnd(t, leader, topic)
		return hw == 5, "HW " + strconv.FormatInt(hw, 10)
	})

	for _, id := range followers {
		pid := c.node(id).cmd.Process.Pid
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	}
	// An acks=all Produce of one record (offset 5) that no follower can
	// fetch: it must stay pending.
	pc := dialRaw(t, c.node(ctrl).Kafka)
	pr := kmsg.NewPtrProduceRequest()
	pr.Version, pr.Acks, pr.TimeoutMillis = 9, -1, 30000
	prt := kmsg.NewProduceRequestTopic()
	prt.Topic = topic
	prp := kmsg.NewProduceRequestTopicPartition()
	prp.Records = buildBatch([][]byte{[]byte("pending")}, time.Now().UnixMilli())
	prt.Partitions = append(prt.Partitions, prp)
	pr.Topics = append(pr.Topics, prt)
	if _, err := pc.send(pr); err != nil {
		t.Fatal(err)
	}
	// An acks=1 Produce on another connection is answered once its
	// record is in the leader's log; offset 6 shows the pending one is in
	// too (offset 5), so the spoofed fetches below come after it.
	one := kmsg.NewPtrProduceRequest()
	one.Acks, one.TimeoutMillis = 1, 10000
	ot := kmsg.NewProduceRequestTopic()
	ot.Topic = topic
	op := kmsg.NewProduceRequestTopicPartition()
	op.Records = buildBatch([][]byte{[]byte("acks=1")}, time.Now().UnixMilli())
	ot.Partitions = append(ot.Partitions, op)
	one.Topics = append(one.Topics, ot)
	waitFor(t, 10*time.Second, "the acks=1 record at offset 6", func() (bool, string) {
		r, err := newRawClient(t, c.node(ctrl).Kafka).do(one, 9, 10*time.Second)
		if err != nil {
			t.Fatalf("acks=1 produce: %v", err)
		}
		p := r.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != 6 {
			t.Fatalf("acks=1 produce: %s at offset %d; want NONE at 6 (after the pending acks=all record)", errName(p.ErrorCode), p.BaseOffset)
		}
		return true, ""
	})

	// Spoofed replica fetches: each follower's id, an offset above
	// everything the followers hold.
	for _, id := range followers {
		fc := dialRaw(t, c.node(ctrl).Kafka)
		fr := kmsg.NewPtrFetchRequest()
		fr.Version, fr.ReplicaID, fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 11, id, 0, 1, 1<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.CurrentLeaderEpoch, fp.PartitionMaxBytes = 0, 7, -1, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
		fr.Topics = append(fr.Topics, ft)
		r, err := fc.roundTrip(fr)
		if err != nil {
			t.Fatalf("spoofed fetch as node %d: %v", id, err)
		}
		f := r.(*kmsg.FetchResponse)
		code := f.ErrorCode
		if code == 0 && len(f.Topics) == 1 && len(f.Topics[0].Partitions) == 1 {
			code = f.Topics[0].Partitions[0].ErrorCode
		}
		if code != kerr.ClusterAuthorizationFailed.Code {
			t.Errorf("spoofed replica fetch as node %d answered %s; want CLUSTER_AUTHORIZATION_FAILED", id, errName(code))
		}
	}
	if hw := listEnd(t, leader, topic); hw != 5 {
		t.Fatalf("HW %d after spoofed replica fetches, with both followers frozen; want 5", hw)
	}
	if body, err := pc.readFrame(time.Second); err == nil {
		t.Fatalf("the acks=all Produce was answered while no follower holds its record: %x", body)
	} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("waiting for the pending Produce: %v", err)
	}

	// Thawed, the followers fetch the record for real: the Produce is
	// acknowledged at offset 5 and the HW reaches 7.
	for _, id := range followers {
		if err := syscall.Kill(c.node(id).cmd.Process.Pid, syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
	}
	body, err := pc.readFrame(20 * time.Second)
	if err != nil {
		t.Fatalf("the acks=all Produce after the thaw: %v", err)
	}
	presp := kmsg.NewPtrProduceResponse()
	presp.Version = pr.Version
	if err := presp.ReadFrom(body[5:]); err != nil { // correlation id, header tagged fields
		t.Fatal(err)
	}
	if p := presp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != 5 {
		t.Fatalf("produce after the thaw: %s at offset %d; want NONE at 5", errName(p.ErrorCode), p.BaseOffset)
	}
	waitFor(t, 10*time.Second, "HW 7 after the thaw", func() (bool, string) {
		hw := listEnd(t, leader, topic)
		return hw == 7, "HW " + strconv.FormatInt(hw, 10)
	})
	t.Logf("measure: spoofed replica fetches refused; HW stayed at 5 with the followers frozen and reached 7 after the thaw")
}

// listEnd is the partition's latest offset (the high watermark) as the
// node answers ListOffsets.
func listEnd(t *testing.T, r *rawClient, topic string) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Partition, lp.Timestamp, lp.CurrentLeaderEpoch = 0, -1, -1
	lt.Partitions = append(lt.Partitions, lp)
	req.Topics = append(req.Topics, lt)
	resp, err := r.do(req, 7, 10*time.Second)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("list offsets: %s", errName(p.ErrorCode))
	}
	return p.Offset
}
