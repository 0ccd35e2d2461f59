package share

import (
	"fmt"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Kafka's share-partition state records in __share_group_state
// (docs/groups-next.md, parts A2 and B2), from the share-coordinator JSON
// schemas, encoded by kafkaproto's Schema codec. Both keys are (group,
// topic id, partition) after the record type: ShareSnapshot is type 0 and
// ShareUpdate type 1, so the latest ShareSnapshot and the ShareUpdates
// after it are kept apart by compaction until the next snapshot. Values
// are version 0, flexible:
//
//	ShareSnapshotValue: SnapshotEpoch int32, StateEpoch int32,
//	  LeaderEpoch int32, StartOffset int64, CreateTimestamp int64,
//	  WriteTimestamp int64, StateBatches []StateBatch;
//	  tagged 0: DeliveryCompleteCount int32
//	ShareUpdateValue: SnapshotEpoch int32, LeaderEpoch int32,
//	  StartOffset int64, StateBatches []StateBatch;
//	  tagged 0: DeliveryCompleteCount int32
//	StateBatch: FirstOffset int64, LastOffset int64, DeliveryState int8,
//	  DeliveryCount int16
//
// (SnapshotEpoch was uint16 before Kafka 4.1; CreateTimestamp and
// WriteTimestamp came in 4.1; DeliveryCompleteCount, Kafka 4.2's
// KIP-1226 lag count with default -1, is not written and ignored when
// read.) A tombstone (nil value) for both keys deletes a share-partition's
// state.

// Record types of __share_group_state keys.
const (
	RecordShareSnapshot int16 = 0
	RecordShareUpdate   int16 = 1
)

// StateKey is the key of a share-partition's state records.
type StateKey struct {
	Group     string
	TopicID   [16]byte
	Partition int32
}

// SnapshotRecord is a ShareSnapshotValue: the whole state and its epochs.
type SnapshotRecord struct {
	SnapshotEpoch, StateEpoch, LeaderEpoch int32
	CreateTimestamp, WriteTimestamp        int64 // Unix milliseconds
	Snapshot
}

// UpdateRecord is a ShareUpdateValue: an Update to the snapshot of the
// same SnapshotEpoch.
type UpdateRecord struct {
	SnapshotEpoch, LeaderEpoch int32
	Update
}

var (
	stateKeyFields = []kafkaproto.Field{
		{Name: "GroupId", Kind: kafkaproto.String},
		{Name: "TopicId", Kind: kafkaproto.UUID},
		{Name: "Partition", Kind: kafkaproto.Int32},
	}
	snapshotKey = &kafkaproto.Schema{Name: "ShareSnapshotKey", Version: RecordShareSnapshot, Fields: stateKeyFields}
	updateKey   = &kafkaproto.Schema{Name: "ShareUpdateKey", Version: RecordShareUpdate, Fields: stateKeyFields}

	stateBatches = kafkaproto.Field{Name: "StateBatches", Kind: kafkaproto.StructArray, Fields: []kafkaproto.Field{
		{Name: "FirstOffset", Kind: kafkaproto.Int64},
		{Name: "LastOffset", Kind: kafkaproto.Int64},
		{Name: "DeliveryState", Kind: kafkaproto.Int8},
		{Name: "DeliveryCount", Kind: kafkaproto.Int16},
	}}
	deliveryCompleteCount = kafkaproto.Field{Name: "DeliveryCompleteCount", Kind: kafkaproto.Int32, Tagged: true, Tag: 0}
	snapshotValue         = &kafkaproto.Schema{Name: "ShareSnapshotValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "SnapshotEpoch", Kind: kafkaproto.Int32},
		{Name: "StateEpoch", Kind: kafkaproto.Int32},
		{Name: "LeaderEpoch", Kind: kafkaproto.Int32},
		{Name: "StartOffset", Kind: kafkaproto.Int64},
		{Name: "CreateTimestamp", Kind: kafkaproto.Int64},
		{Name: "WriteTimestamp", Kind: kafkaproto.Int64},
		stateBatches,
		deliveryCompleteCount,
	}}
	updateValue = &kafkaproto.Schema{Name: "ShareUpdateValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "SnapshotEpoch", Kind: kafkaproto.Int32},
		{Name: "LeaderEpoch", Kind: kafkaproto.Int32},
		{Name: "StartOffset", Kind: kafkaproto.Int64},
		stateBatches,
		deliveryCompleteCount,
	}}
)

// EncodeStateKey is the key of a ShareSnapshot (typ RecordShareSnapshot)
// or ShareUpdate (RecordShareUpdate) record.
func EncodeStateKey(typ int16, k StateKey) ([]byte, error) {
	vals := []any{k.Group, k.TopicID, k.Partition}
	switch typ {
	case RecordShareSnapshot:
		return snapshotKey.Append(nil, vals), nil
	case RecordShareUpdate:
		return updateKey.Append(nil, vals), nil
	}
	return nil, fmt.Errorf("share: encode state key: unknown record type %d", typ)
}

// DecodeStateKey decodes a __share_group_state key: its record type and
// the share-partition.
func DecodeStateKey(b []byte) (int16, StateKey, error) {
	typ, err := kafkaproto.RecordVersion(b)
	if err != nil {
		return 0, StateKey{}, fmt.Errorf("share: decode state key: %w", err)
	}
	s := snapshotKey
	switch typ {
	case RecordShareSnapshot:
	case RecordShareUpdate:
		s = updateKey
	default:
		return 0, StateKey{}, fmt.Errorf("share: decode state key: unknown record type %d", typ)
	}
	v, err := s.Decode(b)
	if err != nil {
		return 0, StateKey{}, fmt.Errorf("share: decode state key: %w", err)
	}
	return typ, StateKey{Group: v[0].(string), TopicID: v[1].([16]byte), Partition: v[2].(int32)}, nil
}

func encodeBatches(bs []StateBatch) [][]any {
	out := make([][]any, 0, len(bs))
	for _, b := range bs {
		out = append(out, []any{b.First, b.Last, int8(b.State), b.DeliveryCount})
	}
	return out
}

// decodeBatches checks what the state machine relies on: First <= Last,
// batches ascending without overlap, and a persisted state (Available,
// Acknowledged or Archived).
func decodeBatches(v any) ([]StateBatch, error) {
	raw, _ := v.([][]any)
	var out []StateBatch
	for i, e := range raw {
		b := StateBatch{First: e[0].(int64), Last: e[1].(int64), State: State(e[2].(int8)), DeliveryCount: e[3].(int16)}
		if b.First > b.Last || b.First < 0 {
			return nil, fmt.Errorf("state batch %d: offsets %d-%d", i, b.First, b.Last)
		}
		if i > 0 && b.First <= out[i-1].Last {
			return nil, fmt.Errorf("state batch %d: %d-%d overlaps %d-%d", i, b.First, b.Last, out[i-1].First, out[i-1].Last)
		}
		if b.State != Available && b.State != Acknowledged && b.State != Archived {
			return nil, fmt.Errorf("state batch %d: delivery state %d", i, b.State)
		}
		if b.DeliveryCount < 0 {
			return nil, fmt.Errorf("state batch %d: delivery count %d", i, b.DeliveryCount)
		}
		out = append(out, b)
	}
	return out, nil
}

// EncodeSnapshotValue is the ShareSnapshotValue of r.
func EncodeSnapshotValue(r SnapshotRecord) []byte {
	return snapshotValue.Append(nil, []any{
		r.SnapshotEpoch, r.StateEpoch, r.LeaderEpoch, r.StartOffset,
		r.CreateTimestamp, r.WriteTimestamp, encodeBatches(r.Batches), nil,
	})
}

// DecodeSnapshotValue decodes a ShareSnapshotValue. Malformed bytes, or
// batches the state machine cannot hold (see decodeBatches), are an error.
func DecodeSnapshotValue(b []byte) (SnapshotRecord, error) {
	v, err := snapshotValue.Decode(b)
	if err != nil {
		return SnapshotRecord{}, fmt.Errorf("share: decode snapshot: %w", err)
	}
	r := SnapshotRecord{
		SnapshotEpoch: v[0].(int32), StateEpoch: v[1].(int32), LeaderEpoch: v[2].(int32),
		CreateTimestamp: v[4].(int64), WriteTimestamp: v[5].(int64),
	}
	r.StartOffset = v[3].(int64)
	if r.Batches, err = decodeBatches(v[6]); err != nil {
		return SnapshotRecord{}, fmt.Errorf("share: decode snapshot: %w", err)
	}
	return r, nil
}

// EncodeUpdateValue is the ShareUpdateValue of r.
func EncodeUpdateValue(r UpdateRecord) []byte {
	return updateValue.Append(nil, []any{r.SnapshotEpoch, r.LeaderEpoch, r.StartOffset, encodeBatches(r.Batches), nil})
}

// DecodeUpdateValue decodes a ShareUpdateValue.
func DecodeUpdateValue(b []byte) (UpdateRecord, error) {
	v, err := updateValue.Decode(b)
	if err != nil {
		return UpdateRecord{}, fmt.Errorf("share: decode update: %w", err)
	}
	r := UpdateRecord{SnapshotEpoch: v[0].(int32), LeaderEpoch: v[1].(int32)}
	r.StartOffset = v[2].(int64)
	if r.Batches, err = decodeBatches(v[3]); err != nil {
		return UpdateRecord{}, fmt.Errorf("share: decode update: %w", err)
	}
	return r, nil
}
