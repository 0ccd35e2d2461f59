package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// FindCoordinator 0-4. A group's coordinator is the leader of its
// __consumer_offsets partition. It is
// advertised from v0 because librdkafka 2.0.2 enables LZ4 only when it sees
// FindCoordinator v0 (docs/architecture.md, "Kafka compatibility"). Transaction coordinators are not offered.
func apiFindCoordinator() api {
	return api{key: kmsg.FindCoordinator, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleFindCoordinator(rc, rc.req.(*kmsg.FindCoordinatorRequest)), nil
	}}
}

func (b *Broker) handleFindCoordinator(rc *request, req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	// answer finds the node leading the group's __consumer_offsets
	// partition, creating the topic on first use.
	answer := func(key string) (code int16, msg *string, node int32, host string, port int32) {
		switch {
		case req.CoordinatorType != 0:
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("transactions are not supported"), -1, "", -1
		case key == "":
			return kerr.InvalidRequest.Code, kmsg.StringPtr("empty coordinator key"), -1, "", -1
		}
		t, err := b.ensureOffsetsTopic(rc.ctx())
		if err != nil {
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr(err.Error()), -1, "", -1
		}
		leader, _ := t.Leader(groupPartition(key, t.Partitions))
		br, ok := b.store.FSM().Broker(leader)
		if !ok || br.State != metadata.BrokerAlive {
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("the group's coordinator is not available"), -1, "", -1
		}
		host, port = hostPort(br.Kafka)
		return 0, nil, leader, host, port
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.ErrorCode, c.ErrorMessage, c.NodeID, c.Host, c.Port = answer(key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = answer(req.CoordinatorKey)
	return resp
}
