package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// consumer reads the run's records back, from the end offsets noted before
// producing, and measures end-to-end latency.
type consumer struct {
	cl  *kgo.Client
	lat *histogram

	target   atomic.Int64 // records to read: cfg.Records, then the acknowledged count
	prodDone atomic.Int64 // UnixNano when producing ended, 0 before
	count    int64        // records read; owned by run, read after it returns
	seen     atomic.Int64 // count, for progress lines
	bytes    int64
	elapsed  time.Duration
}

func newConsumer(cfg Config, starts map[int32]int64) (*consumer, error) {
	parts := make(map[int32]kgo.Offset, len(starts))
	for p, off := range starts {
		parts[p] = kgo.NewOffset().At(off)
	}
	cl, err := kgo.NewClient(append(cfg.dialOpts(),
		kgo.ClientID("tusk-bench-consumer"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: parts}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("bench: consumer client: %w", err)
	}
	c := &consumer{cl: cl, lat: new(histogram)}
	c.target.Store(cfg.Records)
	return c, nil
}

// produceDone tells the consumer how many records were acknowledged, which
// is how many it must read.
func (c *consumer) produceDone(acked int64) {
	c.target.Store(acked)
	c.prodDone.Store(time.Now().UnixNano())
}

// run polls until it has read target records. Once producing has ended it
// gives up after cfg.Timeout without a new record.
func (c *consumer) run(ctx context.Context, cfg Config) error {
	start := time.Now()
	last := start
	var fetchErr error
	for c.count < c.target.Load() {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := c.cl.PollFetches(pctx)
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("bench: consume: client closed")
		}
		fetches.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("partition %d: %w", p, err)
			}
		})
		now := time.Now()
		n := c.count
		fetches.EachRecord(func(r *kgo.Record) {
			c.lat.Record(now.Sub(r.Timestamp))
			c.count++
			c.bytes += int64(len(r.Value) + len(r.Key))
		})
		if c.count > n {
			c.seen.Store(c.count)
			last = now
			c.elapsed = now.Sub(start)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: consume: %w (%d of %d records read)", err, c.count, c.target.Load())
		}
		if done := c.prodDone.Load(); done != 0 {
			idleSince := last
			if t := time.Unix(0, done); t.After(idleSince) {
				idleSince = t
			}
			if now.Sub(idleSince) > cfg.Timeout && c.count < c.target.Load() {
				return fmt.Errorf("bench: consume: no record for %v after producing ended (%d of %d records read; last fetch error: %v)",
					cfg.Timeout, c.count, c.target.Load(), fetchErr)
			}
		}
	}
	return nil
}

// startProgress prints a progress line every cfg.Progress until the
// returned function is called.
func startProgress(cfg Config, lw *syncWriter, p *producers, c *consumer) (stop func()) {
	if cfg.Progress < 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		start := time.Now()
		var prev int64
		prevAt := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				acked := p.acked.Load()
				rate := float64(acked-prev) * float64(cfg.RecordSize) / MB / now.Sub(prevAt).Seconds()
				prev, prevAt = acked, now
				line := fmt.Sprintf("bench: %6.1fs produced %d/%d (%.2f MB/s, %d failed)",
					now.Sub(start).Seconds(), acked, cfg.Records, rate, p.failed.Load())
				if c != nil {
					line += fmt.Sprintf(", consumed %d", c.seen.Load())
				}
				lw.printf("%s", line)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
