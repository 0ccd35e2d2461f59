package cleaner

import (
	"reflect"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// fuzzInput turns fuzz bytes into a batch sequence and Params: a few keys
// (so records overwrite each other), null keys and values, every codec,
// producers, transactional batches with COMMIT and ABORT markers, offset
// gaps, empty batches, and now and then a byte flipped (with the CRC
// fixed or not), offsets out of order, or the rest of the data as a raw
// batch.
type fuzzInput struct {
	data []byte
}

func (f *fuzzInput) next() int {
	if len(f.data) == 0 {
		return 0
	}
	b := f.data[0]
	f.data = f.data[1:]
	return int(b)
}

func (f *fuzzInput) build(tb testing.TB) ([][]byte, Params) {
	var in [][]byte
	off := int64(f.next() % 3)
	for i, n := 0, 1+f.next()%10; i < n; i++ {
		kind := f.next()
		if kind%16 == 0 {
			in = append(in, marker(tb, off, int64(f.next()%3), kind%32 == 0))
			off++
			continue
		}
		var recs []kmsg.Record
		d := int32(0)
		for j, cnt := 0, f.next()%5; j < cnt; j++ {
			x := f.next()
			key := []string{"", "a", "b", "c", "dd"}[x%5]
			val := []string{"", "v", "long value long value long value"}[(x/5)%3]
			r := rec(d, key, val)
			r.TimestampDelta64 = int64(f.next()) - 100
			recs = append(recs, r)
			d += int32(1 + f.next()%3)
		}
		b := tbatch{base: off, codec: allCodecs[f.next()%len(allCodecs)], firstTS: int64(i) * 7, records: recs}
		if len(recs) == 0 {
			b.codec = codecNone
		}
		if p := f.next(); p%3 == 0 {
			b.idem, b.pid, b.epoch, b.seq = true, int64(p%4), 1, int32(i)
			b.txn = p%2 == 0 // transactional: its producer's next marker decides it
		}
		raw := b.build(tb)
		switch m := f.next(); {
		case m%11 == 1 && len(raw) > 0:
			raw[f.next()*7%len(raw)] ^= byte(1 + f.next())
			if m%2 == 1 {
				fixCRC(raw)
			}
		case m%13 == 2:
			off -= int64(f.next() % 3) // out of order
		}
		in = append(in, raw)
		off += int64(max(d, 1)) + int64(f.next()%2)
	}
	if f.next()%7 == 3 && len(f.data) > 0 {
		raw := slices.Clone(f.data)
		if len(raw) >= kafkaproto.BatchHeaderSize {
			fixCRC(raw)
		}
		in = append(in, raw)
		f.data = nil
	}
	end := off + int64(f.next()%3)
	p := Params{
		Start:             int64(f.next() % 8),
		UpTo:              end,
		NowMs:             int64(f.next()) * 10,
		DeleteRetentionMs: int64(f.next()),
	}
	// One to three contiguous segments covering [0, end).
	cut1, cut2 := int64(f.next())%(end+1), int64(f.next())%(end+1)
	if cut1 > cut2 {
		cut1, cut2 = cut2, cut1
	}
	base := int64(0)
	for _, c := range []int64{cut1, cut2, end} {
		if c > base {
			p.Segments = append(p.Segments, Segment{Base: base, End: c, SealedAtMs: int64(f.next()) * 10})
			base = c
		}
	}
	if p.Start > p.UpTo {
		p.Start = p.UpTo
	}
	return in, p
}

// FuzzClean: Clean never panics on any batch sequence; when it succeeds,
// every output batch is a valid stored batch (CRC, length, records
// decodable; a batch with every offset present passes
// kafkaproto.ValidateBatch), offsets strictly increase and lie within the
// range, the records are the independent model's (aborted records gone,
// undecided ones kept), replaying the output leaves no transaction open
// but those with data and no marker in the range, and a run whose key map
// spills gives identical bytes.
//
//	go test ./storage/cleaner -run '^$' -fuzz FuzzClean
func FuzzClean(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 5, 1, 4, 1, 3, 2, 6, 4, 0, 0, 2, 9, 0, 1, 17, 33, 0, 0, 3, 1, 2, 5, 0, 3, 1})
	f.Add([]byte("some longer input that picks many batches and codecs and keys and producers......"))
	f.Add(slices.Repeat([]byte{7, 3, 1, 1, 2, 0, 0, 5, 1, 0, 6, 1}, 20))
	f.Add(slices.Repeat([]byte{16, 1, 2, 200, 3, 11, 9, 9, 0}, 12))
	// Transactional batches of producer 2 (p = 6) between ABORT (16) and
	// COMMIT (32) markers of producers 2 and 1.
	f.Add(slices.Concat([]byte{0, 9}, slices.Repeat([]byte{1, 2, 1, 0, 0, 7, 0, 0, 0, 6, 0, 0, 16, 2, 3, 1, 6, 0, 0, 0, 6, 0, 1, 32, 2, 5, 2, 8, 0, 0, 9, 0, 0, 18, 0, 0, 32, 1}, 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fi := &fuzzInput{data: data}
		in, p := fi.build(t)
		out, st, err := runClean(t, in, p)
		if err != nil {
			if len(err.Error()) < 9 || err.Error()[:9] != "cleaner: " {
				t.Fatalf("error without the cleaner prefix: %v", err)
			}
			return
		}
		recs := checkOutput(t, out)
		for i, b := range out {
			h, _ := kafkaproto.ParseBatchHeader(b)
			if h.LastOffset() < p.Start || h.BaseOffset >= p.UpTo {
				t.Fatalf("output batch %d [%d, %d] outside [%d, %d)", i, h.BaseOffset, h.LastOffset(), p.Start, p.UpTo)
			}
		}
		if p.Start < p.UpTo {
			want, undecided := modelTxn(t, in, p)
			if !reflect.DeepEqual(recs, want) && !(len(recs) == 0 && len(want) == 0) {
				t.Fatalf("records\n got  %+v\n want %+v", recs, want)
			}
			// Replayed, the output leaves open only transactions whose
			// marker lies past the range.
			for pid := range replayOpen(t, out) {
				if !undecided[pid] {
					t.Fatalf("producer %d's transaction is open after replaying the output, and it has no undecided data", pid)
				}
			}
		}
		if st.BatchesOut != int64(len(out)) || st.RecordsOut != int64(len(recs))+controlRecords(out) {
			t.Fatalf("stats %+v for %d batches, %d records", st, len(out), len(recs))
		}
		ps := p
		ps.MapBytes = 2 * entryBytes
		ps.SpillDir = t.TempDir()
		out2, st2, err := runClean(t, in, ps)
		if err != nil {
			t.Fatalf("spilled run failed where the in-memory run did not: %v", err)
		}
		st2.Spilled = st.Spilled
		if !reflect.DeepEqual(out, out2) || st != st2 {
			t.Fatal("spilled run differs from the in-memory run")
		}
	})
}

func controlRecords(out [][]byte) int64 {
	var n int64
	for _, b := range out {
		if h, _ := kafkaproto.ParseBatchHeader(b); h.IsControl() {
			n += int64(h.RecordCount)
		}
	}
	return n
}
