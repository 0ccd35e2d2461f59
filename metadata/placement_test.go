package metadata

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

func brokersWithRacks(racks ...string) []Broker {
	out := make([]Broker, len(racks))
	for i, r := range racks {
		out[i] = broker(int32(i + 1))
		out[i].Rack = r
	}
	return out
}

func leaderCounts(a [][]int32) map[int32]int {
	out := map[int32]int{}
	for _, r := range a {
		out[r[0]]++
	}
	return out
}

func replicaCounts(a [][]int32) map[int32]int {
	out := map[int32]int{}
	for _, r := range a {
		for _, b := range r {
			out[b]++
		}
	}
	return out
}

func checkDistinct(t *testing.T, a [][]int32, rf int) {
	t.Helper()
	for p, r := range a {
		if len(r) != rf {
			t.Fatalf("partition %d has %d replicas, want %d: %v", p, len(r), rf, a)
		}
		s := slices.Clone(r)
		slices.Sort(s)
		if len(slices.Compact(s)) != len(r) {
			t.Fatalf("partition %d repeats a broker: %v", p, r)
		}
	}
}

func TestPlaceLeadersBalanceExistingLoad(t *testing.T) {
	live := brokersWithRacks("", "", "")
	a, err := Place(live, map[int32]int{1: 5, 2: 0, 3: 0}, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinct(t, a, 1)
	if got := leaderCounts(a); !reflect.DeepEqual(got, map[int32]int{2: 5, 3: 5}) {
		t.Fatalf("leaders %v: broker 1 already leads 5, so 2 and 3 should take 5 each", got)
	}
	// Three more: one each, the totals stay level.
	a, _ = Place(live, map[int32]int{1: 5, 2: 0, 3: 0}, 13, 1)
	if got := leaderCounts(a); !reflect.DeepEqual(got, map[int32]int{1: 1, 2: 6, 3: 6}) {
		t.Fatalf("13 partitions: leaders %v", got)
	}
	// Empty cluster: round robin in id order.
	a, _ = Place(live, nil, 6, 1)
	if want := [][]int32{{1}, {2}, {3}, {1}, {2}, {3}}; !reflect.DeepEqual(a, want) {
		t.Fatalf("6 on empty: %v", a)
	}
	// Loads of brokers that are not live are ignored.
	a, _ = Place(live[:2], map[int32]int{3: 100, 1: 1}, 3, 1)
	if got := leaderCounts(a); !reflect.DeepEqual(got, map[int32]int{1: 1, 2: 2}) {
		t.Fatalf("leaders %v", got)
	}
}

func TestPlaceDeterministic(t *testing.T) {
	live := brokersWithRacks("a", "b", "a", "c", "b")
	loads := map[int32]int{1: 3, 2: 1, 4: 2}
	first, err := Place(live, loads, 17, 3)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := []Broker{live[3], live[0], live[4], live[2], live[1]}
	for range 5 {
		again, err := Place(shuffled, loads, 17, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("placement depends on input order:\n%v\n%v", first, again)
		}
	}
	if !reflect.DeepEqual(live, brokersWithRacks("a", "b", "a", "c", "b")) || !reflect.DeepEqual(loads, map[int32]int{1: 3, 2: 1, 4: 2}) {
		t.Fatal("Place modified its inputs")
	}
}

func TestPlaceRackAware(t *testing.T) {
	// Two brokers per rack; rf 3 must use all three racks every time.
	live := brokersWithRacks("a", "a", "b", "b", "c", "c")
	rack := map[int32]string{}
	for _, b := range live {
		rack[b.ID] = b.Rack
	}
	a, err := Place(live, nil, 12, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinct(t, a, 3)
	for p, r := range a {
		seen := map[string]bool{}
		for _, b := range r {
			seen[rack[b]] = true
		}
		if len(seen) != 3 {
			t.Fatalf("partition %d replicas %v span racks %v", p, r, seen)
		}
	}
	if got := leaderCounts(a); len(got) != 6 || slices.Max(valuesOf(got)) != 2 {
		t.Fatalf("leaders %v", got)
	}
	// rf 2 with racks a,a,b: the follower of a rack-a leader is the rack-b broker.
	live = brokersWithRacks("a", "a", "b")
	a, _ = Place(live, nil, 2, 2)
	if !reflect.DeepEqual(a, [][]int32{{1, 3}, {2, 3}}) {
		t.Fatalf("rf 2 over racks a,a,b: %v", a)
	}
	// More replicas than racks: distinct racks first, then any broker.
	a, _ = Place(live, nil, 1, 3)
	if len(a[0]) != 3 || rack[a[0][1]] == rack[a[0][0]] {
		t.Fatalf("rf 3 over 2 racks: %v", a)
	}
}

func valuesOf(m map[int32]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestPlaceReplicasSpreadEvenly checks the total replica count per broker
// (leaders included), not just the leaders: with rf 2 over 3 brokers, 3
// partitions should put 2 replicas on each broker.
func TestPlaceReplicasSpreadEvenly(t *testing.T) {
	for _, tc := range []struct{ brokers, n, rf int }{{3, 3, 2}, {3, 6, 2}, {4, 8, 3}, {5, 10, 3}} {
		live := brokersWithRacks(make([]string, tc.brokers)...)
		a, err := Place(live, nil, tc.n, tc.rf)
		if err != nil {
			t.Fatal(err)
		}
		checkDistinct(t, a, tc.rf)
		counts := replicaCounts(a)
		vals := valuesOf(counts)
		if len(counts) != tc.brokers || slices.Max(vals)-slices.Min(vals) > 1 {
			t.Errorf("%d brokers, %d partitions, rf %d: replicas per broker %v (placement %v)", tc.brokers, tc.n, tc.rf, counts, a)
		}
	}
}

func TestPlaceErrorsAndDefaults(t *testing.T) {
	live := brokersWithRacks("", "")
	if _, err := Place(live, nil, 1, 3); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("rf 3 on 2 brokers: %v", err)
	}
	if _, err := Place(nil, nil, 1, 1); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("no brokers: %v", err)
	}
	if _, err := Place(nil, nil, 1, 0); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("no brokers, rf 0: %v", err)
	}
	for _, rf := range []int{0, -1} {
		a, err := Place(live, nil, 4, rf)
		if err != nil {
			t.Fatal(err)
		}
		checkDistinct(t, a, 1)
	}
	a, err := Place(live, nil, 0, 2)
	if err != nil || len(a) != 0 {
		t.Fatalf("zero partitions: %v %v", a, err)
	}
	// rf == number of brokers: everyone holds every partition, leaders rotate.
	a, _ = Place(live, nil, 4, 2)
	checkDistinct(t, a, 2)
	if got := leaderCounts(a); got[1] != 2 || got[2] != 2 {
		t.Fatalf("leaders %v", got)
	}
}
