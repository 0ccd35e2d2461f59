package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tuskdb/tusk/metadata"
)

// The internal listener carries node-to-node calls and cluster admin as
// HTTP/1.1 + JSON (protocol in doc.go). Handlers that only the controller
// can serve answer 421 (misdirected) with kind "not_leader" elsewhere; the
// caller retries against the current controller.

// rpcError is the error body of every internal endpoint.
type rpcError struct {
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

// errorKinds maps metadata sentinels to wire kinds and back, so that a
// forwarded command fails with the same error as a local one.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"topic_exists", metadata.ErrTopicExists},
	{"topic_collision", metadata.ErrTopicCollision},
	{"unknown_topic", metadata.ErrUnknownTopic},
	{"precondition", metadata.ErrPreconditionFailed},
	{"invalid", metadata.ErrInvalidCommand},
	{"not_enough_brokers", metadata.ErrNotEnoughBrokers},
	{"not_leader", metadata.ErrNotLeader},
	{"not_member", metadata.ErrNotMember},
}

func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return "internal"
}

func errorFromRPC(e rpcError) error {
	for _, k := range errorKinds {
		if k.kind == e.Kind {
			return fmt.Errorf("%w (remote: %s)", k.err, e.Error)
		}
	}
	return errors.New(e.Error)
}

func (b *Broker) internalMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apply", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		index, err := b.store.ApplyLocal(ctx, body)
		return map[string]uint64{"index": index}, err
	}))
	mux.HandleFunc("POST /v1/heartbeat", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		var hb metadata.Heartbeat
		if err := json.Unmarshal(body, &hb); err != nil {
			return nil, fmt.Errorf("%w: heartbeat: %v", metadata.ErrInvalidCommand, err)
		}
		return b.store.Heartbeat(ctx, hb)
	}))
	mux.HandleFunc("POST /v1/applied", b.rpc(func(ctx context.Context, _ []byte) (any, error) {
		if !b.store.IsLeader() {
			return nil, metadata.ErrNotLeader
		}
		return map[string]uint64{"index": b.store.FSM().AppliedIndex()}, nil
	}))
	mux.HandleFunc("POST /v1/replica-leo", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		var req replicaLEORequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: replica-leo: %v", metadata.ErrInvalidCommand, err)
		}
		leo, err := b.localReplicaLEO(ctx, req.Topic, req.Partition, req.FenceIndex)
		return map[string]int64{"leo": leo}, err
	}))
	mux.HandleFunc("POST /v1/log-checksum", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		var req struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			End       int64  `json:"end"`
		}
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
		return map[string]int64{"start": start, "end": req.End, "crc32c": int64(crc), "bytes": n, "leo": l.LogEndOffset(), "hw": l.HighWatermark()}, nil
	}))
	mux.HandleFunc("GET /v1/status", b.rpc(func(ctx context.Context, _ []byte) (any, error) {
		return b.clusterStatus()
	}))
	mux.HandleFunc("GET /v1/dump", b.rpc(func(ctx context.Context, _ []byte) (any, error) {
		return json.RawMessage(b.store.FSM().Dump()), nil
	}))
	mux.HandleFunc("POST /v1/snapshot", b.rpc(func(ctx context.Context, _ []byte) (any, error) {
		return map[string]bool{"ok": true}, b.store.Snapshot()
	}))
	mux.HandleFunc("POST /v1/add-node", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		var req struct {
			ID   int32  `json:"id"`
			Raft string `json:"raft"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: add-node: %v", metadata.ErrInvalidCommand, err)
		}
		return b.onController(ctx, "/v1/add-node", body, func() (any, error) {
			return map[string]bool{"ok": true}, b.store.AddNode(req.ID, req.Raft)
		})
	}))
	mux.HandleFunc("POST /v1/remove-node", b.rpc(func(ctx context.Context, body []byte) (any, error) {
		var req struct {
			ID int32 `json:"id"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: remove-node: %v", metadata.ErrInvalidCommand, err)
		}
		return b.onController(ctx, "/v1/remove-node", body, func() (any, error) {
			return map[string]bool{"ok": true}, b.store.RemoveNode(ctx, req.ID)
		})
	}))
	return mux
}

// rpc adapts a JSON handler: body in, JSON result or rpcError out.
func (b *Broker) rpc(h func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		out, err := h(ctx, body)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			kind := errorKind(err)
			status := http.StatusConflict
			switch kind {
			case "not_leader":
				status = http.StatusMisdirectedRequest
			case "internal":
				status = http.StatusInternalServerError
			}
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(rpcError{Kind: kind, Error: err.Error()}) //nolint:errcheck // the client sees a short body
			return
		}
		json.NewEncoder(w).Encode(out) //nolint:errcheck // as above
	}
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
			err = b.call(ctx, addr, path, body, &raw)
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

// call POSTs (or GETs, for a nil body on a GET path) a JSON call to
// another node's internal listener.
func (b *Broker) call(ctx context.Context, addr, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("broker: internal call %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.internalClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s%s: %v", metadata.ErrUnreachable, addr, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: %s%s: read: %v", metadata.ErrUnreachable, addr, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(raw, &e) != nil || e.Kind == "" {
			return fmt.Errorf("broker: internal call %s%s: %s: %s", addr, path, resp.Status, bytes.TrimSpace(raw))
		}
		return errorFromRPC(e)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("broker: internal call %s%s: decode: %w", addr, path, err)
	}
	return nil
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
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := b.call(ctx, addr, "/v1/applied", nil, &out); err != nil {
		return err
	}
	return b.store.FSM().WaitApplied(ctx, out.Index)
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
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := b.call(ctx, br.Internal, "/v1/apply", cmd, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// ClusterStatus is what `tusk cluster status` prints.
type ClusterStatus struct {
	Node    int32             `json:"node"`
	Leader  int32             `json:"leader"`
	Voters  []metadata.Member `json:"voters"`
	Brokers []metadata.Broker `json:"brokers"`
}

func (b *Broker) clusterStatus() (ClusterStatus, error) {
	members, err := b.store.Members()
	if err != nil {
		return ClusterStatus{}, err
	}
	return ClusterStatus{Node: b.cfg.NodeID, Leader: b.store.Leader(), Voters: members, Brokers: b.store.FSM().Brokers()}, nil
}

// newInternalClient is the HTTP client for node-to-node calls.
func newInternalClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     time.Minute,
		},
	}
}
