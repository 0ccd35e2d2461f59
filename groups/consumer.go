package groups

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/groups/assign"
)

// This file is the KIP-848 consumer group (ConsumerGroupHeartbeat, API 68;
// ConsumerGroupDescribe, API 69) as a state machine with no I/O: see
// docs/groups-next.md, part A1, and consumer_records.go for what each
// state change persists.
//
// Epochs. The group epoch is bumped by every change that needs a new
// target assignment: a member joins or leaves (or is fenced), a member's
// subscription or server assignor changes, the metadata of a subscribed
// topic changes (id or partition count). The target is recomputed at
// once, so the assignment epoch is always the group epoch after a request
// (Kafka's Assigning state is never seen). A member's epoch reaches the
// assignment epoch when the member has revoked what the new target took
// from it.
//
// Reconciliation (Kafka's CurrentAssignmentBuilder): a member is given
// only partitions no other member holds (assigned, or revoked but not yet
// confirmed), so no partition is owned by two members at any heartbeat.
// Partitions the target takes away are first removed from the member's
// assignment and kept as pending revocation (UNREVOKED_PARTITIONS, epoch
// unchanged) until a heartbeat's owned partitions no longer hold them;
// partitions held by others wait (UNRELEASED_PARTITIONS) until released.

// Epochs with a meaning in ConsumerGroupHeartbeat.
const (
	joinEpoch        = 0
	leaveEpoch       = -1
	staticLeaveEpoch = -2
)

// MemberState is a consumer group member's reconciliation state, with
// Kafka's values (ConsumerGroupCurrentMemberAssignmentValue.State).
type MemberState int8

const (
	MemberStable               MemberState = 0
	MemberUnrevokedPartitions  MemberState = 1 // waiting for the member to revoke
	MemberUnreleasedPartitions MemberState = 2 // waiting for other members to release
)

func (s MemberState) String() string {
	switch s {
	case MemberUnrevokedPartitions:
		return "UNREVOKED_PARTITIONS"
	case MemberUnreleasedPartitions:
		return "UNRELEASED_PARTITIONS"
	case MemberStable:
		return "STABLE"
	}
	return "UNKNOWN"
}

// TopicImage is the coordinator's view of the cluster's topics; the
// broker implements it over metadata.FSM.
type TopicImage interface {
	// Topic returns a topic's id and partition count; ok false if the
	// topic does not exist.
	Topic(name string) (id [16]byte, partitions int32, ok bool)
	// Names lists every topic (regex subscriptions are resolved on it).
	Names() []string
}

// ConsumerConfig configures consumer groups. Zero fields take Kafka's
// defaults (fill); the broker fills them from its configuration.
type ConsumerConfig struct {
	// SessionTimeout is group.consumer.session.timeout.ms (45 s).
	SessionTimeout time.Duration
	// HeartbeatInterval is group.consumer.heartbeat.interval.ms (5 s).
	HeartbeatInterval time.Duration
	// MaxSize is group.consumer.max.size: a join beyond it gets
	// GROUP_MAX_SIZE_REACHED. Zero means no limit (Kafka's default).
	MaxSize int
	// RegexRefresh is how long a resolved regex subscription is reused
	// before it is matched against TopicImage.Names again (10 s).
	RegexRefresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (cfg *ConsumerConfig) fill() {
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 45 * time.Second
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.RegexRefresh == 0 {
		cfg.RegexRefresh = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// ConsumerPersister durably stores a consumer group's records (see
// consumer_records.go). The group answers only after PersistConsumer
// returned nil; on an error the group is left as it was before the
// request and the error's code (a *kerr.Error) or COORDINATOR_NOT_AVAILABLE
// is answered. It is called with the group's lock held.
type ConsumerPersister interface {
	PersistConsumer(ctx context.Context, records []ConsumerRecord) error
}

type topicPart struct {
	id   [16]byte
	part int32
}

type consumerMember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	topics           []string // subscribed names, sorted
	regex            *string
	assignor         string // "" when the member named none
	rebalanceTimeout time.Duration

	epoch, prevEpoch int32
	state            MemberState
	assigned         assign.Partitions
	pending          assign.Partitions // revoked, not yet confirmed

	sessionDeadline time.Time
	revokeDeadline  time.Time // while UNREVOKED_PARTITIONS
}

func (m *consumerMember) clone() *consumerMember {
	c := *m
	c.topics = append([]string(nil), m.topics...)
	c.assigned = m.assigned.Clone()
	c.pending = m.pending.Clone()
	return &c
}

// consumerState is everything a request may change; a request that fails
// to persist puts back a copy taken before its first change.
type consumerState struct {
	epoch           int32 // group epoch
	assignmentEpoch int32
	members         map[string]*consumerMember
	static          map[string]string // instance id → member id
	target          assign.Assignment
	owners          map[topicPart]string    // partition → member holding it (assigned or pending)
	topics          map[string]assign.Topic // subscribed topics as of the last target
	names           []string                // names subscribed by some member (regexes resolved), sorted
	recheck         bool                    // loaded: topics not yet compared with the target's
	regexes         map[string]resolvedRegex
	// loadedHash is the MetadataHash of the last GroupMetadata replayed
	// (0: none): ReplayDone compares it with the topics now.
	loadedHash int64
}

type resolvedRegex struct {
	names []string
	at    time.Time
}

func (s *consumerState) clone() *consumerState {
	c := &consumerState{
		epoch:           s.epoch,
		assignmentEpoch: s.assignmentEpoch,
		members:         make(map[string]*consumerMember, len(s.members)),
		static:          make(map[string]string, len(s.static)),
		target:          make(assign.Assignment, len(s.target)),
		owners:          make(map[topicPart]string, len(s.owners)),
		topics:          make(map[string]assign.Topic, len(s.topics)),
		regexes:         make(map[string]resolvedRegex, len(s.regexes)),
	}
	for id, m := range s.members {
		c.members[id] = m.clone()
	}
	for k, v := range s.static {
		c.static[k] = v
	}
	for id, ps := range s.target {
		c.target[id] = ps.Clone()
	}
	for k, v := range s.owners {
		c.owners[k] = v
	}
	for k, v := range s.topics {
		c.topics[k] = v
	}
	for k, v := range s.regexes {
		c.regexes[k] = v
	}
	c.names = append([]string(nil), s.names...)
	c.recheck, c.loadedHash = s.recheck, s.loadedHash
	return c
}

// ConsumerGroup is one KIP-848 consumer group. All methods are safe for
// concurrent use.
type ConsumerGroup struct {
	name string
	cfg  ConsumerConfig
	p    ConsumerPersister

	// mu guards the fields below it; it is held across PersistConsumer.
	mu sync.Mutex
	// staged is the state and the current request's changes and records.
	staged[*consumerState, ConsumerRecord]
	// moved is set when the request changed the member's assigned
	// partitions (the answer then carries the assignment).
	moved bool
}

// NewConsumerGroup returns an empty consumer group.
func NewConsumerGroup(name string, cfg ConsumerConfig, p ConsumerPersister) *ConsumerGroup {
	cfg.fill()
	g := &ConsumerGroup{name: name, cfg: cfg, p: p, staged: staged[*consumerState, ConsumerRecord]{
		clone: (*consumerState).clone,
		s: &consumerState{
			members: make(map[string]*consumerMember),
			static:  make(map[string]string),
			target:  make(assign.Assignment),
			owners:  make(map[topicPart]string),
			topics:  make(map[string]assign.Topic),
			regexes: make(map[string]resolvedRegex),
		},
	}}
	g.staged.persist = g.persistRecords
	return g
}

func (g *ConsumerGroup) emit(r ConsumerRecord) {
	r.Group = g.name
	g.out = append(g.out, r)
}

// persistRecords stamps the request's GroupMetadata with the hash of the
// topics the target is now computed on (Kafka 4.1's MetadataHash), so a
// coordinator that loads the group knows whether they changed meanwhile,
// and persists recs (staged.commit); g.mu held.
func (g *ConsumerGroup) persistRecords(ctx context.Context, recs []ConsumerRecord) error {
	for i := range recs {
		if recs[i].Type == RecordGroupMetadata && !recs[i].Tombstone {
			recs[i].MetadataHash = topicsHash(g.s.topics)
		}
	}
	return g.p.PersistConsumer(ctx, recs)
}

// validateHeartbeat is Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid.
func validateHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest) (int16, string) {
	bad := func(msg string) (int16, string) { return kerr.InvalidRequest.Code, msg }
	if (req.Version >= 1 || req.MemberEpoch > 0 || req.MemberEpoch == leaveEpoch) && req.MemberID == "" {
		return bad("MemberId can't be empty.")
	}
	if req.Group == "" {
		return bad("GroupId can't be empty.")
	}
	if req.InstanceID != nil && *req.InstanceID == "" {
		return bad("InstanceId can't be empty.")
	}
	if req.RackID != nil && *req.RackID == "" {
		return bad("RackId can't be empty.")
	}
	switch {
	case req.MemberEpoch == joinEpoch:
		if req.RebalanceTimeoutMillis == -1 {
			return bad("RebalanceTimeoutMs must be provided in first request.")
		}
		if req.Topics == nil || len(req.Topics) > 0 {
			return bad("TopicPartitions must be empty when (re-)joining.")
		}
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			return bad("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
		}
	case req.MemberEpoch == staticLeaveEpoch:
		if req.InstanceID == nil {
			return bad("InstanceId can't be null.")
		}
	case req.MemberEpoch < staticLeaveEpoch:
		return bad("MemberEpoch is invalid.")
	}
	if req.SubscribedTopicRegex != nil {
		if _, err := regexp.Compile(*req.SubscribedTopicRegex); err != nil {
			return bad("SubscribedTopicRegex is invalid: " + err.Error())
		}
	}
	if req.ServerAssignor != nil {
		if _, ok := assign.ByName(*req.ServerAssignor); !ok {
			return kerr.UnsupportedAssignor.Code, "ServerAssignor " + *req.ServerAssignor + " is not supported."
		}
	}
	return 0, ""
}

// Heartbeat answers a ConsumerGroupHeartbeat for this group: a join
// (epoch 0), a leave (-1), a static member's temporary leave (-2) or a
// heartbeat of a member at its epoch. img is the cluster's topics now.
// The client id and host come from ctx (WithClientInfo).
func (g *ConsumerGroup) Heartbeat(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest, img TopicImage) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	resp.HeartbeatIntervalMillis = int32(g.cfg.HeartbeatInterval.Milliseconds())
	if code, msg := validateHeartbeat(req); code != 0 {
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(msg)
		return resp
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	g.moved = false
	var m *consumerMember
	var code int16
	switch req.MemberEpoch {
	case joinEpoch:
		m, code = g.join(ctx, req, img, now)
	case leaveEpoch:
		m, code = g.leave(req, img, now)
	case staticLeaveEpoch:
		m, code = g.staticLeave(req)
	default:
		m, code = g.heartbeat(ctx, req, img, now)
	}
	if code = g.finish(ctx, code); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	resp.MemberID = kmsg.StringPtr(m.id)
	switch req.MemberEpoch {
	case leaveEpoch, staticLeaveEpoch:
		resp.MemberEpoch = req.MemberEpoch
		return resp
	}
	resp.MemberEpoch = m.epoch
	full := req.RebalanceTimeoutMillis != -1 && (req.SubscribedTopicNames != nil || req.SubscribedTopicRegex != nil) && req.Topics != nil
	if req.MemberEpoch == joinEpoch || full || g.moved {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		for _, id := range sortedTopicIDs(m.assigned) {
			t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			t.TopicID = id
			t.Partitions = append([]int32(nil), m.assigned[id]...)
			a.Topics = append(a.Topics, t)
		}
		resp.Assignment = &a
	}
	return resp
}

func sortedTopicIDs(p assign.Partitions) [][16]byte {
	ids := make([][16]byte, 0, len(p))
	for id, ps := range p {
		if len(ps) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	return ids
}

func newConsumerMemberID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// join handles epoch 0: a new member, a known member rejoining, or a static member
// coming back for its instance id after a temporary leave (epoch -2): it
// takes over the old member's epoch and assignment, without a rebalance
// unless its subscription changed.
func (g *ConsumerGroup) join(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest, img TopicImage, now time.Time) (*consumerMember, int16) {
	s := g.s
	id := req.MemberID
	if g.cfg.MaxSize > 0 && len(s.members) >= g.cfg.MaxSize && (id == "" || s.members[id] == nil) {
		return nil, kerr.GroupMaxSizeReached.Code
	}
	if id == "" {
		id = newConsumerMemberID() // v0: the server names the member
	}
	var inherit *consumerMember
	if req.InstanceID != nil {
		if oldID, ok := s.static[*req.InstanceID]; ok {
			old := s.members[oldID]
			if old != nil && oldID != id && old.epoch != staticLeaveEpoch {
				return nil, kerr.UnreleasedInstanceID.Code
			}
			if old != nil && old.epoch == staticLeaveEpoch {
				inherit = old
			}
		}
	}
	g.touch()
	prev := s.members[id]
	ci := clientInfo(ctx)
	m := &consumerMember{
		id:               id,
		instanceID:       req.InstanceID,
		rackID:           req.RackID,
		clientID:         ci.ClientID,
		clientHost:       ci.Host,
		topics:           sortedCopy(req.SubscribedTopicNames),
		regex:            req.SubscribedTopicRegex,
		rebalanceTimeout: time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		assigned:         make(assign.Partitions),
		pending:          make(assign.Partitions),
		state:            MemberStable,
	}
	if req.ServerAssignor != nil {
		m.assignor = *req.ServerAssignor
	}
	bump := true
	switch {
	case inherit != nil:
		m.epoch, m.prevEpoch, m.state = inherit.prevEpoch, inherit.prevEpoch, inherit.state
		m.assigned, m.pending, m.revokeDeadline = inherit.assigned.Clone(), inherit.pending.Clone(), inherit.revokeDeadline
		bump = !sameSubscription(inherit, m)
		target := s.target[inherit.id]
		if inherit.id != id {
			g.removeMember(inherit)
			g.emit(ConsumerRecord{Type: RecordTargetMember, MemberID: id, Partitions: target.Clone()})
		}
		s.target[id] = target
		g.hold(m)
	case prev != nil:
		// A known member rejoining (after FENCED_MEMBER_EPOCH, or a lost
		// answer) keeps its epoch and assignment, as in Kafka; what it
		// was revoking it owns no more. No rebalance unless its
		// subscription changed.
		g.release(prev)
		m.epoch, m.prevEpoch, m.state = prev.epoch, prev.prevEpoch, prev.state
		m.assigned = prev.assigned.Clone()
		bump = !sameSubscription(prev, m)
		g.hold(m)
		if prev.instanceID != nil && (m.instanceID == nil || *m.instanceID != *prev.instanceID) {
			delete(s.static, *prev.instanceID)
		}
	}
	if m.instanceID != nil {
		s.static[*m.instanceID] = id
	}
	m.sessionDeadline = now.Add(g.cfg.SessionTimeout)
	s.members[id] = m
	g.emit(ConsumerRecord{Type: RecordMemberMetadata, MemberID: id, Member: m.metadata()})
	if bump {
		g.bumpEpoch()
	}
	g.refresh(img, now, bump)
	g.reconcile(m, []kmsg.ConsumerGroupHeartbeatRequestTopic{}, now, true)
	return m, 0
}

// leave handles epoch -1: the member leaves for good (a static member
// too) and the group rebalances.
func (g *ConsumerGroup) leave(req *kmsg.ConsumerGroupHeartbeatRequest, img TopicImage, now time.Time) (*consumerMember, int16) {
	m, code := g.staticMember(req)
	if code != 0 {
		return nil, code
	}
	g.touch()
	g.removeMember(m)
	g.bumpEpoch()
	g.refresh(img, now, true)
	return m, 0
}

// staticMember finds the member a leave or heartbeat names: by member id,
// and for a static member its instance id must be that member's (Kafka's
// throwIfStaticMemberIsUnknown / throwIfInstanceIdIsFenced).
func (g *ConsumerGroup) staticMember(req *kmsg.ConsumerGroupHeartbeatRequest) (*consumerMember, int16) {
	if req.InstanceID != nil {
		id, ok := g.s.static[*req.InstanceID]
		if !ok {
			return nil, kerr.UnknownMemberID.Code
		}
		if id != req.MemberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	m := g.s.members[req.MemberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	return m, 0
}

// staticLeave handles epoch -2: a static member leaves for a while (a
// restart). It keeps its assignment, which nobody else gets, until it
// rejoins with its instance id or its session expires.
func (g *ConsumerGroup) staticLeave(req *kmsg.ConsumerGroupHeartbeatRequest) (*consumerMember, int16) {
	m, code := g.staticMember(req)
	if code != 0 {
		return nil, code
	}
	if m.epoch == staticLeaveEpoch {
		return m, 0
	}
	g.touch()
	m.prevEpoch, m.epoch = m.epoch, staticLeaveEpoch
	g.emit(ConsumerRecord{Type: RecordCurrentAssignment, MemberID: m.id, Current: m.current()})
	return m, 0
}

// heartbeat handles a member at its epoch (or its previous epoch, when
// the member missed the answer that moved it: Kafka's
// throwIfMemberEpochIsInvalid).
func (g *ConsumerGroup) heartbeat(_ context.Context, req *kmsg.ConsumerGroupHeartbeatRequest, img TopicImage, now time.Time) (*consumerMember, int16) {
	m, code := g.staticMember(req)
	if code != 0 {
		return nil, code
	}
	if req.MemberEpoch > m.epoch {
		return nil, kerr.FencedMemberEpoch.Code
	}
	if req.MemberEpoch < m.epoch && (req.MemberEpoch != m.prevEpoch || req.Topics == nil || !ownedSubset(req.Topics, m.assigned)) {
		return nil, kerr.FencedMemberEpoch.Code
	}
	m.sessionDeadline = now.Add(g.cfg.SessionTimeout)

	changed, subChanged := false, false
	if req.RebalanceTimeoutMillis != -1 && time.Duration(req.RebalanceTimeoutMillis)*time.Millisecond != m.rebalanceTimeout {
		changed = true
	}
	if req.RackID != nil && (m.rackID == nil || *m.rackID != *req.RackID) {
		changed = true
	}
	if req.SubscribedTopicNames != nil && !equalStrings(sortedCopy(req.SubscribedTopicNames), m.topics) {
		subChanged = true
	}
	if req.SubscribedTopicRegex != nil && (m.regex == nil || *m.regex != *req.SubscribedTopicRegex) {
		subChanged = true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		subChanged = true
	}
	if changed || subChanged {
		g.touch()
		if req.RebalanceTimeoutMillis != -1 {
			m.rebalanceTimeout = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
		}
		if req.RackID != nil {
			m.rackID = req.RackID
		}
		if req.SubscribedTopicNames != nil {
			m.topics = sortedCopy(req.SubscribedTopicNames)
		}
		if req.SubscribedTopicRegex != nil {
			m.regex = req.SubscribedTopicRegex
		}
		if req.ServerAssignor != nil {
			m.assignor = *req.ServerAssignor
		}
		g.emit(ConsumerRecord{Type: RecordMemberMetadata, MemberID: m.id, Member: m.metadata()})
	}
	if subChanged {
		g.bumpEpoch()
	}
	g.refresh(img, now, subChanged)
	g.reconcile(m, req.Topics, now, false)
	return m, 0
}

// Tick expires members whose session ended (no heartbeat for the session
// timeout; a static member that left with -2 and did not come back) and
// fences members that did not revoke within their rebalance timeout; the
// group then rebalances. The broker calls it with the coordinator's Tick.
func (g *ConsumerGroup) Tick(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	var gone []*consumerMember
	for _, id := range g.memberIDs() {
		m := g.s.members[id]
		if now.After(m.sessionDeadline) || (m.state == MemberUnrevokedPartitions && m.epoch != staticLeaveEpoch && now.After(m.revokeDeadline)) {
			gone = append(gone, m)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	g.touch()
	for _, m := range gone {
		g.removeMember(m)
	}
	g.bumpEpoch()
	g.recomputeNames(now, nil)
	g.computeTarget()
	if code := g.commit(ctx); code != 0 {
		return kerr.ErrorForCode(code)
	}
	return nil
}

func (g *ConsumerGroup) memberIDs() []string {
	return sortedKeys(g.s.members)
}

// bumpEpoch starts a new group epoch; g.mu held, touched.
func (g *ConsumerGroup) bumpEpoch() {
	g.s.epoch++
	g.emit(ConsumerRecord{Type: RecordGroupMetadata, Epoch: g.s.epoch})
}

// refresh brings the subscribed topics' metadata up to date from img
// (ids, partition counts, regexes resolved at most every RegexRefresh)
// and recomputes the target when it changed or force is set (a bump the
// caller made); g.mu held.
func (g *ConsumerGroup) refresh(img TopicImage, now time.Time, force bool) {
	s := g.s
	stale := force
	for _, r := range s.regexes {
		stale = stale || now.Sub(r.at) >= g.cfg.RegexRefresh
	}
	if stale {
		old := s.names
		if !force {
			g.touch()
		}
		g.recomputeNames(now, img)
		if !force && !equalStrings(old, s.names) {
			g.bumpEpoch()
			force = true
		}
	}
	topics := make(map[string]assign.Topic, len(s.names))
	for _, name := range s.names {
		if id, n, ok := img.Topic(name); ok {
			topics[name] = assign.Topic{ID: id, Partitions: n}
		}
	}
	if !equalTopics(topics, s.topics) || s.recheck {
		g.touch()
		s.topics, s.recheck = topics, false
		if !force {
			g.bumpEpoch()
			force = true
		}
	}
	if force {
		g.computeTarget()
	}
}

// recomputeNames rebuilds the subscribed names from the members, resolving
// new or stale regexes on img (nil: keep what was resolved); g.mu held,
// touched.
func (g *ConsumerGroup) recomputeNames(now time.Time, img TopicImage) {
	s := g.s
	set := make(map[string]struct{})
	used := make(map[string]struct{})
	for _, m := range s.members {
		for _, n := range m.topics {
			set[n] = struct{}{}
		}
		if m.regex != nil {
			used[*m.regex] = struct{}{}
		}
	}
	for re := range s.regexes {
		if _, ok := used[re]; !ok {
			delete(s.regexes, re)
		}
	}
	for re := range used {
		r, ok := s.regexes[re]
		if img != nil && (!ok || now.Sub(r.at) >= g.cfg.RegexRefresh) {
			r = resolvedRegex{names: resolveRegex(re, img), at: now}
			s.regexes[re] = r
		}
		for _, n := range r.names {
			set[n] = struct{}{}
		}
	}
	s.names = s.names[:0:0]
	for n := range set {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
	// Topics nobody subscribes to any more are no metadata change.
	for n := range s.topics {
		if _, ok := set[n]; !ok {
			delete(s.topics, n)
		}
	}
}

// resolveRegex matches re (validated by validateHeartbeat; Go's RE2 syntax,
// as Kafka's RE2/J) against every topic name, whole names only. The
// broker's TopicImage leaves out the topics the requesting
// principal may not DESCRIBE (broker/68_consumer_group_heartbeat.go). A
// group's resolutions are shared by its members: one resolved on a
// heartbeat of one principal is reused for another's within RegexRefresh.
func resolveRegex(re string, img TopicImage) []string {
	rx, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range img.Names() {
		if rx.MatchString(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// effectiveTopics is what m subscribes to, its regex resolved; g.mu held.
func (g *ConsumerGroup) effectiveTopics(m *consumerMember) []string {
	if m.regex == nil {
		return m.topics
	}
	out := append([]string(nil), m.topics...)
	return append(out, g.s.regexes[*m.regex].names...)
}

// groupAssignor is the server assignor most members name (ties: the order
// of assign.Names), uniform when none does.
func (g *ConsumerGroup) groupAssignor() string {
	count := make(map[string]int)
	for _, m := range g.s.members {
		if m.assignor != "" {
			count[m.assignor]++
		}
	}
	best := assign.UniformName
	for _, n := range assign.Names() {
		if count[n] > count[best] {
			best = n
		}
	}
	return best
}

// computeTarget runs the group's assignor and makes the result the
// target of the current group epoch; g.mu held, touched.
func (g *ConsumerGroup) computeTarget() {
	s := g.s
	members := make([]assign.Member, 0, len(s.members))
	for _, id := range g.memberIDs() {
		m := s.members[id]
		am := assign.Member{ID: id, Topics: g.effectiveTopics(m)}
		if m.rackID != nil {
			am.Rack = *m.rackID
		}
		members = append(members, am)
	}
	f, _ := assign.ByName(g.groupAssignor())
	next := f(members, s.topics, s.target)
	for _, id := range g.memberIDs() {
		if old, ok := s.target[id]; !ok || !old.Equal(next[id]) {
			g.emit(ConsumerRecord{Type: RecordTargetMember, MemberID: id, Partitions: next[id].Clone()})
		}
	}
	s.target = next
	s.assignmentEpoch = s.epoch
	g.emit(ConsumerRecord{Type: RecordTargetMetadata, Epoch: s.assignmentEpoch})
}

// holdings lists the partitions m holds: assigned or pending revocation.
func holdings(m *consumerMember) []topicPart {
	var out []topicPart
	for _, p := range []assign.Partitions{m.assigned, m.pending} {
		for id, parts := range p {
			for _, part := range parts {
				out = append(out, topicPart{id, part})
			}
		}
	}
	return out
}

// hold records m as the holder of what it holds; release forgets it.
func (g *ConsumerGroup) hold(m *consumerMember) {
	for _, tp := range holdings(m) {
		g.s.owners[tp] = m.id
	}
}

func (g *ConsumerGroup) release(m *consumerMember) {
	for _, tp := range holdings(m) {
		if g.s.owners[tp] == m.id {
			delete(g.s.owners, tp)
		}
	}
}

// removeMember drops m and everything it holds, and persists its records'
// tombstones; the caller bumps the epoch. g.mu held, touched.
func (g *ConsumerGroup) removeMember(m *consumerMember) {
	s := g.s
	g.release(m)
	delete(s.members, m.id)
	delete(s.target, m.id)
	if m.instanceID != nil && s.static[*m.instanceID] == m.id {
		delete(s.static, *m.instanceID)
	}
	g.emit(ConsumerRecord{Type: RecordCurrentAssignment, MemberID: m.id, Tombstone: true})
	g.emit(ConsumerRecord{Type: RecordTargetMember, MemberID: m.id, Tombstone: true})
	g.emit(ConsumerRecord{Type: RecordMemberMetadata, MemberID: m.id, Tombstone: true})
}

// reconcile moves m toward its target (Kafka's CurrentAssignmentBuilder).
// owned is what the heartbeat says the member owns (nil: not sent). A
// change is persisted as the member's current assignment; always forces
// that record (a join). g.mu held.
func (g *ConsumerGroup) reconcile(m *consumerMember, owned []kmsg.ConsumerGroupHeartbeatRequestTopic, now time.Time, always bool) {
	if m.epoch == staticLeaveEpoch {
		return
	}
	s := g.s
	switch m.state {
	case MemberStable:
		if m.epoch == s.assignmentEpoch && !always {
			return
		}
	case MemberUnrevokedPartitions:
		if owned == nil || ownsAny(owned, m.pending) {
			if always {
				break
			}
			return
		}
	}
	g.touch()
	g.release(m)
	before := m.assigned
	target := s.target[m.id]
	keep, revoke, add := make(assign.Partitions), make(assign.Partitions), make(assign.Partitions)
	unreleased := false
	for id, parts := range m.assigned {
		for _, p := range parts {
			if target.Has(id, p) {
				keep[id] = append(keep[id], p)
			} else {
				revoke[id] = append(revoke[id], p)
			}
		}
	}
	for id, parts := range target {
		for _, p := range parts {
			if m.assigned.Has(id, p) {
				continue
			}
			if holder, held := s.owners[topicPart{id, p}]; held && holder != m.id {
				unreleased = true
				continue
			}
			add[id] = append(add[id], p)
		}
	}
	switch {
	case revoke.Count() > 0:
		m.assigned, m.pending = keep, revoke
		m.state = MemberUnrevokedPartitions
		m.revokeDeadline = now.Add(m.rebalanceTimeout)
	default:
		for id, parts := range add {
			keep[id] = append(keep[id], parts...)
			sort.Slice(keep[id], func(i, j int) bool { return keep[id][i] < keep[id][j] })
		}
		m.assigned, m.pending = keep, make(assign.Partitions)
		m.prevEpoch, m.epoch = m.epoch, s.assignmentEpoch
		m.state = MemberStable
		if unreleased {
			m.state = MemberUnreleasedPartitions
		}
		m.revokeDeadline = time.Time{}
	}
	g.hold(m)
	g.moved = g.moved || !before.Equal(m.assigned)
	g.emit(ConsumerRecord{Type: RecordCurrentAssignment, MemberID: m.id, Current: m.current()})
}

// ownsAny reports whether the owned partitions hold any of p.
func ownsAny(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, p assign.Partitions) bool {
	for _, t := range owned {
		for _, part := range t.Partitions {
			if p.Has(t.TopicID, part) {
				return true
			}
		}
	}
	return false
}

// ownedSubset reports whether every owned partition is in p.
func ownedSubset(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, p assign.Partitions) bool {
	for _, t := range owned {
		for _, part := range t.Partitions {
			if !p.Has(t.TopicID, part) {
				return false
			}
		}
	}
	return true
}

func sameSubscription(a, b *consumerMember) bool {
	return equalStrings(a.topics, b.topics) && equalStrPtr(a.regex, b.regex) && a.assignor == b.assignor
}

func equalStrPtr(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func sortedCopy(s []string) []string {
	if s == nil {
		return nil
	}
	out := append([]string{}, s...)
	sort.Strings(out)
	return slices.Compact(out) // a name sent twice is one subscription
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalTopics(a, b map[string]assign.Topic) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// consumerGroupState is the group's state as ConsumerGroupDescribe and
// ListGroups name it.
func (g *ConsumerGroup) state() string {
	active := 0
	for _, m := range g.s.members {
		if m.epoch == staticLeaveEpoch {
			continue
		}
		active++
		if m.epoch != g.s.assignmentEpoch || m.state != MemberStable {
			return "Reconciling"
		}
	}
	if active == 0 && len(g.s.members) == 0 {
		return "Empty"
	}
	if g.s.epoch != g.s.assignmentEpoch {
		return "Assigning"
	}
	return "Stable"
}

// Describe answers ConsumerGroupDescribe (API 69) for this group; the
// broker sets AuthorizedOperations.
func (g *ConsumerGroup) Describe() kmsg.ConsumerGroupDescribeResponseGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := kmsg.NewConsumerGroupDescribeResponseGroup()
	d.Group = g.name
	d.State = g.state()
	d.Epoch = g.s.epoch
	d.AssignmentEpoch = g.s.assignmentEpoch
	d.AssignorName = g.groupAssignor()
	names := make(map[[16]byte]string, len(g.s.topics))
	for n, t := range g.s.topics {
		names[t.ID] = n
	}
	toAssignment := func(p assign.Partitions) kmsg.Assignment {
		var a kmsg.Assignment
		for _, id := range sortedTopicIDs(p) {
			tp := kmsg.NewAssignmentTopicPartition()
			tp.TopicID, tp.Topic = id, names[id]
			tp.Partitions = append([]int32(nil), p[id]...)
			a.TopicPartitions = append(a.TopicPartitions, tp)
		}
		return a
	}
	for _, id := range g.memberIDs() {
		m := g.s.members[id]
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = m.instanceID
		dm.RackID = m.rackID
		dm.MemberEpoch = m.epoch
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.SubscribedTopics = append([]string{}, m.topics...)
		dm.SubscribedTopicRegex = m.regex
		dm.Assignment = toAssignment(m.assigned)
		dm.TargetAssignment = toAssignment(g.s.target[id])
		dm.MemberType = 1 // consumer (KIP-1099)
		d.Members = append(d.Members, dm)
	}
	return d
}

// Empty reports whether the group has no members (a classic JoinGroup may
// then convert it; docs/groups-next.md, Conversion).
func (g *ConsumerGroup) Empty() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.s.members) == 0
}

// State is the group's state as ListGroups names it (Empty, Assigning,
// Reconciling, Stable).
func (g *ConsumerGroup) State() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state()
}

// due reports whether Tick has something to do: a member's session or
// revocation deadline passed.
func (g *ConsumerGroup) due() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	for _, m := range g.s.members {
		if now.After(m.sessionDeadline) || (m.state == MemberUnrevokedPartitions && m.epoch != staticLeaveEpoch && now.After(m.revokeDeadline)) {
			return true
		}
	}
	return false
}

// subscribedTopic reports whether a member subscribes to topic (regexes
// as last resolved): OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC and offset
// expiry.
func (g *ConsumerGroup) subscribedTopic(topic string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := sort.SearchStrings(g.s.names, topic)
	return i < len(g.s.names) && g.s.names[i] == topic
}

// validateOffsetCommit is Kafka's ConsumerGroup.validateOffsetCommit: an
// admin commit (epoch < 0, no member id) only while the group has no
// members; else a known member (UNKNOWN_MEMBER_ID) at its epoch
// (STALE_MEMBER_EPOCH), with OffsetCommit v9+ (UNSUPPORTED_VERSION) unless
// transactional.
func (g *ConsumerGroup) validateOffsetCommit(memberID string, epoch int32, version int16, txn bool) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if epoch < 0 && memberID == "" && (txn || len(g.s.members) == 0) {
		return 0 // txn: a producer that sends no group metadata (v0-v2)
	}
	m := g.s.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if !txn && version < 9 {
		return kerr.UnsupportedVersion.Code
	}
	if epoch != m.epoch {
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

// validateOffsetFetch is Kafka's ConsumerGroup.validateOffsetFetch.
func (g *ConsumerGroup) validateOffsetFetch(memberID *string, epoch int32) int16 {
	if epoch < 0 && memberID == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var m *consumerMember
	if memberID != nil {
		m = g.s.members[*memberID]
	}
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if epoch != m.epoch {
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}
