package share

import (
	"testing"
	"time"
)

// BenchmarkAcquireAccept is one consumer's steady state: acquire 500
// records in batches of 100, accept them, the SPSO moves on. ns/op is per
// record.
func BenchmarkAcquireAccept(b *testing.B) {
	p := New(Config{}, 0, 0)
	const batch, per = 100, 500
	batches := make([]BatchSpan, per/batch)
	acks := []AckBatch{{Types: []AckType{AckAccept}}}
	now := t0
	b.ReportAllocs()
	for i := 0; i < b.N; i += per {
		base := p.SPEO()
		for j := range batches {
			batches[j] = BatchSpan{Base: base + int64(j*batch), Last: base + int64(j*batch+batch-1)}
		}
		got, _, err := p.Acquire("m", per, p.FetchOffset(), batches, now)
		if err != nil || len(got) != 1 {
			b.Fatalf("acquire: %v %v", got, err)
		}
		acks[0].First, acks[0].Last = got[0].First, got[0].Last
		if errs, _ := p.Acknowledge("m", acks, now); errs[0] != 0 {
			b.Fatalf("ack: %d", errs[0])
		}
		now = now.Add(time.Millisecond)
	}
}

// BenchmarkSharedWindow is four consumers interleaved over a full window
// of 2000 in-flight records, each accepting what it holds one acquisition
// later, so FetchOffset, Acquire and the SPSO advance work on a full
// window. ns/op is per record.
func BenchmarkSharedWindow(b *testing.B) {
	p := New(Config{}, 0, 0)
	members := []string{"m0", "m1", "m2", "m3"}
	held := make([][]AcquiredRange, len(members))
	const per = 500
	now := t0
	b.ReportAllocs()
	for i, k := 0, 0; i < b.N; i, k = i+per, k+1 {
		m := k % len(members)
		if len(held[m]) > 0 {
			acks := make([]AckBatch, 0, len(held[m]))
			for _, r := range held[m] {
				acks = append(acks, AckBatch{First: r.First, Last: r.Last, Types: []AckType{AckAccept}})
			}
			if errs, _ := p.Acknowledge(members[m], acks, now); errs[0] != 0 {
				b.Fatalf("ack: %d", errs[0])
			}
		}
		from := p.FetchOffset()
		got, _, err := p.Acquire(members[m], per, from, []BatchSpan{{from, from + per - 1, false}}, now)
		if err != nil {
			b.Fatal(err)
		}
		n := int64(0)
		for _, r := range got {
			n += r.Last - r.First + 1
		}
		if n != per || p.SPEO()-p.SPSO() > int64(len(members)*per) {
			b.Fatalf("acquired %d, window [%d, %d)", n, p.SPSO(), p.SPEO())
		}
		held[m] = got
		now = now.Add(time.Millisecond)
	}
}
