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
// and returns how many it fed; control batches are passed over. Like
// replayOffsets, a replicated log is replayed to its end: a new leader's
// own high watermark may lag its predecessor's, and everything in its log
// is committed. It loads the transaction and share coordinators.
func replayLog(l *storage.Log, apply func(key, value []byte) error) (int, error) {
	var d kafkaproto.Decompressor
	defer d.Close()
	n := 0
	end, read := l.HighWatermark(), l.Read
	if l.Replicated() {
		end, read = l.LogEndOffset(), l.ReadUncommitted
	}
	for off := l.LogStartOffset(); off < end; {
		res, err := read(off, 1<<20, true)
		if err != nil {
			return n, err
		}
		if len(res.Data) == 0 {
			break
		}
		err = kafkaproto.SplitBatches(res.Data, func(batch []byte, h kafkaproto.BatchHeader) error {
			defer func() { off = h.LastOffset() + 1 }()
			if h.IsControl() {
				return nil
			}
			recs, err := d.Records(batch)
			if err != nil {
				return fmt.Errorf("batch at %d: %w", h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Offset < off {
					continue
				}
				if err := apply(r.Key, r.Value); err != nil {
					return fmt.Errorf("record %d: %w", r.Offset, err)
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
