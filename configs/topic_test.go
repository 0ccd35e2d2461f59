package configs

import "testing"

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
		{"cleanup.policy", "compact", `config cleanup.policy: value "compact" is not supported (allowed: delete)`},
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
