package txn

import (
	"context"
	"errors"
	"math"
	"regexp"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fencedError reports whether a marker write failed because a newer
// coordinator owns the transaction.
func fencedError(err error) bool {
	return errors.Is(err, kerr.TransactionCoordinatorFenced) || errors.Is(err, kerr.NotCoordinator)
}

// fencedCode is PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for request
// versions that predate it (as Kafka's KafkaApis answers).
func fencedCode(code int16, version, firstWithFenced int16) int16 {
	if code == kerr.ProducerFenced.Code && version < firstWithFenced {
		return kerr.InvalidProducerEpoch.Code
	}
	return code
}

type pidEpoch struct {
	pid   int64
	epoch int16
}

// InitProducerID answers InitProducerId (v0-v5 with a transactional id;
// a nil id is the broker's idempotent producer, answered INVALID_REQUEST
// here). Kafka's semantics:
//
//   - a new id gets a new producer id at epoch 0 (state Empty, persisted);
//   - an id in Empty/CompleteCommit/CompleteAbort has its epoch bumped,
//     which fences the previous producer; an exhausted epoch
//     (MaxInt16-1) takes a new producer id at epoch 0;
//   - KIP-360 (v3+): with ProducerID/ProducerEpoch set, they must be the
//     current ones (the epoch is bumped) or the previous ones after a bump
//     or rotation (a retry: the current ones are returned unchanged);
//     anything else is PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4);
//   - an id with an Ongoing transaction: the epoch is bumped and the
//     transaction aborted (PrepareAbort persisted, markers, CompleteAbort)
//     and the answer is CONCURRENT_TRANSACTIONS: the client retries and
//     then gets the next epoch;
//   - PrepareCommit/PrepareAbort: CONCURRENT_TRANSACTIONS;
//   - a timeout ≤ 0 or above MaxTimeout: INVALID_TRANSACTION_TIMEOUT.
func (c *Coordinator) InitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	code, pid, epoch := c.initProducerID(ctx, req)
	resp.ErrorCode = fencedCode(code, req.Version, 4)
	if code == 0 {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

func (c *Coordinator) initProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) (int16, int64, int16) {
	if req.TransactionalID == nil {
		return kerr.InvalidRequest.Code, -1, -1
	}
	id := *req.TransactionalID
	if code := c.preCheck(id); code != 0 {
		return code, -1, -1
	}
	if req.TransactionTimeoutMillis <= 0 || int64(req.TransactionTimeoutMillis) > c.cfg.MaxTimeout.Milliseconds() {
		return kerr.InvalidTransactionTimeout.Code, -1, -1
	}
	var exp *pidEpoch
	if req.Version >= 3 {
		switch {
		case req.ProducerID == -1 && req.ProducerEpoch == -1:
		case req.ProducerID == -1 || req.ProducerEpoch == -1:
			return kerr.InvalidRequest.Code, -1, -1
		default:
			exp = &pidEpoch{req.ProducerID, req.ProducerEpoch}
		}
	}

	m := c.lockMeta(id, true)
	defer m.mu.Unlock()
	if exp != nil && !(m.epoch == -1 || exp.pid == m.pid || (exp.pid == m.lastPID && epochExhausted(exp.epoch))) {
		return kerr.ProducerFenced.Code, -1, -1
	}
	switch m.state {
	case StatePrepareCommit, StatePrepareAbort:
		return kerr.ConcurrentTransactions.Code, -1, -1
	case StateOngoing:
		if code := c.fence(ctx, m); code != 0 {
			return code, -1, -1
		}
		return kerr.ConcurrentTransactions.Code, -1, -1
	}

	next := m.txnState.clone()
	switch {
	case m.pid == -1 || (epochExhausted(m.epoch) && (exp == nil || exp.epoch == m.epoch)):
		pid, err := c.nextID(ctx)
		if err != nil {
			c.dropPlaceholder(m)
			if c.closed.Load() {
				return kerr.NotCoordinator.Code, -1, -1
			}
			c.log.Warn().Err(err).Str("transactional_id", id).Msg("txn: allocating a producer id failed")
			return idErrorCode(err), -1, -1
		}
		next.pid, next.epoch = pid, 0
		next.lastPID, next.lastEpoch = -1, -1
		if m.pid != -1 {
			next.lastPID = m.pid
			if exp != nil {
				next.lastEpoch = m.epoch
			}
		}
	case exp == nil:
		next.epoch, next.lastEpoch = m.epoch+1, -1
	case m.epoch == -1 || exp.epoch == m.epoch:
		next.epoch, next.lastEpoch = m.epoch+1, m.epoch
	case exp.epoch == m.lastEpoch:
		// A retry of a bump whose answer was lost: same epoch again.
	default:
		return kerr.ProducerFenced.Code, -1, -1
	}
	next.state = StateEmpty
	next.parts = map[tp]struct{}{}
	next.timeoutMs = req.TransactionTimeoutMillis
	next.startMs = -1
	next.updateMs = c.cfg.Now().UnixMilli()
	if code := c.persist(ctx, []Record{record(id, next)}); code != 0 {
		c.dropPlaceholder(m)
		return code, -1, -1
	}
	m.apply(next)
	c.log.Debug().Str("transactional_id", id).Int64("producer_id", next.pid).Int16("epoch", next.epoch).Msg("txn: producer initialized")
	return 0, next.pid, next.epoch
}

// dropPlaceholder removes m if it was created by a first InitProducerID
// that failed; m.mu held.
func (c *Coordinator) dropPlaceholder(m *txnMeta) {
	if !m.stored {
		c.removeLocked(m)
	}
}

// fence bumps the epoch of m's Ongoing transaction and aborts it
// (Kafka's PrepareEpochFence then PrepareAbort): PrepareAbort at the new
// epoch is persisted, then the markers and CompleteAbort follow in the
// background. m.mu held; a failed persist changes nothing.
func (c *Coordinator) fence(ctx context.Context, m *txnMeta) int16 {
	if m.state != StateOngoing {
		return 0
	}
	next := m.txnState.clone()
	if next.epoch < math.MaxInt16 {
		next.epoch++
	}
	next.lastEpoch = -1
	next.state = StatePrepareAbort
	next.updateMs = c.cfg.Now().UnixMilli()
	if code := c.persist(ctx, []Record{record(m.id, next)}); code != 0 {
		return code
	}
	m.apply(next)
	c.log.Debug().Str("transactional_id", m.id).Int16("epoch", next.epoch).Msg("txn: producer fenced, transaction aborting")
	c.startCompletion(m, next)
	return 0
}

// startCompletion completes the Prepare* state s of m in the background
// (after m.mu is released by the caller).
func (c *Coordinator) startCompletion(m *txnMeta, s txnState) {
	s = s.clone()
	c.spawn(func() { c.complete(m, s) })
}

// addPartitions adds parts to id's transaction (Kafka's
// handleAddPartitionsToTransaction).
func (c *Coordinator) addPartitions(ctx context.Context, id string, pid int64, epoch int16, parts []tp) int16 {
	if code := c.preCheck(id); code != 0 {
		return code
	}
	m := c.lockMeta(id, false)
	if m == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer m.mu.Unlock()
	switch {
	case !m.stored || m.pid != pid:
		return kerr.InvalidProducerIDMapping.Code
	case m.epoch != epoch:
		return kerr.ProducerFenced.Code
	case m.state == StatePrepareCommit || m.state == StatePrepareAbort:
		return kerr.ConcurrentTransactions.Code
	}
	if m.state == StateOngoing {
		subset := true
		for _, p := range parts {
			if _, ok := m.parts[p]; !ok {
				subset = false
				break
			}
		}
		if subset {
			return 0
		}
	}
	now := c.cfg.Now().UnixMilli()
	next := m.txnState.clone()
	if m.state != StateOngoing {
		next.startMs = now
		next.parts = map[tp]struct{}{}
	}
	for _, p := range parts {
		next.parts[p] = struct{}{}
	}
	next.state = StateOngoing
	next.updateMs = now
	if code := c.persist(ctx, []Record{record(id, next)}); code != 0 {
		return code
	}
	m.apply(next)
	return 0
}

// AddPartitionsToTxn answers AddPartitionsToTxn v0-v3 (v4+, KIP-890's
// batched and verify-only form, is answered UNSUPPORTED_VERSION). Every
// partition gets the same answer, except that partitions Config.
// PartitionExists denies are UNKNOWN_TOPIC_OR_PARTITION and then the
// others OPERATION_NOT_ATTEMPTED. PRODUCER_FENCED is INVALID_PRODUCER_EPOCH
// before v2.
func (c *Coordinator) AddPartitionsToTxn(ctx context.Context, req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version >= 4 {
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		return resp
	}
	var parts []tp
	unknown := map[tp]bool{}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			k := tp{t.Topic, p}
			parts = append(parts, k)
			if c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(t.Topic, p) {
				unknown[k] = true
			}
		}
	}
	code := kerr.OperationNotAttempted.Code
	if len(unknown) == 0 {
		code = fencedCode(c.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts), req.Version, 2)
	}
	for _, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition = p
			rp.ErrorCode = code
			if unknown[tp{t.Topic, p}] {
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// AddOffsetsToTxn answers AddOffsetsToTxn: the group's __consumer_offsets
// partition (Config.OffsetsPartition) joins the transaction.
// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH before v2.
func (c *Coordinator) AddOffsetsToTxn(ctx context.Context, req *kmsg.AddOffsetsToTxnRequest) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	topic, p := c.cfg.OffsetsPartition(req.Group)
	resp.ErrorCode = fencedCode(c.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, []tp{{topic, p}}), req.Version, 2)
	return resp
}

// EndTxn answers EndTxn (Kafka's handleEndTransaction from a client): an
// Ongoing transaction goes to PrepareCommit/PrepareAbort, persisted, and
// is answered; its markers and then Complete* follow in the background.
// The same request again (CompleteCommit/CompleteAbort with the same
// result) succeeds; while preparing the same result it is
// CONCURRENT_TRANSACTIONS; any other state or result is INVALID_TXN_STATE
// (Empty included). An unknown id or another producer id is
// INVALID_PRODUCER_ID_MAPPING; another epoch PRODUCER_FENCED
// (INVALID_PRODUCER_EPOCH before v2).
func (c *Coordinator) EndTxn(ctx context.Context, req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ErrorCode = fencedCode(c.endTxn(ctx, req), req.Version, 2)
	return resp
}

func (c *Coordinator) endTxn(ctx context.Context, req *kmsg.EndTxnRequest) int16 {
	if code := c.preCheck(req.TransactionalID); code != 0 {
		return code
	}
	m := c.lockMeta(req.TransactionalID, false)
	if m == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer m.mu.Unlock()
	switch {
	case !m.stored || m.pid != req.ProducerID:
		return kerr.InvalidProducerIDMapping.Code
	case m.epoch != req.ProducerEpoch:
		return kerr.ProducerFenced.Code
	}
	switch m.state {
	case StateCompleteCommit, StateCompleteAbort:
		if req.Commit == (m.state == StateCompleteCommit) {
			return 0 // a retry of the EndTxn that completed
		}
		return kerr.InvalidTxnState.Code
	case StatePrepareCommit, StatePrepareAbort:
		if req.Commit == (m.state == StatePrepareCommit) {
			return kerr.ConcurrentTransactions.Code
		}
		return kerr.InvalidTxnState.Code
	case StateOngoing:
	default:
		return kerr.InvalidTxnState.Code
	}
	next := m.txnState.clone()
	next.state = StatePrepareAbort
	if req.Commit {
		next.state = StatePrepareCommit
	}
	next.updateMs = c.cfg.Now().UnixMilli()
	if code := c.persist(ctx, []Record{record(m.id, next)}); code != 0 {
		return code
	}
	m.apply(next)
	c.log.Debug().Str("transactional_id", m.id).Stringer("state", next.state).Msg("txn: transaction ending")
	c.startCompletion(m, next)
	return 0
}

// Verify answers a partition leader's KIP-890 part 1 check: is topic/p
// part of T's Ongoing transaction at (pid, epoch)? It returns nil or
// kerr.NotCoordinator, kerr.CoordinatorLoadInProgress,
// kerr.InvalidProducerIDMapping (unknown id or another producer id),
// kerr.ProducerFenced (another epoch), kerr.ConcurrentTransactions (the
// transaction is being completed) or kerr.InvalidTxnState (the partition
// was not added), as Kafka's verify-only AddPartitionsToTxn. It reads the
// last committed state and never waits for a Persist.
func (c *Coordinator) Verify(T string, pid int64, epoch int16, topic string, p int32) error {
	if code := c.preCheck(T); code != 0 {
		return kerr.ErrorForCode(code)
	}
	v := c.view(T)
	switch {
	case v == nil || v.pid != pid:
		return kerr.InvalidProducerIDMapping
	case v.epoch != epoch:
		return kerr.ProducerFenced
	case v.state == StatePrepareCommit || v.state == StatePrepareAbort:
		return kerr.ConcurrentTransactions
	case v.state != StateOngoing:
		return kerr.InvalidTxnState
	}
	for _, q := range v.parts[topic] {
		if q == p {
			return nil
		}
	}
	return kerr.InvalidTxnState
}

// DescribeTransactions answers DescribeTransactions for the ids of this
// coordinator, each as of its last committed transition (never waiting
// for a Persist): TRANSACTIONAL_ID_NOT_FOUND for an unknown id,
// INVALID_REQUEST for an empty one.
func (c *Coordinator) DescribeTransactions(ctx context.Context, req *kmsg.DescribeTransactionsRequest) *kmsg.DescribeTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		st.ProducerID, st.ProducerEpoch = -1, -1
		resp.TransactionStates = append(resp.TransactionStates, st)
		rs := &resp.TransactionStates[len(resp.TransactionStates)-1]
		if rs.ErrorCode = c.preCheck(id); rs.ErrorCode != 0 {
			continue
		}
		v := c.view(id)
		if v == nil {
			rs.ErrorCode = kerr.TransactionalIDNotFound.Code
			continue
		}
		rs.State = v.state.String()
		rs.TimeoutMillis = v.timeoutMs
		rs.StartTimestamp = v.startMs
		rs.ProducerID, rs.ProducerEpoch = v.pid, v.epoch
		parts := v.parts
		topics := make([]string, 0, len(parts))
		for t := range parts {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		for _, t := range topics {
			rt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
			rt.Topic, rt.Partitions = t, parts[t]
			rs.Topics = append(rs.Topics, rt)
		}
	}
	return resp
}

// ListTransactions answers ListTransactions for this coordinator's ids,
// sorted by id, each as of its last committed transition (never waiting
// for a Persist): state filters (unknown names are echoed in
// UnknownStateFilters), producer id filters, the v1 duration filter
// (transactions running longer than it) and the v2 id pattern (a Go
// regular expression; an invalid one is INVALID_REGULAR_EXPRESSION).
func (c *Coordinator) ListTransactions(ctx context.Context, req *kmsg.ListTransactionsRequest) *kmsg.ListTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	if c.closed.Load() {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	if c.loading.Load() {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	var re *regexp.Regexp
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile(*req.TransactionalIDPattern); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
	}
	states := map[State]bool{}
	for _, n := range req.StateFilters {
		if s, ok := stateFromName(n); ok {
			states[s] = true
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, n)
		}
	}
	pids := map[int64]bool{}
	for _, p := range req.ProducerIDFilters {
		pids[p] = true
	}
	duration := int64(-1)
	if req.Version >= 1 {
		duration = req.DurationFilterMillis
	}
	nowMs := c.cfg.Now().UnixMilli()
	for _, m := range c.snapshot() {
		v := m.view.Load()
		if v == nil ||
			(len(pids) > 0 && !pids[v.pid]) ||
			(len(states) > 0 && !states[v.state]) ||
			(duration >= 0 && nowMs-v.startMs <= duration) ||
			(re != nil && !re.MatchString(m.id)) {
			continue
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID, st.ProducerID, st.TransactionState = m.id, v.pid, v.state.String()
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}
