package metadata

import (
	"fmt"
	"maps"
	"slices"
)

// BrokerState is a broker's liveness as the controller last committed it.
type BrokerState string

// Broker states. Only alive brokers are listed in Metadata and lead
// partitions; the controller fences a broker whose heartbeats stopped and
// unfences it when they resume.
const (
	BrokerAlive  BrokerState = "alive"
	BrokerFenced BrokerState = "fenced"
)

// Broker is one node's registration.
type Broker struct {
	ID       int32       `json:"id"`
	Kafka    string      `json:"kafka"`    // advertised address of the first Kafka listener
	Internal string      `json:"internal"` // internal (node-to-node) listener host:port
	Raft     string      `json:"raft"`     // Raft address
	Rack     string      `json:"rack,omitempty"`
	State    BrokerState `json:"state"`
	// Listeners maps each Kafka listener's name to its advertised
	// host:port (docs/security.md); nil in registrations from before
	// named listeners, whose one address is Kafka. Read-only: a new
	// registration replaces the map.
	Listeners map[string]string `json:"listeners,omitempty"`
}

// Endpoint is the advertised address of the broker's listener name, the
// one a client connected on that listener is given; false if the broker
// has no such listener. A registration without listeners has one
// address for every listener.
func (b Broker) Endpoint(listener string) (string, bool) {
	if b.Listeners == nil {
		return b.Kafka, b.Kafka != ""
	}
	a, ok := b.Listeners[listener]
	return a, ok
}

// Same reports whether two registrations are equal, listeners included.
func (b Broker) Same(o Broker) bool {
	return b.ID == o.ID && b.Kafka == o.Kafka && b.Internal == o.Internal && b.Raft == o.Raft && b.Rack == o.Rack &&
		b.State == o.State && maps.Equal(b.Listeners, o.Listeners)
}

// SegmentState is active (accepting appends) or sealed (immutable).
type SegmentState string

// Segment states.
const (
	SegmentActive SegmentState = "active"
	SegmentSealed SegmentState = "sealed"
)

// Segment is one link of a partition's chain. The partition's leader and
// leader epoch are its active segment's.
type Segment struct {
	ID         int64        `json:"id"`
	BaseOffset int64        `json:"base"`
	EndOffset  int64        `json:"end"` // -1 while active
	Epoch      int32        `json:"epoch"`
	Leader     int32        `json:"leader"`
	Replicas   []int32      `json:"replicas"`
	State      SegmentState `json:"state"`
	// Checksum (CRC-32C) and Bytes of a sealed segment's range, as its
	// leader sealed it (0 when not recorded).
	Checksum uint32 `json:"checksum,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	// Learners of an active segment are nodes the controller chose to
	// copy the partition (from the leader's log start) because the
	// segment had fewer replicas than the topic's replication factor for
	// longer than replica.restore (re-replication, docs/architecture.md,
	// "Rotation and failover"). They do not count for the high
	// watermark; a roll takes them in once caught up
	// (RollSegment.Joined).
	Learners []int32 `json:"learners,omitempty"`
	// Generation is the cleaning generation Checksum and Bytes describe
	// (0: the bytes as written; docs/compaction.md).
	Generation int32 `json:"generation,omitempty"`
	// SealedAtMs is the wall time (ms) its seal was proposed, fixed in
	// the seal command: a compacted topic's tombstone horizon.
	SealedAtMs int64 `json:"sealed_at_ms,omitempty"`
	// Epochs is set on a segment merged from several (MergeSegments):
	// their epochs and first offsets, in order (see EpochList).
	Epochs []EpochStart `json:"epochs,omitempty"`
	// FirstUnstable is a sealed segment's first unstable offset: the
	// smallest first offset of a transaction still open at its end (the
	// end itself when none was), as the leader that sealed it by a roll
	// knew it. nil: unknown (a failover seal, or a segment sealed before
	// the field existed). A replica that does not lead the partition
	// serves read_committed fetches of the segment only below it
	// (docs/transactions.md, "Sealed segments").
	FirstUnstable *int64 `json:"first_unstable,omitempty"`
}

// StableEnd is where a read_committed read of sealed segment s from a
// replica must stop: min(its first unstable offset, its end), or its
// base when the first unstable offset is unknown.
func (s Segment) StableEnd() int64 {
	if s.FirstUnstable == nil {
		return s.BaseOffset
	}
	return max(min(*s.FirstUnstable, s.EndOffset), s.BaseOffset)
}

// Partition is an ordered chain of segments; the last one is active.
type Partition struct {
	Segments []Segment `json:"segments"`
	// Compaction (docs/compaction.md): the cleaning in flight, the last
	// committed one, and the last generation proposed.
	Clean    *Cleaning       `json:"clean,omitempty"`
	Cleaned  *CleanPartition `json:"cleaned,omitempty"`
	CleanGen int32           `json:"clean_gen,omitempty"`
	// CleanedResults are the committed checksums of Cleaned's segments,
	// as its majority reported them: a participant or a redo compares its
	// output with them, whatever merges changed in the chain since.
	CleanedResults []SegmentResult `json:"cleaned_results,omitempty"`
	// Target is the replica set an AlterPartitionReassignments asked for
	// (ReassignPartition), nil when none is in progress. The controller
	// makes the missing nodes learners, the leader's rolls take them in
	// and then drop the others (RollSegment.DropSealed), and the roll
	// whose next replicas are Target clears it (docs/operations.md,
	// "Reassigning partitions").
	Target []int32 `json:"target,omitempty"`
	// Elect is the node a preferred-leader election (ElectLeaders)
	// asked to lead; the leader's next roll hands the next segment to
	// it, and that roll clears it (docs/replication.md, "Preferred
	// leader elections"). nil: none asked.
	Elect *int32 `json:"elect,omitempty"`
}

// Active returns the partition's active (or fenced, failing over) segment.
func (p Partition) Active() Segment {
	if len(p.Segments) == 0 {
		return Segment{Leader: -1, Epoch: -1, EndOffset: -1}
	}
	return p.Segments[len(p.Segments)-1]
}

func (p Partition) clone() Partition {
	c := Partition{Segments: slices.Clone(p.Segments), CleanGen: p.CleanGen, CleanedResults: slices.Clone(p.CleanedResults), Target: slices.Clone(p.Target), Elect: p.Elect}
	if p.Clean != nil {
		cl := Cleaning{CleanPartition: p.Clean.CleanPartition.Clone(), Reports: make(map[int32]CleanReport, len(p.Clean.Reports))}
		for n, r := range p.Clean.Reports {
			r.Results = slices.Clone(r.Results)
			cl.Reports[n] = r
		}
		c.Clean = &cl
	}
	if p.Cleaned != nil {
		d := p.Cleaned.Clone()
		c.Cleaned = &d
	}
	for i := range c.Segments {
		c.Segments[i].Replicas = slices.Clone(c.Segments[i].Replicas)
		c.Segments[i].Learners = slices.Clone(c.Segments[i].Learners)
		c.Segments[i].Epochs = slices.Clone(c.Segments[i].Epochs)
	}
	return c
}

// RegisterBroker adds a broker or updates its addresses, and marks it
// alive. The controller commits it when a member's heartbeat shows
// addresses that differ from the registered ones, or a fenced broker is
// heard again.
type RegisterBroker struct {
	Broker Broker `json:"broker"`
}

func (RegisterBroker) kind() string { return "register_broker" }

func (c RegisterBroker) apply(st *state) error {
	b := c.Broker
	if b.ID < 0 || b.Kafka == "" {
		return fmt.Errorf("%w: register broker %d without a Kafka address", ErrInvalidCommand, b.ID)
	}
	b.State = BrokerAlive
	st.Brokers[b.ID] = &b
	return nil
}

// SetBrokerState moves a broker from one state to another (fence or
// unfence); it fails if the broker is no longer in From.
type SetBrokerState struct {
	ID   int32       `json:"id"`
	From BrokerState `json:"from"`
	To   BrokerState `json:"to"`
}

func (SetBrokerState) kind() string { return "set_broker_state" }

func (c SetBrokerState) apply(st *state) error {
	if c.To != BrokerAlive && c.To != BrokerFenced {
		return fmt.Errorf("%w: broker state %q", ErrInvalidCommand, c.To)
	}
	b, ok := st.Brokers[c.ID]
	if !ok {
		return fmt.Errorf("%w: unknown broker %d", ErrPreconditionFailed, c.ID)
	}
	if b.State != c.From {
		return fmt.Errorf("%w: broker %d is %s, expected %s", ErrPreconditionFailed, c.ID, b.State, c.From)
	}
	b.State = c.To
	return nil
}

// UnregisterBroker removes a broker that holds no replica of any active
// segment.
type UnregisterBroker struct {
	ID int32 `json:"id"`
}

func (UnregisterBroker) kind() string { return "unregister_broker" }

func (c UnregisterBroker) apply(st *state) error {
	if _, ok := st.Brokers[c.ID]; !ok {
		return fmt.Errorf("%w: unknown broker %d", ErrPreconditionFailed, c.ID)
	}
	if n := activeReplicas(st, c.ID); n > 0 {
		return fmt.Errorf("%w: broker %d still holds %d active segments", ErrPreconditionFailed, c.ID, n)
	}
	delete(st.Brokers, c.ID)
	return nil
}

func activeReplicas(st *state, id int32) int {
	n := 0
	for _, t := range st.Topics {
		for _, p := range t.Parts {
			if slices.Contains(p.Active().Replicas, id) {
				n++
			}
		}
	}
	return n
}

// SetClusterConfigs replaces the cluster-wide config overrides if they
// still equal Expected.
type SetClusterConfigs struct {
	Expected map[string]string `json:"expected"`
	Configs  map[string]string `json:"configs"`
}

func (SetClusterConfigs) kind() string { return "set_cluster_configs" }

func (c SetClusterConfigs) apply(st *state) error {
	if !maps.Equal(st.Configs, c.Expected) {
		return fmt.Errorf("%w: cluster configs changed concurrently", ErrPreconditionFailed)
	}
	st.Configs = maps.Clone(c.Configs)
	return nil
}

// newPartitions builds one active segment per assignment.
func newPartitions(st *state, assignments [][]int32) ([]Partition, error) {
	parts := make([]Partition, len(assignments))
	for i, replicas := range assignments {
		if len(replicas) == 0 {
			return nil, fmt.Errorf("%w: partition %d has no replicas", ErrInvalidCommand, i)
		}
		seen := map[int32]bool{}
		for _, r := range replicas {
			if _, ok := st.Brokers[r]; !ok {
				return nil, fmt.Errorf("%w: partition %d placed on unknown broker %d", ErrPreconditionFailed, i, r)
			}
			if seen[r] {
				return nil, fmt.Errorf("%w: partition %d lists broker %d twice", ErrInvalidCommand, i, r)
			}
			seen[r] = true
		}
		parts[i] = Partition{Segments: []Segment{{
			ID: st.NextSegmentID + int64(i), BaseOffset: 0, EndOffset: -1, Epoch: 0,
			Leader: replicas[0], Replicas: slices.Clone(replicas), State: SegmentActive,
		}}}
	}
	return parts, nil
}
