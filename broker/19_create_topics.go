package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func apiCreateTopics() api {
	return api{key: kmsg.CreateTopics, min: 2, max: 7, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleCreateTopics(rc, rc.req.(*kmsg.CreateTopicsRequest)), nil
	}}
}

func (b *Broker) handleCreateTopics(rc *request, req *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := kmsg.NewPtrCreateTopicsResponse()
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			st.ErrorMessage = kmsg.StringPtr(msg)
			resp.Topics = append(resp.Topics, st)
		}
		if seen[rt.Topic] > 1 {
			fail(kerr.InvalidRequest.Code, "topic named more than once in the request")
			continue
		}
		partitions := rt.NumPartitions
		if len(rt.ReplicaAssignment) > 0 {
			if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
				fail(kerr.InvalidRequest.Code, "replica assignment given with partition count or replication factor")
				continue
			}
			partitions = int32(len(rt.ReplicaAssignment))
			bad := false
			for _, a := range rt.ReplicaAssignment {
				if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
					bad = true
				}
			}
			if bad {
				fail(kerr.InvalidReplicaAssignment.Code, "replicas must name this single broker")
				continue
			}
		} else if rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 {
			fail(kerr.InvalidReplicationFactor.Code, "replication factor must be 1 (or -1) on a single broker")
			continue
		}
		configs := map[string]string{}
		for _, c := range rt.Configs {
			if c.Value == nil {
				continue
			}
			configs[c.Name] = *c.Value
		}
		if len(configs) == 0 {
			configs = nil
		}
		t, code, msg := b.createTopic(rc.ctx(), rt.Topic, partitions, configs, req.ValidateOnly)
		if code != 0 {
			fail(code, msg)
			continue
		}
		st.TopicID = t.ID
		st.NumPartitions = t.Partitions
		st.ReplicationFactor = 1
		for _, e := range b.describeTopicConfigs(t.Configs, nil, false, false) {
			c := kmsg.NewCreateTopicsResponseTopicConfig()
			c.Name = e.Name
			c.Value = e.Value
			c.ReadOnly = e.ReadOnly
			c.Source = int8(e.Source)
			c.IsSensitive = e.IsSensitive
			st.Configs = append(st.Configs, c)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
