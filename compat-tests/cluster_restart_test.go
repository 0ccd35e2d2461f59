package compat

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

const (
	// restartReadyLimit is how long a node restarted after kill -9 may take
	// to serve again: /healthz answers 200 and its own Metadata lists every
	// broker and a leader for every partition (so its Raft log, and with it
	// the metadata, caught up with the controller's).
	restartReadyLimit = 3 * time.Second
	// restartDowntime is how long a killed node stays down: longer than
	// the lease (2 s), so the controller marks it dead and moves what it
	// led, and long enough that the Raft leader's replication to it has
	// failed many times in a row.
	restartDowntime = 6 * time.Second
)

// TestClusterRestartAfterKill: a 3-node cluster; N times (5, or 20 with
// TUSK_LONG_FAULTS=1) a node is killed with SIGKILL, in turn a follower of
// a replication-factor-3 partition, its segment leader and the Raft
// controller, kept down for restartDowntime and restarted on the same
// addresses. Each restart must serve within restartReadyLimit of the
// process start: /healthz 200, and Metadata from the restarted node itself
// lists the three brokers and the partition's leader.
//
// Before the fix a restarted node waited up to 10 s for the metadata it
// had missed: hashicorp/raft backs its leader's AppendEntries to a peer off
// exponentially after each failure (10 ms·2^n, up to 10.24 s), so a peer
// that had been down for seconds heard from the leader only after the
// current backoff ran out (see metadata/peerretry.go).
func TestClusterRestartAfterKill(t *testing.T) {
	rounds := 5
	if os.Getenv("TUSK_LONG_FAULTS") == "1" {
		rounds = 20
	}
	done := cardSetup(t, "tusk 3-node cluster")
	c := startCluster(t, 3)
	done()
	card(t, "raw kmsg + kill -9", fmt.Sprintf("cluster: a killed node serves again within %v of its restart (%d restarts)", restartReadyLimit, rounds))
	const topic = "restart"
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	resp, err := adm.CreateTopic(ctx, 1, 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	whole := func(what string) {
		t.Helper()
		c.waitBrokers(t, c.ids(), c.ids(), 30*time.Second)
		for _, id := range c.ids() {
			c.waitTopicsOn(t, id, map[string]int{topic: 1}, 30*time.Second)
		}
	}
	whole("after create")

	var took []time.Duration
	var slow []string
	for round := 0; round < rounds; round++ {
		kind := []string{"follower", "segment leader", "controller"}[round%3]
		ctrl := c.waitLeader(t, c.ids(), c.ids(), 10*time.Second)
		segLeader := c.metadataOf(t, ctrl, []string{topic}).Topics[topic].Leaders[0]
		var victim int32
		switch kind {
		case "controller":
			victim = ctrl
		case "segment leader":
			victim = segLeader
		default:
			for _, id := range c.ids() {
				if id != segLeader && (id != ctrl || victim == 0) {
					victim = id
				}
			}
		}
		old := c.node(victim)
		killed := time.Now()
		old.Kill9(t)
		var survivors []int32
		for _, id := range c.ids() {
			if id != victim {
				survivors = append(survivors, id)
			}
		}
		// The cluster notices: the survivors' Metadata drop the victim.
		waitFor(t, 20*time.Second, fmt.Sprintf("round %d: survivors drop killed node %d", round, victim), func() (bool, string) {
			for _, id := range survivors {
				v := c.metadataOf(t, id, []string{})
				if _, ok := v.Brokers[victim]; ok {
					return false, fmt.Sprintf("node %d still lists brokers %v", id, v.brokerIDs())
				}
			}
			return true, ""
		})
		time.Sleep(time.Until(killed.Add(restartDowntime))) // the fault's length, not a synchronization

		n, err := old.relaunchSamePorts(t)
		if err != nil {
			t.Fatalf("round %d: relaunch node %d: %v", round, victim, err)
		}
		c.setNode(victim, n)
		var last string
		for {
			ok, desc := servesAgain(t, old, c.ids(), topic)
			if ok {
				break
			}
			last = desc
			if n.exited() {
				t.Fatalf("round %d: restarted node %d exited: %v", round, victim, n.waitErr)
			}
			if time.Since(n.started) > 30*time.Second {
				t.Fatalf("round %d: restarted node %d does not serve within 30 s: %s", round, victim, last)
			}
			time.Sleep(10 * time.Millisecond)
		}
		d := time.Since(n.started)
		took = append(took, d)
		t.Logf("round %d: killed node %d (%s; controller %d, segment leader %d), down %v; serving %v after its restart",
			round, victim, kind, ctrl, segLeader, n.started.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))
		if d > restartReadyLimit {
			slow = append(slow, fmt.Sprintf("round %d node %d (%s): %v (last: %s)", round, victim, kind, d.Round(time.Millisecond), last))
		}
		if err := c.waitReadyAll([]int32{victim}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		whole(fmt.Sprintf("round %d", round))
	}
	var ds []string
	for _, d := range took {
		ds = append(ds, d.Round(time.Millisecond).String())
	}
	t.Logf("measure: restart → serving (healthz 200, own Metadata complete) over %d kill -9 restarts: %s", rounds, strings.Join(ds, " "))
	if len(slow) > 0 {
		t.Fatalf("%d of %d restarts took longer than %v: %s", len(slow), rounds, restartReadyLimit, strings.Join(slow, "; "))
	}
}

// servesAgain reports whether the node restarted on old's addresses
// answers /healthz with 200 and its own Metadata lists exactly the brokers
// ids and a leader for topic's partition 0.
func servesAgain(t *testing.T, old *node, ids []int32, topic string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+old.HTTP+"/healthz", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, fmt.Sprintf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("GET /healthz: %d", resp.StatusCode)
	}
	r := &rawClient{t: t, addr: old.Kafka}
	defer r.close()
	v, err := r.metadata([]string{topic})
	if err != nil {
		return false, fmt.Sprintf("Metadata: %v", err)
	}
	if got := v.brokerIDs(); !reflect.DeepEqual(got, ids) {
		return false, fmt.Sprintf("Metadata lists brokers %v, want %v", got, ids)
	}
	if m := v.Topics[topic]; !m.ready(1) {
		return false, fmt.Sprintf("Metadata: topic %s %v", topic, m)
	}
	return true, ""
}
