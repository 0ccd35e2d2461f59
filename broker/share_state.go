package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/tuskdb/tusk/share"
)

// The seams between the share-partition data path (ShareFetch,
// ShareAcknowledge, __share_group_state) and share-group membership
// (ShareGroupHeartbeat, the share-group offsets admin APIs 90-92):
// docs/groups-next.md, "Seams between B2/B3 helpers".

// shareConfig is the share-partition configuration of group: the broker
// defaults (share.* in configs; Kafka's group.share.* and
// share.auto.offset.reset).
func (b *Broker) shareConfig(group string) share.Config {
	// Per-group overrides (GROUP config resources, groupconfig.go) over
	// the broker defaults; values were checked when set.
	c := share.Config{
		LockDuration:       b.cfg.Share.RecordLockDuration,
		DeliveryCountLimit: int16(b.cfg.Share.DeliveryCountLimit),
		MaxRecordLocks:     b.cfg.Share.PartitionMaxRecordLocks,
		AutoOffsetReset:    share.ResetLatest,
	}
	if ms, err := strconv.ParseInt(b.groupConfig(group, "share.record.lock.duration.ms"), 10, 64); err == nil {
		c.LockDuration = time.Duration(ms) * time.Millisecond
	}
	if n, err := strconv.Atoi(b.groupConfig(group, "share.delivery.count.limit")); err == nil {
		c.DeliveryCountLimit = int16(n)
	}
	if b.groupConfig(group, "share.auto.offset.reset") == "earliest" {
		c.AutoOffsetReset = share.ResetEarliest
	}
	return c
}

// shareStateSummary is the persisted start offset and leader epoch of a
// share-partition and how many offsets at or above the start are
// acknowledged or archived (DescribeShareGroupOffsets, Kafka's
// ReadShareGroupStateSummary): -1, -1 and 0 with no error when the group
// has no state for it.
func (b *Broker) shareStateSummary(ctx context.Context, group string, topicID [16]byte, partition int32) (startOffset int64, leaderEpoch int32, complete int64, errCode int16) {
	resp := b.shareState(ctx, shareStateRequest{Op: shareOpSummary, Group: group, TopicID: topicID, Partition: partition})
	if resp.Code != 0 {
		return -1, -1, 0, resp.Code
	}
	return resp.StartOffset, resp.LeaderEpoch, resp.DeliveryComplete, 0
}

// shareStateInitialize sets a share-partition's start offset
// (AlterShareGroupOffsets, Kafka's InitializeShareGroupState); the
// caller checked that the group is empty. The state epoch moves, so a
// share-partition leader holding the old state is refused its next write
// and reads the new one.
func (b *Broker) shareStateInitialize(ctx context.Context, group string, topicID [16]byte, partition int32, startOffset int64) int16 {
	resp := b.shareState(ctx, shareStateRequest{Op: shareOpInitialize, Group: group, TopicID: topicID, Partition: partition, StartOffset: startOffset})
	b.share.forget(sharePartKey{group, topicID, partition})
	return resp.Code
}

// shareStateDelete deletes a share-partition's state
// (DeleteShareGroupOffsets, Kafka's DeleteShareGroupState).
func (b *Broker) shareStateDelete(ctx context.Context, group string, topicID [16]byte, partition int32) int16 {
	resp := b.shareState(ctx, shareStateRequest{Op: shareOpDelete, Group: group, TopicID: topicID, Partition: partition})
	b.share.forget(sharePartKey{group, topicID, partition})
	return resp.Code
}

// shareMemberLeft releases every record member holds on this node's
// share-partitions of group (it left the group).
func (b *Broker) shareMemberLeft(group, memberID string) {
	b.share.releaseMember(b.reqCtx, group, memberID, nil)
}
