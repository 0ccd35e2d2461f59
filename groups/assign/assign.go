// Package assign holds the server-side assignors of KIP-848 consumer
// groups (docs/groups-next.md, part A): pure functions from the members'
// subscriptions, a topic image and the current target assignment to the
// next target assignment. Both are sticky (a member keeps the partitions
// of its current target that it can keep) and deterministic (the result
// depends only on the inputs, never on map iteration order).
//
// Racks are carried on Member but not used yet: the topic image the
// coordinator gets (groups.TopicImage) has no replica racks, so neither
// assignor is rack-aware.
package assign

import (
	"sort"
)

// TopicID is a topic's UUID.
type TopicID = [16]byte

// Member is one group member as an assignor sees it.
type Member struct {
	ID     string
	Rack   string   // "" when the client gave none; unused (see package doc)
	Topics []string // subscribed topic names (regexes already resolved)
}

// Topic is one topic of the image: its id and partition count.
type Topic struct {
	ID         TopicID
	Partitions int32
}

// Partitions is one member's assignment: topic id → partitions, each
// slice sorted ascending and without duplicates.
type Partitions map[TopicID][]int32

// Assignment is a target assignment: member id → its partitions.
type Assignment map[string]Partitions

// Func is an assignor: members (any order), the topics by name (those
// that exist; subscribed names missing here are ignored), and the current
// target (nil for none) → the new target. The result has one entry, maybe
// empty, per member, and assigns every partition of a subscribed topic
// to exactly one member subscribed to it.
type Func func(members []Member, topics map[string]Topic, current Assignment) Assignment

// Assignor names as clients send them (ServerAssignor); uniform is the
// default.
const (
	UniformName = "uniform"
	RangeName   = "range"
)

// ByName returns the assignor a ConsumerGroupHeartbeat's ServerAssignor
// names, and false for a name Tusk does not know (UNSUPPORTED_ASSIGNOR).
func ByName(name string) (Func, bool) {
	switch name {
	case UniformName:
		return Uniform, true
	case RangeName:
		return Range, true
	}
	return nil, false
}

// Names are the server assignors Tusk has, the default first.
func Names() []string { return []string{UniformName, RangeName} }

// Count is the number of partitions in p.
func (p Partitions) Count() int {
	n := 0
	for _, ps := range p {
		n += len(ps)
	}
	return n
}

// Clone returns a deep copy of p.
func (p Partitions) Clone() Partitions {
	c := make(Partitions, len(p))
	for id, ps := range p {
		c[id] = append([]int32(nil), ps...)
	}
	return c
}

// Equal reports whether p and o hold the same partitions (empty topic
// entries ignored).
func (p Partitions) Equal(o Partitions) bool {
	if p.Count() != o.Count() {
		return false
	}
	for id, ps := range p {
		qs := o[id]
		if len(ps) != len(qs) {
			return false
		}
		for i := range ps {
			if ps[i] != qs[i] {
				return false
			}
		}
	}
	return true
}

// Has reports whether p holds partition part of topic id.
func (p Partitions) Has(id TopicID, part int32) bool {
	ps := p[id]
	i := sort.Search(len(ps), func(i int) bool { return ps[i] >= part })
	return i < len(ps) && ps[i] == part
}

// tpart is one topic partition; name orders topics deterministically.
type tpart struct {
	name string
	id   TopicID
	part int32
}

func less(a, b tpart) bool {
	if a.name != b.name {
		return a.name < b.name
	}
	return a.part < b.part
}

// prepared is what both assignors start from.
type prepared struct {
	ids     []string                       // member ids, sorted
	subs    map[string]map[string]struct{} // member → subscribed topics that exist
	byID    map[TopicID]string             // topic id → name, subscribed topics only
	all     []tpart                        // every partition of a subscribed topic, sorted
	kept    map[string][]tpart             // member → valid current partitions, sorted
	members map[string]Member
}

// prepare sorts the members, resolves subscriptions against topics and
// keeps of current only what is still valid: a partition of a topic (same
// id) the member still subscribes to, below the partition count, not
// already kept by a member earlier in id order.
func prepare(members []Member, topics map[string]Topic, current Assignment) *prepared {
	p := &prepared{
		subs:    make(map[string]map[string]struct{}, len(members)),
		byID:    make(map[TopicID]string),
		kept:    make(map[string][]tpart, len(members)),
		members: make(map[string]Member, len(members)),
	}
	for _, m := range members {
		if _, dup := p.members[m.ID]; dup {
			continue
		}
		p.members[m.ID] = m
		p.ids = append(p.ids, m.ID)
		s := make(map[string]struct{}, len(m.Topics))
		for _, name := range m.Topics {
			t, ok := topics[name]
			if !ok {
				continue
			}
			s[name] = struct{}{}
			p.byID[t.ID] = name
		}
		p.subs[m.ID] = s
	}
	sort.Strings(p.ids)
	names := make([]string, 0, len(p.byID))
	for _, name := range p.byID {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := topics[name]
		for i := int32(0); i < t.Partitions; i++ {
			p.all = append(p.all, tpart{name, t.ID, i})
		}
	}
	taken := make(map[tpart]bool)
	for _, id := range p.ids {
		for tid, parts := range current[id] {
			name, ok := p.byID[tid]
			if !ok {
				continue
			}
			if _, ok := p.subs[id][name]; !ok {
				continue
			}
			for _, part := range parts {
				tp := tpart{name, tid, part}
				if part < 0 || part >= topics[name].Partitions || taken[tp] {
					continue
				}
				taken[tp] = true
				p.kept[id] = append(p.kept[id], tp)
			}
		}
		sort.Slice(p.kept[id], func(i, j int) bool { return less(p.kept[id][i], p.kept[id][j]) })
	}
	return p
}

// homogeneous reports whether every member subscribes to the same topics.
func (p *prepared) homogeneous() bool {
	for _, id := range p.ids[1:] {
		a, b := p.subs[p.ids[0]], p.subs[id]
		if len(a) != len(b) {
			return false
		}
		for name := range a {
			if _, ok := b[name]; !ok {
				return false
			}
		}
	}
	return true
}

func build(ids []string, owned map[string][]tpart) Assignment {
	out := make(Assignment, len(ids))
	for _, id := range ids {
		ps := make(Partitions)
		for _, tp := range owned[id] {
			ps[tp.id] = append(ps[tp.id], tp.part)
		}
		for _, parts := range ps {
			sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		}
		out[id] = ps
	}
	return out
}
