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
	ff := startFrozenFollowers(t, 30000, "raw kmsg", "cluster: a Fetch with a follower's ReplicaID on the client port is refused; HW and acks=all waits stay")
	c, ctrl, followers, leader, pc, pr := ff.c, ff.leader, ff.followers, ff.raw, ff.pending, ff.req
	at, leo := ff.at, ff.leo
	const topic = frozenTopic

	// Spoofed replica fetches: each follower's id, an offset above
	// everything the followers hold.
	for _, id := range followers {
		fc := dialRaw(t, c.node(ctrl).Kafka)
		fr := kmsg.NewPtrFetchRequest()
		fr.Version, fr.ReplicaID, fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 11, id, 0, 1, 1<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.CurrentLeaderEpoch, fp.PartitionMaxBytes = 0, leo, -1, 1<<20
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
	// acknowledged at its offset and the HW reaches the log end.
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
	if p := presp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != at {
		t.Fatalf("produce after the thaw: %s at offset %d; want NONE at %d", errName(p.ErrorCode), p.BaseOffset, at)
	}
	waitFor(t, 10*time.Second, "HW at the log end after the thaw", func() (bool, string) {
		hw := listEnd(t, leader, topic)
		return hw == leo, "HW " + strconv.FormatInt(hw, 10) + ", want " + strconv.FormatInt(leo, 10)
	})
	t.Logf("measure: spoofed replica fetches refused; HW stayed at 5 with the followers frozen and reached %d after the thaw", leo)
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

// frozenFollowers is an RF=3 partition whose leader is the Raft leader
// and whose two followers are frozen (SIGSTOP, thawed at cleanup) while an
// acks=all Produce of one record waits on pending: offsets 0-4 are on all
// replicas (HW 5); the pending record (offset at) and one or more acks=1
// records are on the leader only, up to its log end offset leo. The lease is long enough that nobody is
// fenced meanwhile.
type frozenFollowers struct {
	c         *cluster
	leader    int32
	followers []int32
	raw       *rawClient
	pending   *rawConn
	req       *kmsg.ProduceRequest
	at        int64 // the pending record's offset
	leo       int64 // the leader's log end offset
}

const frozenTopic = "frozen-followers"

func startFrozenFollowers(t *testing.T, timeoutMillis int32, client, scenario string) frozenFollowers {
	t.Helper()
	skipClusterInKfakeMode(t)
	const topic = frozenTopic
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, 8*time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", "200ms")
	t.Setenv("TUSK_REPLICA_LAG_TIME_MAX", scaled(t, 30*time.Second).String())
	c := startCluster(t, 3)
	card(t, client, scenario)
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
	pr.Version, pr.Acks, pr.TimeoutMillis = 9, -1, timeoutMillis
	prt := kmsg.NewProduceRequestTopic()
	prt.Topic = topic
	prp := kmsg.NewProduceRequestTopicPartition()
	prp.Records = buildBatch([][]byte{[]byte("pending")}, time.Now().UnixMilli())
	prt.Partitions = append(prt.Partitions, prp)
	pr.Topics = append(pr.Topics, prt)
	if _, err := pc.send(pr); err != nil {
		t.Fatal(err)
	}
	// acks=1 Produces on another connection are answered once their
	// record is in the leader's log. One that lands after the pending
	// record (offset 5+k+1 for the k-th) shows it is in the log too, so
	// what follows comes after it.
	one := kmsg.NewPtrProduceRequest()
	one.Acks, one.TimeoutMillis = 1, 10000
	ot := kmsg.NewProduceRequestTopic()
	ot.Topic = topic
	op := kmsg.NewProduceRequestTopicPartition()
	op.Records = buildBatch([][]byte{[]byte("acks=1")}, time.Now().UnixMilli())
	ot.Partitions = append(ot.Partitions, op)
	one.Topics = append(one.Topics, ot)
	oc := newRawClient(t, c.node(ctrl).Kafka)
	k := int64(0)
	waitFor(t, 10*time.Second, "an acks=1 record after the pending one", func() (bool, string) {
		r, err := oc.do(one, 9, 10*time.Second)
		if err != nil {
			t.Fatalf("acks=1 produce: %v", err)
		}
		p := r.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		switch {
		case p.ErrorCode == 0 && p.BaseOffset == 5+k+1:
			return true, ""
		case p.ErrorCode == 0 && p.BaseOffset == 5+k:
			k++ // before the pending record
			return false, "acks=1 records ahead of the pending one: " + strconv.FormatInt(k, 10)
		}
		t.Fatalf("acks=1 produce: %s at offset %d; want NONE at %d or %d", errName(p.ErrorCode), p.BaseOffset, 5+k, 5+k+1)
		return false, ""
	})
	return frozenFollowers{c: c, leader: ctrl, followers: followers, raw: leader, pending: pc, req: pr, at: 5 + k, leo: 5 + k + 2}
}

// TestClusterShutdownWithPendingAcks: an acks=all Produce waiting for
// frozen followers does not hold a SIGTERM'd leader: the wait ends when
// the shutdown begins (before, with the shutdown grace period, 2 s here),
// the client gets NOT_LEADER_OR_FOLLOWER (or the connection closes), and
// the node exits 0. Before that, the wait ran on an untracked timer of its
// own (the Produce's 60 s timeout) and the node hung that long.
func TestClusterShutdownWithPendingAcks(t *testing.T) {
	t.Setenv("TUSK_SHUTDOWN_TIMEOUT", "2s")
	ff := startFrozenFollowers(t, 60000, "raw kmsg + SIGTERM", "cluster: SIGTERM with an acks=all Produce pending stops within the shutdown grace period")
	began := time.Now()
	errs := ff.c.stopNodes([]int32{ff.leader})
	took := time.Since(began)
	for _, err := range errs {
		t.Error(err)
	}
	if took > 15*time.Second {
		t.Fatalf("the leader took %v to stop with a pending acks=all Produce (grace 2 s)", took)
	}
	body, err := ff.pending.readFrame(5 * time.Second)
	if err == nil {
		presp := kmsg.NewPtrProduceResponse()
		presp.Version = ff.req.Version
		if err := presp.ReadFrom(body[5:]); err != nil {
			t.Fatal(err)
		}
		if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
			t.Fatalf("pending Produce answered %s at shutdown; want NOT_LEADER_OR_FOLLOWER", errName(code))
		}
	}
	t.Logf("measure: leader stopped %v after SIGTERM with an acks=all Produce pending (answer: %v)", took, err == nil)
}
