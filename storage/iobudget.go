package storage

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Background I/O budgets (docs/io-and-scale.md, section 2). Work that is
// not on the acknowledgement path (the deleter's file shrinking, learner
// copies, later the compaction cleaner) takes tokens from a budget before
// each step, so that it cannot flood the file system and hold up the
// group commit's fdatasync. The ack path never waits on a budget.

// ioClock is the time source of budgets; tests inject a fake one.
type ioClock interface {
	Now() time.Time
	// Sleep waits d, or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ioBudget is a token bucket of bytes per second. A caller takes n tokens
// and sleeps off any debt, so concurrent callers are served in the order
// they asked and the long-run rate never exceeds the limit; up to burst
// bytes accumulate while the budget is idle. It starts empty. A nil
// budget, or one with a rate <= 0, never waits.
type ioBudget struct {
	rate      float64 // bytes per second
	burst     float64
	clock     ioClock
	throttled *atomic.Int64 // nanoseconds callers were told to sleep (shared by the engine's budgets)

	mu     sync.Mutex
	tokens float64   // bytes available; negative: owed by callers already sleeping
	last   time.Time // when tokens was last refilled
}

func newIOBudget(rate, burst int64, clock ioClock, throttled *atomic.Int64) *ioBudget {
	if rate <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = 1
	}
	return &ioBudget{rate: float64(rate), burst: float64(burst), clock: clock, throttled: throttled, last: clock.Now()}
}

// reserve takes n tokens and returns how long the caller must wait for
// them to be paid for.
func (b *ioBudget) reserve(n int64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := b.clock.Now(); now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// refund gives back n tokens a caller took but will not use.
func (b *ioBudget) refund(n int64) {
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+float64(n))
	b.mu.Unlock()
}

// wait takes n bytes' worth of tokens, sleeping until they are paid for.
// If ctx ends first it returns ctx.Err() and the tokens are given back.
func (b *ioBudget) wait(ctx context.Context, n int64) error {
	if b == nil || n <= 0 {
		return nil
	}
	d := b.reserve(n)
	if d <= 0 {
		return nil
	}
	b.throttled.Add(int64(d))
	if err := b.clock.Sleep(ctx, d); err != nil {
		b.refund(n)
		return err
	}
	return nil
}

// WaitBackgroundIO takes n bytes from the engine's background I/O budget
// (Options.BackgroundIORate), sleeping as long as the budget requires.
// Writers that are not on the acknowledgement path call it before writing
// n bytes: a learner copying a partition, a node catching up after a
// restart. It returns ctx.Err() if ctx ends first.
func (l *Log) WaitBackgroundIO(ctx context.Context, n int) error {
	if l.engine == nil {
		return nil
	}
	l.engine.bgStats.budgeted.Add(int64(n))
	return l.engine.bgBudget.wait(ctx, int64(n))
}

// BackgroundStats are the engine's background I/O counters since Open.
type BackgroundStats struct {
	// BytesDeleted counts bytes of segment data freed by the deleter
	// (ftruncate steps and final unlinks).
	BytesDeleted int64
	// BytesPendingDeletion is what is queued for deletion and not freed
	// yet.
	BytesPendingDeletion int64
	// Throttled is the time background writers (the deleter, learner
	// copies) spent waiting for their budget.
	Throttled time.Duration
	// BackgroundIOBytes counts bytes written under the background I/O
	// budget (Log.WaitBackgroundIO), throttled or not.
	BackgroundIOBytes int64
}

// BackgroundStats returns the engine's background I/O counters.
func (e *Engine) BackgroundStats() BackgroundStats {
	return BackgroundStats{
		BytesDeleted:         e.bgStats.deleted.Load(),
		BytesPendingDeletion: e.bgStats.pending.Load(),
		Throttled:            time.Duration(e.bgStats.throttled.Load()),
		BackgroundIOBytes:    e.bgStats.budgeted.Load(),
	}
}

// bgStats holds the background I/O counters.
type bgStats struct {
	deleted   atomic.Int64 // bytes freed
	pending   atomic.Int64 // bytes queued, not freed yet
	throttled atomic.Int64 // nanoseconds of budget waits
	budgeted  atomic.Int64 // bytes taken from the background I/O budget
}
