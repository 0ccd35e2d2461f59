package storage

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
)

func TestWriteErrorFencesLog(t *testing.T) { forEachIO(t, testWriteErrorFencesLog) }

func testWriteErrorFencesLog(t *testing.T, env ioEnv) {
	for _, short := range []bool{false, true} {
		name := "EIO"
		if short {
			name = "short"
		}
		t.Run(name, func(t *testing.T) {
			ffs, inner, inj := env.faultFS(t)
			e := openEngine(t, ffs, FsyncAlways, nil)
			l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
			res, _ := appendSpec(t, l, plain(2, 20, 1, 1))
			if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
				t.Fatal(err)
			}
			hwCh := make(chan struct{}, 1)
			l.AddWaiter(hwCh)
			if short {
				inj.ShortNextWrite(".log")
			} else {
				inj.FailNextWrite(".log", syscall.EIO)
			}
			b := makeBatch(plain(1, 20, 1, 2))
			h, _ := kafkaproto.ValidateBatch(b)
			_, err := l.Append(b, h, 0)
			if !errors.Is(err, ErrFenced) {
				t.Fatalf("append with failing write: %v", err)
			}
			if short && !errors.Is(err, io.ErrShortWrite) || !short && !errors.Is(err, syscall.EIO) {
				t.Fatalf("cause not wrapped: %v", err)
			}
			if inj.Fired() != 1 {
				t.Fatalf("fault fired %d times", inj.Fired())
			}
			select {
			case <-hwCh:
			default:
				t.Fatal("AddWaiter channel not signalled on fence")
			}
			if l.LogEndOffset() != 2 || l.HighWatermark() != 2 {
				t.Fatalf("leo %d hw %d after failed write, want 2 2", l.LogEndOffset(), l.HighWatermark())
			}
			b2 := makeBatch(plain(1, 20, 1, 3))
			h2, _ := kafkaproto.ValidateBatch(b2)
			if _, err := l.Append(b2, h2, 0); !errors.Is(err, ErrFenced) {
				t.Fatalf("append after fence: %v", err)
			}
			if err := l.WaitDurable(context.Background(), 2); !errors.Is(err, ErrFenced) {
				t.Fatalf("wait after fence: %v", err)
			}
			if err := l.WaitDurable(context.Background(), 1); err != nil {
				t.Fatalf("wait for synced offset after fence: %v", err)
			}
			e.Close()
			// Recovery drops the half-written batch.
			e2 := openEngine(t, inner, FsyncAlways, nil)
			defer e2.Close()
			l2 := openLog(t, e2, LogConfig{RetentionBytes: -1, RetentionMs: -1})
			if l2.LogEndOffset() != 2 {
				t.Fatalf("leo after reopen %d, want 2", l2.LogEndOffset())
			}
			if res, _ := appendSpec(t, l2, plain(1, 5, 1, 1)); res.BaseOffset != 2 {
				t.Fatalf("append after reopen at %d", res.BaseOffset)
			}
		})
	}
}

func TestSyncErrorFencesLog(t *testing.T) { forEachIO(t, testSyncErrorFencesLog) }

func testSyncErrorFencesLog(t *testing.T, env ioEnv) {
	ffs, _, inj := env.faultFS(t)
	e := openEngine(t, ffs, FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	res, _ := appendSpec(t, l, plain(3, 20, 1, 1))
	if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	inj.FailNextSync(".log", syscall.EIO)
	res, _ = appendSpec(t, l, plain(1, 20, 1, 2))
	err := l.WaitDurable(context.Background(), res.LastOffset)
	if !errors.Is(err, ErrFenced) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("wait with failing sync: %v", err)
	}
	if l.HighWatermark() != 3 || l.LogEndOffset() != 4 {
		t.Fatalf("hw %d leo %d, want 3 4", l.HighWatermark(), l.LogEndOffset())
	}
	if r, err := l.Read(3, 1000, true); err != nil || len(r.Data) != 0 {
		t.Fatalf("unsynced batch visible: %v, %d bytes", err, len(r.Data))
	}
	b := makeBatch(plain(1, 20, 1, 3))
	h, _ := kafkaproto.ValidateBatch(b)
	if _, err := l.Append(b, h, 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("append after failed sync: %v", err)
	}
	ch := make(chan struct{}, 1)
	l.AddWaiter(ch)
	select {
	case <-ch:
	default:
		t.Fatal("AddWaiter on a fenced log must signal at once")
	}
}

func TestRollSyncErrorFences(t *testing.T) { forEachIO(t, testRollSyncErrorFences) }

func testRollSyncErrorFences(t *testing.T, env ioEnv) {
	ffs, _, inj := env.faultFS(t)
	e := openEngine(t, ffs, FsyncNever, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{SegmentBytes: 100, RetentionBytes: -1, RetentionMs: -1})
	appendSpec(t, l, plain(1, 60, 1, 1))
	inj.FailNextSync(".log", syscall.EIO)
	b := makeBatch(plain(1, 60, 1, 2))
	h, _ := kafkaproto.ValidateBatch(b)
	if _, err := l.Append(b, h, 0); !errors.Is(err, ErrFenced) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append needing a roll with failing sync: %v", err)
	}
	if l.LogEndOffset() != 1 {
		t.Fatalf("leo %d", l.LogEndOffset())
	}
}
