package cleaner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

func wantRecords(tb testing.TB, got, want []orec) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("records:\n got  %+v\n want %+v", got, want)
	}
}

func hdr(tb testing.TB, b []byte) kafkaproto.BatchHeader {
	tb.Helper()
	h, err := kafkaproto.ParseBatchHeader(b)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// Only each key's last record survives, at its original offset; records
// without a key go; batches keep their header fields; a batch that keeps
// every record is copied byte for byte.
func TestKeysOverwritten(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, firstTS: 100, epochLdr: 3, records: kvs("k1", "a", "k2", "b", "k3", "c")}.build(t),
		tbatch{base: 3, firstTS: 200, epochLdr: 3, records: kvs("k1", "d", "k2", "e")}.build(t),
		tbatch{base: 5, firstTS: 300, epochLdr: 4, records: []kmsg.Record{rec(0, "k1", "f"), rec(1, "", "no key")}}.build(t),
		tbatch{base: 7, firstTS: 400, records: kvs("", "no key 1", "", "no key 2")}.build(t),
		tbatch{base: 9, firstTS: 500, epochLdr: 4, records: kvs("k4", "g")}.build(t),
	}
	out, st := mustClean(t, in, oneSegment(10))
	wantRecords(t, checkOutput(t, out), []orec{
		{Offset: 2, Key: "k3", Value: "c"},
		{Offset: 4, Key: "k2", Value: "e"},
		{Offset: 5, Key: "k1", Value: "f"},
		{Offset: 9, Key: "k4", Value: "g"},
	})
	if len(out) != 4 {
		t.Fatalf("%d output batches, want 4 (the key-less batch dropped)", len(out))
	}
	for i, src := range []int{0, 1, 2} {
		if !bytes.Equal(headerExceptCounts(out[i]), headerExceptCounts(in[src])) {
			t.Fatalf("batch %d header changed:\n%x\n%x", i, out[i][:kafkaproto.BatchHeaderSize], in[src][:kafkaproto.BatchHeaderSize])
		}
	}
	if h := hdr(t, out[0]); h.RecordCount != 1 || h.LastOffsetDelta != 2 || h.MaxTimestamp != 120 {
		t.Fatalf("batch 0 header %+v", h)
	}
	if !bytes.Equal(out[3], in[4]) {
		t.Fatal("a batch keeping every record was not copied byte for byte")
	}
	want := Stats{BatchesIn: 5, BatchesOut: 4, RecordsIn: 10, RecordsOut: 4, TombstonesRemoved: 0}
	want.BytesIn = int64(len(slices.Concat(in...)))
	want.BytesOut = int64(len(slices.Concat(out...)))
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

// A tombstone that is its key's latest goes once its segment's seal time
// plus delete.retention.ms is ≤ NowMs (equality included), and stays
// before; the emptied last batch of a segment is kept as an empty batch.
func TestTombstoneHorizon(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("a", "1", "b", "1", "c", "1")}.build(t),
		tbatch{base: 3, codec: codecZstd, firstTS: 50, records: kvs("a", "", "c", "")}.build(t), // last batch of segment [0, 5)
		tbatch{base: 5, records: kvs("b", "", "c", "2")}.build(t),                               // segment [5, 7)
	}
	segs := []Segment{{Base: 0, End: 5, SealedAtMs: 1000}, {Base: 5, End: 7, SealedAtMs: 5000}}
	for _, tc := range []struct {
		name       string
		nowMs      int64
		want       []orec
		removed    int64
		emptyFirst bool
	}{
		{"before both horizons", 1999, []orec{{Offset: 3, Key: "a", NullValue: true}, {Offset: 5, Key: "b", NullValue: true}, {Offset: 6, Key: "c", Value: "2"}}, 0, false},
		{"at the first horizon", 2000, []orec{{Offset: 5, Key: "b", NullValue: true}, {Offset: 6, Key: "c", Value: "2"}}, 1, true},
		{"past both horizons", 6000, []orec{{Offset: 6, Key: "c", Value: "2"}}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Params{UpTo: 7, NowMs: tc.nowMs, DeleteRetentionMs: 1000, Segments: segs}
			out, st := mustClean(t, in, p)
			wantRecords(t, checkOutput(t, out), tc.want)
			if st.TombstonesRemoved != tc.removed {
				t.Fatalf("TombstonesRemoved %d, want %d", st.TombstonesRemoved, tc.removed)
			}
			// Batch 0 loses everything and is not a segment's last: dropped.
			if len(out) != 2 {
				t.Fatalf("%d output batches, want 2", len(out))
			}
			h := hdr(t, out[0])
			if h.BaseOffset != 3 || h.LastOffsetDelta != 1 || h.FirstTimestamp != 50 || h.MaxTimestamp != 60 {
				t.Fatalf("segment 0's last batch: %+v", h)
			}
			if tc.emptyFirst {
				if h.RecordCount != 0 || len(out[0]) != kafkaproto.BatchHeaderSize || h.Compression() != kafkaproto.CompressionNone {
					t.Fatalf("segment 0's emptied last batch: %+v, %d bytes", h, len(out[0]))
				}
			} else if h.Compression() != kafkaproto.CompressionZstd || h.RecordCount != 1 {
				t.Fatalf("segment 0's last batch: %+v", h)
			}
		})
	}
}

// Horizons override the segments' seal times: in one merged segment
// [0, 7), the tombstone of the part sealed at 1000 goes at NowMs 2000
// while the part sealed at 5000 keeps its own.
func TestTombstoneHorizonsOfMergedSegment(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("a", "1", "b", "1", "c", "1")}.build(t),
		tbatch{base: 3, records: kvs("a", "", "c", "")}.build(t),
		tbatch{base: 5, records: kvs("b", "", "c", "2")}.build(t),
	}
	p := Params{UpTo: 7, NowMs: 2000, DeleteRetentionMs: 1000, Segments: []Segment{{Base: 0, End: 7, SealedAtMs: 5000}},
		Horizons: []Horizon{{Start: 0, SealedAtMs: 1000}, {Start: 5, SealedAtMs: 5000}}}
	out, st := mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 5, Key: "b", NullValue: true}, {Offset: 6, Key: "c", Value: "2"}})
	if st.TombstonesRemoved != 1 {
		t.Fatalf("TombstonesRemoved %d, want 1", st.TombstonesRemoved)
	}
	// Without the horizons the merged segment's seal time holds both.
	p.Horizons = nil
	out, _ = mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 3, Key: "a", NullValue: true}, {Offset: 5, Key: "b", NullValue: true}, {Offset: 6, Key: "c", Value: "2"}})
}

// A producer's last data batch in the range is kept even when none of its
// records survive, as an empty batch with its producer fields; its earlier
// batches are dropped. A producer whose last batch is before a control
// batch of its own still keeps that data batch.
func TestProducerLastBatchEmptiedKept(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, idem: true, pid: 7, epoch: 2, seq: 0, records: kvs("k", "a")}.build(t),
		tbatch{base: 1, idem: true, pid: 7, epoch: 2, seq: 1, codec: codecGzip, firstTS: 1000, epochLdr: 9, records: kvs("k", "b", "k", "c")}.build(t),
		tbatch{base: 3, idem: true, pid: 8, epoch: 0, seq: 5, records: kvs("k", "d")}.build(t),
		tbatch{base: 4, records: kvs("j", "x")}.build(t),
	}
	out, _ := mustClean(t, in, oneSegment(5))
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 3, Key: "k", Value: "d"}, {Offset: 4, Key: "j", Value: "x"}})
	if len(out) != 3 || !bytes.Equal(out[1], in[2]) || !bytes.Equal(out[2], in[3]) {
		t.Fatalf("%d output batches; want pid 7's emptied batch, then batches 2 and 3 unchanged", len(out))
	}
	h := hdr(t, out[0])
	want := hdr(t, in[1])
	want.Attributes &^= kafkaproto.AttrCompressionMask
	want.RecordCount = 0
	want.BatchLength = kafkaproto.BatchHeaderSize - kafkaproto.BatchOverhead
	want.CRC = h.CRC
	if h != want {
		t.Fatalf("emptied batch\n got  %+v\n want %+v", h, want)
	}
	if err := validateStored(out[0]); err != nil {
		t.Fatal(err)
	}

	// Cleaning the output again changes nothing: the empty batch is
	// still pid 7's last, and is kept as it is.
	again, _ := mustClean(t, out, oneSegment(5))
	if !reflect.DeepEqual(again, out) {
		t.Fatal("re-cleaning the output changed it")
	}
}

// controlBatch is a transaction marker (COMMIT) of producer pid.
func controlBatch(tb testing.TB, base, pid int64) []byte {
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), 1) // version 0, COMMIT
	val := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), 4) // version 0, coordinator epoch 4
	return tbatch{base: base, idem: true, pid: pid, epoch: 1, control: true, txn: true,
		records: []kmsg.Record{{Key: key, Value: val}}}.build(tb)
}

// Control batches pass through byte for byte; their records are not keys:
// a data record with the same key bytes before them survives.
func TestControlBatchesPassThrough(t *testing.T) {
	ctl := controlBatch(t, 2, 11)
	ctlKey := string([]byte{0, 0, 0, 1})
	in := [][]byte{
		tbatch{base: 0, idem: true, txn: true, pid: 11, epoch: 1, records: kvs(ctlKey, "v", "x", "1")}.build(t),
		ctl,
		tbatch{base: 3, records: kvs("x", "2")}.build(t),
		controlBatch(t, 4, 12),
	}
	out, st := mustClean(t, in, oneSegment(5))
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 0, Key: ctlKey, Value: "v"}, {Offset: 3, Key: "x", Value: "2"}})
	if len(out) != 4 || !bytes.Equal(out[1], in[1]) || !bytes.Equal(out[3], in[3]) {
		t.Fatal("control batches not passed through unchanged")
	}
	if st.RecordsIn != 5 || st.RecordsOut != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// A compressed batch losing records is re-encoded with its codec (snappy
// keeping its framing); the survivors' bytes (headers, deltas) are
// unchanged and the header keeps the original max timestamp.
func TestCompressedCodecs(t *testing.T) {
	recs := []kmsg.Record{
		rec(0, "a", strings.Repeat("x", 300)),
		rec(1, "b", "1"),
		{OffsetDelta: 2, TimestampDelta64: -5, Key: []byte("a"), Value: []byte("2"), Headers: []kmsg.Header{{Key: "h", Value: []byte("hv")}}},
		rec(3, "c", strings.Repeat("y", 200)),
		{OffsetDelta: 5, TimestampDelta64: 99, Key: []byte("b"), Value: nil, Headers: []kmsg.Header{{Key: "t", Value: nil}}},
		rec(6, "", "keyless"),
	}
	survivors := []kmsg.Record{recs[2], recs[3], recs[4]}
	for _, codec := range allCodecs {
		t.Run(codec, func(t *testing.T) {
			in := [][]byte{
				tbatch{base: 10, codec: codec, firstTS: 1_700_000_000_000, lastDelta: 7, idem: true, pid: 3, epoch: 1, seq: 40, records: recs}.build(t),
				tbatch{base: 20, records: kvs("z", "1")}.build(t),
			}
			p := Params{Start: 10, UpTo: 21, NowMs: 0, DeleteRetentionMs: 1, Segments: []Segment{{Base: 0, End: 21, SealedAtMs: 0}}}
			out, _ := mustClean(t, in, p)
			wantRecords(t, checkOutput(t, out), []orec{
				{Offset: 12, Key: "a", Value: "2"}, {Offset: 13, Key: "c", Value: strings.Repeat("y", 200)},
				{Offset: 15, Key: "b", NullValue: true}, {Offset: 20, Key: "z", Value: "1"},
			})
			h := hdr(t, out[0])
			if !bytes.Equal(headerExceptCounts(out[0]), headerExceptCounts(in[0])) || h.RecordCount != 3 || h.LastOffsetDelta != 7 {
				t.Fatalf("re-encoded header %+v", h)
			}
			payload, err := kafkaproto.DecompressRecords(out[0], h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(payload, encodeRecords(survivors)) {
				t.Fatal("survivors' record bytes changed")
			}
			if codec == codecLZ4 {
				// The frame Kafka's Java client writes and reads: magic,
				// FLG version 01 with independent blocks and no block or
				// content checksum (the Java reader checks content
				// checksums as an XOR of per-block hashes), BD 64 KiB.
				pl := out[0][kafkaproto.BatchHeaderSize:]
				if !bytes.Equal(pl[:4], []byte{0x04, 0x22, 0x4d, 0x18}) || pl[4] != 0x60 || pl[5] != 0x40 {
					t.Fatalf("lz4 frame header %x, want magic 04224d18, FLG 60, BD 40", pl[:6])
				}
			}
			if codec == codecSnappyXerial || codec == codecSnappyRaw {
				if got := isXerial(out[0][kafkaproto.BatchHeaderSize:]); got != (codec == codecSnappyXerial) {
					t.Fatalf("snappy framing: xerial=%v", got)
				}
			}
			// Deterministic: the same bytes again.
			again, _ := mustClean(t, in, p)
			if !reflect.DeepEqual(again, out) {
				t.Fatal("two runs differ")
			}
		})
	}
}

// Batches below Start are skipped, one straddling Start is cleaned whole,
// batches at or above UpTo are skipped.
func TestRangeBounds(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, records: kvs("a", "1", "b", "1")}.build(t),
		tbatch{base: 2, records: kvs("a", "2", "c", "1", "a", "3")}.build(t), // straddles Start=3
		tbatch{base: 5, records: kvs("c", "2")}.build(t),
		tbatch{base: 6, records: kvs("b", "2")}.build(t), // at UpTo
	}
	p := Params{Start: 3, UpTo: 6, Segments: []Segment{{Base: 2, End: 6}}}
	out, st := mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 4, Key: "a", Value: "3"}, {Offset: 5, Key: "c", Value: "2"}})
	if st.BatchesIn != 2 || st.RecordsIn != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// randomBatches builds a deterministic mixed workload: n batches over
// nKeys keys, every codec, tombstones, key-less records, producers,
// control batches and offset gaps (as after an earlier cleaning).
func randomBatches(tb testing.TB, n, nKeys int) ([][]byte, int64) {
	var in [][]byte
	seed := uint64(0x9e3779b97f4a7c15)
	rnd := func(m int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(m))
	}
	off := int64(0)
	for i := 0; i < n; i++ {
		if rnd(20) == 0 {
			in = append(in, marker(tb, off, int64(rnd(4)), rnd(3) > 0))
			off++
			continue
		}
		var recs []kmsg.Record
		d := int32(0)
		for j, cnt := 0, 1+rnd(8); j < cnt; j++ {
			key, val := "k"+strings.Repeat("x", rnd(3))+string(rune('0'+rnd(nKeys))), "v"+strings.Repeat("v", rnd(50))
			if nKeys > 10 {
				key = "key-" + strings.Repeat("0", rnd(2)) + itoa(rnd(nKeys))
			}
			switch rnd(10) {
			case 0:
				key = ""
			case 1, 2:
				val = ""
			}
			recs = append(recs, rec(d, key, val))
			d += int32(1 + rnd(2))
		}
		b := tbatch{base: off, codec: allCodecs[rnd(len(allCodecs))], firstTS: int64(i) * 1000, records: recs}
		if rnd(3) == 0 {
			b.idem, b.pid, b.epoch, b.seq, b.txn = true, int64(rnd(5)), 1, int32(i), rnd(2) == 0
		}
		in = append(in, b.build(tb))
		off += int64(d) + int64(rnd(2))
	}
	return in, off
}

func itoa(i int) string {
	return string(binary.AppendUvarint(nil, uint64(i))) // any injective encoding
}

// model is the expected output records, computed independently from the
// input batches.
func model(tb testing.TB, in [][]byte, p Params) []orec {
	want, _ := modelTxn(tb, in, p)
	return want
}

// modelTxn is model, and the producers with undecided transactional data
// (records whose marker is not in the range) in the input. A
// transactional batch belongs to its producer's first marker after it in
// the range: ABORT removes its records, COMMIT makes them plain data, and
// without a marker they are all kept and supersede nothing.
func modelTxn(tb testing.TB, in [][]byte, p Params) ([]orec, map[int64]bool) {
	var d kafkaproto.Decompressor
	defer d.Close()
	type r struct {
		orec
		tomb, undecided bool
	}
	inRange := func(h kafkaproto.BatchHeader) bool { return h.LastOffset() >= p.Start && h.BaseOffset < p.UpTo }
	type mark struct {
		off    int64
		commit bool
	}
	markers := map[int64][]mark{}
	for _, b := range in {
		h := hdr(tb, b)
		if !h.IsControl() || !inRange(h) || h.ProducerID < 0 || h.RecordCount == 0 {
			continue
		}
		rs, err := d.Records(b)
		if err != nil || len(rs) == 0 {
			continue // not a marker: storage's replay skips it too
		}
		var k kmsg.ControlRecordKey
		var v kmsg.EndTxnMarker
		if k.ReadFrom(rs[0].Key) == nil && v.ReadFrom(rs[0].Value) == nil && k.Type <= 1 {
			markers[h.ProducerID] = append(markers[h.ProducerID], mark{h.BaseOffset, k.Type == 1})
		}
	}
	undecidedPids := map[int64]bool{}
	var all []r
	latest := map[string]int64{}
	for _, b := range in {
		h := hdr(tb, b)
		if h.IsControl() || !inRange(h) {
			continue
		}
		undecided := false
		if h.IsTransactional() && h.ProducerID >= 0 {
			i := slices.IndexFunc(markers[h.ProducerID], func(m mark) bool { return m.off > h.BaseOffset })
			switch {
			case i < 0:
				undecided = true
				if h.RecordCount > 0 {
					undecidedPids[h.ProducerID] = true
				}
			case !markers[h.ProducerID][i].commit:
				continue // aborted
			}
		}
		rs, err := d.Records(b)
		if err != nil {
			tb.Fatal(err)
		}
		for _, x := range rs {
			if x.Key == nil && !undecided {
				continue
			}
			if !undecided {
				latest[string(x.Key)] = x.Offset
			}
			all = append(all, r{orec{Offset: x.Offset, Key: string(x.Key), Value: string(x.Value), NullValue: x.Value == nil}, x.Value == nil, undecided})
		}
	}
	var want []orec
	for _, x := range all {
		if x.undecided {
			want = append(want, x.orec)
			continue
		}
		if latest[x.Key] != x.Offset {
			continue
		}
		if x.tomb {
			seg := p.Segments[0]
			for _, s := range p.Segments {
				if x.Offset >= s.Base && x.Offset < s.End {
					seg = s
				}
			}
			if seg.SealedAtMs+p.DeleteRetentionMs <= p.NowMs {
				continue
			}
		}
		want = append(want, x.orec)
	}
	return want, undecidedPids
}

// Two runs give identical bytes; a run whose key map spills (tiny
// MapBytes: many runs, several merge levels) gives the same bytes as the
// in-memory one and removes its spill files; the records are the model's.
func TestDeterminismAndSpill(t *testing.T) {
	in, end := randomBatches(t, 600, 400)
	third := end / 3
	p := Params{UpTo: end, NowMs: 10_000, DeleteRetentionMs: 1000, Segments: []Segment{
		{Base: 0, End: third, SealedAtMs: 5000}, {Base: third, End: 2 * third, SealedAtMs: 9000}, {Base: 2 * third, End: end, SealedAtMs: 9500},
	}}
	out1, st1 := mustClean(t, in, p)
	out2, st2 := mustClean(t, in, p)
	if !reflect.DeepEqual(out1, out2) || st1 != st2 {
		t.Fatal("two in-memory runs differ")
	}
	if st1.Spilled {
		t.Fatal("in-memory run spilled")
	}
	wantRecords(t, checkOutput(t, out1), model(t, in, p))
	if st1.BatchesOut >= st1.BatchesIn || st1.RecordsOut >= st1.RecordsIn || st1.TombstonesRemoved == 0 {
		t.Fatalf("workload did not exercise the cleaner: %+v", st1)
	}

	spillDir := filepath.Join(t.TempDir(), "spill")
	ps := p
	ps.MapBytes = 10 * entryBytes // 10 keys per run: dozens of runs, multi-level merge
	ps.SpillDir = spillDir
	out3, st3 := mustClean(t, in, ps)
	if !st3.Spilled {
		t.Fatal("tiny MapBytes did not spill")
	}
	st3.Spilled = false
	if !reflect.DeepEqual(out1, out3) || st1 != st3 {
		t.Fatalf("spilled run differs from the in-memory run: %+v vs %+v", st3, st1)
	}
	if _, err := os.Stat(spillDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spill directory left behind: %v", err)
	}

	// An existing spill directory stays, emptied of Clean's files.
	if err := os.Mkdir(spillDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out4, _ := mustClean(t, in, ps)
	if !reflect.DeepEqual(out1, out4) {
		t.Fatal("spilled run into an existing directory differs")
	}
	if ents, err := os.ReadDir(spillDir); err != nil || len(ents) != 0 {
		t.Fatalf("spill directory after Clean: %v, %v", ents, err)
	}
}

// Bad input and bad parameters give "cleaner: " errors, never a panic or
// partial silent success.
func TestBadInput(t *testing.T) {
	good := func() [][]byte {
		return [][]byte{
			tbatch{base: 0, records: kvs("a", "1", "b", "2")}.build(t),
			tbatch{base: 2, codec: codecGzip, records: kvs("a", "3")}.build(t),
		}
	}
	corruptRecord := tbatch{base: 2, records: kvs("a", "3")}.build(t)
	corruptRecord[kafkaproto.BatchHeaderSize] = 0x7f // record length beyond the batch
	fixCRC(corruptRecord)
	badGzip := good()[1]
	badGzip[len(badGzip)-3] ^= 0xff
	fixCRC(badGzip)
	tooMany := tbatch{base: 2, records: kvs("a", "3")}.build(t)
	binary.BigEndian.PutUint32(tooMany[offRecordCount:], 2)
	fixCRC(tooMany)

	cases := []struct {
		name  string
		mod   func(in [][]byte) [][]byte
		p     func(p *Params)
		errIs error
	}{
		{name: "bad CRC", mod: func(in [][]byte) [][]byte { in[1][len(in[1])-1] ^= 1; return in }, errIs: kafkaproto.ErrBadCRC},
		{name: "truncated", mod: func(in [][]byte) [][]byte { in[1] = in[1][:len(in[1])-1]; return in }},
		{name: "trailing bytes", mod: func(in [][]byte) [][]byte { in[1] = append(in[1], 0); return in }},
		{name: "short", mod: func(in [][]byte) [][]byte { in[1] = in[1][:10]; return in }},
		{name: "repeated batch", mod: func(in [][]byte) [][]byte { return [][]byte{in[0], in[0]} }},
		{name: "overlap", mod: func(in [][]byte) [][]byte {
			return [][]byte{in[0], tbatch{base: 1, records: kvs("a", "3")}.build(t)}
		}},
		{name: "corrupt record", mod: func(in [][]byte) [][]byte { in[1] = corruptRecord; return in }, errIs: kafkaproto.ErrCorruptBatch},
		{name: "corrupt gzip", mod: func(in [][]byte) [][]byte { in[1] = badGzip; return in }, errIs: kafkaproto.ErrCorruptBatch},
		{name: "count beyond records", mod: func(in [][]byte) [][]byte { in[1] = tooMany; return in }},
		{name: "straddles UpTo", p: func(p *Params) { p.UpTo = 1; p.Segments[0].End = 1 }},
		{name: "segments do not cover", p: func(p *Params) { p.Segments[0].End = 2 }},
		{name: "segment gap", p: func(p *Params) { p.Segments = []Segment{{Base: 0, End: 1}, {Base: 2, End: 3}} }},
		{name: "no segments", p: func(p *Params) { p.Segments = nil }},
		{name: "reversed range", p: func(p *Params) { p.Start = 4 }},
		{name: "negative retention", p: func(p *Params) { p.DeleteRetentionMs = -1 }},
		{name: "spill without directory", p: func(p *Params) { p.MapBytes = 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := good()
			if tc.mod != nil {
				in = tc.mod(in)
			}
			p := oneSegment(3)
			if tc.p != nil {
				tc.p(&p)
			}
			_, _, err := runClean(t, in, p)
			if err == nil || !strings.HasPrefix(err.Error(), "cleaner: ") {
				t.Fatalf("err %v, want a cleaner: error", err)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Fatalf("err %v, want %v", err, tc.errIs)
			}
		})
	}

	t.Run("source error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := Clean(func(fn func([]byte) error) error { return boom }, oneSegment(3), func([]byte) error { return nil })
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "cleaner: ") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("out error", func(t *testing.T) {
		boom := errors.New("disk full")
		_, err := Clean(sliceSource(good()), oneSegment(3), func([]byte) error { return boom })
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "cleaner: ") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("source changes between passes", func(t *testing.T) {
		calls := 0
		src := func(fn func([]byte) error) error {
			calls++
			in := good()
			if calls == 2 {
				in = in[:1]
			}
			return sliceSource(in)(fn)
		}
		_, err := Clean(src, oneSegment(3), func([]byte) error { return nil })
		if !errors.Is(err, errSourceMismatch) {
			t.Fatalf("err %v", err)
		}
	})
}

// A batch spanning two segments is the last batch of the first one when
// nothing follows it there: emptied, it is kept. An empty batch (from an
// earlier cleaning) that is no longer a last batch goes.
func TestSegmentBoundaries(t *testing.T) {
	in := [][]byte{
		tbatch{base: 0, lastDelta: 1, firstTS: 5}.build(t), // already empty, offsets 0-1
		tbatch{base: 2, records: kvs("a", "1", "b", "1")}.build(t),
		tbatch{base: 4, records: []kmsg.Record{rec(0, "a", "2"), rec(3, "b", "2")}}.build(t), // offsets 4 and 7: spans [0, 6) and [6, 10)
		tbatch{base: 8, records: kvs("a", "3", "b", "3")}.build(t),
	}
	if h := hdr(t, in[0]); h.RecordCount != 0 || h.LastOffsetDelta != 1 {
		t.Fatalf("input empty batch %+v", h)
	}
	p := Params{UpTo: 10, Segments: []Segment{{Base: 0, End: 6}, {Base: 6, End: 10}}, DeleteRetentionMs: 1}
	out, st := mustClean(t, in, p)
	wantRecords(t, checkOutput(t, out), []orec{{Offset: 8, Key: "a", Value: "3"}, {Offset: 9, Key: "b", Value: "3"}})
	if len(out) != 2 || !bytes.Equal(out[1], in[3]) {
		t.Fatalf("%d output batches", len(out))
	}
	if h := hdr(t, out[0]); h.BaseOffset != 4 || h.LastOffsetDelta != 3 || h.RecordCount != 0 {
		t.Fatalf("spanning batch %+v", h)
	}
	if st.BatchesIn != 4 || st.BatchesOut != 2 || st.RecordsIn != 6 || st.RecordsOut != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// No batches, or an empty range, give no output and zero stats.
func TestEmpty(t *testing.T) {
	for _, p := range []Params{oneSegment(10), {Start: 5, UpTo: 5}} {
		out, st := mustClean(t, nil, p)
		if len(out) != 0 || st != (Stats{}) {
			t.Fatalf("%+v: %d batches, %+v", p, len(out), st)
		}
	}
}

// Clean creating the spill directory removes it only if it is empty:
// another Clean sharing it (which also found it missing) keeps its files.
func TestSpillDirShared(t *testing.T) {
	in, end := randomBatches(t, 50, 100)
	spillDir := filepath.Join(t.TempDir(), "spill")
	p := Params{UpTo: end, Segments: []Segment{{Base: 0, End: end}}, MapBytes: 4 * entryBytes, SpillDir: spillDir}
	calls := 0
	src := func(fn func([]byte) error) error {
		calls++
		if calls == 2 { // pass 2: the map has spilled, so spillDir exists
			if err := os.Mkdir(filepath.Join(spillDir, "cleaner-spill-other"), 0o755); err != nil {
				return err
			}
		}
		return sliceSource(in)(fn)
	}
	st, err := Clean(src, p, func([]byte) error { return nil })
	if err != nil || !st.Spilled {
		t.Fatalf("Clean: %v, %+v", err, st)
	}
	ents, err := os.ReadDir(spillDir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "cleaner-spill-other" {
		t.Fatalf("spill directory after Clean: %v, %v", ents, err)
	}
}
