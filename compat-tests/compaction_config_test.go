package compat

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// schemasRun is the JSON testdata/confluent_schemas.py prints.
type schemasRun struct {
	Policy struct {
		Value     string     `json:"value"`
		Source    string     `json:"source"`
		IsDefault bool       `json:"is_default"`
		Synonyms  [][]string `json:"synonyms"`
	} `json:"policy"`
	Partitions   int      `json:"partitions"`
	Written      []int64  `json:"written"`
	KeylessError *string  `json:"keyless_error"`
	Records      [][3]any `json:"records"`
}

// runConfluentSchemas runs testdata/confluent_schemas.py in mode against
// bootstrap and decodes its last line.
func runConfluentSchemas(t *testing.T, py, bootstrap, mode string) schemasRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(t, 90*time.Second))
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, py, "testdata/confluent_schemas.py", bootstrap, mode)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("confluent_schemas.py %s: %v\nstdout: %s\nstderr: %s", mode, err, stdout.Bytes(), tail(stderr.Bytes(), 4096))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var out schemasRun
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil {
		t.Fatalf("confluent_schemas.py %s: last line %q: %v", mode, lines[len(lines)-1], err)
	}
	return out
}

// TestConfluentSchemasTopic is the Schema Registry check: confluent-kafka's
// AdminClient creates _schemas with cleanup.policy=compact and reads it
// back with describe_configs (value compact from the topic config, the
// broker default log.cleanup.policy as its synonym); a Producer writes
// schema records keyed as the Registry keys them and one record without a
// key, refused with INVALID_RECORD; after a restart describe_configs and
// a Consumer see exactly the same policy and records.
func TestConfluentSchemasTopic(t *testing.T) {
	py := requirePythonModule(t, "confluent_kafka", "python3-confluent-kafka")
	card(t, "confluent-kafka-python", "Schema-Registry-like _schemas: compact topic, describe_configs, keyed writes, restart")
	n := startTusk(t)
	created := runConfluentSchemas(t, py, n.Kafka, "create")
	wantSynonyms := [][]string{{"cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"}, {"log.cleanup.policy", "delete", "DEFAULT_CONFIG"}}
	checkPolicy := func(when string, got schemasRun) {
		t.Helper()
		p := got.Policy
		if p.Value != "compact" || p.Source != "DYNAMIC_TOPIC_CONFIG" || p.IsDefault || !reflect.DeepEqual(p.Synonyms, wantSynonyms) {
			t.Errorf("%s: cleanup.policy %+v, want compact from DYNAMIC_TOPIC_CONFIG with synonyms %v", when, p, wantSynonyms)
		}
	}
	checkPolicy("after create", created)
	if created.Partitions != 1 || !reflect.DeepEqual(created.Written, []int64{0, 1, 2, 3}) {
		t.Errorf("create: %d partitions, schema records at %v; want 1 partition, offsets [0 1 2 3]", created.Partitions, created.Written)
	}
	if created.KeylessError == nil || *created.KeylessError != "INVALID_RECORD" {
		t.Errorf("keyless record to _schemas: error %v, want INVALID_RECORD", created.KeylessError)
	}

	n.Stop(t)
	n2 := n.Restart(t)
	read := runConfluentSchemas(t, py, n2.Kafka, "read")
	checkPolicy("after restart", read)
	want := [][3]any{
		{float64(0), `{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}`, `{"subject":"orders-value","version":1,"id":1,"schema":"{\"type\":\"string\"}","deleted":false}`},
		{float64(1), `{"keytype":"SCHEMA","subject":"users-value","version":1,"magic":1}`, `{"subject":"users-value","version":1,"id":2,"schema":"{\"type\":\"long\"}","deleted":false}`},
		{float64(2), `{"keytype":"CONFIG","subject":null,"magic":0}`, `{"compatibilityLevel":"BACKWARD"}`},
		{float64(3), `{"keytype":"NOOP","magic":0}`, nil},
	}
	if !reflect.DeepEqual(read.Records, want) {
		t.Errorf("after restart _schemas holds\n%v\nwant\n%v", read.Records, want)
	}
}

// buildKeyedBatch builds an uncompressed magic-2 batch of records with
// the given keys (nil: a null key) and values "v<i>".
func buildKeyedBatch(keys [][]byte, ts int64) []byte {
	var recs []byte
	for i, k := range keys {
		var rec []byte
		rec = append(rec, 0)                     // attributes
		rec = binary.AppendVarint(rec, 0)        // timestamp delta
		rec = binary.AppendVarint(rec, int64(i)) // offset delta
		if k == nil {
			rec = binary.AppendVarint(rec, -1)
		} else {
			rec = binary.AppendVarint(rec, int64(len(k)))
			rec = append(rec, k...)
		}
		v := fmt.Sprintf("v%d", i)
		rec = binary.AppendVarint(rec, int64(len(v)))
		rec = append(rec, v...)
		rec = binary.AppendVarint(rec, 0) // headers count
		recs = binary.AppendVarint(recs, int64(len(rec)))
		recs = append(recs, rec...)
	}
	var b []byte
	b = binary.BigEndian.AppendUint64(b, 0)                   // base offset
	b = binary.BigEndian.AppendUint32(b, 0)                   // length, patched
	b = binary.BigEndian.AppendUint32(b, 0)                   // partition leader epoch
	b = append(b, 2)                                          // magic
	b = binary.BigEndian.AppendUint32(b, 0)                   // crc, patched
	b = binary.BigEndian.AppendUint16(b, 0)                   // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)-1)) // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(ts))          // first timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(ts))          // max timestamp
	b = binary.BigEndian.AppendUint64(b, ^uint64(0))          // producer id -1
	b = binary.BigEndian.AppendUint16(b, ^uint16(0))          // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, ^uint32(0))          // base sequence -1
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))   // records count
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32.Checksum(b[21:], crc32c))
	return b
}

// TestClusterCompactedForward: on a 3-node cluster a Produce with a
// keyless record sent to a node that does not lead the compacted
// partition is forwarded, refused by the leader with INVALID_RECORD and
// its record errors (v9), which reach the client; nothing of it is
// appended, and keyed batches forwarded the same way land exactly.
func TestClusterCompactedForward(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster")
	c := startCluster(t, 3)
	done()
	card(t, "raw kmsg", "cluster: keyless record to a compacted topic via a non-leader gets INVALID_RECORD")
	const topic = "fwd-compact"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 1, map[string]string{"cleanup.policy": "compact"}, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	leader := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	const recMsg = "Compacted topic cannot accept message without key in topic partition fwd-compact-0."
	var want []string
	next := int64(0)
	for _, via := range c.ids() {
		if via == leader {
			continue
		}
		rc := dialRaw(t, c.node(via).Kafka)
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = buildKeyedBatch([][]byte{[]byte("a"), nil}, time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := rc.roundTrip(req)
		if err != nil {
			t.Fatalf("produce via node %d: %v", via, err)
		}
		p := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		var recErrs []string
		for _, e := range p.ErrorRecords {
			recErrs = append(recErrs, fmt.Sprintf("%d:%s", e.RelativeOffset, *e.ErrorMessage))
		}
		if p.ErrorCode != kerr.InvalidRecord.Code || p.BaseOffset != -1 || !reflect.DeepEqual(recErrs, []string{"1:" + recMsg}) {
			t.Fatalf("keyless record via node %d (leader %d): %s base %d record errors %q; want INVALID_RECORD, base -1, [1:%s]",
				via, leader, errName(p.ErrorCode), p.BaseOffset, recErrs, recMsg)
		}
		key := fmt.Sprintf("via-%d", via)
		code, base := produceRaw(t, rc, 9, topic, 0, buildKeyedBatch([][]byte{[]byte(key)}, time.Now().UnixMilli()))
		rc.c.Close()
		if code != 0 || base != next {
			t.Fatalf("keyed record via node %d: %s base %d, want NONE base %d", via, errName(code), base, next)
		}
		want = append(want, fmt.Sprintf("%d:%s=v0", next, key))
		next++
	}
	recs := readPartitions(t, c.kafkaAddrs(leader), topic, map[int32]int64{0: 0}, map[int32]int{0: len(want)}, 15*time.Second)[0]
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, r.Value))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("partition holds %q, want exactly %q", got, want)
	}
}
