package cleaner

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkClean measures cleaning throughput (MB/s of input) on 1 KiB
// records in batches of 16, with 10% unique keys (every key written ten
// times, so nine in ten records go), one goroutine:
//
//	go test ./storage/cleaner -run '^$' -bench BenchmarkClean -benchtime 10x
//
// none and zstd keep the key map in memory; spill gives it 64 KiB so it
// spills sorted runs and looks keys up on disk.
func BenchmarkClean(b *testing.B) {
	const (
		records   = 20_000
		perBatch  = 16
		valueSize = 1024
		keys      = records / 10
	)
	for _, bc := range []struct {
		name     string
		codec    string
		mapBytes int64
	}{
		{"none", codecNone, 0},
		{"zstd", codecZstd, 0},
		{"spill", codecNone, 64 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rnd := rand.New(rand.NewSource(1))
			var in [][]byte
			total := 0
			for base := 0; base < records; base += perBatch {
				recs := make([]kmsg.Record, perBatch)
				for i := range recs {
					v := make([]byte, valueSize)
					rnd.Read(v[:valueSize/2]) // half random, half zeros: compressible 2:1
					recs[i] = kmsg.Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "key-%08d", rnd.Intn(keys)), Value: v}
				}
				bt := tbatch{base: int64(base), codec: bc.codec, firstTS: int64(base), records: recs}.build(b)
				in = append(in, bt)
				total += len(bt)
			}
			p := Params{UpTo: records, NowMs: 1, Segments: []Segment{{Base: 0, End: records}}, MapBytes: bc.mapBytes, SpillDir: b.TempDir()}
			src := sliceSource(in)
			b.SetBytes(int64(total))
			b.ResetTimer()
			var st Stats
			for i := 0; i < b.N; i++ {
				var err error
				st, err = Clean(src, p, func([]byte) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if bc.mapBytes > 0 && !st.Spilled {
				b.Fatal("did not spill")
			}
			b.ReportMetric(float64(st.RecordsOut)/float64(st.RecordsIn), "kept/rec")
		})
	}
}
