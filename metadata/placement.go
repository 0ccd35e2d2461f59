package metadata

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNotEnoughBrokers is returned when a placement needs more live brokers
// than there are.
var ErrNotEnoughBrokers = errors.New("metadata: not enough live brokers")

// Place assigns n new partitions with rf replicas each (leader first) over
// the live brokers. Leaders go to the brokers leading the fewest active
// segments (loads), so partitions spread evenly; the other replicas go to
// the least-used brokers, preferring racks the partition does not use yet.
// Ties break by broker id, so the result is deterministic.
func Place(live []Broker, loads map[int32]int, n, rf int) ([][]int32, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: place %d partitions", ErrInvalidCommand, n)
	}
	if rf < 1 {
		rf = 1
	}
	if len(live) < rf {
		return nil, fmt.Errorf("%w: replication factor %d with %d live brokers", ErrNotEnoughBrokers, rf, len(live))
	}
	brokers := slices.Clone(live)
	slices.SortFunc(brokers, func(a, b Broker) int { return int(a.ID) - int(b.ID) })
	lead := map[int32]int{}
	repl := map[int32]int{}
	for _, b := range brokers {
		lead[b.ID] = loads[b.ID]
	}
	out := make([][]int32, n)
	for i := range out {
		leader := brokers[0]
		for _, b := range brokers[1:] {
			if lead[b.ID] < lead[leader.ID] {
				leader = b
			}
		}
		lead[leader.ID]++
		repl[leader.ID]++
		replicas := []int32{leader.ID}
		racks := map[string]bool{leader.Rack: true}
		for len(replicas) < rf {
			var best *Broker
			for j := range brokers {
				b := &brokers[j]
				if slices.Contains(replicas, b.ID) {
					continue
				}
				if best == nil || better(b, best, racks, repl) {
					best = b
				}
			}
			replicas = append(replicas, best.ID)
			racks[best.Rack] = true
			repl[best.ID]++
		}
		out[i] = replicas
	}
	return out, nil
}

// better reports whether a is a better next replica than b: a rack not yet
// used wins, then fewer replicas placed so far, then the lower id (the
// brokers are visited in id order, so ties keep b).
func better(a, b *Broker, racks map[string]bool, repl map[int32]int) bool {
	newA, newB := a.Rack != "" && !racks[a.Rack], b.Rack != "" && !racks[b.Rack]
	if newA != newB {
		return newA
	}
	return repl[a.ID] < repl[b.ID]
}
