package broker

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
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
	resp.Topics = make([]kmsg.CreateTopicsResponseTopic, len(req.Topics))
	// CREATE on the cluster, or else on each topic.
	clusterCreate := rc.allowedCluster(auth.OpCreate)
	// Topics of one request are created concurrently, so Raft commits
	// them in batches.
	parallel(len(req.Topics), 64, func(i int) {
		rt := req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			st.ErrorMessage = kmsg.StringPtr(msg)
		}
		if seen[rt.Topic] > 1 {
			fail(kerr.InvalidRequest.Code, "topic named more than once in the request")
			return
		}
		if !clusterCreate && !rc.allowed(auth.OpCreate, auth.ResourceTopic, rt.Topic) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			return
		}
		partitions := rt.NumPartitions
		var assignments [][]int32
		if len(rt.ReplicaAssignment) > 0 {
			if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
				fail(kerr.InvalidRequest.Code, "replica assignment given with partition count or replication factor")
				return
			}
			partitions = int32(len(rt.ReplicaAssignment))
			for _, a := range rt.ReplicaAssignment {
				if len(a.Replicas) == 0 {
					fail(kerr.InvalidReplicaAssignment.Code, "a partition has no replicas")
					return
				}
				for _, r := range a.Replicas {
					if _, ok := b.store.FSM().Broker(r); !ok {
						fail(kerr.InvalidReplicaAssignment.Code, "replica assignment names an unknown broker")
						return
					}
				}
				assignments = append(assignments, a.Replicas)
			}
		}
		rf := rt.ReplicationFactor
		if rf == -1 {
			rf = b.defaultRF()
		}
		if len(assignments) == 0 && (rf < 1 || rf > 16) && rf != metadata.AutoReplicationFactor {
			fail(kerr.InvalidReplicationFactor.Code, "replication factor must be in [1, 16] (or -1 for topic.replication-factor)")
			return
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
		t, code, msg := b.createTopic(rc.ctx(), rt.Topic, partitions, rf, configs, assignments, req.ValidateOnly)
		if code != 0 {
			fail(code, msg)
			return
		}
		st.TopicID = t.ID
		st.NumPartitions = t.Partitions
		if len(t.Parts) > 0 {
			st.ReplicationFactor = int16(len(t.Parts[0].Active().Replicas))
		} else { // validate only
			st.ReplicationFactor = rf
		}
		if code := rc.topicDenied(auth.OpDescribeConfigs, t.Name); code != 0 {
			st.ConfigErrorCode = code // the configs are not shown
			return
		}
		for _, e := range b.describeTopicConfigs(t.Configs, nil, false, false) {
			c := kmsg.NewCreateTopicsResponseTopicConfig()
			c.Name = e.Name
			c.Value = e.Value
			c.ReadOnly = e.ReadOnly
			c.Source = int8(e.Source)
			c.IsSensitive = e.IsSensitive
			st.Configs = append(st.Configs, c)
		}
	})
	return resp
}

// parallel runs f(0..n-1) on at most limit goroutines and waits.
func parallel(n, limit int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
