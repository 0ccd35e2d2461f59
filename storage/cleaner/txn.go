package cleaner

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Transactions (docs/compaction.md, "Transactions"). A transaction's fate
// is decided from the bytes of the range alone, so every participant
// agrees: a transactional data batch of producer P at offset o belongs to
// P's first marker after o in the range; there is none when the marker is
// at or past UpTo ("undecided").

// txnMarker is one COMMIT or ABORT control batch of a producer.
type txnMarker struct {
	off    int64
	commit bool
}

// pendingKey is a keyed record of a transaction not decided yet in pass 1.
type pendingKey struct {
	h   keyHash
	off int64
}

// fate is what happens to a transactional data batch.
type fate int

const (
	fatePlain     fate = iota // not transactional
	fateCommitted             // its marker is a COMMIT: plain data
	fateAborted               // its marker is an ABORT: its records go
	fateUndecided             // no marker in the range: kept as it is
)

// marker decodes control batch b's record as storage does when it replays
// a log (storage/txn.go parseMarker): ok is false for a control batch
// that is no transaction marker storage would apply (no producer id, no
// records, a record that does not decode, another control type); such a
// batch is passed through and closes nothing.
func (c *cleaner) marker(b []byte, h *kafkaproto.BatchHeader) (m txnMarker, ok bool) {
	if h.ProducerID < 0 || h.RecordCount == 0 {
		return m, false
	}
	if err := c.records(b, h); err != nil || len(c.recs) == 0 {
		return m, false
	}
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(c.recs[0].Key); err != nil {
		return m, false
	}
	if k.Type != kmsg.ControlRecordKeyTypeAbort && k.Type != kmsg.ControlRecordKeyTypeCommit {
		return m, false
	}
	var v kmsg.EndTxnMarker
	if err := v.ReadFrom(c.recs[0].Value); err != nil {
		return m, false
	}
	return txnMarker{off: h.BaseOffset, commit: k.Type == kmsg.ControlRecordKeyTypeCommit}, true
}

// isTxnData reports whether h is a transactional data batch of a producer.
func isTxnData(h *kafkaproto.BatchHeader) bool {
	return !h.IsControl() && h.IsTransactional() && h.ProducerID >= 0
}

// pass1Marker applies a marker read in pass 1: a COMMIT makes its
// transaction's keyed records supersede older ones, an ABORT drops them.
func (c *cleaner) pass1Marker(pid int64, m txnMarker) error {
	c.markers[pid] = append(c.markers[pid], m)
	pend := c.pending[pid]
	delete(c.pending, pid)
	if !m.commit {
		return nil
	}
	for _, e := range pend {
		if err := c.keys.put(e.h, e.off); err != nil {
			return err
		}
	}
	return nil
}

// fateOf decides a data batch in pass 2: its producer's first marker
// after it in the range.
func (c *cleaner) fateOf(h *kafkaproto.BatchHeader) fate {
	if !isTxnData(h) {
		return fatePlain
	}
	ms, i := c.markers[h.ProducerID], c.cursor[h.ProducerID]
	for i < len(ms) && ms[i].off < h.BaseOffset {
		i++
	}
	c.cursor[h.ProducerID] = i
	switch {
	case i == len(ms):
		return fateUndecided
	case ms[i].commit:
		return fateCommitted
	}
	return fateAborted
}

// markerMayGo reports whether marker m of producer pid (header h) may be
// removed: its horizon passed (the tombstones' one), no batch of its
// transaction was written, and it is no chain segment's last batch.
func (c *cleaner) markerMayGo(pid int64, h *kafkaproto.BatchHeader) bool {
	return !c.txnOut[pid] && c.tombstoneMayGo(h.BaseOffset) && !c.segmentLast(h)
}
