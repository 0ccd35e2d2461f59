package share

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

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

var topicID = [16]byte{0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// Golden bytes built by hand from Kafka's share-coordinator JSON schemas.
func TestStateRecordsGolden(t *testing.T) {
	k := StateKey{Group: "g", TopicID: topicID, Partition: 3}
	for _, c := range []struct {
		typ  int16
		want string
	}{
		{RecordShareSnapshot, "0000 0001 67 a0010203040506070809 0a0b0c0d0e0f 00000003"},
		{RecordShareUpdate, "0001 0001 67 a0010203040506070809 0a0b0c0d0e0f 00000003"},
	} {
		key, err := EncodeStateKey(c.typ, k)
		if err != nil {
			t.Fatal(err)
		}
		if want := unhex(t, c.want); !bytes.Equal(key, want) {
			t.Fatalf("key %d\n got %x\nwant %x", c.typ, key, want)
		}
		typ, got, err := DecodeStateKey(key)
		if err != nil || typ != c.typ || got != k {
			t.Fatalf("decode key: %d %+v %v", typ, got, err)
		}
	}
	if _, err := EncodeStateKey(2, k); err == nil {
		t.Fatal("key type 2 encoded")
	}

	snap := SnapshotRecord{SnapshotEpoch: 1, StateEpoch: 2, LeaderEpoch: 3, CreateTimestamp: 0x100, WriteTimestamp: 0x200,
		Snapshot: Snapshot{StartOffset: 10, Batches: []StateBatch{
			{First: 10, Last: 12, State: Acknowledged, DeliveryCount: 1},
			{First: 13, Last: 13, State: Available, DeliveryCount: 2},
		}}}
	wantSnap := unhex(t, "0000"+ // version 0
		"00000001 00000002 00000003"+ // SnapshotEpoch, StateEpoch, LeaderEpoch
		"000000000000000a"+ // StartOffset 10
		"0000000000000100 0000000000000200"+ // CreateTimestamp, WriteTimestamp
		"03"+ // StateBatches: 2
		"000000000000000a 000000000000000c 02 0001 00"+ // 10-12 acknowledged, count 1, no tags
		"000000000000000d 000000000000000d 00 0002 00"+ // 13 available, count 2
		"00") // no tags
	if got := EncodeSnapshotValue(snap); !bytes.Equal(got, wantSnap) {
		t.Fatalf("snapshot\n got %x\nwant %x", got, wantSnap)
	}
	if got, err := DecodeSnapshotValue(wantSnap); err != nil || !reflect.DeepEqual(got, snap) {
		t.Fatalf("decode snapshot: %+v %v", got, err)
	}

	upd := UpdateRecord{SnapshotEpoch: 1, LeaderEpoch: 3, Update: Update{StartOffset: -1, Batches: []StateBatch{
		{First: 14, Last: 15, State: Archived, DeliveryCount: 5},
	}}}
	wantUpd := unhex(t, "0000"+
		"00000001 00000003"+ // SnapshotEpoch, LeaderEpoch
		"ffffffffffffffff"+ // StartOffset -1: unchanged
		"02 000000000000000e 000000000000000f 04 0005 00"+ // 14-15 archived, count 5
		"00")
	if got := EncodeUpdateValue(upd); !bytes.Equal(got, wantUpd) {
		t.Fatalf("update\n got %x\nwant %x", got, wantUpd)
	}
	if got, err := DecodeUpdateValue(wantUpd); err != nil || !reflect.DeepEqual(got, upd) {
		t.Fatalf("decode update: %+v %v", got, err)
	}
	// Kafka 4.2 writes DeliveryCompleteCount as tag 0: read and ignored.
	withTag := append(append([]byte{}, wantUpd[:len(wantUpd)-1]...), unhex(t, "01 00 04 00000007")...)
	if got, err := DecodeUpdateValue(withTag); err != nil || !reflect.DeepEqual(got, upd) {
		t.Fatalf("decode update with DeliveryCompleteCount: %+v %v", got, err)
	}
	if _, err := DecodeUpdateValue(append(wantUpd[:len(wantUpd)-1:len(wantUpd)-1], unhex(t, "01 00 02 0007")...)); err == nil {
		t.Fatal("a 2-byte DeliveryCompleteCount decoded")
	}

	// Batches the state machine cannot hold are rejected.
	for _, bad := range []string{
		"0000 00000001 00000003 ffffffffffffffff 02 000000000000000f 000000000000000e 04 0005 00 00",                                              // first > last
		"0000 00000001 00000003 ffffffffffffffff 02 000000000000000e 000000000000000f 01 0005 00 00",                                              // acquired
		"0000 00000001 00000003 ffffffffffffffff 03 000000000000000e 000000000000000f 04 0005 00 000000000000000f 000000000000000f 04 0005 00 00", // overlap
		"0000 00000001 00000003 ffffffffffffffff 02 000000000000000e 000000000000000f 04 0005 00",                                                 // truncated
		"0000 00000001 00000003 ffffffffffffffff ffffffff0f",                                                                                      // huge count
	} {
		if _, err := DecodeUpdateValue(unhex(t, bad)); err == nil {
			t.Fatalf("%s decoded", bad)
		}
	}
	// No batches, no tags, then one byte too many.
	if _, err := DecodeUpdateValue(unhex(t, "0000 00000001 00000003 ffffffffffffffff 01 00 00")); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// The Updates and Snapshot of a real Partition go through the codec
// unchanged, and the decoded records restore the same state.
func TestStateRecordsRoundTripPartition(t *testing.T) {
	now := time.Unix(1000, 0)
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 100)
	var updates []Update
	keep := func(u Update) {
		if !u.Empty() {
			updates = append(updates, u)
		}
	}
	base := p.Snapshot()
	_, u, err := p.Acquire("m1", 10, p.FetchOffset(), []BatchSpan{{Base: 0, Last: 4}, {Base: 5, Last: 9}}, now)
	if err != nil {
		t.Fatal(err)
	}
	keep(u)
	_, u = p.Acknowledge("m1", []AckBatch{{First: 0, Last: 2, Types: []AckType{AckAccept}}, {First: 3, Last: 4, Types: []AckType{AckReject}}}, now)
	keep(u)
	keep(p.ReleaseMember("m1"))
	if len(updates) < 2 {
		t.Fatalf("%d updates", len(updates))
	}
	folded := base
	for i, u := range updates {
		b := EncodeUpdateValue(UpdateRecord{SnapshotEpoch: 0, LeaderEpoch: 1, Update: u})
		got, err := DecodeUpdateValue(b)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if !reflect.DeepEqual(got.Update, u) {
			t.Fatalf("update %d\n got %+v\nwant %+v", i, got.Update, u)
		}
		folded = folded.Apply(got.Update)
	}
	snap := p.Snapshot()
	got, err := DecodeSnapshotValue(EncodeSnapshotValue(SnapshotRecord{Snapshot: snap}))
	if err != nil || !reflect.DeepEqual(got.Snapshot, snap) {
		t.Fatalf("snapshot %+v %v, want %+v", got.Snapshot, err, snap)
	}
	if !reflect.DeepEqual(folded, snap) {
		t.Fatalf("folded %+v, snapshot %+v", folded, snap)
	}
	if _, err := Restore(Config{}, got.Snapshot); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeStateRecord(f *testing.F) {
	k, _ := EncodeStateKey(RecordShareSnapshot, StateKey{Group: "g", TopicID: topicID})
	f.Add(k, EncodeSnapshotValue(SnapshotRecord{Snapshot: Snapshot{StartOffset: 3, Batches: []StateBatch{{First: 3, Last: 5, State: Archived, DeliveryCount: 2}}}}))
	k, _ = EncodeStateKey(RecordShareUpdate, StateKey{Group: "g", TopicID: topicID})
	f.Add(k, EncodeUpdateValue(UpdateRecord{Update: Update{StartOffset: -1, Batches: []StateBatch{{First: 3, Last: 5, State: Acknowledged, DeliveryCount: 1}}}}))
	f.Add(k, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(k, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		typ, sk, err := DecodeStateKey(key)
		if err != nil {
			return
		}
		k2, _ := EncodeStateKey(typ, sk)
		if !bytes.Equal(k2, key) {
			t.Fatalf("key re-encodes to %x, read %x", k2, key)
		}
		switch typ {
		case RecordShareSnapshot:
			r, err := DecodeSnapshotValue(value)
			if err != nil {
				if !errors.Is(err, kafkaproto.ErrSchemaDecode) && !strings.Contains(err.Error(), "state batch") {
					t.Fatalf("error %v", err)
				}
				return
			}
			r2, err := DecodeSnapshotValue(EncodeSnapshotValue(r))
			if err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("re-decode %+v %v, want %+v", r2, err, r)
			}
			// A decoded snapshot restores (Restore allocates per offset:
			// only small ranges here).
			if n := len(r.Batches); r.StartOffset >= 0 && (n == 0 || r.Batches[n-1].Last-r.StartOffset < 1<<12) {
				if _, err := Restore(Config{}, r.Snapshot); err != nil {
					t.Fatalf("decoded snapshot does not restore: %v", err)
				}
			}
		case RecordShareUpdate:
			r, err := DecodeUpdateValue(value)
			if err != nil {
				return
			}
			r2, err := DecodeUpdateValue(EncodeUpdateValue(r))
			if err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("re-decode %+v %v, want %+v", r2, err, r)
			}
		}
	})
}
