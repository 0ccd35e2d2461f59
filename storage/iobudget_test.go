package storage

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIOClock is an ioClock whose Sleep advances its time at once.
type fakeIOClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
	// hook, if set, runs (without mu) after the n-th sleep (1-based)
	// advanced the time; its error is Sleep's.
	hook func(ctx context.Context, n int) error
}

func newFakeIOClock() *fakeIOClock { return &fakeIOClock{t: time.Unix(1_000_000, 0)} }

func (c *fakeIOClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeIOClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.sleeps = append(c.sleeps, d)
	n, hook := len(c.sleeps), c.hook
	c.mu.Unlock()
	if hook != nil {
		return hook(ctx, n)
	}
	return nil
}

func (c *fakeIOClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeIOClock) slept() (n int, total time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.sleeps {
		total += d
	}
	return len(c.sleeps), total
}

// TestIOBudgetPacing: N bytes at R bytes/s take N/R of (fake) time, one
// sleep per step; an idle budget saves up at most its burst; a cancelled
// wait gives its tokens back; a nil budget never waits.
func TestIOBudgetPacing(t *testing.T) {
	const mib = 1 << 20
	clk := newFakeIOClock()
	var throttled atomic.Int64
	b := newIOBudget(4*mib, mib, clk, &throttled)
	start := clk.Now()
	ctx := context.Background()
	for i := 0; i < 20; i++ { // 10 MiB in 512 KiB steps at 4 MiB/s: 2.5 s
		if err := b.wait(ctx, mib/2); err != nil {
			t.Fatal(err)
		}
	}
	if n, total := clk.slept(); n != 20 || total != 2500*time.Millisecond || clk.Now().Sub(start) != 2500*time.Millisecond {
		t.Fatalf("%d sleeps, %v in all, clock moved %v; want 20, 2.5s", n, total, clk.Now().Sub(start))
	}
	if got := time.Duration(throttled.Load()); got != 2500*time.Millisecond {
		t.Fatalf("throttled %v, want 2.5s", got)
	}
	// Idle for 10 s: only the 1 MiB burst was saved up.
	clk.advance(10 * time.Second)
	if err := b.wait(ctx, mib); err != nil {
		t.Fatal(err)
	}
	if n, _ := clk.slept(); n != 20 {
		t.Fatalf("a wait within the burst slept (%d sleeps)", n)
	}
	if err := b.wait(ctx, mib); err != nil {
		t.Fatal(err)
	}
	if n, total := clk.slept(); n != 21 || total != 2750*time.Millisecond {
		t.Fatalf("%d sleeps, %v; want 21, 2.75s", n, total)
	}
	// A cancelled wait returns the context's error and its tokens.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.wait(cctx, 4*mib); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if err := b.wait(ctx, mib); err != nil {
		t.Fatal(err)
	}
	if _, total := clk.slept(); total != 3000*time.Millisecond {
		t.Fatalf("after a cancelled wait: slept %v in all, want 3s (the cancelled 4 MiB refunded)", total)
	}
	var none *ioBudget
	if newIOBudget(0, mib, clk, &throttled) != nil || none.wait(ctx, 1<<40) != nil {
		t.Fatal("an unlimited budget waits")
	}
}

// TestIOBudgetConcurrent: callers sharing a budget are admitted one after
// the other: with the clock standing still, 100 concurrent 1 KiB
// reservations at 100 KiB/s are told to wait 10 ms, 20 ms, ... 1 s.
func TestIOBudgetConcurrent(t *testing.T) {
	const kib = 1 << 10
	clk := newFakeIOClock()
	var throttled atomic.Int64
	b := newIOBudget(100*kib, kib, clk, &throttled)
	var mu sync.Mutex
	var waits []time.Duration
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				d := b.reserve(kib)
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(waits)
	for i, d := range waits {
		if want := time.Duration(i+1) * 10 * time.Millisecond; d != want {
			t.Fatalf("reservation %d waits %v, want %v (all: %v)", i, d, want, waits)
		}
	}
}
