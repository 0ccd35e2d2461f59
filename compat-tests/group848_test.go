package compat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-848 consumer groups (ConsumerGroupHeartbeat, issue 17 part A) with
// kgo's ServerSideBalancer: the broker assigns partitions. Every scenario
// checks the exact set of records consumed (each at the position it was
// produced at), that no partition is ever owned by two live members
// (kgo's assign/revoke/lost callbacks, in one ledger), and that a record
// is processed again only above the last successful commit of its
// partition (rebalanceTracker).

// 848 timings: the session is the broker's (groups.consumer-session-timeout).
const (
	g848Session   = "6s"
	g848Heartbeat = "500ms"
)

func g848Env() map[string]string {
	return map[string]string{
		"TUSK_GROUPS_CONSUMER_SESSION_TIMEOUT":    g848Session,
		"TUSK_GROUPS_CONSUMER_HEARTBEAT_INTERVAL": g848Heartbeat,
	}
}

// ownership is the ledger of who owns which partition, from the members'
// callbacks. A member that is killed (killable dialer) stops counting at
// the kill: it can no longer fetch or commit.
type ownership struct {
	mu         sync.Mutex
	owner      map[int32]string
	dead       map[string]bool
	violations []string
}

func newOwnership() *ownership {
	return &ownership{owner: map[int32]string{}, dead: map[string]bool{}}
}

func (o *ownership) assigned(name string, parts []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead[name] {
		return
	}
	for _, p := range parts {
		if cur, ok := o.owner[p]; ok && cur != name {
			o.violations = append(o.violations, fmt.Sprintf("partition %d assigned to %s while %s owns it", p, name, cur))
		}
		o.owner[p] = name
	}
}

func (o *ownership) revoked(name string, parts []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range parts {
		if o.owner[p] == name {
			delete(o.owner, p)
		}
	}
}

func (o *ownership) kill(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead[name] = true
	for p, n := range o.owner {
		if n == name {
			delete(o.owner, p)
		}
	}
}

func (o *ownership) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.violations) > 0 {
		t.Fatalf("%d ownership violations, first: %v", len(o.violations), o.violations[:min(5, len(o.violations))])
	}
}

// killableDialer lets a test cut a client off the cluster, as a killed
// process is: every connection closed, no new one made, no LeaveGroup.
type killableDialer struct {
	mu     sync.Mutex
	dead   bool
	conns  []net.Conn
	dialer net.Dialer
}

func (d *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	if d.dead {
		d.mu.Unlock()
		return nil, errors.New("killed")
	}
	d.mu.Unlock()
	c, err := d.dialer.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		c.Close()
		return nil, errors.New("killed")
	}
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

type member848 struct {
	*trackedConsumer
	dialer *killableDialer
}

// start848 starts a KIP-848 member (ServerSideBalancer, uniform assignor)
// seeded with seeds that, per poll, processes every record, commits
// exactly the processed offsets synchronously, and only then lets the
// client reconcile; revocation commits what is still uncommitted.
func start848(t *testing.T, seeds []string, tr *rebalanceTracker, own *ownership, group, name string) *member848 {
	t.Helper()
	m := &member848{trackedConsumer: &trackedConsumer{name: name, done: make(chan struct{})}, dialer: &killableDialer{}}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(name),
		kgo.WithLogger(newFailLogger(t, name)),
		kgo.RetryTimeout(20*time.Second),
		kgo.Dialer(m.dialer.dial),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(tr.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ServerSideBalancer(),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RebalanceTimeout(grpRebalance),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			own.assigned(name, a[tr.topic])
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			tr.commit(ctx, name+"(revoke)", cl, cl.UncommittedOffsets())
			own.revoked(name, r[tr.topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			own.revoked(name, l[tr.topic])
		}),
	)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	m.cl = cl
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	t.Cleanup(cancel)
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(ctx)
			tr.processAndCommit(name, cl, fs.Records())
			cl.AllowRebalance()
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
		}
	}()
	return m
}

// kill cuts the member off without a LeaveGroup: its session must expire
// on the broker before its partitions move.
func (m *member848) kill(own *ownership) {
	own.kill(m.name)
	m.dialer.kill()
	m.cancel()
}

// produce848 produces keys (value "v-"+key, acks=all) through seeds and
// returns key → position.
func produce848(t *testing.T, seeds []string, topic string, keys []string) map[string]tp {
	t.Helper()
	cl := newClusterClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond), kgo.RecordDeliveryTimeout(30*time.Second))
	defer cl.Close()
	ctx := ctxTimeout(t, 60*time.Second)
	out := make(map[string]tp, len(keys))
	var mu sync.Mutex
	var firstErr error
	for _, k := range keys {
		cl.Produce(ctx, &kgo.Record{Key: []byte(k), Value: []byte("v-" + k)}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp(firstErr, err)
				return
			}
			out[string(r.Key)] = tp{r.Partition, r.Offset}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil || len(out) != len(keys) {
		t.Fatalf("produce: %d acks for %d keys (%v)", len(out), len(keys), firstErr)
	}
	return out
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// waitConsumed waits until every produced key was processed, then checks
// each at its produced position and no violation.
func waitConsumed(t *testing.T, tr *rebalanceTracker, own *ownership, produced map[string]tp, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, fmt.Sprintf("%d records consumed", len(produced)), func() bool { return tr.unique() >= len(produced) })
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.count) != len(produced) {
		t.Fatalf("consumed %d distinct keys, produced %d", len(tr.count), len(produced))
	}
	for k, at := range produced {
		if got, ok := tr.pos[k]; !ok || got != at {
			t.Fatalf("key %s consumed at %v (%v), produced at %v", k, got, ok, at)
		}
	}
	if len(tr.violations) > 0 {
		t.Fatalf("%d duplicate violations, first: %v", len(tr.violations), tr.violations[:min(5, len(tr.violations))])
	}
	own.check(t)
}

func merge(dst, src map[string]tp) map[string]tp {
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// describe848 is kadm's DescribeConsumerGroups (API 69) of one group.
func describe848(t *testing.T, adm *kadm.Client, group string) (kadm.DescribedConsumerGroup, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dg, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		return kadm.DescribedConsumerGroup{}, err
	}
	g, ok := dg[group]
	if !ok {
		return g, errors.New("group missing from ConsumerGroupDescribe")
	}
	return g, g.Err
}

// waitStable848 waits until the consumer group is Stable with exactly
// the named clients, every partition of topic (parts) assigned once.
func waitStable848(t *testing.T, adm *kadm.Client, group, topic string, parts int, clients ...string) kadm.DescribedConsumerGroup {
	t.Helper()
	var g kadm.DescribedConsumerGroup
	waitFor(t, 40*time.Second, "consumer group "+group+" stable with "+fmt.Sprint(clients), func() (bool, string) {
		var err error
		if g, err = describe848(t, adm, group); err != nil {
			return false, err.Error()
		}
		if g.State != "Stable" {
			return false, "state " + g.State
		}
		var ids []string
		seen := map[int32]int{}
		for _, m := range g.Members {
			ids = append(ids, m.ClientID)
			for p := range m.Assignment[topic] {
				seen[p]++
			}
		}
		sort.Strings(ids)
		want := append([]string(nil), clients...)
		sort.Strings(want)
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			return false, fmt.Sprintf("members %v", ids)
		}
		for p := range int32(parts) {
			if seen[p] != 1 {
				return false, fmt.Sprintf("partition %d assigned %d times", p, seen[p])
			}
		}
		return true, ""
	})
	return g
}

// TestGroup848 is the group matrix on one node with kgo's
// ServerSideBalancer: join, cooperative handover, leave, member kill
// (session expiry hands its partitions on), a topic gaining partitions.
func TestGroup848(t *testing.T) {
	card(t, "franz-go kgo ServerSideBalancer", "KIP-848 group: join, handover, leave, kill, partitions added")
	n, seeds := start848Node(t)
	adm, _ := newAdm(t, n)
	if _, err := adm.CreateTopic(ctxTimeout(t, 10*time.Second), 4, -1, nil, "g848"); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	run848Matrix(t, seeds, adm)
}

// TestClusterGroup848 is TestGroup848's matrix on 3 nodes, the topic and
// __consumer_offsets with 3 replicas.
func TestClusterGroup848(t *testing.T) {
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, env: g848Env(), client: "franz-go kgo ServerSideBalancer",
		scenario: "cluster: KIP-848 group join, handover, leave, kill, partitions added",
		topics:   []faultTopic{{name: "g848", partitions: 4}},
	})
	run848Matrix(t, c.kafkaAddrs(c.ids()...), adm)
}

// run848Matrix runs the group matrix on topic g848 (4 partitions).
func run848Matrix(t *testing.T, seeds []string, adm *kadm.Client) {
	const topic, group = "g848", "g848-group"
	ctx := ctxTimeout(t, 3*time.Minute)
	tr, own := newRebalanceTracker(topic), newOwnership()
	produced := produce848(t, seeds, topic, seqKeys("a", 400))

	// Join: one member takes every partition.
	a := start848(t, seeds, tr, own, group, "a")
	waitStable848(t, adm, group, topic, 4, "a")
	waitConsumed(t, tr, own, produced, 30*time.Second)

	// Cooperative handover: b joins while records keep coming.
	b := start848(t, seeds, tr, own, group, "b")
	merge(produced, produce848(t, seeds, topic, seqKeys("b", 400)))
	g := waitStable848(t, adm, group, topic, 4, "a", "b")
	for _, m := range g.Members {
		if len(m.Assignment[topic]) != 2 {
			t.Fatalf("member %s holds %v, want 2 partitions each", m.ClientID, m.Assignment[topic])
		}
	}
	waitConsumed(t, tr, own, produced, 30*time.Second)

	// A topic gaining partitions: the group rebalances onto 6.
	if _, err := adm.CreatePartitions(ctx, 2, topic); err != nil {
		t.Fatalf("CreatePartitions: %v", err)
	}
	waitStable848(t, adm, group, topic, 6, "a", "b")
	merge(produced, produce848(t, seeds, topic, seqKeys("c", 600)))
	waitConsumed(t, tr, own, produced, 30*time.Second)
	parts := map[int32]bool{}
	for _, at := range produced {
		parts[at.p] = true
	}
	if !parts[4] || !parts[5] {
		t.Fatalf("records went to partitions %v, want the new 4 and 5 among them", parts)
	}

	// Member kill: c joins, b is cut off; its session (6 s) expires and
	// its partitions go to a and c.
	c := start848(t, seeds, tr, own, group, "c")
	waitStable848(t, adm, group, topic, 6, "a", "b", "c")
	killed := time.Now()
	b.kill(own)
	waitStable848(t, adm, group, topic, 6, "a", "c")
	t.Logf("measure: killed member's partitions reassigned %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	merge(produced, produce848(t, seeds, topic, seqKeys("d", 600)))
	waitConsumed(t, tr, own, produced, 30*time.Second)

	// Leave: a closes (leave heartbeat, epoch -1); c takes everything.
	a.stop(t)
	waitStable848(t, adm, group, topic, 6, "c")
	merge(produced, produce848(t, seeds, topic, seqKeys("e", 300)))
	waitConsumed(t, tr, own, produced, 30*time.Second)
	c.stop(t)

	// Every partition's committed offset is its end.
	waitCommittedAtEnds(t, adm, tr, group, topic, produced)
}

// start848Node starts one node with g848Env and returns it and its seeds.
func start848Node(t *testing.T) (*node, []string) {
	t.Helper()
	for k, v := range g848Env() {
		t.Setenv(k, v)
	}
	n := startTusk(t)
	return n, []string{n.Kafka}
}

// waitCommittedAtEnds waits until group's committed offset of every
// partition of topic the records were produced to is its end, and logs
// what tr saw.
func waitCommittedAtEnds(t *testing.T, adm *kadm.Client, tr *rebalanceTracker, group, topic string, produced map[string]tp) {
	t.Helper()
	ends := map[int32]int64{}
	for _, at := range produced {
		ends[at.p] = max(ends[at.p], at.o+1)
	}
	waitFor(t, 10*time.Second, "committed offsets at the ends", func() (bool, string) {
		have := committedOffsets(t, adm, group, topic)
		return fmt.Sprint(have) == fmt.Sprint(ends), fmt.Sprintf("committed %v, ends %v", have, ends)
	})
	tr.mu.Lock()
	t.Logf("processed %d records, %d reprocessed (above the last commit), commit errors: %v", len(tr.count), tr.dups, tr.commitErrs)
	tr.mu.Unlock()
}

// TestGroup848Types: a classic group and a consumer group coexist on one
// coordinator; ListGroups v5 and kadm DescribeConsumerGroups report the
// types; an empty group converts from one protocol to the other and back
// keeping its offsets, a non-empty one refuses the other protocol.
func TestGroup848Types(t *testing.T) {
	card(t, "franz-go kgo ServerSideBalancer + kadm", "KIP-848 and classic groups coexist, convert, list and describe")
	n, seeds := start848Node(t)
	adm, acl := newAdm(t, n)
	ctx := ctxTimeout(t, 2*time.Minute)
	const topic = "g848t"
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	produced := produce848(t, seeds, topic, seqKeys("t", 100))

	// A classic member (kgo without ServerSideBalancer) and a consumer
	// group member at once.
	classic := newKgo(t, n, kgo.ConsumerGroup("classic-g"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	trC, own := newRebalanceTracker(topic), newOwnership()
	m := start848(t, seeds, trC, own, "consumer-g", "m1")
	got := 0
	for got < len(produced) {
		fs := classic.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("classic group read %d of %d", got, len(produced))
		}
		got += len(fs.Records())
	}
	if err := classic.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("classic commit: %v", err)
	}
	waitConsumed(t, trC, own, produced, 30*time.Second)

	types := listGroupTypes(t, acl)
	if types["classic-g"] != "classic/Stable" || types["consumer-g"] != "consumer/Stable" {
		t.Fatalf("ListGroups types %v", types)
	}
	if l, err := adm.ListGroupsByType(ctx, []string{"consumer"}); err != nil || len(l) != 1 || l["consumer-g"].ProtocolType != "consumer" {
		t.Fatalf("ListGroups consumer type: %v %v", l, err)
	}
	g, err := describe848(t, adm, "consumer-g")
	if err != nil || g.AssignorName != "uniform" || len(g.Members) != 1 || len(g.Members[0].Assignment[topic]) != 2 {
		t.Fatalf("ConsumerGroupDescribe: %+v %v", g, err)
	}
	// DescribeGroups (classic) does not describe a consumer group; the
	// other way around neither.
	if _, err := describe848(t, adm, "classic-g"); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("ConsumerGroupDescribe of a classic group: %v, want GROUP_ID_NOT_FOUND", err)
	}
	// A non-empty group refuses the other protocol.
	hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	hb.Group, hb.MemberID, hb.MemberEpoch, hb.RebalanceTimeoutMillis = "classic-g", "x-member-000000000001", 0, 10000
	hb.SubscribedTopicNames, hb.Topics = []string{topic}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if r, err := hb.RequestWith(ctx, acl); err != nil || r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("heartbeat to a live classic group: %v %v, want GROUP_ID_NOT_FOUND", r, err)
	}

	// Conversion: the classic group empties and becomes a consumer group
	// that resumes at its committed offsets; then it empties again and a
	// classic member takes it back, at the offsets the consumer group
	// committed.
	classic.Close()
	waitGroupType(t, acl, "classic-g", "classic/Empty")
	more := produce848(t, seeds, topic, seqKeys("u", 50))
	tr2, own2 := newRebalanceTracker(topic), newOwnership()
	m2 := start848(t, seeds, tr2, own2, "classic-g", "m2")
	waitConsumed(t, tr2, own2, more, 30*time.Second) // only the new records: the classic commits hold
	if s := listGroupTypes(t, acl)["classic-g"]; s != "consumer/Stable" {
		t.Fatalf("converted group listed as %s", s)
	}
	m2.stop(t)
	waitGroupType(t, acl, "classic-g", "consumer/Empty")
	last := produce848(t, seeds, topic, seqKeys("w", 30))
	back := newKgo(t, n, kgo.ConsumerGroup("classic-g"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	var keys []string
	for len(keys) < len(last) {
		fs := back.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("classic again read %d of %d: %v", len(keys), len(last), keys)
		}
		fs.EachRecord(func(r *kgo.Record) { keys = append(keys, string(r.Key)) })
	}
	for _, k := range keys {
		if _, ok := last[k]; !ok {
			t.Fatalf("classic member after conversion read %s, not one of the last records", k)
		}
	}
	if s := listGroupTypes(t, acl)["classic-g"]; s != "classic/Stable" {
		t.Fatalf("group converted back listed as %s", s)
	}
	// An empty consumer group can be deleted.
	m.stop(t)
	waitGroupType(t, acl, "consumer-g", "consumer/Empty")
	if r, err := adm.DeleteGroup(ctx, "consumer-g"); err != nil || r.Err != nil {
		t.Fatalf("DeleteGroups consumer-g: %v %v", err, r.Err)
	}
	if s, ok := listGroupTypes(t, acl)["consumer-g"]; ok {
		t.Fatalf("deleted group still listed: %s", s)
	}
}

// listGroupTypes is ListGroups v5: group → "type/state".
func listGroupTypes(t *testing.T, cl *kgo.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrListGroupsRequest()
	shards := cl.RequestSharded(ctx, req)
	out := map[string]string{}
	for _, s := range shards {
		if s.Err != nil {
			t.Fatalf("ListGroups: %v", s.Err)
		}
		r := s.Resp.(*kmsg.ListGroupsResponse)
		if r.ErrorCode != 0 {
			t.Fatalf("ListGroups: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		for _, g := range r.Groups {
			out[g.Group] = g.GroupType + "/" + g.GroupState
		}
	}
	return out
}

// waitGroupType waits until ListGroups lists group as want (type/state,
// as listGroupTypes: "consumer/Empty").
func waitGroupType(t *testing.T, cl *kgo.Client, group, want string) {
	t.Helper()
	waitFor(t, 20*time.Second, group+" "+want, func() (bool, string) {
		s := listGroupTypes(t, cl)[group]
		return s == want, s
	})
}

// TestClusterGroup848CoordinatorKill: two KIP-848 members consume a
// 4-partition topic on 3 nodes (RF 3); the group's coordinator is killed
// with SIGKILL while records keep coming. The new coordinator replays the
// group from __consumer_offsets (the same members, its epoch continuing
// from the old one's), no record is lost, and a record is
// processed again only above its partition's last commit.
func TestClusterGroup848CoordinatorKill(t *testing.T) {
	const topic, group = "g848k", "g848k-group"
	// The session is 30 s here, not 6: after the kill kgo retries its
	// heartbeat against the dead coordinator with a growing backoff
	// (0.25 s doubling, seen reaching the new one 10.1 s after the kill),
	// and a member whose session ends meanwhile is rightly forgotten,
	// which would hide whether the group was replayed.
	env := g848Env()
	env["TUSK_GROUPS_CONSUMER_SESSION_TIMEOUT"] = "30s"
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, env: env, client: "franz-go kgo ServerSideBalancer + kill -9",
		scenario: "cluster: KIP-848 group coordinator killed, the group replayed by the new one",
		topics:   []faultTopic{{name: topic, partitions: 4}},
	})
	all := c.kafkaAddrs(c.ids()...)
	tr, own := newRebalanceTracker(topic), newOwnership()
	produced := produce848(t, all, topic, seqKeys("a", 400))
	a := start848(t, all, tr, own, group, "a")
	b := start848(t, all, tr, own, group, "b")
	before := waitStable848(t, adm, group, topic, 4, "a", "b")
	waitConsumed(t, tr, own, produced, 30*time.Second)

	ctx := ctxTimeout(t, 2*time.Minute)
	var coord int32 = -1
	adm.FindGroupCoordinators(ctx, group).Each(func(d kadm.FindCoordinatorResponse) {
		if d.Err != nil {
			t.Fatalf("FindCoordinator: %v", d.Err)
		}
		coord = d.NodeID
	})
	if coord < 0 {
		t.Fatalf("no coordinator for %s", group)
	}
	c.node(coord).Kill9(t)
	killed := time.Now()
	var live []int32
	for _, id := range c.ids() {
		if id != coord {
			live = append(live, id)
		}
	}
	t.Logf("killed the coordinator, node %d (group epoch %d)", coord, before.Epoch)
	liveAddrs := c.kafkaAddrs(live...)
	ladm := kadm.NewClient(newClusterClient(t, liveAddrs))
	merge(produced, produce848(t, liveAddrs, topic, seqKeys("b", 400)))
	after := waitStable848(t, ladm, group, topic, 4, "a", "b")
	t.Logf("measure: group stable on the new coordinator %v after the kill, epoch %d", time.Since(killed).Round(100*time.Millisecond), after.Epoch)
	// Replayed, not made anew: the same member ids (kgo takes a new one
	// after UNKNOWN_MEMBER_ID) and no earlier epoch.
	ids := func(g kadm.DescribedConsumerGroup) string {
		var out []string
		for _, m := range g.Members {
			out = append(out, m.ClientID+"="+m.MemberID)
		}
		sort.Strings(out)
		return fmt.Sprint(out)
	}
	if after.Epoch < before.Epoch || ids(after) != ids(before) {
		t.Fatalf("after the failover: epoch %d, members %s; before: epoch %d, members %s", after.Epoch, ids(after), before.Epoch, ids(before))
	}
	waitConsumed(t, tr, own, produced, 60*time.Second)
	a.stop(t)
	b.stop(t)
	waitCommittedAtEnds(t, ladm, tr, group, topic, produced)
}

// TestGroup848StaticRegexRange: two static members (kgo InstanceID)
// subscribe by regex (v1 SubscribedTopicRegex) with the range assignor.
// The regex resolves on the broker to the matching topics only; range
// gives each member one partition of each 2-partition topic; a static
// member that closes (leave with epoch -2) keeps its partitions, which
// nobody else gets, and has them back when it returns under its instance
// id; a new matching topic joins the assignment within the regex refresh
// (10 s) and its records are consumed.
//
// kgo v1.22.2's own static leave sends epoch -2 without the instance id,
// which Kafka (and Tusk) refuse with INVALID_REQUEST ("InstanceId can't be
// null."), so the member would stay until its session ends. The test cuts
// s1 off (as a crashed process) and sends the static leave a conforming
// client sends, then restarts s1 under its instance id with kgo.
func TestGroup848StaticRegexRange(t *testing.T) {
	card(t, "franz-go kgo ServerSideBalancer", "KIP-848 static members, regex subscription, range assignor")
	n, seeds := start848Node(t)
	adm, acl := newAdm(t, n)
	ctx := ctxTimeout(t, 2*time.Minute)
	const group = "g848s"
	for _, tt := range []string{"r848-a", "r848-b", "x848"} {
		if _, err := adm.CreateTopic(ctx, 2, -1, nil, tt); err != nil {
			t.Fatalf("create %s: %v", tt, err)
		}
	}
	want := map[string]string{} // key → topic
	for _, tt := range []string{"r848-a", "r848-b", "x848"} {
		for k := range produce848(t, seeds, tt, seqKeys(tt, 20)) {
			if tt != "x848" {
				want[k] = tt
			}
		}
	}
	var mu sync.Mutex
	got := map[string]string{}
	start := func(name, instance string, d *killableDialer) (context.CancelFunc, chan struct{}) {
		cl := newKgo(t, n, kgo.Dialer(d.dial), kgo.ClientID(name), kgo.ConsumerGroup(group), kgo.ConsumeRegex(), kgo.ConsumeTopics("r848-.*"),
			kgo.InstanceID(instance), kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
		done := make(chan struct{})
		pctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		go func() {
			defer close(done)
			for {
				fs := cl.PollFetches(pctx)
				if fs.IsClientClosed() || pctx.Err() != nil {
					return
				}
				mu.Lock()
				fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)] = r.Topic })
				mu.Unlock()
			}
		}()
		return cancel, done
	}
	consumedAll := func(what string) {
		t.Helper()
		waitUntil(t, 30*time.Second, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= len(want)
		})
		mu.Lock()
		defer mu.Unlock()
		for k, tt := range got {
			if want[k] != tt {
				t.Fatalf("consumed %s from %s, want only the regex's topics (%s)", k, tt, want[k])
			}
		}
	}
	s1dialer := &killableDialer{}
	s1stop, s1done := start("s1", "i1", s1dialer)
	_, _ = start("s2", "i2", &killableDialer{})
	consumedAll("the regex topics consumed")

	assignments := func(g kadm.DescribedConsumerGroup) map[string]string {
		out := map[string]string{}
		for _, m := range g.Members {
			if m.InstanceID != nil {
				out[*m.InstanceID] = fmt.Sprint(m.Assignment.Sorted())
			}
		}
		return out
	}
	var before map[string]string
	var s1member string
	waitFor(t, 30*time.Second, "range over the regex's topics", func() (bool, string) {
		g, err := describe848(t, adm, group)
		if err != nil {
			return false, err.Error()
		}
		if g.State != "Stable" || g.AssignorName != "range" || len(g.Members) != 2 {
			return false, fmt.Sprintf("state %s assignor %s members %d", g.State, g.AssignorName, len(g.Members))
		}
		for _, m := range g.Members {
			if m.SubscribedTopicRegex == nil || len(m.Assignment["r848-a"]) != 1 || len(m.Assignment["r848-b"]) != 1 || len(m.Assignment) != 2 {
				return false, fmt.Sprintf("member %s: regex %v, assignment %v", m.ClientID, m.SubscribedTopicRegex, m.Assignment.Sorted())
			}
		}
		before = assignments(g)
		for _, m := range g.Members {
			if m.ClientID == "s1" {
				s1member = m.MemberID
			}
		}
		return true, ""
	})

	// s1 is cut off and leaves for a while (epoch -2, its instance id).
	// Its partitions stay its own.
	s1dialer.kill()
	s1stop()
	<-s1done
	leave := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	leave.Group, leave.MemberID, leave.MemberEpoch, leave.InstanceID = group, s1member, -2, kmsg.StringPtr("i1")
	if r, err := leave.RequestWith(ctx, acl); err != nil || r.ErrorCode != 0 {
		t.Fatalf("static leave: %v %v", r, err)
	}
	leave.InstanceID = nil // kgo's
	if r, err := leave.RequestWith(ctx, acl); err != nil || r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("static leave without the instance id: %v %v, want INVALID_REQUEST", r, err)
	}
	waitFor(t, 10*time.Second, "s1 left with epoch -2", func() (bool, string) {
		g, err := describe848(t, adm, group)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range g.Members {
			if m.ClientID == "s1" {
				return m.MemberEpoch == -2, fmt.Sprintf("s1 at epoch %d", m.MemberEpoch)
			}
		}
		return false, "s1 gone from the group"
	})
	if g, err := describe848(t, adm, group); err != nil || fmt.Sprint(assignments(g)) != fmt.Sprint(before) {
		t.Fatalf("after s1's static leave: %v (%v), before %v", assignments(g), err, before)
	}
	_, _ = start("s1b", "i1", &killableDialer{})
	waitFor(t, 20*time.Second, "i1 back with its partitions", func() (bool, string) {
		g, err := describe848(t, adm, group)
		if err != nil {
			return false, err.Error()
		}
		ids := map[string]bool{}
		for _, m := range g.Members {
			ids[m.ClientID] = true
		}
		if g.State != "Stable" || len(g.Members) != 2 || !ids["s1b"] {
			return false, fmt.Sprintf("state %s members %v", g.State, ids)
		}
		now := assignments(g)
		return fmt.Sprint(now) == fmt.Sprint(before), fmt.Sprintf("assignments %v, before %v", now, before)
	})

	// A new topic the regex matches joins the assignment.
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "r848-c"); err != nil {
		t.Fatalf("create r848-c: %v", err)
	}
	for k := range produce848(t, seeds, "r848-c", seqKeys("r848-c", 15)) {
		want[k] = "r848-c"
	}
	added := time.Now()
	consumedAll("the new topic's records consumed")
	t.Logf("measure: a new topic matching the regex consumed %v after its creation", time.Since(added).Round(100*time.Millisecond))
}

// TestGroup848EOS: kgo's GroupTransactSession in a KIP-848 group copies an
// input topic to an output topic, committing each round's offsets in its
// transaction (TxnOffsetCommit with the member epoch); a second member
// joins half way, so partitions move between transactional members.
// read_committed sees every input record exactly once, and the group's
// committed offsets are the input's ends.
func TestGroup848EOS(t *testing.T) {
	card(t, "franz-go kgo GroupTransactSession + ServerSideBalancer", "KIP-848 group, exactly-once copy while a member joins")
	n, seeds := start848Node(t)
	adm, _ := newAdm(t, n)
	ctx := ctxTimeout(t, 3*time.Minute)
	const in, out, group = "e848-in", "e848-out", "e848-group"
	for _, tt := range []string{in, out} {
		if _, err := adm.CreateTopic(ctx, 2, -1, nil, tt); err != nil {
			t.Fatalf("create %s: %v", tt, err)
		}
	}
	var committed atomic.Int64
	perMember := map[string]*atomic.Int64{"a": {}, "b": {}}
	var stop atomic.Bool
	errs := make(chan error, 2)
	member := func(name string) chan struct{} {
		done := make(chan struct{})
		sess, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(seeds...), kgo.ClientID(name), kgo.TransactionalID(name), kgo.RetryTimeout(30*time.Second),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer(),
			kgo.FetchMaxPartitionBytes(2000), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(out))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		go func() {
			defer close(done)
			defer sess.Close()
			for !stop.Load() {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				fs := sess.PollFetches(pctx)
				cancel()
				if ctx.Err() != nil {
					errs <- fmt.Errorf("%s: %w", name, ctx.Err())
					return
				}
				if fs.NumRecords() == 0 {
					continue
				}
				if err := sess.Begin(); err != nil {
					errs <- fmt.Errorf("%s: begin: %w", name, err)
					return
				}
				fs.EachRecord(func(r *kgo.Record) {
					sess.Produce(ctx, &kgo.Record{Partition: r.Partition, Key: r.Key, Value: r.Value}, nil)
				})
				ok, err := sess.End(ctx, kgo.TryCommit)
				if err != nil {
					t.Logf("%s: end: %v (the session rewinds)", name, err)
					continue
				}
				if ok {
					committed.Add(int64(fs.NumRecords()))
					perMember[name].Add(int64(fs.NumRecords()))
				}
			}
		}()
		return done
	}
	produced := produce848(t, seeds, in, seqKeys("e", 300))
	aDone := member("a")
	waitUntil(t, 60*time.Second, "a copied the first 300", func() bool { return committed.Load() >= 300 })
	bDone := member("b")
	waitStable848(t, adm, group, in, 2, "a", "b")
	merge(produced, produce848(t, seeds, in, seqKeys("f", 300)))
	waitUntil(t, 60*time.Second, "600 records copied", func() bool { return committed.Load() >= 600 })
	stop.Store(true)
	<-aDone
	<-bDone
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if c := committed.Load(); c != 600 || perMember["b"].Load() == 0 {
		t.Fatalf("committed rounds hold %d records (a %d, b %d), want 600 (exactly once), some of them b's", c, perMember["a"].Load(), perMember["b"].Load())
	}
	t.Logf("committed: a %d, b %d records", perMember["a"].Load(), perMember["b"].Load())
	// read_committed: every input record once.
	rcl := newKgo(t, n, kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]int{}
	for len(seen) < len(produced) {
		fs := rcl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 600 from %s", len(seen), out)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Key)]++
			if string(r.Value) != "v-"+string(r.Key) {
				t.Fatalf("output record %s has value %s", r.Key, r.Value)
			}
			if at := produced[string(r.Key)]; at.p != r.Partition {
				t.Fatalf("output record %s in partition %d, input %d", r.Key, r.Partition, at.p)
			}
		})
	}
	// Nothing more below the ends the members left.
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := rcl.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)]++ })
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("output has %s %d times", k, c)
		}
	}
	inEnds := map[int32]int64{}
	for _, at := range produced {
		inEnds[at.p] = max(inEnds[at.p], at.o+1)
	}
	if have := committedOffsets(t, adm, group, in); fmt.Sprint(have) != fmt.Sprint(inEnds) {
		t.Fatalf("committed %v, input ends %v", have, inEnds)
	}
}
