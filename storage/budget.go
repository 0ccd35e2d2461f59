package storage

import (
	"context"
	"sync/atomic"
)

// Budget is a byte-rate budget for background work outside the storage
// engine, such as the compaction cleaner's reads and writes
// (cleaner.io-rate, docs/compaction.md). It is the engine's token bucket
// (iobudget.go) with its own rate.
type Budget struct {
	b         *ioBudget
	throttled atomic.Int64 // nanoseconds callers were told to sleep
}

// NewBudget returns a budget of rate bytes per second, with a burst of a
// tenth of a second (at least 1 MiB). A rate <= 0 is unlimited.
func NewBudget(rate int64) *Budget {
	bu := &Budget{}
	bu.b = newIOBudget(rate, max(rate/10, 1<<20), wallClock{}, &bu.throttled)
	return bu
}

// Wait takes n bytes from the budget, sleeping as long as it requires; it
// returns ctx.Err() if ctx ends first.
func (bu *Budget) Wait(ctx context.Context, n int) error {
	if bu == nil {
		return nil
	}
	return bu.b.wait(ctx, int64(n))
}

// Throttled is the total time callers were told to wait, in nanoseconds.
func (bu *Budget) Throttled() int64 {
	if bu == nil {
		return 0
	}
	return bu.throttled.Load()
}
