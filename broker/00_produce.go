package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// Produce is advertised from v0: librdkafka 2.0.2 compresses only when it
// sees v0 (docs/architecture.md, "Kafka compatibility"). Versions below 3 carry old message sets in
// practice, which are refused with UNSUPPORTED_FOR_MESSAGE_FORMAT.
func apiProduce() api {
	return api{key: kmsg.Produce, min: 0, max: 11, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ProduceRequest)
		if resp, denied := produceTxnDenied(rc, req); denied {
			return resp, nil // nil (no answer) for acks=0
		}
		resp, deferred, fwdBytes := b.handleProduce(rc, req)
		if rc.conn.node && rc.client == nil {
			// A node's own traffic (forwarded Produce requests come in
			// an Envelope, as their client; a client calling itself
			// forwardClientID is metered like any other).
			return resp, deferred
		}
		// producer_byte_rate (quota.go): the bytes count when received,
		// on the node that appends them (the leaders of the forwarded
		// partitions meter those, 58_envelope.go); the throttle time
		// goes in the answer and holds the next request back (the
		// client's connection on the node that received it: a
		// forwarded request's throttle time is muted there, forward.go).
		d := b.quotas.throttle(b.store.FSM(), metadata.QuotaProducerByteRate, rc.principal().Name, rc.hdr.ClientID, float64(produceBytes(req)-fwdBytes), time.Now())
		if d <= 0 {
			return resp, deferred
		}
		if rc.client == nil {
			rc.conn.mute(d)
		}
		if r, ok := resp.(*kmsg.ProduceResponse); ok {
			r.ThrottleMillis = max(r.ThrottleMillis, throttleMillis(d))
		}
		if deferred != nil {
			return resp, func() kmsg.Response {
				r := deferred()
				if pr, ok := r.(*kmsg.ProduceResponse); ok {
					pr.ThrottleMillis = max(pr.ThrottleMillis, throttleMillis(d))
				}
				return r
			}
		}
		return resp, nil
	}}
}

// produceTxnDenied answers a Produce carrying transactional records
// without WRITE on its transactional id (or without one) with
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED on every partition, as Kafka
// does (nothing is appended, and for acks=0 nothing answered).
func produceTxnDenied(rc *request, req *kmsg.ProduceRequest) (kmsg.Response, bool) {
	if rc.conn.b.authz == nil || rc.conn.node {
		return nil, false
	}
	transactional := false
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if h, err := kafkaproto.ParseBatchHeader(p.Records); err == nil && h.IsTransactional() {
				transactional = true
			}
		}
	}
	if !transactional || req.TransactionID != nil && rc.txnDenied(auth.OpWrite, *req.TransactionID) == 0 {
		return nil, false
	}
	if req.Acks == 0 {
		return nil, true
	}
	resp := kmsg.NewPtrProduceResponse()
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TransactionalIDAuthorizationFailed.Code
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, true
}

// pendingAck is an appended partition waiting for durability.
type pendingAck struct {
	part *kmsg.ProduceResponseTopicPartition
	log  *storage.Log
	last int64
	// lead is the leadership an acks=all append to a replicated
	// partition was made under: the ack waits for its high watermark.
	lead *replica.Leadership
}

// done reports whether the ack can be sent now.
func (w pendingAck) done() (bool, error) {
	if w.lead != nil {
		return w.lead.Acked(w.last)
	}
	return w.log.Durable(w.last)
}

// wait blocks until the ack can be sent. An acks=all wait fails if the
// leadership it was appended under ends first (replica.ErrDeposed).
func (w pendingAck) wait(ctx context.Context) error {
	if w.lead != nil {
		return w.lead.WaitAcked(ctx, w.last)
	}
	return w.log.WaitDurable(ctx, w.last)
}

// handleProduce appends or forwards the request's records; it also
// returns how many record bytes were forwarded to other leaders.
func (b *Broker) handleProduce(rc *request, req *kmsg.ProduceRequest) (kmsg.Response, func() kmsg.Response, int) {
	resp := kmsg.NewPtrProduceResponse()
	var waits []pendingAck
	fwd := produceForward{b: b, req: req, resp: resp, conn: rc.conn}
	acksOK := req.Acks == -1 || req.Acks == 0 || req.Acks == 1
	for ti := range req.Topics {
		rt := &req.Topics[ti]
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		nameErr := validTopicName(rt.Topic)
		denied := rc.topicDenied(auth.OpWrite, rt.Topic) // WRITE on the topic, checked before it is looked up
		maxOverride, maxSet, internal, topicOK := b.store.FSM().TopicConfigValue(rt.Topic, "max.message.bytes")
		maxBytes := int64(-1) // parsed once per topic, when needed
		compact := false      // cleanup.policy includes compact; looked up with maxBytes
		// Sized up front: waits keep pointers into this array.
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			sp := &st.Partitions[pi]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			switch {
			case !acksOK:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
			case denied != 0:
				sp.ErrorCode = denied
			case nameErr != nil:
				sp.ErrorCode = kerr.InvalidTopicException.Code
				sp.ErrorMessage = kmsg.StringPtr(nameErr.Error())
			case !topicOK:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case internal:
				sp.ErrorCode = kerr.InvalidTopicException.Code
				sp.ErrorMessage = kmsg.StringPtr("cannot produce to an internal topic")
			default:
				if maxBytes < 0 {
					maxBytes = b.maxMessageBytes(maxOverride, maxSet)
					policy, policySet, _, _ := b.store.FSM().TopicConfigValue(rt.Topic, "cleanup.policy")
					compact = b.keys.policies.compact(policy, policySet)
				}
				if w, ok := b.producePartition(rc, req, resp, &fwd, rt.Topic, rp, sp, appendLimits{tp: storage.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}, maxBytes: maxBytes, compact: compact}); ok {
					waits = append(waits, w)
				}
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	fwd.seal(rc) // before the frame is recycled
	// Forwarded requests of one connection reach the leader in request
	// order (an idempotent producer's pipelined batches must not pass one
	// another): each waits until the previous one was answered.
	var fwdPrev, fwdDone chan struct{}
	if fwd.pending() {
		fwdPrev, fwdDone = rc.conn.fwdTail, make(chan struct{})
		rc.conn.fwdTail = fwdDone
	}
	sendForwarded := func(ctx context.Context) {
		if fwdDone == nil {
			return
		}
		select {
		case <-fwdPrev:
		case <-ctx.Done():
		}
		fwd.send(ctx)
		close(fwdDone)
	}
	if req.Acks == 0 {
		if fwd.pending() {
			// Nobody waits for the answer: the forward runs in the
			// background, tracked and stopped by Close.
			b.bgWG.Add(1)
			go func() {
				defer b.bgWG.Done()
				ctx, cancel := context.WithTimeout(b.bgCtx, 30*time.Second)
				defer cancel()
				sendForwarded(ctx)
			}()
		}
		return nil, nil, fwd.bytes
	}
	// Answer at once what is durable already (always so with
	// fsync=interval or never): a deferred response costs a goroutine and
	// a handoff per request.
	pending := waits[:0]
	for _, w := range waits {
		if done, err := w.done(); !done {
			pending = append(pending, w)
		} else if err != nil {
			w.fail(err)
		}
	}
	if len(pending) == 0 && !fwd.pending() {
		return resp, nil, fwd.bytes
	}
	return nil, func() kmsg.Response {
		timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		// The connection's writer waits for this answer and Close for the
		// connection: the wait for the local disk, and for the leaders
		// the request was forwarded to, ends with the shutdown grace
		// period (the broker's ctx, not the request's).
		ctx, cancel := context.WithTimeout(b.ctx, timeout)
		defer cancel()
		sendForwarded(ctx)
		// A wait for the followers (acks=all) ends when Close begins
		// (answered NOT_LEADER_OR_FOLLOWER, not acknowledged: the
		// producer retries with the next leader): in a whole-cluster
		// stop the followers stop fetching once their own nodes drained,
		// and every leader waited out its grace period. A wait for the
		// local disk is left to finish.
		acksCtx, acksCancel := b.untilShutdown(ctx)
		defer acksCancel()
		for _, w := range pending {
			wctx := ctx
			if w.lead != nil {
				wctx = acksCtx
			}
			if err := w.wait(wctx); err != nil {
				w.fail(err)
			}
		}
		return resp
	}, fwd.bytes
}

// producePartition appends one partition's records if this node leads it,
// or routes them to the leader (forward, or NOT_LEADER_OR_FOLLOWER with
// KIP-951 hints). A Produce that meets a roll of its partition waits for
// the roll and then follows the partition to its new leader, so producers
// do not see the handover. It returns the ack to wait for, if any.
func (b *Broker) producePartition(rc *request, req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, fwd *produceForward,
	topic string, rp *kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition, lim appendLimits) (pendingAck, bool) {
	var txn txnBatch
	for attempt := 0; ; attempt++ {
		l, code := b.partitionLog(topic, rp.Partition)
		if code == kerr.NotLeaderForPartition.Code {
			t, _ := b.store.FSM().Topic(topic) // rare path: a full copy is fine
			// A forwarded partition's records are encoded by fwd.seal
			// before the handler returns (they are the frame's).
			if b.mayForward(rc) && fwd.add(t, rp, sp) {
				return pendingAck{}, false
			}
			b.notLeader(rc, resp, req.Version, t, rp.Partition, sp)
			return pendingAck{}, false
		}
		if code != 0 {
			sp.ErrorCode = code
			return pendingAck{}, false
		}
		if !txn.checked {
			// Before taking the leadership: the check may ask another
			// node.
			var msg string
			txn, code, msg = b.verifyTxn(rc, req, topic, rp.Partition, l, rp.Records)
			if code != 0 {
				sp.ErrorCode = code
				sp.ErrorMessage = kmsg.StringPtr(msg)
				return pendingAck{}, false
			}
		}
		lim.txn = txn
		var last int64
		var msg string
		var lead *replica.Leadership
		if l.Replicated() {
			lead = b.repl.Leader(b.tp(topic, rp.Partition))
			if lead == nil {
				// The metadata says this node leads, but reconcile has
				// not installed the leadership yet (a topic just
				// created, a roll just committed): install it now
				// rather than refuse.
				if attempt == 0 {
					if _, err := b.repl.Reconcile(topic, rp.Partition, b.caughtUp.Load()); err != nil {
						b.log.Warn().Err(err).Str("topic", topic).Int32("partition", rp.Partition).Msg("install a leadership for a produce")
					}
					continue
				}
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				return pendingAck{}, false
			}
			if req.Acks == -1 && !lead.EnoughReplicas() {
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				sp.ErrorMessage = kmsg.StringPtr("the active segment has fewer replicas than min.insync.replicas")
				return pendingAck{}, false
			}
			// Only a leader holding a live lease appends, and not during
			// a roll; a Produce that meets a roll waits for it and then
			// follows the partition to its leader (once).
			epoch, release, err := lead.Begin(rc.ctx())
			if err != nil {
				if errors.Is(err, replica.ErrRolled) && attempt == 0 {
					continue
				}
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				sp.ErrorMessage = kmsg.StringPtr(err.Error())
				return pendingAck{}, false
			}
			last, code, msg = b.appendRecords(l, epoch, rp.Records, lim, sp)
			appended := int64(0)
			if code == 0 {
				appended = int64(len(rp.Records))
			}
			release(appended)
		} else {
			_, epoch, _ := b.store.FSM().PartitionLeader(topic, rp.Partition)
			last, code, msg = b.appendRecords(l, max(epoch, 0), rp.Records, lim, sp)
		}
		sp.ErrorCode = code
		if msg != "" {
			sp.ErrorMessage = kmsg.StringPtr(msg)
		}
		if code != 0 {
			return pendingAck{}, false
		}
		w := pendingAck{part: sp, log: l, last: last}
		if req.Acks == -1 {
			w.lead = lead
		}
		return w, true
	}
}

// fail answers a partition whose records did not become durable.
func (w pendingAck) fail(err error) {
	w.part.BaseOffset = -1
	if errors.Is(err, replica.ErrDeposed) {
		w.part.ErrorCode = kerr.NotLeaderForPartition.Code
		w.part.ErrorMessage = kmsg.StringPtr(err.Error())
		return
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		w.part.ErrorCode = kerr.RequestTimedOut.Code
	case errors.Is(err, context.Canceled):
		// The broker is shutting down: the client retries on the next
		// leader.
		w.part.ErrorCode = kerr.NotLeaderForPartition.Code
		w.part.ErrorMessage = kmsg.StringPtr("broker shutting down")
	default:
		w.part.ErrorCode = kerr.KafkaStorageError.Code
		w.part.ErrorMessage = kmsg.StringPtr(err.Error())
	}
}

// maxMessageBytes is a topic's max.message.bytes: its override if set,
// else the default.
func (b *Broker) maxMessageBytes(override string, set bool) int64 {
	if set {
		return b.topicConfigInt(map[string]string{"max.message.bytes": override}, "max.message.bytes")
	}
	return b.topicConfigInt(nil, "max.message.bytes")
}

// appendLimits is what a topic's configs demand of every batch produced to
// it.
type appendLimits struct {
	tp       storage.TopicPartition // for error messages
	maxBytes int64                  // max.message.bytes
	// compact: cleanup.policy includes compact, so every record needs a
	// key. Only then are records decoded; other topics' batches are
	// checked by their headers and CRC alone.
	compact bool
	// txn is the transactional producer whose batches were verified
	// (verifyTxn); transactional batches of any other are refused.
	txn txnBatch
}

// appendRecords validates every batch of one partition's records and then
// appends them: all of them, or none if any fails. It returns the last
// offset appended, or an error code.
func (b *Broker) appendRecords(l *storage.Log, epoch int32, records []byte, lim appendLimits, sp *kmsg.ProduceResponseTopicPartition) (int64, int16, string) {
	maxBytes := lim.maxBytes
	if len(records) == 0 {
		return 0, kerr.CorruptMessage.Code, "no record batch"
	}
	type hb struct {
		b []byte
		h kafkaproto.BatchHeader
	}
	var batches []hb
	err := kafkaproto.SplitBatches(records, func(batch []byte, h kafkaproto.BatchHeader) error {
		if int64(len(batch)) > maxBytes {
			return fmt.Errorf("%w: %d bytes > max.message.bytes %d", errTooLarge, len(batch), maxBytes)
		}
		h, err := kafkaproto.ValidateBatch(batch)
		if err != nil {
			return err
		}
		if h.IsControl() {
			return errControl
		}
		if h.IsTransactional() && (!lim.txn.ok || h.ProducerID != lim.txn.pid || h.ProducerEpoch != lim.txn.epoch) {
			return errTransactional
		}
		batches = append(batches, hb{batch, h})
		return nil
	})
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge):
			return 0, kerr.MessageTooLarge.Code, err.Error()
		case errors.Is(err, kafkaproto.ErrUnsupportedMagic):
			return 0, kerr.UnsupportedForMessageFormat.Code, "only record batch v2 (magic 2) is supported"
		case errors.Is(err, errControl):
			return 0, kerr.InvalidRecord.Code, "clients may not write control batches"
		case errors.Is(err, errTransactional):
			return 0, kerr.InvalidRecord.Code, "a transactional batch of a producer other than the verified one"
		default:
			return 0, kerr.CorruptMessage.Code, err.Error()
		}
	}
	if lim.compact {
		// Forwarded produces are checked here too: on the leader, which
		// appends them.
		raw := make([][]byte, len(batches))
		for i, x := range batches {
			raw[i] = x.b
		}
		if code, msg := b.keys.check(raw, lim.tp, sp); code != 0 {
			return 0, code, msg
		}
	}
	var last int64
	for i, x := range batches {
		res, err := l.Append(x.b, x.h, epoch)
		if err != nil {
			switch {
			case errors.Is(err, storage.ErrOutOfOrderSequence):
				return 0, kerr.OutOfOrderSequenceNumber.Code, err.Error()
			case errors.Is(err, storage.ErrInvalidProducerEpoch):
				return 0, kerr.InvalidProducerEpoch.Code, err.Error()
			case errors.Is(err, storage.ErrClosed), errors.Is(err, fencing.ErrNotWriter), errors.Is(err, fencing.ErrLeaseExpired),
				errors.Is(err, fencing.ErrStaleEpoch), errors.Is(err, fencing.ErrUnknownEpoch):
				return 0, kerr.NotLeaderForPartition.Code, err.Error()
			default:
				return 0, kerr.KafkaStorageError.Code, err.Error()
			}
		}
		if i == 0 {
			sp.BaseOffset = res.BaseOffset
		}
		sp.LogStartOffset = res.LogStartOffset
		last = res.LastOffset
		if !res.Duplicate {
			b.m.produced(lim.tp, len(x.b), int(x.h.RecordCount))
		}
	}
	return last, 0, ""
}

var (
	errTooLarge      = errors.New("record batch too large")
	errTransactional = errors.New("transactional batch")
	errControl       = errors.New("control batch")
)

// txnVerifier answers a partition leader's KIP-890 part 1 check
// (docs/transactions.md, "Broker glue"): is topic/partition part of
// transactionalID's ongoing transaction at producer id pid and epoch?
// nil, or a *kerr.Error (possibly wrapped): INVALID_PRODUCER_ID_MAPPING,
// PRODUCER_FENCED, CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE (not added),
// NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE
// (txn.Coordinator.Verify's answers). The transaction coordinators'
// hosting provides it (Broker.txnVerify), asking the coordinator of
// transactionalID wherever it is.
type txnVerifier interface {
	Verify(ctx context.Context, transactionalID string, pid int64, epoch int16, topic string, partition int32) error
}

// txnBatch is the outcome of verifyTxn for one partition's records.
type txnBatch struct {
	checked bool // verifyTxn ran
	ok      bool // the records hold transactional batches of pid at epoch, verified
	pid     int64
	epoch   int16
}

// verifyTxn checks, on the partition's leader, the transactional batches
// of one partition's records before they are appended: a Produce with a
// transactional id, whose producer's transaction is not open on this
// partition yet, is verified with the transaction coordinator (KIP-890
// part 1), so a batch of a producer that did not add the partition in
// this epoch (a zombie, a late retry after an abort) is refused. A
// transaction already open here was verified when it began; the epoch
// check of every batch is storage's. The coordinator's retriable answers
// become NOT_ENOUGH_REPLICAS, as Kafka does for clients that do not know
// them on Produce, and PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH.
func (b *Broker) verifyTxn(rc *request, req *kmsg.ProduceRequest, topic string, partition int32, l *storage.Log, records []byte) (txnBatch, int16, string) {
	out := txnBatch{checked: true}
	h, err := kafkaproto.ParseBatchHeader(records)
	if err != nil || !h.IsTransactional() || h.IsControl() {
		return out, 0, "" // appendRecords answers what is wrong
	}
	switch {
	case req.TransactionID == nil:
		return out, kerr.InvalidRecord.Code, "a transactional batch in a Produce without a transactional id"
	case *req.TransactionID == "":
		return out, kerr.InvalidRequest.Code, "empty transactional id"
	case h.ProducerID < 0 || h.ProducerEpoch < 0:
		return out, kerr.InvalidRecord.Code, "a transactional batch without a producer id"
	}
	verifier := b.txnVerify.Load()
	if verifier == nil {
		return out, kerr.TransactionalIDAuthorizationFailed.Code, "transactions are not supported"
	}
	out.pid, out.epoch = h.ProducerID, h.ProducerEpoch
	for _, o := range l.OpenTransactions() {
		if o.ProducerID == h.ProducerID {
			out.ok = true
			return out, 0, ""
		}
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(rc.ctx(), timeout)
	defer cancel()
	if err := (*verifier).Verify(ctx, *req.TransactionID, h.ProducerID, h.ProducerEpoch, topic, partition); err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			return out, kerr.NotEnoughReplicas.Code, fmt.Sprintf("verify the transaction with its coordinator: %v", err)
		}
		switch ke {
		case kerr.ConcurrentTransactions, kerr.CoordinatorLoadInProgress, kerr.CoordinatorNotAvailable, kerr.NotCoordinator, kerr.RequestTimedOut:
			return out, kerr.NotEnoughReplicas.Code, fmt.Sprintf("verify the transaction with its coordinator: %v", err)
		case kerr.ProducerFenced:
			// Producers expect INVALID_PRODUCER_EPOCH on Produce (Kafka's
			// AddPartitionsToTxnManager maps it so).
			return out, kerr.InvalidProducerEpoch.Code, fmt.Sprintf("verify the transaction with its coordinator: %v", err)
		}
		return out, ke.Code, fmt.Sprintf("verify the transaction with its coordinator: %v", err)
	}
	out.ok = true
	return out, 0, ""
}

// keyCheck refuses records without a key in batches produced to compacted
// topics, as Kafka does (the cleaner could not keep or remove them).
type keyCheck struct {
	policies compactPolicies
	// decompressors recycles kafkaproto.Decompressors (their zstd
	// decoders are costly to build); concurrency 1 decoders hold no
	// goroutines, so the pool may drop them.
	decompressors sync.Pool
}

// check decodes every record of batches (decompressing them) and, if any
// has a null key, fills sp's record errors (Produce v8+: each keyless
// record's index among the partition's records, and Kafka's message) and
// returns INVALID_RECORD. A record section that does not decode is
// CORRUPT_MESSAGE.
func (k *keyCheck) check(batches [][]byte, tp storage.TopicPartition, sp *kmsg.ProduceResponseTopicPartition) (int16, string) {
	d, _ := k.decompressors.Get().(*kafkaproto.Decompressor)
	if d == nil {
		d = new(kafkaproto.Decompressor)
	}
	defer k.decompressors.Put(d)
	var errs []kmsg.ProduceResponseTopicPartitionErrorRecord
	index := int32(0)
	for _, batch := range batches {
		recs, err := d.Records(batch)
		if err != nil {
			return kerr.CorruptMessage.Code, fmt.Sprintf("decode the records of a batch for compacted topic partition %s: %v", tp, err)
		}
		for _, r := range recs {
			if r.Key == nil {
				e := kmsg.NewProduceResponseTopicPartitionErrorRecord()
				e.RelativeOffset = index
				e.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Compacted topic cannot accept message without key in topic partition %s.", tp))
				errs = append(errs, e)
			}
			index++
		}
	}
	if len(errs) == 0 {
		return 0, ""
	}
	sp.ErrorRecords = errs
	var first []string
	for _, e := range errs[:min(len(errs), 3)] {
		first = append(first, fmt.Sprintf("RecordError(batchIndex=%d, message='%s')", e.RelativeOffset, *e.ErrorMessage))
	}
	return kerr.InvalidRecord.Code, fmt.Sprintf("One or more records have been rejected due to %d record errors in total, and only showing the first three errors at most: [%s]",
		len(errs), strings.Join(first, ", "))
}
