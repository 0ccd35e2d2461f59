package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator 0-4. A single node coordinates every group; it is
// advertised from v0 because librdkafka 2.0.2 enables LZ4 only when it sees
// FindCoordinator v0 (DESIGN.md). Transaction coordinators are not offered.
func apiFindCoordinator() api {
	return api{key: kmsg.FindCoordinator, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleFindCoordinator(rc.req.(*kmsg.FindCoordinatorRequest)), nil
	}}
}

func (b *Broker) handleFindCoordinator(req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	answer := func(key string) (int16, *string) {
		switch {
		case req.CoordinatorType != 0:
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("transactions are not supported")
		case key == "":
			return kerr.InvalidRequest.Code, kmsg.StringPtr("empty coordinator key")
		}
		return 0, nil
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.ErrorCode, c.ErrorMessage = answer(key)
			c.NodeID, c.Host, c.Port = b.cfg.NodeID, b.advertise.host, b.advertise.port
			if c.ErrorCode != 0 {
				c.NodeID, c.Host, c.Port = -1, "", -1
			}
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
	resp.NodeID, resp.Host, resp.Port = b.cfg.NodeID, b.advertise.host, b.advertise.port
	if resp.ErrorCode != 0 {
		resp.NodeID, resp.Host, resp.Port = -1, "", -1
	}
	return resp
}
