package groups

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/groups/assign"
)

// Consumer groups in the Coordinator (consumer_api.go): heartbeats, the
// offsets APIs' member-epoch checks, ListGroups and DeleteGroups, conversion
// of empty groups, and a new coordinator replaying what the first one
// persisted.

var coordTopic = [16]byte{7}

func newCoordHarness(t *testing.T) (*harness, fakeImage) {
	img := fakeImage{"t": {ID: coordTopic, Partitions: 4}}
	h := newHarness(t, func(cfg *Config) {
		cfg.Topics = img
		cfg.Consumer = ConsumerConfig{SessionTimeout: 10 * time.Second}
	})
	return h, img
}

// chb sends a consumer group heartbeat for member at epoch (0 joins
// subscribed to t) owning owned; it must succeed.
func chb(t *testing.T, c *Coordinator, img TopicImage, group, member string, epoch int32, owned assign.Partitions) *kmsg.ConsumerGroupHeartbeatResponse {
	t.Helper()
	req := joinReq(member, nil, "t")
	req.Group = group
	if epoch != 0 {
		req.MemberEpoch = epoch
		req.RebalanceTimeoutMillis = -1
		req.SubscribedTopicNames = nil
		req.Topics = ownedTopics(owned)
	}
	resp := c.ConsumerGroupHeartbeat(context.Background(), req, img)
	if resp.ErrorCode != 0 {
		t.Fatalf("heartbeat %s/%s epoch %d: %v", group, member, epoch, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

func assigned(resp *kmsg.ConsumerGroupHeartbeatResponse, prev assign.Partitions) assign.Partitions {
	if resp.Assignment == nil {
		return prev
	}
	p := assign.Partitions{}
	for _, t := range resp.Assignment.Topics {
		p[t.TopicID] = append([]int32(nil), t.Partitions...)
	}
	return p
}

// settle heartbeats both members until both are at the group's epoch and
// own what they were given; it returns their epochs and partitions.
func settle(t *testing.T, c *Coordinator, img TopicImage, group string, epochs map[string]int32, owned map[string]assign.Partitions) {
	t.Helper()
	for range 10 {
		for id := range epochs {
			r := chb(t, c, img, group, id, epochs[id], owned[id])
			epochs[id], owned[id] = r.MemberEpoch, assigned(r, owned[id])
		}
	}
	total := 0
	for _, p := range owned {
		total += p.Count()
	}
	if total != 4 {
		t.Fatalf("members own %d partitions after settling, want 4: %v", total, owned)
	}
}

func commitReq(group, member string, epoch int32, version int16, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = version
	req.Group, req.MemberID, req.Generation = group, member, epoch
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func commitCode(c *Coordinator, req *kmsg.OffsetCommitRequest) int16 {
	return c.OffsetCommit(context.Background(), req).Topics[0].Partitions[0].ErrorCode
}

func fetchGroup(c *Coordinator, group string, member *string, epoch int32) (int16, int64) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 9
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group, rg.MemberID, rg.MemberEpoch = group, member, epoch
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.Partitions = "t", []int32{0}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	g := c.OffsetFetch(context.Background(), req).Groups[0]
	if g.ErrorCode != 0 {
		return g.ErrorCode, -1
	}
	return 0, g.Topics[0].Partitions[0].Offset
}

func listed(c *Coordinator) map[string]string {
	out := map[string]string{}
	for _, g := range c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest()).Groups {
		out[g.Group] = g.GroupType + "/" + g.GroupState + "/" + g.ProtocolType
	}
	return out
}

func describeConsumer(c *Coordinator, group string) kmsg.ConsumerGroupDescribeResponseGroup {
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group}
	return c.ConsumerGroupDescribe(context.Background(), req).Groups[0]
}

// replayInto feeds every record h's persister holds to a new coordinator.
func replayInto(t *testing.T, h *harness, img TopicImage) *Coordinator {
	t.Helper()
	c := New(Config{TickInterval: -1, Now: h.clk.Now, Logger: zerolog.Nop(), Topics: img, Consumer: ConsumerConfig{SessionTimeout: 10 * time.Second}}, &memPersister{})
	t.Cleanup(c.Close)
	for _, r := range h.p.records() {
		if err := c.Replay(r); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	c.ReplayDone()
	return c
}

func TestConsumerCoordinator(t *testing.T) {
	h, img := newCoordHarness(t)
	c := h.c
	epochs := map[string]int32{"m1": 0, "m2": 0}
	owned := map[string]assign.Partitions{}
	settle(t, c, img, "g", epochs, owned)
	if epochs["m1"] != 2 || epochs["m2"] != 2 || owned["m1"].Count() != 2 {
		t.Fatalf("epochs %v owned %v, want 2 and 2 partitions each", epochs, owned)
	}

	// OffsetCommit v9 with the member epoch; the checks as Kafka's.
	for _, tc := range []struct {
		name    string
		req     *kmsg.OffsetCommitRequest
		want    int16
		version int16
	}{
		{"member at its epoch", commitReq("g", "m1", 2, 9, 10), 0, 9},
		{"stale epoch", commitReq("g", "m1", 1, 9, 11), kerr.StaleMemberEpoch.Code, 9},
		{"epoch ahead", commitReq("g", "m1", 3, 9, 11), kerr.StaleMemberEpoch.Code, 9},
		{"unknown member", commitReq("g", "nobody", 2, 9, 11), kerr.UnknownMemberID.Code, 9},
		{"admin commit to a non-empty group", commitReq("g", "", -1, 9, 11), kerr.UnknownMemberID.Code, 9},
		{"classic version", commitReq("g", "m1", 2, 8, 11), kerr.UnsupportedVersion.Code, 8},
		{"missing group v9", commitReq("nope", "m1", 2, 9, 11), kerr.GroupIDNotFound.Code, 9},
	} {
		if got := commitCode(c, tc.req); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
		}
	}
	if code, off := fetchGroup(c, "g", kmsg.StringPtr("m1"), 2); code != 0 || off != 10 {
		t.Fatalf("OffsetFetch v9 as m1: %v %d, want offset 10", kerr.ErrorForCode(code), off)
	}
	if code, _ := fetchGroup(c, "g", kmsg.StringPtr("m1"), 1); code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("OffsetFetch v9 stale: %v", kerr.ErrorForCode(code))
	}
	if code, _ := fetchGroup(c, "g", kmsg.StringPtr("x"), 2); code != kerr.UnknownMemberID.Code {
		t.Fatalf("OffsetFetch v9 unknown member: %v", kerr.ErrorForCode(code))
	}
	if code, off := fetchGroup(c, "g", nil, -1); code != 0 || off != 10 {
		t.Fatalf("OffsetFetch v9 without a member: %v %d", kerr.ErrorForCode(code), off)
	}

	// A classic group beside it; ListGroups reports both types.
	if code := commitCode(c, commitReq("classic", "", -1, 8, 5)); code != 0 {
		t.Fatalf("admin commit to a new classic group: %v", kerr.ErrorForCode(code))
	}
	want := map[string]string{"g": "consumer/Stable/consumer", "classic": "classic/Empty/"}
	if got := listed(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("ListGroups %v, want %v", got, want)
	}
	req := kmsg.NewPtrListGroupsRequest()
	req.TypesFilter = []string{"Consumer"}
	if r := c.ListGroups(context.Background(), req); len(r.Groups) != 1 || r.Groups[0].Group != "g" {
		t.Fatalf("ListGroups type consumer: %+v", r.Groups)
	}
	if d := describeConsumer(c, "classic"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("ConsumerGroupDescribe of a classic group: %v", kerr.ErrorForCode(d.ErrorCode))
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Version, dreq.Groups = 5, []string{"g"}
	if d := c.DescribeGroups(context.Background(), dreq).Groups[0]; d.State != "Dead" {
		t.Fatalf("DescribeGroups of a consumer group: %+v", d)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g"}
	if r := c.DeleteGroups(context.Background(), del); r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("DeleteGroups of a live consumer group: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
	}

	// A new coordinator replays the same group and offsets.
	c2 := replayInto(t, h, img)
	if a, b := describeConsumer(c, "g"), describeConsumer(c2, "g"); !reflect.DeepEqual(a, b) {
		t.Fatalf("replayed group describes\n%+v\nnot\n%+v", b, a)
	}
	if got := listed(c2); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed ListGroups %v, want %v", got, want)
	}
	if code, off := fetchGroup(c2, "g", kmsg.StringPtr("m2"), 2); code != 0 || off != 10 {
		t.Fatalf("replayed OffsetFetch as m2: %v %d", kerr.ErrorForCode(code), off)
	}
	// Its members carry on at their epochs: GroupMetadata's hash of the
	// topics matches them now, so the load starts no new epoch.
	r := chb(t, c2, img, "g", "m1", 2, owned["m1"])
	if r.MemberEpoch != 2 || !assigned(r, owned["m1"]).Equal(owned["m1"]) {
		t.Fatalf("m1 after the load: epoch %d, %v", r.MemberEpoch, assigned(r, owned["m1"]))
	}

	// Sessions expire on Tick; the group is then Empty and can be
	// deleted, which the next coordinator sees.
	h.clk.Advance(11 * time.Second)
	c.Tick()
	waitFor(t, "sessions expired", func() bool { return describeConsumer(c, "g").State == "Empty" })
	if got := listed(c)["g"]; got != "consumer/Empty/consumer" {
		t.Fatalf("expired group listed %s", got)
	}
	if r := c.DeleteGroups(context.Background(), del); r.Groups[0].ErrorCode != 0 {
		t.Fatalf("DeleteGroups of an empty consumer group: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
	}
	if _, ok := listed(replayInto(t, h, img))["g"]; ok {
		t.Fatal("deleted consumer group replayed")
	}
}

func TestConsumerGroupConversion(t *testing.T) {
	h, img := newCoordHarness(t)
	c := h.c
	// An empty classic group (offsets only) becomes a consumer group at
	// its first ConsumerGroupHeartbeat, keeping its offsets.
	if code := commitCode(c, commitReq("g", "", -1, 8, 5)); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	r := chb(t, c, img, "g", "m1", 0, nil)
	if got := listed(c)["g"]; got != "consumer/Stable/consumer" {
		t.Fatalf("converted group listed %s", got)
	}
	if code, off := fetchGroup(c, "g", kmsg.StringPtr("m1"), r.MemberEpoch); code != 0 || off != 5 {
		t.Fatalf("offsets after conversion: %v %d", kerr.ErrorForCode(code), off)
	}
	// A live consumer group refuses a classic member.
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 4, "g", "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 10000, 10000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0}}}
	if jr := c.JoinGroup(context.Background(), join); jr.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("JoinGroup to a live consumer group: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	// Once empty, the first JoinGroup converts it back.
	leave := joinReq("m1", nil)
	leave.MemberEpoch, leave.RebalanceTimeoutMillis, leave.SubscribedTopicNames, leave.Topics = -1, -1, nil, nil
	if lr := c.ConsumerGroupHeartbeat(context.Background(), leave, img); lr.ErrorCode != 0 || lr.MemberEpoch != -1 {
		t.Fatalf("leave: %v %d", kerr.ErrorForCode(lr.ErrorCode), lr.MemberEpoch)
	}
	if jr := c.JoinGroup(context.Background(), join); jr.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("JoinGroup to an empty consumer group: %v, want MEMBER_ID_REQUIRED", kerr.ErrorForCode(jr.ErrorCode))
	}
	if got := listed(c)["g"]; got != "classic/Empty/" {
		t.Fatalf("group converted back listed %s", got)
	}
	// A heartbeat with an epoch to a classic group: not a consumer group.
	hb := joinReq("m1", nil)
	hb.MemberEpoch, hb.RebalanceTimeoutMillis, hb.SubscribedTopicNames, hb.Topics = 3, -1, nil, nil
	if r := c.ConsumerGroupHeartbeat(context.Background(), hb, img); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("heartbeat to a classic group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// The log says the same to a new coordinator: classic, offsets kept.
	c2 := replayInto(t, h, img)
	if got := listed(c2)["g"]; got != "classic/Empty/" {
		t.Fatalf("replayed converted group listed %s", got)
	}
	if code, off := fetchGroup(c2, "g", nil, -1); code != 0 || off != 5 {
		t.Fatalf("replayed offsets: %v %d", kerr.ErrorForCode(code), off)
	}
	// A failed join leaves no group behind.
	bad := joinReq("m9", nil, "t")
	bad.Group, bad.ServerAssignor = "fresh", kmsg.StringPtr("nope")
	if r := c.ConsumerGroupHeartbeat(context.Background(), bad, img); r.ErrorCode != kerr.UnsupportedAssignor.Code {
		t.Fatalf("bad assignor: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	bad.ServerAssignor, bad.MemberEpoch = nil, 5
	if r := c.ConsumerGroupHeartbeat(context.Background(), bad, img); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("epoch 5 to a missing group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	h.p.setFail(errors.New("disk gone"))
	bad.MemberEpoch = 0
	if r := c.ConsumerGroupHeartbeat(context.Background(), bad, img); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("join not persisted: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	h.p.setFail(nil)
	if _, ok := listed(c)["fresh"]; ok {
		t.Fatal("a failed first heartbeat left a group")
	}
}

// A loaded group resolves its regexes on the coordinator's image (every
// topic); a member's first heartbeat resolves them again on its own image
// (the broker's ACL filter), so a topic its principal may not describe is
// not assigned after a failover either.
func TestConsumerGroupRegexAfterLoad(t *testing.T) {
	mine := fakeImage{"orders": {ID: topicT, Partitions: 2}}
	h := newCGHarness(t, mine)
	r := joinReq("m1", nil)
	r.SubscribedTopicNames, r.SubscribedTopicRegex = nil, kmsg.StringPtr("ord.*")
	expect(t, h.do(r), 1, assign.Partitions{topicT: {0, 1}})
	recs := h.p.take()

	all := fakeImage{"orders": {ID: topicT, Partitions: 2}, "ordersecret": {ID: topicU, Partitions: 1}}
	g2 := NewConsumerGroup("g", ConsumerConfig{Now: h.clock.Now}, &consumerPersister{})
	for _, rec := range recs {
		g2.Replay(rec)
	}
	g2.ReplayDone(all)
	hb := joinReq("m1", nil)
	hb.MemberEpoch, hb.RebalanceTimeoutMillis, hb.SubscribedTopicNames = 1, -1, nil
	hb.Topics = ownedTopics(assign.Partitions{topicT: {0, 1}})
	// As the broker's: any topic by name, only the principal's listed.
	resp := g2.Heartbeat(context.Background(), hb, filteredImage{all: all, names: mine})
	if resp.ErrorCode != 0 || resp.MemberEpoch != 2 {
		t.Fatalf("first heartbeat after the load: %v epoch %d", kerr.ErrorForCode(resp.ErrorCode), resp.MemberEpoch)
	}
	for _, m := range g2.Describe().Members {
		for _, tp := range m.TargetAssignment.TopicPartitions {
			if tp.TopicID == topicU {
				t.Fatalf("target holds a topic the member's image does not show: %+v", m.TargetAssignment)
			}
		}
	}
}

type filteredImage struct{ all, names fakeImage }

func (im filteredImage) Topic(name string) ([16]byte, int32, bool) { return im.all.Topic(name) }
func (im filteredImage) Names() []string                           { return im.names.Names() }

// BenchmarkConsumerGroupHeartbeatSteady: keepalive heartbeats (nothing to
// persist) of 100 settled members of one group on a 100-partition topic,
// through the Coordinator.
func BenchmarkConsumerGroupHeartbeatSteady(b *testing.B) {
	img := fakeImage{"t": {ID: coordTopic, Partitions: 100}}
	c := New(Config{TickInterval: -1, Logger: zerolog.Nop(), Topics: img}, &memPersister{})
	c.ReplayDone()
	defer c.Close()
	const n = 100
	epochs := map[string]int32{}
	owned := map[string][]kmsg.ConsumerGroupHeartbeatRequestTopic{}
	send := func(id string) *kmsg.ConsumerGroupHeartbeatResponse {
		req := joinReq(id, nil, "t")
		if e := epochs[id]; e != 0 {
			req.MemberEpoch, req.RebalanceTimeoutMillis, req.SubscribedTopicNames = e, -1, nil
			req.Topics = owned[id]
		}
		r := c.ConsumerGroupHeartbeat(context.Background(), req, img)
		if r.ErrorCode != 0 {
			b.Fatalf("%s: %v", id, kerr.ErrorForCode(r.ErrorCode))
		}
		epochs[id] = r.MemberEpoch
		if r.Assignment != nil {
			owned[id] = owned[id][:0]
			for _, t := range r.Assignment.Topics {
				rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
				rt.TopicID, rt.Partitions = t.TopicID, t.Partitions
				owned[id] = append(owned[id], rt)
			}
		}
		return r
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("member-%03d", i)
		send(ids[i])
	}
	for range 5 {
		for _, id := range ids {
			send(id)
		}
	}
	reqs := make([]*kmsg.ConsumerGroupHeartbeatRequest, n)
	for i, id := range ids {
		req := joinReq(id, nil)
		req.MemberEpoch, req.RebalanceTimeoutMillis, req.SubscribedTopicNames, req.Topics = epochs[id], -1, nil, nil
		reqs[i] = req
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := c.ConsumerGroupHeartbeat(context.Background(), reqs[i%n], img); r.ErrorCode != 0 || r.Assignment != nil {
			b.Fatalf("steady heartbeat: %v, assignment %v", kerr.ErrorForCode(r.ErrorCode), r.Assignment != nil)
		}
	}
}

// A name subscribed twice is one subscription (described once, no new
// epoch when the member sends it once).
func TestConsumerGroupDuplicateTopicNames(t *testing.T) {
	h, img := newCoordHarness(t)
	r := h.c.ConsumerGroupHeartbeat(context.Background(), joinReq("m1", nil, "t", "t"), img)
	if r.ErrorCode != 0 || r.MemberEpoch != 1 {
		t.Fatalf("join: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	full := joinReq("m1", nil, "t")
	full.MemberEpoch, full.Topics = 1, ownedTopics(assigned(r, nil))
	if r := h.c.ConsumerGroupHeartbeat(context.Background(), full, img); r.ErrorCode != 0 || r.MemberEpoch != 1 {
		t.Fatalf("same subscription sent once: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	if d := describeConsumer(h.c, "g"); !reflect.DeepEqual(d.Members[0].SubscribedTopics, []string{"t"}) {
		t.Fatalf("subscribed %v", d.Members[0].SubscribedTopics)
	}
}

// blockingPersister holds every Persist until its ctx is done.
type blockingPersister struct{ entered chan struct{} }

func (p blockingPersister) Persist(ctx context.Context, _ []Record) error {
	p.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// Close cuts short a consumer group heartbeat waiting in Persist: it is
// answered NOT_COORDINATOR, and later heartbeats too.
func TestConsumerGroupHeartbeatClose(t *testing.T) {
	img := fakeImage{"t": {ID: coordTopic, Partitions: 4}}
	p := blockingPersister{entered: make(chan struct{}, 1)}
	c := New(Config{TickInterval: -1, Logger: zerolog.Nop(), Topics: img}, p)
	c.ReplayDone()
	got := make(chan *kmsg.ConsumerGroupHeartbeatResponse, 1)
	go func() { got <- c.ConsumerGroupHeartbeat(context.Background(), joinReq("m1", nil, "t"), img) }()
	<-p.entered
	c.Close()
	select {
	case r := <-got:
		if r.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("heartbeat in Persist at Close: %v", kerr.ErrorForCode(r.ErrorCode))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("heartbeat still waiting 5 s after Close")
	}
	if r := c.ConsumerGroupHeartbeat(context.Background(), joinReq("m2", nil, "t"), img); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("heartbeat after Close: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}
