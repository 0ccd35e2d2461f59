package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/storage"
)

// TxnOffsetCommit 0-3 (KIP-447 member id, generation and instance id
// from v3): the offsets are written to the group's __consumer_offsets
// partition as records of the producer's transaction and held pending
// in the group coordinator until the transaction's marker on that
// partition (docs/transactions.md). Group requests run in connection
// order (conn.go: inGroupOrder).
func apiTxnOffsetCommit() api {
	return api{key: kmsg.TxnOffsetCommit, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.TxnOffsetCommitRequest)
		// WRITE on the transactional id, READ on the group (each
		// failing every partition), READ on each topic (failing its
		// partitions, the others committed).
		code := rc.txnDenied(auth.OpWrite, req.TransactionalID)
		if code == 0 {
			code = rc.groupDenied(auth.OpRead, req.Group)
		}
		if code != 0 {
			return txnOffsetCommitErrors(req.Topics, code, req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)), nil
		}
		var allowed, denied []kmsg.TxnOffsetCommitRequestTopic
		for _, t := range req.Topics {
			if rc.topicDenied(auth.OpRead, t.Topic) != 0 {
				denied = append(denied, t)
			} else {
				allowed = append(allowed, t)
			}
		}
		if len(denied) > 0 && len(allowed) == 0 {
			return txnOffsetCommitErrors(denied, kerr.TopicAuthorizationFailed.Code, req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)), nil
		}
		sub := *req
		sub.Topics = allowed
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return txnOffsetCommitErrors(denied, kerr.TopicAuthorizationFailed.Code, b.coordinatorFor(req.Group).TxnOffsetCommit(rc.groupCtx(), &sub))
		})
	}}
}

// txnOffsetCommitErrors adds topics to resp with every partition answered
// code.
func txnOffsetCommitErrors(topics []kmsg.TxnOffsetCommitRequestTopic, code int16, resp *kmsg.TxnOffsetCommitResponse) *kmsg.TxnOffsetCommitResponse {
	for _, t := range topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// PersistTxn implements groups.TxnPersister: Persist with the records in
// one transactional batch of producer pid at epoch (no sequence numbers,
// as Kafka's coordinator writes them).
func (p *offsetsLog) PersistTxn(ctx context.Context, pid int64, epoch int16, recs []groups.Record) error {
	kvs := make([]kafkaproto.KV, len(recs))
	for i, r := range recs {
		kvs[i] = kafkaproto.KV{Key: r.Key, Value: r.Value}
	}
	lp, leaderEpoch, release, err := p.begin(ctx)
	if err != nil {
		return err
	}
	batch := transactionalBatch(kafkaproto.AppendBatch(nil, p.now().UnixMilli(), kvs), pid, epoch)
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		release(0)
		return fmt.Errorf("broker: encode transactional group records: %w", err)
	}
	p.mu.Lock()
	res, err := p.log.Append(batch, h, leaderEpoch)
	p.mu.Unlock()
	if err != nil {
		release(0)
		return fmt.Errorf("broker: persist transactional group records: %w", err)
	}
	release(int64(len(batch)))
	if err := p.wait(ctx, lp, res.LastOffset); err != nil {
		return fmt.Errorf("broker: persist transactional group records: %w", err)
	}
	return nil
}

// transactionalBatch makes batch (kafkaproto.AppendBatch's) a
// transactional batch of producer pid at epoch, without sequence
// numbers.
func transactionalBatch(batch []byte, pid int64, epoch int16) []byte {
	const (
		crcAt, attrsAt, pidAt, epochAt = 17, 21, 43, 51
	)
	binary.BigEndian.PutUint16(batch[attrsAt:], binary.BigEndian.Uint16(batch[attrsAt:])|kafkaproto.AttrTransactional)
	binary.BigEndian.PutUint64(batch[pidAt:], uint64(pid))
	binary.BigEndian.PutUint16(batch[epochAt:], uint16(epoch))
	binary.BigEndian.PutUint32(batch[crcAt:], crc32.Checksum(batch[attrsAt:], crc32.MakeTable(crc32.Castagnoli)))
	return batch
}

// offsetsMarkerCommitted tells the group coordinator of __consumer_offsets
// partition p, if this node hosts it, that producer pid's COMMIT
// (commit) or ABORT marker was appended there and is committed (the
// high watermark covers it): the producer's pending transactional
// offsets become committed offsets or are dropped. WriteTxnMarkers calls
// it for every marker it writes to __consumer_offsets; a coordinator
// loaded later sees the marker in the log (replayOffsets).
func (b *Broker) offsetsMarkerCommitted(p int32, pid int64, commit bool) {
	b.gc.mu.Lock()
	c := b.gc.parts[p]
	b.gc.mu.Unlock()
	if c != nil {
		c.CompleteTxn(pid, commit)
	}
}

// replayControl applies a __consumer_offsets control batch's marker to
// c (replayOffsets).
func replayControl(c *groups.Coordinator, h kafkaproto.BatchHeader, recs []kafkaproto.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(recs[0].Key); err != nil {
		return fmt.Errorf("control record at %d: %w", recs[0].Offset, err)
	}
	switch k.Type {
	case kmsg.ControlRecordKeyTypeCommit:
		c.CompleteTxn(h.ProducerID, true)
	case kmsg.ControlRecordKeyTypeAbort:
		c.CompleteTxn(h.ProducerID, false)
	}
	return nil
}

// replayMarkersSince applies to c the transaction markers appended to
// __consumer_offsets log l from offset from (where the replay that loaded
// c ended) to its end: WriteTxnMarkers found no coordinator to tell about
// them. Applying a marker twice changes nothing.
func replayMarkersSince(l *storage.Log, c *groups.Coordinator, from int64) error {
	var d kafkaproto.Decompressor
	defer d.Close()
	read := l.Read
	if l.Replicated() {
		read = l.ReadUncommitted
	}
	for off := from; off < l.LogEndOffset(); {
		res, err := read(off, 1<<20, true)
		if err != nil {
			return fmt.Errorf("broker: read %s from %d: %w", offsetsTopic, off, err)
		}
		if len(res.Data) == 0 {
			return nil
		}
		err = kafkaproto.SplitBatches(res.Data, func(batch []byte, h kafkaproto.BatchHeader) error {
			if h.IsControl() && h.BaseOffset >= off {
				recs, err := d.Records(batch)
				if err != nil {
					return fmt.Errorf("batch at %d: %w", h.BaseOffset, err)
				}
				if err := replayControl(c, h, recs); err != nil {
					return err
				}
			}
			off = h.LastOffset() + 1
			return nil
		})
		if err != nil {
			return fmt.Errorf("broker: transaction markers of %s: %w", offsetsTopic, err)
		}
	}
	return nil
}
