package compat

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestClusterSnapshot creates 2,000 topics (CreateTopics batches of 100,
// each batch through another node) and deletes 1,900 of them, forces a
// Raft snapshot on every node, and restarts all three on the same ports.
// Asserted: every node's canonical metadata dump (`tusk cluster dump`) is
// identical before and after the restart, Metadata lists exactly the 100
// remaining topics on every node, and the restart (first process start →
// every node lists 3 brokers and all topics with leaders) takes ≤ 10 s.
func TestClusterSnapshot(t *testing.T) {
	card(t, "raw kmsg + tusk cluster CLI", "cluster: 2,000 topics created/deleted, snapshot, restart: identical dump, fast restart")
	c := startCluster(t, 3)
	ids := c.ids()
	const total, batch, keepEvery = 2000, 100, 20
	name := func(i int) string { return fmt.Sprintf("snap-%04d", i) }

	clients := map[int32]*rawClient{}
	for _, id := range ids {
		clients[id] = c.raw(t, id)
	}
	// The whole create + delete phase must fit the CI budget; fail with
	// the progress made rather than run on.
	const phaseLimit = 120 * time.Second
	began := time.Now()
	for b := 0; b < total/batch; b++ {
		if el := time.Since(began); el > phaseLimit {
			t.Fatalf("creating topics: only %d of %d created after %v (limit %v for creating and deleting)", b*batch, total, el.Round(time.Millisecond), phaseLimit)
		}
		via := ids[b%len(ids)]
		var names []string
		for i := b * batch; i < (b+1)*batch; i++ {
			names = append(names, name(i))
		}
		// Every tenth batch carries topic configs, so the dump holds some.
		var cfg map[string]string
		if b%10 == 0 {
			cfg = map[string]string{"retention.ms": fmt.Sprint(3600000 + b), "segment.bytes": "1048576"}
		}
		retryBatch(t, "CreateTopics", via, names, func(pending []string) (map[string]int16, error) {
			codes, _, err := clients[via].createTopics(pending, 1, cfg, 30*time.Second)
			return codes, err
		}, 36) // TOPIC_ALREADY_EXISTS after a retried request is success
	}
	t.Logf("measure: created %d topics in %v", total, time.Since(began).Round(time.Millisecond))

	var keep, drop []string
	for i := 0; i < total; i++ {
		if i%keepEvery == 0 {
			keep = append(keep, name(i))
		} else {
			drop = append(drop, name(i))
		}
	}
	created := time.Since(began)
	for b := 0; b*batch < len(drop); b++ {
		if el := time.Since(began); el > phaseLimit {
			t.Fatalf("deleting topics: only %d of %d deleted after %v in all (limit %v for creating and deleting)", b*batch, len(drop), el.Round(time.Millisecond), phaseLimit)
		}
		via := ids[(b+1)%len(ids)]
		names := drop[b*batch : min((b+1)*batch, len(drop))]
		retryBatch(t, "DeleteTopics", via, names, func(pending []string) (map[string]int16, error) {
			return clients[via].deleteTopics(pending, 30*time.Second)
		}, 3) // UNKNOWN_TOPIC_OR_PARTITION after a retried request is success
	}
	t.Logf("measure: deleted %d topics in %v", len(drop), (time.Since(began) - created).Round(time.Millisecond))

	wantTopics := map[string]int{}
	for _, tp := range keep {
		wantTopics[tp] = 1
	}
	for _, id := range ids {
		waitExactSnapTopics(t, c, id, wantTopics, 30*time.Second)
	}

	for _, id := range ids {
		out := c.cli(t, "cluster", "snapshot", "--server", c.node(id).Internal)
		t.Logf("tusk cluster snapshot on node %d: %s", id, strings.TrimSpace(out))
	}
	before, beforeRaw := c.agreedDump(t, 10*time.Second)
	t.Logf("dump before restart: %d bytes", len(beforeRaw))
	if !strings.Contains(beforeRaw, name(0)) || strings.Contains(beforeRaw, `"`+name(1)+`"`) {
		t.Errorf("dump before restart should name kept topic %s and not deleted topic %s", name(0), name(1))
	}

	c.stopAll(t)
	start := c.relaunchAll(t, sameKafkaPorts)
	c.waitBrokers(t, ids, ids, clusterFormTimeout)
	for _, id := range ids {
		waitExactSnapTopics(t, c, id, wantTopics, 30*time.Second)
	}
	// Metadata is answered from the restored local state; the cluster is
	// back only once it has a Raft leader again.
	leader := c.waitLeader(t, ids, ids, 30*time.Second)
	restart := time.Since(start)
	t.Logf("measure: restart of 3 nodes (first process start → every node lists 3 brokers and the %d topics with leaders, and all agree on Raft leader %d): %v", len(keep), leader, restart.Round(time.Millisecond))
	if restart > 10*time.Second {
		t.Errorf("restart took %v (limit 10 s)", restart)
	}

	after, afterRaw := c.agreedDump(t, 10*time.Second)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("metadata dump differs after restart (%d bytes before, %d after): %s", len(beforeRaw), len(afterRaw), strings.Join(jsonDiff(before, after, 20), "; "))
	}
}

// retryBatch runs one admin batch, retrying the topics that got a
// retriable error (or a connection error) for up to 60 s; okAfterRetry is
// an error code that counts as success once the batch has been retried.
func retryBatch(t *testing.T, what string, via int32, names []string, do func(pending []string) (map[string]int16, error), okAfterRetry int16) {
	t.Helper()
	pending := names
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; len(pending) > 0; attempt++ {
		codes, err := do(pending)
		var next []string
		var last string
		if err != nil {
			next, last = pending, err.Error()
		} else {
			for _, tp := range pending {
				code, ok := codes[tp]
				switch {
				case !ok:
					t.Fatalf("%s via node %d: no answer for topic %s", what, via, tp)
				case code == 0 || (attempt > 1 && code == okAfterRetry):
				case retriable(code):
					next, last = append(next, tp), fmt.Sprintf("%s: %s", tp, errName(code))
				default:
					t.Fatalf("%s via node %d: topic %s: %s", what, via, tp, errName(code))
				}
			}
		}
		pending = next
		if len(pending) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s via node %d: %d topics still failing after 60 s; last: %s", what, via, len(pending), last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitExactSnapTopics polls Metadata (all topics) from node id until the
// topics named snap-* are exactly want, each with its partitions led.
func waitExactSnapTopics(t *testing.T, c *cluster, id int32, want map[string]int, timeout time.Duration) {
	t.Helper()
	r := c.raw(t, id)
	defer r.close()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		v, err := r.metadata(nil)
		if err != nil {
			last = err.Error()
		} else {
			var extra, missing []string
			for tp, m := range v.Topics {
				if !strings.HasPrefix(tp, "snap-") {
					continue
				}
				if n, ok := want[tp]; !ok {
					extra = append(extra, tp)
				} else if !m.ready(n) {
					missing = append(missing, tp+" "+m.String())
				}
			}
			for tp := range want {
				if _, ok := v.Topics[tp]; !ok {
					missing = append(missing, tp+" absent")
				}
			}
			if len(extra) == 0 && len(missing) == 0 {
				return
			}
			sort.Strings(extra)
			sort.Strings(missing)
			last = fmt.Sprintf("%d unexpected topics (e.g. %v), %d missing or leaderless (e.g. %v)", len(extra), head(extra, 3), len(missing), head(missing, 3))
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: Metadata does not list exactly the %d expected snap-* topics within %v: %s", id, len(want), timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
