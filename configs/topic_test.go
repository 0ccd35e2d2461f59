package configs

import (
	"math"
	"strings"
	"testing"
)

func TestValidateTopicConfig(t *testing.T) {
	for _, c := range []struct {
		name, value string
		err         string // substring; "" for accepted
	}{
		{"retention.ms", "86400000", ""},
		{"retention.ms", "-1", ""},
		{"retention.ms", "abc", `config retention.ms: "abc" is not a long`},
		{"retention.ms", "-2", "config retention.ms: -2 is out of range (at least -1)"},
		{"retention.bytes", "-7", ""},
		{"segment.bytes", "1024", ""},
		{"segment.bytes", "1023", "config segment.bytes: 1023 is out of range (at least 1024)"},
		{"segment.bytes", "4294967296", `config segment.bytes: "4294967296" is not an int`},
		{"segment.ms", "0", "config segment.ms: 0 is out of range (at least 1)"},
		{"min.insync.replicas", "0", "config min.insync.replicas: 0 is out of range (at least 1)"},
		{"min.insync.replicas", "2", ""},
		{"max.message.bytes", " 100", `config max.message.bytes: " 100" is not an int`},
		{"cleanup.policy", "delete", ""},
		{"cleanup.policy", "compact", ""},
		{"cleanup.policy", "compact,delete", ""},
		{"cleanup.policy", "delete,compact", ""},
		{"cleanup.policy", " compact , delete ", ""},
		{"cleanup.policy", "Compact", `config cleanup.policy: "Compact" in "Compact" is not a policy (want delete, compact or compact,delete)`},
		{"cleanup.policy", "compact;delete", `config cleanup.policy: "compact;delete" in "compact;delete" is not a policy (want delete, compact or compact,delete)`},
		{"cleanup.policy", "compact,", `config cleanup.policy: "" in "compact," is not a policy (want delete, compact or compact,delete)`},
		{"cleanup.policy", "compact,compact", `config cleanup.policy: "compact,compact" names compact twice`},
		{"cleanup.policy", "", `config cleanup.policy: "" is empty (want delete, compact or compact,delete)`},
		{"cleanup.policy", " ", `config cleanup.policy: " " is empty (want delete, compact or compact,delete)`},
		{"min.cleanable.dirty.ratio", "0", ""},
		{"min.cleanable.dirty.ratio", "1", ""},
		{"min.cleanable.dirty.ratio", "1.01", "config min.cleanable.dirty.ratio: 1.01 is out of range (a number in [0, 1])"},
		{"min.cleanable.dirty.ratio", "-0.1", "config min.cleanable.dirty.ratio: -0.1 is out of range (a number in [0, 1])"},
		{"min.cleanable.dirty.ratio", "NaN", "config min.cleanable.dirty.ratio: NaN is out of range (a number in [0, 1])"},
		{"min.compaction.lag.ms", "0", ""},
		{"min.compaction.lag.ms", "-1", "config min.compaction.lag.ms: -1 is out of range (at least 0)"},
		{"max.compaction.lag.ms", "1", ""},
		{"max.compaction.lag.ms", "9223372036854775807", ""},
		{"max.compaction.lag.ms", "0", "config max.compaction.lag.ms: 0 is out of range (at least 1)"},
		{"delete.retention.ms", "0", ""},
		{"delete.retention.ms", "-1", "config delete.retention.ms: -1 is out of range (at least 0)"},
		{"delete.retention.ms", "1.5", `config delete.retention.ms: "1.5" is not a long`},
		{"segment.ms", "1", ""},
		{"segment.rotate", "false", ""},
		{"segment.rotate", "yes", `config segment.rotate: "yes" is not a boolean`},
		{"min.cleanable.dirty.ratio", "0.25", ""},
		{"min.cleanable.dirty.ratio", "half", `config min.cleanable.dirty.ratio: "half" is not a number`},
		{"no.such.config", "1", `unknown topic config "no.such.config"`},
		{"", "", `unknown topic config ""`},
	} {
		err := ValidateTopicConfig(c.name, c.value)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s=%q: %v", c.name, c.value, err)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s=%q: error %v, want %q", c.name, c.value, err, c.err)
		}
	}
}

func TestValidateTopicConfigsInNameOrder(t *testing.T) {
	m := map[string]string{"segment.ms": "x", "retention.ms": "y", "a.unknown": "1", "segment.bytes": "2048"}
	for i := 0; i < 20; i++ {
		if err := ValidateTopicConfigs(m); err == nil || err.Error() != `unknown topic config "a.unknown"` {
			t.Fatalf("error %v, want the first name's", err)
		}
	}
	if err := ValidateTopicConfigs(nil); err != nil {
		t.Fatal(err)
	}
}

// TestTopicConfigDefaultsValid: every default passes its own validation.
func TestTopicConfigDefaultsValid(t *testing.T) {
	c := Default()
	seen := map[string]bool{}
	for _, d := range TopicConfigs() {
		if seen[d.Name] {
			t.Errorf("%s listed twice", d.Name)
		}
		seen[d.Name] = true
		if err := ValidateTopicConfig(d.Name, d.Default(c)); err != nil {
			t.Errorf("default of %s: %v", d.Name, err)
		}
	}
}

func TestCleanupPolicy(t *testing.T) {
	for _, c := range []struct {
		v            string
		compact, del bool
		ok           bool
	}{
		{"delete", false, true, true},
		{"compact", true, false, true},
		{"compact,delete", true, true, true},
		{"delete,compact", true, true, true},
		{"  delete ,\tcompact ", true, true, true},
		{"", false, false, false},
		{"delete,delete", false, false, false},
		{"compact,,delete", false, false, false},
		{"DELETE", false, false, false},
		{"none", false, false, false},
	} {
		compact, del, err := CleanupPolicy(c.v)
		if (err == nil) != c.ok || compact != c.compact || del != c.del {
			t.Errorf("CleanupPolicy(%q) = %v, %v, %v; want %v, %v, ok %v", c.v, compact, del, err, c.compact, c.del, c.ok)
		}
	}
}

func TestNormalizeList(t *testing.T) {
	for v, want := range map[string]string{"delete": "delete", " compact , delete ": "compact,delete", "delete,compact": "delete,compact", "": "", "  ": ""} {
		if got := NormalizeList(v); got != want {
			t.Errorf("NormalizeList(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestValidateCompactionLags: min.compaction.lag.ms may not exceed
// max.compaction.lag.ms, the default standing for an unset one.
func TestValidateCompactionLags(t *testing.T) {
	for _, c := range []struct {
		m   map[string]string
		err string
	}{
		{map[string]string{"min.compaction.lag.ms": "1000", "max.compaction.lag.ms": "1000"}, ""},
		{map[string]string{"min.compaction.lag.ms": "1000"}, ""},
		{map[string]string{"max.compaction.lag.ms": "1"}, ""},
		{map[string]string{"min.compaction.lag.ms": "1001", "max.compaction.lag.ms": "1000"}, "config min.compaction.lag.ms 1001 exceeds max.compaction.lag.ms 1000"},
		{map[string]string{"min.compaction.lag.ms": "x", "max.compaction.lag.ms": "1000"}, `config min.compaction.lag.ms: "x" is not a long`},
	} {
		err := ValidateTopicConfigs(c.m)
		if (c.err == "" && err != nil) || (c.err != "" && (err == nil || err.Error() != c.err)) {
			t.Errorf("%v: error %v, want %q", c.m, err, c.err)
		}
	}
}

func TestCleaningConfig(t *testing.T) {
	def := TopicCleaning{Delete: true, MinCleanableDirtyRatio: 0.5, MinCompactionLagMs: 0, MaxCompactionLagMs: math.MaxInt64, DeleteRetentionMs: 86400000}
	if got := CleaningConfig(nil); got != def {
		t.Fatalf("defaults %+v, want %+v", got, def)
	}
	got := CleaningConfig(map[string]string{"cleanup.policy": "compact, delete", "min.cleanable.dirty.ratio": "0.1",
		"min.compaction.lag.ms": "100", "max.compaction.lag.ms": "2000", "delete.retention.ms": "5"})
	want := TopicCleaning{Compact: true, Delete: true, MinCleanableDirtyRatio: 0.1, MinCompactionLagMs: 100, MaxCompactionLagMs: 2000, DeleteRetentionMs: 5}
	if got != want {
		t.Fatalf("overrides %+v, want %+v", got, want)
	}
	// Stored values that do not validate count as unset.
	got = CleaningConfig(map[string]string{"cleanup.policy": "bogus", "min.cleanable.dirty.ratio": "2", "delete.retention.ms": "-5", "min.compaction.lag.ms": "x"})
	if got != def {
		t.Fatalf("invalid overrides %+v, want the defaults %+v", got, def)
	}
	if got := CleaningConfig(map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "50", "max.compaction.lag.ms": "10"}); !got.Compact || got.Delete || got.MinCompactionLagMs != 50 || got.MaxCompactionLagMs != 50 {
		t.Fatalf("max below min: %+v, want compact only and max raised to min 50", got)
	}
}

// TestTopicConfigDocs: every config has documentation; the ones the
// cleaner acts on are enforced and name their Kafka broker synonym.
func TestTopicConfigDocs(t *testing.T) {
	synonyms := map[string]string{
		"cleanup.policy": "log.cleanup.policy", "min.cleanable.dirty.ratio": "log.cleaner.min.cleanable.ratio",
		"min.compaction.lag.ms": "log.cleaner.min.compaction.lag.ms", "max.compaction.lag.ms": "log.cleaner.max.compaction.lag.ms",
		"delete.retention.ms": "log.cleaner.delete.retention.ms", "segment.ms": "log.roll.ms",
	}
	for _, d := range TopicConfigs() {
		if d.Doc == "" {
			t.Errorf("%s has no documentation", d.Name)
		}
		if want, ok := synonyms[d.Name]; ok && (!d.Enforced || d.Synonym != want || strings.Contains(d.Doc, "stored only")) {
			t.Errorf("%s: enforced %v, synonym %q, doc %q; want enforced with synonym %q", d.Name, d.Enforced, d.Synonym, d.Doc, want)
		}
	}
}
