package broker

import (
	"errors"
	"slices"
	"sync"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// Sealed segments are readable from any replica (docs/architecture.md, "Sealed
// segments: reads from any replica"):
//
//   - A consumer Fetch that reaches a node which does not lead the
//     partition is served from this node's log when the fetch offset lies
//     in a sealed segment that lists this node as a replica and whose
//     bytes this node has verified against the checksum in metadata. The
//     read stops at the segment's end. Beyond what it can serve the node
//     answers PreferredReadReplica = the active leader to a client that
//     sent a rack id (KIP-392, Fetch v11+), otherwise
//     NOT_LEADER_OR_FOLLOWER, never an empty long poll.
//   - A read_committed consumer is served only below the segment's first
//     unstable offset recorded at its seal (sealedCommittedEnd).
//   - KIP-392: the leader answers a consumer that sends a rack id, and
//     fetches from a sealed segment (read_committed: below its recorded
//     first unstable offset), with PreferredReadReplica = a live
//     replica of that segment in the consumer's rack that is also a
//     follower of the active segment fetching now (Metadata lists it),
//     unless the leader is in that rack itself.
//
// Verification reads the segment once per node and log (sealedChecks);
// until it has passed, the node sends the consumer to the leader.

// sealedRange is the part of a sealed segment this node may serve.
type sealedRange struct {
	seg metadata.Segment
	log *storage.Log
}

// sealedAt returns the sealed segment of p holding offset, if any.
func sealedAt(p metadata.Partition, offset int64) (metadata.Segment, bool) {
	for _, s := range p.Segments {
		if s.State == metadata.SegmentSealed && s.BaseOffset <= offset && offset < s.EndOffset {
			return s, true
		}
	}
	return metadata.Segment{}, false
}

// sealedSource reports whether this node, not leading t/p, serves a
// consumer fetch at offset from its own log.
func (b *Broker) sealedSource(t metadata.Topic, p int32, offset int64) (sealedRange, bool) {
	if p < 0 || p >= t.Partitions {
		return sealedRange{}, false
	}
	s, ok := sealedAt(t.Parts[p], offset)
	if !ok || !slices.Contains(s.Replicas, b.cfg.NodeID) {
		return sealedRange{}, false
	}
	l, ok := b.engine.Log(b.tp(t.Name, p))
	if !ok || l.LogStartOffset() > offset || l.LogEndOffset() < s.EndOffset {
		return sealedRange{}, false
	}
	if !b.sealed.verified(b, t.Name, p, s, l) {
		return sealedRange{}, false
	}
	return sealedRange{seg: s, log: l}, true
}

// preferredReplica is, for the leader of t/p, the node a consumer in rack
// should fetch offset from instead (-1: here). A read_committed consumer
// (committed) goes to a replica only below the segment's recorded first
// unstable offset, which is what the replica serves it
// (sealedCommittedEnd); at or above it, or when the seal did not record
// it (a failover), the leader serves it.
func (b *Broker) preferredReplica(c *conn, t metadata.Topic, p int32, offset int64, rack string, committed bool) int32 {
	if rack == "" || rack == b.cfg.Rack || p < 0 || p >= t.Partitions {
		return -1
	}
	s, ok := sealedAt(t.Parts[p], offset)
	if !ok || (committed && offset >= s.StableEnd()) {
		return -1
	}
	// The leader answers itself for a segment its log starts inside of or
	// above (retention or DeleteRecords moved the start): an offset below
	// the log start gets OFFSET_OUT_OF_RANGE here, and the rest of such a
	// segment cannot be checked against its checksum, so a follower that
	// did not verify it before does not serve it (sealedSource). Sent
	// there, the consumer would bounce between the two.
	if l, ok := b.engine.Log(b.tp(t.Name, p)); !ok || l.LogStartOffset() > s.BaseOffset {
		return -1
	}
	active := t.Parts[p].Active()
	lp := b.repl.Leader(b.tp(t.Name, p))
	if lp == nil {
		return -1
	}
	best := int32(-1)
	for _, id := range s.Replicas {
		// Only a follower fetching now: it holds the sealed range, and a
		// consumer sent to one that cannot serve would bounce between it
		// and the leader.
		if id == b.cfg.NodeID || !slices.Contains(active.Replicas, id) || (best >= 0 && id > best) || !lp.FetchingNow(id) {
			continue
		}
		if br, ok := b.store.FSM().Broker(id); ok && br.State == metadata.BrokerAlive && br.Rack == rack {
			if _, _, ok := b.endpoint(br, c); ok { // reachable on the client's listener
				best = id
			}
		}
	}
	return best
}

// trimTo drops the whole batches of data at or above end (a read of a
// sealed range stops at the segment's end; segments end on batch
// boundaries).
func trimTo(data []byte, end int64) []byte {
	n := 0
	_ = kafkaproto.SplitBatches(data, func(raw []byte, h kafkaproto.BatchHeader) error {
		if h.LastOffset() >= end {
			return errStopSplit
		}
		n += len(raw)
		return nil
	})
	return data[:n]
}

// sealedChecks remembers which sealed segments this node verified.
type sealedChecks struct {
	mu    sync.Mutex
	state map[sealedKey]sealedState
}

type sealedKey struct {
	log     *storage.Log // a recreated log is checked afresh
	segment int64
	// A committed cleaning generation, or a checksum recorded after a
	// failover seal, is checked afresh (docs/compaction.md).
	generation int32
	checksum   uint32
}

type sealedState int8

const (
	sealedChecking sealedState = iota + 1
	sealedOK
	sealedBad
)

// verified reports whether l's copy of sealed segment s has been checked
// against the segment's checksum; the first call starts the check in the
// background. A segment sealed without a checksum (a failover) passes
// once the log reaches its end.
func (c *sealedChecks) verified(b *Broker, topic string, p int32, s metadata.Segment, l *storage.Log) bool {
	k := sealedKey{l, s.ID, s.Generation, s.Checksum}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		c.state = map[sealedKey]sealedState{}
	}
	switch c.state[k] {
	case sealedOK:
		return true
	case sealedChecking, sealedBad:
		return false
	}
	c.state[k] = sealedChecking
	b.bgWG.Add(1)
	go func() {
		defer b.bgWG.Done()
		st := sealedOK
		if s.Bytes > 0 {
			crc, n, err := l.SegmentChecksum(s.BaseOffset, s.EndOffset)
			if err != nil || crc != s.Checksum || n != s.Bytes {
				st = sealedBad
				b.log.Warn().Err(err).Str("topic", topic).Int32("partition", p).Int64("segment", s.ID).
					Uint32("crc", crc).Uint32("want_crc", s.Checksum).Int64("bytes", n).Int64("want_bytes", s.Bytes).
					Msg("sealed segment differs from its checksum: not served from this replica")
			}
		}
		c.mu.Lock()
		c.state[k] = st
		c.mu.Unlock()
	}()
	return false
}

// errStopSplit ends a SplitBatches walk early.
var errStopSplit = errors.New("stop")
