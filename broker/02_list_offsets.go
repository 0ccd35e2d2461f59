package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/storage"
)

// Special ListOffsets timestamps.
const (
	listLatest        = -1
	listEarliest      = -2
	listMaxTimestamp  = -3 // v7+
	listEarliestLocal = -4 // v8+
)

func apiListOffsets() api {
	return api{key: kmsg.ListOffsets, min: 1, max: 8, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleListOffsets(rc, rc.req.(*kmsg.ListOffsetsRequest)), nil
	}}
}

func (b *Broker) handleListOffsets(rc *request, req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := kmsg.NewPtrListOffsetsResponse()
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		topic, _ := b.store.FSM().Topic(rt.Topic)
		denied := rc.topicDenied(auth.OpDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Offset, sp.Timestamp, sp.LeaderEpoch = -1, -1, -1
			if denied != 0 {
				sp.ErrorCode = denied
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			l, code := b.partitionLog(rt.Topic, rp.Partition)
			_, leaderEpoch := topic.Leader(rp.Partition)
			if code == 0 {
				code = checkLeaderEpoch(rp.CurrentLeaderEpoch, leaderEpoch)
			}
			if code == 0 && rp.Timestamp != listEarliest && rp.Timestamp != listEarliestLocal {
				code = b.offsetsKnown(rt.Topic, rp.Partition, l)
			}
			if code != 0 {
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			switch ts := rp.Timestamp; {
			case ts == listLatest && req.IsolationLevel == 1:
				// read_committed (v2+): the last stable offset.
				sp.Offset = l.LastStableOffset()
				sp.LeaderEpoch = leaderEpoch
			case ts == listLatest:
				sp.Offset = l.HighWatermark()
				sp.LeaderEpoch = leaderEpoch
			case ts == listEarliest || ts == listEarliestLocal && req.Version >= 8:
				sp.Offset = l.LogStartOffset()
				sp.LeaderEpoch = leaderEpoch
			case ts == listMaxTimestamp && req.Version >= 7:
				off, t, found, err := l.MaxTimestamp()
				found = found && committedBelow(req.IsolationLevel, l, off)
				if err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				} else if found {
					sp.Offset, sp.Timestamp, sp.LeaderEpoch = off, t, leaderEpoch
				}
			case ts >= 0:
				off, t, found, err := l.OffsetForTimestamp(ts)
				found = found && committedBelow(req.IsolationLevel, l, off)
				if err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				} else if found {
					sp.Offset, sp.Timestamp, sp.LeaderEpoch = off, t, leaderEpoch
				}
			default:
				sp.ErrorCode = kerr.InvalidRequest.Code
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// offsetsKnown answers whether this node may answer offsets derived from
// the high watermark of a partition it leads: a replicated log needs its
// leadership installed (NOT_LEADER_OR_FOLLOWER before: the client looks
// the leader up again) and a high watermark that reached the log end the
// leadership began with (OFFSET_NOT_AVAILABLE before, as Kafka's leader
// below its leader epoch's start offset): a leader restarted after a
// kill -9 starts from its log start and a new segment leader from the
// high watermark it learned as a follower, both below offsets already
// acknowledged.
func (b *Broker) offsetsKnown(topic string, p int32, l *storage.Log) int16 {
	if !l.Replicated() {
		return 0
	}
	lp := b.repl.Leader(b.tp(topic, p))
	switch {
	case lp == nil:
		return kerr.NotLeaderForPartition.Code
	case !lp.HighWatermarkKnown():
		return kerr.OffsetNotAvailable.Code
	}
	return 0
}

// committedBelow reports whether an offset found by timestamp may be
// answered: under read_committed only below the last stable offset, as
// Kafka's fetchOffsetForTimestamp.
func committedBelow(isolation int8, l *storage.Log, off int64) bool {
	return isolation != 1 || off < l.LastStableOffset()
}
