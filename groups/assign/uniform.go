package assign

import "sort"

// Uniform spreads the partitions of all subscribed topics over the members
// as evenly as their subscriptions allow. When every member subscribes to
// the same topics, member counts differ by at most one and a member loses
// partitions of its current target only to make that true (the members
// that keep the most keep one extra). Otherwise it keeps what it can and
// then moves partitions, one at a time, from a member to a less loaded
// member subscribed to the topic while they differ by more than one.
func Uniform(members []Member, topics map[string]Topic, current Assignment) Assignment {
	p := prepare(members, topics, current)
	if len(p.ids) == 0 {
		return Assignment{}
	}
	if p.homogeneous() {
		return p.uniformHomogeneous()
	}
	return p.uniformHeterogeneous()
}

func (p *prepared) uniformHomogeneous() Assignment {
	n, m := len(p.all), len(p.ids)
	base, extra := n/m, n%m
	order := append([]string(nil), p.ids...)
	sort.SliceStable(order, func(i, j int) bool { return len(p.kept[order[i]]) > len(p.kept[order[j]]) })
	quota := make(map[string]int, m)
	for i, id := range order {
		quota[id] = base
		if i < extra {
			quota[id]++
		}
	}
	owned := make(map[string][]tpart, m)
	taken := make(map[tpart]bool, n)
	for _, id := range p.ids {
		k := p.kept[id]
		if len(k) > quota[id] {
			k = k[:quota[id]]
		}
		owned[id] = append([]tpart(nil), k...)
		for _, tp := range k {
			taken[tp] = true
		}
	}
	for _, tp := range p.all {
		if taken[tp] {
			continue
		}
		best := ""
		for _, id := range p.ids {
			if len(owned[id]) >= quota[id] {
				continue
			}
			if best == "" || len(owned[id]) < len(owned[best]) {
				best = id
			}
		}
		owned[best] = append(owned[best], tp)
	}
	return build(p.ids, owned)
}

func (p *prepared) uniformHeterogeneous() Assignment {
	// Members by index (p.ids order), subscribers by topic name, owners
	// by partition index in p.all: slices, as this runs for every new
	// group epoch under the group's lock.
	index := make(map[string]int, len(p.ids))
	for i, id := range p.ids {
		index[id] = i
	}
	subscribers := make(map[string][]int)
	for i, id := range p.ids {
		for name := range p.subs[id] {
			subscribers[name] = append(subscribers[name], i)
		}
	}
	pos := make(map[tpart]int, len(p.all))
	for i, tp := range p.all {
		pos[tp] = i
	}
	owner := make([]int, len(p.all))
	for i := range owner {
		owner[i] = -1
	}
	count := make([]int, len(p.ids))
	for _, id := range p.ids {
		for _, tp := range p.kept[id] {
			owner[pos[tp]] = index[id]
			count[index[id]]++
		}
	}
	// least is the subscriber of topic name with the fewest partitions
	// (ties: the lowest id), -1 when nobody subscribes. Subscribers are
	// in id order.
	least := func(name string) int {
		best := -1
		for _, i := range subscribers[name] {
			if best < 0 || count[i] < count[best] {
				best = i
			}
		}
		return best
	}
	for i, tp := range p.all {
		if owner[i] >= 0 {
			continue
		}
		if m := least(tp.name); m >= 0 {
			owner[i] = m
			count[m]++
		}
	}
	// Balance: every move lowers the sum of squared counts, so this ends.
	for moved := true; moved; {
		moved = false
		for i := len(p.all) - 1; i >= 0; i-- {
			from := owner[i]
			to := least(p.all[i].name)
			if count[to] < count[from]-1 {
				owner[i] = to
				count[from]--
				count[to]++
				moved = true
			}
		}
	}
	owned := make(map[string][]tpart, len(p.ids))
	for i, tp := range p.all {
		if m := owner[i]; m >= 0 {
			owned[p.ids[m]] = append(owned[p.ids[m]], tp)
		}
	}
	return build(p.ids, owned)
}
