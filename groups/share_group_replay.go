package groups

import (
	"github.com/tuskdb/tusk/groups/assign"
)

// Replay applies one share-group record read back from
// __consumer_offsets, in log order, to a group being loaded; ReplayDone
// ends the load. Tombstones of the group's own records (DeleteGroups)
// leave an empty group at epoch 0; the coordinator drops it.
func (g *ShareGroup) Replay(r ShareGroupRecord) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.s
	member := func() *shareMember {
		m := s.members[r.MemberID]
		if m == nil {
			m = &shareMember{id: r.MemberID, assigned: make(assign.Partitions)}
			s.members[r.MemberID] = m
		}
		return m
	}
	switch r.Type {
	case ShareRecordGroupMetadata:
		if r.Tombstone {
			s.epoch, s.assignmentEpoch, s.hash, s.created = 0, 0, 0, false
			return
		}
		s.epoch, s.hash, s.created = r.Epoch, r.MetadataHash, true
	case ShareRecordTargetMetadata:
		if !r.Tombstone {
			s.assignmentEpoch = r.Epoch
		}
	case ShareRecordTargetMember:
		replayTarget(s.target, r.MemberID, r.Partitions, r.Tombstone)
	case ShareRecordMemberMetadata:
		if r.Tombstone {
			delete(s.members, r.MemberID)
			return
		}
		m, md := member(), r.Member
		m.rackID, m.clientID, m.clientHost = md.RackID, md.ClientID, md.ClientHost
		m.topics = sortedCopy(md.SubscribedTopicNames)
	case ShareRecordStatePartitionMetadata:
		s.initialized = make(map[[16]byte]ShareStateTopic)
		if r.Tombstone || r.State == nil {
			return
		}
		for _, t := range r.State.Initialized {
			s.initialized[t.ID] = t
		}
	case ShareRecordCurrentAssignment:
		if r.Tombstone {
			return
		}
		m, c := member(), r.Current
		m.epoch, m.prevEpoch = c.MemberEpoch, c.PreviousMemberEpoch
		m.assigned = c.Assigned.Clone()
	}
}

// Deleted reports whether the replayed records leave nothing of the
// group (no members and no GroupMetadata: deleted, or never created).
func (g *ShareGroup) Deleted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.s.members) == 0 && !g.s.created
}

// ReplayDone ends a load: every member's session starts now, as in
// Kafka, and the subscribed topics are taken from img. If their hash is
// not the one GroupMetadata recorded (topics changed while no
// coordinator ran), the first heartbeat starts a new epoch and a new
// target.
func (g *ShareGroup) ReplayDone(img TopicImage) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, now := g.s, g.cfg.Now()
	session, _ := g.timeouts()
	for _, m := range s.members {
		m.sessionDeadline = now.Add(session)
	}
	topics := g.imageTopics(img)
	if topicsHash(topics) == s.hash {
		s.topics = topics
		return
	}
	s.topics = make(map[string]assign.Topic)
	s.recheck = true
}
