package broker

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/storage"
)

// topicConfigType is how a topic config value is validated and described.
type topicConfigType int8

// Kafka's DescribeConfigs ConfigType values.
const (
	ctBoolean  topicConfigType = 1
	ctString   topicConfigType = 2
	ctInt      topicConfigType = 3
	ctLong     topicConfigType = 5
	ctDouble   topicConfigType = 6
	ctList     topicConfigType = 7
	ctPassword topicConfigType = 8
)

// topicConfigDef is one topic-level config Tusk accepts.
type topicConfigDef struct {
	name string
	typ  topicConfigType
	// def returns the broker default as a string.
	def func(c configs.Config) string
	// allowed, if set, lists the only accepted values.
	allowed []string
	// enforced says whether Tusk acts on the value (others are stored and
	// described for compatibility only).
	enforced bool
	doc      string
}

func constDef(v string) func(configs.Config) string { return func(configs.Config) string { return v } }

// topicConfigDefs lists the accepted topic configs.
func topicConfigDefs() []topicConfigDef {
	return []topicConfigDef{
		{name: "cleanup.policy", typ: ctList, def: constDef("delete"), allowed: []string{"delete"}, enforced: true, doc: "only delete is supported"},
		{name: "compression.type", typ: ctString, def: constDef("producer"), allowed: []string{"producer"}, enforced: true, doc: "batches are stored as produced"},
		{name: "max.message.bytes", typ: ctInt, def: func(c configs.Config) string { return strconv.Itoa(int(c.Kafka.MessageMaxBytes)) }, enforced: true, doc: "largest record batch accepted"},
		{name: "message.timestamp.type", typ: ctString, def: constDef("CreateTime"), allowed: []string{"CreateTime"}, enforced: true, doc: "LogAppendTime is not supported"},
		{name: "retention.ms", typ: ctLong, def: func(c configs.Config) string { return strconv.FormatInt(c.Topic.RetentionMs, 10) }, enforced: true, doc: "delete sealed segments older than this (-1 unlimited)"},
		{name: "retention.bytes", typ: ctLong, def: func(c configs.Config) string { return strconv.FormatInt(c.Topic.RetentionBytes, 10) }, enforced: true, doc: "delete oldest sealed segments above this size (-1 unlimited)"},
		{name: "segment.bytes", typ: ctInt, def: func(c configs.Config) string { return strconv.FormatInt(c.Topic.SegmentBytes, 10) }, enforced: true, doc: "roll the active segment at this size"},
		{name: "segment.ms", typ: ctLong, def: func(c configs.Config) string { return strconv.FormatInt(c.Topic.SegmentMs, 10) }, enforced: true, doc: "roll the active segment at this age"},
		{name: "segment.rotate", typ: ctBoolean, def: constDef("true"), allowed: []string{"true", "false"}, enforced: true, doc: "Tusk: at each roll of a replicated partition, leadership moves to the least loaded replica (internal topics never rotate)"},
		{name: "index.interval.bytes", typ: ctInt, def: constDef("4096"), enforced: true, doc: "bytes between offset index entries"},
		{name: "min.insync.replicas", typ: ctInt, def: constDef("1"), enforced: true, doc: "acks=all is refused (NOT_ENOUGH_REPLICAS) while the active segment has fewer replicas"},
		{name: "unclean.leader.election.enable", typ: ctBoolean, def: constDef("false"), doc: "stored only"},
		{name: "flush.messages", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only; see storage.fsync"},
		{name: "flush.ms", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only; see storage.fsync"},
		{name: "delete.retention.ms", typ: ctLong, def: constDef("86400000"), doc: "stored only"},
		{name: "file.delete.delay.ms", typ: ctLong, def: constDef("60000"), doc: "stored only"},
		{name: "min.compaction.lag.ms", typ: ctLong, def: constDef("0"), doc: "stored only"},
		{name: "max.compaction.lag.ms", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only"},
		{name: "min.cleanable.dirty.ratio", typ: ctDouble, def: constDef("0.5"), doc: "stored only"},
		{name: "message.timestamp.difference.max.ms", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only"},
		{name: "message.timestamp.before.max.ms", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only"},
		{name: "message.timestamp.after.max.ms", typ: ctLong, def: constDef("9223372036854775807"), doc: "stored only"},
		{name: "message.downconversion.enable", typ: ctBoolean, def: constDef("true"), doc: "stored only"},
		{name: "preallocate", typ: ctBoolean, def: constDef("false"), doc: "stored only"},
		{name: "segment.index.bytes", typ: ctInt, def: constDef("10485760"), doc: "stored only"},
		{name: "segment.jitter.ms", typ: ctLong, def: constDef("0"), doc: "stored only"},
		{name: "local.retention.ms", typ: ctLong, def: constDef("-2"), doc: "stored only"},
		{name: "local.retention.bytes", typ: ctLong, def: constDef("-2"), doc: "stored only"},
	}
}

func findTopicConfig(name string) (topicConfigDef, bool) {
	for _, d := range topicConfigDefs() {
		if d.name == name {
			return d, true
		}
	}
	return topicConfigDef{}, false
}

// validateTopicConfig checks one name/value pair.
func validateTopicConfig(name, value string) error {
	d, ok := findTopicConfig(name)
	if !ok {
		return fmt.Errorf("unknown topic config %q", name)
	}
	switch d.typ {
	case ctInt:
		v, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return fmt.Errorf("config %s: %q is not an int", name, value)
		}
		if (name == "segment.bytes" && v < 1024) || (name == "max.message.bytes" && v < 0) || (name == "index.interval.bytes" && v < 0) {
			return fmt.Errorf("config %s: %d is out of range", name, v)
		}
	case ctLong:
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("config %s: %q is not a long", name, value)
		}
		if name == "segment.ms" && v < 1 {
			return fmt.Errorf("config %s: %d must be positive", name, v)
		}
	case ctDouble:
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return fmt.Errorf("config %s: %q is not a number", name, value)
		}
	case ctBoolean:
		if value != "true" && value != "false" {
			return fmt.Errorf("config %s: %q is not a boolean", name, value)
		}
	}
	if len(d.allowed) > 0 {
		for _, a := range d.allowed {
			if strings.EqualFold(strings.TrimSpace(value), a) {
				return nil
			}
		}
		return fmt.Errorf("config %s: value %q is not supported (allowed: %s)", name, value, strings.Join(d.allowed, ", "))
	}
	return nil
}

// topicConfigValue resolves a topic config: the override, else the default.
func (b *Broker) topicConfigValue(overrides map[string]string, name string) (string, bool) {
	if v, ok := overrides[name]; ok {
		return v, true
	}
	d, ok := findTopicConfig(name)
	if !ok {
		return "", false
	}
	return d.def(b.cfg), false
}

// topicConfigInt resolves a numeric topic config. It is total: a stored
// override that does not parse (metadata written before configs were
// validated on their way into the Raft log) yields the default, and is
// logged once per name and value.
func (b *Broker) topicConfigInt(overrides map[string]string, name string) int64 {
	v, override := b.topicConfigValue(overrides, name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err == nil {
		return n
	}
	if b.badConfigs.first(name, v) {
		b.log.Warn().Str("config", name).Str("value", v).Bool("override", override).Err(err).Msg("topic config does not parse; using the default")
	}
	if !override {
		return 0 // a default that does not parse: TestConfigDefaultsParse
	}
	return b.topicConfigInt(nil, name)
}

// badConfigValues remembers the config values topicConfigInt warned about.
type badConfigValues struct {
	mu   sync.Mutex
	seen map[[2]string]bool // name, value
}

// first reports whether name=value is seen for the first time.
func (s *badConfigValues) first(name, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{name, value}
	if s.seen[k] {
		return false
	}
	if s.seen == nil {
		s.seen = map[[2]string]bool{}
	}
	s.seen[k] = true
	return true
}

// logConfig maps a topic's configs to the storage engine's.
func (b *Broker) logConfig(overrides map[string]string) storage.LogConfig {
	return storage.LogConfig{
		SegmentBytes:       b.topicConfigInt(overrides, "segment.bytes"),
		SegmentMs:          b.topicConfigInt(overrides, "segment.ms"),
		RetentionBytes:     b.topicConfigInt(overrides, "retention.bytes"),
		RetentionMs:        b.topicConfigInt(overrides, "retention.ms"),
		IndexIntervalBytes: int(b.topicConfigInt(overrides, "index.interval.bytes")),
	}
}
