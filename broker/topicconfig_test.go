package broker

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/configs"
)

// TestConfigIntFallsBackOnBadStoredValue: a stored override that does not
// parse (metadata written before configs were validated on the way into the
// Raft log) yields the default instead of crashing the reconcile loop, and
// is logged once.
func TestConfigIntFallsBackOnBadStoredValue(t *testing.T) {
	var out bytes.Buffer
	cfg := configs.Default()
	b := &Broker{cfg: cfg, log: zerolog.New(&out)}
	bad := map[string]string{"retention.ms": "abc", "segment.bytes": "12345"}
	for i := 0; i < 3; i++ {
		lc := b.logConfig(bad)
		if lc.RetentionMs != cfg.Topic.RetentionMs {
			t.Fatalf("retention.ms %d, want the default %d", lc.RetentionMs, cfg.Topic.RetentionMs)
		}
		if lc.SegmentBytes != 12345 {
			t.Fatalf("segment.bytes %d, want the override 12345", lc.SegmentBytes)
		}
	}
	if got := b.topicConfigInt(map[string]string{"min.insync.replicas": "x2"}, "min.insync.replicas"); got != 1 {
		t.Fatalf("min.insync.replicas %d, want the default 1", got)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"retention.ms"`) || !strings.Contains(lines[0], `"abc"`) || !strings.Contains(lines[1], `"min.insync.replicas"`) {
		t.Fatalf("want one warning per bad value, got %d lines:\n%s", len(lines), out.String())
	}
}
