package groups

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/groups/assign"
)

// sharePersister is a share group's recorder.
type sharePersister struct{ recorder[ShareGroupRecord] }

func (p *sharePersister) PersistShare(_ context.Context, recs []ShareGroupRecord) error {
	// Every record must encode (the coordinator writes these bytes).
	return p.persist(recs, func(r ShareGroupRecord) error {
		_, _, err := EncodeShareGroupRecord(r)
		return err
	})
}

func shareTypes(recs []ShareGroupRecord) []string {
	out := []string{}
	for _, r := range recs {
		s := map[ShareRecordType]string{
			ShareRecordMemberMetadata: "member", ShareRecordGroupMetadata: "group",
			ShareRecordTargetMetadata: "targetmeta", ShareRecordTargetMember: "target",
			ShareRecordCurrentAssignment: "current", ShareRecordStatePartitionMetadata: "state",
		}[r.Type]
		if r.MemberID != "" {
			s += ":" + r.MemberID
		}
		if r.Tombstone {
			s += ":tomb"
		}
		out = append(out, s)
	}
	return out
}

type sgHarness struct {
	t     *testing.T
	g     *ShareGroup
	p     *sharePersister
	clock *fakeClock
	img   fakeImage
}

func newSGHarness(t *testing.T, img fakeImage) *sgHarness {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := &sharePersister{}
	return &sgHarness{t: t, p: p, clock: clock, img: img,
		g: NewShareGroup("sg", ShareConfig{Now: clock.Now, MaxSize: 3}, p)}
}

func (h *sgHarness) do(member string, epoch int32, topics ...string) *kmsg.ShareGroupHeartbeatResponse {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch = "sg", member, epoch
	if topics != nil {
		req.SubscribedTopicNames = topics
	}
	ctx := WithClientInfo(context.Background(), ClientInfo{ClientID: "cl-" + member, Host: "/127.0.0.1"})
	return h.g.Heartbeat(ctx, req, h.img)
}

func assignmentOf(resp *kmsg.ShareGroupHeartbeatResponse) assign.Partitions {
	if resp.Assignment == nil {
		return nil
	}
	out := make(assign.Partitions)
	for _, t := range resp.Assignment.TopicPartitions {
		out[t.TopicID] = t.Partitions
	}
	return out
}

func (h *sgHarness) expect(resp *kmsg.ShareGroupHeartbeatResponse, code int16, epoch int32, want assign.Partitions) {
	h.t.Helper()
	if resp.ErrorCode != code {
		h.t.Fatalf("error %d, want %d (%v)", resp.ErrorCode, code, resp.ErrorMessage)
	}
	if code != 0 {
		return
	}
	if resp.MemberEpoch != epoch {
		h.t.Fatalf("epoch %d, want %d", resp.MemberEpoch, epoch)
	}
	if resp.HeartbeatIntervalMillis != 5000 {
		h.t.Fatalf("heartbeat interval %d", resp.HeartbeatIntervalMillis)
	}
	got := assignmentOf(resp)
	if (got == nil) != (want == nil) || (want != nil && !got.Equal(want)) {
		h.t.Fatalf("assignment %v, want %v", got, want)
	}
}

func (h *sgHarness) expectRecords(want ...string) {
	h.t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := shareTypes(h.p.take()); !reflect.DeepEqual(got, want) {
		h.t.Fatalf("records %v, want %v", got, want)
	}
}

func (h *sgHarness) expectGroup(state string, epoch int32) {
	h.t.Helper()
	d := h.g.Describe()
	if d.GroupState != state || d.GroupEpoch != epoch || d.AssignmentEpoch != epoch || d.Assignor != "simple" {
		h.t.Fatalf("group %s epoch %d/%d assignor %s, want %s %d", d.GroupState, d.GroupEpoch, d.AssignmentEpoch, d.Assignor, state, epoch)
	}
}

func TestShareGroupLifecycle(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})

	// A joins: epoch 1, both partitions.
	h.expect(h.do("a", 0, "t"), 0, 1, assign.Partitions{topicT: {0, 1}})
	h.expectRecords("member:a", "group", "target:a", "targetmeta", "state", "current:a")
	h.expectGroup("Stable", 1)

	// A steady heartbeat: nothing persisted, no assignment.
	h.expect(h.do("a", 1), 0, 1, nil)
	h.expectRecords()

	// B joins: epoch 2, partition 1 moves to B at once (no revocation).
	h.expect(h.do("b", 0, "t"), 0, 2, assign.Partitions{topicT: {1}})
	h.expectRecords("member:b", "group", "target:a", "target:b", "targetmeta", "current:b")
	// A learns at its next heartbeat.
	h.expect(h.do("a", 1), 0, 2, assign.Partitions{topicT: {0}})
	h.expectRecords("current:a")

	// C and then a fourth member beyond MaxSize 3.
	h.expect(h.do("c", 0, "t"), 0, 3, assign.Partitions{topicT: {0}})
	h.expectRecords("member:c", "group", "target:c", "targetmeta", "current:c")
	h.expect(h.do("d", 0, "t"), kerr.GroupMaxSizeReached.Code, 0, nil)
	h.expectRecords()
	// Three members on two partitions: A keeps 0, shares it with C.
	h.expect(h.do("a", 2), 0, 3, nil)
	h.expect(h.do("b", 2), 0, 3, nil)
	h.expectRecords("current:a", "current:b")

	// A full heartbeat (subscription sent, unchanged) gets the assignment.
	h.expect(h.do("a", 3, "t"), 0, 3, assign.Partitions{topicT: {0}})
	h.expectRecords()

	// B leaves: epoch 4; C is moved to partition 1 at its next beat.
	h.expect(h.do("b", -1), 0, -1, nil)
	h.expectRecords("current:b:tomb", "target:b:tomb", "member:b:tomb", "group", "target:c", "targetmeta")
	h.expect(h.do("c", 3), 0, 4, assign.Partitions{topicT: {1}})
	h.expectRecords("current:c")
	// A leave of an unknown member.
	h.expect(h.do("b", -1), kerr.UnknownMemberID.Code, 0, nil)

	// The topic gains a partition: the next heartbeat starts epoch 5.
	h.img["t"] = assign.Topic{ID: topicT, Partitions: 3}
	h.expect(h.do("a", 3), 0, 5, assign.Partitions{topicT: {0, 2}})
	h.expectRecords("group", "target:a", "targetmeta", "state", "current:a")
	h.expect(h.do("c", 4), 0, 5, nil)
	h.expectRecords("current:c")

	// C stops heartbeating: its session ends, A gets everything.
	h.clock.Advance(30 * time.Second)
	h.expect(h.do("a", 5), 0, 5, nil)
	h.clock.Advance(20 * time.Second)
	gone, err := h.g.Tick(context.Background())
	if err != nil || !reflect.DeepEqual(gone, []string{"c"}) {
		t.Fatalf("tick: %v %v", gone, err)
	}
	h.expectRecords("current:c:tomb", "target:c:tomb", "member:c:tomb", "group", "target:a", "targetmeta")
	h.expect(h.do("a", 5), 0, 6, assign.Partitions{topicT: {0, 1, 2}})
	h.expectGroup("Stable", 6)
	if code := h.g.Delete(context.Background()); code != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete a non-empty group: %d", code)
	}

	// A leaves; the group is Empty and can be deleted.
	h.expect(h.do("a", 6), 0, 6, nil)
	h.p.take()
	h.expect(h.do("a", -1), 0, -1, nil)
	h.expectRecords("current:a:tomb", "target:a:tomb", "member:a:tomb", "group", "targetmeta")
	h.expectGroup("Empty", 7)
	if code := h.g.Delete(context.Background()); code != 0 {
		t.Fatalf("delete: %d", code)
	}
	h.expectRecords("state:tomb", "targetmeta:tomb", "group:tomb")
}

func TestShareGroupManyMembersOnePartition(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 1}})
	h.g.cfg.MaxSize = -1
	one := assign.Partitions{topicT: {0}}
	for i, m := range []string{"a", "b", "c", "d"} {
		h.expect(h.do(m, 0, "t"), 0, int32(i+1), one)
	}
	// Earlier members move to epoch 4 without an assignment change.
	h.p.take()
	h.expect(h.do("a", 1), 0, 4, nil)
	h.expectRecords("current:a")
	d := h.g.Describe()
	if len(d.Members) != 4 {
		t.Fatalf("members %d", len(d.Members))
	}
	for _, m := range d.Members {
		if len(m.Assignment.TopicPartitions) != 1 || m.Assignment.TopicPartitions[0].Topic != "t" || !reflect.DeepEqual(m.Assignment.TopicPartitions[0].Partitions, []int32{0}) {
			t.Fatalf("member %s assignment %+v", m.MemberID, m.Assignment)
		}
		if m.ClientID != "cl-"+m.MemberID || m.ClientHost != "/127.0.0.1" || !reflect.DeepEqual(m.SubscribedTopicNames, []string{"t"}) {
			t.Fatalf("member %+v", m)
		}
	}
}

func TestShareGroupEpochFencing(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	h.expect(h.do("a", 0, "t"), 0, 1, assign.Partitions{topicT: {0, 1}})
	h.expect(h.do("b", 0, "t"), 0, 2, assign.Partitions{topicT: {1}})
	h.expect(h.do("c", 0, "t"), 0, 3, assign.Partitions{topicT: {0}})
	// A is at 1 (the group at 3): ahead is fenced.
	h.expect(h.do("a", 2), kerr.FencedMemberEpoch.Code, 0, nil)
	h.expect(h.do("a", 1), 0, 3, assign.Partitions{topicT: {0}})
	// A missed that answer: its previous epoch is accepted.
	h.expect(h.do("a", 1), 0, 3, nil)
	h.expect(h.do("a", 3), 0, 3, nil)
	// Older than the previous epoch is fenced.
	h.expect(h.do("c", 2), kerr.FencedMemberEpoch.Code, 0, nil)
	h.expect(h.do("zz", 3), kerr.UnknownMemberID.Code, 0, nil)
	// A known member rejoining at 0 keeps its epoch and assignment.
	h.p.take()
	h.expect(h.do("a", 0, "t"), 0, 3, assign.Partitions{topicT: {0}})
	h.expectRecords()
	// Rejoining with another subscription starts a new epoch.
	h.img["u"] = assign.Topic{ID: topicU, Partitions: 1}
	h.expect(h.do("a", 0, "t", "u"), 0, 4, assign.Partitions{topicT: {0}, topicU: {0}})
	h.expectRecords("member:a", "group", "target:a", "targetmeta", "state", "current:a")
	// Unsubscribing everything (an empty list) is allowed after the join.
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch, req.SubscribedTopicNames = "sg", "a", 4, []string{}
	resp := h.g.Heartbeat(context.Background(), req, h.img)
	h.expect(resp, 0, 5, assign.Partitions{})
	h.expectRecords("member:a", "group", "target:a", "targetmeta", "current:a")
}

func TestShareGroupHeartbeatValidation(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 1}})
	empty := ""
	for _, tc := range []struct {
		name string
		mod  func(*kmsg.ShareGroupHeartbeatRequest)
		msg  string
	}{
		{"group", func(r *kmsg.ShareGroupHeartbeatRequest) { r.GroupID = "" }, "GroupId can't be empty."},
		{"member", func(r *kmsg.ShareGroupHeartbeatRequest) { r.MemberID = "" }, "MemberId can't be empty."},
		{"long member", func(r *kmsg.ShareGroupHeartbeatRequest) { r.MemberID = "0123456789012345678901234567890123456" }, "MemberId can't be longer than 36 characters."},
		{"rack", func(r *kmsg.ShareGroupHeartbeatRequest) { r.RackID = &empty }, "RackId can't be empty."},
		{"epoch", func(r *kmsg.ShareGroupHeartbeatRequest) { r.MemberEpoch = -2 }, "MemberEpoch is invalid."},
		{"no topics", func(r *kmsg.ShareGroupHeartbeatRequest) { r.SubscribedTopicNames = nil }, "SubscribedTopicNames must be set in first request."},
		{"empty topics", func(r *kmsg.ShareGroupHeartbeatRequest) { r.SubscribedTopicNames = []string{} }, "SubscribedTopicNames must be set in first request."},
	} {
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.GroupID, req.MemberID, req.SubscribedTopicNames = "sg", "m", []string{"t"}
		tc.mod(req)
		resp := h.g.Heartbeat(context.Background(), req, h.img)
		if resp.ErrorCode != kerr.InvalidRequest.Code || resp.ErrorMessage == nil || *resp.ErrorMessage != tc.msg {
			t.Fatalf("%s: %d %v", tc.name, resp.ErrorCode, resp.ErrorMessage)
		}
	}
	h.expectRecords()
}

func TestShareGroupPersistFailureChangesNothing(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	h.expect(h.do("a", 0, "t"), 0, 1, assign.Partitions{topicT: {0, 1}})
	before := h.g.Describe()
	h.p.fail = errors.New("disk gone")
	h.expect(h.do("b", 0, "t"), kerr.CoordinatorNotAvailable.Code, 0, nil)
	h.p.fail = kerr.NotCoordinator
	h.expect(h.do("a", -1), kerr.NotCoordinator.Code, 0, nil)
	if after := h.g.Describe(); !reflect.DeepEqual(before, after) {
		t.Fatalf("changed by failed persists:\n%+v\n%+v", before, after)
	}
	h.p.fail = nil
	h.expect(h.do("b", 0, "t"), 0, 2, assign.Partitions{topicT: {1}})
}

func TestShareGroupReplay(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 3}, "u": {ID: topicU, Partitions: 1}})
	h.expect(h.do("a", 0, "t"), 0, 1, assign.Partitions{topicT: {0, 1, 2}})
	h.expect(h.do("b", 0, "t", "u"), 0, 2, assign.Partitions{topicT: {2}, topicU: {0}})
	h.expect(h.do("c", 0, "t"), 0, 3, assign.Partitions{topicT: {1}})
	h.expect(h.do("c", -1), 0, -1, nil)
	h.expect(h.do("a", 1), 0, 4, assign.Partitions{topicT: {0, 1}})

	load := func() *ShareGroup {
		g := NewShareGroup("sg", ShareConfig{Now: h.clock.Now}, &sharePersister{})
		for _, r := range h.p.all {
			// Through the codec, as the coordinator reads them back.
			k, v, err := EncodeShareGroupRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			d, err := DecodeShareGroupRecord(k, v)
			if err != nil {
				t.Fatal(err)
			}
			g.Replay(d)
		}
		g.ReplayDone(h.img)
		return g
	}
	g := load()
	if want, got := h.g.Describe(), g.Describe(); !reflect.DeepEqual(want, got) {
		t.Fatalf("replayed group differs:\n%+v\n%+v", want, got)
	}
	if want, got := h.g.StatePartitions(), g.StatePartitions(); !reflect.DeepEqual(want, got) || len(got) != 2 {
		t.Fatalf("replayed state partitions differ:\n%+v\n%+v", want, got)
	}
	// Same topics: B's next heartbeat moves it to epoch 4, no new epoch.
	h2 := &sgHarness{t: t, g: g, p: g.p.(*sharePersister), clock: h.clock, img: h.img}
	h2.expect(h2.do("b", 2), 0, 4, nil)
	h2.expectRecords("current:b")

	// Topics changed while no coordinator ran: a new epoch at the first beat.
	h.img["u"] = assign.Topic{ID: topicU, Partitions: 2}
	g = load()
	h3 := &sgHarness{t: t, g: g, p: g.p.(*sharePersister), clock: h.clock, img: h.img}
	h3.expect(h3.do("a", 4), 0, 5, nil)
	h3.expectRecords("group", "target:b", "targetmeta", "state", "current:a")
	// Sessions restart at the load: nobody expires until 45 s later.
	h.clock.Advance(44 * time.Second)
	if gone, _ := g.Tick(context.Background()); gone != nil {
		t.Fatalf("expired %v", gone)
	}
	h.clock.Advance(2 * time.Second)
	if gone, _ := g.Tick(context.Background()); !reflect.DeepEqual(gone, []string{"a", "b"}) {
		t.Fatalf("expired %v", gone)
	}
	if !g.Empty() || g.Deleted() {
		t.Fatal("expired group should be empty, not deleted")
	}
}

func replayShare(t *testing.T, recs []ShareGroupRecord) *ShareGroup {
	t.Helper()
	g := NewShareGroup("sg", ShareConfig{}, &sharePersister{})
	for _, r := range recs {
		g.Replay(r)
	}
	g.ReplayDone(fakeImage{})
	return g
}

func TestShareGroupCreateAndDelete(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 1}})
	if code := h.g.Create(context.Background()); code != 0 {
		t.Fatal(code)
	}
	h.expectRecords("group")
	if code := h.g.Create(context.Background()); code != 0 {
		t.Fatal(code)
	}
	h.expectRecords()
	if g := replayShare(t, h.p.all); g.Deleted() || !g.Empty() {
		t.Fatal("a created group replays as deleted or not empty")
	}
	h.expect(h.do("a", 0, "t"), 0, 1, assign.Partitions{topicT: {0}})
	h.expect(h.do("a", -1), 0, -1, nil)
	if g := replayShare(t, h.p.all); g.Deleted() {
		t.Fatal("an emptied group replays as deleted")
	}
	if code := h.g.Delete(context.Background()); code != 0 {
		t.Fatal(code)
	}
	if g := replayShare(t, h.p.all); !g.Deleted() {
		t.Fatal("a deleted group replays as existing")
	}
}

func TestShareStatePartitionRecordGolden(t *testing.T) {
	id := [16]byte{0xAA, 15: 0x01}
	r := ShareGroupRecord{Type: ShareRecordStatePartitionMetadata, Group: "g", State: &ShareStatePartitions{
		Initialized: []ShareStateTopic{{ID: id, Name: "t", Partitions: []int32{1, 0}}},
	}}
	k, v, err := EncodeShareGroupRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	wantKey := []byte{0, 15, 0, 1, 'g'}
	wantValue := []byte{0, 0, // version 0
		0x01,                                                 // InitializingTopics: empty
		0x02,                                                 // InitializedTopics: one
		0xAA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // TopicId
		0x02, 't', // TopicName
		0x03, 0, 0, 0, 0, 0, 0, 0, 1, // Partitions [0 1]
		0x00, // element tags
		0x01, // DeletingTopics: empty
		0x00, // tags
	}
	if !reflect.DeepEqual(k, wantKey) || !reflect.DeepEqual(v, wantValue) {
		t.Fatalf("key %x value %x\nwant %x %x", k, v, wantKey, wantValue)
	}
	if !IsShareGroupRecordKey(k) {
		t.Fatal("type 15 key not recognized")
	}
	d, err := DecodeShareGroupRecord(k, v)
	if err != nil {
		t.Fatal(err)
	}
	want := ShareStatePartitions{Initializing: []ShareStateTopic{}, Initialized: []ShareStateTopic{{ID: id, Name: "t", Partitions: []int32{0, 1}}}, Deleting: []ShareStateTopic{}}
	if d.Group != "g" || d.Type != ShareRecordStatePartitionMetadata || !reflect.DeepEqual(*d.State, want) {
		t.Fatalf("decoded %+v %+v", d, d.State)
	}
	for i := range v {
		if _, err := DecodeShareGroupRecord(k, v[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	if d, err := DecodeShareGroupRecord(k, nil); err != nil || !d.Tombstone {
		t.Fatalf("tombstone: %+v %v", d, err)
	}
}

func FuzzDecodeShareStatePartitionRecord(f *testing.F) {
	r := ShareGroupRecord{Type: ShareRecordStatePartitionMetadata, Group: "g", State: &ShareStatePartitions{
		Initializing: []ShareStateTopic{{ID: topicU, Name: "u", Partitions: []int32{2}}},
		Initialized:  []ShareStateTopic{{ID: topicT, Name: "t", Partitions: []int32{0, 1}}},
		Deleting:     []ShareStateTopic{{ID: [16]byte{3}, Name: "x"}},
	}}
	addSeed(f, EncodeShareGroupRecord, r)
	fuzzRoundTrip(f, DecodeShareGroupRecord, EncodeShareGroupRecord, func(a, b ShareGroupRecord) bool {
		return a.State == nil || reflect.DeepEqual(a.State, b.State)
	})
}

func TestShareGroupTimeoutOverrides(t *testing.T) {
	h := newSGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 1}})
	var session, heartbeat time.Duration
	h.g.cfg.Overrides = func(group string) (time.Duration, time.Duration) {
		if group != "sg" {
			t.Errorf("overrides asked for %q", group)
		}
		return session, heartbeat
	}
	// No overrides: the configured 45 s / 5 s.
	r := h.do("a", 0, "t")
	if r.ErrorCode != 0 || r.HeartbeatIntervalMillis != 5000 {
		t.Fatalf("join: %+v", r)
	}
	session, heartbeat = 10*time.Second, 2*time.Second
	if r := h.do("a", 1); r.HeartbeatIntervalMillis != 2000 {
		t.Fatalf("overridden heartbeat interval %d", r.HeartbeatIntervalMillis)
	}
	h.clock.Advance(9 * time.Second)
	if gone, _ := h.g.Tick(context.Background()); gone != nil {
		t.Fatalf("expired before its 10 s session: %v", gone)
	}
	h.clock.Advance(2 * time.Second)
	if gone, _ := h.g.Tick(context.Background()); !reflect.DeepEqual(gone, []string{"a"}) {
		t.Fatalf("not expired after its 10 s session: %v", gone)
	}
}
