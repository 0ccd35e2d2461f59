package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record versions written, as Kafka writes them (see doc.go).
const (
	offsetKeyVersion   = 1 // OffsetCommitKey
	groupKeyVersion    = 2 // GroupMetadataKey
	offsetValueVersion = 3 // OffsetCommitValue; 1 when an expire timestamp is set
	groupValueVersion  = 3 // GroupMetadataValue
)

func offsetKey(group, topic string, partition int32) []byte {
	k := kmsg.NewOffsetCommitKey()
	k.Version = offsetKeyVersion
	k.Group, k.Topic, k.Partition = group, topic, partition
	return k.AppendTo(nil)
}

func offsetRecordValue(o offsetValue) []byte {
	v := kmsg.NewOffsetCommitValue()
	v.Version = offsetValueVersion
	v.Offset = o.offset
	v.LeaderEpoch = o.leaderEpoch
	v.Metadata = o.metadata
	v.CommitTimestamp = o.commitTs
	if o.expireTs >= 0 {
		v.Version = 1
		v.ExpireTimestamp = o.expireTs
	}
	return v.AppendTo(nil)
}

func groupKey(group string) []byte {
	k := kmsg.NewGroupMetadataKey()
	k.Version = groupKeyVersion
	k.Group = group
	return k.AppendTo(nil)
}

// metadataRecord is the GroupMetadataValue of g as it stands (Kafka's
// storeGroup); g.mu held.
func (g *group) metadataRecord() Record {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupValueVersion
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.protocol != "" {
		v.Protocol = strPtr(g.protocol)
	}
	if g.leader != "" && len(g.members) > 0 {
		v.Leader = strPtr(g.leader)
	}
	v.CurrentStateTimestamp = g.stateTs.UnixMilli()
	for _, id := range g.sortedMemberIDs() {
		m := g.members[id]
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		vm.InstanceID = m.instanceID
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout.Milliseconds())
		vm.SessionTimeoutMillis = int32(m.sessionTimeout.Milliseconds())
		vm.Subscription = m.metadataFor(g.protocol)
		vm.Assignment = m.assignment
		if vm.Subscription == nil {
			vm.Subscription = []byte{}
		}
		if vm.Assignment == nil {
			vm.Assignment = []byte{}
		}
		v.Members = append(v.Members, vm)
	}
	return Record{Key: groupKey(g.name), Value: v.AppendTo(nil)}
}

// ErrNotLoading is returned by Replay after ReplayDone.
var ErrNotLoading = errors.New("groups: Replay called after ReplayDone")

// Replay applies one __consumer_offsets record, in log order, while the
// coordinator is loading. Offset commit records set or (tombstone) delete an
// offset; group metadata records set or (tombstone) clear a group's
// generation, protocol, leader and members. KIP-848 consumer-group records
// (key types 3, 5-8) rebuild consumer groups (replayConsumer). Records of
// other key types are ignored.
func (c *Coordinator) Replay(r Record) error {
	if !c.loading.Load() {
		return ErrNotLoading
	}
	if len(r.Key) < 2 {
		return fmt.Errorf("groups: record key too short (%d bytes)", len(r.Key))
	}
	switch kv := int16(binary.BigEndian.Uint16(r.Key)); kv {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(r.Key); err != nil {
			return fmt.Errorf("groups: decoding offset commit key: %w", err)
		}
		g := c.getOrCreate(k.Group)
		g.mu.Lock()
		defer g.unlock()
		key := tp{k.Topic, k.Partition}
		if r.Value == nil {
			delete(g.offsets, key)
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(r.Value); err != nil {
			return fmt.Errorf("groups: decoding offset commit value of %s/%s/%d: %w", k.Group, k.Topic, k.Partition, err)
		}
		ov := offsetValue{offset: v.Offset, leaderEpoch: -1, metadata: v.Metadata, commitTs: v.CommitTimestamp, expireTs: -1}
		if v.Version >= 3 {
			ov.leaderEpoch = v.LeaderEpoch
		}
		if v.Version == 1 {
			ov.expireTs = v.ExpireTimestamp
		}
		ov.order = g.nextOrder()
		g.offsets[key] = ov
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(r.Key); err != nil {
			return fmt.Errorf("groups: decoding group metadata key: %w", err)
		}
		g := c.getOrCreate(k.Group)
		g.mu.Lock()
		defer g.unlock()
		g.members = make(map[string]*member)
		g.static = make(map[string]string)
		g.generation, g.protocolType, g.protocol, g.leader = 0, "", "", ""
		g.hasMeta = false
		if r.Value == nil {
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(r.Value); err != nil {
			return fmt.Errorf("groups: decoding group metadata value of %s: %w", k.Group, err)
		}
		// A classic group's metadata after a consumer group's
		// tombstones: converted back by a JoinGroup.
		g.typ, g.consumer, g.share = GroupClassic, nil, nil
		g.hasMeta = true
		g.generation = v.Generation
		g.protocolType = v.ProtocolType
		if v.Protocol != nil {
			g.protocol = *v.Protocol
		}
		if v.Leader != nil {
			g.leader = *v.Leader
		}
		if v.CurrentStateTimestamp > 0 {
			g.stateTs = time.UnixMilli(v.CurrentStateTimestamp)
		}
		for _, vm := range v.Members {
			m := &member{
				id:             vm.MemberID,
				instanceID:     vm.InstanceID,
				clientID:       vm.ClientID,
				clientHost:     vm.ClientHost,
				sessionTimeout: time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
				protocolType:   v.ProtocolType,
				protocols:      []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}},
				assignment:     vm.Assignment,
			}
			m.rebalanceTimeout = time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond
			if vm.RebalanceTimeoutMillis <= 0 {
				m.rebalanceTimeout = m.sessionTimeout
			}
			g.members[m.id] = m
			if m.instanceID != nil {
				g.static[*m.instanceID] = m.id
			}
		}
		if g.members[g.leader] == nil {
			g.leader = ""
			if ids := g.sortedMemberIDs(); len(ids) > 0 {
				g.leader = ids[0]
			}
		}
	case int16(RecordGroupMetadata), int16(RecordMemberMetadata), int16(RecordTargetMetadata),
		int16(RecordTargetMember), int16(RecordCurrentAssignment):
		return c.replayConsumer(r)
	case int16(ShareRecordMemberMetadata), int16(ShareRecordGroupMetadata), int16(ShareRecordTargetMetadata),
		int16(ShareRecordTargetMember), int16(ShareRecordCurrentAssignment), int16(ShareRecordStatePartitionMetadata):
		return c.replayShare(r)
	default:
		// Not written by Tusk's groups, or not needed on load:
		// ConsumerGroupPartitionMetadata (4, which Kafka 4.1 stopped
		// writing), ConsumerGroupRegularExpression (16: regexes are
		// resolved again).
	}
	return nil
}

// ReplayDone ends loading. Consumer groups rebuild what they derive from
// their records on Config.Topics (ConsumerGroup.ReplayDone). Groups whose last metadata record has members
// come back Stable at their generation with their members' assignments
// (sessions restart now, as in Kafka: members that do not heartbeat within
// their session timeout are expired and the group rebalances); the others
// come back Empty. Groups with neither metadata nor offsets are dropped.
func (c *Coordinator) ReplayDone() {
	now := c.cfg.Now()
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if g.typ == GroupConsumer {
			g.consumer.ReplayDone(c.cfg.Topics)
			g.state = StateEmpty
			g.unlock()
			continue
		}
		if g.typ == GroupShare {
			if g.share.Deleted() {
				g.transition(StateDead)
				c.remove(g)
			} else {
				g.share.ReplayDone(c.cfg.Topics)
				g.state = StateEmpty
			}
			g.unlock()
			continue
		}
		if !g.hasMeta && len(g.offsets) == 0 && len(g.pendingTxn) == 0 {
			g.transition(StateDead)
			c.remove(g)
			g.unlock()
			continue
		}
		if len(g.members) > 0 {
			g.state = StateStable
			for _, m := range g.members {
				m.deadline = now.Add(m.sessionTimeout)
			}
			g.computeSubscribed()
		} else {
			g.state = StateEmpty
		}
		g.unlock()
	}
	c.loading.Store(false)
}
