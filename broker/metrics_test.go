package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
)

// gathered returns every sample of the broker's registry as
// `name{label="value",...}` → value, labels sorted by name.
func gathered(t *testing.T, b *Broker) map[string]float64 {
	t.Helper()
	mfs, err := b.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = sampleValue(m)
		}
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetricsPerTopicAndPartition: with metrics.per-partition on, a topic's
// produced records and bytes, consumers' fetched records and bytes, each partition's
// high watermark, log end offset and size, partitions led, under-
// replicated and offline partitions, the lease and a group's lag per
// partition and per topic have exact values; per-topic series go away
// with the topic.
func TestMetricsPerTopicAndPartition(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Metrics.PerPartition = true
		c.Groups.OffsetsPartitions = 1
		c.Groups.InitialRebalanceDelay = 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "m"); err != nil {
		t.Fatal(err)
	}
	counts := map[int32]int{0: 10, 1: 4}
	prod := newClient(t, b, kgo.DefaultProduceTopic("m"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p, n := range counts {
		for i := 0; i < n; i++ {
			if err := prod.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("v%d-%d", p, i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cons := newClient(t, b, kgo.ConsumeTopics("m"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for got := 0; got < 14; {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of 14: %v", got, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		got += fs.NumRecords()
	}
	cons.Close()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "m", Partition: 0, At: 3, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: "m", Partition: 1, At: 4, LeaderEpoch: -1})
	if r, err := adm.CommitOffsets(ctx, "g", offs); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}

	m := gathered(t, b)
	size0, size1 := m[`tusk_partition_size_bytes{partition="0",topic="m"}`], m[`tusk_partition_size_bytes{partition="1",topic="m"}`]
	if size0 <= 0 || size1 <= 0 {
		t.Fatalf("partition sizes %v, %v", size0, size1)
	}
	want := map[string]float64{
		`tusk_topic_produced_records_total{topic="m"}`:                         14,
		`tusk_topic_produced_bytes_total{topic="m"}`:                           size0 + size1,
		`tusk_partition_produced_records_total{partition="0",topic="m"}`:       10,
		`tusk_partition_produced_records_total{partition="1",topic="m"}`:       4,
		`tusk_partition_produced_bytes_total{partition="0",topic="m"}`:         size0,
		`tusk_partition_produced_bytes_total{partition="1",topic="m"}`:         size1,
		`tusk_topic_fetched_bytes_total{topic="m"}`:                            size0 + size1,
		`tusk_topic_fetched_records_total{topic="m"}`:                          14,
		`tusk_partition_fetched_bytes_total{partition="0",topic="m"}`:          size0,
		`tusk_partition_fetched_bytes_total{partition="1",topic="m"}`:          size1,
		`tusk_partition_fetched_records_total{partition="0",topic="m"}`:        10,
		`tusk_partition_fetched_records_total{partition="1",topic="m"}`:        4,
		`tusk_partition_high_watermark{partition="0",topic="m"}`:               10,
		`tusk_partition_high_watermark{partition="1",topic="m"}`:               4,
		`tusk_partition_log_end_offset{partition="0",topic="m"}`:               10,
		`tusk_partition_log_end_offset{partition="1",topic="m"}`:               4,
		`tusk_leader_partitions`:                                               3, // m/0, m/1, __consumer_offsets/0
		`tusk_under_replicated_partitions`:                                     0,
		`tusk_offline_partitions`:                                              0,
		`tusk_lease_valid`:                                                     1,
		`tusk_consumer_group_partition_lag{group="g",partition="0",topic="m"}`: 7,
		`tusk_consumer_group_partition_lag{group="g",partition="1",topic="m"}`: 0,
		`tusk_consumer_group_lag{group="g",topic="m"}`:                         7,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	// Every acks=all produce above waited for a group commit (one commit
	// syncs one or more segment files).
	if c, f := m["tusk_storage_group_commit_seconds"], m["tusk_storage_fsyncs_total"]; c < 1 || c > f {
		t.Errorf("tusk_storage_group_commit_seconds counts %v commits, want between 1 and the %v fsyncs", c, f)
	}
	if r := m["tusk_lease_remaining_seconds"]; r <= 0 || r > b.cfg.Lease.Timeout.Seconds() {
		t.Errorf("tusk_lease_remaining_seconds = %v, want in (0, %v]", r, b.cfg.Lease.Timeout.Seconds())
	}

	checkDocumented(t, m)

	// The same series over HTTP, in Prometheus' text format.
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `tusk_consumer_group_lag{group="g",topic="m"} 7`) {
		t.Errorf("/metrics lacks the group's lag")
	}

	if _, err := adm.DeleteTopic(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	for {
		m := gathered(t, b)
		_, topic := m[`tusk_topic_produced_records_total{topic="m"}`]
		_, part := m[`tusk_partition_produced_bytes_total{partition="0",topic="m"}`]
		if !topic && !part {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("series of the deleted topic remain: topic %v partition %v", topic, part)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsPerTopicOnly: by default no series carries a partition label.
func TestMetricsPerTopicOnly(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "m"); err != nil {
		t.Fatal(err)
	}
	prod := newClient(t, b, kgo.DefaultProduceTopic("m"))
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	m := gathered(t, b)
	if m[`tusk_topic_produced_records_total{topic="m"}`] != 1 {
		t.Errorf("tusk_topic_produced_records_total{topic=m} = %v, want 1", m[`tusk_topic_produced_records_total{topic="m"}`])
	}
	for k := range m {
		if strings.Contains(k, "partition=") {
			t.Errorf("series %s with metrics.per-partition off", k)
		}
	}
}

// checkDocumented: every tusk_ series family the registry holds (m) is
// listed in the README's Metrics section, and every tusk_ name that
// section and the Grafana dashboard use is one the code defines (as a
// quoted name in a non-test Go file: some series only appear once there is
// something to report).
func checkDocumented(t *testing.T, m map[string]float64) {
	t.Helper()
	have := map[string]bool{}
	for k := range m {
		if name, _, _ := strings.Cut(k, "{"); strings.HasPrefix(name, "tusk_") {
			have[name] = true
		}
	}
	defined := map[string]bool{}
	quoted := regexp.MustCompile(`"(tusk_[a-z_]+)"`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "compat-tests" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, sm := range quoted.FindAllStringSubmatch(string(src), -1) {
			defined[sm[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Metrics\n")
	if !ok {
		t.Fatal("README has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	dash, err := os.ReadFile("../docs/grafana/tusk.json")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`tusk_[a-z_]+`)
	documented := map[string]bool{}
	for _, n := range name.FindAllString(section, -1) {
		documented[n] = true
		if !defined[n] {
			t.Errorf("README lists %s, which no code defines", n)
		}
	}
	for n := range have {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && defined[b] {
				n = b
			}
		}
		if !documented[n] {
			t.Errorf("/metrics has %s, which the README's Metrics section does not list", n)
		}
	}
	for _, n := range name.FindAllString(string(dash), -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && defined[b] {
				n = b
			}
		}
		if !defined[n] {
			t.Errorf("docs/grafana/tusk.json uses %s, which no code defines", n)
		}
	}
}

// TestMetricsGroupRebalances: a group's first member joining completes
// one join phase (generation 1): tusk_group_rebalances_total is 1.
func TestMetricsGroupRebalances(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Groups.InitialRebalanceDelay = 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "rb"); err != nil {
		t.Fatal(err)
	}
	if m := gathered(t, b); m["tusk_group_rebalances_total"] != 0 {
		t.Fatalf("rebalances before any group: %v", m["tusk_group_rebalances_total"])
	}
	cons := newClient(t, b, kgo.ConsumeTopics("rb"), kgo.ConsumerGroup("rbg"))
	for {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		cons.PollFetches(pctx) // joins the group in the background
		pcancel()
		if err := ctx.Err(); err != nil {
			t.Fatalf("group never stable: %v", err)
		}
		described, err := adm.DescribeGroups(ctx, "rbg")
		if err == nil && described["rbg"].State == "Stable" {
			break
		}
	}
	if m := gathered(t, b); m["tusk_group_rebalances_total"] != 1 {
		t.Fatalf("tusk_group_rebalances_total = %v, want 1", m["tusk_group_rebalances_total"])
	}
}

// TestNextOffset: the offset after the last whole batch of copied fetch
// data (the records-out count of reads that are not sendfile sections,
// e.g. sealed reads trimmed at a segment's end), 0 for none.
func TestNextOffset(t *testing.T) {
	batch := func(base int64, n int) []byte {
		recs := make([]kafkaproto.KV, n)
		b := kafkaproto.AppendBatch(nil, 1, recs)
		kafkaproto.SetBaseOffset(b, base)
		return b
	}
	two := append(batch(10, 3), batch(13, 5)...)
	for _, c := range []struct {
		data []byte
		want int64
	}{{nil, 0}, {batch(0, 1), 1}, {two, 18}, {two[:len(two)-1], 13}} {
		if got := nextOffset(c.data); got != c.want {
			t.Errorf("nextOffset of %d bytes = %d, want %d", len(c.data), got, c.want)
		}
	}
}

// TestDashboardUsesAlertSeries: the Grafana dashboard (docs/grafana/
// tusk.json) is valid JSON whose panels query every series issue 15's
// operators alert on: bytes and records in and out per topic, under-
// replicated and offline partitions, partitions led, lease state and
// age, rolls by reason, failovers and their duration, follower lag in
// records and time, high watermark and log end per partition, group lag
// per group and partition, group rebalances, cleaner and transaction
// figures.
func TestDashboardUsesAlertSeries(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana/tusk.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("docs/grafana/tusk.json: %v", err)
	}
	var exprs strings.Builder
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs.WriteString(tg.Expr + "\n")
		}
	}
	for _, series := range []string{
		"tusk_topic_produced_bytes_total", "tusk_topic_produced_records_total", "tusk_topic_fetched_bytes_total", "tusk_topic_fetched_records_total",
		"tusk_under_replicated_partitions", "tusk_offline_partitions", "tusk_leader_partitions", "tusk_lease_valid", "tusk_lease_remaining_seconds",
		"tusk_segment_rolls_total", "tusk_failover_partitions_total", "tusk_failover_duration_seconds_bucket",
		"tusk_follower_lag_records", "tusk_follower_lag_seconds", "tusk_partition_high_watermark", "tusk_partition_log_end_offset",
		"tusk_consumer_group_lag", "tusk_consumer_group_partition_lag", "tusk_group_rebalances_total",
		"tusk_cleaner_max_lag_seconds", "tusk_topic_open_transactions", "tusk_topic_lso_lag", "tusk_transactions",
	} {
		if !regexp.MustCompile(`\b` + series + `\b`).MatchString(exprs.String()) {
			t.Errorf("no panel of docs/grafana/tusk.json queries %s", series)
		}
	}
}
