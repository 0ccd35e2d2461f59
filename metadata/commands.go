package metadata

import (
	"encoding/json"
	"fmt"
	"maps"
)

// Command is one explicit, versioned change to the metadata. Each carries
// its own preconditions; apply must not change the state when it fails,
// except that a batch (FenceSegments, SealSegments) whose error is a
// *BatchError keeps the entries that applied.
// validate checks the command without the state (see Validate); apply
// may assume it passed, but must not panic on any input.
type Command interface {
	apply(st *state) error
	validate() error
	kind() string
}

// CreateTopic creates a topic; it fails if the name exists. Assignments
// lists each partition's replicas, leader first; a proposal may leave it
// empty and the controller places the partitions before committing
// (ReplicationFactor, 0 for one replica, AutoReplicationFactor for
// min(3, live brokers), says how many each gets).
type CreateTopic struct {
	Name              string            `json:"name"`
	ID                TopicID           `json:"id"`
	Partitions        int32             `json:"partitions"`
	Configs           map[string]string `json:"configs,omitempty"`
	Internal          bool              `json:"internal,omitempty"`
	ReplicationFactor int16             `json:"replication_factor,omitempty"`
	Assignments       [][]int32         `json:"assignments,omitempty"`
}

func (CreateTopic) kind() string { return "create_topic" }

func (c CreateTopic) apply(st *state) error {
	if c.Name == "" || c.Partitions < 1 || c.ID.IsZero() {
		return fmt.Errorf("%w: create topic %q with %d partitions", ErrInvalidCommand, c.Name, c.Partitions)
	}
	if _, ok := st.Topics[c.Name]; ok {
		return fmt.Errorf("%w: %s", ErrTopicExists, c.Name)
	}
	st.indexTopics()
	if _, ok := st.byID[c.ID]; ok {
		return fmt.Errorf("%w: topic id of %s reused", ErrPreconditionFailed, c.Name)
	}
	if t, ok := st.byNorm[normTopic(c.Name)]; ok {
		return fmt.Errorf("%w: topic %q collides with existing topic %q ('.' and '_' are equivalent in metric names)", ErrTopicCollision, c.Name, t.Name)
	}
	if len(c.Assignments) != int(c.Partitions) {
		return fmt.Errorf("%w: create topic %q: %d assignments for %d partitions", ErrInvalidCommand, c.Name, len(c.Assignments), c.Partitions)
	}
	parts, err := newPartitions(st, c.Assignments)
	if err != nil {
		return err
	}
	st.NextSegmentID += int64(len(parts))
	st.addTopic(&Topic{Name: c.Name, ID: c.ID, Partitions: c.Partitions, Configs: maps.Clone(c.Configs), Internal: c.Internal, Parts: parts, RF: len(c.Assignments[0])})
	return nil
}

// DeleteTopic deletes a topic if its ID still matches.
type DeleteTopic struct {
	Name string  `json:"name"`
	ID   TopicID `json:"id"`
}

func (DeleteTopic) kind() string { return "delete_topic" }

func (c DeleteTopic) apply(st *state) error {
	t, ok := st.Topics[c.Name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, c.Name)
	}
	if t.ID != c.ID {
		return fmt.Errorf("%w: topic %s was recreated", ErrPreconditionFailed, c.Name)
	}
	st.removeTopic(c.Name)
	return nil
}

// CreatePartitions grows a topic from Expected to Count partitions.
// Assignments places the new partitions (see CreateTopic); a proposal may
// leave it empty for the controller to fill.
type CreatePartitions struct {
	Name              string    `json:"name"`
	ID                TopicID   `json:"id"`
	Expected          int32     `json:"expected"`
	Count             int32     `json:"count"`
	ReplicationFactor int16     `json:"replication_factor,omitempty"`
	Assignments       [][]int32 `json:"assignments,omitempty"`
}

func (CreatePartitions) kind() string { return "create_partitions" }

func (c CreatePartitions) apply(st *state) error {
	t, ok := st.Topics[c.Name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, c.Name)
	}
	if t.ID != c.ID || t.Partitions != c.Expected {
		return fmt.Errorf("%w: %s has %d partitions, expected %d", ErrPreconditionFailed, c.Name, t.Partitions, c.Expected)
	}
	if c.Count <= t.Partitions {
		return fmt.Errorf("%w: %s partition count %d not above %d", ErrInvalidCommand, c.Name, c.Count, t.Partitions)
	}
	if len(c.Assignments) != int(c.Count-t.Partitions) {
		return fmt.Errorf("%w: %s: %d assignments for %d new partitions", ErrInvalidCommand, c.Name, len(c.Assignments), c.Count-t.Partitions)
	}
	parts, err := newPartitions(st, c.Assignments)
	if err != nil {
		return err
	}
	st.NextSegmentID += int64(len(parts))
	t.Parts = append(t.Parts, parts...)
	t.Partitions = c.Count
	return nil
}

// SetTopicConfigs replaces a topic's config overrides (the caller merges
// incremental changes and passes the whole map it read, as Expected).
type SetTopicConfigs struct {
	Name     string            `json:"name"`
	ID       TopicID           `json:"id"`
	Expected map[string]string `json:"expected"`
	Configs  map[string]string `json:"configs"`
}

func (SetTopicConfigs) kind() string { return "set_topic_configs" }

func (c SetTopicConfigs) apply(st *state) error {
	t, ok := st.Topics[c.Name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, c.Name)
	}
	if t.ID != c.ID || !maps.Equal(t.Configs, c.Expected) {
		return fmt.Errorf("%w: configs of %s changed concurrently", ErrPreconditionFailed, c.Name)
	}
	t.Configs = maps.Clone(c.Configs)
	return nil
}

// AllocateProducerIDs reserves [Expected, Expected+Count) for one node.
type AllocateProducerIDs struct {
	Expected int64 `json:"expected"`
	Count    int64 `json:"count"`
}

func (AllocateProducerIDs) kind() string { return "allocate_producer_ids" }

func (c AllocateProducerIDs) apply(st *state) error {
	if c.Count < 1 {
		return fmt.Errorf("%w: allocate %d producer ids", ErrInvalidCommand, c.Count)
	}
	if st.NextProducerID != c.Expected {
		return fmt.Errorf("%w: next producer id is %d, expected %d", ErrPreconditionFailed, st.NextProducerID, c.Expected)
	}
	st.NextProducerID += c.Count
	return nil
}

// envelope is the versioned wire form of a command.
type envelope struct {
	V    int             `json:"v"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
	// ID names one Apply call (random; empty for commands encoded without
	// one). Every attempt of that call carries it, so an attempt that
	// repeats one already committed (a retry after the leader was lost
	// mid-commit) is applied once (FSM.applyAt).
	ID string `json:"id,omitempty"`
}

// EncodeCommand serializes a command with its kind and format version.
func EncodeCommand(c Command) ([]byte, error) { return encodeCommandID(c, "") }

// encodeCommandID is EncodeCommand with a request ID.
func encodeCommandID(c Command, id string) ([]byte, error) {
	c, err := normalize(c)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("metadata: encode %s: %w", c.kind(), err)
	}
	return json.Marshal(envelope{V: 1, Kind: c.kind(), Body: body, ID: id})
}

// DecodeCommand parses a command written by EncodeCommand.
func DecodeCommand(b []byte) (Command, error) {
	c, _, err := decodeCommandID(b)
	return c, err
}

// decodeCommandID is DecodeCommand that also returns the request ID.
func decodeCommandID(b []byte) (Command, string, error) {
	c, e, err := decodeEnvelope(b)
	return c, e.ID, err
}

func decodeEnvelope(b []byte) (Command, envelope, error) {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, e, fmt.Errorf("%w: decode: %v", ErrInvalidCommand, err)
	}
	if e.V != 1 {
		return nil, e, fmt.Errorf("%w: decode: unsupported version %d", ErrInvalidCommand, e.V)
	}
	var c Command
	switch e.Kind {
	case "create_topic":
		c = &CreateTopic{}
	case "delete_topic":
		c = &DeleteTopic{}
	case "create_partitions":
		c = &CreatePartitions{}
	case "set_topic_configs":
		c = &SetTopicConfigs{}
	case "allocate_producer_ids":
		c = &AllocateProducerIDs{}
	case "alter_scram_credentials":
		c = &AlterScramCredentials{}
	case "bootstrap_users":
		c = &BootstrapUsers{}
	case "init_cluster":
		c = &InitCluster{}
	case "register_broker":
		c = &RegisterBroker{}
	case "set_broker_state":
		c = &SetBrokerState{}
	case "unregister_broker":
		c = &UnregisterBroker{}
	case "set_cluster_configs":
		c = &SetClusterConfigs{}
	case "roll_segment":
		c = &RollSegment{}
	case "reassign_partition":
		c = &ReassignPartition{}
	case "elect_leader":
		c = &ElectLeader{}
	case "fence_segment":
		c = &FenceSegment{}
	case "assign_learners":
		c = &AssignLearners{}
	case "clean_partition":
		c = &CleanPartition{}
	case "clean_report":
		c = &CleanReport{}
	case "abandon_cleaning":
		c = &AbandonCleaning{}
	case "set_segment_checksum":
		c = &SetSegmentChecksum{}
	case "set_first_unstable":
		c = &SetFirstUnstable{}
	case "merge_segments":
		c = &MergeSegments{}
	case "fence_segments":
		c = &FenceSegments{}
	case "seal_segments":
		c = &SealSegments{}
	case "alter_client_quotas":
		c = &AlterClientQuotas{}
	case "set_group_configs":
		c = &SetGroupConfigs{}
	case "create_acls":
		c = &CreateACLs{}
	case "delete_acls":
		c = &DeleteACLs{}
	default:
		return nil, e, fmt.Errorf("%w: decode: unknown kind %q", ErrInvalidCommand, e.Kind)
	}
	if err := json.Unmarshal(e.Body, c); err != nil {
		return nil, e, fmt.Errorf("%w: decode %s: %v", ErrInvalidCommand, e.Kind, err)
	}
	return deref(c), e, nil
}

func deref(c Command) Command {
	switch v := c.(type) {
	case *CreateTopic:
		return *v
	case *DeleteTopic:
		return *v
	case *CreatePartitions:
		return *v
	case *SetTopicConfigs:
		return *v
	case *AllocateProducerIDs:
		return *v
	case *AlterScramCredentials:
		return *v
	case *BootstrapUsers:
		return *v
	case *InitCluster:
		return *v
	case *RegisterBroker:
		return *v
	case *SetBrokerState:
		return *v
	case *UnregisterBroker:
		return *v
	case *SetClusterConfigs:
		return *v
	case *RollSegment:
		return *v
	case *ReassignPartition:
		return *v
	case *ElectLeader:
		return *v
	case *FenceSegment:
		return *v
	case *AssignLearners:
		return *v
	case *CleanPartition:
		return *v
	case *CleanReport:
		return *v
	case *AbandonCleaning:
		return *v
	case *SetSegmentChecksum:
		return *v
	case *SetFirstUnstable:
		return *v
	case *MergeSegments:
		return *v
	case *FenceSegments:
		return *v
	case *SealSegments:
		return *v
	case *AlterClientQuotas:
		return *v
	case *SetGroupConfigs:
		return *v
	case *CreateACLs:
		return *v
	case *DeleteACLs:
		return *v
	}
	return c
}

// InitCluster sets the cluster ID once.
type InitCluster struct {
	ClusterID string `json:"cluster_id"`
}

func (InitCluster) kind() string { return "init_cluster" }

func (c InitCluster) apply(st *state) error {
	if c.ClusterID == "" {
		return fmt.Errorf("%w: empty cluster id", ErrInvalidCommand)
	}
	if st.ClusterID != "" {
		return fmt.Errorf("%w: cluster id already set", ErrPreconditionFailed)
	}
	st.ClusterID = c.ClusterID
	return nil
}
