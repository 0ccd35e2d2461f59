package configs

import (
	"os"
	"path/filepath"
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
