package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSubBits sets the histogram's precision: values below 2^histSubBits
// (128 ns) are exact, and every larger bucket is at most 1/128 (0.78%) of
// its lower bound wide.
const (
	histSubBits  = 7
	histSubCount = 1 << histSubBits
	// histBuckets covers every non-negative int64.
	histBuckets = (64 - histSubBits) * histSubCount
)

// histogram is a log-linear latency histogram (the HDR histogram layout) of
// non-negative nanosecond values. Record is lock-free and allocation-free and
// may be called from any number of goroutines; read it (Quantile, Merge,
// Count) once recording has finished.
type histogram struct {
	counts [histBuckets]atomic.Int64
	n      atomic.Int64
	max    atomic.Int64
}

// bucketOf maps v >= 0 to its bucket: v itself below histSubCount, then
// histSubCount linear sub-buckets per power of two.
func bucketOf(v int64) int {
	if v < histSubCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 1 - histSubBits
	mantissa := int(v >> shift) // in [histSubCount, 2*histSubCount)
	return (shift+1)*histSubCount + mantissa - histSubCount
}

// bucketBounds returns the smallest and largest value that map to bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < histSubCount {
		return int64(i), int64(i)
	}
	shift := i/histSubCount - 1
	mantissa := int64(i%histSubCount + histSubCount)
	lo = mantissa << shift
	hi = lo + (int64(1) << shift) - 1
	if hi < lo { // the top bucket's bound overflows int64
		hi = math.MaxInt64
	}
	return lo, hi
}

// Record adds one duration; negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *histogram) Count() int64 { return h.n.Load() }

// Max is the largest recorded value.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Merge adds o's values to h.
func (h *histogram) Merge(o *histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			return
		}
	}
}

// Quantile returns the value at quantile q in [0, 1]: the smallest recorded
// value v such that at least ceil(q*n) values are <= v, reported as the upper
// bound of v's bucket (so it never understates), capped at the maximum. An
// empty histogram reports 0.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(hi, h.max.Load()))
		}
	}
	return h.Max()
}
