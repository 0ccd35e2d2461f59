package compat

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Group test timeouts: modest, so rebalances are fast but a member that
// stops heartbeating is noticed well within the test deadlines.
const (
	grpSession   = 6 * time.Second
	grpRebalance = 10 * time.Second
	grpHeartbeat = 500 * time.Millisecond
)

type tp struct {
	p int32
	o int64
}

// produceKeys produces one record per key (value "v-"+key) with acks=all
// and returns key → (partition, offset) from the acks.
func produceKeys(t *testing.T, n *node, topic string, keys []string) map[string]tp {
	t.Helper()
	cl := newKgo(t, n,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)
	defer cl.Close()
	out := make(map[string]tp, len(keys))
	var mu sync.Mutex
	var firstErr error
	ctx := ctxTimeout(t, 60*time.Second)
	for _, k := range keys {
		cl.Produce(ctx, &kgo.Record{Key: []byte(k), Value: []byte("v-" + k)}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			out[string(r.Key)] = tp{r.Partition, r.Offset}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce flush: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	if len(out) != len(keys) {
		t.Fatalf("produce: %d acks for %d keys", len(out), len(keys))
	}
	return out
}

func seqKeys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return ks
}

// describeGroup returns the described group (failing on request errors).
func describeGroup(t *testing.T, adm *kadm.Client, group string) kadm.DescribedGroup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatalf("DescribeGroups %s: %v", group, err)
	}
	g, ok := dg[group]
	if !ok {
		t.Fatalf("DescribeGroups %s: group missing from response", group)
	}
	return g
}

// waitGroup polls DescribeGroups until cond returns "" (ok) or the timeout
// expires; the last non-empty reason is reported.
func waitGroup(t *testing.T, adm *kadm.Client, group string, timeout time.Duration, cond func(kadm.DescribedGroup) string) kadm.DescribedGroup {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		dg, err := adm.DescribeGroups(ctx, group)
		cancel()
		if err != nil {
			last = err.Error()
		} else if g, ok := dg[group]; !ok {
			last = "missing from DescribeGroups"
		} else if g.Err != nil {
			last = g.Err.Error()
		} else if last = cond(g); last == "" {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: condition not met within %v: %s", group, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberAssignment decodes a described member's consumer assignment for
// topic (sorted).
func memberAssignment(m kadm.DescribedGroupMember, topic string) []int32 {
	ca, ok := m.Assigned.AsConsumer()
	if !ok {
		return nil
	}
	var out []int32
	for _, tt := range ca.Topics {
		if tt.Topic == topic {
			out = append(out, tt.Partitions...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// stableWith returns a waitGroup condition: state Stable, exactly n
// members, and every partition of topic (0..parts-1) assigned to exactly
// one member, each member holding at least one.
func stableWith(topic string, n, parts int) func(kadm.DescribedGroup) string {
	return func(g kadm.DescribedGroup) string {
		if g.State != "Stable" {
			return "state " + g.State
		}
		if len(g.Members) != n {
			return fmt.Sprintf("%d members, want %d", len(g.Members), n)
		}
		seen := map[int32]int{}
		for _, m := range g.Members {
			a := memberAssignment(m, topic)
			if len(a) == 0 && parts >= n {
				return fmt.Sprintf("member %s (%s) has no partitions", m.MemberID, m.ClientID)
			}
			for _, p := range a {
				seen[p]++
			}
		}
		for p := range int32(parts) {
			if seen[p] != 1 {
				return fmt.Sprintf("partition %d assigned %d times", p, seen[p])
			}
		}
		if len(seen) != parts {
			return fmt.Sprintf("%d distinct partitions assigned, want %d", len(seen), parts)
		}
		return ""
	}
}

// groupErrLogger is a kgo logger that counts UNKNOWN_MEMBER_ID (and, for
// diagnostics, ILLEGAL_GENERATION) occurrences in the client's group logs.
type groupErrLogger struct {
	unknownMember atomic.Int64
	illegalGen    atomic.Int64
	mu            sync.Mutex
	samples       []string
}

func (l *groupErrLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l *groupErrLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	text := msg
	hit := func(target error, name1, name2 string) bool {
		if strings.Contains(msg, name1) || strings.Contains(msg, name2) {
			return true
		}
		for _, v := range kv {
			if err, ok := v.(error); ok && errors.Is(err, target) {
				return true
			}
			if s := fmt.Sprint(v); strings.Contains(s, name1) {
				return true
			}
		}
		return false
	}
	rec := false
	if hit(kerr.UnknownMemberID, "UNKNOWN_MEMBER_ID", "UnknownMemberID") {
		l.unknownMember.Add(1)
		rec = true
	}
	if hit(kerr.IllegalGeneration, "ILLEGAL_GENERATION", "IllegalGeneration") {
		l.illegalGen.Add(1)
		rec = true
	}
	if rec {
		text += fmt.Sprint(kv...)
		l.mu.Lock()
		if len(l.samples) < 10 {
			l.samples = append(l.samples, text)
		}
		l.mu.Unlock()
	}
}

// waitUntil polls cond (no side effects) until true or the timeout expires.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committedOffsets returns partition → committed offset of group on topic
// (absent partitions are omitted).
func committedOffsets(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("FetchOffsets %s: %v", group, err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			t.Fatalf("FetchOffsets %s %s/%d: %v", group, o.Topic, o.Partition, o.Err)
		}
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// failLogger keeps a client's kgo log at info level and prints it only
// when the test fails, so a rare failure in CI shows what the client saw.
type failLogger struct {
	name  string
	start time.Time
	mu    sync.Mutex
	lines []string
}

// newFailLogger returns a logger for the client called name that dumps
// its lines (the last 400) through t.Log if t has failed at cleanup.
func newFailLogger(t *testing.T, name string) *failLogger {
	l := &failLogger{name: name, start: time.Now()}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Logf("---- kgo log of %s (last %d lines) ----\n%s", l.name, len(l.lines), strings.Join(l.lines, "\n"))
	})
	return l
}

func (l *failLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l *failLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	line := fmt.Sprintf("%8.3fs %s %s %v", time.Since(l.start).Seconds(), level, msg, kv)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 400 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, line)
}
