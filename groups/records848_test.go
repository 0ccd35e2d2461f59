package groups

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/groups/assign"
	"github.com/tuskdb/tusk/kafkaproto"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var topicA = [16]byte{0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

const topicAHex = "a0 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"

// Golden bytes built by hand from Kafka's JSON schemas: keys are the record
// type (int16) and non-flexible fields (int16 string lengths); values are
// version 0 (int16), compact strings/arrays (uvarint length+1, 0 = null)
// and a tagged-field count after each struct.
func TestConsumerRecordGolden(t *testing.T) {
	rack, regexless := "r", (*string)(nil)
	cases := []struct {
		name       string
		rec        ConsumerRecord
		key, value string
	}{
		{"group metadata", ConsumerRecord{Type: RecordGroupMetadata, Group: "g", Epoch: 5},
			"0003 0001 67",      // type 3, GroupId "g"
			"0000 00000005 00"}, // version 0, Epoch 5, no tags
		{"member metadata", ConsumerRecord{Type: RecordMemberMetadata, Group: "g", MemberID: "m", Member: &ConsumerMemberMetadata{
			RackID: &rack, ClientID: "c", ClientHost: "h", SubscribedTopicNames: []string{"t"},
			SubscribedTopicRegex: regexless, ServerAssignor: "uniform", RebalanceTimeoutMillis: 30000}},
			"0005 0001 67 0001 6d", // type 5, GroupId "g", MemberId "m"
			"0000" + // version 0
				"00" + // InstanceId null
				"02 72" + // RackId "r"
				"02 63" + // ClientId "c"
				"02 68" + // ClientHost "h"
				"02 02 74" + // SubscribedTopicNames ["t"]
				"00" + // SubscribedTopicRegex null
				"00007530" + // RebalanceTimeoutMs 30000
				"08 756e69666f726d" + // ServerAssignor "uniform"
				"00"}, // no tags
		{"target metadata", ConsumerRecord{Type: RecordTargetMetadata, Group: "g", Epoch: 7},
			"0006 0001 67",
			"0000 00000007 00"}, // AssignmentEpoch 7
		{"target member", ConsumerRecord{Type: RecordTargetMember, Group: "g", MemberID: "m",
			Partitions: assign.Partitions{topicA: {2, 0}}},
			"0007 0001 67 0001 6d",
			"0000" +
				"02" + // TopicPartitions: 1 element
				topicAHex + // TopicId
				"03 00000000 00000002" + // Partitions [0, 2] (sorted)
				"00" + // element's tags
				"00"}, // value's tags
		{"current assignment", ConsumerRecord{Type: RecordCurrentAssignment, Group: "g", MemberID: "m",
			Current: &ConsumerMemberAssignment{MemberEpoch: 3, PreviousMemberEpoch: 2, State: MemberUnrevokedPartitions,
				Assigned: assign.Partitions{topicA: {1}}, PendingRevocation: assign.Partitions{}}},
			"0008 0001 67 0001 6d",
			"0000 00000003 00000002 01" + // MemberEpoch 3, PreviousMemberEpoch 2, State 1
				"02" + topicAHex + "02 00000001 00" + // AssignedPartitions [{A, [1]}]
				"01" + // PartitionsPendingRevocation []
				"00"},
		{"tombstone", ConsumerRecord{Type: RecordCurrentAssignment, Group: "g", MemberID: "m", Tombstone: true},
			"0008 0001 67 0001 6d", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, value, err := EncodeConsumerRecord(c.rec)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.key); !bytes.Equal(key, want) {
				t.Fatalf("key\n got %x\nwant %x", key, want)
			}
			want := unhex(t, c.value)
			if c.value == "" {
				want = nil
			}
			if !bytes.Equal(value, want) || (value == nil) != (want == nil) {
				t.Fatalf("value\n got %x\nwant %x", value, want)
			}
			if !IsConsumerRecordKey(key) {
				t.Fatal("IsConsumerRecordKey false")
			}
			got, err := DecodeConsumerRecord(key, value)
			if err != nil {
				t.Fatal(err)
			}
			wantRec := c.rec
			if wantRec.Type == RecordTargetMember {
				wantRec.Partitions = assign.Partitions{topicA: {0, 2}}
			}
			if !reflect.DeepEqual(got, wantRec) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, wantRec)
			}
		})
	}
}

// Tagged fields: Kafka 4.1's MetadataHash (tag 0) decodes, an unknown tag
// is skipped, tags out of order or overrunning are errors.
func TestConsumerRecordTaggedFields(t *testing.T) {
	key := unhex(t, "0003 0001 67")
	for _, c := range []struct {
		value string
		ok    bool
	}{
		{"0000 00000005 01 00 08 0102030405060708", true},           // MetadataHash
		{"0000 00000005 02 00 08 0102030405060708 09 01 ff", true},  // and an unknown tag 9
		{"0000 00000005 02 09 01 ff 00 08 0102030405060708", false}, // tags out of order
		{"0000 00000005 01 00 09 0102030405060708", false},          // size past the end
		{"0000 00000005 01 00 07 01020304050607", false},            // int64 in 7 bytes
		{"0000 00000005 00 00", false},                              // trailing byte
		{"0001 00000005 00", false},                                 // value version 1
	} {
		r, err := DecodeConsumerRecord(key, unhex(t, c.value))
		if c.ok != (err == nil) {
			t.Fatalf("%s: err %v, want ok=%v", c.value, err, c.ok)
		}
		if err == nil && r.Epoch != 5 {
			t.Fatalf("%s: epoch %d", c.value, r.Epoch)
		}
		if err != nil && !errors.Is(err, kafkaproto.ErrSchemaDecode) {
			t.Fatalf("%s: %v does not wrap ErrSchemaDecode", c.value, err)
		}
	}
	// Kafka 4.3's tagged AssignmentEpochs (tag 0 inside each
	// TopicPartitions struct, KIP-1251) and AssignmentTimestamp (tag 0 of
	// the target metadata, KIP-1263) are skipped.
	r, err := DecodeConsumerRecord(unhex(t, "0008 0001 67 0001 6d"), unhex(t, "0000 00000003 00000002 00"+
		"02"+topicAHex+"02 00000001 01 00 05 02 00000003"+ // AssignedPartitions [{A, [1], tag 0: AssignmentEpochs [3]}]
		"01 00"))
	if err != nil || !reflect.DeepEqual(r.Current.Assigned, assign.Partitions{topicA: {1}}) {
		t.Fatalf("nested tag: %+v %v", r.Current, err)
	}
	r, err = DecodeConsumerRecord(unhex(t, "0006 0001 67"), unhex(t, "0000 00000009 01 00 08 0000000000000001"))
	if err != nil || r.Epoch != 9 {
		t.Fatalf("AssignmentTimestamp: %+v %v", r, err)
	}
	if IsConsumerRecordKey(unhex(t, "0002 0001 67")) || IsConsumerRecordKey(nil) {
		t.Fatal("a classic group key taken for a consumer-group record")
	}
}

// The records A1's state machine writes decode back to what it wrote.
func TestConsumerRecordsRoundTripFromGroup(t *testing.T) {
	inst, assignor := "i1", "range"
	recs := []ConsumerRecord{
		{Type: RecordMemberMetadata, Group: "grp", MemberID: "m1", Member: &ConsumerMemberMetadata{
			InstanceID: &inst, ClientID: "client", ClientHost: "/127.0.0.1",
			SubscribedTopicNames: []string{"a", "b"}, ServerAssignor: assignor, RebalanceTimeoutMillis: 45000}},
		{Type: RecordMemberMetadata, Group: "grp", MemberID: "m2", Member: &ConsumerMemberMetadata{
			ClientID: "", ClientHost: "", SubscribedTopicNames: []string{}, SubscribedTopicRegex: &inst}},
		{Type: RecordGroupMetadata, Group: "grp", Epoch: 1 << 30},
		{Type: RecordGroupMetadata, Group: "grp", Epoch: 7, MetadataHash: -1234567890123},
		{Type: RecordTargetMember, Group: "grp", MemberID: "m1", Partitions: assign.Partitions{topicA: {0, 1}, {1}: {3}}},
		{Type: RecordTargetMember, Group: "grp", MemberID: "m2", Partitions: assign.Partitions{}},
		{Type: RecordTargetMetadata, Group: "grp", Epoch: -1},
		{Type: RecordCurrentAssignment, Group: "grp", MemberID: "m1", Current: &ConsumerMemberAssignment{
			MemberEpoch: -2, PreviousMemberEpoch: 9, State: MemberUnreleasedPartitions,
			Assigned: assign.Partitions{topicA: {0}}, PendingRevocation: assign.Partitions{{1}: {3}}}},
		{Type: RecordMemberMetadata, Group: "grp", MemberID: "m1", Tombstone: true},
		{Type: RecordGroupMetadata, Group: "grp", Tombstone: true},
	}
	for _, r := range recs {
		k, v, err := EncodeConsumerRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeConsumerRecord(k, v)
		if err != nil {
			t.Fatalf("%s: %v", r.Type, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%s\n got %+v\nwant %+v", r.Type, got, r)
		}
	}
	if _, _, err := EncodeConsumerRecord(ConsumerRecord{Type: 4, Group: "g"}); err == nil {
		t.Fatal("type 4 encoded")
	}
}

func FuzzDecodeConsumerRecord(f *testing.F) {
	for _, r := range []ConsumerRecord{
		{Type: RecordGroupMetadata, Group: "g", Epoch: 5},
		{Type: RecordMemberMetadata, Group: "g", MemberID: "m", Member: &ConsumerMemberMetadata{SubscribedTopicNames: []string{"t"}}},
		{Type: RecordTargetMember, Group: "g", MemberID: "m", Partitions: assign.Partitions{topicA: {1, 2}}},
		{Type: RecordCurrentAssignment, Group: "g", MemberID: "m", Current: &ConsumerMemberAssignment{Assigned: assign.Partitions{topicA: {1}}}},
	} {
		addSeed(f, EncodeConsumerRecord, r)
	}
	// A huge array count, a huge tag count (kmsg's bug), a huge string.
	f.Add([]byte{0, 7, 0, 1, 'g', 0, 1, 'm'}, []byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0, 3, 0, 1, 'g'}, []byte{0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0, 3, 0x7f, 0xff, 'g'}, []byte{0, 0, 0, 0, 0, 1, 0})
	fuzzRoundTrip(f, DecodeConsumerRecord, EncodeConsumerRecord, func(a, b ConsumerRecord) bool {
		return reflect.DeepEqual(normalize(a), normalize(b))
	})
}

// addSeed adds r's encoding to f's corpus.
func addSeed[R any](f *testing.F, enc func(R) ([]byte, []byte, error), r R) {
	f.Helper()
	k, v, err := enc(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(k, v)
}

// fuzzRoundTrip fuzzes dec: what decodes re-encodes to a record that
// decodes, and the same one as far as same tells.
func fuzzRoundTrip[R any](f *testing.F, dec func(key, value []byte) (R, error), enc func(R) ([]byte, []byte, error), same func(a, b R) bool) {
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := dec(key, value)
		if err != nil {
			return
		}
		k2, v2, err := enc(r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		r2, err := dec(k2, v2)
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if !same(r, r2) {
			t.Fatalf("\n got %+v\nwant %+v", r2, r)
		}
	})
}

// normalize sorts partitions, which encoding sorts.
func normalize(r ConsumerRecord) ConsumerRecord {
	sortP := func(p assign.Partitions) {
		for _, v := range p {
			for i := 1; i < len(v); i++ {
				for j := i; j > 0 && v[j] < v[j-1]; j-- {
					v[j], v[j-1] = v[j-1], v[j]
				}
			}
		}
	}
	sortP(r.Partitions)
	if r.Member != nil && r.Member.SubscribedTopicNames == nil {
		m := *r.Member
		m.SubscribedTopicNames = []string{}
		r.Member = &m
	}
	if r.Current != nil {
		sortP(r.Current.Assigned)
		sortP(r.Current.PendingRevocation)
	}
	return r
}

func TestConsumerRecordsToRecords(t *testing.T) {
	recs, err := ConsumerRecordsToRecords([]ConsumerRecord{
		{Type: RecordGroupMetadata, Group: "g", Epoch: 5},
		{Type: RecordMemberMetadata, Group: "g", MemberID: "m", Tombstone: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Key: unhex(t, "0003 0001 67"), Value: unhex(t, "0000 00000005 00")},
		{Key: unhex(t, "0005 0001 67 0001 6d")},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Fatalf("got %x, want %x", recs, want)
	}
	if _, err := ConsumerRecordsToRecords([]ConsumerRecord{{Type: RecordMemberMetadata, Group: "g"}}); err == nil {
		t.Fatal("member metadata without Member encoded")
	}
}

// Golden bytes for the share-group records, by hand from Kafka's schemas.
func TestShareGroupRecordGolden(t *testing.T) {
	rack := "r"
	cases := []struct {
		rec        ShareGroupRecord
		key, value string
	}{
		{ShareGroupRecord{Type: ShareRecordGroupMetadata, Group: "g", Epoch: 2, MetadataHash: 0x0102},
			"000b 0001 67", "0000 00000002 0000000000000102 00"}, // Epoch, MetadataHash (not tagged), no tags
		{ShareGroupRecord{Type: ShareRecordMemberMetadata, Group: "g", MemberID: "m", Member: &ShareMemberMetadata{
			RackID: &rack, ClientID: "c", ClientHost: "h", SubscribedTopicNames: []string{"t"}}},
			"000a 0001 67 0001 6d",
			"0000 02 72 02 63 02 68 02 02 74 00"}, // RackId "r", ClientId "c", ClientHost "h", ["t"], no tags
		{ShareGroupRecord{Type: ShareRecordTargetMetadata, Group: "g", Epoch: 2},
			"000c 0001 67", "0000 00000002 00"},
		{ShareGroupRecord{Type: ShareRecordTargetMember, Group: "g", MemberID: "m", Partitions: assign.Partitions{topicA: {4}}},
			"000d 0001 67 0001 6d", "0000 02" + topicAHex + "02 00000004 00 00"},
		{ShareGroupRecord{Type: ShareRecordCurrentAssignment, Group: "g", MemberID: "m", Current: &ShareMemberAssignment{
			MemberEpoch: 2, PreviousMemberEpoch: 1, Assigned: assign.Partitions{topicA: {4}}}},
			"000e 0001 67 0001 6d", "0000 00000002 00000001 00 02" + topicAHex + "02 00000004 00 00"},
		{ShareGroupRecord{Type: ShareRecordCurrentAssignment, Group: "g", MemberID: "m", Tombstone: true},
			"000e 0001 67 0001 6d", ""},
	}
	for _, c := range cases {
		key, value, err := EncodeShareGroupRecord(c.rec)
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, c.value)
		if c.value == "" {
			want = nil
		}
		if !bytes.Equal(key, unhex(t, c.key)) || !bytes.Equal(value, want) || (value == nil) != (want == nil) {
			t.Fatalf("%d: got %x / %x, want %s / %s", c.rec.Type, key, value, c.key, c.value)
		}
		if !IsShareGroupRecordKey(key) || IsConsumerRecordKey(key) {
			t.Fatalf("%d: key type checks", c.rec.Type)
		}
		got, err := DecodeShareGroupRecord(key, value)
		if err != nil || !reflect.DeepEqual(got, c.rec) {
			t.Fatalf("%d: decoded %+v %v", c.rec.Type, got, err)
		}
	}
}

func FuzzDecodeShareGroupRecord(f *testing.F) {
	for _, r := range []ShareGroupRecord{
		{Type: ShareRecordGroupMetadata, Group: "g", Epoch: 5},
		{Type: ShareRecordMemberMetadata, Group: "g", MemberID: "m", Member: &ShareMemberMetadata{SubscribedTopicNames: []string{"t"}}},
		{Type: ShareRecordCurrentAssignment, Group: "g", MemberID: "m", Current: &ShareMemberAssignment{Assigned: assign.Partitions{topicA: {1}}}},
	} {
		addSeed(f, EncodeShareGroupRecord, r)
	}
	fuzzRoundTrip(f, DecodeShareGroupRecord, EncodeShareGroupRecord, func(a, b ShareGroupRecord) bool { return true })
}

func TestConsumerRegexRecordGolden(t *testing.T) {
	r := ConsumerRegexRecord{Group: "g", Regex: "t.*", Topics: []string{"t1"}, Version: 4, Timestamp: 5}
	key, value := EncodeConsumerRegexRecord(r)
	wantKey := unhex(t, "0010 0001 67 0003 742e2a")                               // type 16, GroupId "g", RegularExpression "t.*"
	wantValue := unhex(t, "0000 02 03 7431 0000000000000004 0000000000000005 00") // Topics ["t1"], Version 4, Timestamp 5, no tags
	if !bytes.Equal(key, wantKey) || !bytes.Equal(value, wantValue) {
		t.Fatalf("got %x / %x", key, value)
	}
	got, err := DecodeConsumerRegexRecord(key, value)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("decoded %+v %v", got, err)
	}
	if got, err := DecodeConsumerRegexRecord(key, nil); err != nil || !got.Tombstone || got.Regex != "t.*" {
		t.Fatalf("tombstone %+v %v", got, err)
	}
	if IsConsumerRecordKey(key) {
		t.Fatal("regex key taken for a ConsumerRecord")
	}
	if _, err := DecodeConsumerRegexRecord(key, wantValue[:len(wantValue)-1]); err == nil {
		t.Fatal("truncated value decoded")
	}
}

func FuzzDecodeConsumerRegexRecord(f *testing.F) {
	k, v := EncodeConsumerRegexRecord(ConsumerRegexRecord{Group: "g", Regex: "x", Topics: []string{"a", "b"}})
	f.Add(k, v)
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := DecodeConsumerRegexRecord(key, value)
		if err != nil {
			return
		}
		k2, v2 := EncodeConsumerRegexRecord(r)
		if _, err := DecodeConsumerRegexRecord(k2, v2); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
	})
}
