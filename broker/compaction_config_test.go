package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
)

// createTopicWith creates a one-partition topic with configs through a raw
// CreateTopics v7 and returns its error code and message.
func createTopicWith(t *testing.T, cl *kgo.Client, name string, cfgs map[string]string) (int16, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 10000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
	for k, v := range cfgs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", name, err)
	}
	st := resp.Topics[0]
	msg := ""
	if st.ErrorMessage != nil {
		msg = *st.ErrorMessage
	}
	return st.ErrorCode, msg
}

// describeTopic describes the named configs of topic (all if names is
// nil) with synonyms and documentation at version v (at most 4).
func describeTopic(t *testing.T, cl *kgo.Client, v int16, topic string, names ...string) []kmsg.DescribeConfigsResponseResourceConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if v < 4 {
		// kgo sends its highest version both sides support: cap it.
		versions := kversion.Stable()
		versions.SetMaxKeyVersion(kmsg.DescribeConfigs.Int16(), v)
		opts := append([]kgo.Opt{kgo.MaxVersions(versions)}, cl.Opts()...)
		pinned, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer pinned.Close()
		cl = pinned
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.IncludeSynonyms, req.IncludeDocumentation = true, true
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.ConfigNames = kmsg.ConfigResourceTypeTopic, topic, names
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DescribeConfigs %s: %v", topic, err)
	}
	if c := resp.Resources[0].ErrorCode; c != 0 {
		t.Fatalf("DescribeConfigs %s: %v", topic, kerr.ErrorForCode(c))
	}
	return resp.Resources[0].Configs
}

// synonym is one DescribeConfigs synonym as name=value@source.
func synonymsOf(c kmsg.DescribeConfigsResponseResourceConfig) []string {
	var out []string
	for _, s := range c.ConfigSynonyms {
		out = append(out, fmt.Sprintf("%s=%s@%v", s.Name, *s.Value, s.Source))
	}
	return out
}

// policyOf is a topic's described cleanup.policy as value@source.
func policyOf(t *testing.T, cl *kgo.Client, topic string) string {
	t.Helper()
	cs := describeTopic(t, cl, 4, topic, "cleanup.policy")
	if len(cs) != 1 {
		t.Fatalf("describe cleanup.policy of %s: %d configs", topic, len(cs))
	}
	return fmt.Sprintf("%s@%v", *cs[0].Value, cs[0].Source)
}

// TestCreateTopicCleanupPolicy: CreateTopics accepts every spelling of
// delete, compact and both, described normalized as Kafka does, and
// refuses anything else with INVALID_CONFIG; the compaction configs are
// range-checked, together too (min.compaction.lag.ms ≤
// max.compaction.lag.ms).
func TestCreateTopicCleanupPolicy(t *testing.T) {
	b := startBroker(t, t.TempDir())
	cl := newClient(t, b)
	for i, c := range []struct{ value, described string }{
		{"delete", "delete"},
		{"compact", "compact"},
		{"compact,delete", "compact,delete"},
		{"delete,compact", "delete,compact"},
		{" compact ,  delete", "compact,delete"},
	} {
		topic := fmt.Sprintf("policy-%d", i)
		if code, msg := createTopicWith(t, cl, topic, map[string]string{"cleanup.policy": c.value}); code != 0 {
			t.Fatalf("create with cleanup.policy=%q: %v %s", c.value, kerr.ErrorForCode(code), msg)
		}
		if got, want := policyOf(t, cl, topic), c.described+"@DYNAMIC_TOPIC_CONFIG"; got != want {
			t.Errorf("cleanup.policy=%q described as %s, want %s", c.value, got, want)
		}
	}
	for _, c := range []struct {
		cfgs map[string]string
		msg  string
	}{
		{map[string]string{"cleanup.policy": "Compact"}, `config cleanup.policy: "Compact" in "Compact" is not a policy (want delete, compact or compact,delete)`},
		{map[string]string{"cleanup.policy": "compact,"}, `config cleanup.policy: "" in "compact," is not a policy (want delete, compact or compact,delete)`},
		{map[string]string{"cleanup.policy": ""}, `config cleanup.policy: "" is empty (want delete, compact or compact,delete)`},
		{map[string]string{"cleanup.policy": "delete,delete"}, `config cleanup.policy: "delete,delete" names delete twice`},
		{map[string]string{"cleanup.policy": "none"}, `config cleanup.policy: "none" in "none" is not a policy (want delete, compact or compact,delete)`},
		{map[string]string{"min.cleanable.dirty.ratio": "1.5"}, "config min.cleanable.dirty.ratio: 1.5 is out of range (a number in [0, 1])"},
		{map[string]string{"delete.retention.ms": "-1"}, "config delete.retention.ms: -1 is out of range (at least 0)"},
		{map[string]string{"max.compaction.lag.ms": "0"}, "config max.compaction.lag.ms: 0 is out of range (at least 1)"},
		{map[string]string{"min.compaction.lag.ms": "-1"}, "config min.compaction.lag.ms: -1 is out of range (at least 0)"},
		{map[string]string{"min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "4000"}, "config min.compaction.lag.ms 5000 exceeds max.compaction.lag.ms 4000"},
	} {
		code, msg := createTopicWith(t, cl, "refused", c.cfgs)
		if code != kerr.InvalidConfig.Code || msg != c.msg {
			t.Errorf("create with %v: %v %q, want INVALID_CONFIG %q", c.cfgs, kerr.ErrorForCode(code), msg, c.msg)
		}
	}
	if code, msg := createTopicWith(t, cl, "lags", map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "4000", "max.compaction.lag.ms": "4000",
		"min.cleanable.dirty.ratio": "0.25", "delete.retention.ms": "0", "segment.ms": "60000"}); code != 0 {
		t.Fatalf("create with valid compaction configs: %v %s", kerr.ErrorForCode(code), msg)
	}
	got := map[string]string{}
	for _, c := range describeTopic(t, cl, 4, "lags", "min.compaction.lag.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio", "delete.retention.ms", "segment.ms") {
		got[c.Name] = fmt.Sprintf("%s@%v", *c.Value, c.Source)
	}
	want := map[string]string{"min.compaction.lag.ms": "4000@DYNAMIC_TOPIC_CONFIG", "max.compaction.lag.ms": "4000@DYNAMIC_TOPIC_CONFIG",
		"min.cleanable.dirty.ratio": "0.25@DYNAMIC_TOPIC_CONFIG", "delete.retention.ms": "0@DYNAMIC_TOPIC_CONFIG", "segment.ms": "60000@DYNAMIC_TOPIC_CONFIG"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("described %v, want %v", got, want)
	}
}

// TestAlterCleanupPolicy: IncrementalAlterConfigs APPENDs compact to a
// delete topic and SUBTRACTs from it as Kafka's list configs do, SET and
// DELETE work, AlterConfigs replaces; invalid results are INVALID_CONFIG
// and change nothing.
func TestAlterCleanupPolicy(t *testing.T) {
	b := startBroker(t, t.TempDir())
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "alter-policy"
	if code, msg := createTopicWith(t, cl, topic, nil); code != 0 {
		t.Fatalf("create: %v %s", kerr.ErrorForCode(code), msg)
	}
	if got := policyOf(t, cl, topic); got != "delete@DEFAULT_CONFIG" {
		t.Fatalf("new topic: cleanup.policy %s, want delete@DEFAULT_CONFIG", got)
	}
	incr := func(op kadm.IncrementalOp, value string) error {
		t.Helper()
		var v *string
		if op != kadm.DeleteConfig {
			v = kmsg.StringPtr(value)
		}
		rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: "cleanup.policy", Value: v}}, topic)
		if err != nil {
			t.Fatalf("IncrementalAlterConfigs: %v", err)
		}
		if rs[0].Err != nil {
			return fmt.Errorf("%w: %s", rs[0].Err, rs[0].ErrMessage)
		}
		return nil
	}
	for _, step := range []struct {
		op    kadm.IncrementalOp
		value string
		err   string // "" for accepted
		after string
	}{
		{kadm.AppendConfig, "compact", "", "delete,compact@DYNAMIC_TOPIC_CONFIG"},
		{kadm.AppendConfig, "compact", "", "delete,compact@DYNAMIC_TOPIC_CONFIG"}, // already there
		{kadm.SubtractConfig, "delete", "", "compact@DYNAMIC_TOPIC_CONFIG"},
		{kadm.SubtractConfig, "compact", `config cleanup.policy: "" is empty (want delete, compact or compact,delete)`, "compact@DYNAMIC_TOPIC_CONFIG"},
		{kadm.AppendConfig, "bogus", `config cleanup.policy: "bogus" in "compact,bogus" is not a policy (want delete, compact or compact,delete)`, "compact@DYNAMIC_TOPIC_CONFIG"},
		{kadm.SetConfig, "compact, delete", "", "compact,delete@DYNAMIC_TOPIC_CONFIG"},
		{kadm.SetConfig, "delete;compact", `config cleanup.policy: "delete;compact" in "delete;compact" is not a policy (want delete, compact or compact,delete)`, "compact,delete@DYNAMIC_TOPIC_CONFIG"},
		{kadm.DeleteConfig, "", "", "delete@DEFAULT_CONFIG"},
	} {
		err := incr(step.op, step.value)
		switch {
		case step.err == "" && err != nil:
			t.Fatalf("%v %q: %v", step.op, step.value, err)
		case step.err != "" && (!errors.Is(err, kerr.InvalidConfig) || err.Error() != fmt.Sprintf("%v: %s", kerr.InvalidConfig, step.err)):
			t.Fatalf("%v %q: error %v, want %s", step.op, step.value, err, step.err)
		}
		if got := policyOf(t, cl, topic); got != step.after {
			t.Fatalf("after %v %q: cleanup.policy %s, want %s", step.op, step.value, got, step.after)
		}
	}
	// AlterConfigs (the whole set) too.
	legacy := func(value string) (int16, string) {
		req := kmsg.NewPtrAlterConfigsRequest()
		r := kmsg.NewAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		c := kmsg.NewAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "cleanup.policy", kmsg.StringPtr(value)
		r.Configs = append(r.Configs, c)
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("AlterConfigs: %v", err)
		}
		msg := ""
		if m := resp.Resources[0].ErrorMessage; m != nil {
			msg = *m
		}
		return resp.Resources[0].ErrorCode, msg
	}
	if code, msg := legacy("compact"); code != 0 {
		t.Fatalf("AlterConfigs cleanup.policy=compact: %v %s", kerr.ErrorForCode(code), msg)
	}
	if got := policyOf(t, cl, topic); got != "compact@DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after AlterConfigs: %s", got)
	}
	if code, msg := legacy("compaction"); code != kerr.InvalidConfig.Code || msg != `config cleanup.policy: "compaction" in "compaction" is not a policy (want delete, compact or compact,delete)` {
		t.Fatalf("AlterConfigs cleanup.policy=compaction: %v %q, want INVALID_CONFIG", kerr.ErrorForCode(code), msg)
	}
	if got := policyOf(t, cl, topic); got != "compact@DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after a refused AlterConfigs: %s", got)
	}
}

// TestDescribeCleanupPolicySynonyms: DescribeConfigs v1+ with synonyms
// describes cleanup.policy as Kafka does: the topic override
// (DYNAMIC_TOPIC_CONFIG) if any, then the broker default
// log.cleanup.policy (DEFAULT_CONFIG), type LIST (v3+), documentation; v0
// marks the default IsDefault.
func TestDescribeCleanupPolicySynonyms(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) { c.Topic.RetentionMs = 3600000 })
	cl := newClient(t, b)
	if code, msg := createTopicWith(t, cl, "compacted", map[string]string{"cleanup.policy": "compact , delete"}); code != 0 {
		t.Fatalf("create: %v %s", kerr.ErrorForCode(code), msg)
	}
	if code, msg := createTopicWith(t, cl, "plain", nil); code != 0 {
		t.Fatalf("create: %v %s", kerr.ErrorForCode(code), msg)
	}
	doc, _ := configs.FindTopicConfig("cleanup.policy")
	type described struct {
		Value, Source, Type, Doc string
		Synonyms                 []string
	}
	get := func(v int16, topic, name string) described {
		t.Helper()
		cs := describeTopic(t, cl, v, topic, name)
		if len(cs) != 1 {
			t.Fatalf("v%d %s %s: %d configs", v, topic, name, len(cs))
		}
		c := cs[0]
		d := described{Value: *c.Value, Source: c.Source.String(), Type: c.ConfigType.String(), Synonyms: synonymsOf(c)}
		if c.Documentation != nil {
			d.Doc = *c.Documentation
		}
		return d
	}
	for _, c := range []struct {
		v           int16
		topic, name string
		want        described
	}{
		{4, "compacted", "cleanup.policy", described{"compact,delete", "DYNAMIC_TOPIC_CONFIG", "LIST", doc.Doc,
			[]string{"cleanup.policy=compact,delete@DYNAMIC_TOPIC_CONFIG", "log.cleanup.policy=delete@DEFAULT_CONFIG"}}},
		{4, "plain", "cleanup.policy", described{"delete", "DEFAULT_CONFIG", "LIST", doc.Doc,
			[]string{"log.cleanup.policy=delete@DEFAULT_CONFIG"}}},
		{1, "compacted", "cleanup.policy", described{"compact,delete", "DYNAMIC_TOPIC_CONFIG", "UNKNOWN", "",
			[]string{"cleanup.policy=compact,delete@DYNAMIC_TOPIC_CONFIG", "log.cleanup.policy=delete@DEFAULT_CONFIG"}}},
		// A default this node's configuration changed is the static
		// broker config's.
		{4, "plain", "retention.ms", described{"3600000", "STATIC_BROKER_CONFIG", "LONG", "delete sealed segments older than this (-1 unlimited); only if cleanup.policy includes delete",
			[]string{"log.retention.ms=3600000@STATIC_BROKER_CONFIG"}}},
		{4, "plain", "min.cleanable.dirty.ratio", described{"0.5", "DEFAULT_CONFIG", "DOUBLE", "the cleaner cleans a compacted partition once the bytes written since its last cleaning are at least this fraction of its cleanable log, in [0, 1]",
			[]string{"log.cleaner.min.cleanable.ratio=0.5@DEFAULT_CONFIG"}}},
		{4, "plain", "max.compaction.lag.ms", described{"9223372036854775807", "DEFAULT_CONFIG", "LONG", "a partition with a dirty segment sealed longer ago than this is cleaned whatever its dirty ratio; at least min.compaction.lag.ms",
			[]string{"log.cleaner.max.compaction.lag.ms=9223372036854775807@DEFAULT_CONFIG"}}},
	} {
		if got := get(c.v, c.topic, c.name); !reflect.DeepEqual(got, c.want) {
			t.Errorf("v%d %s %s:\n got %+v\nwant %+v", c.v, c.topic, c.name, got, c.want)
		}
	}
	for topic, isDefault := range map[string]bool{"compacted": false, "plain": true} {
		cs := describeTopic(t, cl, 0, topic, "cleanup.policy")
		if len(cs) != 1 || cs[0].IsDefault != isDefault || len(cs[0].ConfigSynonyms) != 0 {
			t.Errorf("v0 %s: %+v, want IsDefault %v and no synonyms", topic, cs, isDefault)
		}
	}
}

// TestProduceKeylessToCompactedTopic: a record without a key produced to
// a compacted topic gets INVALID_RECORD with Kafka's record errors, and
// nothing of its partition's batches is appended; a delete topic takes
// it.
func TestProduceKeylessToCompactedTopic(t *testing.T) {
	b := startBroker(t, t.TempDir())
	admCl := newClient(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for topic, policy := range map[string]string{"kv": "compact", "kv-both": "delete,compact", "log": "delete"} {
		if code, msg := createTopicWith(t, admCl, topic, map[string]string{"cleanup.policy": policy}); code != 0 {
			t.Fatalf("create %s: %v %s", topic, kerr.ErrorForCode(code), msg)
		}
	}
	cl := newClient(t, b, kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ManualFlushing())
	// One batch per partition: keyed, keyless, keyed (kgo's idempotent
	// producer, zstd).
	produceBatch := func(topic string, keys ...string) []error {
		t.Helper()
		errs := make([]error, len(keys))
		done := make(chan struct{}, len(keys))
		for i, k := range keys {
			r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v%d", i))}
			if k != "" {
				r.Key = []byte(k)
			}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) { errs[i] = err; done <- struct{}{} })
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
		for range keys {
			<-done
		}
		return errs
	}
	// Each topic's first produce also loads the producer's metadata for it.
	// Records given to kgo before that load are partitioned by a goroutine
	// of their own once it lands, so a later Flush may send them in two
	// batches, or reordered; the batches under test below go only to
	// topics the producer already knows, so each is one batch in order.
	if errs := produceBatch("kv", "a", "b"); errs[0] != nil || errs[1] != nil {
		t.Fatalf("keyed records to kv: %v", errs)
	}
	if errs := produceBatch("kv-both", ""); !errors.Is(errs[0], kerr.InvalidRecord) {
		t.Fatalf("a keyless record alone to kv-both: %v, want INVALID_RECORD", errs[0])
	}
	if errs := produceBatch("log", "w"); errs[0] != nil {
		t.Fatalf("a keyed record to log: %v", errs[0])
	}
	for _, topic := range []string{"kv", "kv-both"} {
		errs := produceBatch(topic, "k1", "", "k3")
		for i, err := range errs {
			if !errors.Is(err, kerr.InvalidRecord) {
				t.Errorf("%s record %d of a batch with a keyless record: %v, want INVALID_RECORD", topic, i, err)
			}
		}
	}
	if errs := produceBatch("log", "k1", "", "k3"); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("keyless record to a delete topic: %v", errs)
	}

	// The raw answer: Produce v8+ names each keyless record by its index
	// among the partition's records (two batches here, the first all
	// keyed), with Kafka's messages; nothing of either batch is appended.
	raw := kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), []kafkaproto.KV{{Key: []byte("x"), Value: []byte("1")}})
	raw = kafkaproto.AppendBatch(raw, time.Now().UnixMilli(), []kafkaproto.KV{{Key: nil, Value: []byte("2")}, {Key: []byte("y"), Value: []byte("3")}, {Key: nil, Value: nil}})
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "kv"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, admCl)
	if err != nil {
		t.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	const recMsg = "Compacted topic cannot accept message without key in topic partition kv-0."
	wantMsg := "One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=1, message='" + recMsg + "'), RecordError(batchIndex=3, message='" + recMsg + "')]"
	if sp.ErrorCode != kerr.InvalidRecord.Code || sp.ErrorMessage == nil || *sp.ErrorMessage != wantMsg || sp.BaseOffset != -1 {
		t.Fatalf("raw produce: code %v, message %v, base %d; want INVALID_RECORD %q, base -1", kerr.ErrorForCode(sp.ErrorCode), sp.ErrorMessage, sp.BaseOffset, wantMsg)
	}
	var gotRecs []string
	for _, e := range sp.ErrorRecords {
		gotRecs = append(gotRecs, fmt.Sprintf("%d:%s", e.RelativeOffset, *e.ErrorMessage))
	}
	if want := []string{"1:" + recMsg, "3:" + recMsg}; !reflect.DeepEqual(gotRecs, want) {
		t.Fatalf("record errors %q, want %q", gotRecs, want)
	}

	// The same producer goes on with keyed records after the refusals.
	if errs := produceBatch("kv", "c"); errs[0] != nil {
		t.Fatalf("keyed record after the refusals: %v", errs[0])
	}
	// kv holds exactly a, b, c at offsets 0-2; log holds w and all three.
	want := map[string][]string{"kv": {"0:a=v0", "1:b=v1", "2:c=v0"}, "log": {"0:w=v0", "1:k1=v0", "2:=v1", "3:k3=v2"}, "kv-both": nil}
	for topic, w := range want {
		if got := readAll(t, b, topic); !reflect.DeepEqual(got, w) {
			t.Errorf("%s holds %q, want %q", topic, got, w)
		}
	}
}

// readAll reads partition 0 of topic from the start to its end offset as
// "offset:key=value".
func readAll(t *testing.T, b *Broker, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Err != nil {
		t.Fatal(end.Err)
	}
	var out []string
	if end.Offset == 0 {
		return out
	}
	cl := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %d records of %d: %v", topic, len(out), end.Offset, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("read %s: %v", topic, err) })
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, r.Value))
			done = done || r.Offset >= end.Offset-1
		})
		if done {
			return out
		}
	}
}

// TestRetentionFollowsCleanupPolicy: a topic whose cleanup.policy lacks
// delete keeps everything however small its retention.ms and
// retention.bytes, through retention passes that do drop a delete topic's
// and a compact,delete topic's old segments; appending delete to its
// policy lets retention act on it.
func TestRetentionFollowsCleanupPolicy(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *configs.Config) { c.Storage.RetentionCheckInterval = 20 * time.Millisecond })
	cl := newClient(t, b, kgo.DefaultProduceTopic("keep"))
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	small := map[string]string{"retention.ms": "1", "retention.bytes": "0", "segment.bytes": "1024"}
	for topic, policy := range map[string]string{"keep": "compact", "both": "compact,delete", "drop": "delete"} {
		cfgs := map[string]string{"cleanup.policy": policy}
		for k, v := range small {
			cfgs[k] = v
		}
		if code, msg := createTopicWith(t, cl, topic, cfgs); code != 0 {
			t.Fatalf("create %s: %v %s", topic, kerr.ErrorForCode(code), msg)
		}
	}
	value := make([]byte, 700) // one batch per 1 KiB segment, incompressible
	rand.NewChaCha8([32]byte{1}).Read(value)
	produce := func(topic string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: value}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce to %s: %v", topic, err)
			}
		}
	}
	startOf := func(topic string) int64 {
		t.Helper()
		lo, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := lo.Lookup(topic, 0)
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		return o.Offset
	}
	waitStartAbove := func(topic string, prev int64) int64 {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if s := startOf(topic); s > prev {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: log start never passed %d", topic, prev)
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
	}
	produce("keep", 8)
	produce("both", 8)
	// Three retention passes that each dropped a segment of "drop": the
	// last one began after a whole pass that began after "keep" was
	// written, so retention has seen "keep".
	prev := int64(-1)
	for round := 0; round < 3; round++ {
		produce("drop", 3)
		prev = waitStartAbove("drop", prev)
	}
	waitStartAbove("both", 0)
	if s := startOf("keep"); s != 0 {
		t.Fatalf("compact topic: log start %d after retention passes, want 0", s)
	}
	var want []string
	for i := 0; i < 8; i++ {
		want = append(want, fmt.Sprintf("%d:k%d=%s", i, i, value))
	}
	if got := readAll(t, b, "keep"); !reflect.DeepEqual(got, want) {
		t.Fatalf("compact topic holds %d records, want all %d", len(got), len(want))
	}
	// With delete appended, retention applies.
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kmsg.StringPtr("delete")}}, "keep")
	if err != nil || rs[0].Err != nil {
		t.Fatalf("append delete: %v %v", err, rs)
	}
	waitStartAbove("keep", 0)
}
