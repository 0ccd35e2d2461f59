package compat

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterDurability: topics with configs (set at creation and altered
// later, through different nodes), a partition increase, records and
// committed group offsets survive SIGTERM of all three nodes (exit 0) and
// a restart of all three: topic IDs, partition lists, every config value
// and source, all records (offset, timestamp, key, value, headers) and
// every committed offset with its metadata are identical, on every node.
func TestClusterDurability(t *testing.T) {
	card(t, "franz-go kgo+kadm", "cluster: restart all 3 nodes keeps topics, configs, partitions, records, committed offsets")
	c := startCluster(t, 3)
	ids := c.ids()
	admVia := func(id int32) *kadm.Client { return kadm.NewClient(newClusterClient(t, c.kafkaAddrs(id))) }

	type topicSpec struct {
		parts   int32
		configs map[string]*string
	}
	specs := map[string]topicSpec{
		"dur-a": {3, map[string]*string{"retention.ms": strp("3600000"), "segment.bytes": strp("1048576")}},
		"dur-b": {6, map[string]*string{"retention.bytes": strp("10485760"), "max.message.bytes": strp("500000")}},
		"dur-c": {1, nil},
	}
	var topics []string
	for tp := range specs {
		topics = append(topics, tp)
	}
	sort.Strings(topics)
	for i, tp := range topics {
		// Each topic through a different node (forwarded to the controller).
		createTopic(t, admVia(ids[i%len(ids)]), tp, specs[tp].parts, specs[tp].configs)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	// Alter a config through node 2 and grow dur-b to 8 partitions
	// through node 3.
	ar, err := admVia(2).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("7200000")}}, "dur-c")
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = ar.On("dur-c", nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("IncrementalAlterConfigs dur-c via node 2: %v", err)
	}
	cp, err := admVia(3).UpdatePartitions(ctx, 8, "dur-b")
	if err == nil {
		err = cp.Error()
	}
	if err != nil {
		t.Fatalf("CreatePartitions dur-b → 8 via node 3: %v", err)
	}
	partCount := map[string]int{"dur-a": 3, "dur-b": 8, "dur-c": 1}
	for _, id := range ids {
		c.waitTopicsOn(t, id, partCount, 10*time.Second)
	}
	// Other nodes apply the committed change a moment later (as Kafka
	// brokers do): poll for it, within the 1 s visibility bound.
	for _, id := range ids {
		a := admVia(id)
		waitFor(t, time.Second, fmt.Sprintf("altered retention.ms of dur-c visible via node %d", id), func() (bool, string) {
			c := topicConfig(t, a, "dur-c")["retention.ms"]
			return c.MaybeValue() == "7200000" && c.Source == kmsg.ConfigSourceDynamicTopicConfig, fmt.Sprintf("%s (%v)", c.MaybeValue(), c.Source)
		})
	}
	wantConfig(t, topicConfig(t, admVia(3), "dur-a"), "segment.bytes", "1048576", kmsg.ConfigSourceDynamicTopicConfig)

	for i, tp := range topics {
		var parts []int32
		for p := int32(0); p < int32(partCount[tp]); p++ {
			parts = append(parts, p)
		}
		producePartitions(t, c.kafkaAddrs(ids[(i+1)%len(ids)]), tp, parts, 20, "dur", map[int32]int64{})
	}

	groups := []string{"dur-g1", "dur-g2", "dur-g3", "dur-g4", "dur-g5"}
	for gi, g := range groups {
		offs := kadm.Offsets{}
		for _, tp := range topics {
			for p := int32(0); p < int32(partCount[tp]); p++ {
				offs.Add(kadm.Offset{Topic: tp, Partition: p, At: int64((gi+int(p))%20 + 1), LeaderEpoch: -1, Metadata: fmt.Sprintf("%s-%s-%d", g, tp, p)})
			}
		}
		cr, err := admVia(ids[gi%len(ids)]).CommitOffsets(ctx, g, offs)
		if err == nil {
			err = cr.Error()
		}
		if err != nil {
			t.Fatalf("CommitOffsets %s: %v", g, err)
		}
	}

	type state struct {
		Topics  map[string]topicSnap
		Offsets map[string][]string
		Names   []string
	}
	capture := func(via int32) state {
		t.Helper()
		st := state{Topics: snapshotTopics(t, c.node(via), topics), Offsets: map[string][]string{}}
		a := admVia(via)
		for _, g := range groups {
			fr, err := a.FetchOffsets(ctxTimeout(t, 20*time.Second), g)
			if err == nil {
				err = fr.Error()
			}
			if err != nil {
				t.Fatalf("FetchOffsets %s via node %d: %v", g, via, err)
			}
			for _, o := range fr.Sorted() {
				st.Offsets[g] = append(st.Offsets[g], fmt.Sprintf("%s/%d@%d %q", o.Topic, o.Partition, o.At, o.Metadata))
			}
		}
		for name := range c.metadataOf(t, via, nil).Topics {
			if !strings.HasPrefix(name, "__") {
				st.Names = append(st.Names, name)
			}
		}
		sort.Strings(st.Names)
		return st
	}
	before := capture(1)
	for _, g := range groups {
		if want := 3 + 8 + 1; len(before.Offsets[g]) != want {
			t.Fatalf("group %s: %d committed offsets before restart, want %d: %v", g, len(before.Offsets[g]), want, before.Offsets[g])
		}
	}

	nrec := 0
	for _, tp := range topics {
		nrec += len(before.Topics[tp].Records)
	}
	t.Logf("before restart: %d topics, %d records, %d groups", len(before.Topics), nrec, len(before.Offsets))

	c.stopAll(t)
	start := c.relaunchAll(t, nil)
	c.waitBrokers(t, ids, ids, clusterFormTimeout)
	for _, id := range ids {
		c.waitTopicsOn(t, id, partCount, 30*time.Second)
	}
	c.waitLeader(t, ids, ids, 30*time.Second)
	t.Logf("measure: restart of all three nodes (first process start → every node lists 3 brokers and the topics led, Raft leader agreed): %v", time.Since(start).Round(time.Millisecond))
	for _, via := range ids {
		after := capture(via)
		if !reflect.DeepEqual(before.Names, after.Names) {
			t.Errorf("topics via node %d after restart %v, before %v", via, after.Names, before.Names)
		}
		for _, tp := range topics {
			b, a := before.Topics[tp], after.Topics[tp]
			if b.ID != a.ID {
				t.Errorf("%s via node %d: topic ID %x after restart, %x before", tp, via, a.ID, b.ID)
			}
			if !reflect.DeepEqual(b.Partitions, a.Partitions) {
				t.Errorf("%s via node %d: partitions %v after restart, %v before", tp, via, a.Partitions, b.Partitions)
			}
			if !reflect.DeepEqual(b.Configs, a.Configs) {
				for k, v := range b.Configs {
					if a.Configs[k] != v {
						t.Errorf("%s via node %d: config %s = %s after restart, %s before", tp, via, k, a.Configs[k], v)
					}
				}
				for k, v := range a.Configs {
					if _, ok := b.Configs[k]; !ok {
						t.Errorf("%s via node %d: config %s = %s appeared after restart", tp, via, k, v)
					}
				}
			}
			if !reflect.DeepEqual(b.Records, a.Records) {
				t.Errorf("%s via node %d: %d records after restart, %d before; first difference: %s", tp, via, len(a.Records), len(b.Records), firstDiff(b.Records, a.Records))
			}
		}
		for _, g := range groups {
			if !reflect.DeepEqual(before.Offsets[g], after.Offsets[g]) {
				t.Errorf("group %s via node %d: committed offsets after restart %v, before %v", g, via, after.Offsets[g], before.Offsets[g])
			}
		}
		if t.Failed() {
			return
		}
	}
}

func firstDiff(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("#%d before %q, after %q", i, x, y)
		}
	}
	return "none"
}
