package compat

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterBasic runs the scenarios that can share one 3-node cluster,
// in an order where each leaves the cluster as the next expects: topic
// visibility, produce/consume from every bootstrap node, coordinators,
// and last membership (no topic is created while node 4 is in).
func TestClusterBasic(t *testing.T) {
	done := cardSetup(t, "tusk 3-node cluster")
	c := startCluster(t, 3)
	done()
	t.Run("visibility", func(t *testing.T) { testClusterVisibility(t, c) })
	t.Run("any-bootstrap", func(t *testing.T) { testClusterAnyBootstrap(t, c) })
	t.Run("coordinator", func(t *testing.T) { testClusterCoordinator(t, c) })
	t.Run("forward", func(t *testing.T) { testClusterForward(t, c) })
	t.Run("replication", func(t *testing.T) { testClusterReplication(t, c) })
	t.Run("membership", func(t *testing.T) { testClusterMembership(t, c) })
}

// testClusterVisibility: a topic created through one node (raw
// CreateTopics to exactly that node, and kadm seeded with node 1) shows in
// Metadata of every other node, with all partitions led, within 1 s of
// the CreateTopics answer; all nodes agree on topic ID and leaders.
func testClusterVisibility(t *testing.T, c *cluster) {
	card(t, "raw kmsg + franz-go kadm", "cluster: topic created via one node visible on all within 1 s")
	ids := c.ids()
	const parts = 3
	var worst time.Duration
	check := func(topic string, via int32, created time.Time) {
		t.Helper()
		clients := map[int32]*rawClient{}
		var others []int32
		for _, id := range ids {
			if id != via {
				others = append(others, id)
				clients[id] = c.raw(t, id)
			}
		}
		seen := map[int32]time.Duration{}
		lastErr := map[int32]string{}
		// Poll past the 1 s limit (to 5 s) so a slow node reports its
		// real latency instead of just "not within 1 s".
		deadline := created.Add(5 * time.Second)
		for len(seen) < len(others) && time.Now().Before(deadline) {
			for _, o := range others {
				if _, ok := seen[o]; ok {
					continue
				}
				v, err := clients[o].metadata([]string{topic})
				switch {
				case err != nil:
					lastErr[o] = err.Error()
				case v.Topics[topic].ready(parts):
					seen[o] = time.Since(created)
				default:
					lastErr[o] = v.Topics[topic].String()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, o := range others {
			d, ok := seen[o]
			if !ok {
				t.Errorf("topic %s created via node %d: not visible (with %d led partitions) in node %d's Metadata after 5 s; last: %s", topic, via, parts, o, lastErr[o])
				continue
			}
			t.Logf("measure: topic %s created via node %d visible on node %d after %v", topic, via, o, d.Round(time.Microsecond))
			if d > time.Second {
				t.Errorf("topic %s created via node %d: visible on node %d only after %v (limit 1 s)", topic, via, o, d)
			}
			worst = max(worst, d)
		}
		// Every node agrees on the topic's ID and its leaders.
		var first mdTopic
		for i, id := range ids {
			m := c.waitTopicsOn(t, id, map[string]int{topic: parts}, 5*time.Second).Topics[topic]
			if m.ID == [16]byte{} {
				t.Errorf("node %d: topic %s has a zero topic ID", id, topic)
			}
			if i == 0 {
				first = m
				continue
			}
			if m.ID != first.ID || !reflect.DeepEqual(m.Leaders, first.Leaders) {
				t.Errorf("topic %s: node %d reports ID %x leaders %v; node %d reports ID %x leaders %v", topic, id, m.ID, m.Leaders, ids[0], first.ID, first.Leaders)
			}
		}
	}

	for _, via := range ids {
		topic := fmt.Sprintf("vis-raw-%d", via)
		r := c.raw(t, via)
		codes, msgs, err := r.createTopics([]string{topic}, parts, nil, 10*time.Second)
		if err != nil {
			t.Fatalf("CreateTopics %s via node %d: %v", topic, via, err)
		}
		if codes[topic] != 0 {
			t.Fatalf("CreateTopics %s via node %d: %s %q", topic, via, errName(codes[topic]), msgs[topic])
		}
		check(topic, via, time.Now())
	}

	// kadm seeded with node 1 only (kadm sends CreateTopics to the
	// controller Metadata names, which must work from any seed).
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(1)))
	ctx := ctxTimeout(t, 20*time.Second)
	resp, err := adm.CreateTopic(ctx, parts, -1, nil, "vis-kadm")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("kadm CreateTopic vis-kadm seeded with node 1: %v", err)
	}
	check("vis-kadm", 1, time.Now())
	t.Logf("measure: worst topic visibility latency %v", worst.Round(time.Microsecond))
}

// testClusterAnyBootstrap: for each node, a kgo client seeded only with it
// produces 100 records (idempotent, acks=all) to every partition of a
// 6-partition topic, and a client seeded only with the next node reads
// exactly those records back (offsets, keys, values, order).
func testClusterAnyBootstrap(t *testing.T, c *cluster) {
	card(t, "franz-go kgo", "cluster: produce+consume whichever node the client bootstraps from")
	ids := c.ids()
	const topic, nParts, perPart = "any-bootstrap", 6, 100
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(1)))
	createTopic(t, adm, topic, nParts, nil)
	v := c.waitTopicsOn(t, ids[0], map[string]int{topic: nParts}, 10*time.Second)
	led := map[int32][]int32{}
	for p, l := range v.Topics[topic].Leaders {
		led[l] = append(led[l], p)
	}
	t.Logf("partition leaders of %s: %v", topic, v.Topics[topic])
	for _, id := range ids {
		if len(led[id]) == 0 {
			t.Errorf("node %d leads none of the %d partitions of %s (placement should spread them): %v", id, nParts, topic, v.Topics[topic])
		}
	}

	var parts []int32
	for p := int32(0); p < nParts; p++ {
		parts = append(parts, p)
	}
	start := map[int32]int64{}
	for round, via := range ids {
		reader := ids[(round+1)%len(ids)]
		tag := fmt.Sprintf("boot%d", via)
		recs := producePartitions(t, c.kafkaAddrs(via), topic, parts, perPart, tag, start)
		want := map[int32]int{}
		for _, p := range parts {
			want[p] = perPart
		}
		got := readPartitions(t, c.kafkaAddrs(reader), topic, start, want, 30*time.Second)
		for _, p := range parts {
			sameRecords(t, fmt.Sprintf("%s/%d produced via node %d, read via node %d", topic, p, via, reader), recs[p], got[p])
			start[p] += perPart
		}
		if t.Failed() {
			return
		}
	}
	// End offsets agree from a client seeded with each node.
	for _, id := range ids {
		a := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(id)))
		ends := endOffsets(t, a, topic)
		for _, p := range parts {
			if ends[p] != start[p] {
				t.Errorf("end offset of %s/%d via node %d: %d, want %d", topic, p, id, ends[p], start[p])
			}
		}
	}
}

// testClusterCoordinator: FindCoordinator sent to each node names the same
// coordinator (a live broker, at its address) for each of 24 groups; the
// groups use more than one coordinator; offsets committed through a client
// seeded with one node are fetched identically through another.
func testClusterCoordinator(t *testing.T, c *cluster) {
	card(t, "raw kmsg + franz-go kadm", "cluster: FindCoordinator agrees on all nodes; commit/fetch offsets via any node")
	ids := c.ids()
	const topic, nParts, perPart = "coord", 3, 20
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(ids[1%len(ids)])))
	createTopic(t, adm, topic, nParts, nil)
	parts := []int32{0, 1, 2}
	producePartitions(t, c.kafkaAddrs(ids[2%len(ids)]), topic, parts, perPart, "coord", map[int32]int64{})

	type coord struct {
		id   int32
		addr string
	}
	clients := map[int32]*rawClient{}
	for _, id := range ids {
		clients[id] = c.raw(t, id)
	}
	find := func(via int32, group string) (coord, string) {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = group
		req.CoordinatorType = 0
		resp, err := clients[via].do(req, 3, 10*time.Second)
		if err != nil {
			return coord{}, err.Error()
		}
		r := resp.(*kmsg.FindCoordinatorResponse)
		if r.ErrorCode != 0 {
			return coord{}, errName(r.ErrorCode)
		}
		return coord{r.NodeID, r.Host + ":" + strconv.Itoa(int(r.Port))}, ""
	}
	deadline := time.Now().Add(20 * time.Second)
	used := map[int32]int{}
	for g := 0; g < 24; g++ {
		group := fmt.Sprintf("cgroup-%02d", g)
		var first coord
		for i, via := range ids {
			var got coord
			for {
				var problem string
				got, problem = find(via, group)
				if problem == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("FindCoordinator %s via node %d: %s", group, via, problem)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if i == 0 {
				first = got
				continue
			}
			if got != first {
				t.Errorf("FindCoordinator %s: node %d answers %+v, node %d answers %+v", group, via, got, ids[0], first)
			}
		}
		if n := c.lookup(first.id); n == nil || n.Kafka != first.addr {
			t.Errorf("FindCoordinator %s: coordinator %+v is not a cluster node at its Kafka address", group, first)
		}
		used[first.id]++
	}
	t.Logf("coordinators of 24 groups: %v", used)
	if len(used) < 2 {
		t.Errorf("all 24 groups have coordinator %v: __consumer_offsets partitions should be spread over the nodes", used)
	}

	for g := 0; g < 6; g++ {
		group := fmt.Sprintf("cgroup-%02d", g)
		committer := ids[g%len(ids)]
		fetcher := ids[(g+1)%len(ids)]
		offs := kadm.Offsets{}
		for _, p := range parts {
			offs.Add(kadm.Offset{Topic: topic, Partition: p, At: int64(g + int(p) + 1), LeaderEpoch: -1, Metadata: fmt.Sprintf("m-%d-%d", g, p)})
		}
		ctx := ctxTimeout(t, 20*time.Second)
		cr, err := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(committer))).CommitOffsets(ctx, group, offs)
		if err == nil {
			err = cr.Error()
		}
		if err != nil {
			t.Fatalf("CommitOffsets %s via node %d: %v", group, committer, err)
		}
		fr, err := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(fetcher))).FetchOffsets(ctx, group)
		if err == nil {
			err = fr.Error()
		}
		if err != nil {
			t.Fatalf("FetchOffsets %s via node %d: %v", group, fetcher, err)
		}
		for _, p := range parts {
			w, _ := offs.Lookup(topic, p)
			got, ok := fr.Lookup(topic, p)
			if !ok || got.At != w.At || got.Metadata != w.Metadata {
				t.Errorf("group %s %s/%d: fetched via node %d %+v (present %v), committed via node %d at %d %q", group, topic, p, fetcher, got.Offset, ok, committer, w.At, w.Metadata)
			}
		}
	}
}

// testClusterMembership: a 4th node started with the 3-voter list joins
// through `tusk cluster add-node`; Metadata from all four nodes and
// `tusk cluster status` then list 4 brokers; `tusk cluster remove-node`
// takes it out again (3 brokers everywhere, not in status). Removing a
// node that still leads partitions is refused.
func testClusterMembership(t *testing.T, c *cluster) {
	card(t, "tusk cluster CLI", "cluster: 4th node add-node then remove-node; Metadata and status follow")
	initial := c.ids()
	const id4 = int32(4)
	raft4 := freeAddrs(t, 1)[0]
	n4, err := launchTusk(t, c.nodeOpts(id4, raft4)...)
	if err != nil {
		t.Fatal(err)
	}
	c.setNode(id4, n4)
	// Node 4's data dir belongs to this subtest: stop it when the subtest
	// ends (before the dir is removed), not with the cluster.
	t.Cleanup(func() {
		for _, err := range c.stopNodes([]int32{id4}) {
			t.Error(err)
		}
	})

	out := c.cli(t, append([]string{"cluster", "add-node", "--server", c.node(1).Internal, "--node-id", "4", "--raft-addr", raft4}, c.cliTLSFlags(id4)...)...)
	t.Logf("tusk cluster add-node: %s", out)
	if err := c.waitReadyAll([]int32{id4}); err != nil {
		t.Fatalf("node 4 after add-node: %v", err)
	}
	all := append(append([]int32(nil), initial...), id4)
	d := c.waitBrokers(t, all, all, 20*time.Second)
	t.Logf("measure: Metadata on all 4 nodes lists 4 brokers %v after add-node", d.Round(time.Millisecond))

	for _, via := range []int32{2, id4} {
		st, err := c.status(t, via)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("status via node %d after add-node: leader %d voters %v brokers %+v", via, st.Leader, st.voterIDs(), st.Brokers)
		if got := st.brokerIDs(); !reflect.DeepEqual(got, all) {
			t.Errorf("status via node %d after add-node: brokers %v, want %v", via, got, all)
		}
		for _, b := range st.Brokers {
			if b.ID == id4 && (b.State != "alive" || b.Kafka != n4.Kafka || b.Raft != raft4 || b.Internal != n4.Internal) {
				t.Errorf("status via node %d: broker 4 is %+v, want alive at kafka %s internal %s raft %s", via, b, n4.Kafka, n4.Internal, raft4)
			}
		}
		if !containsID(all, st.Leader) {
			t.Errorf("status via node %d: leader %d is not a cluster node", via, st.Leader)
		}
	}
	// The new node serves the same topic list as the others.
	v1 := c.metadataOf(t, 1, nil)
	v4 := c.metadataOf(t, id4, nil)
	if names1, names4 := sortedNames(v1.Topics), sortedNames(v4.Topics); !reflect.DeepEqual(names1, names4) {
		t.Errorf("topics on node 4 %v differ from node 1's %v", names4, names1)
	}

	out = c.cli(t, "cluster", "remove-node", "--server", c.node(2).Internal, "--node-id", "4")
	t.Logf("tusk cluster remove-node: %s", out)
	d = c.waitBrokers(t, initial, initial, 20*time.Second)
	t.Logf("measure: Metadata on nodes 1-3 lists 3 brokers %v after remove-node", d.Round(time.Millisecond))
	st, err := c.status(t, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status via node 3 after remove-node: leader %d voters %v brokers %v", st.Leader, st.voterIDs(), st.brokerIDs())
	if got := st.brokerIDs(); !reflect.DeepEqual(got, initial) {
		t.Errorf("status after remove-node: brokers %v, want %v", got, initial)
	}
	if containsID(st.voterIDs(), id4) {
		t.Errorf("status after remove-node: node 4 still a voter: %v", st.voterIDs())
	}
	if errs := c.stopNodes([]int32{id4}); len(errs) > 0 {
		t.Errorf("stopping removed node 4: %v", errs)
	}

	// Node 3 leads partitions: removing it must be refused and change
	// nothing.
	if out, err := c.cliOut(t, clusterCLITimeout, "cluster", "remove-node", "--server", c.node(1).Internal, "--node-id", "3"); err == nil {
		t.Errorf("remove-node 3 while it leads partitions succeeded (%s); want a non-zero exit", out)
	} else {
		t.Logf("remove-node 3 refused as expected: %v", err)
	}
	c.waitBrokers(t, initial, initial, 5*time.Second)
}

func sortedNames(m map[string]mdTopic) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
