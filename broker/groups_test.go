package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/configs"
)

func TestJavaStringHash(t *testing.T) {
	// Values computed independently over UTF-16 code units, as Java does.
	for s, want := range map[string]int32{"": 0, "a": 97, "my-group": -1906497762, "console-consumer-12345": 158455506, "\U0001F600g": 54959972} {
		if got := javaStringHash(s); got != want {
			t.Errorf("hash(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestGroupConsumeCommitRestart: two kgo group members split a topic,
// commit, and after a broker restart the committed offsets come back.
func TestGroupConsumeCommitRestart(t *testing.T) {
	dir := t.TempDir()
	fast := func(c *configs.Config) { c.Groups.InitialRebalanceDelay = 0 }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 600
	func() {
		b := startBroker(t, dir, fast)
		adm := kadm.NewClient(newClient(t, b))
		if _, err := adm.CreateTopic(ctx, 4, 1, nil, "gt"); err != nil {
			t.Fatal(err)
		}
		prod := newClient(t, b, kgo.DefaultProduceTopic("gt"))
		for i := 0; i < n; i++ {
			prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i))}, nil)
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		var members []*kgo.Client
		for i := 0; i < 2; i++ {
			members = append(members, newClient(t, b, kgo.ConsumerGroup("g1"), kgo.ConsumeTopics("gt"),
				kgo.DisableAutoCommit(), kgo.SessionTimeout(6*time.Second)))
		}
		total := 0
		for total < n {
			for _, m := range members {
				pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				fs := m.PollFetches(pctx)
				pcancel()
				fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)]++; total++ })
				if err := m.CommitUncommittedOffsets(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of %d", total, n)
			}
		}
		if len(seen) != n || total != n {
			t.Fatalf("consumed %d records, %d distinct, want %d", total, len(seen), n)
		}
		lag, err := adm.Lag(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		if l := lag["g1"]; l.Error() != nil || l.Lag.Total() != 0 || len(l.Members) != 2 {
			t.Fatalf("lag: err=%v total=%d members=%d", l.Error(), l.Lag.Total(), len(l.Members))
		}
		for _, m := range members {
			m.Close()
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	b := startBroker(t, dir, fast)
	adm := kadm.NewClient(newClient(t, b))
	offs, err := adm.FetchOffsets(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "gt")
	if err != nil {
		t.Fatal(err)
	}
	sum := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := offs.Lookup("gt", o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("partition %d: committed %+v, end %d", o.Partition, c, o.Offset)
		}
		sum += c.At
	})
	if sum != n {
		t.Fatalf("committed offsets sum %d, want %d", sum, n)
	}
}
