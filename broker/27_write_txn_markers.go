package broker

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// WriteTxnMarkers 0-1: a transaction coordinator (another node, over the
// internal listener) has this node append COMMIT/ABORT markers to the
// partitions it leads. Each marker is appended under the partition's
// leadership and answered once the high watermark covers it (a marker
// counts as written only then); per-partition errors are Kafka's
// (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
// TRANSACTION_COORDINATOR_FENCED, ...). Only other nodes may send it: on
// a client connection every partition is answered
// CLUSTER_AUTHORIZATION_FAILED, as Kafka answers a client without
// ClusterAction.
func apiWriteTxnMarkers() api {
	return api{key: kmsg.WriteTxnMarkers, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.WriteTxnMarkersRequest)
		if !rc.conn.node {
			return writeTxnMarkersAnswer(req, func(int, string, int32) int16 { return kerr.ClusterAuthorizationFailed.Code }), nil
		}
		return nil, func() kmsg.Response {
			// A marker's wait for the high watermark ends when Close
			// begins (answered NOT_LEADER_OR_FOLLOWER): the followers it
			// waits for may be stopping too, and the coordinator retries
			// a marker not acknowledged.
			ctx, cancel := b.untilShutdown(rc.ctx())
			defer cancel()
			codes := make([]map[string]map[int32]int16, len(req.Markers))
			var mu sync.Mutex // guards codes
			var wg sync.WaitGroup
			for i, mk := range req.Markers {
				codes[i] = map[string]map[int32]int16{}
				for _, rt := range mk.Topics {
					codes[i][rt.Topic] = map[int32]int16{}
					for _, p := range rt.Partitions {
						wg.Add(1)
						go func() {
							defer wg.Done()
							code, msg := b.appendMarker(ctx, rt.Topic, p, mk.ProducerID, mk.ProducerEpoch, mk.CoordinatorEpoch, mk.Committed)
							if code != 0 && code != kerr.NotLeaderForPartition.Code {
								b.log.Warn().Str("topic", rt.Topic).Int32("partition", p).Int64("producer_id", mk.ProducerID).Int16("error", code).Str("msg", msg).Msg("write transaction marker")
							}
							mu.Lock()
							codes[i][rt.Topic][p] = code
							mu.Unlock()
						}()
					}
				}
			}
			wg.Wait()
			return writeTxnMarkersAnswer(req, func(i int, topic string, p int32) int16 { return codes[i][topic][p] })
		}
	}}
}

// writeTxnMarkersAnswer builds the response with code(marker index,
// topic, partition) for every partition of the request.
func writeTxnMarkersAnswer(req *kmsg.WriteTxnMarkersRequest, code func(int, string, int32) int16) *kmsg.WriteTxnMarkersResponse {
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	for i, mk := range req.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = mk.ProducerID
		for _, t := range mk.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				rp.ErrorCode = code(i, t.Topic, p)
				rt.Partitions = append(rt.Partitions, rp)
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	return resp
}
