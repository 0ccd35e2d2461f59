package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Listen != "127.0.0.1:9092" || c.HTTP.Listen != "127.0.0.1:9644" || c.DataDir != "./tusk-data" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.Storage.Fsync != "always" || c.Storage.FsyncInterval != 100*time.Millisecond {
		t.Fatalf("storage defaults: %+v", c.Storage)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tusk.yaml")
	if err := os.WriteFile(file, []byte("kafka:\n  listen: 127.0.0.1:1111\nstorage:\n  fsync: never\ntopic:\n  partitions: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TUSK_STORAGE_FSYNC", "interval")
	t.Setenv("TUSK_TOPIC_SEGMENT_BYTES", "4096")
	v := viper.New()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	if err := BindFlags(fs, v); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--topic-partitions", "7"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(v, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Listen != "127.0.0.1:1111" {
		t.Errorf("file value lost: %q", c.Kafka.Listen)
	}
	if c.Storage.Fsync != "interval" {
		t.Errorf("env should override file: %q", c.Storage.Fsync)
	}
	if c.Topic.SegmentBytes != 4096 {
		t.Errorf("env int: %d", c.Topic.SegmentBytes)
	}
	if c.Topic.Partitions != 7 {
		t.Errorf("flag should override file: %d", c.Topic.Partitions)
	}
}

func TestValidateRejects(t *testing.T) {
	c := Default()
	c.Storage.Fsync = "sometimes"
	c.Topic.Partitions = 0
	if err := c.Validate(); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestOptionNames(t *testing.T) {
	o := Option{Key: "kafka.request-max-bytes"}
	if o.Flag() != "kafka-request-max-bytes" || o.Env() != "TUSK_KAFKA_REQUEST_MAX_BYTES" {
		t.Fatalf("%s %s", o.Flag(), o.Env())
	}
}

// TestCleanerConfig: the cleaner's settings have their defaults, come
// from TUSK_CLEANER_* and --cleaner-* like every option, and are
// validated.
func TestCleanerConfig(t *testing.T) {
	c := Default()
	want := CleanerConfig{Enable: true, Threads: 1, IORate: 32 << 20, MapBytes: 64 << 20, Backoff: 15 * time.Second}
	if c.Cleaner != want {
		t.Fatalf("defaults %+v, want %+v", c.Cleaner, want)
	}
	t.Setenv("TUSK_CLEANER_IO_RATE", "0")
	t.Setenv("TUSK_CLEANER_ENABLE", "false")
	v := viper.New()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	if err := BindFlags(fs, v); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--cleaner-threads", "3", "--cleaner-map-bytes", "2097152", "--cleaner-backoff", "250ms"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(v, "")
	if err != nil {
		t.Fatal(err)
	}
	want = CleanerConfig{Enable: false, Threads: 3, IORate: 0, MapBytes: 2 << 20, Backoff: 250 * time.Millisecond}
	if c.Cleaner != want {
		t.Fatalf("loaded %+v, want %+v", c.Cleaner, want)
	}
	for _, bad := range []struct {
		mutate func(*CleanerConfig)
		err    string
	}{
		{func(c *CleanerConfig) { c.Threads = 0 }, "cleaner.threads 0 must be in [1, 64]"},
		{func(c *CleanerConfig) { c.IORate = -1 }, "cleaner.io-rate -1 must not be negative (0: unlimited)"},
		{func(c *CleanerConfig) { c.MapBytes = 1<<20 - 1 }, "cleaner.map-bytes 1048575 is below 1 MiB"},
		{func(c *CleanerConfig) { c.Backoff = 0 }, "cleaner.backoff 0s must be positive"},
	} {
		c := Default()
		bad.mutate(&c.Cleaner)
		if err := c.Validate(); err == nil || !strings.HasSuffix(err.Error(), bad.err) {
			t.Errorf("error %v, want one ending %q", err, bad.err)
		}
	}
}

// TestSuperUsersValidated: super-users entries must be Type:name; a bad
// one is refused by Validate with its value, good ones pass.
func TestSuperUsersValidated(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // "" valid
	}{
		{"", ""},
		{"User:admin; User:ops ;", ""},
		{"admin", `super-users: "admin" is not Type:name`},
		{"User:admin;:bob", `super-users: ":bob" is not Type:name`},
		{"User:", `super-users: "User:" is not Type:name`},
	} {
		c := Default()
		c.SuperUsers = tc.v
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.v, err, tc.want)
		}
	}
}

// TestDropBehindConfig: storage.drop-behind is off (0) by default, a
// budget turns it on, and a negative budget is refused.
func TestDropBehindConfig(t *testing.T) {
	c := Default()
	if c.Storage.DropBehind != 0 {
		t.Fatalf("storage.drop-behind default %d, want 0 (off)", c.Storage.DropBehind)
	}
	c.Storage.DropBehind = 256 << 20
	if err := c.Validate(); err != nil {
		t.Fatalf("storage.drop-behind 256 MiB: %v", err)
	}
	c.Storage.DropBehind = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "storage.drop-behind -1 must not be negative") {
		t.Fatalf("storage.drop-behind -1: %v", err)
	}
}
