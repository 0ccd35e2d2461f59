package assign

// Range assigns each topic on its own: its subscribers (by member id)
// share its partitions, each getting partitions/subscribers and the first
// partitions%subscribers of them one more, as contiguous ranges on a
// fresh group. It is sticky: a member keeps up to its quota of its current
// partitions of the topic (the lowest ones), and a member that keeps more
// than the base quota is given one of the extra slots first.
func Range(members []Member, topics map[string]Topic, current Assignment) Assignment {
	p := prepare(members, topics, current)
	if len(p.ids) == 0 {
		return Assignment{}
	}
	owned := make(map[string][]tpart, len(p.ids))
	for start := 0; start < len(p.all); {
		name := p.all[start].name
		end := start
		for end < len(p.all) && p.all[end].name == name {
			end++
		}
		parts := p.all[start:end]
		start = end

		var subs []string
		for _, id := range p.ids {
			if _, ok := p.subs[id][name]; ok {
				subs = append(subs, id)
			}
		}
		if len(subs) == 0 {
			continue
		}
		base, extra := len(parts)/len(subs), len(parts)%len(subs)
		kept := make(map[string][]tpart, len(subs))
		quota := make(map[string]int, len(subs))
		for _, id := range subs {
			for _, tp := range p.kept[id] {
				if tp.name == name {
					kept[id] = append(kept[id], tp)
				}
			}
			quota[id] = base
			if len(kept[id]) > base && extra > 0 {
				quota[id]++
				extra--
			}
		}
		for _, id := range subs {
			if extra == 0 {
				break
			}
			if quota[id] == base {
				quota[id]++
				extra--
			}
		}
		taken := make(map[int32]bool, len(parts))
		for _, id := range subs {
			k := kept[id]
			if len(k) > quota[id] {
				k = k[:quota[id]]
			}
			for _, tp := range k {
				taken[tp.part] = true
			}
			owned[id] = append(owned[id], k...)
			quota[id] -= len(k)
		}
		next := 0
		for _, id := range subs {
			for ; quota[id] > 0; quota[id]-- {
				for taken[parts[next].part] {
					next++
				}
				owned[id] = append(owned[id], parts[next])
				taken[parts[next].part] = true
			}
		}
	}
	return build(p.ids, owned)
}
