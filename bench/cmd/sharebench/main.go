// Command sharebench measures share-group consume throughput (KIP-932;
// docs/groups-next.md part B): C kgo share consumers (kgo.ShareGroup) of
// one group read one partition together, accepting every record.
//
//	sharebench -brokers ADDR [-topic T] [-records N] [-size B] [-consumers 1,4,16]
//
// It produces N records of B bytes to a new one-partition topic once,
// then for each consumer count starts a new group at offset 0
// (AlterShareGroupOffsets), starts the consumers, and times the first
// poll to the moment every offset was delivered and every
// acknowledgement flushed. Each count prints one line of key=value pairs:
// records/s, MB/s (2^20 bytes of values), deliveries beyond one per
// record (redeliveries), and each consumer's share of the records.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "seed brokers, comma separated")
	topic := flag.String("topic", "sharebench", "topic to create (one partition)")
	records := flag.Int("records", 100000, "records")
	size := flag.Int("size", 1024, "value bytes per record")
	counts := flag.String("consumers", "1,4,16", "consumer counts to measure, comma separated")
	flag.Parse()
	if err := run(strings.Split(*brokers, ","), *topic, *records, *size, *counts); err != nil {
		fmt.Fprintln(os.Stderr, "sharebench:", err)
		os.Exit(1)
	}
}

func run(seeds []string, topic string, n, size int, counts string) error {
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	value := make([]byte, size)
	var perr error
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("produce: %w", perr)
	}
	for _, c := range strings.Split(counts, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || k < 1 {
			return fmt.Errorf("bad consumer count %q", c)
		}
		if err := measure(ctx, seeds, adm, topic, n, size, k); err != nil {
			return err
		}
	}
	return nil
}

func measure(ctx context.Context, seeds []string, adm *kadm.Client, topic string, n, size, k int) error {
	group := fmt.Sprintf("%s-%d-%d", topic, k, time.Now().UnixNano())
	var at kadm.Offsets
	at.AddOffset(topic, 0, 0, -1)
	if r, err := adm.AlterShareGroupOffsets(ctx, group, at); err != nil || !r.Ok() {
		return fmt.Errorf("alter %s: %v %v", group, err, r.Error())
	}
	var (
		mu        sync.Mutex
		seen      = make(map[int64]bool, n)
		delivered int
		per       = make([]int, k)
		done      = make(chan struct{})
	)
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	clients := make([]*kgo.Client, k)
	for i := range clients {
		c, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
			kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		clients[i] = c
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				fs := c.PollFetches(runCtx)
				fs.EachRecord(func(r *kgo.Record) {
					r.Ack(kgo.AckAccept)
					mu.Lock()
					delivered++
					per[i]++
					if !seen[r.Offset] {
						seen[r.Offset] = true
						if len(seen) == n {
							close(done)
						}
					}
					mu.Unlock()
				})
			}
		}()
	}
	var err error
	select {
	case <-done:
	case <-runCtx.Done():
		err = errors.New("timed out")
	}
	for _, c := range clients {
		if ferr := c.FlushAcks(ctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	for _, c := range clients {
		c.Close()
	}
	if err != nil {
		return fmt.Errorf("%d consumers: %w", k, err)
	}
	mu.Lock()
	defer mu.Unlock()
	secs := elapsed.Seconds()
	fmt.Printf("consumers=%d records=%d secs=%.2f records_per_s=%.0f MBps=%.1f redelivered=%d per_consumer=%v\n",
		k, n, secs, float64(n)/secs, float64(n*size)/secs/(1<<20), delivered-n, per)
	return nil
}
