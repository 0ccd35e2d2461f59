package compat

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSoak (make soak; skipped unless TUSK_SOAK=1): a randomized fault
// soak on a 3-node cluster with lease 1 s (× raceScale). An RF=3 topic
// that rolls every 16 KiB (min.insync.replicas 2) takes writes from two
// idempotent acks=all producers (kgo defaults, and a 250 ms metadata
// refresh) while a consumer group reads and commits. A seeded loop picks
// faults: kill -9 of a segment leader, of a follower or of the Raft
// controller (each restarted after a random delay), a leader frozen with
// SIGSTOP past its lease, and quiet spells; before each fault the cluster
// must be healthy again (every node in every node's Metadata, every
// partition led with three replicas). At the end every acknowledged record
// must be read back exactly once, at its offset, byte for byte; a record
// whose produce failed may appear at most once; anything else fails. The
// group must have seen every acknowledged record (at least once:
// duplicates across rebalances are counted, not failed).
// TUSK_SOAK_DURATION (default 10m) and TUSK_SOAK_SEED replay a run; the
// seed is printed first and last.
func TestSoak(t *testing.T) {
	if os.Getenv("TUSK_SOAK") != "1" {
		t.Skip("soak: run with make soak (TUSK_SOAK=1)")
	}
	dur := 10 * time.Minute
	if v := os.Getenv("TUSK_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TUSK_SOAK_DURATION: %v", err)
		}
		dur = d
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("TUSK_SOAK_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("TUSK_SOAK_SEED: %v", err)
		}
		seed = s
	}
	t.Logf("soak seed %d, duration %v (replay: make soak SOAK_SEED=%d SOAK_DURATION=%v)", seed, dur, seed, dur)
	t.Cleanup(func() { t.Logf("soak seed %d (failed: %v)", seed, t.Failed()) })
	rng := rand.New(rand.NewSource(seed))

	setFaultTimings(t)
	c := startCluster(t, 3)
	const topic, group = "soak", "soak-group"
	parts := []int32{0, 1, 2, 3, 4, 5}
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	resp, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), int32(len(parts)), 3,
		map[string]*string{"segment.bytes": strp("16384"), "min.insync.replicas": strp("2")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: len(parts)}, 10*time.Second)
	}
	seeds := c.kafkaAddrs(c.ids()...)
	logs := []*ringLogger{{name: "soakA"}, {name: "soakB"}}
	producers := []*liveProducer{
		startTaggedProducer(t, seeds, topic, parts, "soakA", kgo.WithLogger(logs[0])),
		startTaggedProducer(t, seeds, topic, parts, "soakB", kgo.MetadataMinAge(250*time.Millisecond), kgo.WithLogger(logs[1])),
	}

	// The consumer group: every record it sees, by partition and offset.
	var gmu sync.Mutex
	seen := map[int32]map[int64][2]string{}
	groupDups := 0
	gcl := newClusterClient(t, seeds, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.AutoCommitInterval(500*time.Millisecond))
	gctx, gcancel := context.WithCancel(context.Background())
	gdone := make(chan struct{})
	go func() {
		defer close(gdone)
		for gctx.Err() == nil {
			fs := gcl.PollFetches(gctx)
			gmu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if seen[r.Partition] == nil {
					seen[r.Partition] = map[int64][2]string{}
				}
				if _, dup := seen[r.Partition][r.Offset]; dup {
					groupDups++
				}
				seen[r.Partition][r.Offset] = [2]string{string(r.Key), string(r.Value)}
			})
			gmu.Unlock()
		}
	}()
	t.Cleanup(func() { gcancel(); <-gdone; gcl.Close() })

	// Cluster views, asked of any running node.
	down := map[int32]bool{}
	var downMu sync.Mutex
	live := func() []int32 {
		downMu.Lock()
		defer downMu.Unlock()
		var out []int32
		for _, id := range c.ids() {
			if !down[id] {
				out = append(out, id)
			}
		}
		return out
	}
	active := func() map[int32]dumpSegment {
		for _, via := range live() {
			out := map[int32]dumpSegment{}
			for _, p := range parts {
				segs := c.segmentsVia(t, via, topic, int(p))
				if len(segs) == 0 {
					break
				}
				out[p] = segs[len(segs)-1]
			}
			if len(out) == len(parts) {
				return out
			}
		}
		return nil
	}
	healthy := func(what string) {
		t.Helper()
		waitFor(t, 90*time.Second, fmt.Sprintf("healthy after %s (seed %d)", what, seed), func() (bool, string) {
			ids := c.ids()
			for _, via := range ids {
				r := c.raw(t, via)
				md, err := r.metadata(nil)
				r.close()
				if err != nil {
					return false, fmt.Sprintf("Metadata from node %d: %v", via, err)
				}
				if got := md.brokerIDs(); !slices.Equal(got, ids) {
					return false, fmt.Sprintf("node %d lists brokers %v", via, got)
				}
			}
			a := active()
			if a == nil {
				return false, "no metadata"
			}
			for _, p := range parts {
				if s := a[p]; s.State != "active" || len(s.Replicas) != 3 {
					return false, fmt.Sprintf("partition %d: %s segment led by %d, replicas %v", p, s.State, s.Leader, s.Replicas)
				}
			}
			return true, ""
		})
	}
	restartAfter := func(id int32, d time.Duration) {
		time.Sleep(d)                 // the fault's length, drawn from the seed
		c.restartNodeSamePorts(t, id) // clients keep the addresses they know
		downMu.Lock()
		delete(down, id)
		downMu.Unlock()
	}
	kill := func(id int32) {
		downMu.Lock()
		down[id] = true
		downMu.Unlock()
		c.node(id).Kill9(t)
	}
	pick := func() (int32, dumpSegment) {
		p := parts[rng.Intn(len(parts))]
		return p, active()[p]
	}
	faults := map[string]int{}
	actions := []struct {
		name string
		run  func() string
	}{
		{"kill-leader", func() string {
			p, s := pick()
			kill(s.Leader)
			restartAfter(s.Leader, time.Duration(500+rng.Intn(3000))*time.Millisecond)
			return fmt.Sprintf("node %d (leader of %d)", s.Leader, p)
		}},
		{"kill-follower", func() string {
			p, s := pick()
			f := s.Replicas[1+rng.Intn(len(s.Replicas)-1)]
			kill(f)
			restartAfter(f, time.Duration(500+rng.Intn(3000))*time.Millisecond)
			return fmt.Sprintf("node %d (follower of %d)", f, p)
		}},
		{"kill-controller", func() string {
			id := c.waitLeader(t, live(), live(), 30*time.Second)
			kill(id)
			restartAfter(id, time.Duration(500+rng.Intn(3000))*time.Millisecond)
			return fmt.Sprintf("node %d", id)
		}},
		{"freeze-leader", func() string {
			p, s := pick()
			pid := c.node(s.Leader).cmd.Process.Pid
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("SIGSTOP node %d: %v", s.Leader, err)
			}
			time.Sleep(scaled(t, time.Duration(1500+rng.Intn(2000))*time.Millisecond)) // past the lease
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatalf("SIGCONT node %d: %v", s.Leader, err)
			}
			return fmt.Sprintf("node %d (leader of %d)", s.Leader, p)
		}},
		{"quiet", func() string {
			d := time.Duration(1000+rng.Intn(3000)) * time.Millisecond
			time.Sleep(d) // a quiet spell of random length
			return d.String()
		}},
	}
	began := time.Now()
	healthy("start")
	for time.Since(began) < dur {
		a := actions[rng.Intn(len(actions))]
		what := a.run()
		faults[a.name]++
		healthy(a.name + " " + what)
		t.Logf("%v: %s %s; cluster healthy again", time.Since(began).Round(time.Second), a.name, what)
	}
	for i, pr := range producers {
		halted := make(chan struct{})
		go func() { pr.halt(); close(halted) }()
		select {
		case <-halted:
		case <-time.After(time.Minute):
			logs[i].dump(t)
			t.Fatalf("seed %d: producer %s did not finish its last round within a minute of the end (records still unacknowledged and not failed)", seed, pr.tag)
		}
	}

	// Collect what was acknowledged and what failed.
	acked := map[int32][]prodRec{}
	failed := map[string]bool{}
	failedN := 0
	var longest time.Duration
	for _, pr := range producers {
		pr.mu.Lock()
		for p, rs := range pr.acked {
			acked[p] = append(acked[p], rs...)
		}
		for k := range pr.failed {
			failed[k] = true
		}
		failedN += len(pr.errs)
		longest = max(longest, pr.longest)
		pr.mu.Unlock()
	}
	// Read every partition from 0 to its end and check it.
	ends, err := adm.ListEndOffsets(ctxTimeout(t, 30*time.Second), topic)
	if err != nil {
		t.Fatalf("list end offsets (seed %d): %v", seed, err)
	}
	want, start := map[int32]int{}, map[int32]int64{}
	for _, p := range parts {
		o, ok := ends.Lookup(topic, p)
		if !ok || o.Err != nil {
			t.Fatalf("end offset of %s/%d (seed %d): %v", topic, p, seed, o.Err)
		}
		want[p], start[p] = int(o.Offset), 0
	}
	got := readPartitions(t, c.kafkaAddrs(c.ids()...), topic, start, want, 2*time.Minute)
	total, strays := 0, 0
	var counts []string
	for _, p := range parts {
		byOffset := map[int64]*kgo.Record{}
		keys := map[string]int{}
		for _, r := range got[p] {
			byOffset[r.Offset] = r
			keys[string(r.Key)]++
		}
		for _, w := range acked[p] {
			r := byOffset[w.Offset]
			if r == nil || string(r.Key) != w.Key || string(r.Value) != w.Value {
				t.Fatalf("seed %d: %s/%d offset %d: acknowledged %s=%q, read %v", seed, topic, p, w.Offset, w.Key, w.Value, r)
			}
			if keys[w.Key] != 1 {
				t.Fatalf("seed %d: %s/%d: acknowledged key %s read %d times", seed, topic, p, w.Key, keys[w.Key])
			}
		}
		ackedKeys := map[string]bool{}
		for _, w := range acked[p] {
			ackedKeys[w.Key] = true
		}
		for k, n := range keys {
			switch {
			case ackedKeys[k]:
			case failed[k] && n == 1:
				strays++
			default:
				t.Fatalf("seed %d: %s/%d: key %s read %d times, neither acknowledged nor a failed produce", seed, topic, p, k, n)
			}
		}
		total += len(acked[p])
		counts = append(counts, fmt.Sprintf("p%d %d", p, len(acked[p])))
	}
	// The group saw every acknowledged record.
	waitFor(t, 2*time.Minute, fmt.Sprintf("the consumer group saw every acknowledged record (seed %d)", seed), func() (bool, string) {
		gmu.Lock()
		defer gmu.Unlock()
		missing := 0
		for _, p := range parts {
			for _, w := range acked[p] {
				if kv, ok := seen[p][w.Offset]; !ok || kv != [2]string{w.Key, w.Value} {
					missing++
				}
			}
		}
		return missing == 0, fmt.Sprintf("%d acknowledged records not seen by the group", missing)
	})
	rolls := 0
	for _, p := range parts {
		segs := c.segmentsVia(t, c.ids()[0], topic, int(p))
		rolls += len(segs) - 1
	}
	var kinds []string
	for k, n := range faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	gmu.Lock()
	dups := groupDups
	gmu.Unlock()
	t.Logf("measure: soak seed %d over %v: %d acknowledged records read back exactly once (%s); %d failed produce attempts, %d of them visible once; faults: %s; %d rolls; longest produce round %v; consumer group saw every record, %d re-deliveries",
		seed, time.Since(began).Round(time.Second), total, strings.Join(counts, ", "), failedN, strays, strings.Join(kinds, ", "), rolls, longest.Round(time.Millisecond), dups)
}

// ringLogger keeps a kgo client's last log lines (info and up) so a soak
// failure can show what the client was doing.
type ringLogger struct {
	name  string
	mu    sync.Mutex
	lines []string
}

func (l *ringLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l *ringLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %s %v", time.Now().Format("15:04:05.000"), level, msg, kv))
	if len(l.lines) > 400 {
		l.lines = l.lines[len(l.lines)-300:]
	}
}

func (l *ringLogger) dump(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("---- last log lines of kgo client %s ----\n%s", l.name, strings.Join(l.lines, "\n"))
}
