package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestHistogramExact(t *testing.T) {
	var h histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 {
		t.Fatal("empty histogram not zero")
	}
	// Values below 128 ns are exact: 1..100 ns.
	for v := 100; v >= 1; v-- {
		h.Record(time.Duration(v))
	}
	for q, want := range map[float64]time.Duration{0: 1, 0.01: 1, 0.5: 50, 0.505: 51, 0.99: 99, 0.999: 100, 1: 100} {
		if got := h.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %d, want %d", q, got, want)
		}
	}
	if h.Count() != 100 || h.Max() != 100 {
		t.Fatalf("count %d max %d", h.Count(), h.Max())
	}
}

func TestHistogramBuckets(t *testing.T) {
	for _, c := range []struct {
		v      int64
		bucket int
		lo, hi int64
	}{
		{0, 0, 0, 0},
		{127, 127, 127, 127},
		{128, 128, 128, 128},
		{255, 255, 255, 255},
		{256, 256, 256, 257}, // width 2 from 256
		{257, 256, 256, 257},
		{1000, 506, 1000, 1003}, // 2^9..2^10: width 4
		{1 << 20, 14 * 128, 1 << 20, 1<<20 + 1<<13 - 1},
		{math.MaxInt64, (64-histSubBits)*histSubCount - 1, 255 << 55, math.MaxInt64},
	} {
		b := bucketOf(c.v)
		lo, hi := bucketBounds(b)
		if b != c.bucket || lo != c.lo || hi != c.hi {
			t.Errorf("value %d: bucket %d [%d, %d], want %d [%d, %d]", c.v, b, lo, hi, c.bucket, c.lo, c.hi)
		}
	}
	// Every bucket's bounds map back to it, and buckets tile the range.
	prevHi := int64(-1)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 || bucketOf(lo) != i || bucketOf(hi) != i || hi < lo {
			t.Fatalf("bucket %d: [%d, %d] after %d", i, lo, hi, prevHi)
		}
		prevHi = hi
	}
	if prevHi != math.MaxInt64 {
		t.Fatalf("buckets end at %d", prevHi)
	}
}

func TestHistogramQuantileAndMerge(t *testing.T) {
	a, b := new(histogram), new(histogram)
	// 90 values of 1 ms, 9 of 10 ms, 1 of 1 s, split over two histograms.
	for i := 0; i < 90; i++ {
		a.Record(time.Millisecond)
	}
	for i := 0; i < 9; i++ {
		b.Record(10 * time.Millisecond)
	}
	b.Record(time.Second)
	b.Record(-5) // negative counts as zero
	a.Merge(b)
	// 1 ms = 1,000,000 ns lies in [999424, 1003519] (width 4096).
	// 10 ms = 10,000,000 ns lies in [9961472, 10027007] (width 65536).
	// Quantiles report the bucket's upper bound, capped at the max (1 s).
	for q, want := range map[float64]time.Duration{
		0:     0,
		0.5:   1003519,
		0.9:   1003519,
		0.95:  10027007,
		0.99:  10027007,
		0.999: time.Second,
		1:     time.Second,
	} {
		if got := a.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %d, want %d", q, got, want)
		}
	}
	if a.Count() != 101 || a.Max() != time.Second {
		t.Fatalf("count %d max %v", a.Count(), a.Max())
	}
}

func newFake(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRunAgainstKfake(t *testing.T) {
	c := newFake(t)
	for _, tc := range []struct {
		compression, acks string
		idempotent        bool
		rate              float64
	}{
		{"none", "all", true, 0},
		{"zstd", "1", true, 0}, // idempotence is switched off for acks=1
		{"snappy", "all", false, 0},
		{"lz4", "all", true, 1}, // 1 MB/s: 200 KB take about 0.2 s
		{"gzip", "0", false, 0},
	} {
		t.Run(tc.compression+"-acks"+tc.acks, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Brokers = c.ListenAddrs()
			cfg.Topic = "bench-" + tc.compression
			cfg.Partitions = 3
			cfg.Records = 203 // not a multiple of Producers
			cfg.RecordSize = 1000
			cfg.Producers = 3
			cfg.Acks = tc.acks
			cfg.Compression = tc.compression
			cfg.Idempotent = tc.idempotent
			cfg.Rate = tc.rate
			cfg.Linger = time.Millisecond
			cfg.Timeout = 20 * time.Second
			cfg.Progress = 50 * time.Millisecond
			var log bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			res, err := Run(ctx, cfg, &log)
			if err != nil {
				t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
			}
			if res.Produced != cfg.Records || res.Consumed != cfg.Records || res.Errors != 0 {
				t.Fatalf("produced %d consumed %d errors %d, want %d each and no errors\n%s",
					res.Produced, res.Consumed, res.Errors, cfg.Records, res)
			}
			if res.ProduceRecordsPerSec <= 0 || res.ConsumeMBps <= 0 || res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.P999 ||
				res.E2EP50 > res.E2EP99 || res.E2EP99 > res.E2EP999 || res.Elapsed <= 0 || res.ConsumeElapsed <= 0 {
				t.Fatalf("implausible result:\n%s%+v", res, res)
			}
			if tc.rate > 0 {
				// Each producer sends 67 or 68 records of 1000 bytes at
				// 1/3 MB/s: its last record is due after about 0.19 s.
				if min := 150 * time.Millisecond; time.Since(start) < min {
					t.Fatalf("rate-limited run took %v, want >= %v", time.Since(start), min)
				}
			}
			if tc.acks == "1" && !strings.Contains(log.String(), "disabling it") {
				t.Errorf("log does not say idempotence was disabled:\n%s", log.String())
			}
			out := res.String()
			for _, want := range []string{"produce", "consume (e2e)", "p99.9", "errors: 0"} {
				if !strings.Contains(out, want) {
					t.Errorf("String() lacks %q:\n%s", want, out)
				}
			}
			t.Logf("\n%s", out)
		})
	}

	// A second run on an existing topic reads only its own records.
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Topic = "bench-none"
	cfg.Records, cfg.RecordSize, cfg.Producers, cfg.Partitions = 50, 10, 2, 3
	cfg.Progress = -1
	var log bytes.Buffer
	res, err := Run(context.Background(), cfg, &log)
	if err != nil || res.Produced != 50 || res.Consumed != 50 {
		t.Fatalf("second run: %v %+v", err, res)
	}
	if !strings.Contains(log.String(), "exists") {
		t.Errorf("log does not mention the existing topic:\n%s", log.String())
	}
}

func TestRunNoConsume(t *testing.T) {
	c := newFake(t)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Records, cfg.RecordSize, cfg.Producers = 10, 0, 4
	cfg.Consume = false
	res, err := Run(context.Background(), cfg, nil)
	if err != nil || res.Produced != 10 || res.Consumed != 0 || res.ConsumeElapsed != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if strings.Contains(res.String(), "consume") {
		t.Errorf("String() shows a consume row:\n%s", res)
	}
}

func TestRunUnreachableTimesOut(t *testing.T) {
	c := newFake(t)
	addr := c.ListenAddrs()
	c.Close() // nothing listens there any more
	cfg := DefaultConfig()
	cfg.Brokers = addr
	cfg.Records = 10
	cfg.Timeout = time.Second
	start := time.Now()
	_, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "bench: create topic") {
		t.Fatalf("got %v, want a create topic error", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

func TestRunProduceStallTimesOut(t *testing.T) {
	c := newFake(t)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true // swallow every produce request: no response
	})
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Records, cfg.RecordSize = 100, 10
	cfg.Timeout = time.Second
	start := time.Now()
	res, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "bench: produce: no acknowledgement for 1s") {
		t.Fatalf("got %v, want a produce stall error", err)
	}
	if res.Produced != 0 {
		t.Fatalf("produced %d", res.Produced)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

func TestRunConsumeTimesOut(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.BlackholeProduce())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Records, cfg.RecordSize = 100, 10
	cfg.Timeout = time.Second
	start := time.Now()
	res, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "bench: consume: no record for 1s after producing ended (0 of 100 records read") {
		t.Fatalf("got %v, want a consume timeout", err)
	}
	if res.Produced != 100 || res.Consumed != 0 {
		t.Fatalf("produced %d consumed %d", res.Produced, res.Consumed)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

func TestRunCanceled(t *testing.T) {
	c := newFake(t)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Records, cfg.RecordSize = 1_000_000, 100
	cfg.Rate = 0.01 // would take hours
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, cfg, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if res.Produced >= cfg.Records {
		t.Fatalf("produced %d", res.Produced)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"acks":          func(c *Config) { c.Acks = "2" },
		"compression":   func(c *Config) { c.Compression = "brotli" },
		"records":       func(c *Config) { c.Records = 0 },
		"producers":     func(c *Config) { c.Producers = 0 },
		"partitions":    func(c *Config) { c.Partitions = 0 },
		"brokers":       func(c *Config) { c.Brokers = nil },
		"topic":         func(c *Config) { c.Topic = "" },
		"rate":          func(c *Config) { c.Rate = -1 },
		"record size":   func(c *Config) { c.RecordSize = 2 << 20 },
		"key space":     func(c *Config) { c.KeySpace = -1 },
		"key space max": func(c *Config) { c.KeySpace = maxKeySpace + 1 },
		"txn records":   func(c *Config) { c.TxnRecords = -1 },
	} {
		cfg := DefaultConfig()
		mut(&cfg)
		if _, err := Run(context.Background(), cfg, nil); err == nil || !strings.HasPrefix(err.Error(), "bench: ") {
			t.Errorf("%s: got %v, want a bench: error", name, err)
		}
	}
}

// TestRunKeySpace: with KeySpace, records cycle over that many fixed-width
// keys, each producer's share continuing where the previous one's ended,
// so 25 records over 7 keys write keys 0-3 four times and 4-6 three times.
func TestRunKeySpace(t *testing.T) {
	c := newFake(t)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Topic = "keyed"
	cfg.Partitions = 1
	cfg.Records, cfg.RecordSize, cfg.Producers, cfg.KeySpace = 25, 10, 3, 7
	cfg.Consume = false
	cfg.Progress = -1
	res, err := Run(context.Background(), cfg, nil)
	if err != nil || res.Produced != 25 {
		t.Fatalf("%v %+v", err, res)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("keyed"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := 0; n < 25; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll after %d records: %v", n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)]++; n++ })
	}
	want := map[string]int{"key-0": 4, "key-1": 4, "key-2": 4, "key-3": 4, "key-4": 3, "key-5": 3, "key-6": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	ks := newKeySet(1000)
	if k := string(ks.key(1042)); k != "key-042" {
		t.Fatalf("key(1042) of 1000 = %q, want key-042", k)
	}
}

// TestRunTransactions: with TxnRecords every producer commits a
// transaction per TxnRecords records of its share (the rest in a last
// one): 250 records over 2 producers of 125 at 50 per transaction are 3
// transactions each, and a read_committed consumer reads all 250.
func TestRunTransactions(t *testing.T) {
	c := newFake(t)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Topic = "txn"
	cfg.Partitions = 3
	cfg.Records, cfg.RecordSize, cfg.Producers, cfg.TxnRecords = 250, 100, 2, 50
	cfg.Idempotent = false // switched on by TxnRecords
	cfg.Consume = false
	cfg.Progress = -1
	cfg.Timeout = 20 * time.Second
	res, err := Run(context.Background(), cfg, nil)
	if err != nil || res.Produced != 250 || res.Errors != 0 || res.Transactions != 6 {
		t.Fatalf("%v: produced %d errors %d transactions %d, want 250, 0, 6", err, res.Produced, res.Errors, res.Transactions)
	}
	if res.CommitP50 <= 0 || res.CommitP50 > res.CommitP99 || !strings.Contains(res.String(), "transactions: 6 committed") {
		t.Fatalf("commit latencies %v %v:\n%s", res.CommitP50, res.CommitP99, res)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("txn"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := 0; n < 250; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read_committed poll after %d records: %v", n, err)
		}
		n += fs.NumRecords()
	}

	cfg.Acks = "1"
	if _, err := Run(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "transactions need acks=all") {
		t.Fatalf("acks=1 with transactions: %v", err)
	}
}
