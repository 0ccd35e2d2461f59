package metadata

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"

	"github.com/tuskdb/tusk/configs"
)

// Limits of a command's fields (Validate).
const (
	// MaxPartitions bounds a topic's partition count.
	MaxPartitions = 100000
	// MaxReplicationFactor bounds a requested replication factor and the
	// replicas of one partition.
	MaxReplicationFactor = 256
	// MaxProducerIDBlock bounds one AllocateProducerIDs.
	MaxProducerIDBlock = 1 << 20
	// maxTopicName is Kafka's limit on a topic name's length.
	maxTopicName = 249
)

// Validate checks a command on its own, without looking at the state: its
// kind is one this package defines, names and ids are well formed, counts
// are in range and topic configs pass configs.ValidateTopicConfig. A
// command that fails returns an error wrapping ErrInvalidCommand.
//
// Every command is validated before it enters the Raft log (RaftStore.Apply
// and ApplyLocal, the path of every command that arrives over the network)
// and again when the FSM applies it, so an invalid entry already in a log
// fails the same way on every node instead of reaching the state.
// Placement left to the controller (empty Assignments, NextLeader -1) is
// valid here; the FSM refuses it at apply time.
func Validate(c Command) error {
	c, err := normalize(c)
	if err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidCommand, c.kind(), err)
	}
	return nil
}

// normalize returns the value form of a command given as a pointer (both
// satisfy Command) and refuses nil and unknown command types.
func normalize(c Command) (Command, error) {
	switch v := c.(type) {
	case CreateTopic, DeleteTopic, CreatePartitions, SetTopicConfigs, AllocateProducerIDs, InitCluster,
		AlterScramCredentials, BootstrapUsers,
		RegisterBroker, SetBrokerState, UnregisterBroker, SetClusterConfigs, RollSegment, FenceSegment, AssignLearners,
		CleanPartition, CleanReport, AbandonCleaning, SetSegmentChecksum, SetFirstUnstable, MergeSegments, FenceSegments, SealSegments, AlterClientQuotas, ReassignPartition, ElectLeader,
		CreateACLs, DeleteACLs, SetGroupConfigs:
		return c, nil
	case *CreateTopic:
		if v != nil {
			return *v, nil
		}
	case *DeleteTopic:
		if v != nil {
			return *v, nil
		}
	case *CreatePartitions:
		if v != nil {
			return *v, nil
		}
	case *SetTopicConfigs:
		if v != nil {
			return *v, nil
		}
	case *AllocateProducerIDs:
		if v != nil {
			return *v, nil
		}
	case *AlterScramCredentials:
		if v != nil {
			return *v, nil
		}
	case *BootstrapUsers:
		if v != nil {
			return *v, nil
		}
	case *InitCluster:
		if v != nil {
			return *v, nil
		}
	case *RegisterBroker:
		if v != nil {
			return *v, nil
		}
	case *SetBrokerState:
		if v != nil {
			return *v, nil
		}
	case *UnregisterBroker:
		if v != nil {
			return *v, nil
		}
	case *SetClusterConfigs:
		if v != nil {
			return *v, nil
		}
	case *RollSegment:
		if v != nil {
			return *v, nil
		}
	case *FenceSegment:
		if v != nil {
			return *v, nil
		}
	case *AssignLearners:
		if v != nil {
			return *v, nil
		}
	case *CleanPartition:
		if v != nil {
			return *v, nil
		}
	case *CleanReport:
		if v != nil {
			return *v, nil
		}
	case *AbandonCleaning:
		if v != nil {
			return *v, nil
		}
	case *SetSegmentChecksum:
		if v != nil {
			return *v, nil
		}
	case *SetFirstUnstable:
		if v != nil {
			return *v, nil
		}
	case *MergeSegments:
		if v != nil {
			return *v, nil
		}
	case *FenceSegments:
		if v != nil {
			return *v, nil
		}
	case *SealSegments:
		if v != nil {
			return *v, nil
		}
	case *AlterClientQuotas:
		if v != nil {
			return *v, nil
		}
	case *SetGroupConfigs:
		if v != nil {
			return *v, nil
		}
	case *ReassignPartition:
		if v != nil {
			return *v, nil
		}
	case *ElectLeader:
		if v != nil {
			return *v, nil
		}
	case *CreateACLs:
		if v != nil {
			return *v, nil
		}
	case *DeleteACLs:
		if v != nil {
			return *v, nil
		}
	default:
		return nil, fmt.Errorf("%w: unknown command type %T", ErrInvalidCommand, c)
	}
	return nil, fmt.Errorf("%w: nil %T", ErrInvalidCommand, c)
}

// ValidateTopicName checks a topic name as Kafka does: 1 to 249 ASCII
// letters, digits, '.', '_' and '-', and neither "." nor "..".
func ValidateTopicName(name string) error {
	if name == "" {
		return errors.New("topic name is empty")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	if len(name) > maxTopicName {
		return fmt.Errorf("topic name is %d characters, above %d", len(name), maxTopicName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q contains %q; allowed are ASCII letters, digits, '.', '_' and '-'", name, r)
		}
	}
	return nil
}

// topicRef checks the name and id a command addresses a topic by.
func topicRef(name string, id TopicID) error {
	if err := ValidateTopicName(name); err != nil {
		return err
	}
	if id.IsZero() {
		return fmt.Errorf("topic %s: zero topic id", name)
	}
	return nil
}

// brokerIDs checks a list of broker ids: none negative, none twice; what
// says what the list is, for the error.
func brokerIDs(what string, ids []int32) error {
	if len(ids) > MaxReplicationFactor {
		return fmt.Errorf("%s: %d brokers, above %d", what, len(ids), MaxReplicationFactor)
	}
	for i, id := range ids {
		if id < 0 {
			return fmt.Errorf("%s: broker id %d", what, id)
		}
		if slices.Contains(ids[:i], id) {
			return fmt.Errorf("%s: broker %d listed twice", what, id)
		}
	}
	return nil
}

func replicationFactor(rf int16) error {
	if rf != AutoReplicationFactor && (rf < 0 || rf > MaxReplicationFactor) {
		return fmt.Errorf("replication factor %d not in [0, %d] (or %d for automatic)", rf, MaxReplicationFactor, AutoReplicationFactor)
	}
	return nil
}

// assignments checks explicit placements of n partitions (none: the
// controller places them).
func assignments(a [][]int32, n int32) error {
	if len(a) == 0 {
		return nil
	}
	if len(a) != int(n) {
		return fmt.Errorf("%d assignments for %d partitions", len(a), n)
	}
	for i, replicas := range a {
		if len(replicas) == 0 {
			return fmt.Errorf("partition %d has no replicas", i)
		}
		if err := brokerIDs(fmt.Sprintf("replicas of partition %d", i), replicas); err != nil {
			return err
		}
	}
	return nil
}

func topicConfigs(m map[string]string) error {
	if err := configs.ValidateTopicConfigs(m); err != nil {
		return fmt.Errorf("topic configs: %w", err)
	}
	return nil
}

// segmentRef checks the partition, segment and epoch a segment
// compare-and-set names.
func segmentRef(topic string, id TopicID, partition int32, segment int64, epoch int32) error {
	if err := topicRef(topic, id); err != nil {
		return err
	}
	if partition < 0 || partition >= MaxPartitions {
		return fmt.Errorf("partition %d", partition)
	}
	if segment < 0 {
		return fmt.Errorf("segment id %d", segment)
	}
	if epoch < 0 || epoch == math.MaxInt32 {
		return fmt.Errorf("epoch %d", epoch)
	}
	return nil
}

func (c CreateTopic) validate() error {
	if err := topicRef(c.Name, c.ID); err != nil {
		return err
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("topic %s: %d partitions not in [1, %d]", c.Name, c.Partitions, MaxPartitions)
	}
	if err := replicationFactor(c.ReplicationFactor); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	if err := assignments(c.Assignments, c.Partitions); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	if err := topicConfigs(c.Configs); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	return nil
}

func (c DeleteTopic) validate() error { return topicRef(c.Name, c.ID) }

func (c CreatePartitions) validate() error {
	if err := topicRef(c.Name, c.ID); err != nil {
		return err
	}
	if c.Expected < 1 || c.Count <= c.Expected || c.Count > MaxPartitions {
		return fmt.Errorf("topic %s: from %d to %d partitions (at most %d)", c.Name, c.Expected, c.Count, MaxPartitions)
	}
	if err := replicationFactor(c.ReplicationFactor); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	if err := assignments(c.Assignments, c.Count-c.Expected); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	return nil
}

// validate checks the new configs only: Expected is what the proposer
// read, and may hold values an older version accepted.
func (c SetTopicConfigs) validate() error {
	if err := topicRef(c.Name, c.ID); err != nil {
		return err
	}
	if err := topicConfigs(c.Configs); err != nil {
		return fmt.Errorf("topic %s: %w", c.Name, err)
	}
	return nil
}

func (c AllocateProducerIDs) validate() error {
	if c.Count < 1 || c.Count > MaxProducerIDBlock {
		return fmt.Errorf("block of %d producer ids not in [1, %d]", c.Count, MaxProducerIDBlock)
	}
	if c.Expected < 0 || c.Expected > math.MaxInt64-c.Count {
		return fmt.Errorf("producer ids from %d", c.Expected)
	}
	return nil
}

func (c InitCluster) validate() error {
	if c.ClusterID == "" {
		return errors.New("empty cluster id")
	}
	return nil
}

func (c RegisterBroker) validate() error {
	if c.Broker.ID < 0 {
		return fmt.Errorf("broker id %d", c.Broker.ID)
	}
	if c.Broker.Kafka == "" {
		return fmt.Errorf("broker %d without a Kafka address", c.Broker.ID)
	}
	for name, addr := range c.Broker.Listeners {
		if name == "" {
			return fmt.Errorf("broker %d: a listener without a name", c.Broker.ID)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("broker %d: listener %s address %q: %v", c.Broker.ID, name, addr, err)
		}
	}
	return nil
}

func (c SetBrokerState) validate() error {
	if c.ID < 0 {
		return fmt.Errorf("broker id %d", c.ID)
	}
	for _, s := range []BrokerState{c.From, c.To} {
		if s != BrokerAlive && s != BrokerFenced {
			return fmt.Errorf("broker state %q", s)
		}
	}
	return nil
}

func (c UnregisterBroker) validate() error {
	if c.ID < 0 {
		return fmt.Errorf("broker id %d", c.ID)
	}
	return nil
}

func (c SetClusterConfigs) validate() error {
	for k := range c.Configs {
		if k == "" {
			return errors.New("cluster config with an empty name")
		}
	}
	return nil
}

func (c RollSegment) validate() error {
	if err := segmentRef(c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch); err != nil {
		return err
	}
	if c.EndOffset < 0 || c.Bytes < 0 || c.JoinedFrom < 0 || c.SealedAtMs < 0 {
		return fmt.Errorf("end offset %d, bytes %d, joined from %d", c.EndOffset, c.Bytes, c.JoinedFrom)
	}
	if c.FirstUnstable != nil && (*c.FirstUnstable < 0 || *c.FirstUnstable > c.EndOffset) {
		return fmt.Errorf("first unstable offset %d outside [0, end offset %d]", *c.FirstUnstable, c.EndOffset)
	}
	if c.NextLeader < -1 {
		return fmt.Errorf("next leader %d", c.NextLeader)
	}
	if len(c.NextReplicas) == 0 {
		return errors.New("no next replicas")
	}
	for _, l := range []struct {
		what string
		ids  []int32
	}{{"next replicas", c.NextReplicas}, {"sealed replicas", c.SealedReplicas}, {"joined", c.Joined}, {"drop sealed", c.DropSealed}} {
		if err := brokerIDs(l.what, l.ids); err != nil {
			return err
		}
	}
	return nil
}

func (c ElectLeader) validate() error {
	if err := segmentRef(c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch); err != nil {
		return err
	}
	if c.Leader < 0 {
		return fmt.Errorf("elect leader %d", c.Leader)
	}
	return nil
}

func (c ReassignPartition) validate() error {
	if c.Topic == "" || c.Partition < 0 {
		return fmt.Errorf("reassign %q partition %d", c.Topic, c.Partition)
	}
	if c.Target != nil && len(c.Target) == 0 {
		return errors.New("reassignment to no replicas")
	}
	return brokerIDs("target", c.Target)
}

func (c FenceSegment) validate() error {
	return segmentRef(c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch)
}

func (c AssignLearners) validate() error {
	if err := segmentRef(c.Topic, c.ID, c.Partition, c.ExpectedSegment, c.ExpectedEpoch); err != nil {
		return err
	}
	return brokerIDs("learners", c.Learners)
}
