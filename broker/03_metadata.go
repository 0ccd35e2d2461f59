package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

func apiMetadata() api {
	return api{key: kmsg.Metadata, min: 0, max: 12, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleMetadata(rc, rc.req.(*kmsg.MetadataRequest)), nil
	}}
}

// controllerForClients is the controller named to clients in Metadata and
// DescribeCluster: this node, as a KRaft broker names itself. Every node
// forwards admin requests (CreateTopics, DeleteTopics, CreatePartitions,
// AlterConfigs, IncrementalAlterConfigs) to the Raft leader and retries
// them through elections, so the node answering is always a live target;
// naming the Raft leader instead sent clients that cache it (librdkafka
// until its next metadata refresh, 5 minutes by default) to a dead node
// after a controller failure.
func (b *Broker) controllerForClients() int32 { return b.cfg.NodeID }

func (b *Broker) handleMetadata(rc *request, req *kmsg.MetadataRequest) kmsg.Response {
	resp := kmsg.NewPtrMetadataResponse()
	v := req.Version
	alive := b.aliveBrokers()
	for _, mb := range b.store.FSM().Brokers() {
		if _, ok := alive[mb.ID]; !ok {
			continue
		}
		br := kmsg.NewMetadataResponseBroker()
		br.NodeID = mb.ID
		var ok bool
		if br.Host, br.Port, ok = b.endpoint(mb, rc.conn); !ok {
			continue // no listener of the client's name (docs/security.md)
		}
		if mb.Rack != "" {
			br.Rack = kmsg.StringPtr(mb.Rack)
		}
		resp.Brokers = append(resp.Brokers, br)
	}
	clusterID := b.store.FSM().ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = b.controllerForClients()

	// v0 lists all topics for an empty list; v1+ for a null list.
	all := req.Topics == nil || (v == 0 && len(req.Topics) == 0)
	// Metadata v0-3 have no AllowAutoTopicCreation field and count as allowing it.
	autoCreate := b.cfg.Topic.AutoCreate && (v < 4 || req.AllowAutoTopicCreation)

	var topics []metadata.Topic
	var missing []kmsg.MetadataResponseTopic
	if all {
		// Topics the principal may not describe are left out.
		for _, t := range b.store.FSM().Topics() {
			if rc.allowed(auth.OpDescribe, auth.ResourceTopic, t.Name) {
				topics = append(topics, t)
			}
		}
	} else {
		for _, rt := range req.Topics {
			var t metadata.Topic
			var ok bool
			switch {
			case rt.Topic != nil:
				if code := rc.topicDenied(auth.OpDescribe, *rt.Topic); code != 0 {
					// Whether the topic exists is not disclosed.
					mt := kmsg.NewMetadataResponseTopic()
					mt.Topic = kmsg.StringPtr(*rt.Topic)
					mt.ErrorCode = code
					missing = append(missing, mt)
					continue
				}
				t, ok = b.store.FSM().Topic(*rt.Topic)
			case rt.TopicID != [16]byte{}:
				t, ok = b.store.FSM().TopicByID(metadata.TopicID(rt.TopicID))
				if !ok {
					mt := kmsg.NewMetadataResponseTopic()
					mt.TopicID = rt.TopicID
					mt.ErrorCode = kerr.UnknownTopicID.Code
					missing = append(missing, mt)
					continue
				}
				if code := rc.topicDenied(auth.OpDescribe, t.Name); code != 0 {
					// Topic IDs are not secret; the name is.
					mt := kmsg.NewMetadataResponseTopic()
					mt.TopicID = rt.TopicID
					mt.ErrorCode = code
					missing = append(missing, mt)
					continue
				}
			default:
				mt := kmsg.NewMetadataResponseTopic()
				mt.ErrorCode = kerr.InvalidTopicException.Code
				missing = append(missing, mt)
				continue
			}
			if !ok {
				name := *rt.Topic
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic = kmsg.StringPtr(name)
				if err := validTopicName(name); err != nil {
					mt.ErrorCode = kerr.InvalidTopicException.Code
					missing = append(missing, mt)
					continue
				}
				if !autoCreate {
					mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
					missing = append(missing, mt)
					continue
				}
				if !rc.allowedCluster(auth.OpCreate) && !rc.allowed(auth.OpCreate, auth.ResourceTopic, name) {
					mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
					missing = append(missing, mt)
					continue
				}
				created, code, _ := b.createTopic(rc.ctx(), name, -1, b.defaultRF(), nil, nil, false)
				switch code {
				case 0:
					t = created
				case kerr.TopicAlreadyExists.Code: // raced with another creator
					t, ok = b.store.FSM().Topic(name)
					if !ok {
						mt.ErrorCode = kerr.LeaderNotAvailable.Code
						missing = append(missing, mt)
						continue
					}
				default:
					mt.ErrorCode = code
					missing = append(missing, mt)
					continue
				}
			}
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = kmsg.StringPtr(t.Name)
		mt.TopicID = t.ID
		mt.IsInternal = t.Internal
		if req.IncludeTopicAuthorizedOperations {
			mt.AuthorizedOperations = rc.authorizedOps(auth.ResourceTopic, t.Name)
		}
		for p := int32(0); p < t.Partitions; p++ {
			seg := t.Parts[p].Active()
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = p
			mp.Leader = seg.Leader
			mp.LeaderEpoch = seg.Epoch
			mp.Replicas = seg.Replicas
			mp.ISR = []int32{}
			for _, r := range seg.Replicas {
				if _, ok := alive[r]; ok {
					mp.ISR = append(mp.ISR, r)
				} else {
					mp.OfflineReplicas = append(mp.OfflineReplicas, r)
				}
			}
			if _, ok := alive[seg.Leader]; !ok {
				mp.Leader = -1
				mp.ErrorCode = kerr.LeaderNotAvailable.Code
			}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	resp.Topics = append(resp.Topics, missing...)
	if req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = 0
		if rc.allowedCluster(auth.OpDescribe) {
			resp.AuthorizedOperations = rc.authorizedOps(auth.ResourceCluster, auth.ClusterName)
		}
	}
	return resp
}
