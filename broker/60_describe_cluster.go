package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

func apiDescribeCluster() api {
	return api{key: kmsg.DescribeCluster, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		resp := kmsg.NewPtrDescribeClusterResponse()
		resp.ClusterID = b.store.FSM().ClusterID()
		resp.ControllerID = b.controllerForClients() // see handleMetadata
		resp.EndpointType = 1                        // brokers
		// Kafka checks nothing here but the authorized operations, when
		// asked: those on the cluster if it may describe it, else none.
		if req := rc.req.(*kmsg.DescribeClusterRequest); req.IncludeClusterAuthorizedOperations {
			resp.ClusterAuthorizedOperations = 0
			if rc.allowedCluster(auth.OpDescribe) {
				resp.ClusterAuthorizedOperations = rc.authorizedOps(auth.ResourceCluster, auth.ClusterName)
			}
		}
		for _, mb := range b.store.FSM().Brokers() {
			if mb.State != metadata.BrokerAlive {
				continue
			}
			br := kmsg.NewDescribeClusterResponseBroker()
			br.NodeID = mb.ID
			var ok bool
			if br.Host, br.Port, ok = b.endpoint(mb, rc.conn); !ok {
				continue // no listener of the client's name
			}
			if mb.Rack != "" {
				br.Rack = kmsg.StringPtr(mb.Rack)
			}
			resp.Brokers = append(resp.Brokers, br)
		}
		return resp, nil
	}}
}
