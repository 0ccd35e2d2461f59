package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/share"
	"github.com/tuskdb/tusk/storage"
)

// Roll handover of share-partition state (docs/groups-next.md,
// "Durability and Tusk's moving leaders"). A planned roll moves a
// partition's leadership; the old leader, once its reconcile sees the
// roll, takes every share-partition of the partition it holds (locks
// included, share.Handover) under that share-partition's mutex, drops
// it, and sends them all in one message to the next leader (POST
// /v1/share-handover on the internal listener). The next leader, at its
// first use of a share-partition in the new epoch, waits for that message
// (shareHandoverWait at most) and starts from the handover: acquired
// records stay acquired by the same member until the same deadline, so
// the roll redelivers nothing. A group the message does not list had no
// state on the old leader, and one whose message does not come (the old
// leader died after the roll) is read from the share coordinator, as
// after a failover. The handover is consistent with the coordinator:
// every change was written there before it was answered.

const pathShareHandover = "/v1/share-handover"

// shareHandoverWait bounds how long a new leader waits for its
// predecessor's handover before reading the state from the coordinator.
const shareHandoverWait = 3 * time.Second

// shareHandoverMsg carries the share-partitions of one partition to the
// leader of Epoch.
type shareHandoverMsg struct {
	TopicID   [16]byte            `json:"topic_id"`
	Partition int32               `json:"partition"`
	Epoch     int32               `json:"epoch"`
	Parts     []shareHandoverPart `json:"parts"`
}

type shareHandoverPart struct {
	Group      string         `json:"group"`
	StateEpoch int32          `json:"state_epoch"`
	State      share.Handover `json:"state"`
}

// shareHandoverKey names the handovers of a partition to a leader epoch.
type shareHandoverKey struct {
	topicID   [16]byte
	partition int32
	epoch     int32
}

// handoverSet is one received message: every group the old leader held.
type handoverSet struct {
	parts map[string]shareHandoverPart
}

// expectHandover reports whether the leader of epoch (this node) took
// partition p of t over from another node by a planned roll: the segment
// before the active one was led elsewhere and sealed with its checksum
// (a failover seal has none).
func (h *shareHost) expectHandover(t metadata.Topic, p int32, epoch int32) bool {
	segs := t.Parts[p].Segments
	if len(segs) < 2 {
		return false
	}
	cur, prev := segs[len(segs)-1], segs[len(segs)-2]
	return cur.Epoch == epoch && prev.Epoch == epoch-1 && prev.Leader != h.b.cfg.NodeID && (prev.Checksum != 0 || prev.Bytes != 0)
}

// hasState reports whether the share coordinator has state for sp's key
// (or cannot tell): with none, no node ever served it, and no handover
// can come. sp.mu held.
func (h *shareHost) hasState(ctx context.Context, sp *sharePart) bool {
	resp := h.b.shareState(ctx, shareStateRequest{Op: shareOpSummary, Group: sp.key.group, TopicID: sp.key.topicID, Partition: sp.key.partition})
	return resp.Code != 0 || resp.Found
}

// takeOver starts sp at leader epoch epoch from its predecessor's
// handover when one is due, else from the share coordinator; sp.mu held.
func (h *shareHost) takeOver(ctx context.Context, sp *sharePart, t metadata.Topic, l *storage.Log, epoch int32) int16 {
	hk := shareHandoverKey{sp.key.topicID, sp.key.partition, epoch}
	stateChecked := false
	for {
		h.mu.Lock()
		set := h.handovers[hk]
		arrived := h.handoverCh
		first, waited := h.handoverSince[hk]
		if !waited {
			first = time.Now()
			h.handoverSince[hk] = first
		}
		var hp shareHandoverPart
		found := false
		if set != nil {
			hp, found = set.parts[sp.key.group]
			delete(set.parts, sp.key.group)
		}
		h.mu.Unlock()
		if found {
			p, err := share.FromHandover(h.b.shareConfig(sp.key.group), hp.State)
			if err == nil {
				sp.p, sp.epoch, sp.stateEpoch = p, epoch, hp.StateEpoch
				h.schedule(sp)
				return 0
			}
			h.b.log.Error().Err(err).Str("group", sp.key.group).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share: handover refused; reading the state from the coordinator")
		}
		if set != nil || !h.expectHandover(t, sp.key.partition, epoch) {
			break
		}
		if !stateChecked {
			// A key the coordinator has no state for was never served:
			// no handover will come for it.
			if !h.hasState(ctx, sp) {
				break
			}
			stateChecked = true
		}
		left := shareHandoverWait - time.Since(first)
		if left <= 0 {
			h.b.log.Warn().Str("group", sp.key.group).Str("topic", sp.topic).Int32("partition", sp.key.partition).Int32("epoch", epoch).Msg("share: no handover from the previous leader; reading the state from the coordinator")
			break
		}
		select {
		case <-arrived:
		case <-time.After(left):
		case <-ctx.Done():
			return kerr.CoordinatorNotAvailable.Code
		}
	}
	// No handover (now or later) for this epoch: one arriving late is
	// ignored (handleShareHandover), as what it holds may be older than
	// what this leader writes from now on.
	h.mu.Lock()
	if h.handovers[hk] == nil {
		h.handovers[hk] = &handoverSet{parts: map[string]shareHandoverPart{}}
	}
	h.mu.Unlock()
	return h.restore(ctx, sp, l, epoch)
}

// handOver drops this node's share-partitions of partition p of t, which
// it no longer leads, and when a planned roll from this node's segment
// gave it to another node, sends them (and handovers this node received
// for that segment and never used) to it. Called by reconcile, which must
// not wait for a share-partition's mutex (held across calls to the share
// coordinator, which may wait for reconcile): the work runs in the
// background, once per partition and epoch.
func (h *shareHost) handOver(t metadata.Topic, p int32) {
	segs := t.Parts[p].Segments
	if len(segs) == 0 {
		return
	}
	cur := segs[len(segs)-1]
	h.mu.Lock()
	var sps []*sharePart
	for k, sp := range h.parts {
		if k.topicID == [16]byte(t.ID) && k.partition == p {
			sps = append(sps, sp)
		}
	}
	prevKey := shareHandoverKey{[16]byte(t.ID), p, cur.Epoch - 1}
	pending := h.handovers[prevKey]
	curKey := shareHandoverKey{[16]byte(t.ID), p, cur.Epoch}
	if (len(sps) == 0 && pending == nil) || h.handedOver[curKey] {
		h.mu.Unlock()
		return
	}
	h.handedOver[curKey] = true
	delete(h.handovers, prevKey)
	delete(h.handoverSince, prevKey)
	h.mu.Unlock()
	go h.handOverNow(t, p, sps, pending)
}

// handOverNow is handOver's work for the chain segs of partition p.
func (h *shareHost) handOverNow(t metadata.Topic, p int32, sps []*sharePart, pending *handoverSet) {
	segs := t.Parts[p].Segments
	cur := segs[len(segs)-1]
	send := len(segs) >= 2 && cur.State == metadata.SegmentActive && cur.Leader != h.b.cfg.NodeID &&
		segs[len(segs)-2].Leader == h.b.cfg.NodeID && segs[len(segs)-2].Epoch == cur.Epoch-1
	msg := shareHandoverMsg{TopicID: [16]byte(t.ID), Partition: p, Epoch: cur.Epoch}
	// current: the state of epoch from is still current at the end of
	// the previous segment (this node led every segment in between).
	current := func(from int32) bool {
		for _, s := range segs[:len(segs)-1] {
			if s.Epoch > from && s.Leader != h.b.cfg.NodeID {
				return false
			}
		}
		return true
	}
	held := map[string]bool{}
	for _, sp := range sps {
		sp.mu.Lock()
		sp.minEpoch = max(sp.minEpoch, cur.Epoch)
		// A state made at cur's epoch or later is this node's again
		// (it leads once more): not this handover's.
		if sp.p != nil && sp.epoch < cur.Epoch {
			if send && current(sp.epoch) {
				msg.Parts = append(msg.Parts, shareHandoverPart{Group: sp.key.group, StateEpoch: sp.stateEpoch, State: sp.p.Handover()})
				held[sp.key.group] = true
			}
			sp.p = nil
			if sp.timer != nil {
				sp.timer.Stop()
			}
		}
		sp.mu.Unlock()
	}
	if !send {
		return
	}
	if pending != nil {
		for g, hp := range pending.parts {
			if !held[g] {
				msg.Parts = append(msg.Parts, hp)
			}
		}
	}
	h.sendHandover(cur.Leader, msg)
}

// sendHandover delivers msg to node to, retrying for shareHandoverWait
// (the receiver stops waiting for it then).
func (h *shareHost) sendHandover(to int32, msg shareHandoverMsg) {
	ctx, cancel := context.WithTimeout(h.b.bgCtx, shareHandoverWait)
	defer cancel()
	for attempt := 0; ; attempt++ {
		br, ok := h.b.store.FSM().Broker(to)
		var err error
		if ok && br.Internal != "" {
			if err = h.b.internalClient.Call(ctx, br.Internal, http.MethodPost, pathShareHandover, msg, nil); err == nil {
				h.b.log.Debug().Int32("to", to).Int32("partition", msg.Partition).Int32("epoch", msg.Epoch).Int("groups", len(msg.Parts)).Msg("share: handed over")
				return
			}
		}
		select {
		case <-ctx.Done():
			h.b.log.Warn().Err(err).Int32("to", to).Int32("partition", msg.Partition).Int32("epoch", msg.Epoch).Msg("share: handover not delivered; the next leader reads the state from the coordinator")
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// handleShareHandover is POST /v1/share-handover.
func (h *shareHost) handleShareHandover(ctx context.Context, body []byte) (any, error) {
	var msg shareHandoverMsg
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, fmt.Errorf("%w: share-handover: %v", metadata.ErrInvalidCommand, err)
	}
	set := &handoverSet{parts: map[string]shareHandoverPart{}}
	for _, p := range msg.Parts {
		set.parts[p.Group] = p
	}
	hk := shareHandoverKey{msg.TopicID, msg.Partition, msg.Epoch}
	h.mu.Lock()
	if h.handovers[hk] != nil {
		// Given up on already (takeOver): this leader went on from the
		// coordinator's state.
		h.mu.Unlock()
		return struct{}{}, nil
	}
	h.handovers[hk] = set
	close(h.handoverCh)
	h.handoverCh = make(chan struct{})
	h.mu.Unlock()
	return struct{}{}, nil
}

// shareHandoverRoutes mounts POST /v1/share-handover and
// /v1/share-ack.
func (b *Broker) shareHandoverRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathShareHandover, rpc.Handler(b.share.handleShareHandover))
	mux.HandleFunc("POST "+pathShareAck, rpc.Handler(b.handleShareAckForward))
}

// pathShareAck takes acknowledgements a client sent to the partition's
// previous leader (forwardShareAck).
const pathShareAck = "/v1/share-ack"

// shareAckForward is the body of POST /v1/share-ack: one partition's
// acknowledgements, checked (ACLs) by the node that forwards them.
type shareAckForward struct {
	Group     string           `json:"group"`
	Member    string           `json:"member"`
	TopicID   [16]byte         `json:"topic_id"`
	Partition int32            `json:"partition"`
	Batches   []share.AckBatch `json:"batches"`
	Renew     bool             `json:"renew"`
}

// shareAckAnswer is its answer: the partition's acknowledge error code.
type shareAckAnswer struct {
	Code int16 `json:"code"`
}

// forwardShareAck applies acknowledgements on node leader, which leads
// the partition now; false when it cannot be reached in time.
func (b *Broker) forwardShareAck(ctx context.Context, leader int32, req shareAckForward) (int16, bool) {
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var ans shareAckAnswer
	if err := b.internalClient.Call(ctx, br.Internal, http.MethodPost, pathShareAck, req, &ans); err != nil {
		b.log.Debug().Err(err).Int32("leader", leader).Msg("share: forward acknowledgements")
		return 0, false
	}
	return ans.Code, true
}

// handleShareAckForward is POST /v1/share-ack: it applies the
// acknowledgements here, never forwarding them again, once this node's
// metadata shows it leading (up to shareHandoverWait).
func (b *Broker) handleShareAckForward(ctx context.Context, body []byte) (any, error) {
	var req shareAckForward
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: share-ack: %v", metadata.ErrInvalidCommand, err)
	}
	// The forwarding node saw the roll first: wait (a little) for this
	// node's metadata to show it leading.
	deadline := time.NewTimer(shareHandoverWait)
	defer deadline.Stop()
	for {
		changed := b.store.FSM().Changed()
		code, _, _ := b.shareAcknowledge(ctx, nil, req.Group, req.Member, req.TopicID, req.Partition, req.Batches, req.Renew)
		if code != kerr.NotLeaderForPartition.Code {
			return shareAckAnswer{Code: code}, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return shareAckAnswer{Code: code}, nil
		case <-ctx.Done():
			return shareAckAnswer{Code: code}, nil
		}
	}
}
