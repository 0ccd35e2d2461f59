package fencing

import (
	"errors"
	"math"
	"sort"
)

// Errors returned by ProducerStates.Check. Callers map them to the Kafka
// error codes INVALID_PRODUCER_EPOCH and OUT_OF_ORDER_SEQUENCE_NUMBER.
var (
	ErrInvalidProducerEpoch = errors.New("fencing: invalid producer epoch")
	ErrOutOfOrderSequence   = errors.New("fencing: out of order sequence number")
	// ErrCoordinatorFenced: a transaction marker carries a coordinator
	// epoch below the last one seen for its producer (Kafka's
	// TRANSACTION_COORDINATOR_FENCED).
	ErrCoordinatorFenced = errors.New("fencing: transaction coordinator fenced")
)

// NoTxn is ProducerEntry.TxnFirstOffset when the producer has no open
// transaction, and CoordinatorEpoch before its first marker.
const NoTxn = -1

// MaxRetainedBatches is how many of a producer's most recent batches are
// remembered for duplicate detection (Kafka's
// max.in.flight.requests.per.connection limit for idempotence).
const MaxRetainedBatches = 5

// ProducerBatch is one accepted batch of an idempotent producer.
type ProducerBatch struct {
	FirstSeq, LastSeq       int32
	FirstOffset, LastOffset int64
}

// ProducerEntry is the state of one producer ID.
type ProducerEntry struct {
	ProducerID int64
	Epoch      int16
	// Batches holds the last MaxRetainedBatches accepted batches, oldest
	// first.
	Batches       []ProducerBatch
	LastTimestamp int64
	// TxnFirstOffset is the first offset of the producer's open
	// transaction in this partition, NoTxn when none is open.
	TxnFirstOffset int64
	// CoordinatorEpoch is the coordinator epoch of the last transaction
	// marker written for the producer, NoTxn (-1) before the first.
	CoordinatorEpoch int32
}

// ProducerStates tracks, per producer ID, the epoch and the last accepted
// batches, to reject stale epochs and out-of-order sequences and to detect
// retried duplicates.
//
// ProducerStates is not safe for concurrent use; the owning log's mutex
// guards it.
type ProducerStates struct {
	m map[int64]*ProducerEntry
	// txns holds the entries with an open transaction (TxnFirstOffset
	// >= 0), so that the LSO costs O(open transactions), not O(producers).
	txns map[int64]*ProducerEntry
}

// NewProducerStates returns an empty ProducerStates.
func NewProducerStates() *ProducerStates {
	return &ProducerStates{m: make(map[int64]*ProducerEntry), txns: make(map[int64]*ProducerEntry)}
}

// LastSeq is the sequence number of the last record of a batch of count
// records starting at firstSeq; sequences wrap from MaxInt32 to 0.
func LastSeq(firstSeq, count int32) int32 {
	return int32((int64(firstSeq) + int64(count) - 1) % (math.MaxInt32 + 1))
}

// nextSeq is the sequence following seq.
func nextSeq(seq int32) int32 {
	if seq == math.MaxInt32 {
		return 0
	}
	return seq + 1
}

// Check validates a batch from producer pid (epoch, firstSeq, recordCount).
// It returns (dup, nil) when the batch duplicates one of the last
// MaxRetainedBatches accepted batches (same epoch, same FirstSeq and
// LastSeq); the caller then answers success with dup's offsets. It returns
// ErrInvalidProducerEpoch when epoch is below the known epoch, and
// ErrOutOfOrderSequence when the sequence does not follow the last accepted
// one (wrapping at MaxInt32 to 0), or when a new epoch or an unknown producer
// does not start at 0. (nil, nil) means: append, then call Update.
func (s *ProducerStates) Check(pid int64, epoch int16, firstSeq int32, count int32) (*ProducerBatch, error) {
	if count <= 0 || firstSeq < 0 {
		return nil, ErrOutOfOrderSequence
	}
	e, ok := s.m[pid]
	if !ok || len(e.Batches) == 0 {
		if firstSeq != 0 {
			return nil, ErrOutOfOrderSequence
		}
		return nil, nil
	}
	switch {
	case epoch < e.Epoch:
		return nil, ErrInvalidProducerEpoch
	case epoch > e.Epoch:
		if firstSeq != 0 {
			return nil, ErrOutOfOrderSequence
		}
		return nil, nil
	}
	last := LastSeq(firstSeq, count)
	for i := range e.Batches {
		b := &e.Batches[i]
		if b.FirstSeq == firstSeq && b.LastSeq == last {
			dup := *b
			return &dup, nil
		}
	}
	if firstSeq != nextSeq(e.Batches[len(e.Batches)-1].LastSeq) {
		return nil, ErrOutOfOrderSequence
	}
	return nil, nil
}

// Update records an accepted (appended) batch. A higher epoch than the known
// one resets the producer's remembered batches.
func (s *ProducerStates) Update(pid int64, epoch int16, firstSeq int32, count int32, firstOffset, lastOffset int64, ts int64) {
	s.UpdateTxn(pid, epoch, firstSeq, count, firstOffset, lastOffset, ts, false)
}

// entry returns pid's entry, creating it at epoch if unknown.
func (s *ProducerStates) entry(pid int64, epoch int16) *ProducerEntry {
	e, ok := s.m[pid]
	if !ok {
		e = &ProducerEntry{ProducerID: pid, Epoch: epoch, Batches: make([]ProducerBatch, 0, MaxRetainedBatches),
			TxnFirstOffset: NoTxn, CoordinatorEpoch: NoTxn}
		s.m[pid] = e
	}
	return e
}

// UpdateTxn is Update for a batch that may be transactional: a
// transactional batch opens the producer's transaction at firstOffset if
// none is open (Kafka's currentTxnFirstOffset).
func (s *ProducerStates) UpdateTxn(pid int64, epoch int16, firstSeq int32, count int32, firstOffset, lastOffset int64, ts int64, transactional bool) {
	e := s.entry(pid, epoch)
	if transactional && e.TxnFirstOffset < 0 {
		e.TxnFirstOffset = firstOffset
		s.txns[pid] = e
	}
	if epoch != e.Epoch {
		e.Epoch = epoch
		e.Batches = e.Batches[:0]
	}
	if len(e.Batches) == MaxRetainedBatches {
		copy(e.Batches, e.Batches[1:])
		e.Batches = e.Batches[:MaxRetainedBatches-1]
	}
	e.Batches = append(e.Batches, ProducerBatch{
		FirstSeq: firstSeq, LastSeq: LastSeq(firstSeq, count),
		FirstOffset: firstOffset, LastOffset: lastOffset,
	})
	e.LastTimestamp = ts
}

// BeginTxn opens pid's transaction at firstOffset if none is open, for a
// transactional batch without sequence numbers (Update does it for the
// others).
func (s *ProducerStates) BeginTxn(pid int64, epoch int16, firstOffset int64) {
	e := s.entry(pid, epoch)
	if e.TxnFirstOffset < 0 {
		e.TxnFirstOffset = firstOffset
		s.txns[pid] = e
	}
}

// CheckMarker validates a transaction marker (control batch) of producer
// pid at epoch written by a coordinator at coordinatorEpoch:
// ErrInvalidProducerEpoch below the producer's epoch, ErrCoordinatorFenced
// below the coordinator epoch of its last marker. An unknown producer, or
// one without an open transaction, passes (the marker is still written).
func (s *ProducerStates) CheckMarker(pid int64, epoch int16, coordinatorEpoch int32) error {
	e, ok := s.m[pid]
	if !ok {
		return nil
	}
	if epoch < e.Epoch {
		return ErrInvalidProducerEpoch
	}
	if coordinatorEpoch < e.CoordinatorEpoch {
		return ErrCoordinatorFenced
	}
	return nil
}

// EndTxn applies an appended transaction marker of pid at epoch: it
// closes the open transaction (returning its first offset, NoTxn if none
// was open), records coordinatorEpoch and, as Kafka, a newer epoch
// (forgetting the batches of the old one).
func (s *ProducerStates) EndTxn(pid int64, epoch int16, coordinatorEpoch int32, ts int64) (firstOffset int64) {
	e := s.entry(pid, epoch)
	if epoch > e.Epoch {
		e.Epoch = epoch
		e.Batches = e.Batches[:0]
	}
	firstOffset = e.TxnFirstOffset
	delete(s.txns, pid)
	e.TxnFirstOffset = NoTxn
	e.CoordinatorEpoch = coordinatorEpoch
	e.LastTimestamp = max(e.LastTimestamp, ts)
	return firstOffset
}

// OpenTxns is the number of producers with an open transaction.
func (s *ProducerStates) OpenTxns() int { return len(s.txns) }

// FirstUnstableOffset is the smallest first offset of an open transaction
// other than exclude's (-1: none excluded); NoTxn when there is none.
func (s *ProducerStates) FirstUnstableOffset(exclude int64) int64 {
	first := int64(NoTxn)
	for pid, e := range s.txns {
		if pid != exclude && e.TxnFirstOffset >= 0 && (first < 0 || e.TxnFirstOffset < first) {
			first = e.TxnFirstOffset
		}
	}
	return first
}

// OpenTxn is one producer's open transaction.
type OpenTxn struct {
	ProducerID  int64
	FirstOffset int64
}

// OpenTransactions lists the open transactions, by first offset.
func (s *ProducerStates) OpenTransactions() []OpenTxn {
	out := make([]OpenTxn, 0, len(s.txns))
	for pid, e := range s.txns {
		out = append(out, OpenTxn{ProducerID: pid, FirstOffset: e.TxnFirstOffset})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstOffset < out[j].FirstOffset })
	return out
}

// Entries returns a deep copy of every producer's state, sorted by
// producer ID.
func (s *ProducerStates) Entries() []ProducerEntry {
	out := make([]ProducerEntry, 0, len(s.m))
	for _, e := range s.m {
		c := *e
		c.Batches = append([]ProducerBatch(nil), e.Batches...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProducerID < out[j].ProducerID })
	return out
}

// Load replaces the state with a deep copy of entries, as Entries
// returns them (TxnFirstOffset NoTxn when no transaction is open). Only
// the newest MaxRetainedBatches batches of an entry are kept.
func (s *ProducerStates) Load(entries []ProducerEntry) {
	s.m = make(map[int64]*ProducerEntry, len(entries))
	s.txns = make(map[int64]*ProducerEntry)
	for _, e := range entries {
		c := e
		bs := e.Batches
		if len(bs) > MaxRetainedBatches {
			bs = bs[len(bs)-MaxRetainedBatches:]
		}
		c.Batches = make([]ProducerBatch, len(bs), MaxRetainedBatches)
		copy(c.Batches, bs)
		s.m[e.ProducerID] = &c
		if c.TxnFirstOffset >= 0 {
			s.txns[e.ProducerID] = &c
		} else {
			delete(s.txns, e.ProducerID)
		}
	}
}

// Len is the number of known producers.
func (s *ProducerStates) Len() int { return len(s.m) }
