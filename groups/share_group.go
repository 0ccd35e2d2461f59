package groups

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/groups/assign"
)

// This file is the KIP-932 share group's membership (ShareGroupHeartbeat,
// API 76; ShareGroupDescribe, API 77) as a state machine with no I/O: see
// docs/groups-next.md, part B "Membership". The share-partition state
// (acquired records, delivery counts) is package share's, not this
// file's.
//
// Share groups follow the KIP-848 heartbeat pattern without revocation:
// records are acquired and acknowledged per record at the partition
// leader, so a partition may be given to several members at once and a
// member is given its target as soon as it heartbeats. The group epoch is
// bumped by a member joining, leaving or being fenced (session expiry),
// a subscription change, or a change of a subscribed topic's metadata
// (id or partition count); the target (the simple assignor,
// assign.Simple) is recomputed at once, so the assignment epoch is the
// group epoch after every request. A member's epoch moves to the
// assignment epoch, with its assignment, at its own next heartbeat.
//
// Records, persisted together before the answer (ShareGroupRecord; the
// order is Kafka's):
//
//   - join: MemberMetadata; GroupMetadata (epoch + 1, metadata hash);
//     TargetMember of every member whose target changed; TargetMetadata;
//     CurrentAssignment of the member.
//   - heartbeat: MemberMetadata if the rack or subscription changed; on a
//     new epoch (subscription or topic metadata changed) GroupMetadata and
//     the target records; CurrentAssignment when the member's epoch or
//     assignment changed. A steady heartbeat persists nothing.
//   - leave (-1) or session expiry: tombstones CurrentAssignment,
//     TargetMember, MemberMetadata of each member removed; GroupMetadata;
//     the target records.
//   - a new target covering partitions not yet in
//     StatePartitionMetadata (type 15, share_group_records.go): that
//     record, after the target's, with every initialized partition.
//   - DeleteGroups (an empty group only): tombstones
//     StatePartitionMetadata, TargetMetadata and GroupMetadata.
//
// The metadata hash in GroupMetadata is Tusk's (FNV-64a over the
// subscribed topics' names, ids and partition counts, sorted), not
// Kafka's murmur-based one: it only lets a replayed group know whether
// the topics changed while no coordinator ran.

// ShareConfig configures share groups. Zero fields take Kafka's defaults
// (fill); the broker fills them from its configuration.
type ShareConfig struct {
	// SessionTimeout is group.share.session.timeout.ms (45 s).
	SessionTimeout time.Duration
	// HeartbeatInterval is group.share.heartbeat.interval.ms (5 s).
	HeartbeatInterval time.Duration
	// MaxSize is group.share.max.size (200): a join beyond it gets
	// GROUP_MAX_SIZE_REACHED. Negative means no limit.
	MaxSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Overrides, if set, returns a group's own session timeout and
	// heartbeat interval (GROUP configs share.session.timeout.ms and
	// share.heartbeat.interval.ms); zero keeps the value above. It is
	// asked at every heartbeat and must not call the group.
	Overrides func(group string) (session, heartbeat time.Duration)
}

func (cfg *ShareConfig) fill() {
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 45 * time.Second
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = 200
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// SharePersister durably stores a share group's records. The group
// answers only after PersistShare returned nil; on an error the group is
// left as it was before the request and the error's code (a *kerr.Error)
// or COORDINATOR_NOT_AVAILABLE is answered. It is called with the group's
// lock held.
type SharePersister interface {
	PersistShare(ctx context.Context, records []ShareGroupRecord) error
}

// maxShareMemberID is Kafka's bound on a share member id (a client-made
// UUID string).
const maxShareMemberID = 36

type shareMember struct {
	id         string
	rackID     *string
	clientID   string
	clientHost string
	topics     []string // subscribed names, sorted

	epoch, prevEpoch int32
	assigned         assign.Partitions

	sessionDeadline time.Time
}

func (m *shareMember) clone() *shareMember {
	c := *m
	c.topics = append([]string(nil), m.topics...)
	c.assigned = m.assigned.Clone()
	return &c
}

func (m *shareMember) metadata() *ShareMemberMetadata {
	return &ShareMemberMetadata{
		RackID: m.rackID, ClientID: m.clientID, ClientHost: m.clientHost,
		SubscribedTopicNames: append([]string{}, m.topics...),
	}
}

func (m *shareMember) current() *ShareMemberAssignment {
	return &ShareMemberAssignment{
		MemberEpoch: m.epoch, PreviousMemberEpoch: m.prevEpoch,
		State: MemberStable, Assigned: m.assigned.Clone(),
	}
}

type shareState struct {
	created         bool // a GroupMetadata record was persisted
	epoch           int32
	assignmentEpoch int32
	hash            int64
	members         map[string]*shareMember
	target          assign.Assignment
	topics          map[string]assign.Topic // subscribed topics as of the last target
	recheck         bool                    // loaded: topics not yet compared with the image
	// initialized is every partition with share state (type 15): put
	// in a target or set by AlterShareGroupOffsets, by topic id.
	initialized map[[16]byte]ShareStateTopic
}

func (s *shareState) clone() *shareState {
	c := &shareState{
		created:         s.created,
		epoch:           s.epoch,
		assignmentEpoch: s.assignmentEpoch,
		hash:            s.hash,
		members:         make(map[string]*shareMember, len(s.members)),
		target:          make(assign.Assignment, len(s.target)),
		topics:          make(map[string]assign.Topic, len(s.topics)),
		recheck:         s.recheck,
		initialized:     make(map[[16]byte]ShareStateTopic, len(s.initialized)),
	}
	for k, v := range s.initialized {
		v.Partitions = append([]int32(nil), v.Partitions...)
		c.initialized[k] = v
	}
	for id, m := range s.members {
		c.members[id] = m.clone()
	}
	for id, ps := range s.target {
		c.target[id] = ps.Clone()
	}
	for k, v := range s.topics {
		c.topics[k] = v
	}
	return c
}

// ShareGroup is one KIP-932 share group's membership. All methods are
// safe for concurrent use.
type ShareGroup struct {
	name string
	cfg  ShareConfig
	p    SharePersister

	// mu guards the fields below it; it is held across PersistShare.
	mu sync.Mutex
	// staged is the state and the current request's changes and records.
	staged[*shareState, ShareGroupRecord]
}

// NewShareGroup returns an empty share group.
func NewShareGroup(name string, cfg ShareConfig, p SharePersister) *ShareGroup {
	cfg.fill()
	return &ShareGroup{name: name, cfg: cfg, p: p, staged: staged[*shareState, ShareGroupRecord]{
		clone:   (*shareState).clone,
		persist: p.PersistShare,
		s: &shareState{
			members:     make(map[string]*shareMember),
			target:      make(assign.Assignment),
			topics:      make(map[string]assign.Topic),
			initialized: make(map[[16]byte]ShareStateTopic),
		},
	}}
}

// Name is the group id.
func (g *ShareGroup) Name() string { return g.name }

func (g *ShareGroup) emit(r ShareGroupRecord) {
	r.Group = g.name
	g.out = append(g.out, r)
}

// ValidateShareHeartbeat is Kafka's
// throwIfShareGroupHeartbeatRequestIsInvalid: INVALID_REQUEST and its
// message, or 0. The broker calls it before routing (an empty group id
// has no coordinator).
func ValidateShareHeartbeat(req *kmsg.ShareGroupHeartbeatRequest) (int16, string) {
	bad := func(msg string) (int16, string) { return kerr.InvalidRequest.Code, msg }
	switch {
	case req.GroupID == "":
		return bad("GroupId can't be empty.")
	case req.MemberID == "":
		return bad("MemberId can't be empty.")
	case len(req.MemberID) > maxShareMemberID:
		return bad("MemberId can't be longer than 36 characters.")
	case req.RackID != nil && *req.RackID == "":
		return bad("RackId can't be empty.")
	case req.MemberEpoch < leaveEpoch:
		return bad("MemberEpoch is invalid.")
	case req.MemberEpoch == joinEpoch && len(req.SubscribedTopicNames) == 0:
		return bad("SubscribedTopicNames must be set in first request.")
	}
	return 0, ""
}

// Heartbeat answers a ShareGroupHeartbeat for this group: a join (epoch
// 0, also a known member rejoining), a leave (-1) or a heartbeat at the
// member's epoch or its previous one. img is the cluster's topics now
// (the broker shows only those the principal may DESCRIBE). The client id
// and host come from ctx (WithClientInfo). left reports that a member
// left (the broker then releases its records).
func (g *ShareGroup) Heartbeat(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest, img TopicImage) *kmsg.ShareGroupHeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	_, heartbeat := g.timeouts()
	resp.HeartbeatIntervalMillis = int32(heartbeat.Milliseconds())
	if code, msg := ValidateShareHeartbeat(req); code != 0 {
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(msg)
		return resp
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	var (
		m     *shareMember
		code  int16
		moved bool
	)
	switch req.MemberEpoch {
	case joinEpoch:
		m, moved, code = g.join(ctx, req, img, now)
	case leaveEpoch:
		m, code = g.leave(req)
	default:
		m, moved, code = g.heartbeat(ctx, req, img, now)
	}
	if code = g.finish(ctx, code); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	resp.MemberID = kmsg.StringPtr(m.id)
	if req.MemberEpoch == leaveEpoch {
		resp.MemberEpoch = leaveEpoch
		return resp
	}
	resp.MemberEpoch = m.epoch
	if req.MemberEpoch == joinEpoch || req.SubscribedTopicNames != nil || moved {
		a := kmsg.NewShareGroupHeartbeatResponseAssignment()
		a.TopicPartitions = []kmsg.ShareGroupHeartbeatResponseAssignmentTopicPartition{}
		for _, id := range sortedTopicIDs(m.assigned) {
			t := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
			t.TopicID = id
			t.Partitions = append([]int32(nil), m.assigned[id]...)
			a.TopicPartitions = append(a.TopicPartitions, t)
		}
		resp.Assignment = &a
	}
	return resp
}

// join handles epoch 0: a new member, or a known member rejoining (it
// keeps its epoch and assignment; a new epoch only if its subscription
// changed).
func (g *ShareGroup) join(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest, img TopicImage, now time.Time) (*shareMember, bool, int16) {
	session, _ := g.timeouts()
	s := g.s
	prev := s.members[req.MemberID]
	if prev == nil && g.cfg.MaxSize > 0 && len(s.members) >= g.cfg.MaxSize {
		return nil, false, kerr.GroupMaxSizeReached.Code
	}
	ci := clientInfo(ctx)
	g.touch()
	m := &shareMember{
		id:         req.MemberID,
		rackID:     req.RackID,
		clientID:   ci.ClientID,
		clientHost: ci.Host,
		topics:     sortedCopy(req.SubscribedTopicNames),
		assigned:   make(assign.Partitions),
	}
	bump := true
	if prev != nil {
		m.epoch, m.prevEpoch, m.assigned = prev.epoch, prev.prevEpoch, prev.assigned.Clone()
		if m.rackID == nil {
			m.rackID = prev.rackID
		}
		bump = !equalStrings(prev.topics, m.topics)
	}
	m.sessionDeadline = now.Add(session)
	s.members[m.id] = m
	if prev == nil || bump || !equalStrPtr(prev.rackID, m.rackID) || prev.clientID != m.clientID || prev.clientHost != m.clientHost {
		g.emit(ShareGroupRecord{Type: ShareRecordMemberMetadata, MemberID: m.id, Member: m.metadata()})
	}
	g.refresh(img, bump)
	moved := g.reconcile(m, prev == nil)
	return m, moved, 0
}

// leave handles epoch -1: the member is removed and the group rebalances.
func (g *ShareGroup) leave(req *kmsg.ShareGroupHeartbeatRequest) (*shareMember, int16) {
	m := g.s.members[req.MemberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	g.touch()
	g.removeMember(m)
	g.pruneTopics()
	g.bumpEpoch()
	g.computeTarget()
	return m, 0
}

// heartbeat handles a member at its epoch, or at its previous epoch when
// it missed the answer that moved it (Kafka's
// throwIfShareGroupMemberEpochIsInvalid).
func (g *ShareGroup) heartbeat(_ context.Context, req *kmsg.ShareGroupHeartbeatRequest, img TopicImage, now time.Time) (*shareMember, bool, int16) {
	session, _ := g.timeouts()
	m := g.s.members[req.MemberID]
	if m == nil {
		return nil, false, kerr.UnknownMemberID.Code
	}
	if req.MemberEpoch > m.epoch || (req.MemberEpoch < m.epoch && req.MemberEpoch != m.prevEpoch) {
		return nil, false, kerr.FencedMemberEpoch.Code
	}
	// The session deadline is not persisted: no touch needed for it.
	m.sessionDeadline = now.Add(session)
	subChanged := req.SubscribedTopicNames != nil && !equalStrings(sortedCopy(req.SubscribedTopicNames), m.topics)
	rackChanged := req.RackID != nil && !equalStrPtr(req.RackID, m.rackID)
	if subChanged || rackChanged {
		g.touch()
		m = g.s.members[req.MemberID]
		if subChanged {
			m.topics = sortedCopy(req.SubscribedTopicNames)
		}
		if rackChanged {
			m.rackID = req.RackID
		}
		g.emit(ShareGroupRecord{Type: ShareRecordMemberMetadata, MemberID: m.id, Member: m.metadata()})
	}
	g.refresh(img, subChanged)
	m = g.s.members[req.MemberID]
	return m, g.reconcile(m, false), 0
}

// timeouts are the group's session timeout and heartbeat interval: its
// overrides, else the configured ones.
func (g *ShareGroup) timeouts() (session, heartbeat time.Duration) {
	session, heartbeat = g.cfg.SessionTimeout, g.cfg.HeartbeatInterval
	if g.cfg.Overrides != nil {
		s, h := g.cfg.Overrides(g.name)
		if s > 0 {
			session = s
		}
		if h > 0 {
			heartbeat = h
		}
	}
	return session, heartbeat
}

// Tick removes members whose session ended (no heartbeat for the session
// timeout); the group then rebalances. It returns the ids of the members
// removed (the broker releases their records). The broker calls it with
// the coordinator's Tick.
func (g *ShareGroup) Tick(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	var gone []string
	for _, id := range g.memberIDs() {
		if now.After(g.s.members[id].sessionDeadline) {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	g.touch()
	for _, id := range gone {
		g.removeMember(g.s.members[id])
	}
	g.pruneTopics()
	g.bumpEpoch()
	g.computeTarget()
	if code := g.commit(ctx); code != 0 {
		return nil, kerr.ErrorForCode(code)
	}
	return gone, nil
}

func (g *ShareGroup) memberIDs() []string {
	return sortedKeys(g.s.members)
}

// bumpEpoch starts a new group epoch; g.mu held, touched.
func (g *ShareGroup) bumpEpoch() {
	g.s.epoch++
	g.s.created = true
	g.emit(ShareGroupRecord{Type: ShareRecordGroupMetadata, Epoch: g.s.epoch, MetadataHash: g.s.hash})
}

// subscribed is every topic name some member subscribes to, sorted.
func (g *ShareGroup) subscribed() []string {
	set := make(map[string]struct{})
	for _, m := range g.s.members {
		for _, n := range m.topics {
			set[n] = struct{}{}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// imageTopics looks the subscribed topics up in img.
func (g *ShareGroup) imageTopics(img TopicImage) map[string]assign.Topic {
	names := g.subscribed()
	topics := make(map[string]assign.Topic, len(names))
	for _, name := range names {
		if id, n, ok := img.Topic(name); ok {
			topics[name] = assign.Topic{ID: id, Partitions: n}
		}
	}
	return topics
}

// topicsHash is the GroupMetadata hash of topics (see the file comment).
func topicsHash(topics map[string]assign.Topic) int64 {
	names := make([]string, 0, len(topics))
	for n := range topics {
		names = append(names, n)
	}
	sort.Strings(names)
	h := fnv.New64a()
	var b [4]byte
	for _, n := range names {
		t := topics[n]
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(t.ID[:])
		binary.BigEndian.PutUint32(b[:], uint32(t.Partitions))
		h.Write(b[:])
	}
	return int64(h.Sum64())
}

// pruneTopics forgets the topics nobody subscribes to any more (members
// left; no image at hand); g.mu held, touched.
func (g *ShareGroup) pruneTopics() {
	set := make(map[string]struct{})
	for _, n := range g.subscribed() {
		set[n] = struct{}{}
	}
	for n := range g.s.topics {
		if _, ok := set[n]; !ok {
			delete(g.s.topics, n)
		}
	}
	g.s.hash = topicsHash(g.s.topics)
}

// refresh brings the subscribed topics' metadata up to date from img and
// starts a new epoch with a new target when it changed or force is set
// (a subscription changed or a member joined); g.mu held.
func (g *ShareGroup) refresh(img TopicImage, force bool) {
	s := g.s
	topics := g.imageTopics(img)
	if !force && !s.recheck && equalTopics(topics, s.topics) {
		return
	}
	g.touch()
	s = g.s
	s.recheck = false
	s.topics = topics
	s.hash = topicsHash(topics)
	g.bumpEpoch()
	g.computeTarget()
}

// computeTarget runs the simple assignor and makes the result the target
// of the current group epoch; g.mu held, touched.
func (g *ShareGroup) computeTarget() {
	s := g.s
	members := make([]assign.Member, 0, len(s.members))
	for _, id := range g.memberIDs() {
		m := s.members[id]
		am := assign.Member{ID: id, Topics: m.topics}
		if m.rackID != nil {
			am.Rack = *m.rackID
		}
		members = append(members, am)
	}
	next := assign.Simple(members, s.topics, s.target)
	for _, id := range g.memberIDs() {
		if old, ok := s.target[id]; !ok || !old.Equal(next[id]) {
			g.emit(ShareGroupRecord{Type: ShareRecordTargetMember, MemberID: id, Partitions: next[id].Clone()})
		}
	}
	s.target = next
	s.assignmentEpoch = s.epoch
	g.emit(ShareGroupRecord{Type: ShareRecordTargetMetadata, Epoch: s.assignmentEpoch})
	var add []ShareStateTopic
	for name, t := range s.topics {
		all := make([]int32, t.Partitions)
		for i := range all {
			all[i] = int32(i)
		}
		add = append(add, ShareStateTopic{ID: t.ID, Name: name, Partitions: all})
	}
	g.addInitialized(add)
}

// addInitialized records partitions as having share state, persisting
// the type 15 record if that is news; g.mu held, touched.
func (g *ShareGroup) addInitialized(ts []ShareStateTopic) {
	changed := false
	for _, t := range ts {
		cur, ok := g.s.initialized[t.ID]
		if !ok || cur.Name != t.Name {
			cur = ShareStateTopic{ID: t.ID, Name: t.Name}
			changed = true
		}
		for _, p := range t.Partitions {
			if !slices.Contains(cur.Partitions, p) {
				cur.Partitions = append(cur.Partitions, p)
				changed = true
			}
		}
		slices.Sort(cur.Partitions)
		g.s.initialized[t.ID] = cur
	}
	if changed {
		g.emitInitialized()
	}
}

func (g *ShareGroup) emitInitialized() {
	st := &ShareStatePartitions{}
	for _, t := range g.s.initialized {
		st.Initialized = append(st.Initialized, ShareStateTopic{ID: t.ID, Name: t.Name, Partitions: slices.Clone(t.Partitions)})
	}
	st.Initialized = sortStateTopics(st.Initialized)
	g.emit(ShareGroupRecord{Type: ShareRecordStatePartitionMetadata, State: st})
}

// StatePartitions is every partition that may have share state
// (ShareGroupStatePartitionMetadata's initialized topics), sorted by
// topic id.
func (g *ShareGroup) StatePartitions() []ShareStateTopic {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ShareStateTopic
	for _, t := range g.s.initialized {
		out = append(out, ShareStateTopic{ID: t.ID, Name: t.Name, Partitions: slices.Clone(t.Partitions)})
	}
	return sortStateTopics(out)
}

// AddStatePartitions persists that partitions have share state
// (AlterShareGroupOffsets set their start offsets).
func (g *ShareGroup) AddStatePartitions(ctx context.Context, ts []ShareStateTopic) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.touch()
	g.addInitialized(ts)
	return g.commit(ctx)
}

// RemoveStateTopics persists that topics no longer have share state
// (DeleteShareGroupOffsets deleted it).
func (g *ShareGroup) RemoveStateTopics(ctx context.Context, ids [][16]byte) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.touch()
	changed := false
	for _, id := range ids {
		if _, ok := g.s.initialized[id]; ok {
			delete(g.s.initialized, id)
			changed = true
		}
	}
	if changed {
		g.emitInitialized()
	}
	return g.commit(ctx)
}

// reconcile gives m its target at the assignment epoch (Kafka's
// ShareGroupAssignmentBuilder: no revocation step); always forces the
// CurrentAssignment record (a new member). It reports whether m's
// assigned partitions changed. g.mu held.
func (g *ShareGroup) reconcile(m *shareMember, always bool) bool {
	s := g.s
	target := s.target[m.id]
	if m.epoch == s.assignmentEpoch && m.assigned.Equal(target) && !always {
		return false
	}
	g.touch()
	m = s.members[m.id]
	moved := !m.assigned.Equal(target)
	if m.epoch != s.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, s.assignmentEpoch
	}
	m.assigned = target.Clone()
	g.emit(ShareGroupRecord{Type: ShareRecordCurrentAssignment, MemberID: m.id, Current: m.current()})
	return moved
}

// removeMember drops m and emits its tombstones (Kafka's order); the
// caller bumps the epoch. g.mu held, touched.
func (g *ShareGroup) removeMember(m *shareMember) {
	delete(g.s.members, m.id)
	delete(g.s.target, m.id)
	g.emit(ShareGroupRecord{Type: ShareRecordCurrentAssignment, MemberID: m.id, Tombstone: true})
	g.emit(ShareGroupRecord{Type: ShareRecordTargetMember, MemberID: m.id, Tombstone: true})
	g.emit(ShareGroupRecord{Type: ShareRecordMemberMetadata, MemberID: m.id, Tombstone: true})
}

// state is the group's state as ShareGroupDescribe and ListGroups name
// it (Kafka's ShareGroupState: Empty, Stable; Dead once deleted).
func (g *ShareGroup) state() string {
	if len(g.s.members) == 0 {
		return "Empty"
	}
	return "Stable"
}

// State is the group's state as ListGroups reports it.
func (g *ShareGroup) State() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state()
}

// Describe answers ShareGroupDescribe (API 77) for this group; the broker
// sets AuthorizedOperations and checks topic ACLs.
func (g *ShareGroup) Describe() kmsg.ShareGroupDescribeResponseGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := kmsg.NewShareGroupDescribeResponseGroup()
	d.GroupID = g.name
	d.GroupState = g.state()
	d.GroupEpoch = g.s.epoch
	d.AssignmentEpoch = g.s.assignmentEpoch
	d.Assignor = assign.SimpleName
	names := make(map[[16]byte]string, len(g.s.topics))
	for n, t := range g.s.topics {
		names[t.ID] = n
	}
	for _, id := range g.memberIDs() {
		m := g.s.members[id]
		dm := kmsg.NewShareGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		dm.RackID = m.rackID
		dm.MemberEpoch = m.epoch
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.SubscribedTopicNames = append([]string{}, m.topics...)
		for _, tid := range sortedTopicIDs(m.assigned) {
			tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
			tp.TopicID, tp.Topic = tid, names[tid]
			tp.Partitions = append([]int32(nil), m.assigned[tid]...)
			dm.Assignment.TopicPartitions = append(dm.Assignment.TopicPartitions, tp)
		}
		d.Members = append(d.Members, dm)
	}
	return d
}

// Empty reports whether the group has no members.
func (g *ShareGroup) Empty() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.s.members) == 0
}

// SubscribedTopics lists the topics the group's members subscribe to
// (those that existed at the last epoch), by name.
func (g *ShareGroup) SubscribedTopics() map[string]assign.Topic {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]assign.Topic, len(g.s.topics))
	for k, v := range g.s.topics {
		out[k] = v
	}
	return out
}

// Delete persists the tombstones of an empty group (DeleteGroups):
// NON_EMPTY_GROUP while it has members, or the persist's code. The caller
// drops the group from its map after a 0.
func (g *ShareGroup) Delete(ctx context.Context) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.s.members) > 0 {
		return kerr.NonEmptyGroup.Code
	}
	g.touch()
	g.s.initialized = make(map[[16]byte]ShareStateTopic)
	g.s.created = false
	g.emit(ShareGroupRecord{Type: ShareRecordStatePartitionMetadata, Tombstone: true})
	g.emit(ShareGroupRecord{Type: ShareRecordTargetMetadata, Tombstone: true})
	g.emit(ShareGroupRecord{Type: ShareRecordGroupMetadata, Tombstone: true})
	return g.commit(ctx)
}

// Create persists a group that has no records yet (an
// AlterShareGroupOffsets creates the group, as Kafka's does): its
// GroupMetadata at epoch 0. A group that exists is left alone.
func (g *ShareGroup) Create(ctx context.Context) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.s.created {
		return 0
	}
	g.touch()
	g.s.created = true
	g.s.hash = topicsHash(g.s.topics)
	g.emit(ShareGroupRecord{Type: ShareRecordGroupMetadata, Epoch: g.s.epoch, MetadataHash: g.s.hash})
	return g.commit(ctx)
}

// due reports whether a member's session has ended (Tick has work).
func (g *ShareGroup) due() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	for _, m := range g.s.members {
		if now.After(m.sessionDeadline) {
			return true
		}
	}
	return false
}
