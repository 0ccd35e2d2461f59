package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/share"
)

// ShareAcknowledge 0-2 (KIP-932; v2: renew acknowledgements, KIP-1222):
// the acknowledgements of a share session's records, on the partition's
// active segment leader, answered once they are applied; epoch -1 closes
// the session after them and releases what the member still holds on its
// partitions here (share_sessions.go). Epoch 0 is INVALID_SHARE_SESSION_EPOCH:
// only ShareFetch opens a session.
func apiShareAcknowledge() api {
	return api{key: kmsg.ShareAcknowledge, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleShareAcknowledge(rc, rc.req.(*kmsg.ShareAcknowledgeRequest))
	}}
}

func (b *Broker) handleShareAcknowledge(rc *request, req *kmsg.ShareAcknowledgeRequest) (kmsg.Response, func() kmsg.Response) {
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	group := ""
	if req.GroupID != nil {
		group = *req.GroupID
	}
	resp.AcquisitionLockTimeoutMillis = int32(b.shareConfig(group).LockDuration / time.Millisecond)
	if code := rc.groupDenied(auth.OpRead, group); code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	member, ok := validShareMember(req.MemberID)
	if !ok || group == "" {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	h := b.share
	key := shareSessionKey{group, member}
	var closing map[shareTP]bool
	switch req.ShareSessionEpoch {
	case -1:
		var ok bool
		if closing, ok = h.sessions.remove(key); !ok {
			resp.ErrorCode = kerr.ShareSessionNotFound.Code
			return resp, nil
		}
	case 0:
		resp.ErrorCode = kerr.InvalidShareSessionEpoch.Code
		return resp, nil
	default:
		if _, code := h.sessions.next(key, rc.conn, req.ShareSessionEpoch, nil, nil); code != 0 {
			resp.ErrorCode = code
			return resp, nil
		}
	}
	renew := req.Version >= 2 && req.IsRenewAck
	leaders := map[int32]bool{}
	return nil, func() kmsg.Response {
		ctx := rc.ctx()
		for _, t := range req.Topics {
			rt := kmsg.NewShareAcknowledgeResponseTopic()
			rt.TopicID = t.TopicID
			for _, p := range t.Partitions {
				batches := make([]share.AckBatch, len(p.AcknowledgementBatches))
				for i, ab := range p.AcknowledgementBatches {
					batches[i] = share.AckBatch{First: ab.FirstOffset, Last: ab.LastOffset, Types: ackTypes(ab.AcknowledgeTypes)}
				}
				rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode, rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = b.shareAcknowledge(ctx, rc, group, member, t.TopicID, p.Partition, batches, renew)
				if rp.CurrentLeader.LeaderID >= 0 {
					leaders[rp.CurrentLeader.LeaderID] = true
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		if closing != nil {
			h.closeSession(key, closing)
		}
		for id := range leaders {
			br, ok := b.store.FSM().Broker(id)
			if !ok {
				continue
			}
			host, port, ok := b.clientEndpoint(br, rc)
			if !ok {
				continue
			}
			ne := kmsg.NewShareAcknowledgeResponseNodeEndpoint()
			ne.NodeID, ne.Host, ne.Port = id, host, port
			if br.Rack != "" {
				rack := br.Rack
				ne.Rack = &rack
			}
			resp.NodeEndpoints = append(resp.NodeEndpoints, ne)
		}
		return resp
	}
}
