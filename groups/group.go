package groups

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a classic group's state, named as Kafka names it in
// DescribeGroups and ListGroups.
type State int8

const (
	StateEmpty State = iota
	StatePreparingRebalance
	StateCompletingRebalance
	StateStable
	StateDead
)

func (s State) String() string {
	switch s {
	case StateEmpty:
		return "Empty"
	case StatePreparingRebalance:
		return "PreparingRebalance"
	case StateCompletingRebalance:
		return "CompletingRebalance"
	case StateStable:
		return "Stable"
	default:
		return "Dead"
	}
}

type joinWaiter struct {
	version int16
	ch      chan *kmsg.JoinGroupResponse // buffered 1; written once under g.mu
}

type syncWaiter struct {
	version int16
	ch      chan *kmsg.SyncGroupResponse
}

type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte
	isNew            bool
	deadline         time.Time // heartbeat (session) deadline
	join             *joinWaiter
	sync             *syncWaiter
}

func (m *member) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (m *member) matches(protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(m.protocols) != len(protocols) {
		return false
	}
	for i := range protocols {
		if m.protocols[i].Name != protocols[i].Name || !bytes.Equal(m.protocols[i].Metadata, protocols[i].Metadata) {
			return false
		}
	}
	return true
}

type tp struct {
	topic     string
	partition int32
}

type offsetValue struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTs    int64 // unix ms
	expireTs    int64 // unix ms, -1 if none (only from OffsetCommit v2-v4 retention)
	// order is the place of the commit's record among the group's
	// (group.nextOrder): a transaction's COMMIT keeps a later plain
	// commit of the partition, as Kafka compares their log offsets.
	order uint64
}

type group struct {
	c    *Coordinator
	name string

	// typ is the protocol the group id speaks (coordinator.go, GroupType);
	// it changes only under mu, by conversion of an empty group. The
	// classic fields below are used by GroupClassic only (a group of
	// another type has no classic members and stays StateEmpty until it
	// is Dead); offsets, pendingTxn and orders belong to every type.
	typ GroupType
	// consumer is the KIP-848 group when typ is GroupConsumer; its lock
	// is taken only under mu (lock order: group.mu → ConsumerGroup.mu).
	consumer *ConsumerGroup
	// share is the KIP-932 share group when typ is GroupShare
	// (share_group_api.go); its lock is taken only under mu.
	share *ShareGroup

	// tickDue is set by a Tick that found mu held; unlock runs the tick.
	tickDue atomic.Bool
	// listed is state and protocolType as of the last unlock (ListGroups).
	listed atomic.Pointer[listing]

	// mu guards the fields below it. It is held across Persist, so it
	// is released with unlock, and nothing that walks every group blocks
	// on it (Tick uses TryLock, ListGroups reads listed).
	mu sync.Mutex
	// outbox holds records of a state change made by a tick (a group
	// left Empty), persisted before any later record of the group and
	// before mu is released (unlock).
	outbox []Record

	state        State
	stateTs      time.Time // when the current state was entered (CurrentStateTimestamp)
	generation   int32
	protocolType string
	protocol     string
	leader       string

	members     map[string]*member
	pending     map[string]time.Time // MEMBER_ID_REQUIRED members → session deadline
	static      map[string]string    // instance id → member id
	pendingSync map[string]struct{}

	rebalanceDeadline time.Time
	initialDelay      bool
	initialRemaining  time.Duration
	newMemberAdded    bool
	syncDeadline      time.Time

	subscribed map[string]struct{} // nil: unknown (non-consumer protocol or undecodable)

	offsets map[tp]offsetValue
	// pendingTxn holds transactional offset commits (TxnOffsetCommit)
	// by producer id until its transaction's marker (txn.go).
	pendingTxn map[int64]map[tp]offsetValue
	// orders counts the offset commits persisted or replayed, in log
	// order (offsetValue.order).
	orders  uint64
	hasMeta bool // a group metadata record exists for the group (replay, persisted rebalance)
}

// listing is what ListGroups shows of a group.
type listing struct {
	state        State
	protocolType string
	typ          GroupType
	// typedState is the state of a group of a type other than classic,
	// as ListGroups names it ("Empty", "Stable", ...).
	typedState string
}

func newGroup(c *Coordinator, name string) *group {
	g := &group{
		c:           c,
		name:        name,
		state:       StateEmpty,
		stateTs:     c.cfg.Now(),
		members:     make(map[string]*member),
		pending:     make(map[string]time.Time),
		static:      make(map[string]string),
		pendingSync: make(map[string]struct{}),
		offsets:     make(map[tp]offsetValue),
	}
	g.listed.Store(&listing{state: g.state})
	return g
}

func (g *group) now() time.Time { return g.c.cfg.Now() }

// unlock releases mu. Before that it runs a tick that Tick skipped while
// mu was held, persists the records such a tick left in the outbox (so a
// request that changed the group answers after its persist, and one group's
// records stay in order), and publishes what ListGroups shows.
func (g *group) unlock() {
	for {
		if g.tickDue.Swap(false) && g.typ == GroupClassic && g.state != StateDead && g.c.tickable() {
			g.tick(g.now())
		}
		if len(g.outbox) == 0 {
			break
		}
		g.flush()
	}
	if next := g.listing(); *g.listed.Load() != next {
		g.listed.Store(&next)
	}
	g.mu.Unlock()
}

// persist persists recs after the outbox, keeping the group's records in
// the order of its state changes; g.mu held.
func (g *group) persist(ctx context.Context, recs []Record) int16 {
	g.flush()
	return g.c.persist(ctx, recs)
}

// flush persists the outbox. As in Kafka, storing a group left Empty by a
// rebalance only logs a failure (Coordinator.persist does). g.mu held.
func (g *group) flush() {
	if len(g.outbox) == 0 {
		return
	}
	recs := g.outbox
	g.outbox = nil
	g.c.persist(g.c.ctx, recs)
}

func (g *group) transition(s State) {
	if g.state != s {
		g.c.log.Debug().Str("group", g.name).Str("from", g.state.String()).Str("to", s.String()).Int32("generation", g.generation).Msg("groups: state transition")
	}
	g.state = s
	g.stateTs = g.now()
}

func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if m.join == nil {
			return false
		}
	}
	return true
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var max time.Duration
	for _, m := range g.members {
		if m.rebalanceTimeout > max {
			max = m.rebalanceTimeout
		}
	}
	return max
}

// supportsProtocols is Kafka's GroupMetadata.supportsProtocols.
func (g *group) supportsProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if g.state == StateEmpty {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	cands := g.candidateProtocols()
	for _, p := range protocols {
		if _, ok := cands[p.Name]; ok {
			return true
		}
	}
	return false
}

func (g *group) candidateProtocols() map[string]struct{} {
	counts := make(map[string]int)
	for _, m := range g.members {
		seen := make(map[string]bool, len(m.protocols))
		for _, p := range m.protocols {
			if !seen[p.Name] {
				seen[p.Name] = true
				counts[p.Name]++
			}
		}
	}
	cands := make(map[string]struct{})
	for name, n := range counts {
		if n == len(g.members) {
			cands[name] = struct{}{}
		}
	}
	return cands
}

// selectProtocol is Kafka's vote: among protocols every member supports,
// each member votes for the first one in its own preference order; the most
// votes win. Ties go to the protocol the leader prefers (Kafka leaves ties
// unspecified).
func (g *group) selectProtocol() string {
	cands := g.candidateProtocols()
	votes := make(map[string]int)
	for _, m := range g.members {
		for _, p := range m.protocols {
			if _, ok := cands[p.Name]; ok {
				votes[p.Name]++
				break
			}
		}
	}
	var order []string
	if l := g.members[g.leader]; l != nil {
		for _, p := range l.protocols {
			order = append(order, p.Name)
		}
	}
	for name := range cands {
		order = append(order, name)
	}
	best, bestVotes := "", -1
	for _, name := range order {
		if _, ok := cands[name]; !ok {
			continue
		}
		if votes[name] > bestVotes {
			best, bestVotes = name, votes[name]
		}
	}
	return best
}

func (g *group) sortedMemberIDs() []string {
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// computeSubscribed decodes the consumer protocol subscriptions, as Kafka
// does for protocol type "consumer", to know which topics' offsets are in
// use (OffsetDelete, offset expiration of Stable groups).
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != "consumer" || g.protocol == "" || len(g.members) == 0 {
		return
	}
	subs := make(map[string]struct{})
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.metadataFor(g.protocol)); err != nil {
			return
		}
		for _, t := range md.Topics {
			subs[t] = struct{}{}
		}
	}
	g.subscribed = subs
}

func strPtr(s string) *string { return &s }

// joinResponse fills a successful JoinGroup response for m.
func (g *group) joinResponse(version int16, m *member, withMembers bool, leader string) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.Generation = g.generation
	resp.ProtocolType = strPtr(g.protocolType)
	resp.Protocol = strPtr(g.protocol)
	resp.LeaderID = leader
	resp.MemberID = m.id
	if withMembers {
		for _, id := range g.sortedMemberIDs() {
			o := g.members[id]
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID = o.id
			rm.InstanceID = o.instanceID
			rm.ProtocolMetadata = o.metadataFor(g.protocol)
			resp.Members = append(resp.Members, rm)
		}
	}
	return resp
}

func joinError(version int16, memberID string, code int16) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.ErrorCode = code
	resp.MemberID = memberID
	if version < 7 {
		resp.Protocol = strPtr("")
	}
	return resp
}

func syncResponse(version int16, code int16) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = version
	resp.ErrorCode = code
	return resp
}

func (g *group) answerJoin(m *member, resp *kmsg.JoinGroupResponse) {
	if m.join == nil {
		return
	}
	resp.Version = m.join.version
	m.join.ch <- resp
	m.join = nil
}

func (g *group) answerSync(m *member, resp *kmsg.SyncGroupResponse) {
	if m.sync == nil {
		return
	}
	resp.Version = m.sync.version
	m.sync.ch <- resp
	m.sync = nil
}

func (g *group) failWaiters(m *member, code int16) {
	if m.join != nil {
		g.answerJoin(m, joinError(m.join.version, m.id, code))
	}
	if m.sync != nil {
		g.answerSync(m, syncResponse(m.sync.version, code))
	}
}

// emptyConsumerAssignment is a decodable empty ConsumerMemberAssignment,
// returned instead of zero bytes for protocol type "consumer".
var emptyConsumerAssignment = func() []byte {
	a := kmsg.NewConsumerMemberAssignment()
	return a.AppendTo(nil)
}()

func (g *group) assignmentFor(m *member) []byte {
	if len(m.assignment) == 0 && g.protocolType == "consumer" {
		return emptyConsumerAssignment
	}
	return m.assignment
}

func (g *group) syncSuccess(version int16, m *member) *kmsg.SyncGroupResponse {
	resp := syncResponse(version, 0)
	resp.ProtocolType = strPtr(g.protocolType)
	resp.Protocol = strPtr(g.protocol)
	resp.MemberAssignment = g.assignmentFor(m)
	return resp
}

// ---- membership changes ----

func (g *group) addMember(m *member) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	g.members[m.id] = m
	if g.leader == "" {
		g.leader = m.id
	}
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
}

// removeMember is Kafka's removeMemberAndUpdateGroup: the member's waiting
// JoinGroup gets UNKNOWN_MEMBER_ID, then the group rebalances (or, if
// already preparing, checks whether the rebalance can complete).
func (g *group) removeMember(m *member, reason string) {
	g.c.log.Debug().Str("group", g.name).Str("member", m.id).Str("reason", reason).Msg("groups: removing member")
	if m.join != nil {
		g.answerJoin(m, joinError(m.join.version, "", kerr.UnknownMemberID.Code))
	}
	if m.sync != nil {
		g.answerSync(m, syncResponse(m.sync.version, kerr.UnknownMemberID.Code))
	}
	g.dropMember(m)
	switch g.state {
	case StateStable, StateCompletingRebalance:
		g.prepareRebalance(reason)
	case StatePreparingRebalance:
		g.maybeCompleteJoin()
	}
}

// dropMember removes m from every index without state changes.
func (g *group) dropMember(m *member) {
	delete(g.members, m.id)
	delete(g.pendingSync, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		if ids := g.sortedMemberIDs(); len(ids) > 0 {
			g.leader = ids[0]
		}
	}
}

func (g *group) maybePrepareRebalance(reason string) {
	switch g.state {
	case StateStable, StateCompletingRebalance, StateEmpty:
		g.prepareRebalance(reason)
	}
}

func (g *group) prepareRebalance(reason string) {
	if g.state == StateCompletingRebalance {
		g.resetAndPropagateAssignmentError(kerr.RebalanceInProgress.Code)
	}
	g.syncDeadline = time.Time{}
	clear(g.pendingSync)
	wasEmpty := g.state == StateEmpty
	g.c.log.Debug().Str("group", g.name).Str("reason", reason).Msg("groups: preparing rebalance")
	g.transition(StatePreparingRebalance)
	rt := g.maxRebalanceTimeout()
	delay := g.c.cfg.InitialRebalanceDelay
	if wasEmpty && delay > 0 {
		g.initialDelay = true
		g.initialRemaining = max(rt-delay, 0)
		g.rebalanceDeadline = g.now().Add(delay)
		return
	}
	g.initialDelay = false
	g.rebalanceDeadline = g.now().Add(rt)
	g.maybeCompleteJoin()
}

func (g *group) resetAndPropagateAssignmentError(code int16) {
	for _, m := range g.members {
		m.assignment = nil
		if m.sync != nil {
			g.answerSync(m, syncResponse(m.sync.version, code))
		}
	}
}

func (g *group) maybeCompleteJoin() {
	if g.state == StatePreparingRebalance && !g.initialDelay && g.allJoined() {
		g.completeJoin()
	}
}

// completeJoin is Kafka's onCompleteJoin.
func (g *group) completeJoin() {
	now := g.now()
	for _, m := range g.members {
		if m.join == nil && m.instanceID == nil {
			g.c.log.Debug().Str("group", g.name).Str("member", m.id).Msg("groups: removing member that did not rejoin within the rebalance timeout")
			g.answerSync(m, syncResponse(0, kerr.UnknownMemberID.Code))
			g.dropMember(m)
		}
	}
	if len(g.members) > 0 && !g.electJoinedLeader() {
		// Only static members that have not rejoined: wait another
		// rebalance timeout for them (or for their sessions to expire).
		g.initialDelay = false
		g.rebalanceDeadline = now.Add(g.maxRebalanceTimeout())
		return
	}
	g.generation++
	if g.c.cfg.OnRebalance != nil {
		g.c.cfg.OnRebalance(g.name, g.generation)
	}
	g.rebalanceDeadline = time.Time{}
	g.initialDelay = false
	g.newMemberAdded = false
	clear(g.pendingSync)
	if len(g.members) == 0 {
		g.protocol = ""
		g.leader = ""
		g.subscribed = nil
		g.transition(StateEmpty)
		// Kafka stores the (empty) group here and only logs a failure.
		// It is persisted before the lock is released (unlock), not
		// here: a Tick must not wait for it (see Coordinator.Tick).
		g.outbox = append(g.outbox, g.metadataRecord())
		return
	}
	g.protocol = g.selectProtocol()
	g.computeSubscribed()
	g.transition(StateCompletingRebalance)
	leader := g.leader
	for _, id := range g.sortedMemberIDs() {
		m := g.members[id]
		if m.join != nil {
			g.answerJoin(m, g.joinResponse(m.join.version, m, id == leader, leader))
		}
		m.deadline = now.Add(m.sessionTimeout)
		m.isNew = false
		g.pendingSync[id] = struct{}{}
	}
	g.syncDeadline = now.Add(g.maxRebalanceTimeout())
}

func (g *group) electJoinedLeader() bool {
	if l := g.members[g.leader]; l != nil && l.join != nil {
		return true
	}
	for _, id := range g.sortedMemberIDs() {
		if g.members[id].join != nil {
			g.leader = id
			return true
		}
	}
	return false
}

// tick runs expirations at now; g.mu held.
func (g *group) tick(now time.Time) {
	for id, dl := range g.pending {
		if !now.Before(dl) {
			delete(g.pending, id)
			g.maybeCompleteJoin()
		}
	}
	for _, id := range g.sortedMemberIDs() {
		m := g.members[id]
		if m == nil {
			continue
		}
		if !m.isNew && (m.join != nil || m.sync != nil) {
			continue // members waiting in a rebalance satisfy their heartbeats
		}
		if !now.Before(m.deadline) {
			g.removeMember(m, "session timeout expired")
		}
	}
	if g.state == StatePreparingRebalance && !g.rebalanceDeadline.IsZero() && !now.Before(g.rebalanceDeadline) {
		if g.initialDelay && g.newMemberAdded && g.initialRemaining > 0 {
			g.newMemberAdded = false
			d := min(g.c.cfg.InitialRebalanceDelay, g.initialRemaining)
			g.initialRemaining -= d
			g.rebalanceDeadline = now.Add(d)
		} else {
			g.initialDelay = false
			g.completeJoin()
		}
	}
	if (g.state == StateCompletingRebalance || g.state == StateStable) && len(g.pendingSync) > 0 &&
		!g.syncDeadline.IsZero() && !now.Before(g.syncDeadline) {
		for id := range g.pendingSync {
			if m := g.members[id]; m != nil {
				g.failWaiters(m, kerr.UnknownMemberID.Code)
				g.dropMember(m)
			}
		}
		clear(g.pendingSync)
		g.syncDeadline = time.Time{}
		g.prepareRebalance("members did not send SyncGroup within the rebalance timeout")
	}
}

// ---- JoinGroup ----

// join handles a JoinGroup under g.mu. It returns either an immediate
// response, or the member whose waiter the caller must wait on.
func (g *group) join(ctx context.Context, req *kmsg.JoinGroupRequest, ci ClientInfo) (*kmsg.JoinGroupResponse, *joinWaiter) {
	v := req.Version
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		return joinError(v, req.MemberID, kerr.InconsistentGroupProtocol.Code), nil
	}
	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old, ok := g.static[*req.InstanceID]; ok && g.members[old] != nil {
				return g.updateStaticMember(ctx, g.members[old], req, ci)
			}
			return nil, g.addMemberAndRebalance(newMemberID(*req.InstanceID), req, ci)
		}
		id := newMemberID(ci.ClientID)
		if v >= 4 {
			g.pending[id] = g.now().Add(sessionTimeout(req))
			return joinError(v, id, kerr.MemberIDRequired.Code), nil
		}
		return nil, g.addMemberAndRebalance(id, req, ci)
	}

	if _, ok := g.pending[req.MemberID]; ok {
		if req.InstanceID != nil {
			// Kafka: a pending member is dynamic; a static id here is a fenced/invalid mix.
			if err := g.validateMember(req.MemberID, req.InstanceID); err != 0 {
				delete(g.pending, req.MemberID)
				return joinError(v, req.MemberID, err), nil
			}
		}
		delete(g.pending, req.MemberID)
		return nil, g.addMemberAndRebalance(req.MemberID, req, ci)
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		return joinError(v, req.MemberID, code), nil
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StatePreparingRebalance:
		return nil, g.updateMemberAndRebalance(m, req, "member rejoining during PreparingRebalance")
	case StateCompletingRebalance:
		if m.matches(req.Protocols) {
			return g.joinResponse(v, m, m.id == g.leader, g.leader), nil
		}
		return nil, g.updateMemberAndRebalance(m, req, "member rejoined with new metadata during CompletingRebalance")
	case StateStable:
		if m.id == g.leader || !m.matches(req.Protocols) {
			return nil, g.updateMemberAndRebalance(m, req, "leader rejoined or member metadata changed")
		}
		m.deadline = g.now().Add(m.sessionTimeout)
		return g.joinResponse(v, m, false, g.leader), nil
	default:
		return joinError(v, req.MemberID, kerr.UnknownMemberID.Code), nil
	}
}

// validateMember is Kafka's validateCurrentMember.
func (g *group) validateMember(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		if id, ok := g.static[*instanceID]; ok && id != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

func sessionTimeout(req *kmsg.JoinGroupRequest) time.Duration {
	return time.Duration(req.SessionTimeoutMillis) * time.Millisecond
}

func rebalanceTimeout(req *kmsg.JoinGroupRequest) time.Duration {
	if req.Version == 0 || req.RebalanceTimeoutMillis <= 0 {
		return sessionTimeout(req)
	}
	return time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
}

func newWaiter(v int16) *joinWaiter {
	return &joinWaiter{version: v, ch: make(chan *kmsg.JoinGroupResponse, 1)}
}

func (g *group) setJoinWaiter(m *member, v int16) *joinWaiter {
	if m.join != nil {
		// A duplicate JoinGroup from the same member: the older request is
		// superseded.
		g.answerJoin(m, joinError(m.join.version, m.id, kerr.RebalanceInProgress.Code))
	}
	w := newWaiter(v)
	m.join = w
	return w
}

func (g *group) addMemberAndRebalance(id string, req *kmsg.JoinGroupRequest, ci ClientInfo) *joinWaiter {
	m := &member{
		id:               id,
		instanceID:       req.InstanceID,
		clientID:         ci.ClientID,
		clientHost:       ci.Host,
		sessionTimeout:   sessionTimeout(req),
		rebalanceTimeout: rebalanceTimeout(req),
		protocolType:     req.ProtocolType,
		protocols:        cloneProtocols(req.Protocols),
		isNew:            true,
		deadline:         g.now().Add(g.c.cfg.NewMemberJoinTimeout),
	}
	if m.instanceID != nil {
		m.instanceID = strPtr(*m.instanceID)
	}
	w := g.setJoinWaiter(m, req.Version)
	if g.state == StatePreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.addMember(m)
	g.maybePrepareRebalance("adding new member " + id)
	g.maybeCompleteJoin()
	return w
}

func (g *group) updateMemberAndRebalance(m *member, req *kmsg.JoinGroupRequest, reason string) *joinWaiter {
	m.protocols = cloneProtocols(req.Protocols)
	m.sessionTimeout = sessionTimeout(req)
	m.rebalanceTimeout = rebalanceTimeout(req)
	m.deadline = g.now().Add(m.sessionTimeout)
	w := g.setJoinWaiter(m, req.Version)
	g.maybePrepareRebalance(reason)
	g.maybeCompleteJoin()
	return w
}

// updateStaticMember is Kafka's updateStaticMemberAndRebalance: a known
// group.instance.id rejoins with an empty member id. The old member id is
// fenced; in Stable, if the selected protocol would not change, the group
// keeps its generation and assignment (no rebalance).
func (g *group) updateStaticMember(ctx context.Context, old *member, req *kmsg.JoinGroupRequest, ci ClientInfo) (*kmsg.JoinGroupResponse, *joinWaiter) {
	v := req.Version
	oldID := old.id
	oldLeader := g.leader
	newID := newMemberID(*req.InstanceID)

	// Fence whatever the old incarnation is waiting on.
	g.failWaiters(old, kerr.FencedInstanceID.Code)
	saved := *old
	delete(g.members, oldID)
	_, wasPendingSync := g.pendingSync[oldID]
	delete(g.pendingSync, oldID)
	m := old
	m.id = newID
	m.clientID, m.clientHost = ci.ClientID, ci.Host
	g.members[newID] = m
	g.static[*req.InstanceID] = newID
	if g.leader == oldID {
		g.leader = newID
	}
	if wasPendingSync {
		g.pendingSync[newID] = struct{}{}
	}
	m.deadline = g.now().Add(sessionTimeout(req))
	m.protocols = cloneProtocols(req.Protocols)
	m.sessionTimeout = sessionTimeout(req)
	m.rebalanceTimeout = rebalanceTimeout(req)

	switch g.state {
	case StateStable:
		if g.selectProtocol() != g.protocol {
			w := g.setJoinWaiter(m, v)
			g.prepareRebalance("static member " + newID + " rejoined with a protocol change")
			return nil, w
		}
		if code := g.persist(ctx, []Record{g.metadataRecord()}); code != 0 {
			// Revert: the old member id stays the registered one.
			delete(g.members, newID)
			*m = saved
			g.members[oldID] = m
			g.static[*req.InstanceID] = oldID
			g.leader = oldLeader
			if wasPendingSync {
				delete(g.pendingSync, newID)
				g.pendingSync[oldID] = struct{}{}
			}
			resp := joinError(v, "", code)
			resp.Generation = g.generation
			resp.ProtocolType = strPtr(g.protocolType)
			resp.Protocol = strPtr(g.protocol)
			resp.LeaderID = oldLeader
			return resp, nil
		}
		if v >= 9 {
			isLeader := g.leader == newID
			resp := g.joinResponse(v, m, isLeader, g.leader)
			resp.SkipAssignment = isLeader
			return resp, nil
		}
		// Before v9, return the old leader id so that a restarted leader
		// does not run a (discarded) assignment in a Stable group.
		return g.joinResponse(v, m, false, oldLeader), nil
	case StateCompletingRebalance:
		w := g.setJoinWaiter(m, v)
		g.prepareRebalance("static member " + newID + " rejoined during CompletingRebalance")
		return nil, w
	default: // PreparingRebalance
		w := g.setJoinWaiter(m, v)
		g.maybeCompleteJoin()
		return nil, w
	}
}

func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: bytes.Clone(p.Metadata)}
	}
	return out
}

// ---- SyncGroup ----

func (g *group) syncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) (*kmsg.SyncGroupResponse, *syncWaiter) {
	v := req.Version
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		return syncResponse(v, code), nil
	}
	if req.Generation != g.generation {
		return syncResponse(v, kerr.IllegalGeneration.Code), nil
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) || (req.Protocol != nil && *req.Protocol != g.protocol) {
		return syncResponse(v, kerr.InconsistentGroupProtocol.Code), nil
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StateEmpty:
		return syncResponse(v, kerr.UnknownMemberID.Code), nil
	case StatePreparingRebalance:
		return syncResponse(v, kerr.RebalanceInProgress.Code), nil
	case StateCompletingRebalance:
		if m.sync != nil {
			g.answerSync(m, syncResponse(m.sync.version, kerr.RebalanceInProgress.Code))
		}
		w := &syncWaiter{version: v, ch: make(chan *kmsg.SyncGroupResponse, 1)}
		m.sync = w
		delete(g.pendingSync, m.id)
		if m.id == g.leader {
			assign := make(map[string][]byte, len(req.GroupAssignment))
			for _, a := range req.GroupAssignment {
				assign[a.MemberID] = a.MemberAssignment
			}
			for id, o := range g.members {
				o.assignment = bytes.Clone(assign[id])
			}
			gen := g.generation
			if code := g.persist(ctx, []Record{g.metadataRecord()}); code != 0 {
				if g.state == StateCompletingRebalance && g.generation == gen {
					g.resetAndPropagateAssignmentError(code)
					g.maybePrepareRebalance("failed to persist the group assignment")
				}
				return nil, w
			}
			for _, id := range g.sortedMemberIDs() {
				o := g.members[id]
				if o.sync != nil {
					g.answerSync(o, g.syncSuccess(o.sync.version, o))
				}
			}
			g.transition(StateStable)
			if len(g.pendingSync) == 0 {
				g.syncDeadline = time.Time{}
			}
		}
		return nil, w
	case StateStable:
		delete(g.pendingSync, m.id)
		if len(g.pendingSync) == 0 {
			g.syncDeadline = time.Time{}
		}
		m.deadline = g.now().Add(m.sessionTimeout)
		return g.syncSuccess(v, m), nil
	default:
		return syncResponse(v, kerr.CoordinatorNotAvailable.Code), nil
	}
}

// ---- Heartbeat ----

func (g *group) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		return code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StateEmpty:
		return kerr.UnknownMemberID.Code
	case StateCompletingRebalance, StateStable:
		m.deadline = g.now().Add(m.sessionTimeout)
		return 0
	case StatePreparingRebalance:
		m.deadline = g.now().Add(m.sessionTimeout)
		return kerr.RebalanceInProgress.Code
	default:
		return kerr.CoordinatorNotAvailable.Code
	}
}

// ---- LeaveGroup ----

func (g *group) leave(memberID string, instanceID *string) (string, int16) {
	if memberID == "" && instanceID != nil {
		id, ok := g.static[*instanceID]
		if !ok {
			return memberID, kerr.UnknownMemberID.Code
		}
		memberID = id
	}
	if _, ok := g.pending[memberID]; ok && instanceID == nil {
		delete(g.pending, memberID)
		g.maybeCompleteJoin()
		return memberID, 0
	}
	if code := g.validateMember(memberID, instanceID); code != 0 {
		return memberID, code
	}
	g.removeMember(g.members[memberID], "member left the group")
	return memberID, 0
}

// nextOrder is the order of the next offset commit record. g.mu held.
func (g *group) nextOrder() uint64 {
	g.orders++
	return g.orders
}
