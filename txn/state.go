package txn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a transaction's state, numbered as in __transaction_state
// (Kafka's TransactionState ids).
type State int8

// The states. Dead and PrepareEpochFence are never stored: an expired id
// is removed with a tombstone, and a fence is stored as PrepareAbort at
// the bumped epoch.
const (
	StateEmpty             State = 0
	StateOngoing           State = 1
	StatePrepareCommit     State = 2
	StatePrepareAbort      State = 3
	StateCompleteCommit    State = 4
	StateCompleteAbort     State = 5
	StateDead              State = 6
	StatePrepareEpochFence State = 7
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String is Kafka's name of the state (DescribeTransactions,
// ListTransactions).
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

func stateFromName(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

type tp struct {
	topic     string
	partition int32
}

// txnState is what a transition changes; a transition builds the next
// txnState, persists its record, and only then assigns it, so a failed
// persist changes nothing.
type txnState struct {
	pid, lastPID     int64 // lastPID: the id before an exhaustion rotation (KIP-360 retries), in memory only
	epoch, lastEpoch int16 // lastEpoch: the epoch before a KIP-360 bump, in memory only
	timeoutMs        int32
	state            State
	parts            map[tp]struct{}
	startMs          int64 // the transaction's first AddPartitions; -1 when Empty
	updateMs         int64
}

func (s txnState) clone() txnState {
	n := s
	n.parts = make(map[tp]struct{}, len(s.parts))
	for p := range s.parts {
		n.parts[p] = struct{}{}
	}
	return n
}

func (s txnState) sortedParts() map[string][]int32 {
	out := make(map[string][]int32)
	for p := range s.parts {
		out[p.topic] = append(out[p.topic], p.partition)
	}
	for _, ps := range out {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	}
	return out
}

// txnMeta is one transactional id.
type txnMeta struct {
	mu      sync.Mutex // guards the fields below; held across Persist
	id      string
	removed bool // dropped from the map; whoever locked it looks it up again
	stored  bool // false: a placeholder of a first InitProducerID in progress
	txnState

	// view is the state as of the last committed transition (nil: not
	// stored or removed), read without mu by Verify, DescribeTransactions
	// and ListTransactions so they never wait for a Persist.
	view atomic.Pointer[txnView]
}

// txnView is what DescribeTransactions and ListTransactions show.
type txnView struct {
	pid       int64
	epoch     int16
	timeoutMs int32
	state     State
	parts     map[string][]int32
	startMs   int64
}

// apply makes s m's state once its record is committed; m.mu held.
func (m *txnMeta) apply(s txnState) {
	m.txnState = s
	m.stored = true
	m.view.Store(&txnView{pid: s.pid, epoch: s.epoch, timeoutMs: s.timeoutMs, state: s.state, parts: s.sortedParts(), startMs: s.startMs})
}

func newMeta(id string) *txnMeta {
	return &txnMeta{id: id, txnState: txnState{pid: -1, lastPID: -1, epoch: -1, lastEpoch: -1, startMs: -1}}
}

func keyBytes(id string) []byte {
	k := kmsg.NewTxnMetadataKey()
	k.Version = 0
	k.TransactionalID = id
	return k.AppendTo(nil)
}

// record is the __transaction_state record of id in state s (key v0,
// value v0, as Kafka writes without transaction.version 2).
func record(id string, s txnState) Record {
	v := kmsg.NewTxnMetadataValue()
	v.Version = 0
	v.ProducerID = s.pid
	v.ProducerEpoch = s.epoch
	v.TimeoutMillis = s.timeoutMs
	v.State = kmsg.TransactionState(s.state)
	v.LastUpdateTimestamp = s.updateMs
	v.StartTimestamp = s.startMs
	parts := s.sortedParts()
	topics := make([]string, 0, len(parts))
	for t := range parts {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	v.Topics = []kmsg.TxnMetadataValueTopic{}
	for _, t := range topics {
		vt := kmsg.NewTxnMetadataValueTopic()
		vt.Topic = t
		vt.Partitions = parts[t]
		v.Topics = append(v.Topics, vt)
	}
	return Record{Key: keyBytes(id), Value: v.AppendTo(nil)}
}

// ErrNotLoading is returned by Replay after ReplayDone.
var ErrNotLoading = errors.New("txn: Replay called after ReplayDone")

// Replay applies one __transaction_state record, in log order, while the
// coordinator is loading: the latest record of an id is its state; a
// tombstone (or a stored Dead state) removes the id. A record that does
// not decode (an unknown key or value version, a truncated or malformed
// value, an unknown state) returns an error and changes nothing.
func (c *Coordinator) Replay(r Record) error {
	if !c.loading.Load() {
		return ErrNotLoading
	}
	if len(r.Key) < 2 {
		return fmt.Errorf("txn: record key too short (%d bytes)", len(r.Key))
	}
	if kv := int16(binary.BigEndian.Uint16(r.Key)); kv != 0 {
		return fmt.Errorf("txn: unknown __transaction_state key version %d", kv)
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(r.Key); err != nil {
		return fmt.Errorf("txn: decoding transaction metadata key: %w", err)
	}
	if r.Value == nil {
		if m := c.lockMeta(k.TransactionalID, false); m != nil {
			c.removeLocked(m)
			m.mu.Unlock()
		}
		return nil
	}
	if len(r.Value) < 2 {
		return fmt.Errorf("txn: value of %q too short (%d bytes)", k.TransactionalID, len(r.Value))
	}
	if vv := int16(binary.BigEndian.Uint16(r.Value)); vv < 0 || vv > 1 {
		return fmt.Errorf("txn: unknown __transaction_state value version %d of %q", vv, k.TransactionalID)
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(r.Value); err != nil {
		return fmt.Errorf("txn: decoding transaction metadata value of %q: %w", k.TransactionalID, err)
	}
	st := State(v.State)
	switch {
	case st == StateDead:
		if m := c.lockMeta(k.TransactionalID, false); m != nil {
			c.removeLocked(m)
			m.mu.Unlock()
		}
		return nil
	case st < StateEmpty || st > StateCompleteAbort:
		return fmt.Errorf("txn: transaction metadata of %q has state %d, which is never stored", k.TransactionalID, v.State)
	}
	s := txnState{
		pid: v.ProducerID, lastPID: -1,
		epoch: v.ProducerEpoch, lastEpoch: -1,
		timeoutMs: v.TimeoutMillis,
		state:     st,
		parts:     make(map[tp]struct{}),
		startMs:   v.StartTimestamp,
		updateMs:  v.LastUpdateTimestamp,
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			s.parts[tp{t.Topic, p}] = struct{}{}
		}
	}
	m := c.lockMeta(k.TransactionalID, true)
	m.apply(s)
	m.mu.Unlock()
	return nil
}

// ReplayDone ends loading: the coordinator serves from now on, and every
// transaction the log left in PrepareCommit or PrepareAbort is completed
// as Kafka's new coordinator does: its markers are written again (they are
// idempotent at the partitions) and Complete* is persisted; meanwhile its
// producer is answered CONCURRENT_TRANSACTIONS. ReplayDone waits for these
// completions until ctx is done; they go on after that, until Close.
func (c *Coordinator) ReplayDone(ctx context.Context) {
	if !c.loading.Swap(false) {
		return
	}
	var wg sync.WaitGroup
	for _, m := range c.snapshot() {
		m.mu.Lock()
		s := m.txnState.clone()
		ok := !m.removed && m.stored && (s.state == StatePrepareCommit || s.state == StatePrepareAbort)
		m.mu.Unlock()
		if !ok {
			continue
		}
		wg.Add(1)
		if !c.spawn(func() { defer wg.Done(); c.complete(m, s) }) {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// complete writes the markers of s (m's Prepare* state) and persists its
// Complete* state, retrying both after failures until the coordinator
// closes. Called without m.mu.
func (c *Coordinator) complete(m *txnMeta, s txnState) {
	req := MarkerRequest{
		ProducerID:       s.pid,
		ProducerEpoch:    s.epoch,
		Commit:           s.state == StatePrepareCommit,
		CoordinatorEpoch: c.epoch,
		Partitions:       s.sortedParts(),
	}
	for len(req.Partitions) > 0 {
		err := c.markers.Write(c.ctx, req)
		if err == nil {
			break
		}
		if c.ctx.Err() != nil {
			return
		}
		if fencedError(err) {
			c.log.Warn().Err(err).Str("transactional_id", m.id).Msg("txn: a newer coordinator owns the transaction; not writing its markers")
			return
		}
		c.log.Warn().Err(err).Str("transactional_id", m.id).Msg("txn: writing transaction markers failed; retrying")
		if !c.wait() {
			return
		}
	}
	for {
		m.mu.Lock()
		if m.removed || m.pid != s.pid || m.epoch != s.epoch || m.state != s.state {
			m.mu.Unlock()
			return
		}
		next := m.txnState.clone()
		next.state = StateCompleteAbort
		if s.state == StatePrepareCommit {
			next.state = StateCompleteCommit
		}
		next.parts = map[tp]struct{}{}
		next.updateMs = c.cfg.Now().UnixMilli()
		code := c.persist(c.ctx, []Record{record(m.id, next)})
		if code == 0 {
			m.apply(next)
			m.mu.Unlock()
			c.log.Debug().Str("transactional_id", m.id).Stringer("state", next.state).Msg("txn: transaction complete")
			return
		}
		m.mu.Unlock()
		if c.closed.Load() || code == kerr.NotCoordinator.Code {
			return
		}
		if !c.wait() {
			return
		}
	}
}
