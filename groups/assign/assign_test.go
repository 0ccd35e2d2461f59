package assign

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
)

func tid(b byte) TopicID { return TopicID{b} }

var (
	tA = tid(1)
	tB = tid(2)
)

func mem(id string, topics ...string) Member { return Member{ID: id, Topics: topics} }

func TestUniformTable(t *testing.T) {
	topics := map[string]Topic{"a": {tA, 4}, "b": {tB, 3}}
	for _, tc := range []struct {
		name    string
		members []Member
		current Assignment
		want    Assignment
	}{
		{
			name:    "fresh two members",
			members: []Member{mem("m2", "a", "b"), mem("m1", "a", "b")},
			want: Assignment{
				"m1": {tA: {0, 2}, tB: {0, 2}},
				"m2": {tA: {1, 3}, tB: {1}},
			},
		},
		{
			name:    "third member joins: each old member gives up only its excess",
			members: []Member{mem("m1", "a", "b"), mem("m2", "a", "b"), mem("m3", "a", "b")},
			current: Assignment{"m1": {tA: {0, 2}, tB: {0, 2}}, "m2": {tA: {1, 3}, tB: {1}}},
			want: Assignment{
				"m1": {tA: {0, 2}, tB: {0}},
				"m2": {tA: {1, 3}},
				"m3": {tB: {1, 2}},
			},
		},
		{
			name:    "member leaves: the survivor keeps all it had",
			members: []Member{mem("m2", "a", "b")},
			current: Assignment{"m1": {tA: {0, 2}, tB: {0, 2}}, "m2": {tA: {1, 3}, tB: {1}}},
			want:    Assignment{"m2": {tA: {0, 1, 2, 3}, tB: {0, 1, 2}}},
		},
		{
			name:    "topic dropped from the image and an unknown topic subscribed",
			members: []Member{mem("m1", "a", "gone"), mem("m2", "a", "gone")},
			current: Assignment{"m1": {tA: {0, 1}, tid(9): {0}}, "m2": {tA: {2, 3}}},
			want:    Assignment{"m1": {tA: {0, 1}}, "m2": {tA: {2, 3}}},
		},
		{
			name:    "heterogeneous",
			members: []Member{mem("m1", "a"), mem("m2", "a", "b"), mem("m3", "b")},
			want: Assignment{
				"m1": {tA: {0, 2}},
				"m2": {tA: {1, 3}, tB: {2}},
				"m3": {tB: {0, 1}},
			},
		},
		{
			name:    "partition owned twice in current goes to the lowest member id",
			members: []Member{mem("m1", "a"), mem("m2", "a")},
			current: Assignment{"m1": {tA: {0, 1}}, "m2": {tA: {1, 2, 3}}},
			want:    Assignment{"m1": {tA: {0, 1}}, "m2": {tA: {2, 3}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Uniform(tc.members, topics, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRangeTable(t *testing.T) {
	topics := map[string]Topic{"a": {tA, 5}, "b": {tB, 2}}
	for _, tc := range []struct {
		name    string
		members []Member
		current Assignment
		want    Assignment
	}{
		{
			name:    "fresh: contiguous ranges, first members one more",
			members: []Member{mem("m3", "a", "b"), mem("m1", "a", "b"), mem("m2", "a", "b")},
			want: Assignment{
				"m1": {tA: {0, 1}, tB: {0}},
				"m2": {tA: {2, 3}, tB: {1}},
				"m3": {tA: {4}},
			},
		},
		{
			name:    "member joins: old members keep the lowest of what they had",
			members: []Member{mem("m1", "a", "b"), mem("m2", "a", "b"), mem("m3", "a", "b")},
			current: Assignment{"m1": {tA: {0, 1, 2}, tB: {0}}, "m2": {tA: {3, 4}, tB: {1}}},
			want: Assignment{
				"m1": {tA: {0, 1}, tB: {0}},
				"m2": {tA: {3, 4}, tB: {1}},
				"m3": {tA: {2}},
			},
		},
		{
			name:    "per-topic subscribers",
			members: []Member{mem("m1", "a"), mem("m2", "a", "b")},
			want: Assignment{
				"m1": {tA: {0, 1, 2}},
				"m2": {tA: {3, 4}, tB: {0, 1}},
			},
		},
		{
			name:    "partitions added: new ones fill the quotas",
			members: []Member{mem("m1", "b"), mem("m2", "b")},
			current: Assignment{"m1": {tB: {0}}, "m2": {tB: {1}}},
			want:    Assignment{"m1": {tB: {0}}, "m2": {tB: {1}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Range(tc.members, topics, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestByName(t *testing.T) {
	for _, n := range Names() {
		if _, ok := ByName(n); !ok {
			t.Fatalf("ByName(%q) unknown", n)
		}
	}
	if _, ok := ByName("sticky"); ok {
		t.Fatal("ByName(sticky) known")
	}
}

// randomCase builds a group of 1-8 members over 1-4 topics of 0-12
// partitions; homogeneous when hom.
func randomCase(r *rand.Rand, hom bool) ([]Member, map[string]Topic) {
	topics := make(map[string]Topic)
	var names []string
	for i := 0; i < 1+r.Intn(4); i++ {
		name := fmt.Sprintf("t%d", i)
		names = append(names, name)
		topics[name] = Topic{ID: tid(byte(i + 1)), Partitions: int32(r.Intn(13))}
	}
	var members []Member
	for i, n := 0, 1+r.Intn(8); i < n; i++ {
		m := Member{ID: fmt.Sprintf("m%02d", r.Intn(10)*10+i)}
		if hom {
			m.Topics = names
		} else {
			for _, n := range names {
				if r.Intn(2) == 0 {
					m.Topics = append(m.Topics, n)
				}
			}
		}
		members = append(members, m)
	}
	return members, topics
}

// checkValid: one entry per member, every subscribed partition assigned
// exactly once to a subscriber, slices sorted.
func checkValid(t *testing.T, members []Member, topics map[string]Topic, got Assignment) {
	t.Helper()
	ids := map[string]Member{}
	for _, m := range members {
		if _, ok := ids[m.ID]; !ok {
			ids[m.ID] = m
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("%d entries for %d members: %v", len(got), len(ids), got)
	}
	byID := map[TopicID]string{}
	for n, tp := range topics {
		byID[tp.ID] = n
	}
	seen := map[tpart]string{}
	for id, ps := range got {
		m, ok := ids[id]
		if !ok {
			t.Fatalf("entry for unknown member %s", id)
		}
		for topic, parts := range ps {
			name := byID[topic]
			if !contains(m.Topics, name) {
				t.Fatalf("member %s got %s it does not subscribe to", id, name)
			}
			if !sort.SliceIsSorted(parts, func(i, j int) bool { return parts[i] < parts[j] }) {
				t.Fatalf("unsorted %v", parts)
			}
			for _, p := range parts {
				k := tpart{name, topic, p}
				if prev, dup := seen[k]; dup {
					t.Fatalf("%v assigned to %s and %s", k, prev, id)
				}
				seen[k] = id
			}
		}
	}
	for name, tp := range topics {
		subscribed := false
		for _, m := range ids {
			subscribed = subscribed || contains(m.Topics, name)
		}
		for p := int32(0); p < tp.Partitions; p++ {
			if _, ok := seen[tpart{name, tp.ID, p}]; subscribed && !ok {
				t.Fatalf("%s/%d unassigned: %v", name, p, got)
			}
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestUniformProperties(t *testing.T) {
	r := rand.New(rand.NewSource(848))
	for i := 0; i < 2000; i++ {
		hom := i%2 == 0
		members, topics := randomCase(r, hom)
		first := Uniform(members, topics, nil)
		checkValid(t, members, topics, first)
		// Determinism: the members' order does not matter.
		shuffled := append([]Member(nil), members...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := Uniform(shuffled, topics, first); !reflect.DeepEqual(again, first) {
			t.Fatalf("case %d: not stable on its own output: %v then %v", i, first, again)
		}
		// A change: one member leaves, one joins, a topic gains partitions.
		next := append([]Member(nil), members[1:]...)
		next = append(next, Member{ID: "new", Topics: members[0].Topics})
		topics2 := map[string]Topic{}
		for n, tp := range topics {
			topics2[n] = tp
		}
		topics2["t0"] = Topic{ID: topics["t0"].ID, Partitions: topics["t0"].Partitions + int32(r.Intn(3))}
		second := Uniform(next, topics2, first)
		checkValid(t, next, topics2, second)
		if hom {
			checkBalanced(t, second)
			// Stickiness: a member either keeps all it had or only
			// loses partitions (it never gives some up and gets others).
			for id, ps := range second {
				old := first[id]
				if old == nil {
					continue
				}
				lost, gained := diff(old, ps), diff(ps, old)
				if lost > 0 && gained > 0 {
					t.Fatalf("case %d: member %s lost %d and gained %d: %v → %v", i, id, lost, gained, old, ps)
				}
			}
		} else {
			checkHeteroBalanced(t, next, topics2, second)
		}
	}
}

func TestRangeProperties(t *testing.T) {
	r := rand.New(rand.NewSource(8480))
	for i := 0; i < 2000; i++ {
		members, topics := randomCase(r, i%2 == 0)
		first := Range(members, topics, nil)
		checkValid(t, members, topics, first)
		shuffled := append([]Member(nil), members...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := Range(shuffled, topics, first); !reflect.DeepEqual(again, first) {
			t.Fatalf("case %d: not stable on its own output: %v then %v", i, first, again)
		}
		next := append([]Member(nil), members[1:]...)
		next = append(next, Member{ID: "new", Topics: members[0].Topics})
		second := Range(next, topics, first)
		checkValid(t, next, topics, second)
		// Per topic, subscriber counts differ by at most one.
		for name, tp := range topics {
			lo, hi := -1, -1
			for _, m := range dedupe(next) {
				if !contains(m.Topics, name) {
					continue
				}
				n := len(second[m.ID][tp.ID])
				if lo < 0 || n < lo {
					lo = n
				}
				if n > hi {
					hi = n
				}
			}
			if hi-lo > 1 {
				t.Fatalf("case %d: topic %s counts %d..%d: %v", i, name, lo, hi, second)
			}
		}
	}
}

func dedupe(ms []Member) []Member {
	seen := map[string]bool{}
	var out []Member
	for _, m := range ms {
		if !seen[m.ID] {
			seen[m.ID] = true
			out = append(out, m)
		}
	}
	return out
}

func checkBalanced(t *testing.T, a Assignment) {
	t.Helper()
	lo, hi := -1, -1
	for _, ps := range a {
		n := ps.Count()
		if lo < 0 || n < lo {
			lo = n
		}
		if n > hi {
			hi = n
		}
	}
	if hi-lo > 1 {
		t.Fatalf("counts %d..%d: %v", lo, hi, a)
	}
}

// checkHeteroBalanced: no partition could move to a less loaded
// subscriber and leave the two closer than one apart.
func checkHeteroBalanced(t *testing.T, members []Member, topics map[string]Topic, a Assignment) {
	t.Helper()
	byID := map[TopicID]string{}
	for n, tp := range topics {
		byID[tp.ID] = n
	}
	for id, ps := range a {
		for topic, parts := range ps {
			if len(parts) == 0 {
				continue
			}
			for _, m := range dedupe(members) {
				if contains(m.Topics, byID[topic]) && a[m.ID].Count() < ps.Count()-1 {
					t.Fatalf("%s (%d) could give %s to %s (%d): %v", id, ps.Count(), byID[topic], m.ID, a[m.ID].Count(), a)
				}
			}
		}
	}
}

func diff(a, b Partitions) int {
	n := 0
	for id, ps := range a {
		for _, p := range ps {
			if !b.Has(id, p) {
				n++
			}
		}
	}
	return n
}
