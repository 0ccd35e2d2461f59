package groups

import (
	"time"

	"github.com/tuskdb/tusk/groups/assign"
)

// What a consumer group persists (docs/groups-next.md, part A). Each
// ConsumerRecord is one record of Kafka's consumer-group record types in
// __consumer_offsets; their encoding (keys and values from Kafka's JSON
// schemas) is part A2's, in groups/records848.go. A request's records are
// persisted together, in the order below, before the request is answered:
//
//   - a member joins: MemberMetadata; GroupMetadata (epoch + 1); the
//     target: TargetMember for every member whose target changed, then
//     TargetMetadata (assignment epoch = group epoch); CurrentAssignment
//     of the joining member. A static member rejoining after a -2 leave
//     under a new member id: the old member's three tombstones, the new
//     member's TargetMember (the old target), MemberMetadata,
//     CurrentAssignment; no GroupMetadata unless its subscription changed.
//   - a heartbeat: MemberMetadata when the member's rebalance timeout,
//     rack, subscription or assignor changed; GroupMetadata and the target
//     records when its subscription or assignor changed, or when the
//     metadata of a subscribed topic changed (id, partition count, a regex
//     matching other topics); CurrentAssignment when the member's
//     assignment, pending revocations, state or epoch changed. A steady
//     heartbeat persists nothing.
//   - a static leave (-2): CurrentAssignment with member epoch -2.
//   - a leave (-1), a session expiry, a revocation deadline missed:
//     tombstones CurrentAssignment, TargetMember, MemberMetadata of each
//     member removed; GroupMetadata; the target records.
//
// Regex subscriptions are persisted as the member's SubscribedTopicRegex
// (MemberMetadata); what a regex resolved to is not (Kafka's
// ConsumerGroupRegularExpression record is left to A2/A3: resolution is
// redone on load, see ConsumerGroup.ReplayDone).

// ConsumerRecordType names one of Kafka's consumer-group record types; the
// values are Kafka's record key types (CoordinatorRecordType).
type ConsumerRecordType int16

const (
	RecordGroupMetadata     ConsumerRecordType = 3 // ConsumerGroupMetadata: key group; value group epoch
	RecordMemberMetadata    ConsumerRecordType = 5 // ConsumerGroupMemberMetadata: key (group, member)
	RecordTargetMetadata    ConsumerRecordType = 6 // ConsumerGroupTargetAssignmentMetadata: key group; value assignment epoch
	RecordTargetMember      ConsumerRecordType = 7 // ConsumerGroupTargetAssignmentMember: key (group, member); value partitions
	RecordCurrentAssignment ConsumerRecordType = 8 // ConsumerGroupCurrentMemberAssignment: key (group, member)
)

func (t ConsumerRecordType) String() string {
	switch t {
	case RecordGroupMetadata:
		return "ConsumerGroupMetadata"
	case RecordMemberMetadata:
		return "ConsumerGroupMemberMetadata"
	case RecordTargetMetadata:
		return "ConsumerGroupTargetAssignmentMetadata"
	case RecordTargetMember:
		return "ConsumerGroupTargetAssignmentMember"
	case RecordCurrentAssignment:
		return "ConsumerGroupCurrentMemberAssignment"
	}
	return "unknown"
}

// ConsumerRecord is one consumer-group record, decoded. Tombstone records
// carry only their key (Group, MemberID).
type ConsumerRecord struct {
	Type      ConsumerRecordType
	Group     string
	MemberID  string // member records
	Tombstone bool
	// Epoch is the group epoch (GroupMetadata) or the assignment epoch
	// (TargetMetadata).
	Epoch int32
	// MetadataHash (GroupMetadata, 0: none) is the hash of the subscribed
	// topics the target was computed on (topicsHash: Tusk's, not Kafka's).
	MetadataHash int64
	Member       *ConsumerMemberMetadata   // MemberMetadata
	Partitions   assign.Partitions         // TargetMember
	Current      *ConsumerMemberAssignment // CurrentAssignment
}

// ConsumerMemberMetadata is ConsumerGroupMemberMetadataValue.
type ConsumerMemberMetadata struct {
	InstanceID, RackID     *string
	ClientID, ClientHost   string
	SubscribedTopicNames   []string
	SubscribedTopicRegex   *string
	ServerAssignor         string // "" for none
	RebalanceTimeoutMillis int32
}

// ConsumerMemberAssignment is ConsumerGroupCurrentMemberAssignmentValue.
type ConsumerMemberAssignment struct {
	MemberEpoch, PreviousMemberEpoch int32
	State                            MemberState
	Assigned, PendingRevocation      assign.Partitions
}

func (m *consumerMember) metadata() *ConsumerMemberMetadata {
	md := &ConsumerMemberMetadata{
		InstanceID: m.instanceID, RackID: m.rackID,
		ClientID: m.clientID, ClientHost: m.clientHost,
		SubscribedTopicNames:   append([]string{}, m.topics...),
		SubscribedTopicRegex:   m.regex,
		ServerAssignor:         m.assignor,
		RebalanceTimeoutMillis: int32(m.rebalanceTimeout.Milliseconds()),
	}
	return md
}

func (m *consumerMember) current() *ConsumerMemberAssignment {
	return &ConsumerMemberAssignment{
		MemberEpoch: m.epoch, PreviousMemberEpoch: m.prevEpoch, State: m.state,
		Assigned: m.assigned.Clone(), PendingRevocation: m.pending.Clone(),
	}
}

// Replay applies one record read back from __consumer_offsets, in log
// order, to a group being loaded; ReplayDone ends the load.
func (g *ConsumerGroup) Replay(r ConsumerRecord) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.s
	member := func() *consumerMember {
		m := s.members[r.MemberID]
		if m == nil {
			m = &consumerMember{id: r.MemberID, assigned: make(assign.Partitions), pending: make(assign.Partitions), state: MemberStable}
			s.members[r.MemberID] = m
		}
		return m
	}
	switch r.Type {
	case RecordGroupMetadata:
		if r.Tombstone {
			s.epoch, s.assignmentEpoch = 0, 0
			return
		}
		s.epoch, s.loadedHash = r.Epoch, r.MetadataHash
	case RecordTargetMetadata:
		if !r.Tombstone {
			s.assignmentEpoch = r.Epoch
		}
	case RecordTargetMember:
		replayTarget(s.target, r.MemberID, r.Partitions, r.Tombstone)
	case RecordMemberMetadata:
		if r.Tombstone {
			delete(s.members, r.MemberID)
			return
		}
		m, md := member(), r.Member
		m.instanceID, m.rackID = md.InstanceID, md.RackID
		m.clientID, m.clientHost = md.ClientID, md.ClientHost
		m.topics = sortedCopy(md.SubscribedTopicNames)
		m.regex = md.SubscribedTopicRegex
		m.assignor = md.ServerAssignor
		m.rebalanceTimeout = time.Duration(md.RebalanceTimeoutMillis) * time.Millisecond
	case RecordCurrentAssignment:
		if r.Tombstone {
			return
		}
		m, c := member(), r.Current
		m.epoch, m.prevEpoch, m.state = c.MemberEpoch, c.PreviousMemberEpoch, c.State
		m.assigned, m.pending = c.Assigned.Clone(), c.PendingRevocation.Clone()
	}
}

// ReplayDone ends a load: it rebuilds what is derived from the records
// (static members, who holds which partition, regexes resolved on img)
// and starts every member's session and every pending revocation's
// deadline at now, as Kafka does. GroupMetadata's MetadataHash is the
// hash of the subscribed topics the target was computed on (as in Kafka
// 4.1): when the topics now hash the same, the group goes on at its
// epoch; when they differ (or no hash was written), the first heartbeat
// starts a new group epoch and recomputes the target (sticky: unchanged
// unless the topics changed meanwhile).
func (g *ConsumerGroup) ReplayDone(img TopicImage) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, now := g.s, g.cfg.Now()
	s.static = make(map[string]string)
	s.owners = make(map[topicPart]string)
	for _, m := range s.members {
		if m.instanceID != nil {
			s.static[*m.instanceID] = m.id
		}
		m.sessionDeadline = now.Add(g.cfg.SessionTimeout)
		if m.state == MemberUnrevokedPartitions {
			m.revokeDeadline = now.Add(m.rebalanceTimeout)
		}
		g.hold(m)
	}
	g.recomputeNames(now, img)
	// img is the coordinator's (every topic), not a
	// member's principal's: the first heartbeat resolves each regex
	// again on its own image (the broker's ACL filter).
	for re, r := range s.regexes {
		r.at = time.Time{}
		s.regexes[re] = r
	}
	s.topics = make(map[string]assign.Topic, len(s.names))
	for _, name := range s.names {
		if id, n, ok := img.Topic(name); ok {
			s.topics[name] = assign.Topic{ID: id, Partitions: n}
		}
	}
	s.recheck = len(s.members) > 0 && (s.loadedHash == 0 || s.loadedHash != topicsHash(s.topics))
}

// replayTarget applies a member's TargetMember record (a consumer or a
// share group's) to target.
func replayTarget(target assign.Assignment, member string, p assign.Partitions, tombstone bool) {
	if tombstone {
		delete(target, member)
		return
	}
	target[member] = p.Clone()
}
