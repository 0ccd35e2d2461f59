package compat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// member is a plain kgo group consumer (autocommit off) whose poll loop
// records the first offset it sees per partition.
type member struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	owned       map[int32]bool
	assignCalls int // OnPartitionsAssigned calls with a nonempty assignment
	lost        int
	first       map[int32]int64
	fetchErrs   []string
}

func startMember(t *testing.T, n *node, group, topic, clientID string, extra ...kgo.Opt) *member {
	t.Helper()
	m := &member{name: clientID, done: make(chan struct{}), owned: map[int32]bool{}, first: map[int32]int64{}}
	opts := []kgo.Opt{
		kgo.ClientID(clientID),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(grpSession),
		kgo.RebalanceTimeout(grpRebalance),
		kgo.HeartbeatInterval(grpHeartbeat),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(a[topic]) > 0 {
				m.assignCalls++
			}
			for _, p := range a[topic] {
				m.owned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range r[topic] {
				delete(m.owned, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.lost++
			for _, p := range r[topic] {
				delete(m.owned, p)
			}
		}),
	}
	m.cl = newKgo(t, n, append(opts, extra...)...)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	t.Cleanup(cancel)
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := m.cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			m.mu.Lock()
			fs.EachError(func(tp string, p int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed) {
					m.fetchErrs = append(m.fetchErrs, fmt.Sprintf("%s/%d: %v", tp, p, err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if _, ok := m.first[r.Partition]; !ok {
					m.first[r.Partition] = r.Offset
				}
			})
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *member) ownedSorted() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int32
	for p := range m.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// close stops the poll loop and closes the client (LeaveGroup unless static).
func (m *member) close(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("member %s: poll loop did not stop", m.name)
	}
	closed := make(chan struct{})
	go func() { m.cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatalf("member %s: Close did not return within 20s", m.name)
	}
}

func (m *member) commitSync(t *testing.T, topic string, offs map[int32]int64) {
	t.Helper()
	ctx := ctxTimeout(t, 15*time.Second)
	eo := map[int32]kgo.EpochOffset{}
	for p, o := range offs {
		eo[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var cerr error
	m.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: eo}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
				}
			}
		}
	})
	if cerr != nil {
		t.Fatalf("member %s: commit %v: %v", m.name, offs, cerr)
	}
}

// TestGroupStaticMembership: a static member (group.instance.id) closed
// without leaving and restarted within the session timeout gets its
// partitions back without a rebalance.
func TestGroupStaticMembership(t *testing.T) {
	card(t, "franz-go kgo", "group static membership rejoin, no rebalance")
	const (
		topic = "grp-static"
		group = "grp-static"
		parts = 4
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)

	// The dynamic member joins first (and leads); the static member's first
	// join is then its only join, so its restarted twin sends byte-identical
	// JoinGroup metadata.
	dyn := startMember(t, n, group, topic, "dyn-1")
	waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 1, parts))
	st := startMember(t, n, group, topic, "static-a", kgo.InstanceID("static-1"))
	waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 2, parts))
	waitUntil(t, 20*time.Second, "both members own partitions in the same generation", func() bool {
		_, g1 := dyn.cl.GroupMetadata()
		_, g2 := st.cl.GroupMetadata()
		return g1 > 0 && g1 == g2 && len(dyn.ownedSorted())+len(st.ownedSorted()) == parts && len(st.ownedSorted()) > 0 && len(dyn.ownedSorted()) > 0
	})
	dynID, gen := dyn.cl.GroupMetadata()
	stOwned := st.ownedSorted()
	dynOwned := dyn.ownedSorted()
	dynCalls := func() int { dyn.mu.Lock(); defer dyn.mu.Unlock(); return dyn.assignCalls }()
	g := describeGroup(t, adm, group)
	staticDesc := func(g kadm.DescribedGroup) (kadm.DescribedGroupMember, bool) {
		for _, m := range g.Members {
			if m.InstanceID != nil && *m.InstanceID == "static-1" {
				return m, true
			}
		}
		return kadm.DescribedGroupMember{}, false
	}
	sm, ok := staticDesc(g)
	if !ok {
		t.Fatalf("DescribeGroups: no member with instance id static-1: %+v", g.Members)
	}
	if got := memberAssignment(sm, topic); !slices.Equal(got, stOwned) {
		t.Fatalf("DescribeGroups: static-1 assigned %v, client reports %v", got, stOwned)
	}
	t.Logf("generation %d: static-1 owns %v, dyn-1 owns %v", gen, stOwned, dynOwned)

	// Close without LeaveGroup (kgo does not leave for static members).
	st.close(t)
	g = describeGroup(t, adm, group)
	if len(g.Members) != 2 {
		t.Fatalf("after static member closed: %d members, want 2 (static member must stay until its session times out)", len(g.Members))
	}
	if _, ok := staticDesc(g); !ok {
		t.Fatalf("after static member closed: static-1 no longer in the group")
	}

	st2 := startMember(t, n, group, topic, "static-a", kgo.InstanceID("static-1"))
	waitUntil(t, grpSession, "restarted static member owns partitions (within the session timeout)", func() bool {
		return len(st2.ownedSorted()) > 0
	})
	check := func(when string) {
		t.Helper()
		if got := st2.ownedSorted(); !slices.Equal(got, stOwned) {
			t.Fatalf("%s: restarted static member owns %v, before %v", when, got, stOwned)
		}
		if _, g2 := st2.cl.GroupMetadata(); g2 != gen {
			t.Fatalf("%s: restarted static member in generation %d, want unchanged %d (a rebalance happened)", when, g2, gen)
		}
		if id, g1 := dyn.cl.GroupMetadata(); id != dynID || g1 != gen {
			t.Fatalf("%s: dynamic member %s gen %d, want %s gen %d", when, id, g1, dynID, gen)
		}
		dyn.mu.Lock()
		calls := dyn.assignCalls
		dyn.mu.Unlock()
		if calls != dynCalls {
			t.Fatalf("%s: dynamic member was reassigned (%d assignments, before %d)", when, calls, dynCalls)
		}
		if got := dyn.ownedSorted(); !slices.Equal(got, dynOwned) {
			t.Fatalf("%s: dynamic member owns %v, before %v", when, got, dynOwned)
		}
		g := describeGroup(t, adm, group)
		if g.State != "Stable" || len(g.Members) != 2 {
			t.Fatalf("%s: group %s with %d members, want Stable with 2", when, g.State, len(g.Members))
		}
		sm, ok := staticDesc(g)
		if !ok {
			t.Fatalf("%s: static-1 missing from DescribeGroups", when)
		}
		if got := memberAssignment(sm, topic); !slices.Equal(got, stOwned) {
			t.Fatalf("%s: DescribeGroups: static-1 assigned %v, want %v", when, got, stOwned)
		}
	}
	check("right after rejoin")
	// The old member id's session must not expire into a rebalance either:
	// observe past one full session timeout.
	until := time.Now().Add(grpSession + 2*time.Second)
	for time.Now().Before(until) {
		check("during the session-timeout window")
		time.Sleep(250 * time.Millisecond)
	}
	check("after the session-timeout window")
}

// TestGroupRestartResume: committed offsets survive SIGTERM+restart and
// kill -9+restart; a new member resumes exactly at them.
func TestGroupRestartResume(t *testing.T) {
	card(t, "franz-go kgo", "group offsets survive SIGTERM and kill -9 restarts")
	const (
		topic = "grp-restart"
		group = "grp-restart"
		parts = 4
	)
	n := startTusk(t, withFlag("storage-fsync", "always"))
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)
	produceKeys(t, n, topic, seqKeys("rk", 4000))
	ends := endOffsets(t, adm, topic)

	// resume joins the group, checks it starts exactly at want (or 0 where
	// nothing was committed), commits next and leaves.
	resume := func(n *node, round string, want, next map[int32]int64) {
		t.Helper()
		m := startMember(t, n, group, topic, "resume-"+round)
		waitUntil(t, 30*time.Second, round+": first record of every partition", func() bool {
			m.mu.Lock()
			defer m.mu.Unlock()
			return len(m.first) == parts
		})
		m.mu.Lock()
		for p := range int32(parts) {
			if m.first[p] != want[p] {
				t.Errorf("%s: partition %d: consumption started at %d, committed %d", round, p, m.first[p], want[p])
			}
		}
		for _, e := range m.fetchErrs {
			t.Errorf("%s: fetch error %s", round, e)
		}
		m.mu.Unlock()
		m.commitSync(t, topic, next)
		m.close(t)
		adm2, _ := newAdm(t, n)
		if got := committedOffsets(t, adm2, group, topic); !mapsEqual(got, next) {
			t.Fatalf("%s: committed offsets %v, want %v", round, got, next)
		}
	}
	half, threeQ, sevenE := map[int32]int64{}, map[int32]int64{}, map[int32]int64{}
	zero := map[int32]int64{}
	for p := range int32(parts) {
		if ends[p] < 8 {
			t.Fatalf("partition %d has only %d records", p, ends[p])
		}
		zero[p] = 0
		half[p] = ends[p] / 2
		threeQ[p] = ends[p] * 3 / 4
		sevenE[p] = ends[p] * 7 / 8
	}
	resume(n, "initial", zero, half)

	n.Stop(t)
	n = n.Restart(t)
	resume(n, "after-sigterm", half, threeQ)

	n.Kill9(t)
	n = n.Restart(t)
	resume(n, "after-kill9", threeQ, sevenE)
}

func mapsEqual(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestGroupAdmin: DescribeGroups, ListGroups, Lag and DeleteGroups.
func TestGroupAdmin(t *testing.T) {
	card(t, "franz-go kadm", "groups describe/list/lag/delete")
	const (
		topic = "grp-admin"
		group = "grp-admin"
		parts = 3
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)
	produceKeys(t, n, topic, seqKeys("ak", 300))
	ends := endOffsets(t, adm, topic)

	a := startMember(t, n, group, topic, "adm-a")
	b := startMember(t, n, group, topic, "adm-b")
	g := waitGroup(t, adm, group, 30*time.Second, stableWith(topic, 2, parts))
	waitUntil(t, 20*time.Second, "both members own their partitions", func() bool {
		return len(a.ownedSorted())+len(b.ownedSorted()) == parts && len(a.ownedSorted()) > 0 && len(b.ownedSorted()) > 0
	})
	owners := map[string][]int32{"adm-a": a.ownedSorted(), "adm-b": b.ownedSorted()}
	if g.ProtocolType != "consumer" || g.Protocol != "range" {
		t.Errorf("DescribeGroups: protocol type %q protocol %q, want consumer/range", g.ProtocolType, g.Protocol)
	}
	var clients []string
	for _, m := range g.Members {
		clients = append(clients, m.ClientID)
		if m.MemberID == "" {
			t.Errorf("DescribeGroups: member with client id %s has an empty member id", m.ClientID)
		}
		if got := memberAssignment(m, topic); !slices.Equal(got, owners[m.ClientID]) {
			t.Errorf("DescribeGroups: %s assigned %v, the client owns %v", m.ClientID, got, owners[m.ClientID])
		}
		if md, ok := m.Join.AsConsumer(); !ok || !slices.Equal(md.Topics, []string{topic}) {
			t.Errorf("DescribeGroups: %s join metadata topics %v (ok=%v), want [%s]", m.ClientID, md.Topics, ok, topic)
		}
	}
	sort.Strings(clients)
	if !slices.Equal(clients, []string{"adm-a", "adm-b"}) {
		t.Errorf("DescribeGroups: client ids %v, want [adm-a adm-b]", clients)
	}

	ctx := ctxTimeout(t, 30*time.Second)
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatalf("ListGroups: %v", err)
	}
	if l, ok := lg[group]; !ok {
		t.Errorf("ListGroups does not list %s: %v", group, lg.Groups())
	} else {
		if l.ProtocolType != "consumer" {
			t.Errorf("ListGroups: protocol type %q, want consumer", l.ProtocolType)
		}
		if l.State != "" && l.State != "Stable" {
			t.Errorf("ListGroups: state %q, want Stable", l.State)
		}
	}
	if lg, err := adm.ListGroups(ctx, "Empty"); err != nil {
		t.Errorf("ListGroups(Empty): %v", err)
	} else if _, ok := lg[group]; ok {
		t.Errorf("ListGroups with state filter Empty lists the Stable group %s", group)
	}

	// Each member commits known offsets for its own partitions.
	known := map[int32]int64{}
	for p := range int32(parts) {
		known[p] = min(ends[p], int64(5+7*p))
	}
	for _, m := range []*member{a, b} {
		offs := map[int32]int64{}
		for _, p := range m.ownedSorted() {
			offs[p] = known[p]
		}
		m.commitSync(t, topic, offs)
	}
	checkLag := func(when string, wantMembers bool) {
		t.Helper()
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			t.Fatalf("%s: Lag: %v", when, err)
		}
		gl, ok := lags[group]
		if !ok {
			t.Fatalf("%s: Lag: group missing", when)
		}
		if err := gl.Error(); err != nil {
			t.Fatalf("%s: Lag: %v", when, err)
		}
		for p := range int32(parts) {
			ml, ok := gl.Lag.Lookup(topic, p)
			if !ok {
				t.Errorf("%s: Lag: no entry for %s/%d", when, topic, p)
				continue
			}
			if ml.Err != nil || ml.Commit.At != known[p] || ml.End.Offset != ends[p] || ml.Lag != ends[p]-known[p] {
				t.Errorf("%s: Lag %s/%d: commit %d end %d lag %d err %v; want commit %d end %d lag %d",
					when, topic, p, ml.Commit.At, ml.End.Offset, ml.Lag, ml.Err, known[p], ends[p], ends[p]-known[p])
			}
			if wantMembers {
				if ml.Member == nil || !slices.Contains(owners[ml.Member.ClientID], p) {
					t.Errorf("%s: Lag %s/%d: member %+v, want the owner", when, topic, p, ml.Member)
				}
			}
		}
	}
	checkLag("stable", true)

	// A non-empty group cannot be deleted.
	if dr, err := adm.DeleteGroups(ctx, group); err != nil {
		t.Fatalf("DeleteGroups (non-empty): %v", err)
	} else if r := dr[group]; !errors.Is(r.Err, kerr.NonEmptyGroup) {
		t.Errorf("DeleteGroups on a group with members: %v, want NON_EMPTY_GROUP", r.Err)
	}

	a.close(t)
	b.close(t)
	waitGroup(t, adm, group, 20*time.Second, func(g kadm.DescribedGroup) string {
		if g.State != "Empty" || len(g.Members) != 0 {
			return fmt.Sprintf("state %s with %d members", g.State, len(g.Members))
		}
		return ""
	})
	checkLag("empty", false)

	dr, err := adm.DeleteGroups(ctx, group)
	if err != nil {
		t.Fatalf("DeleteGroups: %v", err)
	}
	if r, ok := dr[group]; !ok || r.Err != nil {
		t.Fatalf("DeleteGroups %s: ok=%v err=%v", group, ok, r.Err)
	}
	lg, err = adm.ListGroups(ctx)
	if err != nil {
		t.Fatalf("ListGroups after delete: %v", err)
	}
	if _, ok := lg[group]; ok {
		t.Errorf("ListGroups still lists %s after DeleteGroups", group)
	}
	fo, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		fo.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil && o.At >= 0 {
				t.Errorf("after DeleteGroups: offset %d still committed for %s/%d", o.At, o.Topic, o.Partition)
			}
		})
	} else if !errors.Is(err, kerr.GroupIDNotFound) {
		t.Errorf("FetchOffsets after DeleteGroups: %v", err)
	}
}

// TestGroupConcurrentRebalance: 20 groups of 2-3 members join at once,
// then one member of each leaves; every group settles and no member sees
// UNKNOWN_MEMBER_ID.
func TestGroupConcurrentRebalance(t *testing.T) {
	card(t, "franz-go kgo", "20 groups rebalancing at once, no UNKNOWN_MEMBER_ID")
	const (
		topic  = "grp-conc"
		parts  = 6
		groups = 20
	)
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, parts, nil)
	produceKeys(t, n, topic, seqKeys("ck", 600))

	type grp struct {
		name    string
		members []*member
		logs    []*groupErrLogger
	}
	var gs []*grp
	for i := range groups {
		g := &grp{name: fmt.Sprintf("grp-conc-%02d", i)}
		size := 2 + i%2
		for j := range size {
			l := &groupErrLogger{}
			g.logs = append(g.logs, l)
			g.members = append(g.members, startMember(t, n, g.name, topic, fmt.Sprintf("%s-m%d", g.name, j), kgo.WithLogger(l)))
		}
		gs = append(gs, g)
	}
	waitAll := func(what string, size func(*grp) int) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for _, g := range gs {
			waitGroup(t, adm, g.name, time.Until(deadline), stableWith(topic, size(g), parts))
		}
		t.Logf("%s: all %d groups Stable", what, groups)
	}
	waitAll("join", func(g *grp) int { return len(g.members) })

	var wg sync.WaitGroup
	for _, g := range gs {
		leaver := g.members[len(g.members)-1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			leaver.cancel()
			<-leaver.done
			leaver.cl.Close()
		}()
	}
	leftCh := make(chan struct{})
	go func() { wg.Wait(); close(leftCh) }()
	select {
	case <-leftCh:
	case <-time.After(30 * time.Second):
		t.Fatal("leaving members did not close within 30s")
	}
	waitAll("leave", func(g *grp) int { return len(g.members) - 1 })
	// Remaining members really own what the broker says.
	for _, g := range gs {
		total := 0
		for _, m := range g.members[:len(g.members)-1] {
			waitUntil(t, 20*time.Second, m.name+" owns partitions", func() bool { return len(m.ownedSorted()) > 0 })
			total += len(m.ownedSorted())
		}
		if total != parts {
			// Ownership may lag the broker by one heartbeat; re-check with a deadline.
			waitUntil(t, 20*time.Second, g.name+" members own all partitions", func() bool {
				s := 0
				for _, m := range g.members[:len(g.members)-1] {
					s += len(m.ownedSorted())
				}
				return s == parts
			})
		}
	}
	var unknown, illegal, lost int64
	for _, g := range gs {
		for i, l := range g.logs {
			unknown += l.unknownMember.Load()
			illegal += l.illegalGen.Load()
			m := g.members[i]
			m.mu.Lock()
			lost += int64(m.lost)
			for _, e := range m.fetchErrs {
				t.Errorf("%s: fetch error %s", m.name, e)
			}
			m.mu.Unlock()
			l.mu.Lock()
			for _, s := range l.samples {
				t.Logf("%s: %s", m.name, s)
			}
			l.mu.Unlock()
		}
	}
	if unknown != 0 {
		t.Errorf("%d UNKNOWN_MEMBER_ID occurrences across the groups, want 0", unknown)
	}
	if lost != 0 {
		t.Errorf("%d OnPartitionsLost calls (fatal group errors), want 0", lost)
	}
	t.Logf("ILLEGAL_GENERATION occurrences: %d (informational)", illegal)
}
