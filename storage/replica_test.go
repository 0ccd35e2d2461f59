package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tuskdb/tusk/fencing"
	"github.com/tuskdb/tusk/kafkaproto"
)

var replicaCfg = LogConfig{SegmentBytes: 900, RetentionBytes: -1, RetentionMs: -1, IndexIntervalBytes: 150, Replicated: true}

// appendEpoch appends a batch stamped with epoch and returns its stored
// bytes.
func appendEpoch(t testing.TB, l *Log, s batchSpec, epoch int32) (AppendResult, []byte) {
	t.Helper()
	b := makeBatch(s)
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Append(b, h, epoch)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res, b
}

// buildLeader appends a mix of plain and idempotent batches over epochs 1,
// 2 and 4, rolling several segments; it returns the stored batches.
func buildLeader(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	seq := map[int64]int32{}
	for i := 0; i < 36; i++ {
		epoch := int32(1)
		switch {
		case i >= 24:
			epoch = 4
		case i >= 10:
			epoch = 2
		}
		n := 1 + i%3
		s := plain(n, 30+i, 1000+int64(i), byte(i))
		if i%2 == 0 {
			pid := int64(100 + 100*(i%4/2))
			s = batchSpec{records: n, valueSize: 30 + i, ts: 1000 + int64(i), pid: pid, epoch: 0, seq: seq[pid], fill: byte(i)}
			seq[pid] += int32(n)
		}
		_, b := appendEpoch(t, l, s, epoch)
		out = append(out, slices.Clone(b))
	}
	return out
}

// readRange returns the stored batches holding [from, to), read with Read
// (below the HW) or ReadUncommitted.
func readRange(t testing.TB, l *Log, from, to int64, uncommitted bool) []byte {
	t.Helper()
	var out []byte
	for off := from; off < to; {
		var r ReadResult
		var err error
		if uncommitted {
			r, err = l.ReadUncommitted(off, 1<<20, true)
		} else {
			r, err = l.Read(off, 1<<20, true)
		}
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		progressed := false
		err = kafkaproto.SplitBatches(r.Data, func(b []byte, h kafkaproto.BatchHeader) error {
			if h.BaseOffset < to {
				out = append(out, b...)
				off = h.LastOffset() + 1
				progressed = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !progressed {
			break
		}
	}
	return out
}

// copyLog replicates leader's batches above the follower's LEO with
// ReadUncommitted and AppendReplica, in chunks of up to chunk bytes.
func copyLog(t testing.TB, leader, follower *Log, chunk int) {
	t.Helper()
	for off := follower.LogEndOffset(); off < leader.LogEndOffset(); {
		r, err := leader.ReadUncommitted(off, chunk, true)
		if err != nil || len(r.Data) == 0 {
			t.Fatalf("replica read at %d: %v, %d bytes", off, err, len(r.Data))
		}
		res, err := follower.AppendReplica(r.Data)
		if err != nil {
			t.Fatalf("append replica at %d: %v", off, err)
		}
		if res.BaseOffset != off {
			t.Fatalf("append replica at %d: result %+v", off, res)
		}
		off = res.LastOffset + 1
	}
}

func producerEntries(l *Log) []fencing.ProducerEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.producers.Entries()
}

func epochEntries(l *Log) []epochEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.epochs.entries)
}

func checksum(t testing.TB, l *Log, base, end int64) (uint32, int64) {
	t.Helper()
	c, n, err := l.SegmentChecksum(base, end)
	if err != nil {
		t.Fatalf("checksum [%d, %d): %v", base, end, err)
	}
	return c, n
}

func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	default:
	}
}

func TestReplicatedHighWatermark(t *testing.T) {
	g := newGateFS(NewCrashFS())
	e := openEngine(t, g, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, replicaCfg)
	if !l.Replicated() || l.HighWatermark() != 0 {
		t.Fatalf("replicated %v hw %d", l.Replicated(), l.HighWatermark())
	}
	hwCh := make(chan struct{}, 1)
	l.AddWaiter(hwCh)
	g.setBlocked(true)
	var stored [][]byte
	for i := 0; i < 3; i++ { // offsets 0..5
		_, b := appendEpoch(t, l, plain(2, 20, 1, byte(i)), 1)
		stored = append(stored, slices.Clone(b))
	}
	select {
	case <-hwCh: // replica fetchers' long polls wake on LEO advances
	default:
		t.Fatal("AddWaiter not signalled by an append in replicated mode")
	}
	// Waits for the last offset: the group commit may sync the three
	// appends in more than one step (one began after the first append,
	// held by the gate), and each moves the HW as far as it covers.
	acked := make(chan error, 1)
	go func() { acked <- l.WaitHighWatermark(context.Background(), 5) }()
	// Replicas acknowledged everything, but nothing is durable here yet.
	if hw := l.AdvanceHighWatermark(6); hw != 0 {
		t.Fatalf("hw %d before the leader's fsync", hw)
	}
	notDone(t, acked, "acks=all wait")
	if r, err := l.Read(0, 1<<20, true); err != nil || len(r.Data) != 0 || r.HighWatermark != 0 {
		t.Fatalf("consumer read above hw: %v, %d bytes, hw %d", err, len(r.Data), r.HighWatermark)
	}
	if got := readRange(t, l, 0, 6, true); !bytes.Equal(got, bytes.Join(stored, nil)) {
		t.Fatalf("replica read: %d bytes, want %d", len(got), len(bytes.Join(stored, nil)))
	}
	if r, err := l.ReadSectionUncommitted(2, 1<<20, true); err != nil || !bytes.Equal(r.Data, bytes.Join(stored[1:], nil)) {
		t.Fatalf("replica section read: %v", err)
	}
	g.setBlocked(false)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	if hw := l.HighWatermark(); hw != 6 {
		t.Fatalf("hw %d after fsync, want 6", hw)
	}

	// Durable first, replicated later.
	for i := 0; i < 2; i++ { // offsets 6..9
		_, b := appendEpoch(t, l, plain(2, 20, 1, byte(10+i)), 1)
		stored = append(stored, slices.Clone(b))
	}
	if err := l.WaitDurable(context.Background(), 9); err != nil {
		t.Fatal(err)
	}
	go func() { acked <- l.WaitHighWatermark(context.Background(), 9) }()
	if l.HighWatermark() != 6 {
		t.Fatalf("hw %d moved without replicas", l.HighWatermark())
	}
	if r, _ := l.Read(6, 1<<20, true); len(r.Data) != 0 {
		t.Fatal("unreplicated batch visible to consumers")
	}
	if hw := l.AdvanceHighWatermark(8); hw != 8 {
		t.Fatalf("hw %d, want 8", hw)
	}
	notDone(t, acked, "wait for 9 at hw 8")
	if got := readRange(t, l, 0, 100, false); !bytes.Equal(got, bytes.Join(stored[:4], nil)) {
		t.Fatalf("consumer sees %d bytes at hw 8", len(got))
	}
	if hw := l.AdvanceHighWatermark(7); hw != 8 {
		t.Fatalf("hw moved back to %d", hw)
	}
	if hw := l.AdvanceHighWatermark(1 << 40); hw != 10 {
		t.Fatalf("hw %d, want the LEO 10", hw)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}

	// Switching the mode off lets the HW follow durability again.
	g.setBlocked(true)
	appendEpoch(t, l, plain(1, 5, 1, 1), 1)
	cfg := replicaCfg
	cfg.Replicated = false
	l.SetConfig(cfg)
	g.setBlocked(false)
	if err := l.WaitHighWatermark(context.Background(), 10); err != nil || l.HighWatermark() != 11 {
		t.Fatalf("non-replicated hw %d: %v", l.HighWatermark(), err)
	}
	if hw := l.AdvanceHighWatermark(0); hw != 11 {
		t.Fatalf("AdvanceHighWatermark outside replicated mode changed hw to %d", hw)
	}
	// Context cancellation removes the waiter.
	ctx, cancel := context.WithCancel(context.Background())
	g.setBlocked(true)
	appendEpoch(t, l, plain(1, 5, 1, 1), 1)
	l.SetConfig(replicaCfg)
	go func() { acked <- l.WaitHighWatermark(ctx, 11) }()
	waitFor(t, "waiter registered", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.hwWaiters.len() == 1 })
	cancel()
	if err := <-acked; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	l.mu.Lock()
	left := l.hwWaiters.len()
	l.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left after cancel", left)
	}
	g.setBlocked(false)
	if err := l.WaitHighWatermark(context.Background(), 99); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("wait beyond LEO: %v", err)
	}
}

func TestReplicatedHighWatermarkFsyncNever(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, replicaCfg)
	appendEpoch(t, l, plain(3, 5, 1, 1), 0)
	if l.HighWatermark() != 0 {
		t.Fatalf("hw %d", l.HighWatermark())
	}
	if hw := l.AdvanceHighWatermark(2); hw != 2 {
		t.Fatalf("hw %d, want 2", hw)
	}
	if hw := l.AdvanceHighWatermark(10); hw != 3 {
		t.Fatalf("hw %d, want LEO 3", hw)
	}
	appendEpoch(t, l, plain(1, 5, 1, 1), 0) // the bound 10 covers it
	if l.HighWatermark() != 4 {
		t.Fatalf("hw %d, want 4", l.HighWatermark())
	}
}

func TestReplicatedWaitersFailOnFence(t *testing.T) { forEachIO(t, testReplicatedWaitersFailOnFence) }

func testReplicatedWaitersFailOnFence(t *testing.T, env ioEnv) {
	ffs, _, inj := env.faultFS(t)
	e := openEngine(t, ffs, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, replicaCfg)
	appendEpoch(t, l, plain(2, 20, 1, 1), 1)
	if err := l.WaitDurable(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	l.AdvanceHighWatermark(2)
	if l.HighWatermark() != 2 {
		t.Fatalf("hw %d", l.HighWatermark())
	}
	appendEpoch(t, l, plain(1, 20, 1, 2), 1) // offset 2: durable, not replicated
	if err := l.WaitDurable(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- l.WaitHighWatermark(context.Background(), 2) }()
	waitFor(t, "waiter registered", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.hwWaiters.len() == 1 })
	inj.FailNextSync(".log", syscall.EIO)
	appendEpoch(t, l, plain(1, 20, 1, 3), 1)
	if err := <-acked; !errors.Is(err, ErrFenced) {
		t.Fatalf("acks=all wait on a fenced log: %v", err)
	}
	if hw := l.AdvanceHighWatermark(100); hw != 2 {
		t.Fatalf("hw moved to %d after the fence", hw)
	}
	if err := l.WaitHighWatermark(context.Background(), 2); !errors.Is(err, ErrFenced) {
		t.Fatalf("wait after fence: %v", err)
	}
	b := makeBatch(plain(1, 5, 1, 1))
	kafkaproto.SetBaseOffset(b, 4)
	if _, err := l.AppendReplica(b); !errors.Is(err, ErrFenced) {
		t.Fatalf("append replica on a fenced log: %v", err)
	}
	if err := l.TruncateTo(2); !errors.Is(err, ErrFenced) {
		t.Fatalf("truncate a fenced log: %v", err)
	}
}

func TestAppendReplicaCopiesLeader(t *testing.T) {
	le := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	defer le.Close()
	leader := openLog(t, le, replicaCfg)
	batches := buildLeader(t, leader)
	leo := leader.LogEndOffset()

	ffs := NewCrashFS()
	fe := openEngine(t, ffs, FsyncAlways, nil)
	fcfg := replicaCfg
	fcfg.SegmentBytes = 1300 // rolls need not line up with the leader's
	follower := openLog(t, fe, fcfg)
	copyLog(t, leader, follower, 500)
	if follower.LogEndOffset() != leo {
		t.Fatalf("follower leo %d, want %d", follower.LogEndOffset(), leo)
	}
	if n := len(segFiles(t, ffs, logSuffix)); n < 3 {
		t.Fatalf("follower did not roll: %d segments", n)
	}
	check := func(follower *Log) {
		t.Helper()
		all := bytes.Join(batches, nil)
		if got := readRange(t, follower, 0, leo, true); !bytes.Equal(got, all) {
			t.Fatalf("follower bytes differ: %d vs %d", len(got), len(all))
		}
		lc, ln := checksum(t, leader, 0, leo)
		fc, fn := checksum(t, follower, 0, leo)
		if lc != fc || ln != fn || ln != int64(len(all)) || lc != crc32.Checksum(all, castagnoli) {
			t.Fatalf("checksums leader %08x/%d follower %08x/%d", lc, ln, fc, fn)
		}
		// A sub-range across segments.
		var from, to int64
		kafkaproto.SplitBatches(batches[5], func(_ []byte, h kafkaproto.BatchHeader) error { from = h.BaseOffset; return nil })
		kafkaproto.SplitBatches(batches[30], func(_ []byte, h kafkaproto.BatchHeader) error { to = h.BaseOffset; return nil })
		lc, ln = checksum(t, leader, from, to)
		fc, fn = checksum(t, follower, from, to)
		if lc != fc || ln != fn || ln != int64(len(bytes.Join(batches[5:30], nil))) {
			t.Fatalf("sub-range checksums differ")
		}
		if !reflect.DeepEqual(producerEntries(leader), producerEntries(follower)) {
			t.Fatalf("producer state differs:\nleader   %+v\nfollower %+v", producerEntries(leader), producerEntries(follower))
		}
		if !reflect.DeepEqual(epochEntries(leader), epochEntries(follower)) {
			t.Fatalf("epochs differ: %v vs %v", epochEntries(leader), epochEntries(follower))
		}
		for ep := int32(-1); ep < 6; ep++ {
			lo, le := leader.EndOffsetForEpoch(ep)
			fo, fe := follower.EndOffsetForEpoch(ep)
			if lo != fo || le != fe {
				t.Fatalf("epoch %d: leader (%d, %d) follower (%d, %d)", ep, lo, le, fo, fe)
			}
		}
	}
	check(follower)
	// The follower's state survives a restart.
	if err := fe.Close(); err != nil {
		t.Fatal(err)
	}
	fe = openEngine(t, ffs, FsyncAlways, nil)
	defer fe.Close()
	follower = openLog(t, fe, fcfg)
	check(follower)

	// The follower becomes leader: idempotent state carries over. A
	// retry of producer 100's last batch is a duplicate.
	var last fencing.ProducerBatch
	for _, pe := range producerEntries(follower) {
		if pe.ProducerID == 100 {
			last = pe.Batches[len(pe.Batches)-1]
		}
	}
	retry := batchSpec{records: int(last.LastSeq-last.FirstSeq) + 1, valueSize: 5, ts: 1, pid: 100, epoch: 0, seq: last.FirstSeq}
	res, err := appendErr(follower, retry)
	if err != nil || !res.Duplicate || res.BaseOffset != last.FirstOffset || res.LastOffset != last.LastOffset {
		t.Fatalf("duplicate on the new leader: %+v, %v (want offsets %d-%d)", res, err, last.FirstOffset, last.LastOffset)
	}
	next := batchSpec{records: 2, valueSize: 8, ts: 2000, pid: 100, epoch: 0, seq: last.LastSeq + 1, fill: 1}
	if res, err := appendErr(follower, next); err != nil || res.Duplicate || res.BaseOffset != leo {
		t.Fatalf("next sequence on the new leader: %+v, %v", res, err)
	}
	gap := batchSpec{records: 1, valueSize: 8, ts: 2000, pid: 200, epoch: 0, seq: 1 << 20, fill: 1}
	if _, err := appendErr(follower, gap); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("out-of-order sequence on the new leader: %v", err)
	}
}

func TestAppendReplicaRejects(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, replicaCfg)
	stamp := func(b []byte, base int64, epoch int32) []byte {
		kafkaproto.SetBaseOffset(b, base)
		kafkaproto.SetPartitionLeaderEpoch(b, epoch)
		return b
	}
	good := func(base int64, epoch int32) []byte { return stamp(makeBatch(plain(2, 10, 1, 1)), base, epoch) }
	if _, err := l.AppendReplica(append(good(0, 3), good(2, 5)...)); err != nil {
		t.Fatal(err)
	}
	leo, size := l.LogEndOffset(), l.Size()
	badCRC := good(4, 5)
	badCRC[len(badCRC)-1] ^= 1
	badMagic := good(4, 5)
	badMagic[16] = 1
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, kafkaproto.ErrShortBatch},
		{"gap at start", good(5, 5), ErrOffsetMismatch},
		{"overlap", good(3, 5), ErrOffsetMismatch},
		{"gap between batches", append(good(4, 5), good(7, 5)...), ErrOffsetMismatch},
		{"stale epoch", good(4, 4), ErrStaleEpoch},
		{"epoch goes back inside", append(good(4, 6), good(6, 5)...), ErrStaleEpoch},
		{"bad crc", badCRC, kafkaproto.ErrBadCRC},
		{"bad crc in second", append(good(4, 5), badCRC[:]...), kafkaproto.ErrCorruptBatch},
		{"bad magic", badMagic, kafkaproto.ErrUnsupportedMagic},
		{"truncated", good(4, 5)[:70], kafkaproto.ErrShortBatch},
		{"trailing bytes", append(good(4, 5), 0, 0, 0), kafkaproto.ErrShortBatch},
		{"negative base", good(-2, 5), ErrOffsetMismatch},
	}
	for _, c := range cases {
		_, err := l.AppendReplica(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		if l.LogEndOffset() != leo || l.Size() != size {
			t.Fatalf("%s: wrote something: leo %d size %d", c.name, l.LogEndOffset(), l.Size())
		}
	}
	if res, err := l.AppendReplica(good(4, 5)); err != nil || res.BaseOffset != 4 || res.LastOffset != 5 {
		t.Fatalf("valid append after rejects: %+v, %v", res, err)
	}
	if got, ep := l.EndOffsetForEpoch(4); got != 2 || ep != 3 {
		t.Fatalf("EndOffsetForEpoch(4) = %d, %d", got, ep)
	}
}

// FuzzAppendReplica: any input either appends whole batches at the LEO or
// changes nothing.
func FuzzAppendReplica(f *testing.F) {
	b := makeBatch(plain(2, 10, 1, 1))
	f.Add(b)
	f.Add(append(slices.Clone(b), b...))
	two := slices.Clone(b)
	kafkaproto.SetBaseOffset(two, 2)
	f.Add(append(slices.Clone(b), two...))
	f.Add(b[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := openEngine(t, NewCrashFS(), FsyncNever, nil)
		defer e.Close()
		l := openLog(t, e, LogConfig{SegmentBytes: 200, RetentionBytes: -1, RetentionMs: -1})
		res, err := l.AppendReplica(slices.Clone(in))
		if err != nil {
			if l.LogEndOffset() != 0 || l.Size() != 0 {
				t.Fatalf("rejected input %v wrote: leo %d", err, l.LogEndOffset())
			}
			return
		}
		if res.BaseOffset != 0 || l.LogEndOffset() != res.LastOffset+1 || l.Size() != int64(len(in)) {
			t.Fatalf("result %+v, leo %d, size %d of %d", res, l.LogEndOffset(), l.Size(), len(in))
		}
		if got := readRange(t, l, 0, l.LogEndOffset(), false); !bytes.Equal(got, in) {
			t.Fatal("stored bytes differ from the input")
		}
	})
}

// buildTruncLog builds a replicated FsyncAlways log with buildLeader's
// batches, all durable, and returns them.
func buildTruncLog(t *testing.T, fsys FS) (*Engine, *Log, [][]byte) {
	t.Helper()
	e := openEngine(t, fsys, FsyncAlways, nil)
	l := openLog(t, e, replicaCfg)
	batches := buildLeader(t, l)
	if err := l.WaitDurable(context.Background(), l.LogEndOffset()-1); err != nil {
		t.Fatal(err)
	}
	return e, l, batches
}

// batchBase is the base offset of a stored batch.
func batchBase(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

// reference builds a log that only ever held prefix (via AppendReplica).
func reference(t *testing.T, prefix []byte) (*Engine, *Log) {
	t.Helper()
	e := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	l := openLog(t, e, replicaCfg)
	if len(prefix) > 0 {
		if _, err := l.AppendReplica(slices.Clone(prefix)); err != nil {
			t.Fatal(err)
		}
	}
	return e, l
}

// checkTruncated compares l with a log that never had the batches from
// keep on.
func checkTruncated(t *testing.T, l *Log, batches [][]byte, keep int) {
	t.Helper()
	prefix := bytes.Join(batches[:keep], nil)
	want := int64(0)
	if keep > 0 {
		h, _ := kafkaproto.ParseBatchHeader(batches[keep-1])
		want = h.LastOffset() + 1
	}
	if l.LogEndOffset() != want {
		t.Fatalf("leo %d, want %d", l.LogEndOffset(), want)
	}
	if got := readRange(t, l, 0, want, true); !bytes.Equal(got, prefix) {
		t.Fatalf("kept bytes differ: %d vs %d", len(got), len(prefix))
	}
	re, ref := reference(t, prefix)
	defer re.Close()
	if !reflect.DeepEqual(producerEntries(l), producerEntries(ref)) {
		t.Fatalf("producer state after truncate:\n got %+v\nwant %+v", producerEntries(l), producerEntries(ref))
	}
	if !reflect.DeepEqual(epochEntries(l), epochEntries(ref)) {
		t.Fatalf("epochs after truncate %v, want %v", epochEntries(l), epochEntries(ref))
	}
	if want > 0 {
		c1, n1 := checksum(t, l, 0, want)
		c2, n2 := checksum(t, ref, 0, want)
		if c1 != c2 || n1 != n2 {
			t.Fatal("checksum differs from the reference")
		}
	}
}

func TestTruncateTo(t *testing.T) { forEachIO(t, testTruncateTo) }

func testTruncateTo(t *testing.T, env ioEnv) {
	fsys := env.newFS(t)
	e, l, batches := buildTruncLog(t, fsys)
	segsBefore := segFiles(t, fsys, logSuffix)
	if len(segsBefore) < 4 {
		t.Fatalf("want several segments, have %v", segsBefore)
	}
	hw := batchBase(batches[8])
	l.AdvanceHighWatermark(hw)
	acked := make(chan error, 1)
	go func() { acked <- l.WaitHighWatermark(context.Background(), batchBase(batches[33])) }()
	waitFor(t, "waiter registered", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.hwWaiters.len() == 1 })

	// Below the HW: refused, nothing changes.
	leo, size := l.LogEndOffset(), l.Size()
	if err := l.TruncateTo(hw - 1); !errors.Is(err, ErrBelowHighWatermark) {
		t.Fatalf("truncate below hw: %v", err)
	}
	if l.LogEndOffset() != leo || l.Size() != size {
		t.Fatal("refused truncate changed the log")
	}
	if err := l.TruncateTo(leo + 5); err != nil || l.LogEndOffset() != leo {
		t.Fatalf("truncate above leo: %v", err)
	}

	// Inside the active segment.
	if err := l.TruncateTo(batchBase(batches[33])); err != nil {
		t.Fatal(err)
	}
	if err := <-acked; !errors.Is(err, ErrTruncated) {
		t.Fatalf("waiter for a truncated offset: %v", err)
	}
	checkTruncated(t, l, batches, 33)

	// Across segments, at an offset inside a batch (batch 20 holds 3
	// records): the whole batch goes.
	if err := l.TruncateTo(batchBase(batches[20]) + 1); err != nil {
		t.Fatal(err)
	}
	checkTruncated(t, l, batches, 20)
	if got := segFiles(t, fsys, logSuffix); len(got) >= len(segsBefore) || got[len(got)-1] > batchBase(batches[20]) {
		t.Fatalf("segments after truncate %v (before %v)", got, segsBefore)
	}
	for _, s := range segFiles(t, fsys, snapshotSuffix) {
		if s > l.LogEndOffset() {
			t.Fatalf("snapshot %d above the new end survived", s)
		}
	}
	if hw := l.HighWatermark(); hw != batchBase(batches[8]) {
		t.Fatalf("hw %d changed", hw)
	}

	// Appends continue at the new end, with a new epoch.
	res, b := appendEpoch(t, l, plain(2, 10, 5, 9), 7)
	if res.BaseOffset != batchBase(batches[20]) {
		t.Fatalf("append after truncate at %d", res.BaseOffset)
	}
	if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if off, ep := l.EndOffsetForEpoch(4); off != res.BaseOffset || ep != 2 {
		t.Fatalf("EndOffsetForEpoch(4) after truncate = %d, %d", off, ep)
	}
	want := append(bytes.Join(batches[:20], nil), b...)
	if got := readRange(t, l, 0, res.LastOffset+1, true); !bytes.Equal(got, want) {
		t.Fatal("log after truncate and append differs")
	}
	// Reopen: same log, same epochs, same producers.
	epochs, producers := epochEntries(l), producerEntries(l)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openEngine(t, fsys, FsyncAlways, nil)
	defer e2.Close()
	l2 := openLog(t, e2, replicaCfg)
	if got := readRange(t, l2, 0, l2.LogEndOffset(), true); !bytes.Equal(got, want) {
		t.Fatal("log after reopen differs")
	}
	if !reflect.DeepEqual(epochEntries(l2), epochs) || !reflect.DeepEqual(producerEntries(l2), producers) {
		t.Fatalf("state after reopen: epochs %v vs %v", epochEntries(l2), epochs)
	}
	// A clean close recorded the HW: the log reopens with it, and a
	// truncation below it is refused (I3).
	if hw := l2.HighWatermark(); hw != batchBase(batches[8]) {
		t.Fatalf("hw after reopen %d, want the recorded %d", hw, batchBase(batches[8]))
	}
	if err := l2.TruncateTo(batchBase(batches[3])); !errors.Is(err, ErrBelowHighWatermark) {
		t.Fatalf("truncate below the recorded hw: %v", err)
	}
	// Without the record (a log that was never closed cleanly) the log
	// reopens with the HW at its start.
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove(filepath.Join(l2.dir, hwFile)); err != nil {
		t.Fatal(err)
	}
	e2 = openEngine(t, fsys, FsyncAlways, nil)
	defer e2.Close()
	l2 = openLog(t, e2, replicaCfg)
	if l2.HighWatermark() != 0 {
		t.Fatalf("hw after reopen without a record %d", l2.HighWatermark())
	}
	if err := l2.TruncateTo(batchBase(batches[3])); err != nil {
		t.Fatal(err)
	}
	checkTruncated(t, l2, batches, 3)
	if err := l2.TruncateTo(0); err != nil {
		t.Fatal(err)
	}
	if l2.LogEndOffset() != 0 || len(epochEntries(l2)) != 0 || len(producerEntries(l2)) != 0 {
		t.Fatalf("truncate to 0: leo %d", l2.LogEndOffset())
	}
	if res, _ := appendEpoch(t, l2, plain(1, 1, 1, 1), 9); res.BaseOffset != 0 {
		t.Fatalf("append after truncate to 0 at %d", res.BaseOffset)
	}
}

// stepFS records the durable state (a Crash and a CrashTorn) after every
// mutating operation while armed.
type stepFS struct {
	*CrashFS
	mu     sync.Mutex
	armed  bool
	states []*CrashFS
}

func (s *stepFS) snap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.armed {
		s.states = append(s.states, s.CrashFS.Crash(), s.CrashFS.CrashTorn(int64(len(s.states))))
	}
}

func (s *stepFS) arm(on bool) {
	s.mu.Lock()
	s.armed = on
	s.mu.Unlock()
	s.snap()
}

func (s *stepFS) Remove(name string) error  { err := s.CrashFS.Remove(name); s.snap(); return err }
func (s *stepFS) Rename(o, n string) error  { err := s.CrashFS.Rename(o, n); s.snap(); return err }
func (s *stepFS) SyncDir(name string) error { err := s.CrashFS.SyncDir(name); s.snap(); return err }

func (s *stepFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := s.CrashFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	s.snap()
	return &stepFile{File: f, s: s}, nil
}

type stepFile struct {
	File
	s *stepFS
}

func (f *stepFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.s.snap()
	return n, err
}
func (f *stepFile) Truncate(size int64) error { err := f.File.Truncate(size); f.s.snap(); return err }
func (f *stepFile) Sync() error               { err := f.File.Sync(); f.s.snap(); return err }

// TestTruncateCrash crashes at every step of TruncateTo (within the active
// segment and across segments): recovery yields the old log or the
// truncated one.
func TestTruncateCrash(t *testing.T) {
	for _, keep := range []int{33, 14, 0} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			s := &stepFS{CrashFS: NewCrashFS()}
			e, l, batches := buildTruncLog(t, s)
			old := l.LogEndOffset()
			cut := int64(0)
			if keep > 0 {
				cut = batchBase(batches[keep])
			}
			s.arm(true)
			if err := l.TruncateTo(cut); err != nil {
				t.Fatal(err)
			}
			s.arm(false)
			e.Close()
			if len(s.states) < 10 {
				t.Fatalf("only %d crash points", len(s.states))
			}
			sawOld, sawNew := false, false
			for i, st := range s.states {
				e2 := openEngine(t, st, FsyncAlways, nil)
				l2 := openLog(t, e2, replicaCfg)
				switch l2.LogEndOffset() {
				case old:
					sawOld = true
					checkTruncated(t, l2, batches, len(batches))
				case cut:
					sawNew = true
					checkTruncated(t, l2, batches, keep)
				default:
					t.Fatalf("crash point %d: leo %d, want %d or %d", i, l2.LogEndOffset(), old, cut)
				}
				if _, err := st.Stat(filepath.Join(logDir, truncateFile)); !isNotExist(err) {
					t.Fatalf("crash point %d: truncate-to record left after recovery: %v", i, err)
				}
				if res, _ := appendEpoch(t, l2, plain(1, 3, 1, 1), 9); res.BaseOffset != l2.LogEndOffset()-1 {
					t.Fatalf("crash point %d: append at %d", i, res.BaseOffset)
				}
				e2.Close()
			}
			if !sawOld || !sawNew {
				t.Fatalf("crash points saw old %v, truncated %v", sawOld, sawNew)
			}
		})
	}
}

func TestEndOffsetForEpoch(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	cfg := replicaCfg
	cfg.SegmentBytes = 400
	l := openLog(t, e, cfg)
	if off, ep := l.EndOffsetForEpoch(3); off != -1 || ep != -1 {
		t.Fatalf("empty log: %d, %d", off, ep)
	}
	// Epochs 1: [0, 10), 3: [10, 20), 4: [20, 30); one record per batch.
	for i := 0; i < 30; i++ {
		epoch := []int32{1, 3, 4}[i/10]
		appendEpoch(t, l, plain(1, 40, 1, byte(i)), epoch)
	}
	if err := l.WaitDurable(context.Background(), 29); err != nil {
		t.Fatal(err)
	}
	type q struct {
		epoch, wantEp int32
		wantOff       int64
	}
	check := func(l *Log, leo int64, qs []q) {
		t.Helper()
		for _, c := range qs {
			if off, ep := l.EndOffsetForEpoch(c.epoch); off != c.wantOff || ep != c.wantEp {
				t.Fatalf("EndOffsetForEpoch(%d) = %d, %d; want %d, %d", c.epoch, off, ep, c.wantOff, c.wantEp)
			}
		}
		if l.LogEndOffset() != leo {
			t.Fatalf("leo %d", l.LogEndOffset())
		}
	}
	full := []q{{-1, -1, -1}, {0, 0, 0}, {1, 1, 10}, {2, 1, 10}, {3, 3, 20}, {4, 4, 30}, {9, 4, 30}}
	check(l, 30, full)
	if len(segFiles(t, fsys, logSuffix)) < 4 {
		t.Fatal("want several segments")
	}
	reopen := func() *Log {
		t.Helper()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = openEngine(t, fsys, FsyncAlways, nil)
		return openLog(t, e, cfg)
	}
	l = reopen()
	check(l, 30, full)
	// Without the checkpoint every sealed segment is scanned.
	if err := fsys.Remove(filepath.Join(logDir, epochFile)); err != nil {
		t.Fatal(err)
	}
	l = reopen()
	check(l, 30, full)
	// A corrupt checkpoint is ignored the same way.
	if err := writeFileSync(fsys, filepath.Join(logDir, epochFile), []byte("TSKE garbage garbage garbage")); err != nil {
		t.Fatal(err)
	}
	l = reopen()
	check(l, 30, full)

	if err := l.TruncateTo(15); err != nil {
		t.Fatal(err)
	}
	afterTrunc := []q{{1, 1, 10}, {3, 3, 15}, {4, 3, 15}}
	check(l, 15, afterTrunc)
	l = reopen()
	check(l, 15, afterTrunc)
	appendEpoch(t, l, plain(1, 40, 1, 1), 6)
	check(l, 16, []q{{3, 3, 15}, {4, 3, 15}, {5, 3, 15}, {6, 6, 16}})
	// Retention trims epochs wholly below the log start.
	if err := l.WaitDurable(context.Background(), 15); err != nil {
		t.Fatal(err)
	}
	l.AdvanceHighWatermark(16)
	if _, err := l.DeleteRecordsBefore(12); err != nil {
		t.Fatal(err)
	}
	if es := epochEntries(l); es[0].epoch != 3 {
		t.Fatalf("epochs after delete records %v", es)
	}
	defer e.Close()
}

func TestSegmentChecksumBounds(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 300, RetentionBytes: -1, RetentionMs: -1})
	var all []byte
	for i := 0; i < 10; i++ {
		_, b := appendEpoch(t, l, plain(2, 30, 1, byte(i)), 0) // batch i holds 2i, 2i+1
		all = append(all, b...)
	}
	if c, n, err := l.SegmentChecksum(4, 4); err != nil || c != 0 || n != 0 {
		t.Fatalf("empty range: %08x %d %v", c, n, err)
	}
	for _, r := range [][2]int64{{1, 4}, {0, 3}, {3, 3 + 2}} {
		if _, _, err := l.SegmentChecksum(r[0], r[1]); !errors.Is(err, ErrNotBatchBoundary) {
			t.Fatalf("range %v: %v", r, err)
		}
	}
	for _, r := range [][2]int64{{0, 21}, {4, 2}, {-1, 2}} {
		if _, _, err := l.SegmentChecksum(r[0], r[1]); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("range %v: %v", r, err)
		}
	}
	bs := len(all) / 10
	c, n := checksum(t, l, 4, 14)
	if n != int64(5*bs) || c != crc32.Checksum(all[2*bs:7*bs], castagnoli) {
		t.Fatalf("checksum [4, 14) = %08x/%d", c, n)
	}
}

// TestCreateLogAt: a learner's log that begins where the leader's log
// starts after retention copies the rest byte for byte, and keeps its
// start across a restart; an existing directory is refused.
func TestCreateLogAt(t *testing.T) {
	le := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	defer le.Close()
	leader := openLog(t, le, replicaCfg)
	buildLeader(t, leader)
	leo := leader.LogEndOffset()
	// The leader's log start moves to a batch boundary well inside.
	r, err := leader.ReadUncommitted(leo/2, 1, true)
	if err != nil || len(r.Data) == 0 {
		t.Fatalf("read at %d: %v", leo/2, err)
	}
	h, err := kafkaproto.ParseBatchHeader(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	start := h.BaseOffset
	leader.AdvanceHighWatermark(leo)
	if got, err := leader.DeleteRecordsBefore(start); err != nil || got != start {
		t.Fatalf("delete records before %d: %d, %v", start, got, err)
	}

	ffs := NewCrashFS()
	fe := openEngine(t, ffs, FsyncAlways, nil)
	if _, err := fe.OpenLog(tp0, replicaCfg); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.CreateLogAt(tp0, replicaCfg, start); err == nil {
		t.Fatal("CreateLogAt over an open log succeeded")
	}
	if err := fe.DeleteLog(tp0); err != nil {
		t.Fatal(err)
	}
	follower, err := fe.CreateLogAt(tp0, replicaCfg, start)
	if err != nil {
		t.Fatal(err)
	}
	if follower.LogStartOffset() != start || follower.LogEndOffset() != start {
		t.Fatalf("new log start %d end %d, want %d", follower.LogStartOffset(), follower.LogEndOffset(), start)
	}
	copyLog(t, leader, follower, 700)
	want := readRange(t, leader, start, leo, true)
	if got := readRange(t, follower, start, leo, true); !bytes.Equal(got, want) {
		t.Fatalf("copied bytes differ: %d vs %d", len(got), len(want))
	}
	if err := fe.Close(); err != nil {
		t.Fatal(err)
	}
	fe = openEngine(t, ffs, FsyncAlways, nil)
	defer fe.Close()
	follower = openLog(t, fe, replicaCfg)
	if follower.LogStartOffset() != start || follower.LogEndOffset() != leo {
		t.Fatalf("after restart: start %d end %d, want %d and %d", follower.LogStartOffset(), follower.LogEndOffset(), start, leo)
	}
}

// TestReplicatedHighWatermarkCheckpoint: a clean close records a
// replicated log's high watermark and the next open starts from it; after
// a crash (no close) the log starts from the checkpoint of the last clean
// close, never above its log end.
func TestReplicatedHighWatermarkCheckpoint(t *testing.T) {
	fsys := NewCrashFS()
	e := openEngine(t, fsys, FsyncAlways, nil)
	l := openLog(t, e, replicaCfg)
	for i := 0; i < 4; i++ { // offsets 0..7
		appendEpoch(t, l, plain(2, 20, 1, byte(i)), 1)
	}
	waitFor(t, "durable", func() bool { return l.DurableOffset() == 8 })
	if hw := l.AdvanceHighWatermark(6); hw != 6 {
		t.Fatalf("hw %d, want 6", hw)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, fsys, FsyncAlways, nil)
	l = openLog(t, e, replicaCfg)
	if l.HighWatermark() != 6 || l.LogEndOffset() != 8 {
		t.Fatalf("after a clean close: hw %d leo %d, want 6 and 8", l.HighWatermark(), l.LogEndOffset())
	}
	if r, err := l.Read(0, 1<<20, true); err != nil || len(r.Data) == 0 {
		t.Fatalf("committed records not readable after restart: %v", err)
	}
	// Moves on, then crashes: the last clean close's checkpoint holds.
	l.AdvanceHighWatermark(8)
	running := e
	fsys = fsys.Crash()
	e = openEngine(t, fsys, FsyncAlways, nil)
	defer e.Close()
	defer running.Close() // on the pre-crash file system
	l = openLog(t, e, replicaCfg)
	if l.HighWatermark() != 6 {
		t.Fatalf("after a crash: hw %d, want the checkpointed 6", l.HighWatermark())
	}
}

// TestAppendFencedByLease: once the engine has a lease source, appends to
// a replicated log need a live lease and the writer's epoch (fencing);
// a log nobody leads refuses them, and an unreplicated log is unaffected.
func TestAppendFencedByLease(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := openEngine(t, NewCrashFS(), FsyncNever, clock)
	defer e.Close()
	lease := fencing.NewLease(clock(), time.Second)
	e.SetLeaseSource(func() fencing.Lease { mu.Lock(); defer mu.Unlock(); return lease })
	l := openLog(t, e, replicaCfg)
	try := func(epoch int32) error {
		b := makeBatch(plain(1, 10, 1, 1))
		h, err := kafkaproto.ValidateBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.Append(b, h, epoch)
		return err
	}
	if err := try(3); !errors.Is(err, fencing.ErrNotWriter) {
		t.Fatalf("append without a writer epoch: %v", err)
	}
	l.SetWriterEpoch(3)
	if err := try(3); err != nil {
		t.Fatalf("leader append: %v", err)
	}
	if err := try(2); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("stale epoch: %v", err)
	}
	leo := l.LogEndOffset()
	advance(time.Second)
	if err := try(3); !errors.Is(err, fencing.ErrLeaseExpired) {
		t.Fatalf("append after the lease expired: %v", err)
	}
	if l.LogEndOffset() != leo {
		t.Fatalf("a refused append moved the log end to %d", l.LogEndOffset())
	}
	mu.Lock()
	lease.Renew(now, time.Second)
	mu.Unlock()
	if err := try(3); err != nil {
		t.Fatalf("append after the renewal: %v", err)
	}
	l.SetWriterEpoch(fencing.NoWriter)
	if err := try(3); !errors.Is(err, fencing.ErrNotWriter) {
		t.Fatalf("append after leadership ended: %v", err)
	}
	// An unreplicated log (one replica) needs no lease.
	cfg := replicaCfg
	cfg.Replicated = false
	u, err := e.OpenLog(TopicPartition{Topic: "single", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	b := makeBatch(plain(1, 10, 1, 1))
	h, _ := kafkaproto.ValidateBatch(b)
	if _, err := u.Append(b, h, 0); err != nil {
		t.Fatalf("unreplicated append: %v", err)
	}
}
