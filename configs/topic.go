package configs

import (
	"fmt"
	"math"
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
	// Synonym is the broker config Kafka names as this config's default in
	// DescribeConfigs synonyms (log.retention.ms for retention.ms); empty
	// when Kafka has none (Tusk's own configs).
	Synonym string
	// Allowed, if set, lists the only accepted values (case-insensitive).
	Allowed []string
	// Enforced says whether Tusk acts on the value; the others are stored
	// and described for compatibility only.
	Enforced bool
	Doc      string

	// min is the smallest accepted value of a numeric config (hasMin).
	min    int64
	hasMin bool
	// check, if set, validates the value further (after its type).
	check func(value string) error
}

// Values of cleanup.policy's list (Kafka's TopicConfig.CLEANUP_POLICY_*).
const (
	CleanupPolicyDelete  = "delete"
	CleanupPolicyCompact = "compact"
)

// CleanupPolicy parses a cleanup.policy value, Kafka's list type: items
// separated by commas, whitespace around them ignored, each of delete and
// compact at most once ("compact,delete" and "delete, compact" are the
// same policy). An empty list or any other item is an error.
func CleanupPolicy(v string) (compact, del bool, err error) {
	if strings.TrimSpace(v) == "" {
		return false, false, fmt.Errorf("config cleanup.policy: %q is empty (want delete, compact or compact,delete)", v)
	}
	for _, it := range strings.Split(v, ",") {
		switch strings.TrimSpace(it) {
		case CleanupPolicyCompact:
			if compact {
				return false, false, fmt.Errorf("config cleanup.policy: %q names compact twice", v)
			}
			compact = true
		case CleanupPolicyDelete:
			if del {
				return false, false, fmt.Errorf("config cleanup.policy: %q names delete twice", v)
			}
			del = true
		default:
			return false, false, fmt.Errorf("config cleanup.policy: %q in %q is not a policy (want delete, compact or compact,delete)", strings.TrimSpace(it), v)
		}
	}
	return compact, del, nil
}

// NormalizeList is a list config's value as Kafka describes it: the items
// without the whitespace around them, joined by commas.
func NormalizeList(v string) string {
	if strings.TrimSpace(v) == "" {
		return ""
	}
	items := strings.Split(v, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return strings.Join(items, ",")
}

func checkCleanupPolicy(v string) error {
	_, _, err := CleanupPolicy(v)
	return err
}

// checkRatio accepts a double in [0, 1].
func checkRatio(name string) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1) { // NaN fails too
			return fmt.Errorf("config %s: %s is out of range (a number in [0, 1])", name, v)
		}
		return nil
	}
}

// TopicCleaning is a topic's compaction settings (cleanup.policy and the
// cleaner's configs), resolved from its overrides and the defaults.
type TopicCleaning struct {
	Compact, Delete        bool    // cleanup.policy
	MinCleanableDirtyRatio float64 // min.cleanable.dirty.ratio
	MinCompactionLagMs     int64   // min.compaction.lag.ms
	MaxCompactionLagMs     int64   // max.compaction.lag.ms
	DeleteRetentionMs      int64   // delete.retention.ms
}

// Defaults of the cleaning configs (Kafka's; Tusk has no broker options
// for them).
const (
	defaultCleanupPolicy          = CleanupPolicyDelete
	defaultMinCleanableDirtyRatio = 0.5
	defaultMinCompactionLagMs     = 0
	defaultMaxCompactionLagMs     = math.MaxInt64
	defaultDeleteRetentionMs      = 86400000
)

// CleaningConfig resolves a topic's compaction settings from its config
// overrides. It is total: a stored value that does not validate (metadata
// written by an older version) counts as unset, so the default applies.
func CleaningConfig(overrides map[string]string) TopicCleaning {
	c := TopicCleaning{Delete: true, MinCleanableDirtyRatio: defaultMinCleanableDirtyRatio,
		MinCompactionLagMs: defaultMinCompactionLagMs, MaxCompactionLagMs: defaultMaxCompactionLagMs, DeleteRetentionMs: defaultDeleteRetentionMs}
	valid := func(name string) (string, bool) {
		v, ok := overrides[name]
		return v, ok && ValidateTopicConfig(name, v) == nil
	}
	if v, ok := valid("cleanup.policy"); ok {
		c.Compact, c.Delete, _ = CleanupPolicy(v)
	}
	if v, ok := valid("min.cleanable.dirty.ratio"); ok {
		c.MinCleanableDirtyRatio, _ = strconv.ParseFloat(v, 64)
	}
	for name, dst := range map[string]*int64{"min.compaction.lag.ms": &c.MinCompactionLagMs, "max.compaction.lag.ms": &c.MaxCompactionLagMs, "delete.retention.ms": &c.DeleteRetentionMs} {
		if v, ok := valid(name); ok {
			*dst, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if c.MaxCompactionLagMs < c.MinCompactionLagMs {
		c.MaxCompactionLagMs = c.MinCompactionLagMs
	}
	return c
}

func constDefault(v string) func(Config) string { return func(Config) string { return v } }

// TopicConfigs lists the accepted topic configs.
func TopicConfigs() []TopicConfig {
	return []TopicConfig{
		{Name: "cleanup.policy", Type: TopicConfigList, Default: constDefault(defaultCleanupPolicy), Synonym: "log.cleanup.policy", Enforced: true, check: checkCleanupPolicy,
			Doc: "delete, compact, or both (compact,delete): delete drops sealed segments past retention.ms or retention.bytes; compact keeps the latest record of every key (the log cleaner, docs/compaction.md) and refuses records without a key (INVALID_RECORD); without delete, retention.ms and retention.bytes remove nothing"},
		{Name: "compression.type", Type: TopicConfigString, Default: constDefault("producer"), Synonym: "compression.type", Allowed: []string{"producer"}, Enforced: true, Doc: "batches are stored as produced"},
		{Name: "max.message.bytes", Type: TopicConfigInt, Default: func(c Config) string { return strconv.Itoa(int(c.Kafka.MessageMaxBytes)) }, Synonym: "message.max.bytes", Enforced: true, Doc: "largest record batch accepted", min: 0, hasMin: true},
		{Name: "message.timestamp.type", Type: TopicConfigString, Default: constDefault("CreateTime"), Synonym: "log.message.timestamp.type", Allowed: []string{"CreateTime"}, Enforced: true, Doc: "LogAppendTime is not supported"},
		{Name: "retention.ms", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.RetentionMs, 10) }, Synonym: "log.retention.ms", Enforced: true, Doc: "delete sealed segments older than this (-1 unlimited); only if cleanup.policy includes delete", min: -1, hasMin: true},
		{Name: "retention.bytes", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.RetentionBytes, 10) }, Synonym: "log.retention.bytes", Enforced: true, Doc: "delete oldest sealed segments above this size (-1 unlimited); only if cleanup.policy includes delete"},
		{Name: "segment.bytes", Type: TopicConfigInt, Default: func(c Config) string { return strconv.FormatInt(c.Topic.SegmentBytes, 10) }, Synonym: "log.segment.bytes", Enforced: true, Doc: "roll the active segment at this size", min: 1024, hasMin: true},
		{Name: "segment.ms", Type: TopicConfigLong, Default: func(c Config) string { return strconv.FormatInt(c.Topic.SegmentMs, 10) }, Synonym: "log.roll.ms", Enforced: true, Doc: "roll the active segment at this age (compacted topics too, so a quiet compacted partition's tail becomes cleanable)", min: 1, hasMin: true},
		{Name: "segment.rotate", Type: TopicConfigBoolean, Default: constDefault("true"), Allowed: []string{"true", "false"}, Enforced: true, Doc: "Tusk: at each roll of a replicated partition, leadership moves to the least loaded replica (internal topics never rotate)"},
		{Name: "index.interval.bytes", Type: TopicConfigInt, Default: constDefault("4096"), Synonym: "log.index.interval.bytes", Enforced: true, Doc: "bytes between offset index entries", min: 0, hasMin: true},
		{Name: "min.insync.replicas", Type: TopicConfigInt, Default: constDefault("1"), Synonym: "min.insync.replicas", Enforced: true, Doc: "acks=all is refused (NOT_ENOUGH_REPLICAS) while the active segment has fewer replicas", min: 1, hasMin: true},
		{Name: "unclean.leader.election.enable", Type: TopicConfigBoolean, Default: constDefault("false"), Synonym: "unclean.leader.election.enable", Doc: "stored only"},
		{Name: "flush.messages", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Synonym: "log.flush.interval.messages", Doc: "stored only; see storage.fsync"},
		{Name: "flush.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Synonym: "log.flush.interval.ms", Doc: "stored only; see storage.fsync"},
		{Name: "delete.retention.ms", Type: TopicConfigLong, Default: constDefault(strconv.Itoa(defaultDeleteRetentionMs)), Synonym: "log.cleaner.delete.retention.ms", Enforced: true, min: 0, hasMin: true,
			Doc: "how long a tombstone (a record with a null value) of a compacted topic stays readable: the cleaner removes a key's latest tombstone once its segment was sealed longer ago than this"},
		{Name: "file.delete.delay.ms", Type: TopicConfigLong, Default: constDefault("60000"), Synonym: "log.segment.delete.delay.ms", Doc: "stored only"},
		{Name: "min.compaction.lag.ms", Type: TopicConfigLong, Default: constDefault(strconv.Itoa(defaultMinCompactionLagMs)), Synonym: "log.cleaner.min.compaction.lag.ms", Enforced: true, min: 0, hasMin: true,
			Doc: "a record stays uncompacted at least this long: the cleaner cleans only segments sealed at least this long ago"},
		{Name: "max.compaction.lag.ms", Type: TopicConfigLong, Default: constDefault(strconv.FormatInt(defaultMaxCompactionLagMs, 10)), Synonym: "log.cleaner.max.compaction.lag.ms", Enforced: true, min: 1, hasMin: true,
			Doc: "a partition with a dirty segment sealed longer ago than this is cleaned whatever its dirty ratio; at least min.compaction.lag.ms"},
		{Name: "min.cleanable.dirty.ratio", Type: TopicConfigDouble, Default: constDefault(strconv.FormatFloat(defaultMinCleanableDirtyRatio, 'f', -1, 64)), Synonym: "log.cleaner.min.cleanable.ratio", Enforced: true, check: checkRatio("min.cleanable.dirty.ratio"),
			Doc: "the cleaner cleans a compacted partition once the bytes written since its last cleaning are at least this fraction of its cleanable log, in [0, 1]"},
		{Name: "message.timestamp.difference.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Synonym: "log.message.timestamp.difference.max.ms", Doc: "stored only"},
		{Name: "message.timestamp.before.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Synonym: "log.message.timestamp.before.max.ms", Doc: "stored only"},
		{Name: "message.timestamp.after.max.ms", Type: TopicConfigLong, Default: constDefault("9223372036854775807"), Synonym: "log.message.timestamp.after.max.ms", Doc: "stored only"},
		{Name: "message.downconversion.enable", Type: TopicConfigBoolean, Default: constDefault("true"), Synonym: "log.message.downconversion.enable", Doc: "stored only"},
		{Name: "preallocate", Type: TopicConfigBoolean, Default: constDefault("false"), Synonym: "log.preallocate", Doc: "stored only"},
		{Name: "segment.index.bytes", Type: TopicConfigInt, Default: constDefault("10485760"), Synonym: "log.index.size.max.bytes", Doc: "stored only"},
		{Name: "segment.jitter.ms", Type: TopicConfigLong, Default: constDefault("0"), Synonym: "log.roll.jitter.ms", Doc: "stored only"},
		{Name: "local.retention.ms", Type: TopicConfigLong, Default: constDefault("-2"), Synonym: "log.local.retention.ms", Doc: "stored only"},
		{Name: "local.retention.bytes", Type: TopicConfigLong, Default: constDefault("-2"), Synonym: "log.local.retention.bytes", Doc: "stored only"},
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
	if d.check != nil {
		if err := d.check(value); err != nil {
			return err
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
// name order (so the same map always gives the same error), and then the
// rules between configs: min.compaction.lag.ms ≤ max.compaction.lag.ms,
// with the defaults standing for the unset ones (Kafka's
// LogConfig.validateValues).
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
	_, minSet := m["min.compaction.lag.ms"]
	_, maxSet := m["max.compaction.lag.ms"]
	if minSet || maxSet {
		minLag, maxLag := int64(defaultMinCompactionLagMs), int64(defaultMaxCompactionLagMs)
		if minSet {
			minLag, _ = strconv.ParseInt(m["min.compaction.lag.ms"], 10, 64)
		}
		if maxSet {
			maxLag, _ = strconv.ParseInt(m["max.compaction.lag.ms"], 10, 64)
		}
		if minLag > maxLag {
			return fmt.Errorf("config min.compaction.lag.ms %d exceeds max.compaction.lag.ms %d", minLag, maxLag)
		}
	}
	return nil
}
