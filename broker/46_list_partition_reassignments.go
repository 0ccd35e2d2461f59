package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// ListPartitionReassignments (KIP-455) lists the reassignments in
// progress: Replicas is the union of the current and the target replica
// sets, AddingReplicas the target nodes not yet replicas, RemovingReplicas
// the replicas not in the target, as Kafka reports them.
func apiListPartitionReassignments() api {
	return api{key: kmsg.ListPartitionReassignments, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		if code := rc.clusterDenied(auth.OpDescribe); code != 0 { // DESCRIBE on the cluster
			resp := kmsg.NewPtrListPartitionReassignmentsResponse()
			resp.ErrorCode = code
			return resp, nil
		}
		return b.handleListPartitionReassignments(rc.req.(*kmsg.ListPartitionReassignmentsRequest)), nil
	}}
}

func (b *Broker) handleListPartitionReassignments(req *kmsg.ListPartitionReassignmentsRequest) kmsg.Response {
	resp := kmsg.NewPtrListPartitionReassignmentsResponse()
	var want map[string][]int32 // nil: all
	if req.Topics != nil {
		want = map[string][]int32{}
		for _, t := range req.Topics {
			want[t.Topic] = append(want[t.Topic], t.Partitions...)
		}
	}
	byTopic := map[string]int{}
	for _, r := range b.store.FSM().Reassignments() {
		if want != nil {
			ps, ok := want[r.Topic]
			if !ok || !slices.Contains(ps, r.Partition) {
				continue
			}
		}
		i, ok := byTopic[r.Topic]
		if !ok {
			st := kmsg.NewListPartitionReassignmentsResponseTopic()
			st.Topic = r.Topic
			resp.Topics = append(resp.Topics, st)
			i = len(resp.Topics) - 1
			byTopic[r.Topic] = i
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, reassignmentState(r))
	}
	return resp
}

func reassignmentState(r metadata.Reassignment) kmsg.ListPartitionReassignmentsResponseTopicPartition {
	sp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
	sp.Partition = r.Partition
	cur := r.Segment.Replicas
	sp.Replicas = slices.Clone(r.Target)
	for _, id := range cur {
		if !slices.Contains(r.Target, id) {
			sp.Replicas = append(sp.Replicas, id)
			sp.RemovingReplicas = append(sp.RemovingReplicas, id)
		}
	}
	for _, id := range r.Target {
		if !slices.Contains(cur, id) {
			sp.AddingReplicas = append(sp.AddingReplicas, id)
		}
	}
	if sp.AddingReplicas == nil {
		sp.AddingReplicas = []int32{}
	}
	if sp.RemovingReplicas == nil {
		sp.RemovingReplicas = []int32{}
	}
	return sp
}
