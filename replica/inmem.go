package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/storage"
)

// InmemTransport connects the Managers of one process, as hashicorp/raft's
// InmemTransport does its nodes: a follower's Fetch is served by the
// leader's Manager directly (ServeFetch). Tests cut nodes off with
// Disconnect.
type InmemTransport struct {
	mu       sync.Mutex
	nodes    map[int32]*Manager
	cut      map[int32]bool
	inflight map[*inmemCall]struct{}
	// recycle: answers' batches live in buffers from free, overwritten
	// when released (Recycle); released counts the releases.
	recycle  bool
	free     [][]byte
	released int
	// oldLeaders: leaders behave as before durable offsets (durable.go):
	// the requests' durable offsets are removed before they are served
	// and the answers do not say they were counted (OldLeaders).
	oldLeaders bool
	// onFetch, if set, sees every fetch request before it is served.
	onFetch func(req *kmsg.FetchRequest)
	// sessions are the leaders' fetch sessions (KIP-227) with their
	// followers, by follower and leader; lastSession numbers them.
	sessions    map[[2]int32]*inmemSession
	lastSession int32
	refused     int // incremental fetches of sessions not known
}

// SessionRefusals counts the incremental fetches refused because the
// leader did not know their session.
func (t *InmemTransport) SessionRefusals() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused
}

// inmemSession is a leader's fetch session with one follower, as the
// broker keeps it: an incremental fetch names only the partitions whose
// position changed and is served for every partition of the session.
type inmemSession struct {
	id    int32
	epoch int32 // the next incremental fetch's
	parts map[inmemPart]kmsg.FetchRequestTopicPartition
	order []inmemPart
}

type inmemPart struct {
	topic     string
	id        [16]byte
	partition int32
}

// session applies req to the fetch session of its follower with leader
// (under t.mu): it returns the request to serve (every partition of the
// session) and the session ID to answer with, or an error code.
func (t *InmemTransport) session(leader int32, req *kmsg.FetchRequest) (*kmsg.FetchRequest, int32, int16) {
	key := [2]int32{req.ReplicaID, leader}
	switch {
	case req.SessionEpoch < 0: // no session wanted
		delete(t.sessions, key)
		return req, 0, 0
	case req.SessionEpoch == 0: // a full fetch opens a new session
		t.lastSession++
		s := &inmemSession{id: t.lastSession, epoch: 1, parts: map[inmemPart]kmsg.FetchRequestTopicPartition{}}
		s.merge(req)
		t.sessions[key] = s
		return req, s.id, 0
	}
	s := t.sessions[key]
	switch {
	case s == nil || s.id != req.SessionID:
		t.refused++
		return nil, 0, kerr.FetchSessionIDNotFound.Code
	case s.epoch != req.SessionEpoch:
		return nil, 0, kerr.InvalidFetchSessionEpoch.Code
	}
	s.epoch = nextEpoch(s.epoch)
	for _, ft := range req.ForgottenTopics {
		for _, p := range ft.Partitions {
			delete(s.parts, inmemPart{ft.Topic, ft.TopicID, p})
		}
	}
	s.merge(req)
	full := *req
	full.Topics, full.ForgottenTopics = nil, nil
	at := map[inmemPart]int{}
	kept := s.order[:0]
	for _, k := range s.order {
		rp, ok := s.parts[k]
		if !ok {
			continue
		}
		kept = append(kept, k)
		tk := inmemPart{topic: k.topic, id: k.id}
		i, ok := at[tk]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = k.topic, k.id
			full.Topics = append(full.Topics, rt)
			i = len(full.Topics) - 1
			at[tk] = i
		}
		full.Topics[i].Partitions = append(full.Topics[i].Partitions, rp)
	}
	s.order = kept
	return &full, s.id, 0
}

// merge adds or updates the partitions req names.
func (s *inmemSession) merge(req *kmsg.FetchRequest) {
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			k := inmemPart{rt.Topic, rt.TopicID, rp.Partition}
			if _, ok := s.parts[k]; !ok {
				s.order = append(s.order, k)
			}
			s.parts[k] = rp
		}
	}
}

// dropSessions forgets the fetch sessions with leader (all: -1), as a
// restart of the leader does. t.mu held.
func (t *InmemTransport) dropSessionsLocked(leader int32) {
	for k := range t.sessions {
		if leader < 0 || k[1] == leader {
			delete(t.sessions, k)
		}
	}
}

// OldLeaders makes every leader behave as one that does not know durable
// offsets (replica/durable.go): followers must then wait for their syncs
// before fetching on.
func (t *InmemTransport) OldLeaders(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.oldLeaders = on
	t.dropSessionsLocked(-1) // the leaders "restarted" as other versions
}

// OnFetch sets a function that sees every fetch request before it is
// served (nil: none).
func (t *InmemTransport) OnFetch(fn func(req *kmsg.FetchRequest)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onFetch = fn
}

// inmemCall is a fetch in flight.
type inmemCall struct {
	from, to int32
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewInmemTransport returns a transport with no nodes.
func NewInmemTransport() *InmemTransport {
	return &InmemTransport{nodes: map[int32]*Manager{}, cut: map[int32]bool{}, inflight: map[*inmemCall]struct{}{},
		sessions: map[[2]int32]*inmemSession{}}
}

// Connect makes node reachable, served by m.
func (t *InmemTransport) Connect(node int32, m *Manager) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[node] = m
	delete(t.cut, node)
	t.dropSessionsLocked(node)
}

// Disconnect cuts node off: its fetches and fetches to it fail. Fetches
// in flight are cancelled, and it returns once they have ended, so no
// answer crosses the cut afterwards.
func (t *InmemTransport) Disconnect(node int32) {
	t.mu.Lock()
	t.cut[node] = true
	var wait []*inmemCall
	for c := range t.inflight {
		if c.from == node || c.to == node {
			c.cancel()
			wait = append(wait, c)
		}
	}
	t.mu.Unlock()
	for _, c := range wait {
		<-c.done
	}
}

// Recycle makes Fetch hand out answers whose record batches live in a
// buffer of the transport's, reused by later answers once released, as
// the broker's replica connections recycle theirs; on release the buffer
// is overwritten (0xFF), so a caller still using the batches reads
// garbage.
func (t *InmemTransport) Recycle(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recycle = on
}

// Released is how many recycled answers were released.
func (t *InmemTransport) Released() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.released
}

// recycled moves resp's record batches into a buffer of the transport's
// and returns the release func that overwrites and frees it.
func (t *InmemTransport) recycled(resp *kmsg.FetchResponse) func() {
	n := 0
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			n += len(rp.RecordBatches)
		}
	}
	t.mu.Lock()
	var buf []byte
	if k := len(t.free); k > 0 {
		buf, t.free = t.free[k-1], t.free[:k-1]
	}
	t.mu.Unlock()
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	off := 0
	for ti := range resp.Topics {
		for pi := range resp.Topics[ti].Partitions {
			rb := &resp.Topics[ti].Partitions[pi].RecordBatches
			if *rb == nil {
				continue
			}
			end := off + copy(buf[off:], *rb)
			*rb = buf[off:end:end]
			off = end
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for i := range buf {
				buf[i] = 0xFF
			}
			t.mu.Lock()
			t.free = append(t.free, buf)
			t.released++
			t.mu.Unlock()
		})
	}
}

// Reconnect undoes Disconnect.
func (t *InmemTransport) Reconnect(node int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cut, node)
}

// errUnreachable fails fetches across a cut.
var errUnreachable = errors.New("replica: in-memory transport: node unreachable")

// Fetch implements Transport.
func (t *InmemTransport) Fetch(ctx context.Context, leader int32, req *kmsg.FetchRequest) (*kmsg.FetchResponse, func(), error) {
	t.mu.Lock()
	m, ok := t.nodes[leader]
	if !ok || t.cut[leader] || t.cut[req.ReplicaID] {
		t.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %d → %d", errUnreachable, req.ReplicaID, leader)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call := &inmemCall{from: req.ReplicaID, to: leader, cancel: cancel, done: make(chan struct{})}
	old, onFetch := t.oldLeaders, t.onFetch
	served, sessionID, code := t.session(leader, req)
	if code != 0 {
		t.mu.Unlock()
		resp := kmsg.NewPtrFetchResponse()
		resp.ErrorCode = code
		return resp, func() {}, nil
	}
	t.inflight[call] = struct{}{}
	t.mu.Unlock()
	if onFetch != nil {
		onFetch(req)
	}
	req = served
	if old {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].UnknownTags = kmsg.Tags{}
			}
		}
	}
	defer func() {
		t.mu.Lock()
		delete(t.inflight, call)
		t.mu.Unlock()
		close(call.done)
	}()
	resp, err := m.ServeFetch(ctx, req)
	if err != nil && ctx.Err() != nil {
		return nil, nil, fmt.Errorf("%w: %d → %d", errUnreachable, req.ReplicaID, leader)
	}
	if err != nil {
		return nil, nil, err
	}
	if old {
		resp.UnknownTags = kmsg.Tags{}
	}
	resp.SessionID = sessionID
	t.mu.Lock()
	recycle := t.recycle
	t.mu.Unlock()
	if recycle {
		return resp, t.recycled(resp), nil
	}
	return resp, func() {}, nil
}

// OpenTransactions implements Transport: leader's producers with an
// open transaction on tp, as the broker's DescribeProducers answers them
// (only while leader leads tp).
func (t *InmemTransport) OpenTransactions(_ context.Context, leader int32, tp storage.TopicPartition) ([]fencing.ProducerEntry, error) {
	t.mu.Lock()
	m, ok := t.nodes[leader]
	cut := t.cut[leader]
	t.mu.Unlock()
	if !ok || cut {
		return nil, fmt.Errorf("%w: → %d", errUnreachable, leader)
	}
	lp := m.Leader(tp)
	if lp == nil {
		return nil, fmt.Errorf("replica: node %d does not lead %s: %w", leader, tp, kerr.NotLeaderForPartition)
	}
	var out []fencing.ProducerEntry
	for _, e := range lp.log.Producers() {
		if e.TxnFirstOffset >= 0 {
			out = append(out, fencing.ProducerEntry{ProducerID: e.ProducerID, Epoch: e.Epoch, LastTimestamp: e.LastTimestamp,
				TxnFirstOffset: e.TxnFirstOffset, CoordinatorEpoch: e.CoordinatorEpoch})
		}
	}
	return out, nil
}

// ServeFetch answers a replica Fetch from this node's logs the way the
// broker's Fetch handler does for node connections: it records the
// follower's fetch offset (Fetched), reads up to the log end offset, and
// long-polls up to the request's MaxWaitMillis while nothing is new. It
// is the leader side of InmemTransport; production serves replica
// fetches through the Kafka Fetch handler (sendfile included).
func (m *Manager) ServeFetch(ctx context.Context, req *kmsg.FetchRequest) (*kmsg.FetchResponse, error) {
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	for {
		wake := make(chan struct{}, 1)
		resp, n, logs := m.readReplicaFetch(req)
		if n > 0 || !time.Now().Before(deadline) {
			return resp, nil
		}
		cancels := make([]func(), 0, len(logs))
		for _, l := range logs {
			cancels = append(cancels, l.AddWaiter(wake))
		}
		err := m.pollOnce(ctx, req, wake, deadline)
		for _, cancel := range cancels {
			cancel()
		}
		if err != nil {
			return nil, err
		}
	}
}

// pollOnce waits for a wake-up, the deadline or the end of ctx.
func (m *Manager) pollOnce(ctx context.Context, req *kmsg.FetchRequest, wake chan struct{}, deadline time.Time) error {
	// Re-read after registering, so an append in between is seen.
	if _, n, _ := m.readReplicaFetch(req); n > 0 {
		return nil
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.ctx.Done():
		return errors.New("replica: closed")
	}
	return nil
}

// readReplicaFetch reads one answer to a replica fetch: the response, its
// record bytes and the logs read.
func (m *Manager) readReplicaFetch(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, []*storage.Log) {
	resp := kmsg.NewPtrFetchResponse()
	MarkDurableAware(resp) // Fetched below takes the durable offsets
	total := 0
	var logs []*storage.Log
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset, sp.PreferredReadReplica = -1, -1, -1, -1
			tp := storage.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}
			lp := m.Leader(tp)
			switch {
			case lp == nil:
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			case rp.CurrentLeaderEpoch >= 0 && rp.CurrentLeaderEpoch < lp.epoch:
				sp.ErrorCode = kerr.FencedLeaderEpoch.Code
			case rp.CurrentLeaderEpoch > lp.epoch:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case !m.Fetched(tp, req.ReplicaID, AckOffset(&rp), rp.LogStartOffset):
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			default:
				res, err := lp.log.ReadUncommitted(rp.FetchOffset, int(rp.PartitionMaxBytes), true)
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HighWatermark, res.HighWatermark, res.LogStartOffset
				switch {
				case errors.Is(err, storage.ErrOffsetOutOfRange):
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
				case err != nil:
					sp.ErrorCode = kerr.KafkaStorageError.Code
				default:
					sp.RecordBatches = res.Data
					total += len(res.Data)
				}
				logs = append(logs, lp.log)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, logs
}
