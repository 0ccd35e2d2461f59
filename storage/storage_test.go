package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tuskdb/tusk/kafkaproto"
)

var logDir = filepath.Join(testDir, tp0.String())

type stored struct {
	base, last int64
	seg        int // index of the segment holding it (per the test's model)
	data       []byte
}

// segModel mirrors the roll rule: a non-empty segment rolls when the next
// batch would exceed segmentBytes.
type segModel struct {
	limit int
	bases []int64
	size  int
}

func (m *segModel) add(base int64, n int) int {
	if len(m.bases) == 0 {
		m.bases = []int64{0}
	}
	if m.size > 0 && m.size+n > m.limit {
		m.bases = append(m.bases, base)
		m.size = 0
	}
	m.size += n
	return len(m.bases) - 1
}

func segFiles(t *testing.T, fsys FS, suffix string) []int64 {
	t.Helper()
	names, err := fsys.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, n := range names {
		if b, suf, ok := parseSegFile(n); ok && suf == suffix {
			out = append(out, b)
		}
	}
	return out
}

func TestAppendReadAcrossRolls(t *testing.T) { forEachIO(t, testAppendReadAcrossRolls) }

func testAppendReadAcrossRolls(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e := openEngine(t, fsys, FsyncAlways, nil)
	cfg := LogConfig{SegmentBytes: 1000, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 200}
	l := openLog(t, e, cfg)
	model := &segModel{limit: 1000}
	var all []stored
	var next int64
	for i := 0; i < 40; i++ {
		n := 1 + i%4
		res, b := appendSpec(t, l, plain(n, 50+i, 1000+int64(i), byte(i)))
		if res.BaseOffset != next || res.LastOffset != next+int64(n)-1 || res.Duplicate || res.LogStartOffset != 0 {
			t.Fatalf("batch %d: result %+v, want base %d", i, res, next)
		}
		if got := int64(binary.BigEndian.Uint64(b)); got != next {
			t.Fatalf("batch %d: base offset not rewritten: %d", i, got)
		}
		if got := int32(binary.BigEndian.Uint32(b[12:])); got != 7 {
			t.Fatalf("batch %d: leader epoch %d, want 7", i, got)
		}
		all = append(all, stored{next, res.LastOffset, model.add(next, len(b)), append([]byte(nil), b...)})
		next = res.LastOffset + 1
	}
	if err := l.WaitDurable(context.Background(), next-1); err != nil {
		t.Fatal(err)
	}
	if l.HighWatermark() != next || l.LogEndOffset() != next {
		t.Fatalf("hw %d leo %d, want %d", l.HighWatermark(), l.LogEndOffset(), next)
	}
	if len(model.bases) < 5 {
		t.Fatalf("test needs several rolls, model has %d segments", len(model.bases))
	}
	var totalSize int64
	for _, s := range all {
		totalSize += int64(len(s.data))
	}
	check := func(l *Log) {
		t.Helper()
		for _, s := range all {
			for off := s.base; off <= s.last; off++ {
				r, err := l.Read(off, 1, true)
				if err != nil || !bytes.Equal(r.Data, s.data) {
					t.Fatalf("read at %d: err %v, %d bytes; want batch %d (%d bytes)", off, err, len(r.Data), s.base, len(s.data))
				}
				if r.HighWatermark != next || r.LogStartOffset != 0 {
					t.Fatalf("read at %d: hw %d lso %d", off, r.HighWatermark, r.LogStartOffset)
				}
			}
		}
		for i, s := range all {
			var want []byte
			for _, x := range all[i:] {
				if x.seg == s.seg {
					want = append(want, x.data...)
				}
			}
			r, err := l.Read(s.last, 1<<20, false)
			if err != nil || !bytes.Equal(r.Data, want) {
				t.Fatalf("read rest of segment from %d: err %v, got %d bytes want %d", s.last, err, len(r.Data), len(want))
			}
		}
		if r, err := l.Read(next, 1<<20, true); err != nil || len(r.Data) != 0 {
			t.Fatalf("read at LEO: %v, %d bytes", err, len(r.Data))
		}
		if _, err := l.Read(next+1, 1<<20, true); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read past LEO: %v", err)
		}
		if _, err := l.Read(-1, 1<<20, true); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read at -1: %v", err)
		}
		if l.Size() != totalSize {
			t.Fatalf("size %d, want %d", l.Size(), totalSize)
		}
	}
	check(l)
	if got := segFiles(t, fsys, logSuffix); !reflect.DeepEqual(got, model.bases) {
		t.Fatalf("segments %v, want %v", got, model.bases)
	}
	sealed := model.bases[:len(model.bases)-1]
	for _, suf := range []string{indexSuffix, timeIndexSuffix} {
		if got := segFiles(t, fsys, suf); !reflect.DeepEqual(got, sealed) {
			t.Fatalf("%s files %v, want %v", suf, got, sealed)
		}
	}
	if got := segFiles(t, fsys, snapshotSuffix); !reflect.DeepEqual(got, model.bases[1:]) {
		t.Fatalf("snapshots %v, want %v", got, model.bases[1:])
	}
	// Keep the in-memory indexes to compare with what recovery loads.
	type idx struct {
		ix  []indexEntry
		tix []timeEntry
	}
	var before []idx
	l.mu.Lock()
	indexed := 0
	for _, s := range l.segs {
		before = append(before, idx{slices.Clone(s.index), slices.Clone(s.timeIndex)})
		indexed += len(s.index)
	}
	l.mu.Unlock()
	if indexed < 10 {
		t.Fatalf("only %d index entries: lookups not exercised", indexed)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(0, 100, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := l.Append(makeBatch(plain(1, 1, 1, 1)), kafkaproto.BatchHeader{BatchLength: int32(len(makeBatch(plain(1, 1, 1, 1))) - 12)}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	// Reopen: sealed indexes are loaded from their files, the active
	// segment's are rebuilt; everything reads back identically.
	e2 := openEngine(t, fsys, FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, cfg)
	if l2.LogEndOffset() != next || l2.HighWatermark() != next || l2.LogStartOffset() != 0 {
		t.Fatalf("reopened: leo %d hw %d lso %d", l2.LogEndOffset(), l2.HighWatermark(), l2.LogStartOffset())
	}
	l2.mu.Lock()
	for i, s := range l2.segs {
		want := before[i]
		if i == len(l2.segs)-1 {
			// Recovery rebuilds the active segment's index in memory.
			want.tix = want.tix[:len(s.timeIndex)]
		}
		if !slices.Equal(s.index, want.ix) || !slices.Equal(s.timeIndex, want.tix) {
			t.Fatalf("segment %d index after reopen:\n%v %v\nwant\n%v %v", s.base, s.index, s.timeIndex, want.ix, want.tix)
		}
	}
	l2.mu.Unlock()
	check(l2)
	res, _ := appendSpec(t, l2, plain(2, 10, 5000, 9))
	if res.BaseOffset != next {
		t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, next)
	}
}

func TestReadLimitsAndHighWatermark(t *testing.T) { forEachIO(t, testReadLimitsAndHighWatermark) }

func testReadLimitsAndHighWatermark(t *testing.T, env ioEnv) {
	g := newGateFS(env.newFS(t))
	e := openEngine(t, g, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 1 << 20, RetentionBytes: -1, RetentionMs: -1})
	var batches [][]byte
	for i := 0; i < 2; i++ {
		_, b := appendSpec(t, l, plain(1, 100, 1, byte(i)))
		batches = append(batches, b)
	}
	const size = 61 + 109 // one record with a 100-byte value
	if len(batches[0]) != size {
		t.Fatalf("batch size %d, want %d", len(batches[0]), size)
	}
	if err := l.WaitDurable(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	g.setBlocked(true)
	hwCh := make(chan struct{}, 1)
	l.AddWaiter(hwCh)
	for i := 2; i < 5; i++ {
		_, b := appendSpec(t, l, plain(1, 100, 1, byte(i)))
		batches = append(batches, b)
	}
	waitFor(t, "syncer to block", func() bool { _, w := g.counts(); return w == 1 })
	if l.HighWatermark() != 2 || l.LogEndOffset() != 5 {
		t.Fatalf("hw %d leo %d, want 2 5", l.HighWatermark(), l.LogEndOffset())
	}
	select {
	case <-hwCh:
		t.Fatal("waiter fired before the HW moved")
	default:
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	cases := []struct {
		off      int64
		max      int
		minOne   bool
		want     []byte
		outRange bool
	}{
		{0, 10 * size, false, cat(batches[0], batches[1]), false}, // cut at HW
		{0, size, false, batches[0], false},
		{0, 2*size - 1, false, batches[0], false},
		{0, size - 1, false, nil, false},
		{0, size - 1, true, batches[0], false},
		{0, 0, true, batches[0], false},
		{0, 0, false, nil, false},
		{1, 10 * size, true, batches[1], false},
		{2, 10 * size, true, nil, false}, // at HW
		{4, 10 * size, true, nil, false}, // in [HW, LEO)
		{5, 10 * size, true, nil, false}, // at LEO
		{6, 10 * size, true, nil, true},
	}
	for _, c := range cases {
		r, err := l.Read(c.off, c.max, c.minOne)
		if c.outRange {
			if !errors.Is(err, ErrOffsetOutOfRange) {
				t.Fatalf("read(%d,%d,%v): err %v, want out of range", c.off, c.max, c.minOne, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(r.Data, c.want) || r.HighWatermark != 2 {
			t.Fatalf("read(%d,%d,%v): err %v, %d bytes hw %d; want %d bytes", c.off, c.max, c.minOne, err, len(r.Data), r.HighWatermark, len(c.want))
		}
	}
	g.setBlocked(false)
	select {
	case <-hwCh:
	case <-time.After(10 * time.Second):
		t.Fatal("AddWaiter channel not signalled when the HW advanced")
	}
	waitFor(t, "hw 5", func() bool { return l.HighWatermark() == 5 })
	r, err := l.Read(0, 10*size, false)
	if err != nil || !bytes.Equal(r.Data, cat(batches...)) {
		t.Fatalf("read all: %v, %d bytes", err, len(r.Data))
	}
}

func TestGroupCommitSharesFsync(t *testing.T) { forEachIO(t, testGroupCommitSharesFsync) }

func testGroupCommitSharesFsync(t *testing.T, env ioEnv) {
	g := newGateFS(env.newFS(t))
	e := openEngine(t, g, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	g.setBlocked(true)
	const n = 100
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		res, _ := appendSpec(t, l, plain(1, 10, 1, byte(i)))
		go func() { errs <- l.WaitDurable(context.Background(), res.LastOffset) }()
	}
	waitFor(t, "first sync to block", func() bool { _, w := g.counts(); return w == 1 })
	g.setBlocked(false)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The first sync covered what was appended when it started; at most
	// one more covers the rest (a third may race in after a late append).
	if s, _ := g.counts(); s > 3 {
		t.Fatalf("%d fsyncs for %d appends: no group commit", s, n)
	}
	if l.HighWatermark() != n {
		t.Fatalf("hw %d", l.HighWatermark())
	}
}

func TestWaitDurableContextCancel(t *testing.T) { forEachIO(t, testWaitDurableContextCancel) }

func testWaitDurableContextCancel(t *testing.T, env ioEnv) {
	g := newGateFS(env.newFS(t))
	e := openEngine(t, g, FsyncAlways, nil)
	defer func() { g.setBlocked(false); e.Close() }()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	g.setBlocked(true)
	res, _ := appendSpec(t, l, plain(1, 10, 1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.WaitDurable(ctx, res.LastOffset) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	l.mu.Lock()
	n := l.durableWaiters.len()
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left after cancel", n)
	}
}

func TestCrashKeepsAcknowledged(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			fsys := NewCrashFS()
			e := openEngine(t, fsys, FsyncAlways, nil)
			l := openLog(t, e, LogConfig{SegmentBytes: 3000, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 300})
			var mu sync.Mutex
			acked := map[int64][]byte{}
			var snapshot map[int64][]byte
			var crashed *CrashFS
			var wg sync.WaitGroup
			for gi := 0; gi < 8; gi++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 60; i++ {
						b := makeBatch(plain(1+i%3, 40+gi, int64(i), byte(gi*16+i)))
						h, err := kafkaproto.ValidateBatch(b)
						if err != nil {
							t.Error(err)
							return
						}
						res, err := l.Append(b, h, 3)
						if err != nil {
							t.Error(err)
							return
						}
						if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						acked[res.BaseOffset] = b
						mu.Unlock()
						if gi == 0 && i == 30 {
							mu.Lock()
							snapshot = maps(acked)
							mu.Unlock()
							if torn {
								crashed = fsys.CrashTorn(int64(len(snapshot)))
							} else {
								crashed = fsys.Crash()
							}
						}
					}
				}()
			}
			wg.Wait()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if len(snapshot) < 31 {
				t.Fatalf("only %d acknowledged before the crash", len(snapshot))
			}
			e2 := openEngine(t, crashed, FsyncAlways, nil)
			defer e2.Close()
			l2 := openLog(t, e2, LogConfig{SegmentBytes: 3000, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 300})
			for off, b := range snapshot {
				r, err := l2.Read(off, 1, true)
				if err != nil || !bytes.Equal(r.Data, b) {
					t.Fatalf("acknowledged batch at %d lost: err %v, %d bytes", off, err, len(r.Data))
				}
			}
			// What survived is a contiguous, valid prefix.
			checkValidLog(t, l2)
			res, _ := appendSpec(t, l2, plain(1, 5, 1, 1))
			if res.BaseOffset != l2.LogEndOffset()-1 {
				t.Fatalf("append after crash at %d, leo %d", res.BaseOffset, l2.LogEndOffset())
			}
		})
	}
}

func maps(m map[int64][]byte) map[int64][]byte {
	out := make(map[int64][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkValidLog reads the whole log and checks every batch's CRC and that
// offsets are contiguous from the log start to the HW.
func checkValidLog(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	off := l.LogStartOffset()
	hw := l.HighWatermark()
	for off < hw {
		r, err := l.Read(off, 1<<20, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(r.Data) == 0 {
			t.Fatalf("no data at %d below hw %d", off, hw)
		}
		err = kafkaproto.SplitBatches(r.Data, func(b []byte, h kafkaproto.BatchHeader) error {
			if h.BaseOffset != off && len(out) > 0 {
				return fmt.Errorf("batch at %d, want %d", h.BaseOffset, off)
			}
			if err := kafkaproto.VerifyCRC(b, &h); err != nil {
				return err
			}
			out = append(out, b)
			off = h.LastOffset() + 1
			return nil
		})
		if err != nil {
			t.Fatalf("log content: %v", err)
		}
	}
	return out
}

func TestTornTailTruncated(t *testing.T) { forEachIO(t, testTornTailTruncated) }

func testTornTailTruncated(t *testing.T, env ioEnv) {
	good := makeBatch(plain(2, 30, 5, 0xaa))
	badCRC := slices.Clone(good)
	badCRC[len(badCRC)-3] ^= 0xff
	cases := map[string]func(leo int64) []byte{
		"garbage":      func(int64) []byte { return bytes.Repeat([]byte{0x5a, 0x13, 0xff}, 40) },
		"zeros":        func(int64) []byte { return make([]byte, 200) },
		"half batch":   func(leo int64) []byte { b := slices.Clone(good); kafkaproto.SetBaseOffset(b, leo); return b[:len(b)/2] },
		"short header": func(leo int64) []byte { b := slices.Clone(good); kafkaproto.SetBaseOffset(b, leo); return b[:30] },
		"bad crc":      func(leo int64) []byte { b := slices.Clone(badCRC); kafkaproto.SetBaseOffset(b, leo); return b },
		// A whole valid batch below the expected offset (a recycled
		// file's earlier life) ends the data; one above it is a gap, which
		// cleaned ranges have (gaps_test.go).
		"stale offset": func(leo int64) []byte { b := slices.Clone(good); kafkaproto.SetBaseOffset(b, leo-1); return b },
		"good then half": func(leo int64) []byte {
			b := slices.Clone(good)
			kafkaproto.SetBaseOffset(b, leo)
			return append(b, b[:20]...)
		},
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			fsys := env.newFS(t)
			e := openEngine(t, fsys, FsyncAlways, nil)
			cfg := LogConfig{SegmentBytes: 700, RetentionBytes: -1, RetentionMs: -1}
			l := openLog(t, e, cfg)
			for i := 0; i < 9; i++ {
				appendSpec(t, l, plain(1+i%2, 60, int64(i), byte(i)))
			}
			leo := l.LogEndOffset()
			if err := l.WaitDurable(context.Background(), leo-1); err != nil {
				t.Fatal(err)
			}
			before := checkValidLog(t, l)
			e.Close()
			bases := segFiles(t, fsys, logSuffix)
			if len(bases) < 2 {
				t.Fatalf("want a roll, segments %v", bases)
			}
			file := segName(logDir, bases[len(bases)-1], logSuffix)
			f, err := fsys.OpenFile(file, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			size, _ := f.Size()
			tb := tail(leo)
			if _, err := f.WriteAt(tb, size); err != nil {
				t.Fatal(err)
			}
			f.Sync()
			f.Close()

			e2 := openEngine(t, fsys, FsyncAlways, nil)
			defer e2.Close()
			l2 := openLog(t, e2, cfg)
			wantLEO := leo
			if name == "good then half" {
				wantLEO = leo + 2
			}
			if l2.LogEndOffset() != wantLEO {
				t.Fatalf("leo after recovery %d, want %d", l2.LogEndOffset(), wantLEO)
			}
			st, _ := fsys.Stat(file)
			wantSize := size
			if name == "good then half" {
				wantSize += int64(len(good))
			}
			if st.Size() != wantSize {
				t.Fatalf("segment size after recovery %d, want %d", st.Size(), wantSize)
			}
			res, b := appendSpec(t, l2, plain(3, 10, 100, 0x77))
			if res.BaseOffset != wantLEO {
				t.Fatalf("append after recovery at %d, want %d", res.BaseOffset, wantLEO)
			}
			if err := l2.WaitDurable(context.Background(), res.LastOffset); err != nil {
				t.Fatal(err)
			}
			after := checkValidLog(t, l2)
			if !slices.EqualFunc(after[:len(before)], before, bytes.Equal) || !bytes.Equal(after[len(after)-1], b) {
				t.Fatalf("log content changed by recovery: %d before, %d after", len(before), len(after))
			}
		})
	}
}
