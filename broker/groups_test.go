package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
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
		// The second member may still be joining (a rebalance after the
		// first consumed everything); poll until both are in the group.
		for {
			lag, err := adm.Lag(ctx, "g1")
			if err != nil {
				t.Fatal(err)
			}
			l := lag["g1"]
			if l.Error() == nil && l.Lag.Total() == 0 && len(l.Members) == 2 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("lag: err=%v total=%d members=%d", l.Error(), l.Lag.Total(), len(l.Members))
			}
			for _, m := range members { // keep the members heartbeating and joining
				pctx, pcancel := context.WithTimeout(ctx, 50*time.Millisecond)
				m.PollFetches(pctx)
				pcancel()
			}
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

// TestOffsetsTopicCompacted: __consumer_offsets is a compacted topic;
// thousands of commits to the same offsets leave it small once the
// cleaner ran, and the last commit of every group survives a restart.
func TestOffsetsTopicCompacted(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *configs.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Groups.OffsetsSegmentBytes = 4096
		c.Groups.InitialRebalanceDelay = 0
		c.Cleaner.Backoff = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const commits = 2000
	func() {
		b := startBroker(t, dir, cfg)
		adm := kadm.NewClient(newClient(t, b))
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, "ck"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= commits; i++ {
			var os kadm.Offsets
			for p := int32(0); p < 3; p++ {
				os.Add(kadm.Offset{Topic: "ck", Partition: p, At: int64(i*10) + int64(p), LeaderEpoch: -1})
			}
			// A second group whose offsets never change must survive
			// every checkpoint too.
			if i == 1 {
				if _, err := adm.CommitOffsets(ctx, "steady", os); err != nil {
					t.Fatal(err)
				}
			}
			r, err := adm.CommitOffsets(ctx, "busy", os)
			if err != nil || r.Error() != nil {
				t.Fatalf("commit %d: %v %v", i, err, r.Error())
			}
		}
		l, _ := b.partitionLog(offsetsTopic, 0)
		if v, _, _, _ := b.store.FSM().TopicConfigValue(offsetsTopic, "cleanup.policy"); v != "compact" {
			t.Fatalf("__consumer_offsets cleanup.policy %q", v)
		}
		// Every commit appended a batch of about 200 bytes: 400 KB
		// uncleaned. The cleaner keeps the last of each key.
		deadline := time.Now().Add(30 * time.Second)
		for l.Size() > 64<<10 {
			if time.Now().After(deadline) {
				t.Fatalf("__consumer_offsets-0 is %d bytes after %d commits (end %d)", l.Size(), commits, l.LogEndOffset())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The cleaner's metrics saw it: a swapped-in generation, bytes
		// read and written, and the partition's dirty ratio.
		got := map[string]float64{}
		mfs, err := b.m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "topic" && lp.GetValue() != offsetsTopic {
						v = -1
					}
				}
				if v >= 0 {
					got[mf.GetName()] = v
				}
			}
		}
		if got["tusk_cleaner_cleanings_total"] < 1 || got["tusk_cleaner_read_bytes_total"] <= got["tusk_cleaner_written_bytes_total"] || got["tusk_cleaner_errors_total"] != 0 {
			t.Errorf("cleaner metrics %v", got)
		}
		if _, ok := got["tusk_cleaner_cleanable_ratio"]; !ok {
			t.Errorf("no tusk_cleaner_cleanable_ratio for %s in %v", offsetsTopic, got)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	b := startBroker(t, dir, cfg)
	adm := kadm.NewClient(newClient(t, b))
	for group, round := range map[string]int{"busy": commits, "steady": 1} {
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 3; p++ {
			o, ok := offs.Lookup("ck", p)
			if want := int64(round*10) + int64(p); !ok || o.At != want {
				t.Errorf("%s partition %d: committed %+v, want %d", group, p, o, want)
			}
		}
	}
}

// TestOffsetsTopicUpgradedToCompacted: a __consumer_offsets created by a
// version that bounded it with checkpoints of its own (no cleanup.policy,
// retention off) becomes a compacted topic at the first FindCoordinator;
// offsets committed before and after stay, the cleaner bounds the log,
// and a restart loads the same offsets.
func TestOffsetsTopicUpgradedToCompacted(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *configs.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Groups.OffsetsSegmentBytes = 4096
		c.Groups.InitialRebalanceDelay = 0
		c.Cleaner.Backoff = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	commit := func(adm *kadm.Client, group string, at int64) {
		t.Helper()
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: "up", Partition: 0, At: at, LeaderEpoch: -1})
		r, err := adm.CommitOffsets(ctx, group, os)
		if err != nil || r.Error() != nil {
			t.Fatalf("commit %s %d: %v %v", group, at, err, r.Error())
		}
	}
	func() {
		b := startBroker(t, dir, cfg)
		id, err := newTopicID()
		if err != nil {
			t.Fatal(err)
		}
		old := metadata.CreateTopic{Name: offsetsTopic, ID: id, Partitions: 1, Internal: true, ReplicationFactor: 1,
			Configs: map[string]string{"retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": "4096"}}
		if err := b.store.Apply(ctx, old); err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(newClient(t, b))
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, "up"); err != nil {
			t.Fatal(err)
		}
		commit(adm, "before", 7)
		if v, _, _, _ := b.store.FSM().TopicConfigValue(offsetsTopic, "cleanup.policy"); v != "compact" {
			t.Fatalf("cleanup.policy %q after the first FindCoordinator", v)
		}
		for i := int64(1); i <= 1000; i++ {
			commit(adm, "busy", i)
		}
		l, _ := b.partitionLog(offsetsTopic, 0)
		deadline := time.Now().Add(30 * time.Second)
		for l.Size() > 32<<10 {
			if time.Now().After(deadline) {
				t.Fatalf("__consumer_offsets-0 is %d bytes after 1000 commits", l.Size())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	b := startBroker(t, dir, cfg)
	adm := kadm.NewClient(newClient(t, b))
	for group, want := range map[string]int64{"before": 7, "busy": 1000} {
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup("up", 0); !ok || o.At != want {
			t.Errorf("%s: committed %+v, want %d", group, o, want)
		}
	}
}
