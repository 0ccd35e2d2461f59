package groups

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/groups/assign"
)

// fakeImage is a TopicImage tests change as they go.
type fakeImage map[string]assign.Topic

func (im fakeImage) Topic(name string) ([16]byte, int32, bool) {
	t, ok := im[name]
	return t.ID, t.Partitions, ok
}

func (im fakeImage) Names() []string {
	var out []string
	for n := range im {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// recorder keeps the records a group persisted: recs since the last
// take, all of them; fail makes the next persists fail.
type recorder[R any] struct {
	mu        sync.Mutex
	recs, all []R
	fail      error
}

// persist records recs unless fail is set or check (if not nil) fails
// one of them.
func (p *recorder[R]) persist(recs []R, check func(R) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	for i := 0; check != nil && i < len(recs); i++ {
		if err := check(recs[i]); err != nil {
			return err
		}
	}
	p.recs = append(p.recs, recs...)
	p.all = append(p.all, recs...)
	return nil
}

func (p *recorder[R]) take() []R {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.recs
	p.recs = nil
	return r
}

// consumerPersister is a consumer group's recorder.
type consumerPersister struct{ recorder[ConsumerRecord] }

func (p *consumerPersister) PersistConsumer(_ context.Context, recs []ConsumerRecord) error {
	return p.persist(recs, nil)
}

var (
	topicT = [16]byte{1}
	topicU = [16]byte{2}
)

// cgHarness drives one consumer group and a simulated client per member:
// a client owns what the last answer that carried an assignment gave it.
type cgHarness struct {
	t     *testing.T
	g     *ConsumerGroup
	p     *consumerPersister
	clock *fakeClock
	img   fakeImage
	// owned and epoch are each simulated client's view.
	owned map[string]assign.Partitions
	epoch map[string]int32
}

func newCGHarness(t *testing.T, img fakeImage) *cgHarness {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p := &consumerPersister{}
	return &cgHarness{
		t: t, p: p, clock: clock, img: img,
		g:     NewConsumerGroup("g", ConsumerConfig{Now: clock.Now}, p),
		owned: map[string]assign.Partitions{},
		epoch: map[string]int32{},
	}
}

func ownedTopics(p assign.Partitions) []kmsg.ConsumerGroupHeartbeatRequestTopic {
	out := []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	for _, id := range sortedTopicIDs(p) {
		t := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		t.TopicID, t.Partitions = id, append([]int32(nil), p[id]...)
		out = append(out, t)
	}
	return out
}

// hbReq is a v1 heartbeat of member of group g at epoch, with nothing
// else set (no rebalance timeout, subscription or owned partitions).
func hbReq(member string, epoch int32) *kmsg.ConsumerGroupHeartbeatRequest {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, "g", member, epoch
	return req
}

func joinReq(member string, instance *string, topics ...string) *kmsg.ConsumerGroupHeartbeatRequest {
	req := hbReq(member, 0)
	req.InstanceID = instance
	req.RebalanceTimeoutMillis = 30000
	req.SubscribedTopicNames = topics
	req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	return req
}

// do sends req, updates the member's simulated client from the answer and
// checks that no partition is owned by two clients.
func (h *cgHarness) do(req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	resp := h.g.Heartbeat(context.Background(), req, h.img)
	if resp.ErrorCode == 0 && resp.MemberID != nil {
		id := *resp.MemberID
		if resp.MemberEpoch < 0 {
			delete(h.owned, id)
			delete(h.epoch, id)
		} else {
			h.epoch[id] = resp.MemberEpoch
			if resp.Assignment != nil {
				p := assign.Partitions{}
				for _, t := range resp.Assignment.Topics {
					p[t.TopicID] = append([]int32(nil), t.Partitions...)
				}
				h.owned[id] = p
			}
		}
	}
	h.checkExclusive()
	return resp
}

// join joins member subscribed to topics; it must succeed.
func (h *cgHarness) join(member string, topics ...string) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	resp := h.do(joinReq(member, nil, topics...))
	if resp.ErrorCode != 0 {
		h.t.Fatalf("join %s: %v", member, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

// hb sends a heartbeat of member at its client's epoch with what its
// client owns.
func (h *cgHarness) hb(member string) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	req := hbReq(member, h.epoch[member])
	req.Topics = ownedTopics(h.owned[member])
	resp := h.do(req)
	if resp.ErrorCode != 0 {
		h.t.Fatalf("heartbeat %s: %v", member, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

func (h *cgHarness) checkExclusive() {
	h.t.Helper()
	seen := map[topicPart]string{}
	for id, p := range h.owned {
		for tid, parts := range p {
			for _, part := range parts {
				if other, ok := seen[topicPart{tid, part}]; ok {
					h.t.Fatalf("partition %v/%d owned by %s and %s", tid[0], part, other, id)
				}
				seen[topicPart{tid, part}] = id
			}
		}
	}
}

// expect checks a response's epoch and assignment (nil: none sent).
func expect(t *testing.T, resp *kmsg.ConsumerGroupHeartbeatResponse, epoch int32, want assign.Partitions) {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("error %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if resp.MemberEpoch != epoch {
		t.Fatalf("member epoch %d, want %d", resp.MemberEpoch, epoch)
	}
	if want == nil {
		if resp.Assignment != nil {
			t.Fatalf("assignment %v sent, want none", resp.Assignment.Topics)
		}
		return
	}
	if resp.Assignment == nil {
		t.Fatalf("no assignment, want %v", want)
	}
	got := assign.Partitions{}
	for _, tp := range resp.Assignment.Topics {
		got[tp.TopicID] = tp.Partitions
	}
	if !got.Equal(want) {
		t.Fatalf("assignment %v, want %v", got, want)
	}
}

func (h *cgHarness) expectGroup(state string, epoch, assignmentEpoch int32) {
	h.t.Helper()
	d := h.g.Describe()
	if d.State != state || d.Epoch != epoch || d.AssignmentEpoch != assignmentEpoch {
		h.t.Fatalf("group %s epoch %d assignment epoch %d, want %s %d %d", d.State, d.Epoch, d.AssignmentEpoch, state, epoch, assignmentEpoch)
	}
}

func recordTypes(recs []ConsumerRecord) []string {
	var out []string
	for _, r := range recs {
		s := r.Type.String()
		if r.MemberID != "" {
			s += "/" + r.MemberID
		}
		if r.Tombstone {
			s += "/tombstone"
		}
		out = append(out, s)
	}
	return out
}

func TestConsumerGroupLifecycle(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 4}})
	T := func(parts ...int32) assign.Partitions {
		if len(parts) == 0 {
			return assign.Partitions{}
		}
		return assign.Partitions{topicT: parts}
	}

	// Join: the only member gets everything at once.
	expect(t, h.join("m1", "t"), 1, T(0, 1, 2, 3))
	h.expectGroup("Stable", 1, 1)
	if got, want := recordTypes(h.p.take()), []string{
		"ConsumerGroupMemberMetadata/m1", "ConsumerGroupMetadata", "ConsumerGroupTargetAssignmentMember/m1",
		"ConsumerGroupTargetAssignmentMetadata", "ConsumerGroupCurrentMemberAssignment/m1",
	}; !reflect.DeepEqual(got, want) {
		t.Fatalf("join records %v, want %v", got, want)
	}

	// Steady state: nothing sent, nothing persisted.
	expect(t, h.hb("m1"), 1, nil)
	if recs := h.p.take(); len(recs) != 0 {
		t.Fatalf("steady heartbeat persisted %v", recordTypes(recs))
	}

	// A second member: it waits for m1 to revoke 2 and 3.
	expect(t, h.join("m2", "t"), 2, T())
	h.expectGroup("Reconciling", 2, 2)
	expect(t, h.hb("m2"), 2, nil) // still unreleased
	expect(t, h.hb("m1"), 1, T(0, 1))
	if st := h.g.s.members["m1"].state; st != MemberUnrevokedPartitions {
		t.Fatalf("m1 state %v", st)
	}
	expect(t, h.hb("m2"), 2, nil) // m1 has not confirmed yet
	expect(t, h.hb("m1"), 2, nil) // confirmed: epoch 2, keeps 0 and 1
	expect(t, h.hb("m2"), 2, T(2, 3))
	h.expectGroup("Stable", 2, 2)

	// A known member rejoining with epoch 0 (a lost answer, or after
	// FENCED_MEMBER_EPOCH) keeps its epoch and partitions: no rebalance.
	expect(t, h.join("m2", "t"), 2, T(2, 3))
	h.expectGroup("Stable", 2, 2)

	// A third member on two topics while a second topic appears.
	h.img["u"] = assign.Topic{ID: topicU, Partitions: 2}
	expect(t, h.join("m3", "t", "u"), 3, assign.Partitions{topicU: {0, 1}})
	// m1 and m2 keep t: the target is 2/2/2.
	expect(t, h.hb("m1"), 3, nil)
	expect(t, h.hb("m2"), 3, nil)
	h.expectGroup("Stable", 3, 3)

	// m1 leaves: nobody holds 0 and 1, so they move at once; uniform
	// balances 3/3 (m3 takes t1 next to u).
	resp := h.do(hbReq("m1", -1))
	expect(t, resp, -1, nil)
	h.p.take()
	expect(t, h.hb("m2"), 4, T(0, 2, 3))
	expect(t, h.hb("m3"), 4, assign.Partitions{topicT: {1}, topicU: {0, 1}})

	// Session expiry: m3 stops heartbeating.
	h.p.take()
	h.clock.Advance(30 * time.Second)
	expect(t, h.hb("m2"), 4, nil)
	h.clock.Advance(16 * time.Second)
	expect(t, h.hb("m2"), 4, nil)
	if err := h.g.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := recordTypes(h.p.take()), []string{
		"ConsumerGroupCurrentMemberAssignment/m3/tombstone", "ConsumerGroupTargetAssignmentMember/m3/tombstone",
		"ConsumerGroupMemberMetadata/m3/tombstone", "ConsumerGroupMetadata",
		"ConsumerGroupTargetAssignmentMember/m2", "ConsumerGroupTargetAssignmentMetadata",
	}; !reflect.DeepEqual(got, want) {
		t.Fatalf("expiry records %v, want %v", got, want)
	}
	delete(h.owned, "m3") // the client is gone
	h.expectGroup("Reconciling", 5, 5)
	expect(t, h.hb("m2"), 5, T(0, 1, 2, 3)) // m2 does not subscribe to u
	h.expectGroup("Stable", 5, 5)
	if resp := h.do(hbReq("m3", 4)); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member's heartbeat: %v", kerr.ErrorForCode(resp.ErrorCode))
	}

	// The topic gains partitions: the next heartbeat starts epoch 6.
	h.img["t"] = assign.Topic{ID: topicT, Partitions: 6}
	expect(t, h.hb("m2"), 6, T(0, 1, 2, 3, 4, 5))
	h.expectGroup("Stable", 6, 6)
}

func staticJoin(member, instance string) *kmsg.ConsumerGroupHeartbeatRequest {
	return joinReq(member, &instance, "t")
}

func TestConsumerGroupStaticMember(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 4}})
	expect(t, h.do(staticJoin("s1", "i1")), 1, assign.Partitions{topicT: {0, 1, 2, 3}})
	expect(t, h.join("m2", "t"), 2, assign.Partitions{})
	expect(t, h.hb("s1"), 1, assign.Partitions{topicT: {0, 1}})
	expect(t, h.hb("s1"), 2, nil)
	expect(t, h.hb("m2"), 2, assign.Partitions{topicT: {2, 3}})

	// The instance id is taken while s1 is active.
	if resp := h.do(staticJoin("s2", "i1")); resp.ErrorCode != kerr.UnreleasedInstanceID.Code {
		t.Fatalf("second member for i1: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// s1 leaves for a restart (-2): it keeps 0 and 1, nobody rebalances.
	leave := hbReq("s1", -2)
	leave.InstanceID = kmsg.StringPtr("i1")
	expect(t, h.do(leave), -2, nil)
	h.p.take()
	h.expectGroup("Stable", 2, 2)
	expect(t, h.hb("m2"), 2, nil)

	// It comes back as s2 with the same instance id: same epoch and
	// partitions, no new group epoch.
	expect(t, h.do(staticJoin("s2", "i1")), 2, assign.Partitions{topicT: {0, 1}})
	h.expectGroup("Stable", 2, 2)
	if got, want := recordTypes(h.p.take()), []string{
		"ConsumerGroupCurrentMemberAssignment/s1/tombstone", "ConsumerGroupTargetAssignmentMember/s1/tombstone",
		"ConsumerGroupMemberMetadata/s1/tombstone", "ConsumerGroupTargetAssignmentMember/s2",
		"ConsumerGroupMemberMetadata/s2", "ConsumerGroupCurrentMemberAssignment/s2",
	}; !reflect.DeepEqual(got, want) {
		t.Fatalf("static rejoin records %v, want %v", got, want)
	}
	d := h.g.Describe()
	if len(d.Members) != 2 || d.Members[1].MemberID != "s2" || *d.Members[1].InstanceID != "i1" || d.Members[1].MemberEpoch != 2 {
		t.Fatalf("members %+v", d.Members)
	}
	// A heartbeat naming the instance id under another member id is
	// fenced; an unknown instance id is an unknown member.
	hbStatic := hbReq("m2", 2)
	hbStatic.InstanceID = kmsg.StringPtr("i1")
	if resp := h.g.Heartbeat(context.Background(), hbStatic, h.img); resp.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("heartbeat with another member's instance id: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	hbStatic.InstanceID = kmsg.StringPtr("i9")
	if resp := h.g.Heartbeat(context.Background(), hbStatic, h.img); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat with an unknown instance id: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// The old member id is gone.
	old := hbReq("s1", 2)
	if resp := h.g.Heartbeat(context.Background(), old, h.img); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("old static member id: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// A -2 leave by the wrong member id for the instance is fenced.
	leave.MemberID = "m2"
	leave.InstanceID = kmsg.StringPtr("i1")
	if resp := h.g.Heartbeat(context.Background(), leave, h.img); resp.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("leave with another member's instance id: %v", kerr.ErrorForCode(resp.ErrorCode))
	}

	// A static member that left with -2 and does not return expires
	// with its session; m2 then gets everything.
	leave.MemberID = "s2"
	expect(t, h.do(leave), -2, nil)
	h.clock.Advance(46 * time.Second)
	expect(t, h.hb("m2"), 2, nil)
	if err := h.g.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, h.hb("m2"), 3, assign.Partitions{topicT: {0, 1, 2, 3}})
}

func TestConsumerGroupEpochFencing(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	h.join("m1", "t")
	h.join("m2", "t")
	expect(t, h.hb("m1"), 1, assign.Partitions{topicT: {0}})
	expect(t, h.hb("m1"), 2, nil)
	send := func(member string, epoch int32, owned assign.Partitions) int16 {
		r := hbReq(member, epoch)
		if owned != nil {
			r.Topics = ownedTopics(owned)
		}
		return h.g.Heartbeat(context.Background(), r, h.img).ErrorCode
	}
	for _, tc := range []struct {
		name   string
		member string
		epoch  int32
		owned  assign.Partitions
		want   int16
	}{
		{"epoch ahead", "m1", 3, nil, kerr.FencedMemberEpoch.Code},
		{"previous epoch, owned a subset", "m1", 1, assign.Partitions{topicT: {0}}, 0},
		{"previous epoch, owned not a subset", "m1", 1, assign.Partitions{topicT: {0, 1}}, kerr.FencedMemberEpoch.Code},
		{"previous epoch, owned not sent", "m1", 1, nil, kerr.FencedMemberEpoch.Code},
		{"unknown member", "nobody", 1, nil, kerr.UnknownMemberID.Code},
	} {
		if got := send(tc.member, tc.epoch, tc.owned); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
		}
	}
}

func TestConsumerGroupHeartbeatValidation(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	for _, tc := range []struct {
		name string
		mod  func(r *kmsg.ConsumerGroupHeartbeatRequest)
		want int16
	}{
		{"v1 without member id", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = "" }, kerr.InvalidRequest.Code},
		{"no group", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "" }, kerr.InvalidRequest.Code},
		{"empty instance id", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.InstanceID = kmsg.StringPtr("") }, kerr.InvalidRequest.Code},
		{"empty rack", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.RackID = kmsg.StringPtr("") }, kerr.InvalidRequest.Code},
		{"join without rebalance timeout", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.RebalanceTimeoutMillis = -1 }, kerr.InvalidRequest.Code},
		{"join owning partitions", func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.Topics = ownedTopics(assign.Partitions{topicT: {0}})
		}, kerr.InvalidRequest.Code},
		{"join with owned not sent", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Topics = nil }, kerr.InvalidRequest.Code},
		{"join without subscription", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicNames = nil }, kerr.InvalidRequest.Code},
		{"static leave without instance id", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -2 }, kerr.InvalidRequest.Code},
		{"epoch below -2", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -3 }, kerr.InvalidRequest.Code},
		{"bad regex", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicRegex = kmsg.StringPtr("(") }, kerr.InvalidRequest.Code},
		{"unknown assignor", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.ServerAssignor = kmsg.StringPtr("sticky") }, kerr.UnsupportedAssignor.Code},
		{"leave of an unknown member", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -1 }, kerr.UnknownMemberID.Code},
		{"range assignor", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.ServerAssignor = kmsg.StringPtr("range") }, 0},
	} {
		r := joinReq("m1", nil, "t")
		tc.mod(r)
		if got := h.g.Heartbeat(context.Background(), r, h.img).ErrorCode; got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
		}
	}
	if d := h.g.Describe(); d.AssignorName != "range" || len(d.Members) != 1 {
		t.Fatalf("after the range join: %+v", d)
	}
	// v0: the server names the member.
	r := joinReq("", nil, "t")
	r.Version = 0
	resp := h.g.Heartbeat(context.Background(), r, h.img)
	if resp.ErrorCode != 0 || resp.MemberID == nil || len(*resp.MemberID) != 22 {
		t.Fatalf("v0 join: %v %v", kerr.ErrorForCode(resp.ErrorCode), resp.MemberID)
	}
}

func TestConsumerGroupMaxSize(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	h.g = NewConsumerGroup("g", ConsumerConfig{Now: h.clock.Now, MaxSize: 2}, h.p)
	h.join("m1", "t")
	h.join("m2", "t")
	if got := h.g.Heartbeat(context.Background(), joinReq("m3", nil, "t"), h.img).ErrorCode; got != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("third member: %v", kerr.ErrorForCode(got))
	}
	h.join("m2", "t") // a member already in the group may rejoin
}

func TestConsumerGroupRevocationDeadline(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	h.join("m1", "t")
	h.join("m2", "t")
	expect(t, h.hb("m1"), 1, assign.Partitions{topicT: {0}}) // must revoke 1 within 30 s
	h.clock.Advance(20 * time.Second)
	h.hb("m2")
	if err := h.g.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.expectGroup("Reconciling", 2, 2)
	h.clock.Advance(11 * time.Second)
	h.hb("m2")
	// m1 kept heartbeating without revoking: it is fenced.
	r := hbReq("m1", 1)
	r.Topics = ownedTopics(assign.Partitions{topicT: {0, 1}})
	h.g.Heartbeat(context.Background(), r, h.img)
	if err := h.g.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	delete(h.owned, "m1")
	h.expectGroup("Reconciling", 3, 3)
	expect(t, h.hb("m2"), 3, assign.Partitions{topicT: {0, 1}})
	if got := h.g.Heartbeat(context.Background(), r, h.img).ErrorCode; got != kerr.UnknownMemberID.Code {
		t.Fatalf("fenced member: %v", kerr.ErrorForCode(got))
	}
}

func TestConsumerGroupPersistFailureChangesNothing(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 4}})
	h.join("m1", "t")
	before := h.g.Describe()
	h.p.fail = errors.New("disk on fire")
	if got := h.g.Heartbeat(context.Background(), joinReq("m2", nil, "t"), h.img).ErrorCode; got != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("join with a failing persist: %v", kerr.ErrorForCode(got))
	}
	h.p.fail = fmt.Errorf("wrapped: %w", kerr.NotCoordinator)
	if got := h.g.Heartbeat(context.Background(), joinReq("m2", nil, "t"), h.img).ErrorCode; got != kerr.NotCoordinator.Code {
		t.Fatalf("join with NOT_COORDINATOR: %v", kerr.ErrorForCode(got))
	}
	if after := h.g.Describe(); !reflect.DeepEqual(before, after) {
		t.Fatalf("group changed: %+v → %+v", before, after)
	}
	h.p.fail = nil
	expect(t, h.join("m2", "t"), 2, assign.Partitions{})
}

// A new group replaying every record persisted comes back as the group was.
func TestConsumerGroupReplay(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 4}, "u": {ID: topicU, Partitions: 2}})
	var all []ConsumerRecord
	step := func() { all = append(all, h.p.take()...) }
	h.do(staticJoin("s1", "i1"))
	step()
	h.join("m2", "t", "u")
	step()
	h.hb("s1")
	step()
	h.hb("m2")
	step()
	h.join("m3", "t")
	step()
	h.hb("m3")
	step()
	want := h.g.Describe()

	g2 := NewConsumerGroup("g", ConsumerConfig{Now: h.clock.Now}, &consumerPersister{})
	for _, r := range all {
		g2.Replay(r)
	}
	g2.ReplayDone(h.img)
	if got := g2.Describe(); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(g2.s.owners, h.g.s.owners) || !reflect.DeepEqual(g2.s.static, h.g.s.static) {
		t.Fatalf("owners %v static %v, want %v %v", g2.s.owners, g2.s.static, h.g.s.owners, h.g.s.static)
	}
}

func TestConsumerGroupRegexSubscription(t *testing.T) {
	h := newCGHarness(t, fakeImage{"orders": {ID: topicT, Partitions: 2}})
	r := joinReq("m1", nil)
	r.SubscribedTopicNames = nil
	r.SubscribedTopicRegex = kmsg.StringPtr("ord.*")
	expect(t, h.do(r), 1, assign.Partitions{topicT: {0, 1}})
	// A new matching topic is seen once the resolution is stale.
	h.img["orders2"] = assign.Topic{ID: topicU, Partitions: 1}
	expect(t, h.hb("m1"), 1, nil)
	h.clock.Advance(10 * time.Second)
	expect(t, h.hb("m1"), 2, assign.Partitions{topicT: {0, 1}, topicU: {0}})
	if d := h.g.Describe(); *d.Members[0].SubscribedTopicRegex != "ord.*" {
		t.Fatalf("describe %+v", d.Members[0])
	}
}

// Members join, leave and heartbeat in a random order (a fixed seed): no
// partition is ever owned by two clients (checked at every answer), and
// once everyone heartbeats the group is Stable with every partition owned.
func TestConsumerGroupRandomHandover(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewSource(seed))
		h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 12}})
		live := map[string]bool{}
		for step := 0; step < 300; step++ {
			id := fmt.Sprintf("m%d", r.Intn(6))
			switch {
			case !live[id]:
				h.join(id, "t")
				live[id] = true
			case r.Intn(15) == 0:
				expect(t, h.do(hbReq(id, -1)), -1, nil)
				live[id] = false
			default:
				h.hb(id)
			}
		}
		for round := 0; round < 4; round++ {
			for i := 0; i < 6; i++ {
				if id := fmt.Sprintf("m%d", i); live[id] {
					h.hb(id)
				}
			}
		}
		d := h.g.Describe()
		n := 0
		for _, p := range h.owned {
			n += p.Count()
		}
		if (len(d.Members) > 0 && (d.State != "Stable" || n != 12)) || len(d.Members) != len(h.owned) {
			t.Fatalf("seed %d: state %s, %d partitions owned by %d clients, %d members", seed, d.State, n, len(h.owned), len(d.Members))
		}
	}
}

// TestConsumerGroupLoadHash: GroupMetadata carries the hash of the topics
// the target was computed on. A coordinator that loads the group goes on
// at its epoch when the topics hash the same, and starts a new epoch when
// they changed meanwhile or the record has no hash (written before it).
func TestConsumerGroupLoadHash(t *testing.T) {
	h := newCGHarness(t, fakeImage{"t": {ID: topicT, Partitions: 2}})
	expect(t, h.do(joinReq("m1", nil, "t")), 1, assign.Partitions{topicT: {0, 1}})
	recs := h.p.take()
	var hashed int
	for _, r := range recs {
		if r.Type == RecordGroupMetadata && r.MetadataHash != 0 {
			hashed++
		}
	}
	if hashed != 1 {
		t.Fatalf("%d GroupMetadata records with a hash in %+v, want 1", hashed, recs)
	}
	load := func(img fakeImage, strip bool) *ConsumerGroup {
		g := NewConsumerGroup("g", ConsumerConfig{Now: h.clock.Now}, &consumerPersister{})
		for _, r := range recs {
			if strip {
				r.MetadataHash = 0
			}
			g.Replay(r)
		}
		g.ReplayDone(img)
		return g
	}
	hb := func(g *ConsumerGroup, img fakeImage) *kmsg.ConsumerGroupHeartbeatResponse {
		req := joinReq("m1", nil)
		req.MemberEpoch, req.RebalanceTimeoutMillis, req.SubscribedTopicNames = 1, -1, nil
		req.Topics = ownedTopics(assign.Partitions{topicT: {0, 1}})
		return g.Heartbeat(context.Background(), req, img)
	}
	same := fakeImage{"t": {ID: topicT, Partitions: 2}}
	expect(t, hb(load(same, false), same), 1, nil)
	expect(t, hb(load(same, true), same), 2, nil)
	grown := fakeImage{"t": {ID: topicT, Partitions: 3}}
	expect(t, hb(load(grown, false), grown), 2, assign.Partitions{topicT: {0, 1, 2}})
}
