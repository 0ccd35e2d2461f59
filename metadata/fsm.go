package metadata

import (
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
)

// TopicID is a topic's UUID.
type TopicID [16]byte

// IsZero reports an unset ID.
func (id TopicID) IsZero() bool { return id == TopicID{} }

// Topic is one topic's metadata.
type Topic struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
}

func (t *Topic) clone() *Topic {
	c := *t
	c.Configs = maps.Clone(t.Configs)
	return &c
}

// state is the serializable FSM state.
type state struct {
	Version        int               `json:"version"`
	Topics         map[string]*Topic `json:"topics"`
	NextProducerID int64             `json:"next_producer_id"`
	ClusterID      string            `json:"cluster_id"`
}

// FSM is the metadata state machine.
type FSM struct {
	mu sync.RWMutex
	st state
}

// NewFSM returns an empty state machine.
func NewFSM() *FSM {
	return &FSM{st: state{Version: 1, Topics: map[string]*Topic{}}}
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
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.apply(&f.st)
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
	if st.Version != 1 {
		return fmt.Errorf("metadata: restore: unsupported snapshot version %d", st.Version)
	}
	if st.Topics == nil {
		st.Topics = map[string]*Topic{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}
