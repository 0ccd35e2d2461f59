package broker

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

func apiDeleteRecords() api {
	return api{key: kmsg.DeleteRecords, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DeleteRecordsRequest)
		return nil, func() kmsg.Response { return b.handleDeleteRecords(rc, req) }
	}}
}

// DeleteRecords answers a partition once every replica counted for its
// high watermark moved its log start there too (they follow the leader's
// at their next fetch), as Kafka's DelayedDeleteRecords waits for the
// replicas' low watermarks: otherwise a failover right after the answer
// could elect a replica that still holds the deleted records. The wait is
// bounded by the request's timeout (REQUEST_TIMED_OUT after it; the
// deletion is not undone and completes once the followers fetch).

func (b *Broker) handleDeleteRecords(rc *request, req *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := kmsg.NewPtrDeleteRecordsResponse()
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		denied := rc.topicDenied(auth.OpDelete, rt.Topic) // DELETE on the topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			var l *storage.Log
			code := denied
			if code == 0 {
				l, code = b.partitionLog(rt.Topic, rp.Partition)
			}
			if code == 0 {
				low, err := l.DeleteRecordsBefore(rp.Offset)
				if err == nil {
					err = b.waitReplicasLogStart(rc, req.TimeoutMillis, b.tp(rt.Topic, rp.Partition), low)
				}
				switch {
				case err == nil:
					sp.LowWatermark = low
				case errors.Is(err, context.DeadlineExceeded):
					code = kerr.RequestTimedOut.Code
				case errors.Is(err, replica.ErrDeposed):
					code = kerr.NotLeaderForPartition.Code
				case errors.Is(err, storage.ErrOffsetOutOfRange):
					code = kerr.OffsetOutOfRange.Code
				default:
					b.log.Error().Err(err).Str("topic", rt.Topic).Int32("partition", rp.Partition).Msg("delete records failed")
					code = kerr.KafkaStorageError.Code
				}
			}
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// waitReplicasLogStart waits, up to timeoutMs (30 s if not positive, at
// most a minute), for the followers of tp's active segment this node
// leads to report a log start at or above low. A partition without a
// leadership here (one replica) has nothing to wait for.
func (b *Broker) waitReplicasLogStart(rc *request, timeoutMs int32, tp storage.TopicPartition, low int64) error {
	lp := b.repl.Leader(tp)
	if lp == nil {
		return nil
	}
	d := time.Duration(timeoutMs) * time.Millisecond
	if d <= 0 || d > time.Minute {
		d = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(rc.ctx(), d)
	defer cancel()
	return lp.WaitLogStart(ctx, low)
}
