package groupinfo

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/console"
)

// List lists every group with its type: ListGroups (v5) filtered by each
// type in turn. Partial answers (a node that did not answer) are kept
// when some groups were listed.
func List(ctx context.Context, adm *kadm.Client) ([]console.GroupSummary, error) {
	out := []console.GroupSummary{}
	var firstErr error
	for _, typ := range []string{console.GroupClassic, console.GroupConsumer, console.GroupShare} {
		listed, err := adm.ListGroupsByType(ctx, []string{typ})
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("groupinfo: list %s groups: %w", typ, err)
		}
		for _, g := range listed.Sorted() {
			out = append(out, console.GroupSummary{Group: g.Group, Type: typ, State: g.State, ProtocolType: g.ProtocolType,
				Coordinator: g.Coordinator})
		}
	}
	if firstErr != nil && len(out) == 0 {
		return nil, firstErr
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// Describe describes one group of any type with its lag per partition;
// console.ErrNotFound if no group of any type has that id.
func Describe(ctx context.Context, adm *kadm.Client, id string) (console.Group, error) {
	// DescribeGroups alone first: kadm's Lag would also fetch and list
	// offsets for a group that turns out not to be classic.
	dgs, err := adm.DescribeGroups(ctx, id)
	dg, ok := dgs[id]
	switch {
	case !ok && err != nil:
		return console.Group{}, fmt.Errorf("groupinfo: describe classic group: %w", err)
	case ok && dg.Err != nil && !errors.Is(dg.Err, kerr.GroupIDNotFound):
		return console.Group{}, fmt.Errorf("groupinfo: describe classic group: %w", dg.Err)
	case ok && dg.Err == nil && dg.State != "Dead":
		lags, err := adm.Lag(ctx, id)
		if err != nil {
			return console.Group{}, fmt.Errorf("groupinfo: classic group lag: %w", err)
		}
		l, ok := lags[id]
		if !ok || errors.Is(l.DescribeErr, kerr.GroupIDNotFound) || l.State == "Dead" {
			return console.Group{}, console.ErrNotFound // deleted in between
		}
		if l.DescribeErr != nil {
			return console.Group{}, fmt.Errorf("groupinfo: describe classic group: %w", l.DescribeErr)
		}
		return classic(id, l), nil
	}
	cgs, err := adm.DescribeConsumerGroups(ctx, id)
	cg, ok := cgs[id]
	switch {
	case !ok && err != nil:
		return console.Group{}, fmt.Errorf("groupinfo: describe consumer group: %w", err)
	case ok && cg.Err == nil:
		return consumer(ctx, adm, cg)
	case ok && !errors.Is(cg.Err, kerr.GroupIDNotFound):
		return console.Group{}, fmt.Errorf("groupinfo: describe consumer group: %w", cg.Err)
	}
	sgs, err := adm.DescribeShareGroups(ctx, id)
	sg, ok := sgs[id]
	switch {
	case !ok && err != nil:
		return console.Group{}, fmt.Errorf("groupinfo: describe share group: %w", err)
	case ok && sg.Err == nil:
		return share(ctx, adm, sg)
	case ok && !errors.Is(sg.Err, kerr.GroupIDNotFound):
		return console.Group{}, fmt.Errorf("groupinfo: describe share group: %w", sg.Err)
	}
	return console.Group{}, console.ErrNotFound
}

func newGroup(id, typ, state string, coordinator int32) console.Group {
	return console.Group{Group: id, Type: typ, State: state, Coordinator: coordinator,
		Members: []console.GroupMember{}, Lag: []console.PartitionLag{}}
}

func classic(id string, l kadm.DescribedGroupLag) console.Group {
	g := newGroup(id, console.GroupClassic, l.State, l.Coordinator.NodeID)
	g.ProtocolType, g.Protocol = l.ProtocolType, l.Protocol
	if l.FetchErr != nil {
		g.Error = "fetch offsets: " + l.FetchErr.Error()
	}
	for _, m := range l.Members {
		gm := console.GroupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignments: []console.Assignment{}}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				ps := append([]int32(nil), t.Partitions...)
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				gm.Assignments = append(gm.Assignments, console.Assignment{Topic: t.Topic, Partitions: ps})
			}
			sort.Slice(gm.Assignments, func(i, j int) bool { return gm.Assignments[i].Topic < gm.Assignments[j].Topic })
		}
		g.Members = append(g.Members, gm)
	}
	for _, ml := range l.Lag.Sorted() {
		pl := console.PartitionLag{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, End: ml.End.Offset, Lag: ml.Lag}
		if ml.Member != nil {
			pl.MemberID = ml.Member.MemberID
		}
		if ml.Err != nil {
			pl.Error = ml.Err.Error()
		}
		if pl.Lag >= 0 {
			g.TotalLag += pl.Lag
		}
		g.Lag = append(g.Lag, pl)
	}
	return g
}

// assignments turns a kadm.TopicsSet into sorted console assignments.
func assignments(s kadm.TopicsSet) []console.Assignment {
	out := []console.Assignment{}
	for _, t := range s.Sorted() {
		ps := append([]int32(nil), t.Partitions...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		out = append(out, console.Assignment{Topic: t.Topic, Partitions: ps})
	}
	return out
}

type topicPartition struct {
	topic     string
	partition int32
}

// position is what a group has on one partition: its committed (or
// share-partition start) offset, -1 for none, and who is assigned it.
type position struct {
	at     int64
	member string
	lag    int64 // share groups: the broker's lag (-1 unknown)
}

func consumer(ctx context.Context, adm *kadm.Client, cg kadm.DescribedConsumerGroup) (console.Group, error) {
	g := newGroup(cg.Group, console.GroupConsumer, cg.State, cg.Coordinator.NodeID)
	g.GroupEpoch, g.AssignmentEpoch, g.Assignor = cg.Epoch, cg.AssignmentEpoch, cg.AssignorName
	pos := map[topicPartition]position{}
	for _, m := range cg.Members {
		gm := console.GroupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, MemberEpoch: m.MemberEpoch,
			Assignments: assignments(m.Assignment), SubscribedTopics: m.SubscribedTopics}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		if m.RackID != nil {
			gm.Rack = *m.RackID
		}
		if m.SubscribedTopicRegex != nil {
			gm.SubscribedRegex = *m.SubscribedTopicRegex
		}
		if target := assignments(m.TargetAssignment); fmt.Sprint(target) != fmt.Sprint(gm.Assignments) {
			gm.TargetAssignments = target
		}
		for _, a := range gm.Assignments {
			for _, p := range a.Partitions {
				pos[topicPartition{a.Topic, p}] = position{at: -1, member: m.MemberID, lag: -1}
			}
		}
		g.Members = append(g.Members, gm)
	}
	committed, err := adm.FetchOffsets(ctx, cg.Group)
	if err != nil {
		g.Error = "fetch offsets: " + err.Error()
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil || o.At < 0 {
			return
		}
		k := topicPartition{o.Topic, o.Partition}
		p := pos[k]
		p.at = o.At
		pos[k] = p
	})
	return g, fillLag(ctx, adm, &g, pos, false)
}

func share(ctx context.Context, adm *kadm.Client, sg kadm.DescribedShareGroup) (console.Group, error) {
	g := newGroup(sg.GroupID, console.GroupShare, sg.GroupState, sg.Coordinator.NodeID)
	g.GroupEpoch, g.AssignmentEpoch, g.Assignor = sg.GroupEpoch, sg.AssignmentEpoch, sg.Assignor
	pos := map[topicPartition]position{}
	for _, m := range sg.Members {
		gm := console.GroupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, MemberEpoch: m.MemberEpoch,
			Assignments: assignments(m.Assignment), SubscribedTopics: m.SubscribedTopicNames}
		if m.RackID != nil {
			gm.Rack = *m.RackID
		}
		// Share groups hand one partition to many members: the lag row
		// names the first one (members are sorted by id).
		for _, a := range gm.Assignments {
			for _, p := range a.Partitions {
				if _, ok := pos[topicPartition{a.Topic, p}]; !ok {
					pos[topicPartition{a.Topic, p}] = position{at: -1, member: m.MemberID, lag: -1}
				}
			}
		}
		g.Members = append(g.Members, gm)
	}
	starts, err := adm.DescribeShareGroupOffsets(ctx, sg.GroupID)
	d, ok := starts[sg.GroupID]
	switch {
	case !ok && err != nil:
		g.Error = "describe share group offsets: " + err.Error()
	case ok && d.Err != nil:
		g.Error = "describe share group offsets: " + d.Err.Error()
	}
	for _, ps := range d.Offsets {
		for _, o := range ps {
			if o.Err != nil || o.StartOffset < 0 {
				continue
			}
			k := topicPartition{o.Topic, o.Partition}
			p, ok := pos[k]
			if !ok {
				p.lag = -1
			}
			p.at, p.lag = o.StartOffset, o.Lag
			pos[k] = p
		}
	}
	return g, fillLag(ctx, adm, &g, pos, true)
}

// fillLag lists the start and end offsets of pos's topics and adds g's
// lag rows, sorted by topic and partition. Without a position a consumer
// group's lag counts from the log start; a share group's is unknown.
func fillLag(ctx context.Context, adm *kadm.Client, g *console.Group, pos map[topicPartition]position, isShare bool) error {
	if len(pos) == 0 {
		return nil
	}
	set := map[string]bool{}
	var topics []string
	for k := range pos {
		if !set[k.topic] {
			set[k.topic] = true
			topics = append(topics, k.topic)
		}
	}
	sort.Strings(topics)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		if _, partial := errors.AsType[*kadm.ShardErrors](err); !partial {
			return fmt.Errorf("groupinfo: list end offsets: %w", err)
		}
	}
	var starts kadm.ListedOffsets
	if !isShare {
		starts, err = adm.ListStartOffsets(ctx, topics...)
		if err != nil {
			if _, partial := errors.AsType[*kadm.ShardErrors](err); !partial {
				return fmt.Errorf("groupinfo: list start offsets: %w", err)
			}
		}
	}
	keys := make([]topicPartition, 0, len(pos))
	for k := range pos {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].partition < keys[j].partition
	})
	for _, k := range keys {
		p := pos[k]
		pl := console.PartitionLag{Topic: k.topic, Partition: k.partition, Committed: p.at, End: -1, Lag: -1, MemberID: p.member}
		end, ok := ends.Lookup(k.topic, k.partition)
		switch {
		case !ok:
			pl.Error = "no end offset listed"
		case end.Err != nil:
			pl.Error = end.Err.Error()
		default:
			pl.End = end.Offset
			from := p.at
			if from < 0 && !isShare {
				from = 0
				if s, ok := starts.Lookup(k.topic, k.partition); ok && s.Err == nil {
					from = s.Offset
				}
			}
			switch {
			case isShare && p.lag >= 0:
				pl.Lag = p.lag
				g.TotalLag += pl.Lag
			case from >= 0:
				pl.Lag = max(0, pl.End-from)
				g.TotalLag += pl.Lag
			}
		}
		g.Lag = append(g.Lag, pl)
	}
	return nil
}
