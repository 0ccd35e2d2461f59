package compat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
)

// exactlyOnce checks that seen (key → positions it was delivered at) is
// exactly acks, each key once at its acknowledged position.
func exactlyOnce(t *testing.T, who string, acks map[string]tp, seen map[string][]tp) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(who+": "+format, args...)
		}
	}
	for k, a := range acks {
		got := seen[k]
		switch {
		case len(got) == 0:
			report("key %s (acked at %d/%d) never delivered", k, a.p, a.o)
		case len(got) > 1:
			report("key %s delivered %d times: %v", k, len(got), got)
		case got[0] != a:
			report("key %s delivered at %d/%d, acknowledged at %d/%d", k, got[0].p, got[0].o, a.p, a.o)
		}
	}
	for k := range seen {
		if _, ok := acks[k]; !ok {
			report("delivered key %q that was never produced", k)
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d problems in all", who, bad)
	}
}

func assertCommittedAtEnd(t *testing.T, n *node, group, topic string, parts int) {
	t.Helper()
	adm, _ := newAdm(t, n)
	ends := endOffsets(t, adm, topic)
	com := committedOffsets(t, adm, group, topic)
	for p := range int32(parts) {
		if com[p] != ends[p] {
			t.Errorf("group %s: partition %d committed %d, end offset %d", group, p, com[p], ends[p])
		}
	}
}

// TestGroupKcat: two librdkafka balanced consumers (kcat -G) split a
// 4-partition topic and together print every record exactly once.
func TestGroupKcat(t *testing.T) {
	kcat := requireTool(t, "kcat")
	card(t, "kcat", "-G balanced consumers split partitions")
	const (
		topic = "grp-kcat"
		group = "grp-kcat"
		parts = 4
		count = 2000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)

	type line struct {
		who int
		pos tp
		key string
	}
	var mu sync.Mutex
	var lines []line
	var parseErrs []string
	var cmds []*exec.Cmd
	var readers sync.WaitGroup
	for i := range 2 {
		cmd := exec.Command(kcat, "-b", n.Kafka, "-X", "api.version.request=true",
			"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
			"-X", "client.id=kcat-"+strconv.Itoa(i),
			"-u", "-G", group, topic, "-o", "beginning", "-f", `%p %o %k\n`)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start kcat: %v", err)
		}
		cmds = append(cmds, cmd)
		exited := make(chan struct{})
		t.Cleanup(func() {
			select {
			case <-exited:
			default:
				_ = cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("kcat %d stderr:\n%s", i, stderr.String())
			}
		})
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer close(exited)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				mu.Lock()
				if len(f) != 3 {
					parseErrs = append(parseErrs, fmt.Sprintf("kcat %d: unexpected line %q", i, sc.Text()))
				} else {
					p, e1 := strconv.Atoi(f[0])
					o, e2 := strconv.ParseInt(f[1], 10, 64)
					if e1 != nil || e2 != nil {
						parseErrs = append(parseErrs, fmt.Sprintf("kcat %d: unexpected line %q", i, sc.Text()))
					} else {
						lines = append(lines, line{i, tp{int32(p), o}, f[2]})
					}
				}
				mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, stdout)
			_ = cmd.Wait()
		}()
	}
	// Both members hold partitions before anything is produced, so each
	// prints exactly its own partitions.
	g := waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 2, parts))
	var assigned [][]int32
	for _, m := range g.Members {
		assigned = append(assigned, memberAssignment(m, topic))
	}
	acks := produceKeys(t, n, topic, seqKeys("kc", count))
	waitUntil(t, 30*time.Second, "kcat consumers to print every record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lines) >= count
	})
	for i, cmd := range cmds {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM kcat %d: %v", i, err)
		}
	}
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("kcat did not exit within 15s of SIGTERM")
	}

	mu.Lock()
	defer mu.Unlock()
	for _, e := range parseErrs {
		t.Error(e)
	}
	seen := map[string][]tp{}
	byWho := [2]map[int32]bool{{}, {}}
	for _, l := range lines {
		seen[l.key] = append(seen[l.key], l.pos)
		byWho[l.who][l.pos.p] = true
	}
	exactlyOnce(t, "kcat -G", acks, seen)
	for i := range 2 {
		if len(byWho[i]) == 0 {
			t.Errorf("kcat %d printed no partitions", i)
		}
	}
	for p := range byWho[0] {
		if byWho[1][p] {
			t.Errorf("partition %d printed by both kcat consumers", p)
		}
	}
	if len(byWho[0])+len(byWho[1]) != parts {
		t.Errorf("kcat consumers printed partitions %v and %v, want a split of all %d", byWho[0], byWho[1], parts)
	}
	t.Logf("DescribeGroups assignment %v; printed partitions %v / %v", assigned, byWho[0], byWho[1])
}

type saramaHandler struct {
	mu   sync.Mutex
	seen map[string][]tp
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.seen[string(m.Key)] = append(h.seen[string(m.Key)], tp{m.Partition, m.Offset})
			h.mu.Unlock()
			sess.MarkMessage(m, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (h *saramaHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// TestGroupSarama: a sarama ConsumerGroup reads 10,000 records exactly
// once (MarkMessage + autocommit) and leaves its offsets at the end.
func TestGroupSarama(t *testing.T) {
	card(t, "sarama", "ConsumerGroup 10k exactly once")
	const (
		topic = "grp-sarama"
		group = "grp-sarama"
		parts = 3
		count = 10_000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)
	acks := produceKeys(t, n, topic, seqKeys("sk", count))

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.ClientID = "tusk-compat-sarama-group"
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 15 * time.Second
	cfg.Net.WriteTimeout = 15 * time.Second
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = grpSession
	cfg.Consumer.Group.Heartbeat.Interval = grpHeartbeat
	cfg.Consumer.Group.Rebalance.Timeout = grpRebalance
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}

	cg, err := sarama.NewConsumerGroup([]string{n.Kafka}, group, cfg)
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = cg.Close()
		}
	})
	h := &saramaHandler{seen: map[string][]tp{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errsMu sync.Mutex
	var errs []string
	consumeDone := make(chan struct{})
	go func() {
		defer close(consumeDone)
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					return
				}
				errsMu.Lock()
				errs = append(errs, "Consume: "+err.Error())
				errsMu.Unlock()
				return
			}
		}
	}()
	go func() {
		for err := range cg.Errors() {
			errsMu.Lock()
			errs = append(errs, err.Error())
			errsMu.Unlock()
		}
	}()
	waitUntil(t, 45*time.Second, "sarama group to consume 10k records", func() bool {
		select {
		case <-consumeDone:
			return true
		default:
		}
		return h.count() >= count
	})
	// The group is Stable with exactly this member holding every partition.
	g := waitGroup(t, adm, group, 10*time.Second, stableWith(topic, 1, parts))
	if g.Members[0].ClientID != cfg.ClientID {
		t.Errorf("DescribeGroups: member client id %q, want %q", g.Members[0].ClientID, cfg.ClientID)
	}
	cancel()
	select {
	case <-consumeDone:
	case <-time.After(20 * time.Second):
		t.Fatal("sarama Consume did not return within 20s of cancel")
	}
	// Close commits the marked offsets and leaves.
	cerr := make(chan error, 1)
	go func() { cerr <- cg.Close() }()
	select {
	case err := <-cerr:
		closed = true
		if err != nil {
			t.Errorf("ConsumerGroup.Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sarama ConsumerGroup.Close did not return within 20s")
	}
	errsMu.Lock()
	for _, e := range errs {
		t.Errorf("sarama group error: %s", e)
	}
	errsMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	exactlyOnce(t, "sarama", acks, h.seen)
	assertCommittedAtEnd(t, n, group, topic, parts)
}

// TestGroupKafkaGo: a kafka-go Reader with GroupID (old API versions)
// reads 10,000 records exactly once with synchronous CommitMessages.
func TestGroupKafkaGo(t *testing.T) {
	card(t, "segmentio/kafka-go", "Reader GroupID 10k exactly once")
	const (
		topic = "grp-kafkago"
		group = "grp-kafkago"
		parts = 3
		count = 10_000
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)
	acks := produceKeys(t, n, topic, seqKeys("gk", count))

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{n.Kafka},
		GroupID:           group,
		Topic:             topic,
		MinBytes:          1,
		MaxBytes:          10 << 20,
		MaxWait:           200 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    grpSession,
		RebalanceTimeout:  grpRebalance,
		HeartbeatInterval: grpHeartbeat,
		CommitInterval:    0, // synchronous commits
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    200 * time.Millisecond,
		JoinGroupBackoff:  200 * time.Millisecond,
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = r.Close()
		}
	})
	seen := map[string][]tp{}
	deadline := time.Now().Add(45 * time.Second)
	for len(seen) < count {
		if time.Now().After(deadline) {
			t.Fatalf("kafka-go reader: %d/%d records after 45s", len(seen), count)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		m, err := r.FetchMessage(ctx)
		if err != nil {
			cancel()
			t.Fatalf("FetchMessage after %d records: %v", len(seen), err)
		}
		seen[string(m.Key)] = append(seen[string(m.Key)], tp{int32(m.Partition), m.Offset})
		if err := r.CommitMessages(ctx, m); err != nil {
			cancel()
			t.Fatalf("CommitMessages %d/%d: %v", m.Partition, m.Offset, err)
		}
		cancel()
	}
	// Nothing more arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	if m, err := r.FetchMessage(ctx); err == nil {
		t.Errorf("unexpected extra message %d/%d key %q", m.Partition, m.Offset, m.Key)
	}
	cancel()
	g := describeGroup(t, adm, group)
	if g.State != "Stable" || len(g.Members) != 1 {
		t.Errorf("DescribeGroups: state %s, %d members; want Stable with 1", g.State, len(g.Members))
	}
	cerr := make(chan error, 1)
	go func() { cerr <- r.Close() }()
	select {
	case err := <-cerr:
		closed = true
		if err != nil {
			t.Errorf("Reader.Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("kafka-go Reader.Close did not return within 20s")
	}
	exactlyOnce(t, "kafka-go", acks, seen)
	assertCommittedAtEnd(t, n, group, topic, parts)
}
