package compat

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterShareKgoAckTypes: four kgo share consumers (kgo.ShareGroup)
// of one group read one partition of RF 3 with 256 KiB segments on 3
// nodes while 1,500 records (1 KiB, uncompressed) are produced, so the
// segment leadership moves several times under them; the delivery count
// limit is 2. Each consumer answers by offset: x3 is released at its
// first delivery and accepted at its second, x5 is always released, x7
// is rejected, the rest accepted. Exactly: every accepted record is
// delivered once with count 1; x3 twice, with counts 1 then 2; x5 twice,
// counts 1 and 2, and never a third time (archived at the limit); x7
// once and never again. No acknowledgement fails, and the share-partition
// start offset reaches the end (every record acknowledged or archived).
//
// It fails in about half its runs today (an open defect of issue 17,
// docs/groups-next.md "Open defects"): an acknowledgement of a batch
// acquired around a roll is answered INVALID_RECORD_STATE and its records
// come again with count 2 when their locks expire (or, once, a released
// record was not delivered again). It runs with TUSK_KNOWN_DEFECTS=1.
func TestClusterShareKgoAckTypes(t *testing.T) {
	if os.Getenv("TUSK_KNOWN_DEFECTS") == "" {
		t.Skip("known defect (issue 17): acknowledgements across a roll can fail with INVALID_RECORD_STATE; set TUSK_KNOWN_DEFECTS=1 to run")
	}
	skipClusterInKfakeMode(t)
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("share-auto-offset-reset", "earliest"), withFlag("share-delivery-count-limit", "2")}
	})
	const topic, group, total = "share-acks", "sg-acks", 1500
	seeds := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, seeds))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{"segment.bytes": strp("262144")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}

	var (
		mu         sync.Mutex
		deliveries = map[int64][]int32{} // offset -> delivery counts in order
		problems   []string
		ackErrs    []string
	)
	pollCtx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		m := newClusterClient(t, seeds, kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.ShareMaxRecords(25),
			kgo.FetchMaxWait(200*time.Millisecond),
			kgo.ShareAckCallback(func(_ *kgo.Client, rs kgo.ShareAckResults) {
				for _, r := range rs {
					if r.Err != nil {
						mu.Lock()
						ackErrs = append(ackErrs, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), r.Err))
						mu.Unlock()
					}
				}
			}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pollCtx.Err() == nil {
				fs := m.PollFetches(pollCtx)
				n := 0
				fs.EachRecord(func(r *kgo.Record) {
					n++
					mu.Lock()
					if want := fmt.Sprintf("v%d", r.Offset); strings.TrimRight(string(r.Value), ".") != want {
						problems = append(problems, fmt.Sprintf("offset %d value %.10q, want %s", r.Offset, r.Value, want))
					}
					deliveries[r.Offset] = append(deliveries[r.Offset], r.DeliveryCount())
					mu.Unlock()
					switch r.Offset % 10 {
					case 3:
						if r.DeliveryCount() == 1 {
							r.Ack(kgo.AckRelease)
						} else {
							r.Ack(kgo.AckAccept)
						}
					case 5:
						r.Ack(kgo.AckRelease)
					case 7:
						r.Ack(kgo.AckReject)
					default:
						r.Ack(kgo.AckAccept)
					}
				})
				if n == 0 {
					continue
				}
				fctx, cancel := context.WithTimeout(pollCtx, 20*time.Second)
				if err := m.FlushAcks(fctx); err != nil && pollCtx.Err() == nil {
					mu.Lock()
					ackErrs = append(ackErrs, fmt.Sprintf("%s flush: %v", time.Now().Format("15:04:05.000"), err))
					mu.Unlock()
				}
				cancel()
			}
		}()
	}

	prod := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for next := int64(0); next < total; next += 100 {
		produceShareValues(t, prod, topic, next, 100)
	}
	segs := c.segmentsVia(t, c.ids()[0], topic, 0)
	leaders := map[int32]bool{}
	for _, s := range segs {
		leaders[s.Leader] = true
	}
	if len(segs) < 4 || len(leaders) < 2 {
		t.Fatalf("%d segments led by %d nodes: the test needs rolls that move the leader", len(segs), len(leaders))
	}
	waitFor(t, 60*time.Second, "the start offset at the end", func() (bool, string) {
		got, err := shareOffsets(t, adm, group)
		return err == nil && got[topic+"/0"] == total, fmt.Sprint(got, err)
	})
	// The start offset at the end means every record is acknowledged or
	// archived, states that are final: nothing can be delivered again.
	stopPolling()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if len(ackErrs) > 0 {
		sort.Strings(ackErrs)
		t.Errorf("%d acknowledgements failed: %v", len(ackErrs), ackErrs[:min(len(ackErrs), 10)])
	}
	bad := 0
	for o := int64(0); o < total && bad < 20; o++ {
		var want []int32
		switch o % 10 {
		case 3, 5:
			want = []int32{1, 2}
		default:
			want = []int32{1}
		}
		if got := deliveries[o]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("offset %d delivered with counts %v, want %v", o, got, want)
			bad++
		}
	}
	firstLate := []int64{}
	for o := int64(0); o < total; o++ {
		if ds := deliveries[o]; len(ds) > 0 && ds[0] != 1 {
			firstLate = append(firstLate, o)
		}
	}
	t.Logf("%d records over %d segments led by %d nodes; %d first seen with a count above 1: %v", total, len(segs), len(leaders), len(firstLate), firstLate[:min(len(firstLate), 40)])
}
