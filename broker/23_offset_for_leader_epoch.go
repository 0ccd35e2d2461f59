package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// OffsetForLeaderEpoch 0-4: for a leader epoch, the end offset of that
// epoch on this partition (where the next epoch's segment starts, or the
// log end offset for the current epoch). Epochs come from the partition's
// segment chain in the metadata: each segment has its own epoch and starts
// at its base offset. Clients use it to detect truncation after a
// leadership change.
func apiOffsetForLeaderEpoch() api {
	return api{key: kmsg.OffsetForLeaderEpoch, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleOffsetForLeaderEpoch(rc, rc.req.(*kmsg.OffsetForLeaderEpochRequest)), nil
	}}
}

func (b *Broker) handleOffsetForLeaderEpoch(rc *request, req *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := kmsg.NewPtrOffsetForLeaderEpochResponse()
	// CLUSTER_ACTION on the cluster (a replica's), else DESCRIBE on each
	// topic (a consumer's, KIP-320).
	clusterAction := rc.allowedCluster(auth.OpClusterAction)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		topic, _ := b.store.FSM().Topic(rt.Topic)
		var denied int16
		if !clusterAction {
			denied = rc.topicDenied(auth.OpDescribe, rt.Topic)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			if denied != 0 {
				sp.ErrorCode = denied
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			l, code := b.partitionLog(rt.Topic, rp.Partition)
			if code == 0 {
				_, current := topic.Leader(rp.Partition)
				code = checkLeaderEpoch(rp.CurrentLeaderEpoch, current)
			}
			if code == 0 {
				sp.LeaderEpoch, sp.EndOffset = epochEndOffset(topic.Parts[rp.Partition], rp.LeaderEpoch, l.LogEndOffset())
			}
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// epochEndOffset applies Kafka's rule over a segment chain: for the
// current epoch, the log end offset; for an older one, the largest epoch
// at or below it and the base offset of the first segment with a higher
// epoch; for an epoch above every segment's, or an undefined one, -1/-1.
func epochEndOffset(p metadata.Partition, requested int32, leo int64) (int32, int64) {
	segs := p.Segments
	if requested < 0 || len(segs) == 0 {
		return -1, -1
	}
	if requested == segs[len(segs)-1].Epoch {
		return requested, leo
	}
	floor := int32(-1)
	for _, s := range segs {
		// A merged segment of a compacted topic holds several epochs
		// (metadata.MergeSegments).
		for _, e := range s.EpochList() {
			if e.Epoch > requested {
				if floor < 0 {
					return requested, e.Start // older than every segment
				}
				return floor, e.Start
			}
			floor = e.Epoch
		}
	}
	return -1, -1 // newer than the current epoch
}
