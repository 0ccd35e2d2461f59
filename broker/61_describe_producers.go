package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/fencing"
)

// DescribeProducers 0 (KIP-664): each partition's leader lists the
// producers in its log's producer state: id, epoch, last sequence, last
// timestamp, the coordinator epoch of the last transaction marker and
// the first offset of the open transaction (-1: none).
func apiDescribeProducers() api {
	return api{key: kmsg.DescribeProducers, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleDescribeProducers(rc, rc.req.(*kmsg.DescribeProducersRequest)), nil
	}}
}

func (b *Broker) handleDescribeProducers(rc *request, req *kmsg.DescribeProducersRequest) *kmsg.DescribeProducersResponse {
	resp := kmsg.NewPtrDescribeProducersResponse()
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		denied := rc.topicDenied(auth.OpRead, rt.Topic) // READ on the topic
		for _, p := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = p
			l, code := b.partitionLog(rt.Topic, p)
			if denied != 0 {
				code = denied
			}
			if code != 0 {
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, e := range l.Producers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch = e.ProducerID, int32(e.Epoch)
				ap.LastSequence = -1
				if n := len(e.Batches); n > 0 {
					ap.LastSequence = e.Batches[n-1].LastSeq
				}
				ap.LastTimestamp = e.LastTimestamp
				ap.CoordinatorEpoch = e.CoordinatorEpoch
				ap.CurrentTxnStartOffset = e.TxnFirstOffset
				if e.TxnFirstOffset < 0 {
					ap.CurrentTxnStartOffset = fencing.NoTxn
				}
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
