package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Compaction (docs/compaction.md) against real tusk processes: N keys ×
// M versions written through rolls of 256 KiB segments, some keys then
// deleted with tombstones; once the cleaner ran, a fresh consumer reads
// exactly the last value of every live key, at the offset it was written
// at, and nothing of the deleted keys (delete.retention.ms 0).

// compactWait bounds the wait for the cleaner.
const compactWait = 90 * time.Second

const (
	compactKeys     = 200
	compactVersions = 20
	compactDeleted  = 20 // keys k000..k019 end with a tombstone
)

// compactTopicConfigs are the configs of the tests' compacted topics:
// 256 KiB segments, a tail that rolls after 300 ms, tombstones removed
// at the first cleaning, and any dirty share enough.
func compactTopicConfigs() map[string]*string {
	return map[string]*string{
		"cleanup.policy":            strp("compact"),
		"segment.bytes":             strp("262144"),
		"segment.ms":                strp("300"),
		"delete.retention.ms":       strp("0"),
		"min.cleanable.dirty.ratio": strp("0.01"),
	}
}

type compactRec struct {
	off   int64
	value string
}

// writeCompactWorkload writes the workload to partition 0 of topic and
// returns what a consumer must read once it is cleaned (key → last live
// record), the offset of the final sentinel record and the producer.
// After each version it waits until sealedEnd (the end of the
// partition's last sealed segment) covers it, so the versions spread over
// many segments (a fast producer would otherwise fill one before the
// roll loop looks; merges of cleaned segments make counting segments
// useless). opts are further producer options (e.g. no compression, so
// the log holds the workload's full size).
func writeCompactWorkload(t *testing.T, seeds []string, topic string, sealedEnd func() int64, opts ...kgo.Opt) (map[string]compactRec, int64, *kgo.Client) {
	t.Helper()
	cl := newClusterClient(t, seeds, append([]kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(64 << 10)}, opts...)...)
	pad := strings.Repeat("x", 1000)
	want := map[string]compactRec{}
	ctx := ctxTimeout(t, 120*time.Second)
	for v := range compactVersions {
		recs := make([]*kgo.Record, 0, compactKeys)
		for k := range compactKeys {
			recs = append(recs, &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "k%03d", k), Value: fmt.Appendf(nil, "k%03d-v%02d-%s", k, v, pad)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce version %d: %v", v, err)
		}
		for _, r := range recs {
			want[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
		}
		last := recs[len(recs)-1].Offset
		waitFor(t, 15*time.Second, fmt.Sprintf("a roll after version %d", v), func() (bool, string) {
			end := sealedEnd()
			return end > last, fmt.Sprintf("sealed up to %d, version %d ends at %d", end, v, last)
		})
	}
	var tombs []*kgo.Record
	for k := range compactDeleted {
		tombs = append(tombs, &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "k%03d", k)})
	}
	if err := cl.ProduceSync(ctx, tombs...).FirstErr(); err != nil {
		t.Fatalf("produce tombstones: %v", err)
	}
	for _, r := range tombs {
		delete(want, string(r.Key))
	}
	end := &kgo.Record{Partition: 0, Key: []byte("zz-sentinel"), Value: []byte("end")}
	if err := cl.ProduceSync(ctx, end).FirstErr(); err != nil {
		t.Fatalf("produce the sentinel: %v", err)
	}
	want["zz-sentinel"] = compactRec{end.Offset, "end"}
	return want, end.Offset, cl
}

// readCompacted reads partition 0 of topic from the start up to the
// sentinel with a fresh consumer and returns every record seen (key →
// record; a key seen twice is reported as an error).
func readCompacted(t *testing.T, seeds []string, topic string, sentinel int64) (map[string]compactRec, error) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]compactRec{}
	var dup error
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("sentinel at %d not reached: %w", sentinel, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return got, ferr
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset > sentinel {
				return
			}
			if _, ok := got[string(r.Key)]; ok && dup == nil {
				dup = fmt.Errorf("key %s read twice (offset %d)", r.Key, r.Offset)
			}
			got[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
			done = done || r.Offset == sentinel
		})
		if done {
			return got, dup
		}
	}
}

// waitCompacted polls until a fresh consumer reads exactly want.
func waitCompacted(t *testing.T, seeds []string, topic string, want map[string]compactRec, sentinel int64) {
	t.Helper()
	waitFor(t, compactWait, "a fresh consumer reads exactly the last value of every live key", func() (bool, string) {
		got, err := readCompacted(t, seeds, topic, sentinel)
		if err != nil {
			return false, err.Error()
		}
		if maps.Equal(got, want) {
			return true, ""
		}
		extra, missing := 0, 0
		for k, r := range got {
			if w, ok := want[k]; !ok || w != r {
				extra++
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				missing++
			}
		}
		return false, fmt.Sprintf("%d records read, %d wanted: %d unexpected, %d missing", len(got), len(want), extra, missing)
	})
}

// sealedEndViaConsole is the end of partition 0's last sealed segment,
// through the console's JSON API (-1 when it does not answer).
func sealedEndViaConsole(t *testing.T, n *node, topic string) int64 {
	t.Helper()
	r, err := http.Get("http://" + n.HTTP + "/api/v1/topics/" + topic + "/partitions/0")
	if err != nil {
		return -1
	}
	defer r.Body.Close()
	var v struct {
		Segments []struct {
			State string `json:"state"`
			End   int64  `json:"end"`
		} `json:"segments"`
	}
	if r.StatusCode != http.StatusOK || json.NewDecoder(r.Body).Decode(&v) != nil {
		return -1
	}
	end := int64(-1)
	for _, s := range v.Segments {
		if s.State == "sealed" {
			end = max(end, s.End)
		}
	}
	return end
}

// TestCompactionSingleNode: the workload on one node; after cleaning a
// fresh kgo consumer, kcat and confluent-kafka-python read exactly the
// last value of every live key; after a restart, the same.
func TestCompactionSingleNode(t *testing.T) {
	done := cardSetup(t, "tusk single node, cleaner.backoff 200ms")
	dir := t.TempDir()
	n := startTusk(t, withDataDir(dir), withFlag("cleaner-backoff", "200ms"))
	done()
	card(t, "franz-go kgo", "compaction: last value per key, tombstones removed, restart keeps it")
	const topic = "compacted"
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, 1, compactTopicConfigs())
	want, sentinel, producer := writeCompactWorkload(t, []string{n.Kafka}, topic, func() int64 { return sealedEndViaConsole(t, n, topic) })
	waitCompacted(t, []string{n.Kafka}, topic, want, sentinel)

	t.Run("kcat", func(t *testing.T) {
		kcat := requireTool(t, "kcat")
		card(t, "kcat", "compaction: reads the cleaned log")
		out, _ := runTool(t, nil, kcat, "-b", n.Kafka, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o %k %S\n")
		got := map[string]compactRec{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var off, size int64
			var key string
			if _, err := fmt.Sscanf(line, "%d %s %d", &off, &key, &size); err != nil {
				t.Fatalf("kcat line %q: %v", line, err)
			}
			got[key] = compactRec{off, ""}
		}
		if len(got) != len(want) {
			t.Fatalf("kcat read %d keys, want %d", len(got), len(want))
		}
		for k, w := range want {
			if got[k].off != w.off {
				t.Fatalf("kcat: key %s at %d, want %d", k, got[k].off, w.off)
			}
		}
	})
	t.Run("confluent-kafka-python", func(t *testing.T) {
		py := requirePythonModule(t, "confluent_kafka", "python3-confluent-kafka")
		card(t, "confluent-kafka-python", "compaction: reads the cleaned log")
		script := `
import sys
from confluent_kafka import Consumer, TopicPartition, KafkaError
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "compact-py", "enable.partition.eof": True, "enable.auto.commit": False})
c.assign([TopicPartition(sys.argv[2], 0, 0)])
while True:
    m = c.poll(10)
    if m is None:
        sys.exit("timeout")
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF:
            break
        sys.exit(str(m.error()))
    print(m.offset(), m.key().decode(), len(m.value() or b""))
c.close()
`
		out, err := exec.Command(py, "-c", script, n.Kafka, topic).CombinedOutput()
		if err != nil {
			t.Fatalf("python consumer: %v\n%s", err, out)
		}
		got := map[string]int64{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var off, size int64
			var key string
			if _, err := fmt.Sscanf(line, "%d %s %d", &off, &key, &size); err != nil {
				t.Fatalf("python line %q: %v", line, err)
			}
			got[key] = off
		}
		if len(got) != len(want) {
			t.Fatalf("python read %d keys, want %d", len(got), len(want))
		}
		for k, w := range want {
			if got[k] != w.off {
				t.Fatalf("python: key %s at %d, want %d", k, got[k], w.off)
			}
		}
	})

	// A fetch from a removed offset returns the next surviving record.
	next := int64(-1)
	for _, r := range want {
		if r.off > 100 && (next < 0 || r.off < next) {
			next = r.off
		}
	}
	fc := newKgo(t, n, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(100)}}))
	fs := fc.PollRecords(ctxTimeout(t, 15*time.Second), 1)
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != next {
		t.Fatalf("fetch from removed offset 100: %v, want the record at %d (errors %v)", recs, next, fs.Errors())
	}

	// A restart (same address) recovers the cleaned segments (offset
	// gaps, empty batches) without losing anything, and the idempotent
	// producer that wrote them goes on: its sequence state survived the
	// cleaning (each producer's last batch is kept) and the restart.
	n.Stop(t)
	n = startTusk(t, withDataDir(dir), withFlag("cleaner-backoff", "200ms"), withFlag("kafka-listen", n.Kafka))
	got, err := readCompacted(t, []string{n.Kafka}, topic, sentinel)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("after a restart: %d records (want %d), err %v", len(got), len(want), err)
	}
	after := &kgo.Record{Partition: 0, Key: []byte("after"), Value: []byte("restart")}
	if err := producer.ProduceSync(ctxTimeout(t, 30*time.Second), after).FirstErr(); err != nil || after.Offset != sentinel+1 {
		t.Fatalf("the workload's idempotent producer after the cleaning and restart: offset %d (want %d), %v", after.Offset, sentinel+1, err)
	}
}

// TestCompactionCluster: the workload on 3 nodes with RF=3 and rotation;
// after cleaning every replica holds byte-identical logs, the chain's
// segments carry the committed generation, and a fresh consumer reads
// exactly the last value of every live key.
func TestCompactionCluster(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster, cleaner.backoff 200ms")
	c := startClusterWith(t, 3, func(int32) []startOpt { return []startOpt{withFlag("cleaner-backoff", "200ms")} })
	done()
	card(t, "franz-go kgo + tusk cluster", "compaction: RF=3 with rotation, replicas byte-identical after cleaning")
	const topic = "compacted3"
	seeds := c.kafkaAddrs(c.ids()...)
	adm := kadm.NewClient(newClusterClient(t, seeds))
	createClusterTopic(t, c, adm, topic, compactTopicConfigs())
	want, sentinel, _ := writeCompactWorkload(t, seeds, topic, func() int64 {
		end := int64(-1)
		for _, s := range c.segmentsVia(t, c.ids()[0], topic, 0) {
			if s.State == "sealed" {
				end = max(end, s.End)
			}
		}
		return end
	})
	waitCompacted(t, seeds, topic, want, sentinel)

	// Every replica swaps the committed generation in: the same bytes up
	// to the end of the last cleaned segment.
	var upTo int64
	leaders := map[int32]bool{}
	waitFor(t, 30*time.Second, "a committed cleaning in the chain", func() (bool, string) {
		segs := c.segmentsVia(t, c.ids()[0], topic, 0)
		upTo = 0
		for _, s := range segs {
			leaders[s.Leader] = true
			if s.State == "sealed" && s.Generation > 0 {
				upTo = max(upTo, s.End)
			}
		}
		return upTo > sentinel, fmt.Sprintf("cleaned up to %d", upTo)
	})
	if len(leaders) < 2 {
		t.Errorf("segments led by %v only: rotation did not move leadership", slices.Collect(maps.Keys(leaders)))
	}
	var sums []string
	waitFor(t, 30*time.Second, "every replica byte-identical over the cleaned range", func() (bool, string) {
		sums = sums[:0]
		for _, id := range c.ids() {
			sums = append(sums, c.logChecksum(t, id, topic, 0, upTo))
		}
		if sums[0] == sums[1] && sums[1] == sums[2] {
			return true, ""
		}
		// What each node's cleaner did, for the failure message.
		var diag []string
		for _, id := range c.ids() {
			diag = append(diag, fmt.Sprintf("node %d %s: %s", id, sums[len(diag)], cleanerCounters(c.node(id))))
		}
		return false, strings.Join(diag, "; ")
	})
}

// cleanerCounters reads a node's tusk_cleaner_*_total counters from
// /metrics (diagnostics).
func cleanerCounters(n *node) string {
	r, err := http.Get("http://" + n.HTTP + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "tusk_cleaner_") && strings.Contains(line, "_total ") {
			out = append(out, strings.TrimPrefix(line, "tusk_cleaner_"))
		}
	}
	return strings.Join(out, ", ")
}
