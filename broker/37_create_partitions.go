package broker

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

func apiCreatePartitions() api {
	return api{key: kmsg.CreatePartitions, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleCreatePartitions(rc, rc.req.(*kmsg.CreatePartitionsRequest)), nil
	}}
}

func (b *Broker) handleCreatePartitions(rc *request, req *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := kmsg.NewPtrCreatePartitionsResponse()
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		code, msg := b.createPartitions(rc, rt, req.ValidateOnly)
		st.ErrorCode = code
		if msg != "" {
			st.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createPartitions(rc *request, rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) (int16, string) {
	if code := rc.topicDenied(auth.OpAlter, rt.Topic); code != 0 { // ALTER on the topic
		return code, ""
	}
	t, ok := b.topicSynced(rc.ctx(), rt.Topic)
	if !ok {
		return kerr.UnknownTopicOrPartition.Code, ""
	}
	if rt.Count <= t.Partitions {
		return kerr.InvalidPartitions.Code, fmt.Sprintf("topic has %d partitions; the new count %d must be larger", t.Partitions, rt.Count)
	}
	if rt.Count > 100000 {
		return kerr.InvalidPartitions.Code, "partition count above 100000"
	}
	if rt.Assignment != nil && len(rt.Assignment) != int(rt.Count-t.Partitions) {
		return kerr.InvalidReplicaAssignment.Code, "assignment does not match the number of new partitions"
	}
	if validateOnly {
		return 0, ""
	}
	cmd := metadata.CreatePartitions{Name: t.Name, ID: t.ID, Expected: t.Partitions, Count: rt.Count, ReplicationFactor: int16(t.ReplicationFactor())}
	for _, a := range rt.Assignment {
		cmd.Assignments = append(cmd.Assignments, a.Replicas)
	}
	err := b.store.Apply(rc.ctx(), cmd)
	if errors.Is(err, metadata.ErrPreconditionFailed) {
		return kerr.InvalidPartitions.Code, err.Error()
	}
	if err != nil {
		return applyErrorCode(err), err.Error()
	}
	b.reconcileTopic(t.Name) // opens the new partitions this node leads
	return 0, ""
}
