package broker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// The transaction and share coordinators' logs (__transaction_state,
// __share_group_state): created on first use, replayed on load.

// ensureCoordinatorTopic creates the coordinators' topic name when
// missing: internal, compacted, with segments of segBytes, rf replicas
// (0: metadata.AutoReplicationFactor), placed by the controller over the
// live brokers; reconcile runs once it is created (createInternalTopic).
func (b *Broker) ensureCoordinatorTopic(ctx context.Context, name string, partitions, rf int32, segBytes int64, reconcile func()) (metadata.Topic, error) {
	if t, ok := b.store.FSM().Topic(name); ok {
		return t, nil
	}
	id, err := newTopicID()
	if err != nil {
		return metadata.Topic{}, err
	}
	r := int16(rf)
	if r == 0 {
		r = metadata.AutoReplicationFactor
	}
	cmd := metadata.CreateTopic{Name: name, ID: id, Partitions: partitions, Internal: true, ReplicationFactor: r,
		Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": strconv.FormatInt(segBytes, 10)}}
	return b.createInternalTopic(ctx, cmd, reconcile)
}

// replayLog feeds every record of l's data batches, in order, to apply
// and returns how many it fed; control batches are passed over. It loads
// the transaction and share coordinators (the group coordinator walks
// __consumer_offsets itself, markers included: replayOffsets).
func replayLog(l *storage.Log, apply func(key, value []byte) error) (int, error) {
	n := 0
	_, err := walkLog(l, func(h kafkaproto.BatchHeader, recs []kafkaproto.Record) error {
		if h.IsControl() {
			return nil
		}
		for _, r := range recs {
			if err := apply(r.Key, r.Value); err != nil {
				return fmt.Errorf("record %d: %w", r.Offset, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// walkLog hands each batch of l, in order, with its records not handed
// before (a read may start inside a batch), to fn, and returns the offset
// it read to. A replicated log is read to its end: a new leader's own
// high watermark may lag the one its predecessor acknowledged under, and
// everything in its log is committed (sealed, or truncated on taking
// over); an unreplicated one to its high watermark.
func walkLog(l *storage.Log, fn func(h kafkaproto.BatchHeader, recs []kafkaproto.Record) error) (int64, error) {
	var d kafkaproto.Decompressor
	defer d.Close()
	end, read := l.HighWatermark(), l.Read
	if l.Replicated() {
		end, read = l.LogEndOffset(), l.ReadUncommitted
	}
	for off := l.LogStartOffset(); off < end; {
		res, err := read(off, 1<<20, true)
		if err != nil {
			return end, err
		}
		if len(res.Data) == 0 {
			break
		}
		err = kafkaproto.SplitBatches(res.Data, func(batch []byte, h kafkaproto.BatchHeader) error {
			recs, err := d.Records(batch)
			if err != nil {
				return fmt.Errorf("batch at %d: %w", h.BaseOffset, err)
			}
			for len(recs) > 0 && recs[0].Offset < off {
				recs = recs[1:]
			}
			if err := fn(h, recs); err != nil {
				return err
			}
			off = h.LastOffset() + 1
			return nil
		})
		if err != nil {
			return end, err
		}
	}
	return end, nil
}
