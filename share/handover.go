package share

import (
	"fmt"
	"time"
)

// HandoverBatch is a range of offsets in the same in-memory state,
// acquisition locks included.
type HandoverBatch struct {
	First, Last   int64
	State         State
	DeliveryCount int16
	Member        string    // the acquiring member, when Acquired
	Deadline      time.Time // the lock deadline, when Acquired
	Gap           bool      // the log has no records here (Archived)
}

// Handover is the whole in-memory state of a share-partition, for a
// segment roll: unlike a Snapshot it keeps acquired records acquired, by
// the same member and with the same lock deadline, so the next leader
// redelivers nothing and extends no lock. Batches cover [StartOffset,
// SPEO) without holes.
type Handover struct {
	StartOffset int64
	Batches     []HandoverBatch
}

// Handover returns the partition's state for the next leader.
func (p *Partition) Handover() Handover {
	h := Handover{StartOffset: p.spso}
	for i := range p.recs {
		r := &p.recs[i]
		o := p.spso + int64(i)
		if k := len(h.Batches); k > 0 {
			b := &h.Batches[k-1]
			if b.Last == o-1 && b.State == r.state && b.DeliveryCount == r.count && b.Member == r.member && b.Deadline.Equal(r.deadline) && b.Gap == r.gap {
				b.Last = o
				continue
			}
		}
		h.Batches = append(h.Batches, HandoverBatch{First: o, Last: o, State: r.state, DeliveryCount: r.count, Member: r.member, Deadline: r.deadline, Gap: r.gap})
	}
	return h
}

// FromHandover builds the next leader's Partition from the previous
// leader's Handover.
func FromHandover(cfg Config, h Handover) (*Partition, error) {
	if h.StartOffset < 0 {
		return nil, fmt.Errorf("share: handover: start offset %d", h.StartOffset)
	}
	p := &Partition{cfg: cfg.withDefaults(), spso: h.StartOffset}
	for i, b := range h.Batches {
		if b.First != p.SPEO() || b.Last < b.First {
			return nil, fmt.Errorf("share: handover: batch %d [%d, %d] does not start at %d", i, b.First, b.Last, p.SPEO())
		}
		switch {
		case b.State == Acquired && (b.Member == "" || b.Deadline.IsZero()):
			return nil, fmt.Errorf("share: handover: batch %d [%d, %d] acquired without member or deadline", i, b.First, b.Last)
		case b.State != Acquired && (b.Member != "" || !b.Deadline.IsZero()):
			return nil, fmt.Errorf("share: handover: batch %d [%d, %d] %v with a member or deadline", i, b.First, b.Last, b.State)
		case b.Gap && b.State != Archived:
			return nil, fmt.Errorf("share: handover: batch %d [%d, %d] gap %v", i, b.First, b.Last, b.State)
		case b.State != Available && b.State != Acquired && b.State != Acknowledged && b.State != Archived:
			return nil, fmt.Errorf("share: handover: batch %d [%d, %d] state %d", i, b.First, b.Last, b.State)
		}
		for o := b.First; o <= b.Last; o++ {
			p.recs = append(p.recs, rec{state: b.State, gap: b.Gap, count: b.DeliveryCount, member: b.Member, deadline: b.Deadline})
		}
	}
	p.finish(p.spso)
	return p, nil
}
