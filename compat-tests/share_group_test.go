package compat

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-932 share-group membership (ShareGroupHeartbeat, ShareGroupDescribe,
// share groups in ListGroups and DeleteGroups; issue 17 part B) with raw
// kmsg requests routed by kgo and kadm's describe: exact member epochs
// and assignments at every step (the simple assignor), type conflicts
// with classic and consumer groups, session expiry, and the group
// replayed by a restarted node and by a new coordinator after a kill -9.

func shareFlags() []startOpt {
	return []startOpt{
		withFlag("groups-share-session-timeout", "3s"),
		withFlag("groups-share-heartbeat-interval", "500ms"),
	}
}

type shareHBClient struct {
	t  *testing.T
	cl *kgo.Client
}

func (s shareHBClient) hb(group, member string, epoch int32, topics ...string) *kmsg.ShareGroupHeartbeatResponse {
	s.t.Helper()
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch = group, member, epoch
	if topics != nil {
		req.SubscribedTopicNames = topics
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := req.RequestWith(ctx, s.cl)
		if err != nil {
			s.t.Fatalf("ShareGroupHeartbeat %s/%s epoch %d: %v", group, member, epoch, err)
		}
		// A client retries these (the coordinator moved or is
		// loading); nothing was changed.
		switch resp.ErrorCode {
		case kerr.NotCoordinator.Code, kerr.CoordinatorLoadInProgress.Code, kerr.CoordinatorNotAvailable.Code:
			if ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		return resp
	}
}

// expect checks an answer: error code, epoch, and the assignment (nil:
// none sent) as topic id → partitions.
func (s shareHBClient) expect(what string, resp *kmsg.ShareGroupHeartbeatResponse, code int16, epoch int32, want map[[16]byte][]int32) {
	s.t.Helper()
	if resp.ErrorCode != code {
		s.t.Fatalf("%s: error %v, want %v (%v)", what, kerr.ErrorForCode(resp.ErrorCode), kerr.ErrorForCode(code), resp.ErrorMessage)
	}
	if code != 0 {
		return
	}
	if resp.MemberEpoch != epoch {
		s.t.Fatalf("%s: epoch %d, want %d", what, resp.MemberEpoch, epoch)
	}
	var got map[[16]byte][]int32
	if resp.Assignment != nil {
		got = map[[16]byte][]int32{}
		for _, tp := range resp.Assignment.TopicPartitions {
			got[tp.TopicID] = tp.Partitions
		}
	}
	if !reflect.DeepEqual(got, want) {
		s.t.Fatalf("%s: assignment %v, want %v", what, got, want)
	}
}

func topicID(t *testing.T, adm *kadm.Client, topic string) [16]byte {
	t.Helper()
	td, err := adm.ListTopics(ctxTimeout(t, 10*time.Second), topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("list %s: %v %v", topic, err, td[topic].Err)
	}
	return td[topic].ID
}

// describeShare describes one share group with kadm.
func describeShare(t *testing.T, adm *kadm.Client, group string) kadm.DescribedShareGroup {
	t.Helper()
	ds, err := adm.DescribeShareGroups(ctxTimeout(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("DescribeShareGroups: %v", err)
	}
	return ds[group]
}

// shareSummary is a described group as one comparable string: state,
// epochs, assignor, and each member's id, epoch, subscription and
// assignment.
func shareSummary(d kadm.DescribedShareGroup) string {
	s := fmt.Sprintf("%s epoch %d/%d %s", d.GroupState, d.GroupEpoch, d.AssignmentEpoch, d.Assignor)
	for _, m := range d.Members {
		var parts []string
		for topic, ps := range m.Assignment {
			for p := range ps {
				parts = append(parts, fmt.Sprintf("%s/%d", topic, p))
			}
		}
		sort.Strings(parts)
		s += fmt.Sprintf("; %s@%d %v %v", m.MemberID, m.MemberEpoch, m.SubscribedTopicNames, parts)
	}
	return s
}

// TestShareGroupMembership drives share-group membership on one node.
func TestShareGroupMembership(t *testing.T) {
	card(t, "franz-go kmsg + kadm", "KIP-932 share groups: heartbeat epochs, describe, list, delete, expiry, restart")
	n := startTusk(t, shareFlags()...)
	adm, cl := newAdm(t, n)
	sc := shareHBClient{t, cl}
	const topic, group = "sgm", "sgm-group"
	createTopic(t, adm, topic, 2, nil)
	waitTopicReady(t, adm, topic, 2)
	id := topicID(t, adm, topic)

	sc.expect("missing group", sc.hb(group, "a", 1), kerr.GroupIDNotFound.Code, 0, nil)
	sc.expect("join without topics", sc.hb(group, "a", 0), kerr.InvalidRequest.Code, 0, nil)
	sc.expect("a joins", sc.hb(group, "a", 0, topic), 0, 1, map[[16]byte][]int32{id: {0, 1}})
	sc.expect("b joins", sc.hb(group, "b", 0, topic), 0, 2, map[[16]byte][]int32{id: {1}})
	sc.expect("a steady at 1: moves to 2", sc.hb(group, "a", 1), 0, 2, map[[16]byte][]int32{id: {0}})
	sc.expect("a steady", sc.hb(group, "a", 2), 0, 2, nil)
	sc.expect("a ahead", sc.hb(group, "a", 3), kerr.FencedMemberEpoch.Code, 0, nil)
	sc.expect("c joins: shares partition 0", sc.hb(group, "c", 0, topic), 0, 3, map[[16]byte][]int32{id: {0}})
	sc.expect("unknown member", sc.hb(group, "zz", 3), kerr.UnknownMemberID.Code, 0, nil)

	want := fmt.Sprintf("Stable epoch 3/3 simple; a@2 [%[1]s] [%[1]s/0]; b@2 [%[1]s] [%[1]s/1]; c@3 [%[1]s] [%[1]s/0]", topic)
	d := describeShare(t, adm, group)
	if d.Err != nil || shareSummary(d) != want {
		t.Fatalf("describe: %v\n got %s\nwant %s", d.Err, shareSummary(d), want)
	}
	for _, m := range d.Members {
		if m.ClientID != "tusk-compat" || m.ClientHost != "/127.0.0.1" {
			t.Fatalf("member %s client %q host %q", m.MemberID, m.ClientID, m.ClientHost)
		}
	}

	// Type conflicts and listing.
	ctx := ctxTimeout(t, 30*time.Second)
	jreq := kmsg.NewPtrJoinGroupRequest()
	jreq.Group, jreq.ProtocolType, jreq.SessionTimeoutMillis, jreq.RebalanceTimeoutMillis = group, "consumer", 10000, 10000
	jreq.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 0, 0, 0}}}
	if r, err := jreq.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("JoinGroup on a share group: %v %v", err, r)
	}
	creq := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	creq.Group, creq.MemberID, creq.RebalanceTimeoutMillis, creq.SubscribedTopicNames = group, "x", 1000, []string{topic}
	creq.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if r, err := creq.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("ConsumerGroupHeartbeat on a share group: %v %+v", err, r)
	}
	listed, err := adm.ListGroupsByType(ctx, []string{"share"})
	if err != nil {
		t.Fatalf("list share groups: %v", err)
	}
	if g, ok := listed[group]; len(listed) != 1 || !ok || g.State != "Stable" || g.ProtocolType != "share" {
		t.Fatalf("listed share groups: %+v", listed)
	}
	if listed, _ := adm.ListGroupsByType(ctx, []string{"classic", "consumer"}); len(listed) != 0 {
		t.Fatalf("listed other types: %+v", listed)
	}
	dr, err := adm.DeleteGroups(ctx, group)
	if err != nil || !errorIs(dr[group].Err, kerr.NonEmptyGroup) {
		t.Fatalf("delete non-empty: %v %+v", err, dr)
	}

	// B leaves; C's session expires (no heartbeats); A keeps beating.
	sc.expect("b leaves", sc.hb(group, "b", -1), 0, -1, nil)
	sc.expect("b leaves again", sc.hb(group, "b", -1), kerr.UnknownMemberID.Code, 0, nil)
	epochA := int32(2)
	waitFor(t, 20*time.Second, "c's session to expire", func() (bool, string) {
		r := sc.hb(group, "a", epochA)
		sc.expect("a beats", r, 0, r.MemberEpoch, assignmentOrNil(r))
		epochA = r.MemberEpoch
		d := describeShare(t, adm, group)
		return len(d.Members) == 1, shareSummary(d)
	})
	// b's leave made epoch 4, c's expiry 5; a heartbeats to 5.
	sc.expect("a after the expiry", sc.hb(group, "a", epochA, topic), 0, 5, map[[16]byte][]int32{id: {0, 1}})
	want = fmt.Sprintf("Stable epoch 5/5 simple; a@5 [%[1]s] [%[1]s/0 %[1]s/1]", topic)
	if got := shareSummary(describeShare(t, adm, group)); got != want {
		t.Fatalf("after expiry:\n got %s\nwant %s", got, want)
	}

	// A restarted node replays the group from __consumer_offsets.
	n.Stop(t)
	n = n.Restart(t)
	adm, cl = newAdm(t, n)
	sc = shareHBClient{t, cl}
	waitFor(t, 20*time.Second, "the replayed group", func() (bool, string) {
		d := describeShare(t, adm, group)
		return d.Err == nil && shareSummary(d) == want, fmt.Sprint(d.Err, " ", shareSummary(d))
	})
	sc.expect("a after the restart", sc.hb(group, "a", 5), 0, 5, nil)
	sc.expect("a leaves", sc.hb(group, "a", -1), 0, -1, nil)
	if got := shareSummary(describeShare(t, adm, group)); got != "Empty epoch 6/6 simple" {
		t.Fatalf("empty group: %s", got)
	}

	// A group whose topic does not exist has no share state: deleted at once.
	const other = "sgm-none"
	sc.expect("join a missing topic", sc.hb(other, "m", 0, "sgm-missing"), 0, 1, map[[16]byte][]int32{})
	sc.expect("leave", sc.hb(other, "m", -1), 0, -1, nil)
	dr, err = adm.DeleteGroups(ctx, other)
	if err != nil || dr[other].Err != nil {
		t.Fatalf("delete: %v %+v", err, dr)
	}
	if d := describeShare(t, adm, other); !errorIs(d.Err, kerr.GroupIDNotFound) {
		t.Fatalf("deleted group described: %v %s", d.Err, shareSummary(d))
	}
	// A group whose topic was deleted is deleted (the topic's share
	// state went with it).
	const gone = "sgm-gone"
	createTopic(t, adm, gone, 1, nil)
	waitTopicReady(t, adm, gone, 1)
	sc.expect("join a topic about to go", sc.hb(gone, "m", 0, gone), 0, 1, map[[16]byte][]int32{topicID(t, adm, gone): {0}})
	sc.expect("leave it", sc.hb(gone, "m", -1), 0, -1, nil)
	if r, err := adm.DeleteTopics(ctx, gone); err != nil || r[gone].Err != nil {
		t.Fatalf("delete topic: %v %v", err, r[gone].Err)
	}
	dr, err = adm.DeleteGroups(ctx, gone)
	if err != nil || dr[gone].Err != nil {
		t.Fatalf("delete a group of a deleted topic: %v %+v", err, dr)
	}

	// Deleted for good: a restart does not bring it back.
	n.Stop(t)
	n = n.Restart(t)
	adm, _ = newAdm(t, n)
	if d := describeShare(t, adm, other); !errorIs(d.Err, kerr.GroupIDNotFound) {
		t.Fatalf("deleted group after a restart: %v %s", d.Err, shareSummary(d))
	}
}

func assignmentOrNil(r *kmsg.ShareGroupHeartbeatResponse) map[[16]byte][]int32 {
	if r.Assignment == nil {
		return nil
	}
	out := map[[16]byte][]int32{}
	for _, tp := range r.Assignment.TopicPartitions {
		out[tp.TopicID] = tp.Partitions
	}
	return out
}

func errorIs(err error, want *kerr.Error) bool {
	ke, ok := err.(*kerr.Error)
	return ok && ke == want
}

// TestClusterShareGroupCoordinatorKill: on 3 nodes a share group survives
// a kill -9 of its coordinator: the new coordinator describes the same
// members, epochs and assignments, and the members carry on at their
// epochs.
func TestClusterShareGroupCoordinatorKill(t *testing.T) {
	card(t, "franz-go kmsg + kadm, kill -9", "cluster: share group coordinator killed, membership survives")
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("groups-share-session-timeout", "20s"), withFlag("groups-share-heartbeat-interval", "500ms")}
	})
	all := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, all))
	const topic, group = "sgk", "sgk-group"
	createTopic(t, adm, topic, 3, nil)
	waitTopicReady(t, adm, topic, 3)
	id := topicID(t, adm, topic)
	sc := shareHBClient{t, newClusterClient(t, all)}
	sc.expect("a joins", sc.hb(group, "a", 0, topic), 0, 1, map[[16]byte][]int32{id: {0, 1, 2}})
	sc.expect("b joins", sc.hb(group, "b", 0, topic), 0, 2, map[[16]byte][]int32{id: {2}})
	sc.expect("a moves", sc.hb(group, "a", 1), 0, 2, map[[16]byte][]int32{id: {0, 1}})
	want := fmt.Sprintf("Stable epoch 2/2 simple; a@2 [%[1]s] [%[1]s/0 %[1]s/1]; b@2 [%[1]s] [%[1]s/2]", topic)
	if got := shareSummary(describeShare(t, adm, group)); got != want {
		t.Fatalf("before:\n got %s\nwant %s", got, want)
	}

	var coord int32 = -1
	adm.FindGroupCoordinators(ctxTimeout(t, 10*time.Second), group).Each(func(d kadm.FindCoordinatorResponse) {
		if d.Err != nil {
			t.Fatalf("FindCoordinator: %v", d.Err)
		}
		coord = d.NodeID
	})
	c.node(coord).Kill9(t)
	killed := time.Now()
	var live []int32
	for _, nid := range c.ids() {
		if nid != coord {
			live = append(live, nid)
		}
	}
	waitFor(t, 30*time.Second, "a new coordinator with the group", func() (bool, string) {
		// A fresh client each time: kgo keeps a coordinator it cannot
		// dial cached.
		lcl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs(live...)...), kgo.ClientID("tusk-compat"))
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		defer lcl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ds, err := kadm.NewClient(lcl).DescribeShareGroups(ctx, group)
		if err != nil {
			return false, err.Error()
		}
		d := ds[group]
		if d.Err != nil {
			return false, d.Err.Error()
		}
		if d.Coordinator.NodeID == coord {
			return false, "old coordinator"
		}
		if got := shareSummary(d); got != want {
			t.Fatalf("new coordinator %d describes\n %s\nwant %s", d.Coordinator.NodeID, got, want)
		}
		return true, ""
	})
	t.Logf("measure: share group described by a new coordinator %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	sc = shareHBClient{t, newClusterClient(t, c.kafkaAddrs(live...))}
	sc.expect("a after the kill", sc.hb(group, "a", 2), 0, 2, nil)
	sc.expect("b leaves", sc.hb(group, "b", -1), 0, -1, nil)
	sc.expect("a takes all", sc.hb(group, "a", 2, topic), 0, 3, map[[16]byte][]int32{id: {0, 1, 2}})
	sc.expect("a leaves", sc.hb(group, "a", -1), 0, -1, nil)

	// Listed (kadm asks every live node) and deleted on the new coordinator.
	ladm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(live...)))
	ctx := ctxTimeout(t, 30*time.Second)
	listed, err := ladm.ListGroupsByType(ctx, []string{"share"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if g, ok := listed[group]; len(listed) != 1 || !ok || g.State != "Empty" || g.ProtocolType != "share" {
		t.Fatalf("listed share groups: %+v", listed)
	}
	dr, err := ladm.DeleteGroups(ctx, group)
	if err != nil || dr[group].Err != nil {
		t.Fatalf("delete: %v %+v", err, dr)
	}
	if d := describeShare(t, ladm, group); !errorIs(d.Err, kerr.GroupIDNotFound) {
		t.Fatalf("deleted group described: %v %s", d.Err, shareSummary(d))
	}
}

// shareOffsets describes one share group's offsets with kadm (nil topics:
// every partition with state): topic/partition → start offset, and the
// group's error.
func shareOffsets(t *testing.T, adm *kadm.Client, group string) (map[string]int64, error) {
	t.Helper()
	ds, err := adm.DescribeShareGroupOffsets(ctxTimeout(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("DescribeShareGroupOffsets: %v", err)
	}
	d := ds[group]
	out := map[string]int64{}
	for topic, ps := range d.Offsets {
		for p, o := range ps {
			if o.Err != nil {
				t.Fatalf("%s/%d: %v", topic, p, o.Err)
			}
			out[fmt.Sprintf("%s/%d", topic, p)] = o.StartOffset
		}
	}
	return out, d.Err
}

// shareLags is shareOffsets' lag: topic/partition → lag.
func shareLags(t *testing.T, adm *kadm.Client, group string) map[string]int64 {
	t.Helper()
	ds, err := adm.DescribeShareGroupOffsets(ctxTimeout(t, 15*time.Second), group)
	if err != nil || ds[group].Err != nil {
		t.Fatalf("DescribeShareGroupOffsets: %v %v", err, ds[group].Err)
	}
	out := map[string]int64{}
	for topic, ps := range ds[group].Offsets {
		for p, o := range ps {
			out[fmt.Sprintf("%s/%d", topic, p)] = o.Lag
		}
	}
	return out
}

// TestShareGroupKgo: four kgo share consumers (kgo.ShareGroup) read one
// partition together; every record is delivered and acknowledged exactly
// once, to members that all hold the partition. Around it the offsets
// APIs: AlterShareGroupOffsets creates the group at offset 0 (so records
// produced before the consumers are read) and is refused while members
// are in; DescribeShareGroupOffsets follows the start offset to the end;
// DeleteShareGroupOffsets and DeleteGroups remove the state and the group.
func TestShareGroupKgo(t *testing.T) {
	card(t, "franz-go kgo ShareGroup + kadm", "KIP-932 share group: 4 consumers on one partition, offsets APIs")
	n := startTusk(t, shareFlags()...)
	adm, cl := newAdm(t, n)
	newClient := func(opts ...kgo.Opt) *kgo.Client { return newKgo(t, n, opts...) }
	runShareKgo(t, adm, cl, newClient, "sgk1", 400)
}

// TestClusterShareGroupKgo is TestShareGroupKgo on 3 nodes, the
// partition replicated 3 times, the clients seeded with every node.
func TestClusterShareGroupKgo(t *testing.T) {
	card(t, "franz-go kgo ShareGroup + kadm", "cluster: KIP-932 share group: 4 consumers on one RF=3 partition, offsets APIs")
	c := startClusterWith(t, 3, func(int32) []startOpt { return shareFlags() })
	all := c.kafkaAddrs(c.ids()...)
	cl := newClusterClient(t, all)
	adm := kadm.NewClient(cl)
	newClient := func(opts ...kgo.Opt) *kgo.Client { return newClusterClient(t, all, opts...) }
	runShareKgo(t, adm, cl, newClient, "sgk3", 400)
}

func runShareKgo(t *testing.T, adm *kadm.Client, cl *kgo.Client, newClient func(...kgo.Opt) *kgo.Client, topic string, total int) {
	group := topic + "-group"
	if _, err := adm.CreateTopic(ctxTimeout(t, 20*time.Second), 1, -1, nil, topic); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	waitTopicReady(t, adm, topic, 1)
	ctx := ctxTimeout(t, 2*time.Minute)
	for i := 0; i < total; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v%03d", i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	if _, err := shareOffsets(t, adm, group); !errorIs(err, kerr.GroupIDNotFound) {
		t.Fatalf("offsets of a missing group: %v", err)
	}
	var at kadm.Offsets
	at.AddOffset(topic, 0, 0, -1)
	if r, err := adm.AlterShareGroupOffsets(ctx, group, at); err != nil || !r.Ok() {
		t.Fatalf("alter: %v %v", err, r.Error())
	}
	if got, err := shareOffsets(t, adm, group); err != nil || !reflect.DeepEqual(got, map[string]int64{topic + "/0": 0}) {
		t.Fatalf("offsets after alter: %v %v", got, err)
	}
	// The lag (v1) is every record: the high watermark, asked of the
	// partition's leader, less the start offset.
	if got := shareLags(t, adm, group); !reflect.DeepEqual(got, map[string]int64{topic + "/0": int64(total)}) {
		t.Fatalf("lag after alter: %v, want %d", got, total)
	}
	if d := describeShare(t, adm, group); d.Err != nil || shareSummary(d) != "Empty epoch 0/0 simple" {
		t.Fatalf("created group: %v %s", d.Err, shareSummary(d))
	}

	var (
		mu     sync.Mutex
		seen   = map[int64]int{}
		values = map[int64]string{}
		ackErr []string
	)
	var members []*kgo.Client
	var wg sync.WaitGroup
	pollCtx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	for i := 0; i < 4; i++ {
		members = append(members, pollShare(pollCtx, &wg, newClient, group, topic, sharePoll{
			record: func(r *kgo.Record) kgo.AckStatus {
				mu.Lock()
				seen[r.Offset]++
				values[r.Offset] = string(r.Value)
				mu.Unlock()
				return kgo.AckAccept
			},
			fetchErr: func(tp string, p int32, err error) {
				if pollCtx.Err() == nil {
					t.Errorf("member %d fetch %s/%d: %v", i, tp, p, err)
				}
			},
			ackErr: func(r kgo.ShareAckResult) {
				mu.Lock()
				ackErr = append(ackErr, fmt.Sprintf("%s/%d: %v", r.Topic, r.Partition, r.Err))
				mu.Unlock()
			},
		}))
	}
	waitFor(t, 60*time.Second, "every record delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total, fmt.Sprintf("%d of %d offsets", len(seen), total)
	})
	// Every member holds the partition, at the group's epoch 4.
	waitFor(t, 20*time.Second, "four members at epoch 4", func() (bool, string) {
		d := describeShare(t, adm, group)
		ok := len(d.Members) == 4 && d.GroupEpoch == 4
		for _, m := range d.Members {
			ok = ok && m.MemberEpoch == 4 && len(m.Assignment[topic]) == 1
		}
		return ok, shareSummary(d)
	})
	if r, err := adm.AlterShareGroupOffsets(ctx, group, at); !errorIs(err, kerr.NonEmptyGroup) {
		t.Fatalf("alter with members: %v %v", err, r)
	}
	// The acknowledgements move the start offset to the end.
	for _, m := range members {
		if err := m.FlushAcks(ctx); err != nil {
			t.Fatalf("flush acks: %v", err)
		}
	}
	waitFor(t, 20*time.Second, "the start offset at the end", func() (bool, string) {
		got, err := shareOffsets(t, adm, group)
		return err == nil && got[topic+"/0"] == int64(total), fmt.Sprint(got, err)
	})
	if got := shareLags(t, adm, group); !reflect.DeepEqual(got, map[string]int64{topic + "/0": 0}) {
		t.Fatalf("lag at the end: %v, want 0", got)
	}
	stopPolling()
	wg.Wait()
	for _, m := range members {
		m.Close()
	}
	mu.Lock()
	for off := int64(0); off < int64(total); off++ {
		if seen[off] != 1 || values[off] != fmt.Sprintf("v%03d", off) {
			t.Errorf("offset %d delivered %d times, value %q", off, seen[off], values[off])
		}
	}
	if len(ackErr) > 0 {
		t.Errorf("acknowledgement errors: %v", ackErr)
	}
	mu.Unlock()
	waitFor(t, 20*time.Second, "the members gone", func() (bool, string) {
		d := describeShare(t, adm, group)
		return len(d.Members) == 0 && d.GroupState == "Empty", shareSummary(d)
	})

	// Delete the topic's share state, then the group.
	dr, err := adm.DeleteShareGroupOffsets(ctx, group, topic)
	if err != nil || dr[topic] != nil {
		t.Fatalf("delete offsets: %v %v", err, dr)
	}
	if got, err := shareOffsets(t, adm, group); err != nil || len(got) != 0 {
		t.Fatalf("offsets after delete: %v %v", got, err)
	}
	if r, err := adm.AlterShareGroupOffsets(ctx, group, at); err != nil || !r.Ok() {
		t.Fatalf("alter again: %v %v", err, r.Error())
	}
	gr, err := adm.DeleteGroups(ctx, group)
	if err != nil || gr[group].Err != nil {
		t.Fatalf("delete group: %v %+v", err, gr)
	}
	if d := describeShare(t, adm, group); !errorIs(d.Err, kerr.GroupIDNotFound) {
		t.Fatalf("deleted group: %v %s", d.Err, shareSummary(d))
	}
}

// groupConfigs describes a GROUP config resource: name → value/source.
func groupConfigs(t *testing.T, cl *kgo.Client, group string) map[string]string {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(ctxTimeout(t, 10*time.Second), cl)
	if err != nil || len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("DescribeConfigs GROUP %s: %v %+v", group, err, resp)
	}
	out := map[string]string{}
	for _, c := range resp.Resources[0].Configs {
		out[c.Name] = fmt.Sprintf("%s/%d", *c.Value, c.Source)
	}
	return out
}

func alterGroupConfig(t *testing.T, cl *kgo.Client, group string, op kmsg.IncrementalAlterConfigOp, name, value string) int16 {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = name, op, kmsg.StringPtr(value)
	r.Configs = append(r.Configs, c)
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(ctxTimeout(t, 10*time.Second), cl)
	if err != nil || len(resp.Resources) != 1 {
		t.Fatalf("IncrementalAlterConfigs GROUP %s: %v %+v", group, err, resp)
	}
	return resp.Resources[0].ErrorCode
}

// TestShareGroupConfigs: GROUP config resources for share groups:
// DescribeConfigs shows the broker defaults, IncrementalAlterConfigs sets
// and deletes overrides (checked values), and a group set to
// share.auto.offset.reset=earliest reads records produced before it
// started (kgo's documented way), while another group at the default
// (latest) does not.
func TestShareGroupConfigs(t *testing.T) {
	card(t, "franz-go kgo ShareGroup + kmsg", "KIP-932 share group configs: describe, alter, auto.offset.reset earliest")
	n := startTusk(t, shareFlags()...)
	adm, cl := newAdm(t, n)
	const topic, group = "sgc", "sgc-group"
	defaults := map[string]string{
		"share.auto.offset.reset":       "latest/5",
		"share.isolation.level":         "read_uncommitted/5",
		"share.record.lock.duration.ms": "30000/5",
		"share.delivery.count.limit":    "5/5",
		"share.session.timeout.ms":      "3000/5",
		"share.heartbeat.interval.ms":   "500/5",
	}
	if got := groupConfigs(t, cl, group); !reflect.DeepEqual(got, defaults) {
		t.Fatalf("defaults: %v", got)
	}
	for _, bad := range [][2]string{{"share.auto.offset.reset", "sometime"}, {"share.delivery.count.limit", "1"}, {"share.record.lock.duration.ms", "x"}, {"no.such.config", "1"}} {
		if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, bad[0], bad[1]); code != kerr.InvalidConfig.Code {
			t.Fatalf("set %s=%s: %v", bad[0], bad[1], kerr.ErrorForCode(code))
		}
	}
	if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, "share.auto.offset.reset", "earliest"); code != 0 {
		t.Fatalf("set earliest: %v", kerr.ErrorForCode(code))
	}
	if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, "share.delivery.count.limit", "3"); code != 0 {
		t.Fatalf("set limit: %v", kerr.ErrorForCode(code))
	}
	want := maps.Clone(defaults)
	want["share.auto.offset.reset"], want["share.delivery.count.limit"] = "earliest/8", "3/8"
	if got := groupConfigs(t, cl, group); !reflect.DeepEqual(got, want) {
		t.Fatalf("after set: %v", got)
	}
	if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpDelete, "share.delivery.count.limit", ""); code != 0 {
		t.Fatalf("delete limit: %v", kerr.ErrorForCode(code))
	}
	want["share.delivery.count.limit"] = "5/5"
	if got := groupConfigs(t, cl, group); !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete: %v", got)
	}
	// Membership timeouts: the heartbeat interval stays below the
	// session timeout; an override reaches the members' answers.
	if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, "share.heartbeat.interval.ms", "3000"); code != kerr.InvalidConfig.Code {
		t.Fatalf("heartbeat interval at the session timeout: %v", kerr.ErrorForCode(code))
	}
	if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, "share.heartbeat.interval.ms", "1200"); code != 0 {
		t.Fatalf("set heartbeat interval: %v", kerr.ErrorForCode(code))
	}
	sc := shareHBClient{t, cl}
	if r := sc.hb(group, "m", 0, "sgc-none"); r.ErrorCode != 0 || r.HeartbeatIntervalMillis != 1200 {
		t.Fatalf("heartbeat interval answered: %+v", r)
	}
	if r := sc.hb(group, "m", -1); r.ErrorCode != 0 {
		t.Fatalf("leave: %+v", r)
	}
	if r := sc.hb("sgc-other", "m", 0, "sgc-none"); r.ErrorCode != 0 || r.HeartbeatIntervalMillis != 500 {
		t.Fatalf("another group's heartbeat interval: %+v", r)
	}
	want["share.heartbeat.interval.ms"] = "1200/8"
	if got := groupConfigs(t, cl, group); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the heartbeat override: %v", got)
	}

	createTopic(t, adm, topic, 1, nil)
	waitTopicReady(t, adm, topic, 1)
	ctx := ctxTimeout(t, time.Minute)
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("early%d", i))}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	read := func(group string, want int, wait time.Duration) []string {
		m := newKgo(t, n, kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(200*time.Millisecond))
		defer m.Close()
		var got []string
		deadline := time.Now().Add(wait)
		for len(got) < want && time.Now().Before(deadline) {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			fs := m.PollFetches(pctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) {
				got = append(got, string(r.Value))
				r.Ack(kgo.AckAccept)
			})
		}
		if err := m.FlushAcks(ctx); err != nil {
			t.Fatalf("flush acks: %v", err)
		}
		return got
	}
	if got := read(group, 5, 15*time.Second); !reflect.DeepEqual(got, []string{"early0", "early1", "early2", "early3", "early4"}) {
		t.Fatalf("earliest group read %v", got)
	}
	// The default group (latest) starts at the end: nothing old.
	if got := read("sgc-latest", 1, 3*time.Second); len(got) != 0 {
		t.Fatalf("latest group read %v", got)
	}
}
