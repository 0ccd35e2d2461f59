package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// Kafka's ElectLeaders election types (KIP-460).
const (
	electPreferred = 0
	electUnclean   = 1
)

// ElectLeaders (KIP-183, KIP-460). A partition's preferred replica is the
// leader its first segment was placed on (the first replica of the
// topic's assignment; the metadata keeps every segment of the chain).
// PREFERRED answers ELECTION_NOT_NEEDED where that replica leads the
// active segment, and PREFERRED_LEADER_NOT_AVAILABLE where it is not a
// live replica of it. Where it is a live replica that does not lead, an
// ElectLeader command asks the leader to roll at once and hand the next
// segment to it (docs/replication.md, "Preferred leader elections"); the
// answer waits for that roll up to the request's timeout
// (REQUEST_TIMED_OUT after it; the election still happens at the next
// roll the leader can make).
//
// UNCLEAN is refused as Kafka refuses an election type it does not
// support (INVALID_REQUEST for the request and every partition): Tusk
// never needs one, since a failed leader's segment is fenced and sealed at
// the surviving replicas' smallest end and the next segment gets a leader
// from them (docs/architecture.md, "Rotation and failover").
//
// A null topic list means every partition, and the answer then leaves out
// the partitions that needed no election, as Kafka's does.
func apiElectLeaders() api {
	return api{key: kmsg.ElectLeaders, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ElectLeadersRequest)
		if code := rc.clusterDenied(auth.OpAlter); code != 0 { // ALTER on the cluster: every partition refused
			resp := kmsg.NewPtrElectLeadersResponse()
			resp.ErrorCode = code
			for _, rt := range req.Topics {
				out := kmsg.NewElectLeadersResponseTopic()
				out.Topic = rt.Topic
				for _, p := range rt.Partitions {
					r := kmsg.NewElectLeadersResponseTopicPartition()
					r.Partition, r.ErrorCode = p, code
					out.Partitions = append(out.Partitions, r)
				}
				resp.Topics = append(resp.Topics, out)
			}
			return resp, nil
		}
		return nil, func() kmsg.Response { return b.handleElectLeaders(rc, req) }
	}}
}

func (b *Broker) handleElectLeaders(rc *request, req *kmsg.ElectLeadersRequest) kmsg.Response {
	resp := kmsg.NewPtrElectLeadersResponse()
	fsm := b.store.FSM()
	all := req.Topics == nil
	topics := req.Topics
	if all {
		for _, t := range fsm.Topics() {
			rt := kmsg.NewElectLeadersRequestTopic()
			rt.Topic = t.Name
			for p := int32(0); p < t.Partitions; p++ {
				rt.Partitions = append(rt.Partitions, p)
			}
			topics = append(topics, rt)
		}
	}
	var refused string
	if req.Version >= 1 && req.ElectionType != electPreferred {
		refused = fmt.Sprintf("election type %d is not supported: only preferred (0) elections are", req.ElectionType)
		if req.ElectionType == electUnclean {
			refused = "unclean leader election is not supported: a failed leader's segment is fenced and sealed at the surviving replicas' smallest end, and the next segment gets a leader from them"
		}
		resp.ErrorCode = kerr.InvalidRequest.Code
	}
	alive := map[int32]bool{}
	for _, br := range fsm.Brokers() {
		alive[br.ID] = br.State == metadata.BrokerAlive
	}
	for _, rt := range topics {
		t, ok := fsm.Topic(rt.Topic)
		out := kmsg.NewElectLeadersResponseTopic()
		out.Topic = rt.Topic
		for _, p := range rt.Partitions {
			r := kmsg.NewElectLeadersResponseTopicPartition()
			r.Partition = p
			var msg string
			switch {
			case refused != "":
				r.ErrorCode, msg = kerr.InvalidRequest.Code, refused
			case !ok || p < 0 || p >= t.Partitions:
				r.ErrorCode, msg = kerr.UnknownTopicOrPartition.Code, fmt.Sprintf("partition %s/%d does not exist", rt.Topic, p)
			default:
				r.ErrorCode, msg = b.electPreferredLeader(rc, t, p, alive, time.Duration(req.TimeoutMillis)*time.Millisecond)
			}
			if all && r.ErrorCode == kerr.ElectionNotNeeded.Code {
				continue
			}
			if r.ErrorCode != 0 {
				r.ErrorMessage = kmsg.StringPtr(msg)
			}
			out.Partitions = append(out.Partitions, r)
		}
		if len(out.Partitions) > 0 || !all {
			resp.Topics = append(resp.Topics, out)
		}
	}
	return resp
}

// electPreferredLeader answers a preferred election for partition p of t
// (see apiElectLeaders), waiting up to timeout for the leadership to move.
func (b *Broker) electPreferredLeader(rc *request, t metadata.Topic, p int32, alive map[int32]bool, timeout time.Duration) (int16, string) {
	part := t.Parts[p]
	if len(part.Segments) == 0 {
		return kerr.LeaderNotAvailable.Code, fmt.Sprintf("partition %s/%d has no segment yet", t.Name, p)
	}
	preferred := part.Segments[0].Leader
	active := part.Active()
	switch {
	case active.Leader == preferred && alive[preferred]:
		return kerr.ElectionNotNeeded.Code, fmt.Sprintf("preferred replica %d already leads %s/%d", preferred, t.Name, p)
	case !alive[preferred]:
		return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("preferred replica %d of %s/%d is not alive", preferred, t.Name, p)
	case !slices.Contains(active.Replicas, preferred):
		return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("preferred replica %d is not a replica of %s/%d's active segment (replicas %v)", preferred, t.Name, p, active.Replicas)
	}
	cmd := metadata.ElectLeader{Topic: t.Name, ID: t.ID, Partition: p, ExpectedSegment: active.ID, ExpectedEpoch: active.Epoch, Leader: preferred}
	if err := b.store.Apply(rc.ctx(), cmd); err != nil {
		if errors.Is(err, metadata.ErrPreconditionFailed) {
			return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("%s/%d changed while electing: %v", t.Name, p, err)
		}
		return applyErrorCode(err), err.Error()
	}
	if timeout <= 0 || timeout > time.Minute {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(rc.ctx(), timeout)
	defer cancel()
	for {
		changed := b.store.FSM().Changed()
		if cur, ok := b.store.FSM().Topic(t.Name); ok && cur.ID == t.ID && int(p) < len(cur.Parts) {
			a := cur.Parts[p].Active()
			switch {
			case a.Leader == preferred && a.State == metadata.SegmentActive:
				return 0, ""
			case cur.Parts[p].Elect == nil && a.ID != active.ID:
				return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("%s/%d rolled to node %d: preferred replica %d was not a healthy replica", t.Name, p, a.Leader, preferred)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return kerr.RequestTimedOut.Code, fmt.Sprintf("%s/%d: leadership did not move to %d within %v; it moves at the leader's next roll", t.Name, p, preferred, timeout)
		}
	}
}
