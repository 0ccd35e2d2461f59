package assign

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

func TestSimpleTable(t *testing.T) {
	topics := map[string]Topic{"a": {tA, 4}, "b": {tB, 1}}
	for _, tc := range []struct {
		name    string
		members []Member
		current Assignment
		want    Assignment
	}{
		{
			name:    "one member takes every partition",
			members: []Member{mem("m1", "a", "b")},
			want:    Assignment{"m1": {tA: {0, 1, 2, 3}, tB: {0}}},
		},
		{
			name:    "fresh two members: a spread, b shared",
			members: []Member{mem("m2", "a", "b"), mem("m1", "a", "b")},
			want: Assignment{
				"m1": {tA: {0, 1}, tB: {0}},
				"m2": {tA: {2, 3}, tB: {0}},
			},
		},
		{
			name:    "third member joins: the extra partition moves from one member",
			members: []Member{mem("m1", "a"), mem("m2", "a"), mem("m3", "a")},
			current: Assignment{"m1": {tA: {0, 1}}, "m2": {tA: {2, 3}}},
			want: Assignment{
				"m1": {tA: {0, 1}},
				"m2": {tA: {2}},
				"m3": {tA: {3}},
			},
		},
		{
			name:    "six members on four partitions: one each, two partitions shared",
			members: []Member{mem("m1", "a"), mem("m2", "a"), mem("m3", "a"), mem("m4", "a"), mem("m5", "a"), mem("m6", "a")},
			want: Assignment{
				"m1": {tA: {0}}, "m2": {tA: {1}}, "m3": {tA: {2}},
				"m4": {tA: {3}}, "m5": {tA: {0}}, "m6": {tA: {1}},
			},
		},
		{
			name:    "sticky when members outnumber partitions",
			members: []Member{mem("m1", "a"), mem("m2", "a"), mem("m3", "a"), mem("m4", "a"), mem("m5", "a")},
			current: Assignment{"m1": {tA: {3}}, "m2": {tA: {3}}, "m3": {tA: {3}}, "m4": {tA: {1}}},
			want: Assignment{
				"m1": {tA: {3}}, "m2": {tA: {3}}, "m3": {tA: {0}},
				"m4": {tA: {1}}, "m5": {tA: {2}},
			},
		},
		{
			name:    "four members on one partition",
			members: []Member{mem("m1", "b"), mem("m2", "b"), mem("m3", "b"), mem("m4", "b")},
			want:    Assignment{"m1": {tB: {0}}, "m2": {tB: {0}}, "m3": {tB: {0}}, "m4": {tB: {0}}},
		},
		{
			name:    "unsubscribed and unknown topics dropped",
			members: []Member{mem("m1", "a", "gone"), mem("m2", "b")},
			current: Assignment{"m1": {tA: {0, 1}, tB: {0}, tid(9): {0}}},
			want:    Assignment{"m1": {tA: {0, 1, 2, 3}}, "m2": {tB: {0}}},
		},
		{
			name:    "member with no existing topic",
			members: []Member{mem("m1", "gone")},
			want:    Assignment{"m1": {}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Simple(tc.members, topics, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSimpleProperties checks random groups: every partition of a
// subscribed topic assigned, only to subscribers; per topic either one
// member per partition with counts within one, or one partition per
// member with members per partition within one; deterministic; a member
// whose partitions stay within bounds keeps them.
func TestSimpleProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	names := []string{"a", "b", "c"}
	for iter := 0; iter < 2000; iter++ {
		topics := make(map[string]Topic)
		for i, n := range names {
			if rng.Intn(4) > 0 {
				topics[n] = Topic{ID: tid(byte(i + 1)), Partitions: int32(1 + rng.Intn(6))}
			}
		}
		var members []Member
		for i := 0; i < 1+rng.Intn(10); i++ {
			var subs []string
			for _, n := range names {
				if rng.Intn(2) == 0 {
					subs = append(subs, n)
				}
			}
			members = append(members, mem(fmt.Sprintf("m%02d", i), subs...))
		}
		current := Simple(members[:1+rng.Intn(len(members))], topics, nil)
		got := Simple(members, topics, current)
		again := Simple(members, topics, current)
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("iter %d: not deterministic", iter)
		}
		checkSimple(t, iter, members, topics, got)
		// Stable: a second run on its own result changes nothing.
		if next := Simple(members, topics, got); !reflect.DeepEqual(next, got) {
			t.Fatalf("iter %d: not stable: %v then %v", iter, got, next)
		}
	}
}

func checkSimple(t *testing.T, iter int, members []Member, topics map[string]Topic, got Assignment) {
	t.Helper()
	for name, tp := range topics {
		var subs []string
		for _, m := range members {
			for _, s := range m.Topics {
				if s == name {
					subs = append(subs, m.ID)
				}
			}
		}
		owners := make([]int, tp.Partitions)
		counts := make(map[string]int)
		for id, ps := range got {
			for _, p := range ps[tp.ID] {
				owners[p]++
				counts[id]++
			}
		}
		for id, c := range counts {
			if c > 0 && !contains(subs, id) {
				t.Fatalf("iter %d: %s got %s without subscribing", iter, id, name)
			}
		}
		if len(subs) == 0 {
			continue
		}
		lo, hi := 1<<30, 0
		if len(subs) <= int(tp.Partitions) {
			for p, n := range owners {
				if n != 1 {
					t.Fatalf("iter %d: %s/%d has %d owners (%d subs, %d parts): %v", iter, name, p, n, len(subs), tp.Partitions, got)
				}
			}
			for _, id := range subs {
				lo, hi = min(lo, counts[id]), max(hi, counts[id])
			}
		} else {
			for _, id := range subs {
				if counts[id] != 1 {
					t.Fatalf("iter %d: %s has %d partitions of %s: %v", iter, id, counts[id], name, got)
				}
			}
			for _, n := range owners {
				lo, hi = min(lo, n), max(hi, n)
			}
			if lo < 1 {
				t.Fatalf("iter %d: a partition of %s unassigned: %v", iter, name, got)
			}
		}
		if hi-lo > 1 {
			t.Fatalf("iter %d: %s unbalanced (%d..%d): %v", iter, name, lo, hi, got)
		}
	}
}
