package broker

import (
	"errors"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// AlterPartitionReassignments (KIP-455) starts, changes or cancels moving
// partitions to new replica sets (docs/replication.md, "Reassigning
// partitions"). A reassignment keeps the topic's replication factor.
func apiAlterPartitionReassignments() api {
	return api{key: kmsg.AlterPartitionAssignments, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.AlterPartitionAssignmentsRequest)
		if code := rc.clusterDenied(auth.OpAlter); code != 0 { // ALTER on the cluster
			resp := kmsg.NewPtrAlterPartitionAssignmentsResponse()
			resp.ErrorCode = code
			return resp, nil
		}
		return nil, func() kmsg.Response { return b.handleAlterPartitionReassignments(rc, req) }
	}}
}

func (b *Broker) handleAlterPartitionReassignments(rc *request, req *kmsg.AlterPartitionAssignmentsRequest) kmsg.Response {
	resp := kmsg.NewPtrAlterPartitionAssignmentsResponse()
	for _, rt := range req.Topics {
		st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		st.Topic = rt.Topic
		t, known := b.topicSynced(rc.ctx(), rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			sp.Partition = rp.Partition
			code, msg := b.reassign(rc, t, known, rp)
			sp.ErrorCode = code
			if msg != "" {
				sp.ErrorMessage = kmsg.StringPtr(msg)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) reassign(rc *request, t metadata.Topic, known bool, rp kmsg.AlterPartitionAssignmentsRequestTopicPartition) (int16, string) {
	if !known || rp.Partition < 0 || rp.Partition >= t.Partitions {
		return kerr.UnknownTopicOrPartition.Code, ""
	}
	if rp.Replicas != nil {
		if len(rp.Replicas) == 0 {
			return kerr.InvalidReplicaAssignment.Code, "empty replica list"
		}
		for i, id := range rp.Replicas {
			if slices.Contains(rp.Replicas[:i], id) {
				return kerr.InvalidReplicaAssignment.Code, "a broker is listed twice"
			}
			if _, ok := b.store.FSM().Broker(id); !ok {
				return kerr.InvalidReplicaAssignment.Code, "unknown broker in the replica list"
			}
		}
		if rf := t.ReplicationFactor(); len(rp.Replicas) != rf {
			return kerr.InvalidReplicationFactor.Code, "a reassignment keeps the topic's replication factor"
		}
	}
	err := b.store.Apply(rc.ctx(), metadata.ReassignPartition{Topic: t.Name, ID: t.ID, Partition: rp.Partition, Target: rp.Replicas})
	switch {
	case err == nil:
		return 0, ""
	case rp.Replicas == nil && errors.Is(err, metadata.ErrPreconditionFailed):
		// metadata.ErrNoReassignment (forwarded to the controller, only
		// the precondition kind survives).
		return kerr.NoReassignmentInProgress.Code, ""
	case errors.Is(err, metadata.ErrPreconditionFailed):
		return kerr.InvalidReplicaAssignment.Code, err.Error()
	case errors.Is(err, metadata.ErrInvalidCommand):
		return kerr.InvalidReplicaAssignment.Code, err.Error()
	}
	return applyErrorCode(err), err.Error()
}
