package storage

import (
	"context"
	"testing"
	"time"
)

func TestStatsCountFsyncsAndBatches(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	const n = 10
	var last int64
	for i := 0; i < n; i++ {
		res, _ := appendSpec(t, l, plain(2, 10, 1, byte(i)))
		last = res.LastOffset
	}
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	if s.FsyncBatches != n || s.Fsyncs < 1 || s.Fsyncs > n {
		t.Fatalf("stats %+v after %d batches made durable", s, n)
	}
}

// TestLatencyHistBuckets: a duration counts in the first bucket whose
// bound it does not exceed; above the last bound it counts in the extra
// one; the sum is exact.
func TestLatencyHistBuckets(t *testing.T) {
	var h latencyHist
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 150 * time.Microsecond, 400 * time.Microsecond, 10 * time.Second} {
		h.observe(d)
	}
	s := h.snapshot()
	want := map[int]int64{0: 2, 1: 1, 2: 1, 16: 1}
	for i, n := range s.Counts {
		if n != want[i] {
			t.Errorf("bucket %d (≤ %v): %d, want %d", i, func() any {
				if i < len(s.Bounds) {
					return s.Bounds[i]
				}
				return "+Inf"
			}(), n, want[i])
		}
	}
	if wantSum := 10*time.Second + 700*time.Microsecond; s.Sum != wantSum {
		t.Errorf("sum %v, want %v", s.Sum, wantSum)
	}
	if s.Bounds[0] != 100*time.Microsecond || s.Bounds[15] != 100*time.Microsecond<<15 {
		t.Errorf("bounds %v … %v", s.Bounds[0], s.Bounds[15])
	}
}
