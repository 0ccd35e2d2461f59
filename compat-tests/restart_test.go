package compat

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type topicSnap struct {
	ID         [16]byte
	Partitions []int32
	Configs    map[string]string // key → value@source
	Records    []string
}

func snapshotTopics(t *testing.T, n *node, topics []string) map[string]topicSnap {
	t.Helper()
	adm, cl := newAdm(t, n)
	ctx := ctxTimeout(t, 30*time.Second)
	req := kmsg.NewPtrMetadataRequest()
	for _, tp := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(tp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if resp.Version < 10 {
		t.Fatalf("Metadata negotiated v%d; tusk must serve v10+ (topic IDs)", resp.Version)
	}
	out := map[string]topicSnap{}
	for _, mt := range resp.Topics {
		if mt.Topic == nil {
			t.Fatalf("Metadata v%d topic without name", resp.Version)
		}
		if mt.ErrorCode != 0 {
			t.Fatalf("Metadata %s: %s", *mt.Topic, errName(mt.ErrorCode))
		}
		s := topicSnap{ID: mt.TopicID, Configs: map[string]string{}}
		if s.ID == [16]byte{} {
			t.Errorf("Metadata v%d: topic %s has a zero topic ID", resp.Version, *mt.Topic)
		}
		for _, p := range mt.Partitions {
			s.Partitions = append(s.Partitions, p.Partition)
		}
		sort.Slice(s.Partitions, func(i, j int) bool { return s.Partitions[i] < s.Partitions[j] })
		for _, c := range topicConfig(t, adm, *mt.Topic) {
			s.Configs[c.Key] = fmt.Sprintf("%s@%v", c.MaybeValue(), c.Source)
		}
		ends := endOffsets(t, adm, *mt.Topic)
		recs := consumeAll(t, n, *mt.Topic, ends, 60*time.Second)
		for _, p := range s.Partitions {
			for _, r := range recs[p] {
				s.Records = append(s.Records, fmt.Sprintf("%d/%d ts=%d %q=%q h=%v", p, r.Offset, r.Timestamp.UnixMilli(), r.Key, r.Value, r.Headers))
			}
		}
		out[*mt.Topic] = s
	}
	if len(out) != len(topics) {
		t.Fatalf("Metadata returned %d topics, want %d", len(out), len(topics))
	}
	return out
}

// TestRestartGraceful: topics with custom configs and data survive SIGTERM
// (exit 0) and a restart on the same data dir: partition counts, topic IDs,
// configs and records identical.
func TestRestartGraceful(t *testing.T) {
	card(t, "franz-go kgo+kadm", "SIGTERM + restart keeps topics, IDs, configs, data")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	topics := map[string]struct {
		parts int32
		cfg   map[string]*string
	}{
		"restart-a": {3, map[string]*string{"retention.ms": strp("3600000"), "retention.bytes": strp("52428800")}},
		"restart-b": {1, map[string]*string{"segment.ms": strp("600000")}},
		"restart-c": {5, nil},
	}
	var names []string
	for name, tc := range topics {
		createTopic(t, adm, name, tc.parts, tc.cfg)
		names = append(names, name)
	}
	sort.Strings(names)
	cl := newKgo(t, n, kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()))
	ctx := ctxTimeout(t, 60*time.Second)
	var recs []*kgo.Record
	for _, name := range names {
		for i := range 1000 {
			recs = append(recs, &kgo.Record{Topic: name, Key: fmt.Appendf(nil, "%s-k%d", name, i), Value: fmt.Appendf(nil, "%s-v%d", name, i),
				Headers: []kgo.RecordHeader{{Key: "i", Value: fmt.Appendf(nil, "%d", i)}}})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	before := snapshotTopics(t, n, names)
	for _, name := range names {
		if len(before[name].Records) != 1000 {
			t.Fatalf("%s: %d records before restart, want 1000", name, len(before[name].Records))
		}
		if len(before[name].Partitions) != int(topics[name].parts) {
			t.Fatalf("%s: %d partitions, want %d", name, len(before[name].Partitions), topics[name].parts)
		}
	}
	wantCfg := []struct{ topic, key, val string }{
		{"restart-a", "retention.ms", "3600000"}, {"restart-a", "retention.bytes", "52428800"}, {"restart-b", "segment.ms", "600000"},
	}
	for _, c := range wantCfg {
		if got := before[c.topic].Configs[c.key]; got != fmt.Sprintf("%s@%v", c.val, kmsg.ConfigSourceDynamicTopicConfig) {
			t.Errorf("%s %s = %s before restart, want %s as a topic config", c.topic, c.key, got, c.val)
		}
	}

	n.Stop(t)
	n2 := n.Restart(t)
	after := snapshotTopics(t, n2, names)
	for _, name := range names {
		b, a := before[name], after[name]
		if a.ID != b.ID {
			t.Errorf("%s: topic ID %x after restart, was %x", name, a.ID, b.ID)
		}
		if !reflect.DeepEqual(a.Partitions, b.Partitions) {
			t.Errorf("%s: partitions %v after restart, were %v", name, a.Partitions, b.Partitions)
		}
		if !reflect.DeepEqual(a.Configs, b.Configs) {
			for k, v := range b.Configs {
				if a.Configs[k] != v {
					t.Errorf("%s: config %s = %q after restart, was %q", name, k, a.Configs[k], v)
				}
			}
			for k, v := range a.Configs {
				if _, ok := b.Configs[k]; !ok {
					t.Errorf("%s: new config %s = %q after restart", name, k, v)
				}
			}
		}
		if !reflect.DeepEqual(a.Records, b.Records) {
			t.Errorf("%s: records differ after restart (%d vs %d)", name, len(a.Records), len(b.Records))
			for i := range min(len(a.Records), len(b.Records)) {
				if a.Records[i] != b.Records[i] {
					t.Errorf("first difference at #%d: %s, was %s", i, a.Records[i], b.Records[i])
					break
				}
			}
		}
	}
	// Appends continue after the old end.
	adm2, cl2 := newAdm(t, n2)
	endsBefore := endOffsets(t, adm2, "restart-b")
	r := &kgo.Record{Topic: "restart-b", Value: []byte("post-restart")}
	if err := cl2.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatalf("produce after restart: %v", err)
	}
	if r.Offset != endsBefore[0] || r.Offset != 1000 {
		t.Errorf("post-restart record at offset %d, want 1000", r.Offset)
	}
}
