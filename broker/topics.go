package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

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

// partitionLog returns the log of topic/partition, or an error code.
func (b *Broker) partitionLog(topic string, p int32) (*storage.Log, int16) {
	if l, ok := b.engine.Log(b.tp(topic, p)); ok {
		return l, 0
	}
	return nil, kerr.UnknownTopicOrPartition.Code
}

// openAllLogs opens every partition the metadata names and removes log
// directories of topics that no longer exist (a crash between deleting a
// topic's metadata and its files).
func (b *Broker) openAllLogs() error {
	fsm := b.store.FSM()
	want := map[storage.TopicPartition]bool{}
	for _, t := range fsm.Topics() {
		for p := int32(0); p < t.Partitions; p++ {
			want[b.tp(t.Name, p)] = true
		}
		if err := b.openTopicLogs(t); err != nil {
			return err
		}
	}
	dirs, err := b.engine.ListLogDirs()
	if err != nil {
		return fmt.Errorf("broker: list log dirs: %w", err)
	}
	for _, tp := range dirs {
		if !want[tp] {
			b.log.Warn().Str("topic", tp.Topic).Int32("partition", tp.Partition).Msg("removing log of a deleted topic")
			if err := b.engine.DeleteLog(tp); err != nil {
				return fmt.Errorf("broker: remove orphaned log %s-%d: %w", tp.Topic, tp.Partition, err)
			}
		}
	}
	return nil
}

func (b *Broker) openTopicLogs(t metadata.Topic) error {
	cfg := b.logConfig(t.Configs)
	for p := int32(0); p < t.Partitions; p++ {
		if _, err := b.engine.OpenLog(b.tp(t.Name, p), cfg); err != nil {
			return fmt.Errorf("broker: open log %s-%d: %w", t.Name, p, err)
		}
	}
	return nil
}

// applyTopicConfigs pushes a topic's current configs to its open logs.
func (b *Broker) applyTopicConfigs(t metadata.Topic) {
	cfg := b.logConfig(t.Configs)
	for p := int32(0); p < t.Partitions; p++ {
		if l, ok := b.engine.Log(b.tp(t.Name, p)); ok {
			l.SetConfig(cfg)
		}
	}
}

// createTopic validates and creates a topic, then opens its logs. It
// returns a Kafka error code and message.
func (b *Broker) createTopic(ctx context.Context, name string, partitions int32, configs map[string]string, validateOnly bool) (metadata.Topic, int16, string) {
	if err := validTopicName(name); err != nil {
		return metadata.Topic{}, kerr.InvalidTopicException.Code, err.Error()
	}
	if partitions == -1 {
		partitions = b.cfg.Topic.Partitions
	}
	if partitions < 1 || partitions > 100000 {
		return metadata.Topic{}, kerr.InvalidPartitions.Code, fmt.Sprintf("partition count %d must be in [1, 100000]", partitions)
	}
	for k, v := range configs {
		if err := validateTopicConfig(k, v); err != nil {
			return metadata.Topic{}, kerr.InvalidConfig.Code, err.Error()
		}
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
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
	if err := b.store.Apply(ctx, metadata.CreateTopic{Name: name, ID: id, Partitions: partitions, Configs: configs}); err != nil {
		if errors.Is(err, metadata.ErrTopicExists) {
			return metadata.Topic{}, kerr.TopicAlreadyExists.Code, err.Error()
		}
		b.log.Error().Err(err).Str("topic", name).Msg("create topic failed")
		return metadata.Topic{}, kerr.UnknownServerError.Code, err.Error()
	}
	t, _ := b.store.FSM().Topic(name)
	if err := b.openTopicLogs(t); err != nil {
		b.log.Error().Err(err).Str("topic", name).Msg("open logs of new topic failed")
		return metadata.Topic{}, kerr.KafkaStorageError.Code, err.Error()
	}
	b.log.Info().Str("topic", name).Int32("partitions", partitions).Msg("topic created")
	return t, 0, ""
}

// collidingTopic finds an existing topic whose name differs only by '.'
// versus '_' (Kafka refuses those).
func (b *Broker) collidingTopic(name string) string {
	norm := strings.ReplaceAll(name, ".", "_")
	for _, t := range b.store.FSM().Topics() {
		if t.Name != name && strings.ReplaceAll(t.Name, ".", "_") == norm {
			return t.Name
		}
	}
	return ""
}

// deleteTopic deletes a topic's metadata and then its logs.
func (b *Broker) deleteTopic(ctx context.Context, t metadata.Topic) (int16, string) {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if err := b.store.Apply(ctx, metadata.DeleteTopic{Name: t.Name, ID: t.ID}); err != nil {
		if errors.Is(err, metadata.ErrUnknownTopic) || errors.Is(err, metadata.ErrPreconditionFailed) {
			return kerr.UnknownTopicOrPartition.Code, err.Error()
		}
		return kerr.UnknownServerError.Code, err.Error()
	}
	for p := int32(0); p < t.Partitions; p++ {
		if err := b.engine.DeleteLog(b.tp(t.Name, p)); err != nil {
			// The metadata is gone; the next start removes the orphan.
			b.log.Error().Err(err).Str("topic", t.Name).Int32("partition", p).Msg("delete log failed")
		}
	}
	b.log.Info().Str("topic", t.Name).Msg("topic deleted")
	return 0, ""
}
