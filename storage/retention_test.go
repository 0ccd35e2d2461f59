package storage

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// twentyBatches appends 20 one-record batches of 170 bytes with timestamps
// 1000*i; with SegmentBytes 600 segments hold 3 batches: bases 0,3,...,18.
func twentyBatches(t *testing.T, l *Log) {
	t.Helper()
	for i := 0; i < 20; i++ {
		res, b := appendSpec(t, l, plain(1, 100, int64(1000*i), byte(i)))
		if len(b) != 170 || res.BaseOffset != int64(i) {
			t.Fatalf("batch %d: %d bytes at %d", i, len(b), res.BaseOffset)
		}
	}
	if err := l.WaitDurable(context.Background(), 19); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteRecordsBefore(t *testing.T) { forEachIO(t, testDeleteRecordsBefore) }

func testDeleteRecordsBefore(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncAlways, nil)
	cfg := LogConfig{SegmentBytes: 600, RetentionBytes: -1, RetentionMs: -1}
	l := openLog(t, e, cfg)
	twentyBatches(t, l)
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{0, 3, 6, 9, 12, 15, 18}) {
		t.Fatalf("segments %v", got)
	}
	if ls, err := l.DeleteRecordsBefore(7); err != nil || ls != 7 {
		t.Fatalf("delete before 7: %d %v", ls, err)
	}
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{6, 9, 12, 15, 18}) {
		t.Fatalf("segments after delete %v", got)
	}
	if _, err := l.Read(6, 1000, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", err)
	}
	if r, err := l.Read(7, 1, true); err != nil || len(r.Data) != 170 || r.LogStartOffset != 7 {
		t.Fatalf("read at log start: %v %d", err, len(r.Data))
	}
	if ls, err := l.DeleteRecordsBefore(5); err != nil || ls != 7 {
		t.Fatalf("delete before 5: %d %v", ls, err)
	}
	if _, err := l.DeleteRecordsBefore(21); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("delete past hw: %v", err)
	}
	res, _ := appendSpec(t, l, plain(1, 100, 1, 1))
	if res.LogStartOffset != 7 {
		t.Fatalf("append result log start %d", res.LogStartOffset)
	}
	l.WaitDurable(context.Background(), 20)
	e.Close()

	e2 := openEngine(t, fsys, FsyncAlways, nil)
	l2 := openLog(t, e2, cfg)
	if l2.LogStartOffset() != 7 || l2.LogEndOffset() != 21 {
		t.Fatalf("reopened: lso %d leo %d", l2.LogStartOffset(), l2.LogEndOffset())
	}
	if _, err := l2.Read(6, 1000, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start after reopen: %v", err)
	}
	if ls, err := l2.DeleteRecordsBefore(-1); err != nil || ls != 21 {
		t.Fatalf("delete before hw: %d %v", ls, err)
	}
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{18}) {
		t.Fatalf("segments after delete to hw %v", got)
	}
	e2.Close()
	e3 := openEngine(t, fsys, FsyncAlways, nil)
	defer e3.Close()
	l3 := openLog(t, e3, cfg)
	if l3.LogStartOffset() != 21 || l3.LogEndOffset() != 21 {
		t.Fatalf("reopened: lso %d leo %d", l3.LogStartOffset(), l3.LogEndOffset())
	}
	if res, _ := appendSpec(t, l3, plain(1, 1, 1, 1)); res.BaseOffset != 21 || res.LogStartOffset != 21 {
		t.Fatalf("append %+v", res)
	}
}

// fakeClock is an injectable Now.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func TestRetentionBytes(t *testing.T) { forEachIO(t, testRetentionBytes) }

func testRetentionBytes(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 600, RetentionBytes: 1000, RetentionMs: -1})
	twentyBatches(t, l)
	e.runRetention()
	// 3400 bytes, 2400 over: four 510-byte segments go, the fifth would
	// leave less than 1000.
	if l.LogStartOffset() != 12 || l.Size() != 3400-4*510 {
		t.Fatalf("lso %d size %d", l.LogStartOffset(), l.Size())
	}
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{12, 15, 18}) {
		t.Fatalf("segments %v", got)
	}
	e.runRetention() // idempotent
	if l.LogStartOffset() != 12 {
		t.Fatalf("second pass moved lso to %d", l.LogStartOffset())
	}
	if lso, _, err := readLogStart(fsys, logDir); err != nil || lso != 12 {
		t.Fatalf("checkpoint %d %v", lso, err)
	}
}

func TestRetentionMsAndSegmentMs(t *testing.T) { forEachIO(t, testRetentionMsAndSegmentMs) }

func testRetentionMsAndSegmentMs(t *testing.T, env ioEnv) {
	clk := &fakeClock{}
	clk.ms.Store(1_000_000)
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncNever, clk.now)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 600, RetentionBytes: -1, RetentionMs: 1000})
	twentyBatches(t, l)  // segment k*3 has max timestamp 1000*(3k+2)
	clk.ms.Store(10_500) // limit 9500: segments with max 2000, 5000, 8000 go
	e.runRetention()
	if l.LogStartOffset() != 9 {
		t.Fatalf("lso %d, want 9", l.LogStartOffset())
	}
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{9, 12, 15, 18}) {
		t.Fatalf("segments %v", got)
	}
	// The active segment (max 19000) never goes by retention.ms alone...
	clk.ms.Store(1_000_000_000)
	e.runRetention()
	if l.LogStartOffset() != 18 {
		t.Fatalf("lso %d, want 18", l.LogStartOffset())
	}
	// ...but segment.ms rolls it so that it can age out.
	l.SetConfig(LogConfig{SegmentBytes: 600, SegmentMs: 100, RetentionBytes: -1, RetentionMs: 1000})
	clk.ms.Store(1_000_000_000 + 99_000)
	e.runRetention()
	if l.LogStartOffset() != 20 {
		t.Fatalf("lso %d after segment.ms roll, want 20", l.LogStartOffset())
	}
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{20}) {
		t.Fatalf("segments %v", got)
	}
	// segment.ms on the append path.
	appendSpec(t, l, plain(1, 1, clk.ms.Load(), 1))
	clk.ms.Add(100)
	appendSpec(t, l, plain(1, 1, clk.ms.Load(), 1))
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, []int64{20, 21}) {
		t.Fatalf("segments after time roll on append %v", got)
	}
}

func TestOffsetForTimestampAndMaxTimestamp(t *testing.T) {
	forEachIO(t, testOffsetForTimestampAndMaxTimestamp)
}

func testOffsetForTimestampAndMaxTimestamp(t *testing.T, env ioEnv) {
	g := newGateFS(env.newFS(t))
	e := openEngine(t, g, FsyncAlways, nil)
	cfg := LogConfig{SegmentBytes: 600, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 1}
	l := openLog(t, e, cfg)
	if o, ts, found, err := l.MaxTimestamp(); found || err != nil || o != -1 || ts != -1 {
		t.Fatalf("empty max: %d %d %v %v", o, ts, found, err)
	}
	tss := []int64{100, 300, 200, 500, 400, 500, 700, 50, 600, 800, 800, 100}
	for i, ts := range tss {
		appendSpec(t, l, plain(1+i%2*2, 30, ts, byte(i))) // 1 or 3 records, all at ts
	}
	if err := l.WaitDurable(context.Background(), l.LogEndOffset()-1); err != nil {
		t.Fatal(err)
	}
	bases := make([]int64, len(tss))
	for i := range tss {
		if i > 0 {
			bases[i] = bases[i-1] + int64(1+(i-1)%2*2)
		}
	}
	check := func(l *Log, lso int64) {
		t.Helper()
		for target := int64(0); target <= 900; target += 10 {
			wantOff, wantTs := int64(-1), int64(-1)
			for i, ts := range tss {
				if ts >= target && bases[i] >= lso {
					wantOff, wantTs = bases[i], ts
					break
				}
			}
			o, ts, found, err := l.OffsetForTimestamp(target)
			if err != nil || found != (wantOff >= 0) || o != wantOff || ts != wantTs {
				t.Fatalf("offset for %d: %d %d %v %v; want %d %d", target, o, ts, found, err, wantOff, wantTs)
			}
		}
		o, ts, found, err := l.MaxTimestamp()
		if err != nil || !found || o != bases[9] || ts != 800 {
			t.Fatalf("max timestamp: %d %d %v %v; want %d 800", o, ts, found, err, bases[9])
		}
	}
	check(l, 0)
	// A record above the HW is invisible to both (no roll: it would sync).
	l.SetConfig(LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 1})
	g.setBlocked(true)
	appendSpec(t, l, plain(1, 30, 10_000, 1))
	check(l, 0)
	if _, _, found, _ := l.OffsetForTimestamp(5000); found {
		t.Fatal("found a record above the HW")
	}
	g.setBlocked(false)
	waitFor(t, "hw", func() bool { return l.HighWatermark() == l.LogEndOffset() })
	if o, ts, found, _ := l.OffsetForTimestamp(5000); !found || ts != 10_000 || o != l.LogEndOffset()-1 {
		t.Fatalf("after sync: %d %d %v", o, ts, found)
	}
	if _, err := l.DeleteRecordsBefore(bases[4]); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e2 := openEngine(t, g, FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	if o, ts, found, _ := l2.MaxTimestamp(); !found || ts != 10_000 || o != l2.LogEndOffset()-1 {
		t.Fatalf("max after reopen: %d %d %v", o, ts, found)
	}
	tss = append(tss, 10_000)
	bases = append(bases, l2.LogEndOffset()-1)
	check2 := func(target, wantOff, wantTs int64) {
		t.Helper()
		o, ts, found, err := l2.OffsetForTimestamp(target)
		if err != nil || !found || o != wantOff || ts != wantTs {
			t.Fatalf("offset for %d after reopen: %d %d %v %v; want %d %d", target, o, ts, found, err, wantOff, wantTs)
		}
	}
	check2(0, bases[4], 400) // below the log start is skipped
	check2(450, bases[5], 500)
	check2(750, bases[9], 800)
	check2(801, bases[12], 10_000)
}

func TestConcurrentReadsAppendsRetention(t *testing.T) {
	forEachIO(t, testConcurrentReadsAppendsRetention)
}

func testConcurrentReadsAppendsRetention(t *testing.T, env ioEnv) {
	e := openEngine(t, env.newFS(t), FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 800, RetentionBytes: 2500, RetentionMs: -1, IndexIntervalBytes: 100})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				off := l.LogStartOffset()
				for off < l.HighWatermark() {
					res, err := l.Read(off, 600, true)
					if errors.Is(err, ErrOffsetOutOfRange) {
						break // retention overtook us
					}
					if err != nil {
						t.Error(err)
						return
					}
					if len(res.Data) == 0 {
						break
					}
					var last int64
					if err := splitCheck(res.Data, off, &last); err != nil {
						t.Error(err)
						return
					}
					off = last + 1
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				e.runRetention()
			}
		}
	}()
	for i := 0; i < 300; i++ {
		res, _ := appendSpec(t, l, plain(1+i%3, 50, int64(i), byte(i)))
		if i%50 == 49 {
			if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
				t.Fatal(err)
			}
			if _, err := l.DeleteRecordsBefore(res.BaseOffset - 20); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	e.runRetention()
	if l.Size() > 2500+800 {
		t.Fatalf("retention left %d bytes", l.Size())
	}
}

// TestRetentionKeepsAboveHighWatermark: retention never deletes what the
// high watermark has not passed. A replicated log's followers still copy
// those records (a leader that deleted them stranded its followers below
// its log start and its acks=all producers waited forever: a fresh-clone
// TestCompactionRetentionAndDeleteRecords hung there), and Kafka never
// deletes above the high watermark either.
func TestRetentionKeepsAboveHighWatermark(t *testing.T) {
	clk := &fakeClock{}
	clk.ms.Store(1_000_000)
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncNever, clk.now)
	defer e.Close()
	cfg := LogConfig{SegmentBytes: 600, RetentionBytes: -1, RetentionMs: 1000, Replicated: true}
	l := openLog(t, e, cfg)
	twentyBatches(t, l) // segments of 3 records, max timestamps 1000*(3k+2)
	if hw := l.AdvanceHighWatermark(7); hw != 7 {
		t.Fatalf("high watermark %d, want 7", hw)
	}
	clk.ms.Store(1_000_000_000) // every sealed segment is past retention.ms
	e.runRetention()
	if got := l.LogStartOffset(); got != 6 {
		t.Fatalf("log start %d with the high watermark at 7: want 6 (segments [0,3) and [3,6) only)", got)
	}
	if hw := l.AdvanceHighWatermark(20); hw != 20 {
		t.Fatalf("high watermark %d, want 20", hw)
	}
	e.runRetention()
	if got := l.LogStartOffset(); got != 18 {
		t.Fatalf("log start %d with the high watermark at the end: want 18 (the active segment stays)", got)
	}
}
