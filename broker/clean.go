package broker

import (
	"path/filepath"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// The broker's side of compaction (docs/compaction.md, "The driver"):
// the cleaner's settings from the node's config, and each topic's
// compaction settings for package replica.

// cleanerConfig is replica's cleaner settings from cleaner.*.
func (b *Broker) cleanerConfig(def replica.CleanerConfig) replica.CleanerConfig {
	c := def
	c.Enable = b.cfg.Cleaner.Enable
	c.Threads = b.cfg.Cleaner.Threads
	c.MapBytes = b.cfg.Cleaner.MapBytes
	c.Backoff = b.cfg.Cleaner.Backoff
	c.Budget = storage.NewBudget(b.cfg.Cleaner.IORate)
	c.SpillDir = filepath.Join(b.cfg.DataDir, "cleaner")
	return c
}

// compaction reads topic's compaction settings (configs.CleaningConfig
// over its overrides). ok is false for an unknown topic. A topic that is
// not compacted returns after one lookup (the roll loop asks often).
func (b *Broker) compaction(topic string) (replica.CompactionConfig, bool) {
	fsm := b.store.FSM()
	policy, set, _, ok := fsm.TopicConfigValue(topic, "cleanup.policy")
	if !ok {
		return replica.CompactionConfig{}, false
	}
	if !b.keys.policies.compact(policy, set) {
		return replica.CompactionConfig{Delete: true}, true
	}
	overrides := map[string]string{}
	for _, k := range []string{"cleanup.policy", "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "max.compaction.lag.ms", "delete.retention.ms"} {
		if v, set, _, _ := fsm.TopicConfigValue(topic, k); set {
			overrides[k] = v
		}
	}
	c := configs.CleaningConfig(overrides)
	return replica.CompactionConfig{Compact: c.Compact, Delete: c.Delete, MinDirtyRatio: c.MinCleanableDirtyRatio,
		MinLagMs: c.MinCompactionLagMs, MaxLagMs: c.MaxCompactionLagMs, DeleteRetentionMs: c.DeleteRetentionMs}, true
}
