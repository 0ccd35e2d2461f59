package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/tuskdb/tusk/auth"
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
	// Quotas are the client quotas by entity key (quotas.go).
	Quotas map[string]ClientQuota `json:"quotas,omitempty"`
	// GroupConfigs are per-group config overrides by group id
	// (groupconfigs.go).
	GroupConfigs map[string]map[string]string `json:"group_configs,omitempty"`
	// ACLs are the access control lists, sorted and deduplicated
	// (acls.go); aclSet indexes them (not serialized; setACLs and
	// RestoreAt keep it current).
	ACLs   []auth.ACL `json:"acls,omitempty"`
	aclSet *auth.ACLSet
	// Users are the SCRAM credentials by user and mechanism, and
	// UsersBootstrapped is set forever by BootstrapUsers (users.go).
	Users             map[string]map[string]ScramCredential `json:"users,omitempty"`
	UsersBootstrapped bool                                  `json:"users_bootstrapped,omitempty"`
	// Requests are the IDs of the last maxRequests commands applied with
	// one, oldest first, and their outcome: an entry that repeats one is
	// not applied again (applyAt).
	Requests []appliedRequest `json:"requests,omitempty"`

	// reqIdx indexes Requests by ID and reqErrs keeps the outcomes as
	// error values (not serialized; after a restore a failed request's
	// error is its message).
	reqIdx  map[string]string
	reqErrs map[string]error

	// Indexes of Topics (not serialized; rebuilt by indexTopics when nil):
	// by ID, and by name with '.' read as '_' (Kafka's collision rule).
	// CreateTopic and DeleteTopic keep them current.
	byID   map[TopicID]*Topic
	byNorm map[string]*Topic
}

// normTopic is a topic name with '.' read as '_': two topics whose names
// normalize alike collide.
func normTopic(name string) string { return strings.ReplaceAll(name, ".", "_") }

// indexTopics builds byID and byNorm if they are missing.
func (st *state) indexTopics() {
	if st.byID != nil && st.byNorm != nil {
		return
	}
	st.byID = make(map[TopicID]*Topic, len(st.Topics))
	st.byNorm = make(map[string]*Topic, len(st.Topics))
	for _, t := range st.Topics {
		st.byID[t.ID] = t
		st.byNorm[normTopic(t.Name)] = t
	}
}

// addTopic adds t to Topics and the indexes.
func (st *state) addTopic(t *Topic) {
	st.indexTopics()
	st.Topics[t.Name] = t
	st.byID[t.ID] = t
	st.byNorm[normTopic(t.Name)] = t
}

// removeTopic removes the named topic from Topics and the indexes.
func (st *state) removeTopic(name string) {
	t, ok := st.Topics[name]
	if !ok {
		return
	}
	st.indexTopics()
	delete(st.Topics, name)
	if st.byID[t.ID] == t {
		delete(st.byID, t.ID)
	}
	if n := normTopic(name); st.byNorm[n] == t {
		delete(st.byNorm, n)
	}
}

// FSM is the metadata state machine.
type FSM struct {
	mu      sync.RWMutex
	st      state
	applied uint64        // index of the last applied log entry
	changed chan struct{} // closed and replaced on every change
	// log records, per applied entry that changed partitions, which
	// (oldest first, at most maxChangeEntries entries and about
	// maxChangeRefs partitions); Changes(since) answers "all" for a since
	// below floor: what changed at or before floor is not recorded (a
	// snapshot was restored there, or the record was trimmed).
	log     []changeEntry
	logRefs int
	floor   uint64
	maxLog  int // maxChangeEntries unless a test shrinks it
	maxRefs int // maxChangeRefs unless a test shrinks it
	// loads caches Loads (active segments led, per broker) and ledBy
	// the leader each partition's active segment was counted for; each
	// applied entry updates them for the partitions it changed (nil:
	// rebuilt by the next Loads). Placement of every new topic and the
	// next leader of every roll read them, which counting every
	// partition made O(partitions) per command.
	loads map[int32]int
	ledBy map[loadKey]int32
}

// loadKey names a partition in FSM.ledBy.
type loadKey struct {
	topic     string
	partition int32
}

// Bounds of the FSM's record of changes: past them, the oldest entries are
// dropped and a reader that far behind reconciles everything.
const (
	maxChangeEntries = 4096
	maxChangeRefs    = 1 << 18
)

// PartitionRef names one partition of one incarnation of a topic.
type PartitionRef struct {
	Topic     string
	ID        TopicID
	Partition int32
}

// Changes is what FSM.Changes reports: the partitions whose metadata
// applied entries (Since, Through] changed, or All when the FSM cannot
// tell.
type Changes struct {
	Since, Through uint64
	// All: everything may have changed (a snapshot was restored after
	// Since, the record of those entries was dropped, or an entry changed
	// something every partition depends on: brokers, cluster configs).
	All bool
	// Partitions changed, each once, in the order of their first change
	// (empty when All).
	Partitions []PartitionRef
}

// changeEntry is the record of one applied entry.
type changeEntry struct {
	index uint64
	all   bool
	refs  []PartitionRef
}

// NewFSM returns an empty state machine.
func NewFSM() *FSM {
	return &FSM{st: emptyState(), changed: make(chan struct{}), maxLog: maxChangeEntries, maxRefs: maxChangeRefs}
}

// Changes reports which partitions the entries applied after index since
// changed (docs/io-and-scale.md, "Scale"): each command records the
// partitions it touched (a created or deleted topic: all its partitions;
// new partitions; a config change: all the topic's partitions; a roll,
// fence or learner assignment: that partition; a batch of fences or seals:
// the partitions of its entries that applied). Broker registrations and
// state changes and cluster config changes report All, as does a since
// below what the FSM still records (a snapshot restore, or more than
// maxChangeEntries entries ago). Failed commands change nothing. A caller
// that keeps Through as its next since sees every change exactly once;
// since 0 (nothing seen yet) reports All once anything was applied or
// restored.
func (f *FSM) Changes(since uint64) Changes {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := Changes{Since: since, Through: f.applied}
	if since >= f.applied {
		return out
	}
	if since < f.floor || since == 0 {
		out.All = true
		return out
	}
	i, _ := slices.BinarySearchFunc(f.log, since+1, func(e changeEntry, idx uint64) int {
		switch {
		case e.index < idx:
			return -1
		case e.index > idx:
			return 1
		}
		return 0
	})
	seen := map[PartitionRef]bool{}
	for _, e := range f.log[i:] {
		if e.all {
			return Changes{Since: since, Through: f.applied, All: true}
		}
		for _, r := range e.refs {
			if !seen[r] {
				seen[r] = true
				out.Partitions = append(out.Partitions, r)
			}
		}
	}
	return out
}

// record notes what the entry at index changed. f.mu held for writing.
func (f *FSM) record(index uint64, all bool, refs []PartitionRef) {
	if !all && len(refs) == 0 {
		return
	}
	f.log = append(f.log, changeEntry{index: index, all: all, refs: refs})
	f.logRefs += len(refs)
	drop := 0
	for len(f.log)-drop > f.maxLog || (f.logRefs > f.maxRefs && len(f.log)-drop > 1) {
		f.logRefs -= len(f.log[drop].refs)
		f.floor = max(f.floor, f.log[drop].index)
		drop++
	}
	if drop > 0 {
		f.log = slices.Delete(f.log, 0, drop)
	}
}

// topicRefs lists partitions [from, to) of t.
func topicRefs(t *Topic, from, to int32) []PartitionRef {
	out := make([]PartitionRef, 0, max(0, int(to-from)))
	for p := from; p < to; p++ {
		out = append(out, PartitionRef{Topic: t.Name, ID: t.ID, Partition: p})
	}
	return out
}

// touched is what a command that applied successfully changed; before is
// the topic it names as it was before (nil if none). For a batched command
// be names the entries that failed (nil: none did); the partitions of the
// others count.
func touched(st *state, c Command, before *Topic, be *BatchError) (all bool, refs []PartitionRef) {
	switch v := c.(type) {
	case FenceSegments, SealSegments:
		return false, batchRefs(c, be)
	case CreateTopic:
		if t := st.Topics[v.Name]; t != nil {
			return false, topicRefs(t, 0, t.Partitions)
		}
	case DeleteTopic:
		if before != nil {
			return false, topicRefs(before, 0, before.Partitions)
		}
	case CreatePartitions:
		if t := st.Topics[v.Name]; t != nil {
			return false, topicRefs(t, v.Expected, v.Count)
		}
	case SetTopicConfigs:
		if t := st.Topics[v.Name]; t != nil {
			return false, topicRefs(t, 0, t.Partitions)
		}
	case RollSegment:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case FenceSegment:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case AssignLearners:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case ReassignPartition:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case ElectLeader:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case CleanPartition:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case CleanReport:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case AbandonCleaning:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case SetSegmentChecksum:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case SetFirstUnstable:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case MergeSegments:
		return false, []PartitionRef{{Topic: v.Topic, ID: v.ID, Partition: v.Partition}}
	case RegisterBroker, SetBrokerState, UnregisterBroker, SetClusterConfigs:
		return true, nil
	case AlterScramCredentials, BootstrapUsers:
		return false, nil
	case AllocateProducerIDs, InitCluster, AlterClientQuotas, CreateACLs, DeleteACLs, SetGroupConfigs:
		return false, nil
	}
	return true, nil // a command this list does not know: assume anything changed
}

func emptyState() state {
	st := state{Version: stateVersion, Topics: map[string]*Topic{}, Brokers: map[int32]*Broker{}}
	st.indexTopics()
	return st
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

// Loads counts, per broker, the active segments it leads (a broker that
// leads none is absent).
func (f *FSM) Loads() map[int32]int {
	f.mu.RLock()
	if f.loads != nil {
		out := maps.Clone(f.loads)
		f.mu.RUnlock()
		return out
	}
	f.mu.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loads == nil {
		f.loads, f.ledBy = map[int32]int{}, map[loadKey]int32{}
		for _, t := range f.st.Topics {
			for p := range t.Parts {
				f.countLoad(t, int32(p))
			}
		}
	}
	return maps.Clone(f.loads)
}

// countLoad counts partition p of t in f.loads. f.mu held for writing.
func (f *FSM) countLoad(t *Topic, p int32) {
	leader := t.Parts[p].Active().Leader
	f.loads[leader]++
	f.ledBy[loadKey{t.Name, p}] = leader
}

// updateLoads brings f.loads up to date after an entry that changed refs
// (all: anything). f.mu held for writing.
func (f *FSM) updateLoads(all bool, refs []PartitionRef) {
	if f.loads == nil {
		return
	}
	if all {
		f.loads, f.ledBy = nil, nil
		return
	}
	for _, r := range refs {
		k := loadKey{r.Topic, r.Partition}
		if old, ok := f.ledBy[k]; ok {
			if f.loads[old]--; f.loads[old] <= 0 {
				delete(f.loads, old)
			}
			delete(f.ledBy, k)
		}
		// The partition as it is now, whichever topic of that name
		// holds it.
		if t := f.st.Topics[r.Topic]; t != nil && r.Partition >= 0 && int(r.Partition) < len(t.Parts) {
			f.countLoad(t, r.Partition)
		}
	}
}

// ActiveSegment is one partition's active segment, as ActiveSegments
// returns it.
type ActiveSegment struct {
	Topic     string
	ID        TopicID
	Partition int32
	RF        int     // the topic's replication factor
	Segment   Segment // a copy
}

// Reassignment is a partition being reassigned (Partition.Target).
type Reassignment struct {
	ActiveSegment
	Target []int32
}

// Reassignments lists the partitions with a reassignment in progress,
// by topic name and partition.
func (f *FSM) Reassignments() []Reassignment {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Reassignment
	for _, t := range f.st.Topics {
		for p := range t.Parts {
			part := &t.Parts[p]
			if part.Target == nil || len(part.Segments) == 0 {
				continue
			}
			seg := part.Active()
			seg.Replicas, seg.Learners = slices.Clone(seg.Replicas), slices.Clone(seg.Learners)
			out = append(out, Reassignment{
				ActiveSegment: ActiveSegment{Topic: t.Name, ID: t.ID, Partition: int32(p), RF: t.ReplicationFactor(), Segment: seg},
				Target:        slices.Clone(part.Target),
			})
		}
	}
	slices.SortFunc(out, func(a, b Reassignment) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// ActiveSegments returns copies of the active segments for which keep
// returns true, copying nothing else (the controller's periodic scans).
// keep runs under the FSM's read lock: it must not call the FSM.
func (f *FSM) ActiveSegments(keep func(rf int, seg *Segment) bool) []ActiveSegment {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []ActiveSegment
	for _, t := range f.st.Topics {
		rf := 0
		for p := range t.Parts {
			segs := t.Parts[p].Segments
			if len(segs) == 0 {
				continue
			}
			if rf == 0 {
				rf = t.ReplicationFactor()
			}
			seg := &segs[len(segs)-1]
			if !keep(rf, seg) {
				continue
			}
			c := *seg
			c.Replicas, c.Learners = slices.Clone(seg.Replicas), slices.Clone(seg.Learners)
			out = append(out, ActiveSegment{Topic: t.Name, ID: t.ID, Partition: int32(p), RF: rf, Segment: c})
		}
	}
	return out
}

// ActiveReplicaCounts counts, per broker, the active segments it is a
// replica of.
func (f *FSM) ActiveReplicaCounts() map[int32]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[int32]int{}
	for _, t := range f.st.Topics {
		for _, p := range t.Parts {
			if len(p.Segments) == 0 {
				continue
			}
			for _, r := range p.Segments[len(p.Segments)-1].Replicas {
				out[r]++
			}
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

// Partition returns a copy of the named topic without its partitions
// (Parts nil; RF set to its replication factor) and a copy of partition
// p: what a per-partition pass needs, at the cost of one partition
// rather than the whole topic (Topic copies every partition's chain).
func (f *FSM) Partition(name string, p int32) (Topic, Partition, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Topics[name]
	if !ok || p < 0 || int(p) >= len(t.Parts) {
		return Topic{}, Partition{}, false
	}
	c := *t
	c.RF = t.ReplicationFactor()
	c.Configs = maps.Clone(t.Configs)
	c.Parts = nil
	return c, t.Parts[p].clone(), true
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

// HasTopic reports whether the named topic exists.
func (f *FSM) HasTopic(name string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.st.Topics[name]
	return ok
}

// ActiveLeader is Topic(name).Leader(p) without copying the topic: the
// leader and epoch of partition p's active segment, fenced or not, or -1,
// -1 when there is no such partition.
func (f *FSM) ActiveLeader(name string, p int32) (leader, epoch int32) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Topics[name]
	if !ok {
		return -1, -1
	}
	return t.Leader(p)
}

// TopicByID returns a copy of the topic with the given ID.
func (f *FSM) TopicByID(id TopicID) (Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if t, ok := f.st.byID[id]; ok {
		return *t.clone(), true
	}
	return Topic{}, false
}

// TopicNameByID returns the name of the topic with the given ID without
// copying the topic (the Fetch path's lookup).
func (f *FSM) TopicNameByID(id TopicID) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if t, ok := f.st.byID[id]; ok {
		return t.Name, true
	}
	return "", false
}

// CollidingTopic returns the existing topic other than name whose name
// differs from it only by '.' versus '_' (Kafka refuses those), or "".
func (f *FSM) CollidingTopic(name string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if t, ok := f.st.byNorm[normTopic(name)]; ok && t.Name != name {
		return t.Name
	}
	return ""
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
func (f *FSM) ApplyAt(c Command, index uint64) error { return f.applyAt(c, index, "") }

// maxRequests bounds the request IDs the FSM remembers: far more than the
// commands applied while one Apply call retries.
const maxRequests = 4096

// appliedRequest is one remembered request and its outcome.
type appliedRequest struct {
	ID  string `json:"id"`
	Err string `json:"err,omitempty"`
}

// applyAt is ApplyAt for a command carrying request ID id: an entry whose
// ID the FSM has applied before changes nothing and answers the first
// outcome. Raft commits a command twice when an Apply call retries after
// its leader was lost mid-commit (raft.ErrLeadershipLost: committed or
// not, nobody knows), so without this a retried CreateTopic would answer
// TOPIC_ALREADY_EXISTS for the topic it created, and a retried
// compare-and-set a precondition failure for its own change.
func (f *FSM) applyAt(c Command, index uint64, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index == 0 {
		index = f.applied + 1
	}
	if id != "" {
		if msg, seen := f.st.requestOutcome(id); seen {
			f.applied = index
			f.notify()
			if e, ok := f.st.reqErrs[id]; ok {
				return e
			}
			if msg != "" {
				return errors.New(msg)
			}
			return nil
		}
	}
	err := f.applyLocked(c, index)
	if id != "" {
		f.st.rememberRequest(id, err)
	}
	f.applied = index
	f.notify()
	return err
}

// requestOutcome reports whether request id was applied, and its error
// message.
func (st *state) requestOutcome(id string) (string, bool) {
	if st.reqIdx == nil {
		st.reqIdx = make(map[string]string, len(st.Requests))
		for _, r := range st.Requests {
			st.reqIdx[r.ID] = r.Err
		}
	}
	msg, ok := st.reqIdx[id]
	return msg, ok
}

// rememberRequest records request id's outcome, forgetting the oldest
// beyond maxRequests.
func (st *state) rememberRequest(id string, err error) {
	st.requestOutcome(id) // builds the index
	if st.reqErrs == nil {
		st.reqErrs = map[string]error{}
	}
	r := appliedRequest{ID: id}
	if err != nil {
		r.Err = err.Error()
		st.reqErrs[id] = err
	}
	st.Requests = append(st.Requests, r)
	st.reqIdx[id] = r.Err
	if n := len(st.Requests) - maxRequests; n > 0 {
		for _, old := range st.Requests[:n] {
			delete(st.reqIdx, old.ID)
			delete(st.reqErrs, old.ID)
		}
		// Resliced, not copied: append reallocates once per
		// maxRequests entries (the copy was 3% of a node's CPU while
		// 10,000 topics were created).
		st.Requests = st.Requests[n:]
	}
}

// applyLocked applies c as entry index. f.mu held.
func (f *FSM) applyLocked(c Command, index uint64) error {
	err := Validate(c)
	if err == nil {
		var before *Topic
		if d, ok := c.(DeleteTopic); ok {
			before = f.st.Topics[d.Name]
		}
		err = c.apply(&f.st)
		// A batch whose entries partly failed applied the others.
		var be *BatchError
		if err == nil || errors.As(err, &be) {
			all, refs := touched(&f.st, c, before, be)
			f.record(index, all, refs)
			f.updateLoads(all, refs)
		}
	}
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

// Restore replaces the state with a snapshot, as if it were the next
// applied entry (the applied index advances by one, and Changes reports
// All to a reader that has not seen it). Raft's restore uses RestoreAt.
func (f *FSM) Restore(b []byte) error {
	f.mu.RLock()
	index := f.applied + 1
	f.mu.RUnlock()
	return f.RestoreAt(b, index)
}

// RestoreAt replaces the state with a snapshot that covers the log up to
// index, which becomes the applied index; it must be above every index
// Changes reported before (a Raft snapshot is restored at start-up or when
// this node is behind it). Changes(since) answers All for any since
// below index.
func (f *FSM) RestoreAt(b []byte, index uint64) error {
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
	st.indexTopics()
	st.setACLs(auth.SortACLs(st.ACLs))
	f.mu.Lock()
	f.st = st
	f.applied = index
	f.floor = index
	f.log, f.logRefs = nil, 0
	f.loads, f.ledBy = nil, nil
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
