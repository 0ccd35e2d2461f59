package broker

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/storage"
)

func apiDeleteRecords() api {
	return api{key: kmsg.DeleteRecords, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleDeleteRecords(rc, rc.req.(*kmsg.DeleteRecordsRequest)), nil
	}}
}

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
				switch {
				case err == nil:
					sp.LowWatermark = low
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
