package broker

import (
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

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
// live replica of it. Where it is a live replica that does not lead,
// leadership could move only by a roll that hands the next segment to a
// chosen node, which package replica does not offer (its rolls keep the
// leader or let the controller choose by load): such partitions get
// PREFERRED_LEADER_NOT_AVAILABLE too, with a message saying why.
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
		return b.handleElectLeaders(rc.req.(*kmsg.ElectLeadersRequest)), nil
	}}
}

func (b *Broker) handleElectLeaders(req *kmsg.ElectLeadersRequest) kmsg.Response {
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
				r.ErrorCode, msg = electPreferredLeader(t, p, alive)
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
// (see apiElectLeaders).
func electPreferredLeader(t metadata.Topic, p int32, alive map[int32]bool) (int16, string) {
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
	default:
		return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("preferred replica %d of %s/%d is a live replica, but leadership moves only at a roll and a roll to a chosen leader is not supported yet; node %d leads the active segment (epoch %d)", preferred, t.Name, p, active.Leader, active.Epoch)
	}
}
