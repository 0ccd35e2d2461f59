package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
)

func idem(pid int64, epoch int16, seq int32, records int) batchSpec {
	return batchSpec{records: records, valueSize: 40, ts: 1, pid: pid, epoch: epoch, seq: seq, fill: byte(seq)}
}

func appendErr(l *Log, s batchSpec) (AppendResult, error) {
	b := makeBatch(s)
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		return AppendResult{}, err
	}
	return l.Append(b, h, 1)
}

func TestIdempotentProducer(t *testing.T) { forEachIO(t, testIdempotentProducer) }

func testIdempotentProducer(t *testing.T, env ioEnv) {
	for _, dropSnapshots := range []bool{false, true} {
		fsys := env.newFS(t)
		e := openEngine(t, fsys, FsyncAlways, nil)
		cfg := LogConfig{SegmentBytes: 500, RetentionBytes: -1, RetentionMs: -1}
		l := openLog(t, e, cfg)
		type acc struct {
			seq, n     int32
			base, last int64
		}
		var accepted []acc
		seq := int32(0)
		for i := 0; i < 9; i++ {
			n := int32(1 + i%3)
			res, _ := appendSpec(t, l, idem(42, 1, seq, int(n)))
			if res.Duplicate {
				t.Fatal("fresh batch reported duplicate")
			}
			accepted = append(accepted, acc{seq, n, res.BaseOffset, res.LastOffset})
			seq += n
			appendSpec(t, l, idem(43, 0, int32(i), 1)) // interleave another producer
			appendSpec(t, l, plain(1, 10, 1, 1))       // and a non-idempotent one
		}
		leo := l.LogEndOffset()
		check := func(l *Log, leo int64) {
			t.Helper()
			for k := 4; k <= 8; k++ { // each of the last five
				a := accepted[k]
				res, err := appendErr(l, idem(42, 1, a.seq, int(a.n)))
				if err != nil || !res.Duplicate || res.BaseOffset != a.base || res.LastOffset != a.last {
					t.Fatalf("dup of batch %d: %+v, %v; want %d-%d", k, res, err, a.base, a.last)
				}
			}
			if l.LogEndOffset() != leo {
				t.Fatal("duplicate was written")
			}
			a := accepted[3] // sixth newest: forgotten
			if _, err := appendErr(l, idem(42, 1, a.seq, int(a.n))); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("6th newest: %v", err)
			}
			if _, err := appendErr(l, idem(42, 1, seq+1, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("gap: %v", err)
			}
			if _, err := appendErr(l, idem(42, 0, seq, 1)); !errors.Is(err, ErrInvalidProducerEpoch) {
				t.Fatalf("stale epoch: %v", err)
			}
			if _, err := appendErr(l, idem(44, 0, 3, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("unknown producer not at 0: %v", err)
			}
			if l.LogEndOffset() != leo {
				t.Fatal("rejected batch was written")
			}
		}
		check(l, leo)
		if n := len(segFiles(t, fsys, logSuffix)); n < 3 {
			t.Fatalf("want rolls, have %d segments", n)
		}
		e.Close()
		if dropSnapshots {
			for _, b := range segFiles(t, fsys, snapshotSuffix) {
				if err := fsys.Remove(segName(logDir, b, snapshotSuffix)); err != nil {
					t.Fatal(err)
				}
			}
		}
		e2 := openEngine(t, fsys, FsyncAlways, nil)
		l2 := openLog(t, e2, cfg)
		check(l2, leo)
		res, err := appendErr(l2, idem(42, 1, seq, 2))
		if err != nil || res.BaseOffset != leo || res.Duplicate {
			t.Fatalf("next in order after reopen: %+v %v", res, err)
		}
		if res, err := appendErr(l2, idem(42, 2, 0, 1)); err != nil || res.BaseOffset != leo+2 {
			t.Fatalf("epoch bump: %+v %v", res, err)
		}
		if err := l2.WaitDurable(context.Background(), leo+2); err != nil {
			t.Fatal(err)
		}
		e2.Close()
	}
}
