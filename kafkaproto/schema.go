package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A small table-driven codec for the coordinator records Kafka generates
// from its JSON schemas and kmsg has no types for: the KIP-848 consumer
// group and KIP-932 share group records in __consumer_offsets and the
// share-partition state records in __share_group_state (see
// docs/groups-next.md, part A2). A Schema lists a record key's or value's
// fields in the JSON's order, each with a Kind; Append and Decode walk it
// over positional values ([]any, one per field):
//
//	Int8 int8, Int16 int16, Int32 int32, Int64 int64, UUID [16]byte,
//	String string, NullString *string, Bytes []byte,
//	StringArray []string, Int32Array []int32, StructArray [][]any.
//
// A record key or value starts with an int16: for keys the record type
// (Kafka's CoordinatorRecordType, written where the key's version used to
// be), for values the value's version. Keys are not flexible (int16
// string lengths, int32 array counts); values are (compact strings and
// arrays with uvarint length+1, and a tagged-field section after the
// fields of the value and of every struct). A Field with Tagged set lives
// in the tagged section under its Tag; its value is nil when absent, and
// Append writes it only when non-nil. Decode skips tags the schema does not
// name, so a record written by a newer Kafka with more tagged fields still
// decodes.
//
// Decode never trusts a length or count: each is bounded by the bytes left
// (a count of n elements needs at least n times the element's smallest
// encoding), so hostile input gives an error, never a panic, a huge
// allocation or a long loop.

// Kind is a field's wire type.
type Kind uint8

// The field kinds.
const (
	Int8 Kind = iota + 1
	Int16
	Int32
	Int64
	UUID
	String
	NullString
	Bytes
	StringArray
	Int32Array
	StructArray
)

// Field is one field of a Schema or of a StructArray's elements.
type Field struct {
	Name   string
	Kind   Kind
	Tagged bool // a tagged field (flexible only), written under Tag
	Tag    uint32
	Fields []Field // StructArray: the elements' fields
}

// Schema is one record key or value: the leading int16 (record type for a
// key, version for a value), whether it is flexible, and its fields.
type Schema struct {
	Name     string
	Version  int16
	Flexible bool
	Fields   []Field
}

// ErrSchemaDecode wraps every Decode failure.
var ErrSchemaDecode = errors.New("kafkaproto: bad record")

// RecordVersion returns the leading int16 of a record key or value (the
// record type of a key), to pick the Schema to decode it with.
func RecordVersion(b []byte) (int16, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("%w: %d bytes, no version", ErrSchemaDecode, len(b))
	}
	return int16(binary.BigEndian.Uint16(b)), nil
}

// Append appends the encoding of vals (one per field of s, see the package
// comment for the Go types) to dst. A value of the wrong Go type is a
// programming error and panics.
func (s *Schema) Append(dst []byte, vals []any) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(s.Version))
	return appendFields(dst, s.Name, s.Fields, vals, s.Flexible)
}

func appendFields(dst []byte, name string, fields []Field, vals []any, flex bool) []byte {
	if len(vals) != len(fields) {
		panic(fmt.Sprintf("kafkaproto: %s: %d values for %d fields", name, len(vals), len(fields)))
	}
	var tagged []int
	for i, f := range fields {
		if f.Tagged {
			if vals[i] != nil {
				tagged = append(tagged, i)
			}
			continue
		}
		dst = appendValue(dst, name, f, vals[i], flex)
	}
	if !flex {
		return dst
	}
	// Tags ascending, as Kafka writes them: fields are declared in tag order.
	dst = binary.AppendUvarint(dst, uint64(len(tagged)))
	for _, i := range tagged {
		v := appendValue(nil, name, fields[i], vals[i], true)
		dst = binary.AppendUvarint(dst, uint64(fields[i].Tag))
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

func appendLen(dst []byte, n int, flex, array bool) []byte {
	switch {
	case flex:
		return binary.AppendUvarint(dst, uint64(n)+1)
	case array:
		return binary.BigEndian.AppendUint32(dst, uint32(n))
	default:
		return binary.BigEndian.AppendUint16(dst, uint16(n))
	}
}

func appendNull(dst []byte, flex, array bool) []byte {
	switch {
	case flex:
		return append(dst, 0)
	case array:
		return binary.BigEndian.AppendUint32(dst, math.MaxUint32)
	default:
		return binary.BigEndian.AppendUint16(dst, math.MaxUint16)
	}
}

func appendValue(dst []byte, name string, f Field, v any, flex bool) []byte {
	bad := func() { panic(fmt.Sprintf("kafkaproto: %s.%s: value of type %T", name, f.Name, v)) }
	switch f.Kind {
	case Int8:
		x, ok := v.(int8)
		if !ok {
			bad()
		}
		return append(dst, byte(x))
	case Int16:
		x, ok := v.(int16)
		if !ok {
			bad()
		}
		return binary.BigEndian.AppendUint16(dst, uint16(x))
	case Int32:
		x, ok := v.(int32)
		if !ok {
			bad()
		}
		return binary.BigEndian.AppendUint32(dst, uint32(x))
	case Int64:
		x, ok := v.(int64)
		if !ok {
			bad()
		}
		return binary.BigEndian.AppendUint64(dst, uint64(x))
	case UUID:
		x, ok := v.([16]byte)
		if !ok {
			bad()
		}
		return append(dst, x[:]...)
	case String:
		x, ok := v.(string)
		if !ok {
			bad()
		}
		return append(appendLen(dst, len(x), flex, false), x...)
	case NullString:
		x, ok := v.(*string)
		if !ok {
			bad()
		}
		if x == nil {
			return appendNull(dst, flex, false)
		}
		return append(appendLen(dst, len(*x), flex, false), *x...)
	case Bytes:
		x, ok := v.([]byte)
		if !ok {
			bad()
		}
		return append(appendLen(dst, len(x), flex, true), x...)
	case StringArray:
		x, ok := v.([]string)
		if !ok {
			bad()
		}
		dst = appendLen(dst, len(x), flex, true)
		for _, s := range x {
			dst = append(appendLen(dst, len(s), flex, false), s...)
		}
		return dst
	case Int32Array:
		x, ok := v.([]int32)
		if !ok {
			bad()
		}
		dst = appendLen(dst, len(x), flex, true)
		for _, p := range x {
			dst = binary.BigEndian.AppendUint32(dst, uint32(p))
		}
		return dst
	case StructArray:
		x, ok := v.([][]any)
		if !ok {
			bad()
		}
		dst = appendLen(dst, len(x), flex, true)
		for _, e := range x {
			dst = appendFields(dst, name+"."+f.Name, f.Fields, e, flex)
		}
		return dst
	}
	panic(fmt.Sprintf("kafkaproto: %s.%s: unknown kind %d", name, f.Name, f.Kind))
}

// Decode decodes b, which must start with s.Version and hold exactly one
// encoding of s, into one value per field (tagged fields absent: nil).
func (s *Schema) Decode(b []byte) ([]any, error) {
	v, err := RecordVersion(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	if v != s.Version {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrSchemaDecode, s.Name, v, s.Version)
	}
	r := reader{b: b[2:], flex: s.Flexible}
	vals := r.fields(s.Fields)
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrSchemaDecode, s.Name, r.err)
	}
	return vals, nil
}

type reader struct {
	b    []byte
	flex bool
	err  error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail("need %d bytes, have %d", n, len(r.b))
		return nil
	}
	x := r.b[:n]
	r.b = r.b[n:]
	return x
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

// length reads a string (array false) or array length; -1 for null. An
// array's count is bounded by the bytes left divided by min, the
// smallest encoding of one element.
func (r *reader) length(array bool, min int) int {
	var n int64
	switch {
	case r.flex:
		n = int64(r.uvarint()) - 1
	case array:
		if b := r.take(4); b != nil {
			n = int64(int32(binary.BigEndian.Uint32(b)))
		}
	default:
		if b := r.take(2); b != nil {
			n = int64(int16(binary.BigEndian.Uint16(b)))
		}
	}
	if r.err != nil {
		return 0
	}
	if n < -1 || n > int64(len(r.b)/max(min, 1)) {
		r.fail("length %d with %d bytes left", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) fields(fields []Field) []any {
	vals := make([]any, len(fields))
	for i, f := range fields {
		if !f.Tagged {
			vals[i] = r.value(f)
		}
	}
	if !r.flex || r.err != nil {
		return vals
	}
	// Each tagged field takes at least two bytes (tag, size).
	n := r.uvarint()
	if n > uint64(len(r.b)/2) {
		r.fail("%d tagged fields with %d bytes left", n, len(r.b))
		return vals
	}
	last := int64(-1)
	for ; n > 0 && r.err == nil; n-- {
		tag := r.uvarint()
		size := r.uvarint()
		if r.err != nil {
			break
		}
		if int64(tag) <= last || tag > math.MaxUint32 {
			r.fail("tag %d after %d", tag, last)
			break
		}
		last = int64(tag)
		if size > uint64(len(r.b)) {
			r.fail("tagged field %d of %d bytes with %d left", tag, size, len(r.b))
			break
		}
		body := r.take(int(size))
		for i, f := range fields {
			if f.Tagged && uint64(f.Tag) == tag {
				sub := reader{b: body, flex: true}
				vals[i] = sub.value(f)
				if sub.err == nil && len(sub.b) != 0 {
					sub.fail("%d trailing bytes", len(sub.b))
				}
				if sub.err != nil {
					r.fail("tagged field %s: %s", f.Name, sub.err)
				}
			}
		}
	}
	return vals
}

// minSize is the smallest encoding of one value of f.
func minSize(f Field, flex bool) int {
	switch f.Kind {
	case Int8:
		return 1
	case Int16:
		return 2
	case Int32:
		return 4
	case Int64:
		return 8
	case UUID:
		return 16
	case String, NullString:
		if flex {
			return 1
		}
		return 2
	}
	if flex {
		return 1
	}
	return 4 // Bytes and arrays
}

// elemMin is the smallest encoding of one element of an array field.
func elemMin(f Field, flex bool) int {
	switch f.Kind {
	case StringArray:
		return minSize(Field{Kind: String}, flex)
	case Int32Array:
		return 4
	case StructArray:
		n := 0
		if flex {
			n = 1 // the element's tagged section
		}
		for _, sf := range f.Fields {
			if !sf.Tagged {
				n += minSize(sf, flex)
			}
		}
		return n
	}
	return 1 // Bytes
}

func (r *reader) str(nullable bool) any {
	n := r.length(false, 1)
	if r.err != nil {
		return nil
	}
	if n < 0 {
		if !nullable {
			r.fail("null string")
			return nil
		}
		return (*string)(nil)
	}
	s := string(r.take(n))
	if nullable {
		return &s
	}
	return s
}

func (r *reader) value(f Field) any {
	if r.err != nil {
		return nil
	}
	switch f.Kind {
	case Int8:
		if b := r.take(1); b != nil {
			return int8(b[0])
		}
	case Int16:
		if b := r.take(2); b != nil {
			return int16(binary.BigEndian.Uint16(b))
		}
	case Int32:
		if b := r.take(4); b != nil {
			return int32(binary.BigEndian.Uint32(b))
		}
	case Int64:
		if b := r.take(8); b != nil {
			return int64(binary.BigEndian.Uint64(b))
		}
	case UUID:
		if b := r.take(16); b != nil {
			return [16]byte(b)
		}
	case String:
		return r.str(false)
	case NullString:
		return r.str(true)
	case Bytes:
		n := r.length(true, 1)
		if n < 0 || r.err != nil {
			return []byte(nil)
		}
		return append([]byte{}, r.take(n)...)
	case StringArray:
		n := r.length(true, elemMin(f, r.flex))
		if n < 0 || r.err != nil {
			return []string(nil)
		}
		out := make([]string, 0, n) // n is bounded by the bytes left
		for i := 0; i < n && r.err == nil; i++ {
			s, _ := r.str(false).(string)
			out = append(out, s)
		}
		return out
	case Int32Array:
		n := r.length(true, 4)
		if n < 0 || r.err != nil {
			return []int32(nil)
		}
		out := make([]int32, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			if b := r.take(4); b != nil {
				out = append(out, int32(binary.BigEndian.Uint32(b)))
			}
		}
		return out
	case StructArray:
		n := r.length(true, elemMin(f, r.flex))
		if n < 0 || r.err != nil {
			return [][]any(nil)
		}
		out := make([][]any, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			out = append(out, r.fields(f.Fields))
		}
		return out
	default:
		r.fail("field %s: unknown kind %d", f.Name, f.Kind)
	}
	return nil
}
