package groups

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type goneLog struct {
	mu   sync.Mutex
	gone []string
}

func (l *goneLog) add(group, member string) {
	l.mu.Lock()
	l.gone = append(l.gone, group+"/"+member)
	l.mu.Unlock()
}

func (l *goneLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.gone...)
}

func shareHB(c *Coordinator, img TopicImage, group, member string, epoch int32, topics ...string) *kmsg.ShareGroupHeartbeatResponse {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch = group, member, epoch
	if topics != nil {
		req.SubscribedTopicNames = topics
	}
	return c.ShareGroupHeartbeat(context.Background(), req, img)
}

func TestShareCoordinator(t *testing.T) {
	img := fakeImage{"t": {ID: topicT, Partitions: 2}}
	var gone goneLog
	h := newHarness(t, func(cfg *Config) {
		cfg.Topics = img
		cfg.OnShareMemberGone = gone.add
	})
	c := h.c
	// A heartbeat for a group that does not exist.
	if r := shareHB(c, img, "sg", "a", 1); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("heartbeat of a missing group: %d", r.ErrorCode)
	}
	// A join that fails validation creates nothing.
	if r := shareHB(c, img, "sg", "a", 0); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("join without topics: %d", r.ErrorCode)
	}
	if r := c.ShareGroupDescribe("sg"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe of a missing group: %d", r.ErrorCode)
	}
	if r := shareHB(c, img, "sg", "a", 0, "t"); r.ErrorCode != 0 || r.MemberEpoch != 1 {
		t.Fatalf("join: %+v", r)
	}
	if r := shareHB(c, img, "sg", "b", 0, "t"); r.ErrorCode != 0 || r.MemberEpoch != 2 {
		t.Fatalf("join b: %+v", r)
	}
	d := c.ShareGroupDescribe("sg")
	if d.ErrorCode != 0 || d.GroupState != "Stable" || d.GroupEpoch != 2 || len(d.Members) != 2 {
		t.Fatalf("describe: %+v", d)
	}

	// Type conflicts, both ways.
	jreq := kmsg.NewPtrJoinGroupRequest()
	jreq.Group, jreq.ProtocolType, jreq.SessionTimeoutMillis, jreq.RebalanceTimeoutMillis = "sg", "consumer", 10000, 10000
	jreq.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMeta("t")}}
	if r := c.JoinGroup(context.Background(), jreq); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("JoinGroup on a share group: %d", r.ErrorCode)
	}
	creq := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	creq.Group, creq.MemberID, creq.RebalanceTimeoutMillis, creq.SubscribedTopicNames, creq.Topics = "sg", "x", 1000, []string{"t"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	creq.Version = 1
	if r := c.ConsumerGroupHeartbeat(context.Background(), creq, img); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("ConsumerGroupHeartbeat on a share group: %d", r.ErrorCode)
	}
	ocreq := kmsg.NewPtrOffsetCommitRequest()
	ocreq.Group, ocreq.Generation = "sg", -1
	ocreq.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	if r := c.OffsetCommit(context.Background(), ocreq); r.Topics[0].Partitions[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("OffsetCommit to a share group: %d", r.Topics[0].Partitions[0].ErrorCode)
	}
	// A classic group with a member refuses share heartbeats.
	jreq.Group = "classic"
	jreq.Version = 3
	done := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { done <- c.JoinGroup(context.Background(), jreq) }()
	if r := <-done; r.ErrorCode != 0 {
		t.Fatalf("classic join: %d", r.ErrorCode)
	}
	if r := shareHB(c, img, "classic", "a", 0, "t"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("share join of a classic group: %d", r.ErrorCode)
	}
	if r := c.ShareGroupDescribe("classic"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("share describe of a classic group: %d", r.ErrorCode)
	}

	// ListGroups shows the type and filters on it.
	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.Version = 5
	lreq.TypesFilter = []string{"share"}
	lr := c.ListGroups(context.Background(), lreq)
	if len(lr.Groups) != 1 || lr.Groups[0].Group != "sg" || lr.Groups[0].GroupType != "share" || lr.Groups[0].GroupState != "Stable" || lr.Groups[0].ProtocolType != "share" {
		t.Fatalf("list: %+v", lr.Groups)
	}

	// Delete refuses a non-empty group; a leave is reported.
	dreq := kmsg.NewPtrDeleteGroupsRequest()
	dreq.Groups = []string{"sg"}
	if r := c.DeleteGroups(context.Background(), dreq); r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete non-empty: %d", r.Groups[0].ErrorCode)
	}
	if r := shareHB(c, img, "sg", "b", -1); r.ErrorCode != 0 || r.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", r)
	}
	if got := gone.get(); !reflect.DeepEqual(got, []string{"sg/b"}) {
		t.Fatalf("gone %v", got)
	}

	// A new coordinator replays the group.
	c2 := New(Config{TickInterval: -1, Now: h.clk.Now, Logger: zerolog.Nop(), Topics: img, OnShareMemberGone: gone.add}, h.p)
	t.Cleanup(c2.Close)
	for _, r := range h.p.records() {
		if err := c2.Replay(r); err != nil {
			t.Fatal(err)
		}
	}
	c2.ReplayDone()
	if a, b := c.ShareGroupDescribe("sg"), c2.ShareGroupDescribe("sg"); !reflect.DeepEqual(a, b) {
		t.Fatalf("replayed:\n%+v\n%+v", a, b)
	}
	// Sessions restart at the load; A's expires on c2's Tick.
	h.clk.Advance(46 * time.Second)
	c2.Tick()
	waitFor(t, "a's session to expire", func() bool { return len(gone.get()) == 2 })
	if got := gone.get(); got[1] != "sg/a" {
		t.Fatalf("gone %v", got)
	}
	d = c2.ShareGroupDescribe("sg")
	if d.GroupState != "Empty" || d.GroupEpoch != 4 {
		t.Fatalf("after expiry: %+v", d)
	}
	var parts []ShareStateTopic
	if code := c2.WithShareGroup(context.Background(), "sg", false, func(g *ShareGroup) int16 {
		parts = g.StatePartitions()
		return 0
	}); code != 0 || !reflect.DeepEqual(parts, []ShareStateTopic{{ID: topicT, Name: "t", Partitions: []int32{0, 1}}}) {
		t.Fatalf("state partitions %d %+v", code, parts)
	}
	if r := c2.DeleteGroups(context.Background(), dreq); r.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete: %d", r.Groups[0].ErrorCode)
	}
	if r := c2.ShareGroupDescribe("sg"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe deleted: %d", r.ErrorCode)
	}

	// A third coordinator finds the group deleted; Alter creates it.
	c3 := New(Config{TickInterval: -1, Now: h.clk.Now, Logger: zerolog.Nop(), Topics: img}, h.p)
	t.Cleanup(c3.Close)
	for _, r := range h.p.records() {
		if err := c3.Replay(r); err != nil {
			t.Fatal(err)
		}
	}
	c3.ReplayDone()
	if r := c3.ShareGroupDescribe("sg"); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("replayed deleted group: %d", r.ErrorCode)
	}
	if code := c3.WithShareGroup(context.Background(), "sg", false, func(*ShareGroup) int16 { return 0 }); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("offsets of a missing group: %d", code)
	}
	if code := c3.WithShareGroup(context.Background(), "sg", true, func(g *ShareGroup) int16 {
		return g.AddStatePartitions(context.Background(), []ShareStateTopic{{ID: topicT, Name: "t", Partitions: []int32{1}}})
	}); code != 0 {
		t.Fatalf("create: %d", code)
	}
	if d := c3.ShareGroupDescribe("sg"); d.ErrorCode != 0 || d.GroupState != "Empty" {
		t.Fatalf("created: %+v", d)
	}
	if code := c.WithShareGroup(context.Background(), "classic", true, func(*ShareGroup) int16 { return 0 }); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("alter offsets of a classic group: %d", code)
	}
}
