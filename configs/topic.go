package configs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// TopicConfigType is a topic config's value type; the values are Kafka's
// DescribeConfigs ConfigType codes.
type TopicConfigType int8

// Topic config value types.
const (
	TopicConfigBoolean  TopicConfigType = 1
	TopicConfigString   TopicConfigType = 2
	TopicConfigInt      TopicConfigType = 3 // 32-bit
	TopicConfigLong     TopicConfigType = 5 // 64-bit
	TopicConfigDouble   TopicConfigType = 6
	TopicConfigList     TopicConfigType = 7
	TopicConfigPassword TopicConfigType = 8
)

// TopicConfig describes one topic-level config Tusk accepts (the
// allow-list: a name not in TopicConfigs is refused).
type TopicConfig struct {
	Name string
	Type TopicConfigType
	// Default returns the broker default as a string.
	Default func(c Config) string
	// Allowed, if set, lists the only accepted values (case-insensitive).
	Allowed []string
	// Enforced says whether Tusk acts on the value; the others are stored
	// and described for compatibility only.
	Enforced bool
	Doc      string

	// min is the smallest accepted value of a numeric config (hasMin).
	min    int64
	hasMin bool
}

func constDefault(v string) func(Config) string { return func(Config) string { return v } }

// TopicConfigs lists the accepted topic configs.
func TopicConfigs() []TopicConfig {
	return []TopicConfig{
		{Name: "cleanup.policy", Type: TopicConfigList, Default: constDefault("delete"), Allowed: []string{"delete"}, Enforced: true, Doc: "only delete is supported"},
		{Name: "compression.type", Type: TopicConfigString, Default: constDefault("producer"), Allowed: []string{"producer"}, Enforced: true, Doc: "batches are stored as produced"},
		{Name: "max.message.bytes", Type: TopicConfigInt, Default: func(c Config) string { return strconv.Itoa(int(c.Kafka.MessageMaxBytes)) }, Enforced: true, Doc: "largest record batch accepted", min: 0, hasMin: true},
		{Name: "message.timestamp.type", Type: TopicConfigString, Default: constDefault("CreateTime"), Allowed: []string{"CreateTime"}, Enforced: true, Doc: "LogAppendTime is not supported"},
		{Name: "retention.ms", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.RetentionMs, 10) }, Enforced: true, Doc: "delete sealed segments older than this (-1 unlimited)", min: -1, hasMin: true},
		{Name: "retention.bytes", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.RetentionBytes, 10) }, Enforced: true, Doc: "delete oldest sealed segments above this size (-1 unlimited)"},
		{Name: "segment.bytes", Type: TopicConfigInt, Default: func(c Config) string { return strconv.FormatInt(c.Topic.SegmentBytes, 10) }, Enforced: true, Doc: "roll the active segment at this size", min: 1024, hasMin: true},
		{Name: "segment.ms", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.SegmentMs, 10) }, Enforced: true, Doc: "roll the active segment at this age", min: 1, hasMin: true},
		{Name: "segment.rotate", Type: TopicConfigBoolean, Default: constDefault("true"), Allowed: []string{"true", "false"}, Enforced: true, Doc: "Tusk: at each roll of a replicated partition, leadership moves to the least loaded replica (internal topics never rotate)"},
		{Name: "index.interval.bytes", Type: TopicConfigInt, Default: constDefault("4096"), Enforced: true, Doc: "bytes between offset index entries", min: 0, hasMin: true},
		{Name: "min.insync.replicas", Type: TopicConfigInt, Default: constDefault("1"), Enforced: true, Doc: "acks=all is refused (NOT_ENOUGH_REPLICAS) while the active segment has fewer replicas", min: 1, hasMin: true},
		{Name: "unclean.leader.election.enable", Type: TopicConfigBoolean, Default: constDefault("false"), Doc: "stored only"},
		{Name: "flush.messages", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only; see storage.fsync"},
		{Name: "flush.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only; see storage.fsync"},
		{Name: "delete.retention.ms", Type: TopicConfigLong, Default: constDefault("86400000"), Doc: "stored only"},
		{Name: "file.delete.delay.ms", Type: TopicConfigLong, Default: constDefault("60000"), Doc: "stored only"},
		{Name: "min.compaction.lag.ms", Type: TopicConfigLong, Default: constDefault("0"), Doc: "stored only"},
		{Name: "max.compaction.lag.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only"},
		{Name: "min.cleanable.dirty.ratio", Type: TopicConfigDouble, Default: constDefault("0.5"), Doc: "stored only"},
		{Name: "message.timestamp.difference.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only"},
		{Name: "message.timestamp.before.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only"},
		{Name: "message.timestamp.after.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Doc: "stored only"},
		{Name: "message.downconversion.enable", Type: TopicConfigBoolean, Default: constDefault("true"), Doc: "stored only"},
		{Name: "preallocate", Type: TopicConfigBoolean, Default: constDefault("false"), Doc: "stored only"},
		{Name: "segment.index.bytes", Type: TopicConfigInt, Default: constDefault("10485760"), Doc: "stored only"},
		{Name: "segment.jitter.ms", Type: TopicConfigLong, Default: constDefault("0"), Doc: "stored only"},
		{Name: "local.retention.ms", Type: TopicConfigLong, Default: constDefault("-2"), Doc: "stored only"},
		{Name: "local.retention.bytes", Type: TopicConfigLong, Default: constDefault("-2"), Doc: "stored only"},
	}
}

// FindTopicConfig looks a topic config up by name.
func FindTopicConfig(name string) (TopicConfig, bool) {
	for _, d := range TopicConfigs() {
		if d.Name == name {
			return d, true
		}
	}
	return TopicConfig{}, false
}

// ValidateTopicConfig checks one topic config override: the name is
// known, the value has its type (and range), and is one of the allowed
// values when the config has a list of them.
func ValidateTopicConfig(name, value string) error {
	d, ok := FindTopicConfig(name)
	if !ok {
		return fmt.Errorf("unknown topic config %q", name)
	}
	switch d.Type {
	case TopicConfigInt, TopicConfigLong:
		bits, typ := 64, "a long"
		if d.Type == TopicConfigInt {
			bits, typ = 32, "an int"
		}
		v, err := strconv.ParseInt(value, 10, bits)
		if err != nil {
			return fmt.Errorf("config %s: %q is not %s", name, value, typ)
		}
		if d.hasMin && v < d.min {
			return fmt.Errorf("config %s: %d is out of range (at least %d)", name, v, d.min)
		}
	case TopicConfigDouble:
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return fmt.Errorf("config %s: %q is not a number", name, value)
		}
	case TopicConfigBoolean:
		if value != "true" && value != "false" {
			return fmt.Errorf("config %s: %q is not a boolean", name, value)
		}
	}
	if len(d.Allowed) > 0 {
		for _, a := range d.Allowed {
			if strings.EqualFold(strings.TrimSpace(value), a) {
				return nil
			}
		}
		return fmt.Errorf("config %s: value %q is not supported (allowed: %s)", name, value, strings.Join(d.Allowed, ", "))
	}
	return nil
}

// ValidateTopicConfigs checks every override of a topic's config map, in
// name order (so the same map always gives the same error).
func ValidateTopicConfigs(m map[string]string) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if err := ValidateTopicConfig(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}
