package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Transactions on the partition side (docs/transactions.md, "Partition
// side"): producer state tracks each producer's open transaction, control
// batches (COMMIT/ABORT markers) close them, ABORTs go to the
// aborted-transaction index of the file holding the marker, and
// read_committed reads stop at the last stable offset.

// ErrCoordinatorFenced is fencing's: a marker's coordinator epoch is
// below the last one seen for its producer (TRANSACTION_COORDINATOR_FENCED).
var ErrCoordinatorFenced = fencing.ErrCoordinatorFenced

const (
	txnIndexSuffix = ".txnindex"
	// txnIndexEntrySize is Kafka's AbortedTxn layout: version i16,
	// producerId i64, firstOffset i64, lastOffset i64, lastStableOffset
	// i64.
	txnIndexEntrySize = 34

	// Batch header field positions (kafkaproto's layout).
	batchCRCOffset        = 17
	batchAttributesOffset = 21
	batchProducerIDOffset = 43
	batchEpochOffset      = 51
)

// AbortedTxn is one aborted transaction a read_committed fetch must
// filter: its producer and first offset (Fetch's AbortedTransactions).
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
}

// abortedEntry is one entry of a file's aborted-transaction index: the
// transaction's producer and offsets (lastOffset is the ABORT marker's)
// and the last stable offset once the marker was written (the first
// offset of another open transaction, else the marker's offset + 1).
type abortedEntry struct {
	pid, first, last, lso int64
}

// txnMarker is a control batch's decoded record.
type txnMarker struct {
	commit           bool
	coordinatorEpoch int32
}

// parseMarker decodes the one record of control batch b (header h):
// ControlRecordKey{0, ABORT | COMMIT}, EndTxnMarker{0, coordinatorEpoch}.
// ok is false for a control batch without records (emptied by a
// cleaning).
func parseMarker(b []byte, h *kafkaproto.BatchHeader) (m txnMarker, ok bool, err error) {
	if h.RecordCount == 0 {
		return m, false, nil
	}
	var d kafkaproto.Decompressor
	defer d.Close()
	recs, err := d.Records(b)
	if err != nil {
		return m, false, fmt.Errorf("control batch at %d: %w", h.BaseOffset, err)
	}
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(recs[0].Key); err != nil {
		return m, false, fmt.Errorf("control batch at %d: key: %v: %w", h.BaseOffset, err, kafkaproto.ErrCorruptBatch)
	}
	switch k.Type {
	case kmsg.ControlRecordKeyTypeAbort, kmsg.ControlRecordKeyTypeCommit:
	default:
		return m, false, fmt.Errorf("control batch at %d: record type %d: %w", h.BaseOffset, k.Type, kafkaproto.ErrCorruptBatch)
	}
	var v kmsg.EndTxnMarker
	if err := v.ReadFrom(recs[0].Value); err != nil {
		return m, false, fmt.Errorf("control batch at %d: value: %v: %w", h.BaseOffset, err, kafkaproto.ErrCorruptBatch)
	}
	return txnMarker{commit: k.Type == kmsg.ControlRecordKeyTypeCommit, coordinatorEpoch: v.CoordinatorEpoch}, true, nil
}

// buildMarker builds the control batch of a COMMIT or ABORT marker of
// producer pid at epoch (base offset 0; Append assigns it).
func buildMarker(pid int64, epoch int16, coordinatorEpoch int32, commit bool, ts int64) []byte {
	k := kmsg.ControlRecordKey{Type: kmsg.ControlRecordKeyTypeAbort}
	if commit {
		k.Type = kmsg.ControlRecordKeyTypeCommit
	}
	v := kmsg.EndTxnMarker{CoordinatorEpoch: coordinatorEpoch}
	b := kafkaproto.AppendBatch(nil, ts, []kafkaproto.KV{{Key: k.AppendTo(nil), Value: v.AppendTo(nil)}})
	binary.BigEndian.PutUint16(b[batchAttributesOffset:], uint16(kafkaproto.AttrControl|kafkaproto.AttrTransactional))
	binary.BigEndian.PutUint64(b[batchProducerIDOffset:], uint64(pid))
	binary.BigEndian.PutUint16(b[batchEpochOffset:], uint16(epoch))
	binary.BigEndian.PutUint32(b[batchCRCOffset:], crc32.Checksum(b[batchAttributesOffset:], castagnoli))
	return b
}

// applyMarker closes pid's transaction in ps for a marker at off; an
// ABORT yields its index entry (a marker without an open transaction
// spans only itself, as Kafka's).
func applyMarker(ps *fencing.ProducerStates, pid int64, epoch int16, m txnMarker, off, ts int64) (abortedEntry, bool) {
	lso := ps.FirstUnstableOffset(pid)
	if lso < 0 {
		lso = off + 1
	}
	first := ps.EndTxn(pid, epoch, m.coordinatorEpoch, ts)
	if m.commit {
		return abortedEntry{}, false
	}
	if first < 0 {
		first = off
	}
	return abortedEntry{pid: pid, first: first, last: off, lso: lso}, true
}

// replayBatch applies one stored batch to producer state as its append
// did: sequences (from the offset range, which a cleaning keeps),
// transactions opened by transactional data batches, and closed by
// markers, whose bytes batch reads. A batch without records (emptied by a
// cleaning, below the first unstable offset when cleaned) opens nothing.
// A control batch whose record does not decode is skipped; Append and
// AppendReplica never store one.
func replayBatch(ps *fencing.ProducerStates, h *kafkaproto.BatchHeader, batch func() ([]byte, error)) (abortedEntry, bool, error) {
	if h.ProducerID < 0 {
		return abortedEntry{}, false, nil
	}
	if h.IsControl() {
		if h.RecordCount == 0 {
			return abortedEntry{}, false, nil
		}
		b, err := batch()
		if err != nil {
			return abortedEntry{}, false, err
		}
		m, ok, err := parseMarker(b, h)
		if err != nil || !ok {
			return abortedEntry{}, false, nil
		}
		e, aborted := applyMarker(ps, h.ProducerID, h.ProducerEpoch, m, h.BaseOffset, h.MaxTimestamp)
		return e, aborted, nil
	}
	txn := h.IsTransactional() && h.RecordCount > 0
	if h.BaseSequence >= 0 {
		ps.UpdateTxn(h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.LastOffsetDelta+1, h.BaseOffset, h.LastOffset(), h.MaxTimestamp, txn)
	} else if txn {
		ps.BeginTxn(h.ProducerID, h.ProducerEpoch, h.BaseOffset)
	}
	return abortedEntry{}, false, nil
}

// fileBatch reads the whole batch h at pos of f.
func fileBatch(f File, h *kafkaproto.BatchHeader, pos int64) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := readBatch(f, pos, h)
		if err != nil {
			return nil, fmt.Errorf("read batch at %d: %w", pos, err)
		}
		return b, nil
	}
}

func encodeTxnIndex(es []abortedEntry) []byte {
	b := make([]byte, 0, len(es)*txnIndexEntrySize)
	for _, e := range es {
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(e.pid))
		b = binary.BigEndian.AppendUint64(b, uint64(e.first))
		b = binary.BigEndian.AppendUint64(b, uint64(e.last))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lso))
	}
	return b
}

// decodeTxnIndex parses a sealed file's aborted-transaction index and
// checks it against the file [base, next): version 0, markers inside the
// file in increasing order, first <= last, 0 <= lso <= last + 1 (the last
// stable offset may lie below first: another transaction was open from
// earlier when the ABORT was written).
func decodeTxnIndex(b []byte, base, next int64) ([]abortedEntry, error) {
	if len(b)%txnIndexEntrySize != 0 {
		return nil, fmt.Errorf("%w: transaction index size %d", errBadIndex, len(b))
	}
	es := make([]abortedEntry, len(b)/txnIndexEntrySize)
	for i := range es {
		p := b[i*txnIndexEntrySize:]
		e := abortedEntry{
			pid:   int64(binary.BigEndian.Uint64(p[2:])),
			first: int64(binary.BigEndian.Uint64(p[10:])),
			last:  int64(binary.BigEndian.Uint64(p[18:])),
			lso:   int64(binary.BigEndian.Uint64(p[26:])),
		}
		if binary.BigEndian.Uint16(p) != 0 || e.pid < 0 || e.first < 0 || e.first > e.last || e.last < base || e.last >= next ||
			e.lso < 0 || e.lso > e.last+1 || (i > 0 && e.last <= es[i-1].last) {
			return nil, fmt.Errorf("%w: transaction index entry %d", errBadIndex, i)
		}
		es[i] = e
	}
	return es, nil
}

// loadTxnIndex loads sealed segment s's aborted-transaction index; false
// means missing or inconsistent (recovery rebuilds it).
func (l *Log) loadTxnIndex(s *segment) bool {
	b, err := readWhole(l.fs, segName(l.dir, s.base, txnIndexSuffix))
	if err != nil {
		if !isNotExist(err) {
			l.logger().Warn().Err(err).Int64("base", s.base).Msg("unreadable transaction index")
		}
		return false
	}
	es, err := decodeTxnIndex(b, s.base, s.next)
	if err != nil {
		l.logger().Warn().Err(err).Int64("base", s.base).Msg("bad transaction index")
		return false
	}
	s.aborted = es
	return true
}

// trackAbortedLocked adds an ABORT's entry to the active file's index.
func (l *Log) trackAbortedLocked(e abortedEntry) {
	seg := l.active()
	seg.aborted = append(seg.aborted, e)
}

// LastStableOffset is the offset below which every transaction is
// complete and the high watermark has passed: min(the first offset of
// every open transaction, HW). read_committed consumers read below it.
// A transaction whose first offset retention or DeleteRecords removed
// holds it at the log start offset (as Kafka's firstUnstableOffset).
func (l *Log) LastStableOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lsoLocked()
}

func (l *Log) lsoLocked() int64 {
	if first := l.producers.FirstUnstableOffset(-1); first >= 0 {
		return min(max(first, l.logStart), l.hw)
	}
	return l.hw
}

// FirstUnstableOffset is the first offset of the oldest open transaction
// (at least the log start offset); ok is false when none is open. The
// cleaner stays below it; a roll records it for the sealed segment.
func (l *Log) FirstUnstableOffset() (offset int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.producers.FirstUnstableOffset(-1)
	if first < 0 {
		return -1, false
	}
	return max(first, l.logStart), true
}

// Producers returns a copy of every producer's state, by producer id
// (DescribeProducers: epoch, last sequence and timestamp, coordinator
// epoch, open transaction's first offset).
func (l *Log) Producers() []fencing.ProducerEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.producers.Entries()
}

// OpenTransactions lists the producers with an open transaction and its
// first offset, by first offset (metrics, DescribeProducers).
func (l *Log) OpenTransactions() []fencing.OpenTxn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.producers.OpenTransactions()
}

// ReadCommitted is Read for read_committed consumers: the batches end
// below the last stable offset instead of the high watermark.
func (l *Log) ReadCommitted(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return l.read(offset, maxBytes, minOneBatch, boundLSO)
}

// ReadSectionCommitted is ReadSection bounded by the last stable offset.
func (l *Log) ReadSectionCommitted(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return l.readSection(offset, maxBytes, minOneBatch, boundLSO)
}

// AbortedTransactions lists the aborted transactions a read_committed
// fetch of [from, to) must filter: those whose first offset is below to
// and whose ABORT marker is at or above from, in marker order. As
// Kafka's collectAbortedTxns, it reads the index of the file holding
// from and then later files' (a transaction may be aborted in a later
// file) until an entry's last stable offset reaches to, which no later
// transaction overlapping the range can follow.
func (l *Log) AbortedTransactions(from, to int64) ([]AbortedTxn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("storage: aborted transactions of %s: %w", l.tp, ErrClosed)
	}
	var out []AbortedTxn
	if from >= to || from >= l.leo {
		return out, nil
	}
	start := 0
	if from > l.logStart {
		start = l.segIndexLocked(from)
	}
	for _, s := range l.segs[start:] {
		for _, e := range s.aborted {
			if e.last >= from && e.first < to {
				out = append(out, AbortedTxn{ProducerID: e.pid, FirstOffset: e.first})
			}
			if e.lso >= to {
				return out, nil
			}
		}
	}
	return out, nil
}

// AppendMarker writes the COMMIT (commit) or ABORT marker of producer
// pid's transaction at epoch, written by a transaction coordinator at
// coordinatorEpoch, as a control batch through Append's checks (the
// writer's lease and epoch, fsync policy, waiters). A marker with a
// coordinator epoch below the producer's last is refused
// (ErrCoordinatorFenced), one with a producer epoch below its current
// epoch too (ErrInvalidProducerEpoch); a marker for a producer without
// an open transaction is still written, as Kafka's. It returns the
// marker's offset.
func (l *Log) AppendMarker(pid int64, epoch int16, coordinatorEpoch int32, commit bool, leaderEpoch int32) (int64, error) {
	if pid < 0 {
		return -1, fmt.Errorf("storage: marker for %s: producer id %d: %w", l.tp, pid, kafkaproto.ErrCorruptBatch)
	}
	b := buildMarker(pid, epoch, coordinatorEpoch, commit, l.now().UnixMilli())
	h, err := kafkaproto.ParseBatchHeader(b)
	if err != nil {
		return -1, fmt.Errorf("storage: marker for %s: %w", l.tp, err)
	}
	res, err := l.Append(b, h, leaderEpoch)
	if err != nil {
		return -1, err
	}
	return res.BaseOffset, nil
}
