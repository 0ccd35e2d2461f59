package broker

import (
	"strconv"
	"sync"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/storage"
)

// topicConfigType is how a topic config value is validated and described.
type topicConfigType = configs.TopicConfigType

// Kafka's DescribeConfigs ConfigType values.
const (
	ctBoolean = configs.TopicConfigBoolean
	ctString  = configs.TopicConfigString
	ctInt     = configs.TopicConfigInt
	ctLong    = configs.TopicConfigLong
	ctList    = configs.TopicConfigList
)

// topicConfigDef is one topic-level config Tusk accepts (see
// configs.TopicConfigs, which holds the list, the defaults and the
// validation the metadata store applies to every command too).
type topicConfigDef struct {
	name string
	typ  topicConfigType
	// def returns the broker default as a string.
	def func(c configs.Config) string
	// synonym is the Kafka broker config the default stands for
	// (log.cleanup.policy for cleanup.policy), "" if none.
	synonym string
	// allowed, if set, lists the only accepted values.
	allowed []string
	// enforced says whether Tusk acts on the value (others are stored and
	// described for compatibility only).
	enforced bool
	doc      string
}

func fromConfigs(d configs.TopicConfig) topicConfigDef {
	return topicConfigDef{name: d.Name, typ: d.Type, def: d.Default, synonym: d.Synonym, allowed: d.Allowed, enforced: d.Enforced, doc: d.Doc}
}

// topicConfigDefs lists the accepted topic configs.
func topicConfigDefs() []topicConfigDef {
	all := configs.TopicConfigs()
	out := make([]topicConfigDef, len(all))
	for i, d := range all {
		out[i] = fromConfigs(d)
	}
	return out
}

func findTopicConfig(name string) (topicConfigDef, bool) {
	d, ok := configs.FindTopicConfig(name)
	if !ok {
		return topicConfigDef{}, false
	}
	return fromConfigs(d), true
}

// validateTopicConfigs checks a topic's overrides, each and together.
func validateTopicConfigs(m map[string]string) error { return configs.ValidateTopicConfigs(m) }

// topicConfigValue resolves a topic config: the override, else the default.
func (b *Broker) topicConfigValue(overrides map[string]string, name string) (string, bool) {
	if v, ok := overrides[name]; ok {
		return v, true
	}
	return b.topicDefaults.get(b.cfg, name), false
}

// topicDefaults is each topic config's default on this node, computed
// once from the node's configuration (which does not change while it
// runs): the reconcile and CreateTopics paths resolve several configs
// per partition, and looking each up in a fresh copy of the whole table
// (configs.TopicConfigs) cost about 5% of a node's CPU while thousands
// of partitions were created (docs/io-and-scale.md, "Scale").
type topicDefaults struct {
	once sync.Once
	m    map[string]string // config name → default ("" for an unknown name)
}

func (d *topicDefaults) get(cfg configs.Config, name string) string {
	d.once.Do(func() {
		all := configs.TopicConfigs()
		d.m = make(map[string]string, len(all))
		for _, c := range all {
			d.m[c.Name] = c.Default(cfg)
		}
	})
	return d.m[name]
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
		return 0 // a default that does not parse: see configs.TestTopicConfigDefaultsValid
	}
	return b.topicConfigInt(nil, name)
}

// builtinConfig is the configuration of a node started without a config
// file, variables or flags, computed once: DescribeConfigs reports a topic
// default that differs from it as set by the node (STATIC_BROKER_CONFIG),
// else as Kafka's DEFAULT_CONFIG.
type builtinConfig struct {
	once sync.Once
	cfg  configs.Config
}

func (d *builtinConfig) get() configs.Config {
	d.once.Do(func() { d.cfg = configs.Default() })
	return d.cfg
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

// logConfig maps a topic's configs to the storage engine's. Retention
// follows cleanup.policy: a topic whose policy does not include delete
// (compact alone) never loses data to retention.ms or retention.bytes.
func (b *Broker) logConfig(overrides map[string]string) storage.LogConfig {
	cfg := storage.LogConfig{
		SegmentBytes:       b.topicConfigInt(overrides, "segment.bytes"),
		SegmentMs:          b.topicConfigInt(overrides, "segment.ms"),
		RetentionBytes:     b.topicConfigInt(overrides, "retention.bytes"),
		RetentionMs:        b.topicConfigInt(overrides, "retention.ms"),
		IndexIntervalBytes: int(b.topicConfigInt(overrides, "index.interval.bytes")),
	}
	if !configs.CleaningConfig(overrides).Delete {
		cfg.RetentionBytes, cfg.RetentionMs = -1, -1
	}
	return cfg
}

// compactPolicies memoizes which cleanup.policy values include compact, so
// the produce path looks the policy up without parsing it per request.
type compactPolicies struct {
	mu sync.RWMutex
	m  map[string]bool // stored cleanup.policy value → includes compact
}

// maxCompactPolicies bounds the memo; distinct stored spellings are few
// (whitespace variants of four lists), so it is never reached in practice.
const maxCompactPolicies = 64

// compact reports whether a stored cleanup.policy value (set: the topic
// overrides it) includes compact. A value that does not parse (metadata
// written by an older version) counts as the default, delete.
func (p *compactPolicies) compact(value string, set bool) bool {
	if !set || value == configs.CleanupPolicyDelete {
		return false // the default and the common case: no lock, no parse
	}
	p.mu.RLock()
	c, ok := p.m[value]
	p.mu.RUnlock()
	if ok {
		return c
	}
	c, _, err := configs.CleanupPolicy(value)
	if err != nil {
		c = false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]bool{}
	}
	if len(p.m) < maxCompactPolicies {
		p.m[value] = c
	}
	return c
}
