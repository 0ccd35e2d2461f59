package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Precondition failures. A command that fails one changes nothing.
var (
	ErrTopicExists        = errors.New("metadata: topic already exists")
	ErrUnknownTopic       = errors.New("metadata: unknown topic")
	ErrPreconditionFailed = errors.New("metadata: precondition failed")
	ErrInvalidCommand     = errors.New("metadata: invalid command")
	ErrTopicCollision     = errors.New("metadata: topic name collision")
)

// TopicID is a topic's UUID.
type TopicID [16]byte

// IsZero reports an unset ID.
func (id TopicID) IsZero() bool { return id == TopicID{} }

// Topic is one topic's metadata.
type Topic struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Partitions int32             `json:"partitions"` // len(Parts)
	Configs    map[string]string `json:"configs,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
	Parts      []Partition       `json:"parts"`
	// RF is the replication factor the topic was created with (0 in
	// metadata written before it was recorded: see ReplicationFactor).
	RF int `json:"rf,omitempty"`
}

// ReplicationFactor is how many replicas each partition should have.
func (t Topic) ReplicationFactor() int {
	if t.RF > 0 {
		return t.RF
	}
	rf := 1
	for _, p := range t.Parts {
		for _, s := range p.Segments {
			rf = max(rf, len(s.Replicas))
		}
	}
	return rf
}

func (t *Topic) clone() *Topic {
	c := *t
	c.Configs = maps.Clone(t.Configs)
	c.Parts = make([]Partition, len(t.Parts))
	for i, p := range t.Parts {
		c.Parts[i] = p.clone()
	}
	return &c
}

// Leader returns partition p's leader and leader epoch (its active
// segment's), or -1, -1.
func (t Topic) Leader(p int32) (leader, epoch int32) {
	if p < 0 || int(p) >= len(t.Parts) {
		return -1, -1
	}
	a := t.Parts[p].Active()
	return a.Leader, a.Epoch
}

// stateVersion is the snapshot format version.
const stateVersion = 2

// state is the serializable FSM state.
type state struct {
	Version        int               `json:"version"`
	Topics         map[string]*Topic `json:"topics"`
	NextProducerID int64             `json:"next_producer_id"`
	NextSegmentID  int64             `json:"next_segment_id"`
	ClusterID      string            `json:"cluster_id"`
	Brokers        map[int32]*Broker `json:"brokers"`
	Configs        map[string]string `json:"configs,omitempty"`
}

// FSM is the metadata state machine.
type FSM struct {
	mu      sync.RWMutex
	st      state
	applied uint64        // index of the last applied log entry
	changed chan struct{} // closed and replaced on every change
}

// NewFSM returns an empty state machine.
func NewFSM() *FSM {
	return &FSM{st: emptyState(), changed: make(chan struct{})}
}

func emptyState() state {
	return state{Version: stateVersion, Topics: map[string]*Topic{}, Brokers: map[int32]*Broker{}}
}

// Changed returns a channel that is closed at the next change of the state
// (an applied command or a restore).
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// AppliedIndex is the log index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// notify wakes Changed waiters. f.mu held for writing.
func (f *FSM) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// WaitApplied waits until the FSM has applied log index.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		applied, ch := f.applied, f.changed
		f.mu.RUnlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("metadata: wait for index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

func (f *FSM) activeReplicas(id int32) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return activeReplicas(&f.st, id)
}

// Broker returns a copy of one broker's registration.
func (f *FSM) Broker(id int32) (Broker, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.st.Brokers[id]
	if !ok {
		return Broker{}, false
	}
	return *b, true
}

// Brokers returns copies of all registered brokers sorted by id.
func (f *FSM) Brokers() []Broker {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Broker, 0, len(f.st.Brokers))
	for _, b := range f.st.Brokers {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b Broker) int { return int(a.ID) - int(b.ID) })
	return out
}

// ClusterConfigs returns a copy of the cluster-wide config overrides.
func (f *FSM) ClusterConfigs() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.st.Configs)
}

// Loads counts, per broker, the active segments it leads.
func (f *FSM) Loads() map[int32]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[int32]int{}
	for _, t := range f.st.Topics {
		for _, p := range t.Parts {
			out[p.Active().Leader]++
		}
	}
	return out
}

// Topic returns a copy of the named topic.
func (f *FSM) Topic(name string) (Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Topics[name]
	if !ok {
		return Topic{}, false
	}
	return *t.clone(), true
}

// TopicConfigValue reads, without copying the topic as Topic does, the
// named topic's override of config key (set is false when it has none) and
// whether the topic is internal; ok is false if there is no such topic. It
// is the produce path's per-request lookup.
func (f *FSM) TopicConfigValue(name, key string) (value string, set, internal, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Topics[name]
	if !ok {
		return "", false, false, false
	}
	value, set = t.Configs[key]
	return value, set, t.Internal, true
}

// PartitionLeader returns a partition's leader and leader epoch (its
// active segment's) without copying the topic.
func (f *FSM) PartitionLeader(name string, p int32) (leader, epoch int32, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Topics[name]
	if !ok || p < 0 || int(p) >= len(t.Parts) {
		return -1, -1, false
	}
	a := t.Parts[p].Active()
	if a.State == SegmentFenced {
		return -1, a.Epoch, true // failing over: no one may append
	}
	return a.Leader, a.Epoch, true
}

// TopicByID returns a copy of the topic with the given ID.
func (f *FSM) TopicByID(id TopicID) (Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, t := range f.st.Topics {
		if t.ID == id {
			return *t.clone(), true
		}
	}
	return Topic{}, false
}

// Topics returns copies of all topics sorted by name.
func (f *FSM) Topics() []Topic {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Topic, 0, len(f.st.Topics))
	for _, t := range f.st.Topics {
		out = append(out, *t.clone())
	}
	slices.SortFunc(out, func(a, b Topic) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// NextProducerID is the first producer id not yet handed out.
func (f *FSM) NextProducerID() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.NextProducerID
}

// ClusterID is the cluster's ID, "" before InitCluster.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.ClusterID
}

// Apply applies one command. It is deterministic: the same commands in the
// same order give the same state on every node.
func (f *FSM) Apply(c Command) error {
	return f.ApplyAt(c, 0)
}

// ApplyAt applies one command as log entry index (0: the next index). An
// entry whose command fails validation (Validate) or its preconditions
// changes nothing but still counts as applied.
func (f *FSM) ApplyAt(c Command, index uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index == 0 {
		index = f.applied + 1
	}
	err := Validate(c)
	if err == nil {
		err = c.apply(&f.st)
	}
	f.applied = index
	f.notify()
	return err
}

// Snapshot serializes the state.
func (f *FSM) Snapshot() ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(&f.st)
	if err != nil {
		return nil, fmt.Errorf("metadata: snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(b []byte) error {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("metadata: restore: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("metadata: restore: unsupported snapshot version %d", st.Version)
	}
	if st.Topics == nil {
		st.Topics = map[string]*Topic{}
	}
	if st.Brokers == nil {
		st.Brokers = map[int32]*Broker{}
	}
	// Commands dereference every entry: a null one (never written by this
	// code) is dropped rather than crash them.
	maps.DeleteFunc(st.Topics, func(_ string, t *Topic) bool { return t == nil })
	maps.DeleteFunc(st.Brokers, func(_ int32, b *Broker) bool { return b == nil })
	f.mu.Lock()
	f.st = st
	f.notify()
	f.mu.Unlock()
	return nil
}

// Dump renders the metadata canonically (sorted keys, indented) for
// comparisons across nodes and restarts. Broker addresses and liveness,
// which change with every start, are left out; broker ids and racks stay.
func (f *FSM) Dump() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	type dumpBroker struct {
		ID   int32  `json:"id"`
		Rack string `json:"rack,omitempty"`
	}
	d := struct {
		ClusterID      string            `json:"cluster_id"`
		NextProducerID int64             `json:"next_producer_id"`
		NextSegmentID  int64             `json:"next_segment_id"`
		Configs        map[string]string `json:"configs"`
		Brokers        []dumpBroker      `json:"brokers"`
		Topics         map[string]*Topic `json:"topics"`
	}{f.st.ClusterID, f.st.NextProducerID, f.st.NextSegmentID, f.st.Configs, nil, f.st.Topics}
	for _, b := range f.st.Brokers {
		d.Brokers = append(d.Brokers, dumpBroker{b.ID, b.Rack})
	}
	slices.SortFunc(d.Brokers, func(a, b dumpBroker) int { return int(a.ID) - int(b.ID) })
	out, err := json.MarshalIndent(d, "", " ")
	if err != nil { // only plain data: cannot fail
		panic(fmt.Sprintf("metadata: dump: %v", err))
	}
	return out
}
