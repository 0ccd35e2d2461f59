package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// validTopicName applies Kafka's topic name rules.
func validTopicName(name string) error {
	if name == "" {
		return errors.New("topic name is empty")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	if len(name) > 249 {
		return fmt.Errorf("topic name is %d characters, above 249", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q contains %q; allowed are ASCII letters, digits, '.', '_' and '-'", name, r)
		}
	}
	return nil
}

func newTopicID() (metadata.TopicID, error) {
	var id metadata.TopicID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("broker: topic id: %w", err)
	}
	id[6] = id[6]&0x0f | 0x40 // UUID v4
	id[8] = id[8]&0x3f | 0x80
	return id, nil
}

func (b *Broker) tp(topic string, p int32) storage.TopicPartition {
	return storage.TopicPartition{Topic: topic, Partition: p}
}

// partitionLog returns the log of topic/partition, or an error code:
// UNKNOWN_TOPIC_OR_PARTITION when the metadata has no such partition,
// NOT_LEADER_OR_FOLLOWER when another node leads it (or this node has not
// opened it yet).
func (b *Broker) partitionLog(topic string, p int32) (*storage.Log, int16) {
	l, code, _ := b.partitionLogEpoch(topic, p)
	return l, code
}

// partitionLogEpoch is partitionLog that also returns the partition's
// leader epoch (its active segment's, fenced or not; -1 when there is no
// such partition) from the same metadata lookup.
func (b *Broker) partitionLogEpoch(topic string, p int32) (*storage.Log, int16, int32) {
	leader, epoch, ok := b.store.FSM().PartitionLeader(topic, p)
	if !ok {
		return nil, kerr.UnknownTopicOrPartition.Code, -1
	}
	if leader != b.cfg.NodeID {
		return nil, kerr.NotLeaderForPartition.Code, epoch
	}
	if l, ok := b.engine.Log(b.tp(topic, p)); ok {
		return l, 0, epoch
	}
	return nil, kerr.NotLeaderForPartition.Code, epoch // not opened yet
}

// createTopic validates a topic and has the controller place and create
// it; it returns once the local metadata shows it (and this node opened
// the partitions it leads), with a Kafka error code and message.
func (b *Broker) createTopic(ctx context.Context, name string, partitions int32, rf int16, configs map[string]string, assignments [][]int32, validateOnly bool) (metadata.Topic, int16, string) {
	if err := validTopicName(name); err != nil {
		return metadata.Topic{}, kerr.InvalidTopicException.Code, err.Error()
	}
	if partitions == -1 {
		partitions = b.cfg.Topic.Partitions
	}
	if partitions < 1 || partitions > 100000 {
		return metadata.Topic{}, kerr.InvalidPartitions.Code, fmt.Sprintf("partition count %d must be in [1, 100000]", partitions)
	}
	if err := validateTopicConfigs(configs); err != nil {
		return metadata.Topic{}, kerr.InvalidConfig.Code, err.Error()
	}
	if _, ok := b.store.FSM().Topic(name); ok {
		return metadata.Topic{}, kerr.TopicAlreadyExists.Code, fmt.Sprintf("topic %q already exists", name)
	}
	if collides := b.collidingTopic(name); collides != "" {
		return metadata.Topic{}, kerr.InvalidTopicException.Code, fmt.Sprintf("topic %q collides with existing topic %q ('.' and '_' are equivalent in metric names)", name, collides)
	}
	if validateOnly {
		return metadata.Topic{Name: name, Partitions: partitions, Configs: configs}, 0, ""
	}
	id, err := newTopicID()
	if err != nil {
		return metadata.Topic{}, kerr.UnknownServerError.Code, err.Error()
	}
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: name, ID: id, Partitions: partitions, ReplicationFactor: rf, Configs: configs, Assignments: assignments}); err != nil {
		code := applyErrorCode(err)
		if code == kerr.UnknownServerError.Code {
			b.log.Error().Err(err).Str("topic", name).Msg("create topic failed")
		}
		return metadata.Topic{}, code, err.Error()
	}
	b.reconcileTopic(name)
	t, ok := b.store.FSM().Topic(name)
	if !ok || t.ID != id {
		return metadata.Topic{}, kerr.UnknownTopicOrPartition.Code, "topic was deleted right after creation"
	}
	b.log.Info().Str("topic", name).Int32("partitions", partitions).Msg("topic created")
	return t, 0, ""
}

// collidingTopic finds an existing topic whose name differs only by '.'
// versus '_' (Kafka refuses those).
func (b *Broker) collidingTopic(name string) string {
	return b.store.FSM().CollidingTopic(name)
}

// defaultRF is the replication factor of a topic whose creator left it to
// the broker: topic.replication-factor, or with 0 there
// metadata.AutoReplicationFactor, min(3, live brokers) as the controller
// counts them (docs/architecture.md, "Kafka compatibility").
func (b *Broker) defaultRF() int16 {
	if rf := b.cfg.Topic.ReplicationFactor; rf > 0 {
		return int16(rf)
	}
	return metadata.AutoReplicationFactor
}

// applyErrorCode maps a failed metadata command to a Kafka error code.
func applyErrorCode(err error) int16 {
	switch {
	case errors.Is(err, metadata.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, metadata.ErrTopicCollision):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, metadata.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, metadata.ErrNotEnoughBrokers):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, metadata.ErrNotLeader), errors.Is(err, metadata.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, metadata.ErrInvalidCommand):
		// The handlers validate first; what metadata still refuses
		// (a config value out of range, say) is the request's fault.
		return kerr.InvalidRequest.Code
	}
	return kerr.UnknownServerError.Code
}

// deleteTopic deletes a topic's metadata, and then its logs.
func (b *Broker) deleteTopic(ctx context.Context, t metadata.Topic) (int16, string) {
	if err := b.store.Apply(ctx, metadata.DeleteTopic{Name: t.Name, ID: t.ID}); err != nil {
		if errors.Is(err, metadata.ErrUnknownTopic) || errors.Is(err, metadata.ErrPreconditionFailed) {
			return kerr.UnknownTopicOrPartition.Code, err.Error()
		}
		return applyErrorCode(err), err.Error()
	}
	// Every node removes its logs of the topic in its reconcile pass; this
	// one does it before answering.
	b.deleteTopicLogs(t)
	b.log.Info().Str("topic", t.Name).Msg("topic deleted")
	return 0, ""
}
