package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func apiDescribeCluster() api {
	return api{key: kmsg.DescribeCluster, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		resp := kmsg.NewPtrDescribeClusterResponse()
		resp.ClusterID = b.store.FSM().ClusterID()
		resp.ControllerID = b.cfg.NodeID
		resp.EndpointType = 1 // brokers
		br := kmsg.NewDescribeClusterResponseBroker()
		br.NodeID, br.Host, br.Port = b.cfg.NodeID, b.advertise.host, b.advertise.port
		resp.Brokers = append(resp.Brokers, br)
		return resp, nil
	}}
}
