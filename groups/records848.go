package groups

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/tuskdb/tusk/groups/assign"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Kafka's KIP-848 consumer-group records in __consumer_offsets (issue 17,
// part A2; docs/groups-next.md). Keys and values are Kafka's
// group-coordinator JSON schemas (ConsumerGroup*Key.json /
// ConsumerGroup*Value.json), encoded by kafkaproto's Schema codec: a key is
// the record type (int16) then its non-flexible fields; a value is version
// 0 (int16) then its flexible fields and tagged fields. A tombstone is a
// key with a nil value.
//
// Not written by Tusk but decodable as unknown types by RecordVersion:
// ConsumerGroupPartitionMetadata (4; Kafka 4.1 stopped writing it in favour
// of ConsumerGroupMetadataValue.MetadataHash) and
// ConsumerGroupRegularExpression (16; resolution is redone on load).
// ConsumerGroupMetadataValue's MetadataHash is written with Tusk's hash of
// the subscribed topics (topicsHash, FNV-64a: not Kafka's). Tagged fields
// Tusk does not set (CreationTimeMs, a member's ClassicMemberMetadata) are
// absent when written and skipped when read.

var (
	keyGroupOnly = []kafkaproto.Field{{Name: "GroupId", Kind: kafkaproto.String}}
	keyMember    = []kafkaproto.Field{
		{Name: "GroupId", Kind: kafkaproto.String},
		{Name: "MemberId", Kind: kafkaproto.String},
	}
	topicPartitions = kafkaproto.Field{Name: "TopicPartitions", Kind: kafkaproto.StructArray, Fields: []kafkaproto.Field{
		{Name: "TopicId", Kind: kafkaproto.UUID},
		{Name: "Partitions", Kind: kafkaproto.Int32Array},
	}}

	consumerRecords = recordFamily[ConsumerRecordType]{
		what: "consumer record",
		keys: map[ConsumerRecordType]*kafkaproto.Schema{
			RecordGroupMetadata:     {Name: "ConsumerGroupMetadataKey", Version: 3, Fields: keyGroupOnly},
			RecordMemberMetadata:    {Name: "ConsumerGroupMemberMetadataKey", Version: 5, Fields: keyMember},
			RecordTargetMetadata:    {Name: "ConsumerGroupTargetAssignmentMetadataKey", Version: 6, Fields: keyGroupOnly},
			RecordTargetMember:      {Name: "ConsumerGroupTargetAssignmentMemberKey", Version: 7, Fields: keyMember},
			RecordCurrentAssignment: {Name: "ConsumerGroupCurrentMemberAssignmentKey", Version: 8, Fields: keyMember},
		},
		values: map[ConsumerRecordType]*kafkaproto.Schema{
			RecordGroupMetadata:     consumerGroupMetadataValue,
			RecordMemberMetadata:    consumerMemberMetadataValue,
			RecordTargetMetadata:    consumerTargetMetadataValue,
			RecordTargetMember:      consumerTargetMemberValue,
			RecordCurrentAssignment: consumerCurrentAssignmentValue,
		},
	}

	// ConsumerGroupMetadataValue: Epoch; tagged 0 MetadataHash int64 (4.1,
	// KIP-1101), tagged 1 CreationTimeMs int64 (KIP-1282).
	consumerGroupMetadataValue = &kafkaproto.Schema{Name: "ConsumerGroupMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "Epoch", Kind: kafkaproto.Int32},
		{Name: "MetadataHash", Kind: kafkaproto.Int64, Tagged: true, Tag: 0},
		{Name: "CreationTimeMs", Kind: kafkaproto.Int64, Tagged: true, Tag: 1},
	}}
	// ConsumerGroupMemberMetadataValue; tagged 0 ClassicMemberMetadata (a
	// member of the classic protocol inside a consumer group) is not
	// declared: Tusk does no online migration, and Decode skips it.
	consumerMemberMetadataValue = &kafkaproto.Schema{Name: "ConsumerGroupMemberMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "InstanceId", Kind: kafkaproto.NullString},
		{Name: "RackId", Kind: kafkaproto.NullString},
		{Name: "ClientId", Kind: kafkaproto.String},
		{Name: "ClientHost", Kind: kafkaproto.String},
		{Name: "SubscribedTopicNames", Kind: kafkaproto.StringArray},
		{Name: "SubscribedTopicRegex", Kind: kafkaproto.NullString},
		{Name: "RebalanceTimeoutMs", Kind: kafkaproto.Int32},
		{Name: "ServerAssignor", Kind: kafkaproto.NullString},
	}}
	consumerTargetMetadataValue = &kafkaproto.Schema{Name: "ConsumerGroupTargetAssignmentMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "AssignmentEpoch", Kind: kafkaproto.Int32},
	}}
	consumerTargetMemberValue = &kafkaproto.Schema{Name: "ConsumerGroupTargetAssignmentMemberValue", Flexible: true, Fields: []kafkaproto.Field{
		topicPartitions,
	}}
	consumerCurrentAssignmentValue = &kafkaproto.Schema{Name: "ConsumerGroupCurrentMemberAssignmentValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "MemberEpoch", Kind: kafkaproto.Int32},
		{Name: "PreviousMemberEpoch", Kind: kafkaproto.Int32},
		{Name: "State", Kind: kafkaproto.Int8},
		withName(topicPartitions, "AssignedPartitions"),
		withName(topicPartitions, "PartitionsPendingRevocation"),
	}}
)

// recordFamily is one family of group records in __consumer_offsets (the
// consumer group's, the share group's): the key and value schema of each
// record type. A key is the type, the group and, for a member's record,
// the member id; the callers map a value's fields to their record.
type recordFamily[T ~int16] struct {
	what string // in errors: "consumer record"
	// valuePrefix is written before a value's type (%v) in errors.
	valuePrefix string
	keys        map[T]*kafkaproto.Schema
	values      map[T]*kafkaproto.Schema
}

// encodeKey is the key of a record of type typ.
func (f recordFamily[T]) encodeKey(typ T, group, member string) ([]byte, error) {
	ks := f.keys[typ]
	if ks == nil {
		return nil, fmt.Errorf("groups: encode %s: unknown type %d", f.what, typ)
	}
	kv := []any{group}
	if len(ks.Fields) == 2 {
		kv = append(kv, member)
	}
	return ks.Append(nil, kv), nil
}

// encodeValue is the value of a record of type typ with these fields.
func (f recordFamily[T]) encodeValue(typ T, fields []any) []byte {
	return f.values[typ].Append(nil, fields)
}

// is reports whether key is one of the family's record types.
func (f recordFamily[T]) is(key []byte) bool {
	t, err := kafkaproto.RecordVersion(key)
	return err == nil && f.keys[T(t)] != nil
}

// decode is a record's type, group, member id (empty for a group's
// record) and value fields (nil for a tombstone).
func (f recordFamily[T]) decode(key, value []byte) (typ T, group, member string, v []any, err error) {
	t, err := kafkaproto.RecordVersion(key)
	if err != nil {
		return 0, "", "", nil, fmt.Errorf("groups: decode %s key: %w", f.what, err)
	}
	typ = T(t)
	ks := f.keys[typ]
	if ks == nil {
		return 0, "", "", nil, fmt.Errorf("groups: decode %s: unknown key type %d", f.what, t)
	}
	kv, err := ks.Decode(key)
	if err != nil {
		return 0, "", "", nil, fmt.Errorf("groups: decode %s key: %w", f.what, err)
	}
	group = kv[0].(string)
	if len(kv) == 2 {
		member = kv[1].(string)
	}
	if value == nil {
		return typ, group, member, nil, nil
	}
	if v, err = f.values[typ].Decode(value); err != nil {
		return 0, "", "", nil, f.valueErr(typ, group, err)
	}
	return typ, group, member, v, nil
}

// valueErr is err decoding the value of group's record of type typ.
func (f recordFamily[T]) valueErr(typ T, group string, err error) error {
	return fmt.Errorf("groups: decode %s%v value of %q: %w", f.valuePrefix, typ, group, err)
}

func withName(f kafkaproto.Field, name string) kafkaproto.Field {
	f.Name = name
	return f
}

// encodePartitions is a []TopicPartitions: topics by id, partitions
// ascending, so that equal assignments encode to equal bytes.
func encodePartitions(p assign.Partitions) [][]any {
	ids := make([][16]byte, 0, len(p))
	for id := range p {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	out := make([][]any, 0, len(ids))
	for _, id := range ids {
		parts := slices.Clone(p[id])
		slices.Sort(parts)
		if parts == nil {
			parts = []int32{}
		}
		out = append(out, []any{id, parts})
	}
	return out
}

func decodePartitions(v any) (assign.Partitions, error) {
	tps, _ := v.([][]any)
	out := make(assign.Partitions, len(tps))
	for _, tp := range tps {
		id := tp[0].([16]byte)
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("topic %x twice", id)
		}
		parts, _ := tp[1].([]int32)
		out[id] = append([]int32{}, parts...)
	}
	return out, nil
}

// nonNil is ss, or an empty array for nil (a non-nullable array field).
func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// EncodeConsumerRecord is the key and value of r in Kafka's format; the
// value is nil for a tombstone.
func EncodeConsumerRecord(r ConsumerRecord) (key, value []byte, err error) {
	if key, err = consumerRecords.encodeKey(r.Type, r.Group, r.MemberID); err != nil || r.Tombstone {
		return key, nil, err
	}
	var fields []any
	switch r.Type {
	case RecordGroupMetadata:
		var hash any // tagged: absent when none
		if r.MetadataHash != 0 {
			hash = r.MetadataHash
		}
		fields = []any{r.Epoch, hash, nil}
	case RecordTargetMetadata:
		fields = []any{r.Epoch}
	case RecordTargetMember:
		fields = []any{encodePartitions(r.Partitions)}
	case RecordMemberMetadata:
		m := r.Member
		if m == nil {
			return nil, nil, fmt.Errorf("groups: encode %s of %q: no member metadata", r.Type, r.MemberID)
		}
		fields = []any{
			m.InstanceID, m.RackID, m.ClientID, m.ClientHost, nonNil(m.SubscribedTopicNames),
			m.SubscribedTopicRegex, m.RebalanceTimeoutMillis, nullIfEmpty(m.ServerAssignor),
		}
	case RecordCurrentAssignment:
		c := r.Current
		if c == nil {
			return nil, nil, fmt.Errorf("groups: encode %s of %q: no assignment", r.Type, r.MemberID)
		}
		fields = []any{
			c.MemberEpoch, c.PreviousMemberEpoch, int8(c.State),
			encodePartitions(c.Assigned), encodePartitions(c.PendingRevocation),
		}
	}
	return key, consumerRecords.encodeValue(r.Type, fields), nil
}

// IsConsumerRecordKey reports whether a __consumer_offsets key is one of
// the consumer-group record types DecodeConsumerRecord reads.
func IsConsumerRecordKey(key []byte) bool {
	return consumerRecords.is(key)
}

// DecodeConsumerRecord decodes a consumer-group record read back from
// __consumer_offsets (a nil value is a tombstone). Malformed bytes give an
// error wrapping kafkaproto.ErrSchemaDecode, never a panic.
func DecodeConsumerRecord(key, value []byte) (ConsumerRecord, error) {
	typ, group, member, v, err := consumerRecords.decode(key, value)
	if err != nil {
		return ConsumerRecord{}, err
	}
	r := ConsumerRecord{Type: typ, Group: group, MemberID: member, Tombstone: value == nil}
	if r.Tombstone {
		return r, nil
	}
	fail := func(err error) (ConsumerRecord, error) {
		return ConsumerRecord{}, consumerRecords.valueErr(typ, group, err)
	}
	switch typ {
	case RecordGroupMetadata:
		r.Epoch = v[0].(int32)
		if h, ok := v[1].(int64); ok {
			r.MetadataHash = h
		}
	case RecordTargetMetadata:
		r.Epoch = v[0].(int32)
	case RecordTargetMember:
		if r.Partitions, err = decodePartitions(v[0]); err != nil {
			return fail(err)
		}
	case RecordMemberMetadata:
		m := &ConsumerMemberMetadata{
			InstanceID: v[0].(*string), RackID: v[1].(*string),
			ClientID: v[2].(string), ClientHost: v[3].(string),
			SubscribedTopicRegex:   v[5].(*string),
			RebalanceTimeoutMillis: v[6].(int32),
		}
		m.SubscribedTopicNames, _ = v[4].([]string)
		if a := v[7].(*string); a != nil {
			m.ServerAssignor = *a
		}
		r.Member = m
	case RecordCurrentAssignment:
		c := &ConsumerMemberAssignment{
			MemberEpoch: v[0].(int32), PreviousMemberEpoch: v[1].(int32), State: MemberState(v[2].(int8)),
		}
		if c.Assigned, err = decodePartitions(v[3]); err != nil {
			return fail(err)
		}
		if c.PendingRevocation, err = decodePartitions(v[4]); err != nil {
			return fail(err)
		}
		r.Current = c
	}
	return r, nil
}

// ConsumerRecordsToRecords encodes the records a ConsumerPersister is
// handed, in order, as __consumer_offsets key/value pairs (a tombstone has
// a nil Value).
func ConsumerRecordsToRecords(rs []ConsumerRecord) ([]Record, error) {
	out := make([]Record, 0, len(rs))
	for _, r := range rs {
		k, v, err := EncodeConsumerRecord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, Record{Key: k, Value: v})
	}
	return out, nil
}

// Kafka's KIP-932 share-group membership records in __consumer_offsets
// (record types 10-14), for the share-group coordinator (part B). The
// ShareGroupStatePartitionMetadata record (15: which topic-partitions have
// initialized share state) and ShareGroupPartitionMetadata (9, no longer
// written by Kafka 4.1) are not encoded here.

// ShareRecordType names a share-group record type (Kafka's record key
// type).
type ShareRecordType int16

const (
	ShareRecordMemberMetadata    ShareRecordType = 10 // ShareGroupMemberMetadata: key (group, member)
	ShareRecordGroupMetadata     ShareRecordType = 11 // ShareGroupMetadata: key group; value group epoch
	ShareRecordTargetMetadata    ShareRecordType = 12 // ShareGroupTargetAssignmentMetadata: key group; value assignment epoch
	ShareRecordTargetMember      ShareRecordType = 13 // ShareGroupTargetAssignmentMember: key (group, member)
	ShareRecordCurrentAssignment ShareRecordType = 14 // ShareGroupCurrentMemberAssignment: key (group, member)
)

// ShareGroupRecord is one share-group record, decoded; a tombstone
// carries only its key.
type ShareGroupRecord struct {
	Type      ShareRecordType
	Group     string
	MemberID  string
	Tombstone bool
	// Epoch is the group epoch (GroupMetadata) or assignment epoch
	// (TargetMetadata).
	Epoch int32
	// MetadataHash is ShareGroupMetadataValue's hash of the subscribed
	// topics' metadata (GroupMetadata).
	MetadataHash int64
	Member       *ShareMemberMetadata   // MemberMetadata
	Partitions   assign.Partitions      // TargetMember
	Current      *ShareMemberAssignment // CurrentAssignment
	State        *ShareStatePartitions  // StatePartitionMetadata (share_group_records.go)
}

// ShareMemberMetadata is ShareGroupMemberMetadataValue.
type ShareMemberMetadata struct {
	RackID               *string
	ClientID, ClientHost string
	SubscribedTopicNames []string
}

// ShareMemberAssignment is ShareGroupCurrentMemberAssignmentValue.
type ShareMemberAssignment struct {
	MemberEpoch, PreviousMemberEpoch int32
	State                            MemberState
	Assigned                         assign.Partitions
}

var (
	shareRecords = recordFamily[ShareRecordType]{
		what:        "share group record",
		valuePrefix: "share group record ",
		keys: map[ShareRecordType]*kafkaproto.Schema{
			ShareRecordMemberMetadata:         {Name: "ShareGroupMemberMetadataKey", Version: 10, Fields: keyMember},
			ShareRecordGroupMetadata:          {Name: "ShareGroupMetadataKey", Version: 11, Fields: keyGroupOnly},
			ShareRecordTargetMetadata:         {Name: "ShareGroupTargetAssignmentMetadataKey", Version: 12, Fields: keyGroupOnly},
			ShareRecordTargetMember:           {Name: "ShareGroupTargetAssignmentMemberKey", Version: 13, Fields: keyMember},
			ShareRecordCurrentAssignment:      {Name: "ShareGroupCurrentMemberAssignmentKey", Version: 14, Fields: keyMember},
			ShareRecordStatePartitionMetadata: {Name: "ShareGroupStatePartitionMetadataKey", Version: 15, Fields: keyGroupOnly},
		},
		values: map[ShareRecordType]*kafkaproto.Schema{
			ShareRecordMemberMetadata:         shareMemberMetadataValue,
			ShareRecordGroupMetadata:          shareGroupMetadataValue,
			ShareRecordTargetMetadata:         shareTargetMetadataValue,
			ShareRecordTargetMember:           shareTargetMemberValue,
			ShareRecordCurrentAssignment:      shareCurrentAssignmentValue,
			ShareRecordStatePartitionMetadata: shareStatePartitionValue, // share_group_records.go
		},
	}
	shareMemberMetadataValue = &kafkaproto.Schema{Name: "ShareGroupMemberMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "RackId", Kind: kafkaproto.NullString},
		{Name: "ClientId", Kind: kafkaproto.String},
		{Name: "ClientHost", Kind: kafkaproto.String},
		{Name: "SubscribedTopicNames", Kind: kafkaproto.StringArray},
	}}
	// ShareGroupMetadataValue: Epoch, MetadataHash. Unlike the consumer
	// group's, MetadataHash is a plain field (KIP-932's schemas were
	// allowed to break compatibility before 4.1).
	shareGroupMetadataValue = &kafkaproto.Schema{Name: "ShareGroupMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "Epoch", Kind: kafkaproto.Int32},
		{Name: "MetadataHash", Kind: kafkaproto.Int64},
	}}
	shareTargetMetadataValue = &kafkaproto.Schema{Name: "ShareGroupTargetAssignmentMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "AssignmentEpoch", Kind: kafkaproto.Int32},
	}}
	shareTargetMemberValue = &kafkaproto.Schema{Name: "ShareGroupTargetAssignmentMemberValue", Flexible: true, Fields: []kafkaproto.Field{
		topicPartitions,
	}}
	shareCurrentAssignmentValue = &kafkaproto.Schema{Name: "ShareGroupCurrentMemberAssignmentValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "MemberEpoch", Kind: kafkaproto.Int32},
		{Name: "PreviousMemberEpoch", Kind: kafkaproto.Int32},
		{Name: "State", Kind: kafkaproto.Int8},
		withName(topicPartitions, "AssignedPartitions"),
	}}
)

// EncodeShareGroupRecord is the key and value of r; the value is nil for
// a tombstone.
func EncodeShareGroupRecord(r ShareGroupRecord) (key, value []byte, err error) {
	if key, err = shareRecords.encodeKey(r.Type, r.Group, r.MemberID); err != nil || r.Tombstone {
		return key, nil, err
	}
	var fields []any
	switch r.Type {
	case ShareRecordGroupMetadata:
		fields = []any{r.Epoch, r.MetadataHash}
	case ShareRecordTargetMetadata:
		fields = []any{r.Epoch}
	case ShareRecordTargetMember:
		fields = []any{encodePartitions(r.Partitions)}
	case ShareRecordMemberMetadata:
		m := r.Member
		if m == nil {
			return nil, nil, fmt.Errorf("groups: encode share group member %q: no metadata", r.MemberID)
		}
		fields = []any{m.RackID, m.ClientID, m.ClientHost, nonNil(m.SubscribedTopicNames)}
	case ShareRecordCurrentAssignment:
		c := r.Current
		if c == nil {
			return nil, nil, fmt.Errorf("groups: encode share group member %q: no assignment", r.MemberID)
		}
		fields = []any{c.MemberEpoch, c.PreviousMemberEpoch, int8(c.State), encodePartitions(c.Assigned)}
	case ShareRecordStatePartitionMetadata:
		if fields, err = shareStatePartitionFields(r.State); err != nil {
			return nil, nil, fmt.Errorf("groups: encode share group %q state partitions: %w", r.Group, err)
		}
	}
	return key, shareRecords.encodeValue(r.Type, fields), nil
}

// IsShareGroupRecordKey reports whether a __consumer_offsets key is one of
// the share-group record types DecodeShareGroupRecord reads.
func IsShareGroupRecordKey(key []byte) bool {
	return shareRecords.is(key)
}

// DecodeShareGroupRecord decodes a share-group record (a nil value is a
// tombstone); malformed bytes are an error, never a panic.
func DecodeShareGroupRecord(key, value []byte) (ShareGroupRecord, error) {
	typ, group, member, v, err := shareRecords.decode(key, value)
	if err != nil {
		return ShareGroupRecord{}, err
	}
	r := ShareGroupRecord{Type: typ, Group: group, MemberID: member, Tombstone: value == nil}
	if r.Tombstone {
		return r, nil
	}
	fail := func(err error) (ShareGroupRecord, error) {
		return ShareGroupRecord{}, shareRecords.valueErr(typ, group, err)
	}
	switch typ {
	case ShareRecordGroupMetadata:
		r.Epoch, r.MetadataHash = v[0].(int32), v[1].(int64)
	case ShareRecordTargetMetadata:
		r.Epoch = v[0].(int32)
	case ShareRecordTargetMember:
		if r.Partitions, err = decodePartitions(v[0]); err != nil {
			return fail(err)
		}
	case ShareRecordMemberMetadata:
		m := &ShareMemberMetadata{RackID: v[0].(*string), ClientID: v[1].(string), ClientHost: v[2].(string)}
		m.SubscribedTopicNames, _ = v[3].([]string)
		r.Member = m
	case ShareRecordCurrentAssignment:
		c := &ShareMemberAssignment{MemberEpoch: v[0].(int32), PreviousMemberEpoch: v[1].(int32), State: MemberState(v[2].(int8))}
		if c.Assigned, err = decodePartitions(v[3]); err != nil {
			return fail(err)
		}
		r.Current = c
	case ShareRecordStatePartitionMetadata:
		if r.State, err = shareStatePartitionsOf(v); err != nil {
			return fail(err)
		}
	}
	return r, nil
}

// RecordRegularExpression is Kafka's ConsumerGroupRegularExpression record
// type: what a regex subscription resolved to. A1 does not write it
// (resolution is redone on load); the codec is here for a loader that
// meets one and for A3 if it chooses to persist resolutions.
const RecordRegularExpression = 16

// ConsumerRegexRecord is one ConsumerGroupRegularExpression record: key
// (group, regex); value the matching topics, the metadata version they
// were resolved at, and when (Unix milliseconds). A tombstone has only
// the key.
type ConsumerRegexRecord struct {
	Group, Regex string
	Tombstone    bool
	Topics       []string
	Version      int64
	Timestamp    int64
}

var (
	consumerRegexKey = &kafkaproto.Schema{Name: "ConsumerGroupRegularExpressionKey", Version: RecordRegularExpression, Fields: []kafkaproto.Field{
		{Name: "GroupId", Kind: kafkaproto.String},
		{Name: "RegularExpression", Kind: kafkaproto.String},
	}}
	consumerRegexValue = &kafkaproto.Schema{Name: "ConsumerGroupRegularExpressionValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "Topics", Kind: kafkaproto.StringArray},
		{Name: "Version", Kind: kafkaproto.Int64},
		{Name: "Timestamp", Kind: kafkaproto.Int64},
	}}
)

// EncodeConsumerRegexRecord is the key and value of r (nil for a
// tombstone).
func EncodeConsumerRegexRecord(r ConsumerRegexRecord) (key, value []byte) {
	key = consumerRegexKey.Append(nil, []any{r.Group, r.Regex})
	if r.Tombstone {
		return key, nil
	}
	return key, consumerRegexValue.Append(nil, []any{nonNil(r.Topics), r.Version, r.Timestamp})
}

// DecodeConsumerRegexRecord decodes a ConsumerGroupRegularExpression
// record (a nil value is a tombstone).
func DecodeConsumerRegexRecord(key, value []byte) (ConsumerRegexRecord, error) {
	kv, err := consumerRegexKey.Decode(key)
	if err != nil {
		return ConsumerRegexRecord{}, fmt.Errorf("groups: decode regex record key: %w", err)
	}
	r := ConsumerRegexRecord{Group: kv[0].(string), Regex: kv[1].(string)}
	if value == nil {
		r.Tombstone = true
		return r, nil
	}
	v, err := consumerRegexValue.Decode(value)
	if err != nil {
		return ConsumerRegexRecord{}, fmt.Errorf("groups: decode regex record of %q: %w", r.Group, err)
	}
	r.Topics, _ = v[0].([]string)
	r.Version, r.Timestamp = v[1].(int64), v[2].(int64)
	return r, nil
}
