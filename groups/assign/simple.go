package assign

import "sort"

// SimpleName is the share-group assignor's name as ShareGroupDescribe
// reports it.
const SimpleName = "simple"

// Simple is KIP-932's share-group assignor (docs/groups-next.md, part B
// "Membership"). Unlike a consumer-group assignor, a partition may go to
// several members: each topic is assigned on its own among its
// subscribers S (P partitions):
//
//   - |S| <= P: every partition to exactly one subscriber; counts differ
//     by at most one.
//   - |S| > P: every subscriber gets exactly one partition of the topic;
//     the number of members per partition differs by at most one.
//
// Every partition of a subscribed topic is assigned. It is sticky (a
// member keeps what it had as far as the bounds above allow) and
// deterministic. It is not registered in ByName: consumer groups cannot
// name it.
func Simple(members []Member, topics map[string]Topic, current Assignment) Assignment {
	p := prepareShared(members, topics, current)
	owned := make(map[string][]tpart, len(p.ids))
	names := make([]string, 0, len(p.byID))
	for _, name := range p.byID {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := topics[name]
		var subs []string
		for _, id := range p.ids {
			if _, ok := p.subs[id][name]; ok {
				subs = append(subs, id)
			}
		}
		var got map[string][]int32
		if len(subs) <= int(t.Partitions) {
			got = simpleSpread(subs, t.Partitions, p.keptOf(name))
		} else {
			got = simpleShare(subs, t.Partitions, p.keptOf(name))
		}
		for _, id := range subs {
			for _, part := range got[id] {
				owned[id] = append(owned[id], tpart{name, t.ID, part})
			}
		}
	}
	return build(p.ids, owned)
}

// sharedPrep is prepare without the rule that a partition is kept by one
// member only (share groups may share partitions).
type sharedPrep struct {
	ids  []string
	subs map[string]map[string]struct{}
	byID map[TopicID]string
	// kept: member → topic name → valid current partitions, sorted.
	kept map[string]map[string][]int32
}

func prepareShared(members []Member, topics map[string]Topic, current Assignment) *sharedPrep {
	p := &sharedPrep{
		subs: make(map[string]map[string]struct{}, len(members)),
		byID: make(map[TopicID]string),
		kept: make(map[string]map[string][]int32, len(members)),
	}
	for _, m := range members {
		if _, dup := p.subs[m.ID]; dup {
			continue
		}
		p.ids = append(p.ids, m.ID)
		s := make(map[string]struct{}, len(m.Topics))
		for _, name := range m.Topics {
			t, ok := topics[name]
			if !ok || t.Partitions <= 0 {
				continue
			}
			s[name] = struct{}{}
			p.byID[t.ID] = name
		}
		p.subs[m.ID] = s
	}
	sort.Strings(p.ids)
	for _, id := range p.ids {
		k := make(map[string][]int32)
		for tid, parts := range current[id] {
			name, ok := p.byID[tid]
			if !ok {
				continue
			}
			if _, ok := p.subs[id][name]; !ok {
				continue
			}
			seen := make(map[int32]bool, len(parts))
			for _, part := range parts {
				if part < 0 || part >= topics[name].Partitions || seen[part] {
					continue
				}
				seen[part] = true
				k[name] = append(k[name], part)
			}
			sort.Slice(k[name], func(i, j int) bool { return k[name][i] < k[name][j] })
		}
		p.kept[id] = k
	}
	return p
}

// keptOf is every member's valid current partitions of one topic.
func (p *sharedPrep) keptOf(name string) map[string][]int32 {
	out := make(map[string][]int32, len(p.ids))
	for _, id := range p.ids {
		if ps := p.kept[id][name]; len(ps) > 0 {
			out[id] = ps
		}
	}
	return out
}

// simpleSpread gives each of n partitions to exactly one of subs
// (len(subs) <= n, sorted): quotas n/len(subs), the members keeping the
// most getting the extra ones; a member keeps the lowest of its current
// partitions up to its quota that no member earlier in id order kept.
func simpleSpread(subs []string, n int32, kept map[string][]int32) map[string][]int32 {
	taken := make(map[int32]bool, n)
	keep := make(map[string][]int32, len(subs))
	for _, id := range subs {
		for _, part := range kept[id] {
			if !taken[part] {
				taken[part] = true
				keep[id] = append(keep[id], part)
			}
		}
	}
	base, extra := int(n)/len(subs), int(n)%len(subs)
	order := append([]string(nil), subs...)
	sort.SliceStable(order, func(i, j int) bool { return len(keep[order[i]]) > len(keep[order[j]]) })
	quota := make(map[string]int, len(subs))
	for i, id := range order {
		quota[id] = base
		if i < extra {
			quota[id]++
		}
	}
	for _, id := range subs {
		if len(keep[id]) > quota[id] {
			for _, part := range keep[id][quota[id]:] {
				taken[part] = false
			}
			keep[id] = keep[id][:quota[id]]
		}
	}
	next := int32(0)
	for _, id := range subs {
		for len(keep[id]) < quota[id] {
			for taken[next] {
				next++
			}
			taken[next] = true
			keep[id] = append(keep[id], next)
		}
		sort.Slice(keep[id], func(i, j int) bool { return keep[id][i] < keep[id][j] })
	}
	return keep
}

// simpleShare gives each of subs (len(subs) > n, sorted) exactly one of
// n partitions, each partition to len(subs)/n or one more members (the
// partitions most members keep take the extra ones); a member keeps the
// lowest of its current partitions while that partition has room.
func simpleShare(subs []string, n int32, kept map[string][]int32) map[string][]int32 {
	base, extra := len(subs)/int(n), len(subs)%int(n)
	want := make([]int, n)
	for _, id := range subs {
		if ps := kept[id]; len(ps) > 0 {
			want[ps[0]]++
		}
	}
	parts := make([]int32, n)
	for i := range parts {
		parts[i] = int32(i)
	}
	sort.SliceStable(parts, func(i, j int) bool { return want[parts[i]] > want[parts[j]] })
	limit := make([]int, n)
	for i, part := range parts {
		limit[part] = base
		if i < extra {
			limit[part]++
		}
	}
	count := make([]int, n)
	out := make(map[string][]int32, len(subs))
	var unassigned []string
	for _, id := range subs {
		if ps := kept[id]; len(ps) > 0 && count[ps[0]] < limit[ps[0]] {
			count[ps[0]]++
			out[id] = []int32{ps[0]}
			continue
		}
		unassigned = append(unassigned, id)
	}
	for _, id := range unassigned {
		best := int32(-1)
		for part := int32(0); part < n; part++ {
			if count[part] >= limit[part] {
				continue
			}
			if best < 0 || count[part] < count[best] {
				best = part
			}
		}
		count[best]++
		out[id] = []int32{best}
	}
	return out
}
