package broker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/share"
	"github.com/tuskdb/tusk/storage"
)

// The share coordinator (docs/groups-next.md, "Durability and Tusk's
// moving leaders"): share-partition state is kept in the compacted
// internal topic __share_group_state, keyed (group, topic id, partition)
// in Kafka's ShareSnapshot / ShareUpdate records (share/records.go). A
// key lives on partition abs(javaHash("group:topicid:partition")) % N;
// the leader of that partition is the key's writer. It holds each key's
// state folded in memory (replayed from the log when it comes to lead
// the partition) and serves the share-partition leaders over the
// internal listener (POST /v1/share-state, modelled on Kafka's Read,
// Write, Initialize and DeleteShareGroupState and
// ReadShareGroupStateSummary, APIs 83-87). Every change is written as a
// ShareSnapshot of the whole folded state, so the latest record of a key
// is its state: compaction keeps replay bounded and can never drop an
// update a later snapshot does not hold (Kafka writes ShareUpdates and
// prunes below its snapshots instead). A write is answered once the high
// watermark covers it. Writes carry the share-partition's leader epoch
// and the state epoch: an older leader epoch is FENCED_LEADER_EPOCH (a
// deposed share-partition leader cannot overwrite its successor's state),
// a different state epoch FENCED_STATE_EPOCH (the offsets were reset or
// deleted since the leader read them).

const (
	shareStateTopic = "__share_group_state"
	pathShareState  = "/v1/share-state"
)

// Operations of POST /v1/share-state.
const (
	shareOpRead       = "read"       // ReadShareGroupState: the state, taking the leader epoch
	shareOpWrite      = "write"      // WriteShareGroupState: an Update
	shareOpInitialize = "initialize" // InitializeShareGroupState: reset to a start offset
	shareOpDelete     = "delete"     // DeleteShareGroupState
	shareOpSummary    = "summary"    // ReadShareGroupStateSummary
)

// shareStateRequest is the body of POST /v1/share-state.
type shareStateRequest struct {
	Op          string             `json:"op"`
	Group       string             `json:"group"`
	TopicID     [16]byte           `json:"topic_id"`
	Partition   int32              `json:"partition"`
	LeaderEpoch int32              `json:"leader_epoch"`
	StateEpoch  int32              `json:"state_epoch"`
	StartOffset int64              `json:"start_offset"`
	Batches     []share.StateBatch `json:"batches,omitempty"`
}

// shareStateResponse is its answer; Code is a Kafka error code.
type shareStateResponse struct {
	Code        int16              `json:"code"`
	Found       bool               `json:"found"`
	StartOffset int64              `json:"start_offset"`
	LeaderEpoch int32              `json:"leader_epoch"`
	StateEpoch  int32              `json:"state_epoch"`
	Batches     []share.StateBatch `json:"batches,omitempty"`
	// DeliveryComplete (summary) counts the offsets at or above the
	// start offset that are acknowledged or archived: the lag leaves
	// them out (KIP-1226's deliveryCompleteCount).
	DeliveryComplete int64 `json:"delivery_complete,omitempty"`
}

// coordState is one key's state as the coordinator holds it.
type coordState struct {
	snap                                   share.Snapshot
	stateEpoch, leaderEpoch, snapshotEpoch int32
	created                                int64
}

// shareCoord is the coordinator of one __share_group_state partition.
type shareCoord struct {
	since int64 // the segment it was loaded in (ledSince)
	ol    *offsetsLog

	mu     sync.Mutex // orders operations and their appends
	states map[share.StateKey]*coordState
}

// shareCoords are this node's share coordinators.
type shareCoords struct {
	mu    sync.Mutex
	parts map[int32]*shareCoord
	// loading serializes loads.
	loading sync.Mutex
}

// shareStatePartition is the __share_group_state partition (of n) of a
// share-partition's key.
func shareStatePartition(k share.StateKey, n int32) int32 {
	return groupPartition(k.Group+":"+hex.EncodeToString(k.TopicID[:])+":"+strconv.Itoa(int(k.Partition)), n)
}

// ensureShareStateTopic creates __share_group_state when missing, placed
// by the controller over the live brokers.
func (b *Broker) ensureShareStateTopic(ctx context.Context) (metadata.Topic, error) {
	sc := b.cfg.Share
	// Not b.reconcile(): the caller may hold a share-partition's mutex,
	// which reconcile's handover takes (the caller retries while the
	// coordinator loads).
	return b.ensureCoordinatorTopic(ctx, shareStateTopic, sc.StatePartitions, sc.StateRF, sc.StateSegmentBytes, b.kickReconcile)
}

// shareState sends req to the coordinator of its key and returns the
// answer, retrying while the coordinator is moving or loading, for at
// most 10 s. A coordinator that cannot be reached or does not answer in
// time is COORDINATOR_NOT_AVAILABLE (retriable for clients).
func (b *Broker) shareState(ctx context.Context, req shareStateRequest) shareStateResponse {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fail := shareStateResponse{Code: kerr.CoordinatorNotAvailable.Code, StartOffset: -1, LeaderEpoch: -1}
	t, err := b.ensureShareStateTopic(ctx)
	if err != nil {
		b.log.Warn().Err(err).Msg("share state")
		return fail
	}
	k := share.StateKey{Group: req.Group, TopicID: req.TopicID, Partition: req.Partition}
	p := shareStatePartition(k, t.Partitions)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fail
			case <-time.After(min(time.Duration(attempt)*50*time.Millisecond, 500*time.Millisecond)):
			}
			if cur, ok := b.store.FSM().Topic(shareStateTopic); ok {
				t = cur
			}
		}
		leader, _ := t.Leader(p)
		var resp shareStateResponse
		switch {
		case leader < 0:
			continue
		case leader == b.cfg.NodeID:
			resp = b.serveShareState(ctx, p, req)
		default:
			br, ok := b.store.FSM().Broker(leader)
			if !ok || br.Internal == "" {
				continue
			}
			if err := b.internalClient.Call(ctx, br.Internal, http.MethodPost, pathShareState, req, &resp); err != nil {
				b.log.Debug().Err(err).Int32("coordinator", leader).Msg("share state call")
				continue
			}
		}
		switch resp.Code {
		case kerr.NotCoordinator.Code, kerr.CoordinatorLoadInProgress.Code, kerr.CoordinatorNotAvailable.Code, kerr.RequestTimedOut.Code:
			continue
		}
		return resp
	}
}

// serveShareState answers req as the coordinator of partition p.
func (b *Broker) serveShareState(ctx context.Context, p int32, req shareStateRequest) shareStateResponse {
	c, code := b.shareCoordFor(p)
	if code != 0 {
		return shareStateResponse{Code: code, StartOffset: -1, LeaderEpoch: -1}
	}
	return c.serve(ctx, req)
}

// shareCoordFor returns the coordinator of partition p, loading it if this
// node leads p; NOT_COORDINATOR otherwise.
func (b *Broker) shareCoordFor(p int32) (*shareCoord, int16) {
	t, part, ok := b.store.FSM().Partition(shareStateTopic, p)
	if !ok {
		return nil, kerr.NotCoordinator.Code
	}
	seg := part.Active()
	if seg.Leader != b.cfg.NodeID || seg.State != metadata.SegmentActive {
		b.shareCoords.unload(p)
		return nil, kerr.NotCoordinator.Code
	}
	l, ok := b.engine.Log(b.tp(shareStateTopic, p))
	if !ok {
		return nil, kerr.CoordinatorLoadInProgress.Code
	}
	sc := &b.shareCoords
	sc.mu.Lock()
	c := sc.parts[p]
	sc.mu.Unlock()
	if c != nil && ledSince(part.Segments, c.since, b.cfg.NodeID) {
		return c, 0
	}
	sc.loading.Lock()
	defer sc.loading.Unlock()
	sc.mu.Lock()
	c = sc.parts[p]
	sc.mu.Unlock()
	if c != nil && ledSince(part.Segments, c.since, b.cfg.NodeID) {
		return c, 0
	}
	c = &shareCoord{since: seg.ID, ol: b.internalLog(t.Name, p, l), states: map[share.StateKey]*coordState{}}
	started := time.Now()
	n, err := c.replay(l)
	if err != nil {
		b.log.Error().Err(err).Int32("partition", p).Msg("share coordinator: replay")
		return nil, kerr.CoordinatorLoadInProgress.Code
	}
	sc.mu.Lock()
	if sc.parts == nil {
		sc.parts = map[int32]*shareCoord{}
	}
	sc.parts[p] = c
	sc.mu.Unlock()
	b.log.Info().Int32("partition", p).Int("records", n).Int("keys", len(c.states)).Dur("took", time.Since(started)).Msg("share coordinator loaded")
	return c, 0
}

// unload drops the coordinator of partition p (another node leads it).
func (sc *shareCoords) unload(p int32) {
	sc.mu.Lock()
	delete(sc.parts, p)
	sc.mu.Unlock()
}

// replay folds every record of l into c.states (replayLog) and returns
// how many.
func (c *shareCoord) replay(l *storage.Log) (int, error) {
	n, err := replayLog(l, c.apply)
	if err != nil {
		return n, fmt.Errorf("share: replay %s: %w", shareStateTopic, err)
	}
	return n, nil
}

// apply folds one record into c.states.
func (c *shareCoord) apply(key, value []byte) error {
	typ, k, err := share.DecodeStateKey(key)
	if err != nil {
		return err
	}
	if value == nil {
		delete(c.states, k)
		return nil
	}
	switch typ {
	case share.RecordShareSnapshot:
		r, err := share.DecodeSnapshotValue(value)
		if err != nil {
			return err
		}
		c.states[k] = &coordState{snap: r.Snapshot, stateEpoch: r.StateEpoch, leaderEpoch: r.LeaderEpoch, snapshotEpoch: r.SnapshotEpoch, created: r.CreateTimestamp}
	case share.RecordShareUpdate:
		r, err := share.DecodeUpdateValue(value)
		if err != nil {
			return err
		}
		if st := c.states[k]; st != nil && r.SnapshotEpoch == st.snapshotEpoch {
			st.snap = st.snap.Apply(r.Update)
			st.leaderEpoch = max(st.leaderEpoch, r.LeaderEpoch)
		}
	}
	return nil
}

// serve runs one operation.
func (c *shareCoord) serve(ctx context.Context, req shareStateRequest) shareStateResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := share.StateKey{Group: req.Group, TopicID: req.TopicID, Partition: req.Partition}
	st := c.states[k]
	resp := shareStateResponse{StartOffset: -1, LeaderEpoch: -1}
	if st != nil {
		resp.Found, resp.StartOffset, resp.LeaderEpoch, resp.StateEpoch = true, st.snap.StartOffset, st.leaderEpoch, st.stateEpoch
	}
	now := time.Now().UnixMilli()
	switch req.Op {
	case shareOpSummary:
		if st != nil {
			resp.DeliveryComplete = deliveryComplete(st.snap.StartOffset, st.snap.Batches)
		}
		return resp
	case shareOpRead:
		if st == nil {
			return resp
		}
		if req.LeaderEpoch < st.leaderEpoch {
			return shareStateResponse{Code: kerr.FencedLeaderEpoch.Code, StartOffset: -1, LeaderEpoch: st.leaderEpoch}
		}
		if req.LeaderEpoch > st.leaderEpoch {
			next := *st
			next.leaderEpoch = req.LeaderEpoch
			if code := c.write(ctx, k, &next, now); code != 0 {
				return shareStateResponse{Code: code, StartOffset: -1, LeaderEpoch: -1}
			}
			st = c.states[k]
		}
		resp.LeaderEpoch, resp.Batches = st.leaderEpoch, st.snap.Batches
		return resp
	case shareOpWrite:
		var next coordState
		switch {
		case st == nil && req.StateEpoch != 0:
			return shareStateResponse{Code: kerr.FencedStateEpoch.Code, StartOffset: -1, LeaderEpoch: -1}
		case st == nil:
			if req.StartOffset < 0 {
				return shareStateResponse{Code: kerr.InvalidRequest.Code, StartOffset: -1, LeaderEpoch: -1}
			}
			next = coordState{snap: share.Snapshot{StartOffset: req.StartOffset}, leaderEpoch: req.LeaderEpoch, snapshotEpoch: -1, created: now}
		case req.LeaderEpoch < st.leaderEpoch:
			return shareStateResponse{Code: kerr.FencedLeaderEpoch.Code, StartOffset: -1, LeaderEpoch: st.leaderEpoch}
		case req.StateEpoch != st.stateEpoch:
			return shareStateResponse{Code: kerr.FencedStateEpoch.Code, StartOffset: -1, LeaderEpoch: st.leaderEpoch}
		default:
			next = *st
			next.leaderEpoch = req.LeaderEpoch
		}
		next.snap = next.snap.Apply(share.Update{StartOffset: req.StartOffset, Batches: req.Batches})
		if code := c.write(ctx, k, &next, now); code != 0 {
			return shareStateResponse{Code: code, StartOffset: -1, LeaderEpoch: -1}
		}
		resp.Found, resp.StartOffset, resp.LeaderEpoch, resp.StateEpoch = true, next.snap.StartOffset, next.leaderEpoch, next.stateEpoch
		return resp
	case shareOpInitialize:
		if req.StartOffset < 0 {
			return shareStateResponse{Code: kerr.InvalidRequest.Code, StartOffset: -1, LeaderEpoch: -1}
		}
		next := coordState{snap: share.Snapshot{StartOffset: req.StartOffset}, leaderEpoch: -1, snapshotEpoch: -1, created: now}
		if st != nil {
			next.stateEpoch, next.leaderEpoch, next.snapshotEpoch, next.created = st.stateEpoch+1, st.leaderEpoch, st.snapshotEpoch, st.created
		}
		if code := c.write(ctx, k, &next, now); code != 0 {
			return shareStateResponse{Code: code, StartOffset: -1, LeaderEpoch: -1}
		}
		resp.Found, resp.StartOffset, resp.StateEpoch = true, req.StartOffset, next.stateEpoch
		return resp
	case shareOpDelete:
		if st == nil {
			return resp
		}
		var recs []groups.Record
		for _, typ := range []int16{share.RecordShareSnapshot, share.RecordShareUpdate} {
			key, err := share.EncodeStateKey(typ, k)
			if err != nil {
				return shareStateResponse{Code: kerr.InvalidRequest.Code, StartOffset: -1, LeaderEpoch: -1}
			}
			recs = append(recs, groups.Record{Key: key})
		}
		if err := c.ol.Persist(ctx, recs); err != nil {
			return shareStateResponse{Code: persistCode(err), StartOffset: -1, LeaderEpoch: -1}
		}
		delete(c.states, k)
		return shareStateResponse{StartOffset: -1, LeaderEpoch: -1}
	}
	return shareStateResponse{Code: kerr.InvalidRequest.Code, StartOffset: -1, LeaderEpoch: -1}
}

// write persists next as k's ShareSnapshot and installs it; c.mu held.
func (c *shareCoord) write(ctx context.Context, k share.StateKey, next *coordState, now int64) int16 {
	next.snapshotEpoch++
	key, err := share.EncodeStateKey(share.RecordShareSnapshot, k)
	if err != nil {
		return kerr.InvalidRequest.Code
	}
	value := share.EncodeSnapshotValue(share.SnapshotRecord{
		SnapshotEpoch: next.snapshotEpoch, StateEpoch: next.stateEpoch, LeaderEpoch: next.leaderEpoch,
		CreateTimestamp: next.created, WriteTimestamp: now, Snapshot: next.snap,
	})
	if err := c.ol.Persist(ctx, []groups.Record{{Key: key, Value: value}}); err != nil {
		return persistCode(err)
	}
	c.states[k] = next
	return 0
}

// persistCode is the Kafka error code of a failed append.
func persistCode(err error) int16 {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}

// handleShareState is POST /v1/share-state.
func (b *Broker) handleShareState(ctx context.Context, body []byte) (any, error) {
	var req shareStateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: share-state: %v", metadata.ErrInvalidCommand, err)
	}
	t, ok := b.store.FSM().Topic(shareStateTopic)
	if !ok {
		return shareStateResponse{Code: kerr.NotCoordinator.Code, StartOffset: -1, LeaderEpoch: -1}, nil
	}
	k := share.StateKey{Group: req.Group, TopicID: req.TopicID, Partition: req.Partition}
	return b.serveShareState(ctx, shareStatePartition(k, t.Partitions), req), nil
}

// shareStateRoutes mounts the share coordinator's endpoint on the
// internal listener.
func (b *Broker) shareStateRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathShareState, rpc.Handler(b.handleShareState))
	b.shareHandoverRoutes(mux)
}

// deliveryComplete counts the offsets at or above start that batches
// show acknowledged or archived.
func deliveryComplete(start int64, batches []share.StateBatch) int64 {
	var n int64
	for _, sb := range batches {
		if sb.State != share.Acknowledged && sb.State != share.Archived {
			continue
		}
		if first := max(sb.First, start); sb.Last >= first {
			n += sb.Last - first + 1
		}
	}
	return n
}
