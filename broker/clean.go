package broker

import (
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

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

// cleanerCollector exports the cleaner's figures: counters of this
// node's cleanings, and per compacted partition it leads the dirty ratio
// and the cleaner lag (bounded by the compacted partitions it leads).
type cleanerCollector struct {
	repl                                        *replica.Manager
	cleanings, redone, errors, abandoned        *prometheus.Desc
	bytesRead, bytesWritten, ratio, lag, maxLag *prometheus.Desc
}

func newCleanerCollector(repl *replica.Manager) *cleanerCollector {
	tp := []string{"topic", "partition"}
	return &cleanerCollector{
		repl:         repl,
		cleanings:    prometheus.NewDesc("tusk_cleaner_cleanings_total", "Cleaned generations this node swapped in as a participant.", nil, nil),
		redone:       prometheus.NewDesc("tusk_cleaner_redone_total", "Committed cleanings this node redid over its own bytes (it missed them or its output differed) and swapped in.", nil, nil),
		errors:       prometheus.NewDesc("tusk_cleaner_errors_total", "Cleanings that failed on this node (input that did not verify, I/O errors, redo results that differ from the committed checksums).", nil, nil),
		abandoned:    prometheus.NewDesc("tusk_cleaner_abandoned_total", "Prepared cleaning outputs this node dropped because their generation was abandoned.", nil, nil),
		bytesRead:    prometheus.NewDesc("tusk_cleaner_read_bytes_total", "Bytes the cleaner read (the input's checksum verification and both passes), counted as it goes.", nil, nil),
		bytesWritten: prometheus.NewDesc("tusk_cleaner_written_bytes_total", "Bytes the cleaner wrote, counted as it goes.", nil, nil),
		ratio:        prometheus.NewDesc("tusk_cleaner_cleanable_ratio", "Dirty share of the cleanable range of a compacted partition this node leads, at the last check.", tp, nil),
		lag:          prometheus.NewDesc("tusk_cleaner_lag_seconds", "How long ago the oldest dirty sealed segment of a compacted partition this node leads was sealed (0: nothing dirty).", tp, nil),
		maxLag:       prometheus.NewDesc("tusk_cleaner_max_lag_seconds", "The largest tusk_cleaner_lag_seconds on this node.", nil, nil),
	}
}

func (c *cleanerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cleanings, c.redone, c.errors, c.abandoned, c.bytesRead, c.bytesWritten, c.ratio, c.lag, c.maxLag} {
		ch <- d
	}
}

func (c *cleanerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.repl.CleanerStats()
	for _, v := range []struct {
		d *prometheus.Desc
		n int64
	}{{c.cleanings, st.Cleanings}, {c.redone, st.Redone}, {c.errors, st.Failed}, {c.abandoned, st.Abandoned}, {c.bytesRead, st.BytesIn}, {c.bytesWritten, st.BytesOut}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
	}
	maxLag := 0.0
	for tp, d := range c.repl.Dirty() {
		p := strconv.Itoa(int(tp.Partition))
		lag := float64(d.LagMs) / 1000
		maxLag = max(maxLag, lag)
		ch <- prometheus.MustNewConstMetric(c.ratio, prometheus.GaugeValue, d.Ratio, tp.Topic, p)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag, tp.Topic, p)
	}
	ch <- prometheus.MustNewConstMetric(c.maxLag, prometheus.GaugeValue, maxLag)
}
