package groups

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type memPersister struct {
	mu   sync.Mutex
	recs []Record
	fail error
	// stall, when set, holds every Persist of records of group stall
	// until release is closed or the Persist's ctx is done, as a
	// replicated __consumer_offsets partition does while waiting for its
	// followers; stalled counts the Persist calls held there.
	stall   string
	release chan struct{}
	stalled atomic.Int32
}

// stallGroup makes every later Persist of group's records wait until the
// returned release function is called (or the Persist's ctx is done).
func (p *memPersister) stallGroup(t *testing.T, group string) (release func()) {
	p.mu.Lock()
	p.stall, p.release = group, make(chan struct{})
	ch := p.release
	p.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return release
}

func (p *memPersister) Persist(ctx context.Context, recs []Record) error {
	p.mu.Lock()
	if p.stall != "" && recordsOf(recs, p.stall) {
		release := p.release
		p.mu.Unlock()
		p.stalled.Add(1)
		defer p.stalled.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	for _, r := range recs {
		p.recs = append(p.recs, Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...)})
		if r.Value == nil {
			p.recs[len(p.recs)-1].Value = nil
		}
	}
	return nil
}

// recordsOf reports whether any of recs belongs to group.
func recordsOf(recs []Record, group string) bool {
	for _, r := range recs {
		if len(r.Key) < 2 {
			continue
		}
		if binary.BigEndian.Uint16(r.Key) == groupKeyVersion {
			var k kmsg.GroupMetadataKey
			if k.ReadFrom(r.Key) == nil && k.Group == group {
				return true
			}
			continue
		}
		var k kmsg.OffsetCommitKey
		if k.ReadFrom(r.Key) == nil && k.Group == group {
			return true
		}
	}
	return false
}

func (p *memPersister) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

func (p *memPersister) records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.recs...)
}

type harness struct {
	t     *testing.T
	c     *Coordinator
	clk   *fakeClock
	p     *memPersister
	group string
	// defaults for joins
	session, rebal time.Duration
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clk: &fakeClock{t: time.Unix(1_700_000_000, 0)}, p: &memPersister{}, group: "g", session: 10 * time.Second, rebal: 20 * time.Second}
	cfg := Config{
		MinSessionTimeout:     time.Second,
		InitialRebalanceDelay: -1,
		TickInterval:          -1,
		Now:                   h.clk.Now,
		Logger:                zerolog.Nop(),
	}
	if mod != nil {
		mod(&cfg)
	}
	h.c = New(cfg, h.p)
	h.c.ReplayDone()
	t.Cleanup(h.c.Close)
	return h
}

func (h *harness) advance(d time.Duration) {
	h.clk.Advance(d)
	h.c.Tick()
}

func (h *harness) grp() *group { return h.c.get(h.group) }

func (h *harness) state() State {
	g := h.grp()
	if g == nil {
		return StateDead
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

func (h *harness) generation() int32 {
	g := h.grp()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.generation
}

func (h *harness) wantState(want State) {
	h.t.Helper()
	if got := h.state(); got != want {
		h.t.Fatalf("state = %v, want %v", got, want)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// joiners reports how many members are parked in JoinGroup.
func (h *harness) joiners() int {
	g := h.grp()
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.members {
		if m.join != nil {
			n++
		}
	}
	return n
}

func (h *harness) syncers() int {
	g := h.grp()
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.members {
		if m.sync != nil {
			n++
		}
	}
	return n
}

type proto struct {
	name string
	meta []byte
}

func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

var rangeProto = proto{"range", consumerMeta("t")}

type joinOpt struct {
	memberID string
	instance string
	version  int16
	protos   []proto
	session  time.Duration
	rebal    time.Duration
}

func (h *harness) joinReq(o joinOpt) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = o.version
	if req.Version == 0 {
		req.Version = 5
	}
	req.Group = h.group
	req.MemberID = o.memberID
	if o.instance != "" {
		req.InstanceID = kmsg.StringPtr(o.instance)
	}
	if o.session == 0 {
		o.session = h.session
	}
	if o.rebal == 0 {
		o.rebal = h.rebal
	}
	req.SessionTimeoutMillis = int32(o.session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(o.rebal.Milliseconds())
	req.ProtocolType = "consumer"
	if o.protos == nil {
		o.protos = []proto{rangeProto}
	}
	for _, p := range o.protos {
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p.name, Metadata: p.meta})
	}
	return req
}

func (h *harness) startJoin(o joinOpt) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	req := h.joinReq(o)
	go func() { ch <- h.c.JoinGroup(context.Background(), req) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a response")
		panic("unreachable")
	}
}

func notReady[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected response %+v", v)
	default:
	}
}

// newMemberID does the v4+ MEMBER_ID_REQUIRED round trip.
func (h *harness) pendingID() string {
	h.t.Helper()
	resp := h.c.JoinGroup(context.Background(), h.joinReq(joinOpt{}))
	if resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
		h.t.Fatalf("want MEMBER_ID_REQUIRED with an id, got %v %q", resp.ErrorCode, resp.MemberID)
	}
	return resp.MemberID
}

func (h *harness) startSync(memberID string, gen int32, assign map[string][]byte) <-chan *kmsg.SyncGroupResponse {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group = h.group
	req.MemberID = memberID
	req.Generation = gen
	for id, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a})
	}
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { ch <- h.c.SyncGroup(context.Background(), req) }()
	return ch
}

func (h *harness) heartbeat(memberID string, gen int32) int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group = h.group
	req.MemberID = memberID
	req.Generation = gen
	return h.c.Heartbeat(context.Background(), req).ErrorCode
}

func (h *harness) leave(ids ...string) *kmsg.LeaveGroupResponse {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 5
	req.Group = h.group
	for _, id := range ids {
		req.Members = append(req.Members, kmsg.LeaveGroupRequestMember{MemberID: id})
	}
	return h.c.LeaveGroup(context.Background(), req)
}

func assignmentFor(id string) []byte { return []byte("assignment-for-" + id) }

// stable brings n dynamic members to a Stable group and returns their ids
// (leader first) and the generation.
func (h *harness) stable(n int) ([]string, int32) {
	h.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.pendingID()
	}
	chs := make([]<-chan *kmsg.JoinGroupResponse, n)
	for i, id := range ids {
		chs[i] = h.startJoin(joinOpt{memberID: id})
	}
	var leader string
	var gen int32
	for _, ch := range chs {
		r := recv(h.t, ch)
		if r.ErrorCode != 0 {
			h.t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		leader, gen = r.LeaderID, r.Generation
	}
	h.syncAll(ids, leader, gen)
	ordered := []string{leader}
	for _, id := range ids {
		if id != leader {
			ordered = append(ordered, id)
		}
	}
	return ordered, gen
}

// syncAll syncs every member (leader last), checking each gets its bytes.
func (h *harness) syncAll(ids []string, leader string, gen int32) {
	h.t.Helper()
	assign := make(map[string][]byte)
	for _, id := range ids {
		assign[id] = assignmentFor(id)
	}
	chs := map[string]<-chan *kmsg.SyncGroupResponse{}
	for _, id := range ids {
		if id != leader {
			chs[id] = h.startSync(id, gen, nil)
		}
	}
	waitFor(h.t, "followers parked in SyncGroup", func() bool { return h.syncers() == len(ids)-1 })
	chs[leader] = h.startSync(leader, gen, assign)
	for id, ch := range chs {
		r := recv(h.t, ch)
		if r.ErrorCode != 0 || string(r.MemberAssignment) != string(assignmentFor(id)) {
			h.t.Fatalf("sync %s: err %v assignment %q", id, kerr.ErrorForCode(r.ErrorCode), r.MemberAssignment)
		}
	}
	h.wantState(StateStable)
}

func (h *harness) commit(memberID string, gen int32, topic string, part int32, off int64) int16 {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group = h.group
	req.MemberID = memberID
	req.Generation = gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition = part
	rp.Offset = off
	rp.LeaderEpoch = 3
	rp.Metadata = kmsg.StringPtr("md")
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := h.c.OffsetCommit(context.Background(), req)
	return resp.Topics[0].Partitions[0].ErrorCode
}

func fetchAll(c *Coordinator, group string) *kmsg.OffsetFetchResponse {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	req.Groups = append(req.Groups, rg)
	return c.OffsetFetch(context.Background(), req)
}

func (h *harness) fetched(topic string, part int32) int64 {
	h.t.Helper()
	resp := fetchAll(h.c, h.group)
	for _, t := range resp.Groups[0].Topics {
		for _, p := range t.Partitions {
			if t.Topic == topic && p.Partition == part {
				return p.Offset
			}
		}
	}
	return -1
}
