package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/metadata"
)

// The internal listener carries node-to-node calls and cluster admin as
// HTTP/1.1 + JSON; package rpc holds the protocol (paths, bodies, error
// kinds) and the client. Handlers that only the controller can serve
// answer 421 (misdirected) with kind "not_leader" elsewhere; the caller
// retries against the current controller.

func (b *Broker) internalMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+rpc.PathApply, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		if err := controllerOwn(body); err != nil {
			return nil, err
		}
		index, err := b.store.ApplyLocal(ctx, body) // validates the command (metadata.Validate)
		return rpc.IndexResponse{Index: index}, err
	}))
	mux.HandleFunc("POST "+rpc.PathHeartbeat, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var hb metadata.Heartbeat
		if err := json.Unmarshal(body, &hb); err != nil {
			return nil, fmt.Errorf("%w: heartbeat: %v", metadata.ErrInvalidCommand, err)
		}
		if err := b.checkPeer(ctx, "heartbeat", hb.ID); err != nil {
			return nil, err
		}
		return b.store.Heartbeat(ctx, hb)
	}))
	b.shareStateRoutes(mux) // share_coordinator.go
	b.shareLagRoutes(mux)   // share_lag.go
	mux.HandleFunc("POST "+rpc.PathApplied, rpc.Handler(func(ctx context.Context, _ []byte) (any, error) {
		if !b.store.IsLeader() {
			return nil, metadata.ErrNotLeader
		}
		return rpc.IndexResponse{Index: b.store.FSM().AppliedIndex()}, nil
	}))
	mux.HandleFunc("POST "+rpc.PathReplicaLEO, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req rpc.ReplicaLEORequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: replica-leo: %v", metadata.ErrInvalidCommand, err)
		}
		answers, err := b.localReplicaLEOs(ctx, req.FenceIndex, []metadata.LEOProbe{{Topic: req.Topic, Partition: req.Partition, Segment: req.Segment, Epoch: req.Epoch}})
		if err != nil {
			return nil, err
		}
		return rpc.ReplicaLEOResponse{LEO: answers[0].LEO}, answers[0].Err
	}))
	mux.HandleFunc("POST "+rpc.PathReplicaLEOs, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req rpc.ReplicaLEOsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: replica-leos: %v", metadata.ErrInvalidCommand, err)
		}
		probes := make([]metadata.LEOProbe, len(req.Partitions))
		for i, p := range req.Partitions {
			probes[i] = metadata.LEOProbe{Topic: p.Topic, Partition: p.Partition, Segment: p.Segment, Epoch: p.Epoch}
		}
		answers, err := b.localReplicaLEOs(ctx, req.FenceIndex, probes)
		if err != nil {
			return nil, err
		}
		out := rpc.ReplicaLEOsResponse{Partitions: make([]rpc.ReplicaLEOAnswer, len(answers))}
		for i, a := range answers {
			out.Partitions[i].LEO = a.LEO
			if a.Err != nil {
				out.Partitions[i].Error = a.Err.Error()
			}
		}
		return out, nil
	}))
	mux.HandleFunc("POST "+rpc.PathLogChecksum, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req rpc.LogChecksumRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: log-checksum: %v", metadata.ErrInvalidCommand, err)
		}
		l, ok := b.engine.Log(b.tp(req.Topic, req.Partition))
		if !ok {
			return nil, fmt.Errorf("%w: no local log of %s-%d", metadata.ErrUnknownTopic, req.Topic, req.Partition)
		}
		start := l.LogStartOffset()
		crc, n, err := l.SegmentChecksum(start, req.End)
		if err != nil {
			return nil, err
		}
		return rpc.LogChecksumResponse{Start: start, End: req.End, CRC32C: int64(crc), Bytes: n, LEO: l.LogEndOffset(), HW: l.HighWatermark()}, nil
	}))
	mux.HandleFunc("GET "+rpc.PathStatus, rpc.Handler(func(ctx context.Context, _ []byte) (any, error) {
		return b.clusterStatus()
	}))
	mux.HandleFunc("GET "+rpc.PathDump, rpc.Handler(func(ctx context.Context, _ []byte) (any, error) {
		return json.RawMessage(b.store.FSM().Dump()), nil
	}))
	mux.HandleFunc("POST "+rpc.PathSnapshot, rpc.Handler(func(ctx context.Context, _ []byte) (any, error) {
		return rpc.OKResponse{OK: true}, b.store.Snapshot()
	}))
	mux.HandleFunc("POST "+rpc.PathAddNode, forwardedCall(rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req rpc.AddNodeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: add-node: %v", metadata.ErrInvalidCommand, err)
		}
		// With node TLS a node is added with its own certificate (`tusk
		// cluster add-node` run with it); the node that received the
		// call checked that before forwarding it to the controller.
		if !forwarded(ctx) {
			if err := b.checkPeer(ctx, "add-node", req.ID); err != nil {
				return nil, err
			}
		}
		return b.onController(ctx, rpc.PathAddNode, body, func() (any, error) {
			return rpc.OKResponse{OK: true}, b.store.AddNode(req.ID, req.Raft)
		})
	})))
	mux.HandleFunc("POST "+rpc.PathRemoveNode, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req rpc.RemoveNodeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: remove-node: %v", metadata.ErrInvalidCommand, err)
		}
		return b.onController(ctx, rpc.PathRemoveNode, body, func() (any, error) {
			return rpc.OKResponse{OK: true}, b.store.RemoveNode(ctx, req.ID)
		})
	}))
	b.consoleInternal(mux)
	return mux
}

// onController runs local on the controller, or forwards the same call to
// it, retrying through elections until ctx ends.
func (b *Broker) onController(ctx context.Context, path string, body []byte, local func() (any, error)) (any, error) {
	for {
		var out any
		var err error
		if b.store.IsLeader() {
			out, err = local()
		} else if addr, aerr := b.controllerAddr(); aerr != nil {
			err = aerr
		} else {
			var raw json.RawMessage
			err = b.call(ctx, addr, path+"?"+forwardedQuery, body, &raw)
			out = raw
		}
		if err == nil || !(errors.Is(err, metadata.ErrNotLeader) || errors.Is(err, metadata.ErrUnreachable)) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("broker: %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// controllerAddr is the controller's internal address.
func (b *Broker) controllerAddr() (string, error) {
	leader := b.store.Leader()
	if leader < 0 {
		return "", fmt.Errorf("%w: no controller elected", metadata.ErrNotLeader)
	}
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return "", fmt.Errorf("%w: controller %d has no registered internal address", metadata.ErrUnreachable, leader)
	}
	return br.Internal, nil
}

// call POSTs body (nil: none) to path on another node's internal
// listener and decodes the answer into out; errors as rpc.Client.Call.
func (b *Broker) call(ctx context.Context, addr, path string, body []byte, out any) error {
	var in any
	if body != nil {
		in = json.RawMessage(body)
	}
	return b.internalClient.Call(ctx, addr, http.MethodPost, path, in, out)
}

// syncWithController waits until the local metadata has applied everything
// the controller had applied when asked, so a topic created or changed
// through another node a moment ago is visible here (read-your-writes for
// admin requests). On the controller itself it returns at once.
func (b *Broker) syncWithController(ctx context.Context) error {
	if b.store.IsLeader() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addr, err := b.controllerAddr()
	if err != nil {
		return err
	}
	var out rpc.IndexResponse
	if err := b.call(ctx, addr, rpc.PathApplied, nil, &out); err != nil {
		return err
	}
	return b.store.FSM().WaitApplied(ctx, out.Index)
}

// createInternalTopic creates an internal topic (cmd) unless it exists
// and returns it as this node's metadata holds it, after reconcile (the
// caller's way of opening its logs here) has run. When another node
// created it first, Apply answers ErrTopicExists without this node having
// applied that creation (the controller refused the command before it
// reached the Raft log), so the topic is then looked up after
// syncWithController: a lookup at once could miss it, which
// __share_group_state's first users saw on 3 nodes ("vanished after
// creation").
func (b *Broker) createInternalTopic(ctx context.Context, cmd metadata.CreateTopic, reconcile func()) (metadata.Topic, error) {
	if err := b.store.Apply(ctx, cmd); err != nil && !errors.Is(err, metadata.ErrTopicExists) {
		return metadata.Topic{}, fmt.Errorf("broker: create %s: %w", cmd.Name, err)
	}
	reconcile()
	t, ok := b.topicSynced(ctx, cmd.Name)
	if !ok {
		return metadata.Topic{}, fmt.Errorf("broker: %s not in this node's metadata after its creation", cmd.Name)
	}
	return t, nil
}

// topicSynced looks a topic up locally and, if it is missing, once more
// after syncWithController.
func (b *Broker) topicSynced(ctx context.Context, name string) (metadata.Topic, bool) {
	if t, ok := b.store.FSM().Topic(name); ok {
		return t, true
	}
	if err := b.syncWithController(ctx); err != nil {
		b.log.Debug().Err(err).Msg("sync metadata with the controller")
	}
	return b.store.FSM().Topic(name)
}

// ForwardApply implements metadata.Forwarder.
func (b *Broker) ForwardApply(ctx context.Context, leader int32, cmd []byte) (uint64, error) {
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return 0, fmt.Errorf("%w: controller %d has no registered internal address", metadata.ErrUnreachable, leader)
	}
	var out rpc.IndexResponse
	if err := b.call(ctx, br.Internal, rpc.PathApply, cmd, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

func (b *Broker) clusterStatus() (rpc.Status, error) {
	members, err := b.store.Members()
	if err != nil {
		return rpc.Status{}, err
	}
	return rpc.Status{Node: b.cfg.NodeID, Leader: b.store.Leader(), Voters: members, Brokers: b.store.FSM().Brokers()}, nil
}

// forwardedQuery marks a call one node forwards to the controller on
// another's behalf (onController): the first node checked the caller.
const forwardedQuery = "forwarded=1"

type forwardedKey struct{}

// forwardedCall notes in the request's context whether it is forwarded.
func forwardedCall(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == forwardedQuery {
			r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, true))
		}
		h(w, r)
	}
}

func forwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
}

// controllerOwn refuses, on /v1/apply, the commands only the controller
// proposes itself and never forwards (registration and liveness): from
// another node they could re-register a broker at another address or
// fence it. Commands that do not decode are left to ApplyLocal, which
// refuses them as invalid.
func controllerOwn(body []byte) error {
	c, err := metadata.DecodeCommand(body)
	if err != nil {
		return nil
	}
	switch c.(type) {
	case metadata.RegisterBroker, *metadata.RegisterBroker, metadata.SetBrokerState, *metadata.SetBrokerState,
		metadata.UnregisterBroker, *metadata.UnregisterBroker:
		return fmt.Errorf("%w: apply: %T is proposed by the controller only", rpc.ErrForbidden, c)
	}
	return nil
}
