package compat

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func topicConfig(t *testing.T, adm *kadm.Client, topic string) map[string]kadm.Config {
	t.Helper()
	ctx := ctxTimeout(t, 15*time.Second)
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs %s: %v", topic, err)
	}
	if rc.Err != nil {
		t.Fatalf("DescribeTopicConfigs %s: %v", topic, rc.Err)
	}
	out := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		out[c.Key] = c
	}
	return out
}

func wantConfig(t *testing.T, cfg map[string]kadm.Config, key, value string, source kmsg.ConfigSource) {
	t.Helper()
	c, ok := cfg[key]
	if !ok {
		t.Errorf("config %s missing", key)
		return
	}
	if c.MaybeValue() != value {
		t.Errorf("config %s = %q, want %q", key, c.MaybeValue(), value)
	}
	if source != kmsg.ConfigSourceUnknown && c.Source != source {
		t.Errorf("config %s source %v, want %v", key, c.Source, source)
	}
}

func listedOffset(t *testing.T, lo kadm.ListedOffsets, err error, topic string, p int32) int64 {
	t.Helper()
	if err != nil {
		t.Fatalf("list offsets %s: %v", topic, err)
	}
	o, ok := lo.Lookup(topic, p)
	if !ok {
		t.Fatalf("list offsets: %s/%d missing", topic, p)
	}
	if o.Err != nil {
		t.Fatalf("list offsets %s/%d: %v", topic, p, o.Err)
	}
	return o.Offset
}

// TestKadmAdmin drives the admin APIs through kadm: create (with configs),
// list, describe/alter configs, create partitions, list offsets (start,
// end, by timestamp), delete records, delete + recreate.
func TestKadmAdmin(t *testing.T) {
	card(t, "franz-go kadm", "topic admin, configs, offsets, delete")
	n := startTusk(t)
	adm, cl := newAdm(t, n)
	ctx := ctxTimeout(t, 2*time.Minute)
	const topic = "kadm-admin"

	// Create with a config.
	resp := createTopic(t, adm, topic, 3, map[string]*string{"retention.ms": strp("86400000")})
	if resp.ID == (kadm.TopicID{}) {
		t.Errorf("CreateTopics returned a zero topic ID")
	}
	// Creating it again fails with TOPIC_ALREADY_EXISTS.
	again, err := adm.CreateTopic(ctx, 3, -1, nil, topic)
	if err == nil {
		err = again.Err
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Errorf("second create: %v, want TOPIC_ALREADY_EXISTS", err)
	}

	// List topics.
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	td, ok := tds[topic]
	if !ok {
		t.Fatalf("ListTopics: %s missing (have %v)", topic, tds.Names())
	}
	if len(td.Partitions) != 3 || td.ID != resp.ID {
		t.Errorf("ListTopics: %s has %d partitions, id %v; want 3, id %v", topic, len(td.Partitions), td.ID, resp.ID)
	}
	if td.IsInternal {
		t.Errorf("ListTopics: %s marked internal", topic)
	}

	// Describe configs: ours and a default.
	cfg := topicConfig(t, adm, topic)
	wantConfig(t, cfg, "retention.ms", "86400000", kmsg.ConfigSourceDynamicTopicConfig)
	wantConfig(t, cfg, "cleanup.policy", "delete", kmsg.ConfigSourceUnknown)
	if c := cfg["cleanup.policy"]; c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("cleanup.policy reported as a topic override (source %v); it was never set", c.Source)
	}

	// Incremental alter: set one key, delete the other, read back.
	alts, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: strp("1073741824")},
		{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("172800000")},
	}, topic)
	if err != nil {
		t.Fatalf("AlterTopicConfigs: %v", err)
	}
	for _, a := range alts {
		if a.Err != nil {
			t.Fatalf("AlterTopicConfigs %s: %v %s", a.Name, a.Err, a.ErrMessage)
		}
	}
	cfg = topicConfig(t, adm, topic)
	wantConfig(t, cfg, "retention.ms", "172800000", kmsg.ConfigSourceDynamicTopicConfig)
	wantConfig(t, cfg, "retention.bytes", "1073741824", kmsg.ConfigSourceDynamicTopicConfig)
	wantConfig(t, cfg, "cleanup.policy", "delete", kmsg.ConfigSourceUnknown)
	// An unknown config key is rejected.
	bad, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "no.such.config", Value: strp("1")}}, topic)
	if err == nil {
		if len(bad) != 1 || bad[0].Err == nil {
			t.Errorf("altering unknown config no.such.config succeeded: %+v", bad)
		}
	}

	// Create partitions 3 → 5.
	cps, err := adm.UpdatePartitions(ctx, 5, topic)
	if err != nil {
		t.Fatalf("UpdatePartitions: %v", err)
	}
	if cp, err := cps.On(topic, nil); err != nil || cp.Err != nil {
		t.Fatalf("UpdatePartitions %s: %v / %v", topic, err, cp.Err)
	}
	waitTopicReady(t, adm, topic, 5)
	// Shrinking is refused.
	if cps, err := adm.UpdatePartitions(ctx, 2, topic); err == nil {
		if cp, _ := cps.On(topic, nil); cp.Err == nil {
			t.Errorf("UpdatePartitions to 2 (shrink) succeeded")
		}
	}

	// Produce 10 records to partition 4 (a new one) with explicit
	// timestamps 1 s apart, in the past but inside retention.
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	pcl := newKgo(t, n, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Partition: 4, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i), Timestamp: time.UnixMilli(base + int64(i)*1000)})
	}
	if err := pcl.ProduceSync(ctx, recs[:4]...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := pcl.ProduceSync(ctx, recs[4:]...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for i, r := range recs {
		if r.Partition != 4 || r.Offset != int64(i) {
			t.Fatalf("record %d acked at %d/%d, want 4/%d", i, r.Partition, r.Offset, i)
		}
	}

	lo, err := adm.ListStartOffsets(ctx, topic)
	if got := listedOffset(t, lo, err, topic, 4); got != 0 {
		t.Errorf("start offset of p4 = %d, want 0", got)
	}
	lo, err = adm.ListEndOffsets(ctx, topic)
	if got := listedOffset(t, lo, err, topic, 4); got != 10 {
		t.Errorf("end offset of p4 = %d, want 10", got)
	}
	for _, p := range []int32{0, 1, 2, 3} {
		if got := listedOffset(t, lo, err, topic, p); got != 0 {
			t.Errorf("end offset of empty p%d = %d, want 0", p, got)
		}
	}
	for _, c := range []struct {
		ts   int64
		want int64
	}{
		{base - 5000, 0}, // before everything → first record
		{base, 0},
		{base + 1, 1},    // first record at or after
		{base + 2000, 2}, // exact hit
		{base + 2500, 3},
		{base + 4000, 4}, // first record of the second batch
		{base + 9000, 9},
		{base + 9001, 10}, // after everything → end offset (kadm maps -1 to the end)
	} {
		lo, err := adm.ListOffsetsAfterMilli(ctx, c.ts, topic)
		if got := listedOffset(t, lo, err, topic, 4); got != c.want {
			t.Errorf("offset for timestamp base%+d ms = %d, want %d", c.ts-base, got, c.want)
		}
		if c.want < 10 {
			o, _ := lo.Lookup(topic, 4)
			if o.Timestamp != base+c.want*1000 {
				t.Errorf("offset for timestamp base%+d ms: timestamp %d, want %d", c.ts-base, o.Timestamp, base+c.want*1000)
			}
		}
	}

	// DeleteRecords moves the log start offset.
	var dro kadm.Offsets
	dro.Add(kadm.Offset{Topic: topic, Partition: 4, At: 6})
	drs, err := adm.DeleteRecords(ctx, dro)
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if dr, ok := drs.Lookup(topic, 4); !ok || dr.Err != nil || dr.LowWatermark != 6 {
		t.Errorf("DeleteRecords p4@6: ok=%v err=%v low watermark %d, want 6", ok, dr.Err, dr.LowWatermark)
	}
	lo, err = adm.ListStartOffsets(ctx, topic)
	if got := listedOffset(t, lo, err, topic, 4); got != 6 {
		t.Errorf("start offset of p4 after DeleteRecords = %d, want 6", got)
	}
	lo, err = adm.ListEndOffsets(ctx, topic)
	if got := listedOffset(t, lo, err, topic, 4); got != 10 {
		t.Errorf("end offset of p4 after DeleteRecords = %d, want 10", got)
	}
	// Consuming from the start now begins at 6.
	cons := consumeAll(t, n, topic, map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0, 4: 10}, 30*time.Second)
	if len(cons[4]) != 4 || cons[4][0].Offset != 6 || string(cons[4][0].Value) != "v6" {
		t.Errorf("after DeleteRecords first consumed record: %+v, want offset 6 value v6", cons[4])
	}
	// DeleteRecords beyond the high watermark fails with OFFSET_OUT_OF_RANGE.
	var beyond kadm.Offsets
	beyond.Add(kadm.Offset{Topic: topic, Partition: 4, At: 11})
	if drs, err := adm.DeleteRecords(ctx, beyond); err == nil {
		if dr, _ := drs.Lookup(topic, 4); !errors.Is(dr.Err, kerr.OffsetOutOfRange) {
			t.Errorf("DeleteRecords beyond HW: %v, want OFFSET_OUT_OF_RANGE", dr.Err)
		}
	}

	// Delete the topic: gone from metadata; recreating yields an empty log.
	dts, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		t.Fatalf("DeleteTopics: %v", err)
	}
	if dt, err := dts.On(topic, nil); err != nil || dt.Err != nil {
		t.Fatalf("DeleteTopics %s: %v / %v", topic, err, dt.Err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		tds, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		if !tds.Has(topic) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s still listed 20s after DeleteTopics", topic)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Describing configs of a deleted topic fails.
	if rcs, err := adm.DescribeTopicConfigs(ctx, topic); err == nil {
		if rc, err := rcs.On(topic, nil); err == nil && rc.Err == nil {
			t.Errorf("DescribeTopicConfigs on deleted topic succeeded")
		}
	}

	var recreated kadm.CreateTopicResponse
	for {
		recreated, err = adm.CreateTopic(ctx, 2, -1, nil, topic)
		if err == nil {
			err = recreated.Err
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recreate %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitTopicReady(t, adm, topic, 2)
	if recreated.ID == resp.ID {
		t.Errorf("recreated topic reuses the old topic ID %v", resp.ID)
	}
	cfg = topicConfig(t, adm, topic)
	if c := cfg["retention.ms"]; c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("recreated topic inherited retention.ms override %q", c.MaybeValue())
	}
	lo, err = adm.ListStartOffsets(ctx, topic)
	for _, p := range []int32{0, 1} {
		if got := listedOffset(t, lo, err, topic, p); got != 0 {
			t.Errorf("recreated p%d start offset %d, want 0", p, got)
		}
	}
	lo, err = adm.ListEndOffsets(ctx, topic)
	for _, p := range []int32{0, 1} {
		if got := listedOffset(t, lo, err, topic, p); got != 0 {
			t.Errorf("recreated p%d end offset %d, want 0", p, got)
		}
	}
	// A fresh client: pcl caches the deleted topic's ID.
	pcl2 := newKgo(t, n, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Topic: topic, Partition: 1, Value: []byte("fresh")}
	if err := pcl2.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatalf("produce to recreated topic: %v", err)
	}
	if r.Offset != 0 {
		t.Errorf("first record in recreated topic at offset %d, want 0", r.Offset)
	}
	_ = cl
}
