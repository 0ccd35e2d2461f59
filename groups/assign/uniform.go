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
	owner := make(map[tpart]string, len(p.all))
	count := make(map[string]int, len(p.ids))
	for _, id := range p.ids {
		for _, tp := range p.kept[id] {
			owner[tp] = id
			count[id]++
		}
	}
	// least is the subscriber of tp with the fewest partitions (ties:
	// the lowest id), "" when nobody subscribes.
	least := func(tp tpart) string {
		best := ""
		for _, id := range p.ids {
			if _, ok := p.subs[id][tp.name]; !ok {
				continue
			}
			if best == "" || count[id] < count[best] {
				best = id
			}
		}
		return best
	}
	for _, tp := range p.all {
		if _, ok := owner[tp]; ok {
			continue
		}
		if id := least(tp); id != "" {
			owner[tp] = id
			count[id]++
		}
	}
	// Balance: every move lowers the sum of squared counts, so this ends.
	for moved := true; moved; {
		moved = false
		for i := len(p.all) - 1; i >= 0; i-- {
			tp := p.all[i]
			from := owner[tp]
			to := least(tp)
			if count[to] < count[from]-1 {
				owner[tp] = to
				count[from]--
				count[to]++
				moved = true
			}
		}
	}
	owned := make(map[string][]tpart, len(p.ids))
	for _, tp := range p.all {
		if id, ok := owner[tp]; ok {
			owned[id] = append(owned[id], tp)
		}
	}
	return build(p.ids, owned)
}
