package kafkaproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// allKinds has one field of every kind, a tagged field and a nested
// struct array.
func allKinds(flex bool) *Schema {
	s := &Schema{Name: "All", Version: 7, Flexible: flex, Fields: []Field{
		{Name: "I8", Kind: Int8},
		{Name: "I16", Kind: Int16},
		{Name: "I32", Kind: Int32},
		{Name: "I64", Kind: Int64},
		{Name: "ID", Kind: UUID},
		{Name: "S", Kind: String},
		{Name: "NS", Kind: NullString},
		{Name: "B", Kind: Bytes},
		{Name: "SA", Kind: StringArray},
		{Name: "IA", Kind: Int32Array},
		{Name: "Structs", Kind: StructArray, Fields: []Field{
			{Name: "X", Kind: Int16},
			{Name: "Inner", Kind: StructArray, Fields: []Field{{Name: "Y", Kind: String}}},
		}},
	}}
	if flex {
		s.Fields = append(s.Fields, Field{Name: "T", Kind: Int32, Tagged: true, Tag: 3})
	}
	return s
}

func allValues(flex bool) []any {
	v := []any{int8(-1), int16(-2), int32(-3), int64(-4), [16]byte{15: 1}, "s", (*string)(nil), []byte{9},
		[]string{"a", ""}, []int32{1, -1}, [][]any{{int16(5), [][]any{{"y"}}}, {int16(6), [][]any{}}}}
	if flex {
		v = append(v, int32(8))
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSchemaGolden(t *testing.T) {
	for _, c := range []struct {
		flex bool
		want string
	}{
		{false, "0007 ff fffe fffffffd fffffffffffffffc 00000000000000000000000000000001" +
			"0001 73 ffff 00000001 09" + // S "s" (int16 length), NS null, B (int32 length)
			"00000002 0001 61 0000" + // SA ["a", ""]
			"00000002 00000001 ffffffff" + // IA [1, -1]
			"00000002 0005 00000001 0001 79 0006 00000000"}, // Structs
		{true, "0007 ff fffe fffffffd fffffffffffffffc 00000000000000000000000000000001" +
			"02 73 00 02 09" + // S, NS null, B: compact (uvarint length+1)
			"03 02 61 01" + // SA
			"03 00000001 ffffffff" + // IA
			"03 0005 02 02 79 00 00 0006 01 00" + // Structs: each struct ends with its tag count
			"01 03 04 00000008"}, // one tagged field: tag 3, 4 bytes, 8
	} {
		s := allKinds(c.flex)
		b := s.Append(nil, allValues(c.flex))
		if want := unhex(t, c.want); !bytes.Equal(b, want) {
			t.Fatalf("flex=%v\n got %x\nwant %x", c.flex, b, want)
		}
		got, err := s.Decode(b)
		if err != nil {
			t.Fatalf("flex=%v: %v", c.flex, err)
		}
		if !reflect.DeepEqual(got, allValues(c.flex)) {
			t.Fatalf("flex=%v\n got %#v\nwant %#v", c.flex, got, allValues(c.flex))
		}
		// Every truncation is an error.
		for i := 0; i < len(b); i++ {
			if _, err := s.Decode(b[:i]); !errors.Is(err, ErrSchemaDecode) {
				t.Fatalf("flex=%v: %d of %d bytes: %v", c.flex, i, len(b), err)
			}
		}
	}
	// An absent tagged field decodes as nil.
	s := allKinds(true)
	v := allValues(true)
	v[len(v)-1] = nil
	got, err := s.Decode(s.Append(nil, v))
	if err != nil || got[len(got)-1] != nil {
		t.Fatalf("absent tag: %v %v", got[len(got)-1], err)
	}
}

func FuzzSchemaDecode(f *testing.F) {
	for _, flex := range []bool{false, true} {
		f.Add(flex, allKinds(flex).Append(nil, allValues(flex)))
	}
	f.Add(false, []byte{0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, flex bool, b []byte) {
		s := allKinds(flex)
		v, err := s.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrSchemaDecode) {
				t.Fatalf("error %v does not wrap ErrSchemaDecode", err)
			}
			return
		}
		// Anything that decodes re-encodes, and that encoding is stable
		// (Append writes neither unknown tags nor null arrays, so the
		// first re-encoding may differ from b).
		b2 := s.Append(nil, v)
		v2, err := s.Decode(b2)
		if err != nil {
			t.Fatalf("re-decode %x: %v", b2, err)
		}
		if b3 := s.Append(nil, v2); !bytes.Equal(b2, b3) {
			t.Fatalf("re-encoding unstable\n%x\n%x", b2, b3)
		}
	})
}
