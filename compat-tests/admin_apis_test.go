package compat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// logDirsFixture creates two topics on a single node and writes, through
// raw Produce requests, a known number of identical batches to each
// partition, so every partition's log holds exactly batches × len(batch)
// bytes. It returns the expected size of every partition.
func logDirsFixture(t *testing.T, n *node, adm *kadm.Client) map[string]map[int32]int64 {
	t.Helper()
	createTopic(t, adm, "logdirs-a", 3, nil)
	createTopic(t, adm, "logdirs-b", 1, nil)
	av := apiVersions(t, n.Kafka)
	v := pickVersion(t, av, kmsg.Produce, 3, 9)
	rc := dialRaw(t, n.Kafka)
	batch := buildBatch([][]byte{[]byte("one"), []byte("two"), []byte("three")}, time.Now().UnixMilli())
	want := map[string]map[int32]int64{"logdirs-a": {}, "logdirs-b": {}}
	for _, tp := range []struct {
		topic   string
		p       int32
		batches int
	}{{"logdirs-a", 0, 1}, {"logdirs-a", 1, 2}, {"logdirs-a", 2, 5}, {"logdirs-b", 0, 3}} {
		for i := 0; i < tp.batches; i++ {
			code, base := produceRaw(t, rc, v, tp.topic, tp.p, batch)
			if code != 0 || base != int64(3*i) {
				t.Fatalf("produce %s/%d batch %d: %s at %d, want NONE at %d", tp.topic, tp.p, i, errName(code), base, 3*i)
			}
		}
		want[tp.topic][tp.p] = int64(tp.batches * len(batch))
	}
	return want
}

// TestDescribeLogDirs: kadm's DescribeAllLogDirs and sarama's
// DescribeLogDirs (v1 and v4) list one log dir, <data-dir>/logs, holding
// exactly the node's partitions with their exact sizes; v4 reports the
// volume's total and usable bytes; a request for a topic that does not
// exist lists nothing for it.
func TestDescribeLogDirs(t *testing.T) {
	card(t, "franz-go kadm + sarama", "DescribeLogDirs")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	want := logDirsFixture(t, n, adm)
	wantDir, err := filepath.Abs(filepath.Join(n.DataDir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	own := func(topic string) bool { return strings.HasPrefix(topic, "logdirs-") }

	t.Run("kadm", func(t *testing.T) {
		all, err := adm.DescribeAllLogDirs(ctxTimeout(t, 15*time.Second), nil)
		if err != nil {
			t.Fatalf("DescribeAllLogDirs: %v", err)
		}
		if len(all) != 1 {
			t.Fatalf("log dirs of %d brokers, want 1", len(all))
		}
		dirs := all[n.NodeID]
		if len(dirs) != 1 {
			t.Fatalf("node %d: %d log dirs, want 1: %v", n.NodeID, len(dirs), dirs)
		}
		d := dirs[wantDir]
		if d.Err != nil || d.Dir != wantDir {
			t.Fatalf("log dir %q (err %v), want %q", d.Dir, d.Err, wantDir)
		}
		if d.TotalBytes <= 0 || d.UsableBytes <= 0 || d.UsableBytes > d.TotalBytes {
			t.Errorf("total %d usable %d bytes: want 0 < usable <= total", d.TotalBytes, d.UsableBytes)
		}
		got := map[string]map[int32]int64{}
		for topic, ps := range d.Topics {
			if !own(topic) {
				if !strings.HasPrefix(topic, "__") {
					t.Errorf("unexpected topic %q in the log dir", topic)
				}
				continue
			}
			got[topic] = map[int32]int64{}
			for p, lp := range ps {
				got[topic][p] = lp.Size
				if lp.OffsetLag != 0 || lp.IsFuture {
					t.Errorf("%s/%d: offset lag %d future %v, want 0 false", topic, p, lp.OffsetLag, lp.IsFuture)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("partition sizes %v, want %v", got, want)
		}

		// Asked for one partition.
		one, err := adm.DescribeAllLogDirs(ctxTimeout(t, 15*time.Second), kadm.TopicsSet{"logdirs-a": {2: {}}})
		if err != nil {
			t.Fatalf("DescribeAllLogDirs(logdirs-a/2): %v", err)
		}
		var listed []string
		one.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
				listed = append(listed, fmt.Sprintf("%s/%d=%d", p.Topic, p.Partition, p.Size))
			})
		})
		if w := []string{fmt.Sprintf("logdirs-a/2=%d", want["logdirs-a"][2])}; !slices.Equal(listed, w) {
			t.Errorf("filtered log dirs list %v, want %v", listed, w)
		}
	})

	// kadm and kgo refuse a topic their metadata does not know before
	// asking (a raw request here); the broker lists nothing for it, as Kafka does.
	t.Run("unknown topic", func(t *testing.T) {
		req := kmsg.NewPtrDescribeLogDirsRequest()
		req.Version = 4
		rt := kmsg.NewDescribeLogDirsRequestTopic()
		rt.Topic, rt.Partitions = "no-such-topic", []int32{0}
		req.Topics = append(req.Topics, rt)
		rt.Topic, rt.Partitions = "logdirs-b", []int32{0, 7}
		req.Topics = append(req.Topics, rt)
		raw, err := dialRaw(t, n.Kafka).roundTrip(req)
		if err != nil {
			t.Fatalf("DescribeLogDirs: %v", err)
		}
		resp := raw.(*kmsg.DescribeLogDirsResponse)
		var listed []string
		for _, d := range resp.Dirs {
			for _, dt := range d.Topics {
				for _, dp := range dt.Partitions {
					listed = append(listed, fmt.Sprintf("%s/%d=%d", dt.Topic, dp.Partition, dp.Size))
				}
			}
		}
		if len(resp.Dirs) != 1 || resp.Dirs[0].ErrorCode != 0 || resp.ErrorCode != 0 {
			t.Fatalf("response %+v, want one log dir without error", resp)
		}
		if w := []string{fmt.Sprintf("logdirs-b/0=%d", want["logdirs-b"][0])}; !slices.Equal(listed, w) {
			t.Errorf("log dirs of no-such-topic/0, logdirs-b/0 and logdirs-b/7 list %v, want %v", listed, w)
		}
	})

	for _, sv := range []struct {
		name    string
		version sarama.KafkaVersion
		v4      bool
	}{{"sarama-v1", sarama.V2_0_0_0, false}, {"sarama-v4", sarama.V3_7_0_0, true}} {
		t.Run(sv.name, func(t *testing.T) {
			cfg := sarama.NewConfig()
			cfg.Version = sv.version
			cfg.ClientID = "tusk-compat-sarama-admin"
			cfg.Net.DialTimeout = 5 * time.Second
			cfg.Net.ReadTimeout = 15 * time.Second
			ca, err := sarama.NewClusterAdmin([]string{n.Kafka}, cfg)
			if err != nil {
				t.Fatalf("NewClusterAdmin: %v", err)
			}
			defer ca.Close()
			res, err := ca.DescribeLogDirs([]int32{n.NodeID})
			if err != nil {
				t.Fatalf("DescribeLogDirs: %v", err)
			}
			dirs := res[n.NodeID]
			if len(res) != 1 || len(dirs) != 1 {
				t.Fatalf("log dirs %+v, want one dir on node %d", res, n.NodeID)
			}
			d := dirs[0]
			if d.ErrorCode != sarama.ErrNoError || d.Path != wantDir {
				t.Fatalf("log dir %q error %v, want %q", d.Path, d.ErrorCode, wantDir)
			}
			if sv.v4 && (d.TotalBytes <= 0 || d.UsableBytes <= 0 || d.UsableBytes > d.TotalBytes) {
				t.Errorf("v4: total %d usable %d bytes: want 0 < usable <= total", d.TotalBytes, d.UsableBytes)
			}
			got := map[string]map[int32]int64{}
			for _, tp := range d.Topics {
				if !own(tp.Topic) {
					continue
				}
				got[tp.Topic] = map[int32]int64{}
				for _, p := range tp.Partitions {
					got[tp.Topic][p.PartitionID] = p.Size
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("partition sizes %v, want %v", got, want)
			}
		})
	}
}

// TestReadmeAPITable: the README's "Supported Kafka APIs" table has one
// row per API a client listener advertises in ApiVersions (what Redpanda
// Console and kafbat UI enable their pages from), named as Kafka names it,
// with exactly the advertised versions; its only other row is Envelope,
// which node connections alone use.
func TestReadmeAPITable(t *testing.T) {
	card(t, "ApiVersions v0", "README API table: every advertised API with its versions")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Supported Kafka APIs\n")
	if !ok {
		t.Fatal("README has no Supported Kafka APIs section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rows := map[int16]string{}
	for _, line := range strings.Split(table, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 5 {
			continue
		}
		key, err := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 16)
		if err != nil {
			continue // the header and its rule
		}
		if _, dup := rows[int16(key)]; dup {
			t.Errorf("README lists key %d twice", key)
		}
		rows[int16(key)] = strings.TrimSpace(f[1]) + " " + strings.TrimSpace(f[3])
	}
	av := apiVersions(t, startTusk(t).Kafka)
	for key, vs := range av {
		name := kmsg.NameForKey(key)
		// Kafka's names where kmsg's differ beyond case (InitProducerId,
		// SaslHandshake, ... differ in case only).
		if key == kmsg.AlterPartitionAssignments.Int16() {
			name = "AlterPartitionReassignments"
		}
		want := fmt.Sprintf("%s %d–%d", name, vs[0], vs[1])
		if vs[0] == vs[1] {
			want = fmt.Sprintf("%s %d", name, vs[0])
		}
		if got, ok := rows[key]; !ok || !strings.EqualFold(got, want) {
			t.Errorf("README row of key %d: %q, ApiVersions: %q", key, got, want)
		}
	}
	for key, row := range rows {
		if _, ok := av[key]; !ok && key != kmsg.Envelope.Int16() {
			t.Errorf("README lists %q (key %d), which ApiVersions does not advertise", row, key)
		}
	}
	if len(av) < 40 {
		t.Errorf("ApiVersions advertises %d APIs: %v", len(av), av)
	}
}

// TestBrokerVersionConfigs: DescribeConfigs on the broker resource reports
// a Kafka version (what kafbat UI reads), the log dir DescribeLogDirs
// lists, and the broker default of every topic config as its synonym:
// each topic config of a new topic names a broker config with its
// value, which the broker resource lists with that value (the node's,
// where a flag changed it), except segment.rotate, Tusk's own, which has
// no broker config.
func TestBrokerVersionConfigs(t *testing.T) {
	card(t, "franz-go kadm + sarama", "DescribeConfigs broker versions")
	n := startTusk(t, withFlag("topic-retention-ms", "3600000"))
	adm, _ := newAdm(t, n)
	wantDir, err := filepath.Abs(filepath.Join(n.DataDir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeBrokerConfigs(ctxTimeout(t, 15*time.Second), n.NodeID)
	if err != nil {
		t.Fatalf("DescribeBrokerConfigs: %v", err)
	}
	if len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeBrokerConfigs: %+v", rcs)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	for k, v := range map[string]string{
		"inter.broker.protocol.version":   "3.7-IV4",
		"log.message.format.version":      "3.0-IV1",
		"log.dirs":                        wantDir,
		"log.retention.ms":                "3600000",
		"log.cleanup.policy":              "delete",
		"log.segment.bytes":               "1073741824",
		"log.roll.ms":                     "604800000",
		"message.max.bytes":               "1048588",
		"log.cleaner.delete.retention.ms": "86400000",
	} {
		if got[k] != v {
			t.Errorf("broker config %s = %q, want %q", k, got[k], v)
		}
	}
	createTopic(t, adm, "defaults", 1, nil)
	tcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 15*time.Second), "defaults")
	if err != nil || len(tcs) != 1 || tcs[0].Err != nil {
		t.Fatalf("DescribeTopicConfigs: %+v %v", tcs, err)
	}
	var unsynced []string
	for _, c := range tcs[0].Configs {
		var broker []kadm.ConfigSynonym
		for _, s := range c.Synonyms {
			if s.Source != kmsg.ConfigSourceDynamicTopicConfig {
				broker = append(broker, s)
			}
		}
		if len(broker) == 0 {
			unsynced = append(unsynced, c.Key)
			continue
		}
		s := broker[0]
		if len(broker) != 1 || s.Value == nil || *s.Value != c.MaybeValue() {
			t.Errorf("topic config %s = %q: broker synonyms %+v, want one with its value", c.Key, c.MaybeValue(), broker)
			continue
		}
		if v, ok := got[s.Key]; !ok || v != c.MaybeValue() {
			t.Errorf("topic config %s = %q (synonym %s): the broker resource has %s = %q (listed %v)", c.Key, c.MaybeValue(), s.Key, s.Key, v, ok)
		}
	}
	if len(tcs[0].Configs) < 25 || !slices.Equal(unsynced, []string{"segment.rotate"}) {
		t.Errorf("%d topic configs; without a broker default: %v, want [segment.rotate]", len(tcs[0].Configs), unsynced)
	}
	t.Logf("%d topic configs, each but segment.rotate with its broker default listed", len(tcs[0].Configs))

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	ca, err := sarama.NewClusterAdmin([]string{n.Kafka}, cfg)
	if err != nil {
		t.Fatalf("NewClusterAdmin: %v", err)
	}
	defer ca.Close()
	res, err := ca.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.BrokerResource, Name: fmt.Sprint(n.NodeID), ConfigNames: []string{"inter.broker.protocol.version"}}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		t.Fatalf("sarama DescribeConfigs: %v", err)
	}
	if len(res) != 1 || res[0].ErrorCode != sarama.ErrNoError || len(res[0].Configs) != 1 ||
		res[0].Configs[0].Name != "inter.broker.protocol.version" || res[0].Configs[0].Value != "3.7-IV4" {
		t.Errorf("sarama DescribeConfigs inter.broker.protocol.version: %+v", res)
	}
}

// TestElectLeaders: on a single node every partition's preferred replica
// leads, so a preferred election answers ELECTION_NOT_NEEDED (kadm v2,
// sarama v0 and v2), an election over all partitions lists none; an
// unknown partition or topic gets UNKNOWN_TOPIC_OR_PARTITION and an
// unclean election INVALID_REQUEST with a message.
func TestElectLeaders(t *testing.T) {
	card(t, "franz-go kadm + sarama", "ElectLeaders")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, "elect", 2, nil)

	results := func(t *testing.T, how kadm.ElectLeadersHow, s kadm.TopicsSet) map[string]string {
		t.Helper()
		res, err := adm.ElectLeaders(ctxTimeout(t, 15*time.Second), how, s)
		if err != nil {
			t.Fatalf("ElectLeaders: %v", err)
		}
		out := map[string]string{}
		for topic, ps := range res {
			for p, r := range ps {
				code := "NONE"
				if r.Err != nil {
					code = r.Err.(*kerr.Error).Message
					if r.ErrMessage == "" {
						t.Errorf("%s/%d: %s without a message", topic, p, code)
					}
				}
				out[fmt.Sprintf("%s/%d", topic, p)] = code
			}
		}
		return out
	}
	t.Run("kadm preferred", func(t *testing.T) {
		got := results(t, kadm.ElectPreferredReplica, kadm.TopicsSet{"elect": {0: {}, 1: {}, 2: {}}, "no-such-topic": {0: {}}})
		want := map[string]string{"elect/0": "ELECTION_NOT_NEEDED", "elect/1": "ELECTION_NOT_NEEDED", "elect/2": "UNKNOWN_TOPIC_OR_PARTITION", "no-such-topic/0": "UNKNOWN_TOPIC_OR_PARTITION"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("results %v, want %v", got, want)
		}
		if all := results(t, kadm.ElectPreferredReplica, nil); len(all) != 0 {
			t.Errorf("election over all partitions: %v, want none listed", all)
		}
	})
	t.Run("kadm unclean", func(t *testing.T) {
		got := results(t, kadm.ElectLiveReplica, kadm.TopicsSet{"elect": {0: {}}})
		if want := map[string]string{"elect/0": "INVALID_REQUEST"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("results %v, want %v", got, want)
		}
	})
	for _, sv := range []struct {
		name    string
		version sarama.KafkaVersion
	}{{"sarama-v0", sarama.V2_2_0_0}, {"sarama-v2", sarama.V3_7_0_0}} {
		t.Run(sv.name, func(t *testing.T) {
			cfg := sarama.NewConfig()
			cfg.Version = sv.version
			cfg.Admin.Retry.Max = 0
			ca, err := sarama.NewClusterAdmin([]string{n.Kafka}, cfg)
			if err != nil {
				t.Fatalf("NewClusterAdmin: %v", err)
			}
			defer ca.Close()
			res, err := ca.ElectLeaders(sarama.PreferredElection, map[string][]int32{"elect": {0, 1, 9}})
			if err != nil {
				t.Fatalf("ElectLeaders: %v", err)
			}
			got := map[int32]sarama.KError{}
			for p, r := range res["elect"] {
				got[p] = r.ErrorCode
			}
			want := map[int32]sarama.KError{0: sarama.ErrElectionNotNeeded, 1: sarama.ErrElectionNotNeeded, 9: sarama.ErrUnknownTopicOrPartition}
			if len(res) != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("results %v, want elect: %v", res, want)
			}
			if sv.version.IsAtLeast(sarama.V2_4_0_0) {
				if _, err := ca.ElectLeaders(sarama.UncleanElection, map[string][]int32{"elect": {0}}); !errors.Is(err, sarama.ErrInvalidRequest) {
					t.Errorf("unclean election: %v, want INVALID_REQUEST", err)
				}
			}
		})
	}
}

// TestClientQuotasAdmin: quotas set with kadm and sarama (a client id, the
// default client id, a user with a client id) are described back exactly,
// with exact, default, any and strict filters; removing a quota's last
// value drops the entity; an unknown entity type or key, and a value that
// is not positive, get INVALID_REQUEST with a message.
func TestClientQuotasAdmin(t *testing.T) {
	card(t, "franz-go kadm + sarama", "DescribeClientQuotas / AlterClientQuotas")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	ctx := ctxTimeout(t, 30*time.Second)
	name := func(s string) *string { return &s }
	alter := func(e kadm.ClientQuotaEntity, ops ...kadm.AlterClientQuotaOp) kadm.AlteredClientQuota {
		t.Helper()
		res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{Entity: e, Ops: ops}})
		if err != nil || len(res) != 1 {
			t.Fatalf("AlterClientQuotas %v: %v %v", e, res, err)
		}
		return res[0]
	}
	describe := func(strict bool, cs ...kadm.DescribeClientQuotaComponent) []string {
		t.Helper()
		res, err := adm.DescribeClientQuotas(ctx, strict, cs)
		if err != nil {
			t.Fatalf("DescribeClientQuotas: %v", err)
		}
		var out []string
		for _, q := range res {
			out = append(out, q.Entity.String()+" "+fmt.Sprint(q.Values))
		}
		slices.Sort(out)
		return out
	}
	for _, e := range []struct {
		entity kadm.ClientQuotaEntity
		ops    []kadm.AlterClientQuotaOp
	}{
		{kadm.ClientQuotaEntity{{Type: "client-id", Name: name("app")}}, []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1048576}, {Key: "consumer_byte_rate", Value: 2097152}}},
		{kadm.ClientQuotaEntity{{Type: "client-id"}}, []kadm.AlterClientQuotaOp{{Key: "request_percentage", Value: 50}}},
		{kadm.ClientQuotaEntity{{Type: "user", Name: name("alice")}, {Type: "client-id", Name: name("app")}}, []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1000}}},
	} {
		if r := alter(e.entity, e.ops...); r.Err != nil {
			t.Fatalf("alter %v: %v %s", e.entity, r.Err, r.ErrMessage)
		}
	}
	all := []string{
		"{client-id=<default>} [request_percentage=50.000000]",
		"{client-id=app} [producer_byte_rate=1048576.000000 consumer_byte_rate=2097152.000000]",
		"{user=alice, client-id=app} [producer_byte_rate=1000.000000]",
	}
	if got := describe(false); !slices.Equal(got, all) {
		t.Errorf("all quotas:\n%q\nwant\n%q", got, all)
	}
	if got, want := describe(false, kadm.DescribeClientQuotaComponent{Type: "client-id", MatchName: name("app")}), []string{all[1], all[2]}; !slices.Equal(got, want) {
		t.Errorf("client-id=app:\n%q\nwant\n%q", got, want)
	}
	if got, want := describe(true, kadm.DescribeClientQuotaComponent{Type: "client-id", MatchName: name("app")}), []string{all[1]}; !slices.Equal(got, want) {
		t.Errorf("strict client-id=app:\n%q\nwant\n%q", got, want)
	}
	if got, want := describe(false, kadm.DescribeClientQuotaComponent{Type: "client-id", MatchType: 1}), []string{all[0]}; !slices.Equal(got, want) {
		t.Errorf("default client-id:\n%q\nwant\n%q", got, want)
	}
	if got, want := describe(false, kadm.DescribeClientQuotaComponent{Type: "user", MatchType: 2}), []string{all[2]}; !slices.Equal(got, want) {
		t.Errorf("any user:\n%q\nwant\n%q", got, want)
	}

	// Bad input.
	for _, bad := range []struct {
		entity kadm.ClientQuotaEntity
		op     kadm.AlterClientQuotaOp
		msg    string
	}{
		{kadm.ClientQuotaEntity{{Type: "ip", Name: name("10.0.0.1")}}, kadm.AlterClientQuotaOp{Key: "producer_byte_rate", Value: 1}, `unknown quota entity type "ip"`},
		{kadm.ClientQuotaEntity{{Type: "client-id", Name: name("app")}}, kadm.AlterClientQuotaOp{Key: "io_rate", Value: 1}, `unknown quota key "io_rate"`},
		{kadm.ClientQuotaEntity{{Type: "client-id", Name: name("app")}}, kadm.AlterClientQuotaOp{Key: "producer_byte_rate", Value: -5}, "must be a positive number"},
	} {
		r := alter(bad.entity, bad.op)
		if !errors.Is(r.Err, kerr.InvalidRequest) || !strings.Contains(r.ErrMessage, bad.msg) {
			t.Errorf("alter %v %v: %v %q, want INVALID_REQUEST %q", bad.entity, bad.op, r.Err, r.ErrMessage, bad.msg)
		}
	}
	if _, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "ip", MatchType: 2}}); !errors.Is(err, kerr.InvalidRequest) {
		t.Errorf("describe ip quotas: %v, want INVALID_REQUEST", err)
	}

	// sarama: describe, set, remove.
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_6_0_0
	ca, err := sarama.NewClusterAdmin([]string{n.Kafka}, cfg)
	if err != nil {
		t.Fatalf("NewClusterAdmin: %v", err)
	}
	defer ca.Close()
	entries, err := ca.DescribeClientQuotas([]sarama.QuotaFilterComponent{{EntityType: sarama.QuotaEntityClientID, MatchType: sarama.QuotaMatchExact, Match: "app"}}, true)
	if err != nil || len(entries) != 1 || entries[0].Values["producer_byte_rate"] != 1048576 || entries[0].Values["consumer_byte_rate"] != 2097152 {
		t.Errorf("sarama DescribeClientQuotas client-id=app: %+v %v", entries, err)
	}
	sEntity := []sarama.QuotaEntityComponent{{EntityType: sarama.QuotaEntityClientID, MatchType: sarama.QuotaMatchExact, Name: "sarama-app"}}
	if err := ca.AlterClientQuotas(sEntity, sarama.ClientQuotasOp{Key: "consumer_byte_rate", Value: 4096}, false); err != nil {
		t.Fatalf("sarama AlterClientQuotas: %v", err)
	}
	if got := describe(true, kadm.DescribeClientQuotaComponent{Type: "client-id", MatchName: name("sarama-app")}); !slices.Equal(got, []string{"{client-id=sarama-app} [consumer_byte_rate=4096.000000]"}) {
		t.Errorf("after sarama's alter: %q", got)
	}
	if err := ca.AlterClientQuotas(sEntity, sarama.ClientQuotasOp{Key: "consumer_byte_rate", Remove: true}, false); err != nil {
		t.Fatalf("sarama AlterClientQuotas remove: %v", err)
	}
	if got := describe(true, kadm.DescribeClientQuotaComponent{Type: "client-id", MatchName: name("sarama-app")}); len(got) != 0 {
		t.Errorf("after sarama's remove: %q, want none", got)
	}
	if err := ca.AlterClientQuotas([]sarama.QuotaEntityComponent{{EntityType: "ip", MatchType: sarama.QuotaMatchExact, Name: "10.0.0.1"}}, sarama.ClientQuotasOp{Key: "producer_byte_rate", Value: 1}, false); err == nil || !strings.Contains(err.Error(), "unknown quota entity type") {
		t.Errorf("sarama alter ip quota: %v, want the unknown entity type error", err)
	}
}

// throttleHook counts the throttle times a client was given.
type throttleHook struct{ n atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	if d > 0 {
		h.n.Add(1)
	}
}

// TestProducerByteRateQuota: a producer whose client id has a
// producer_byte_rate of 1 MiB/s, producing as fast as it can, gets
// throttled to within 10% of it over 20 s (after a 3 s warm-up, as the
// quota lets a one-second burst through); a producer with another client
// id beside it is never throttled and goes faster.
func TestProducerByteRateQuota(t *testing.T) {
	card(t, "franz-go kadm", "producer_byte_rate quota measured over 20 s")
	const quota = 1 << 20
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, "quota-limited", 1, nil)
	createTopic(t, adm, "quota-free", 1, nil)
	ctx := ctxTimeout(t, 60*time.Second)
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("limited")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: quota}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %v", err, res)
	}
	value := make([]byte, 1000)
	produce := func(client, topic string, hook *throttleHook, stop <-chan struct{}, done chan<- error) {
		cl := newKgo(t, n, kgo.ClientID(client), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.ProducerLinger(0), kgo.MaxBufferedRecords(200), kgo.WithHooks(hook))
		var err error
		for err == nil {
			select {
			case <-stop:
				done <- cl.Flush(ctx)
				return
			default:
			}
			cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, e error) {
				if e != nil && err == nil && ctx.Err() == nil {
					err = e
				}
			})
		}
		done <- err
	}
	size := func(topic string) int64 {
		t.Helper()
		all, err := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			t.Fatalf("DescribeAllLogDirs: %v", err)
		}
		var s int64
		all.Each(func(d kadm.DescribedLogDir) { s += d.Size() })
		return s
	}
	var limitedHook, freeHook throttleHook
	stop := make(chan struct{})
	done := make(chan error, 2)
	go produce("limited", "quota-limited", &limitedHook, stop, done)
	go produce("free", "quota-free", &freeHook, stop, done)
	time.Sleep(3 * time.Second) // warm-up: the burst the quota allows, not measured
	l0, f0, t0 := size("quota-limited"), size("quota-free"), time.Now()
	time.Sleep(20 * time.Second)
	l1, f1, t1 := size("quota-limited"), size("quota-free"), time.Now()
	close(stop)
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	secs := t1.Sub(t0).Seconds()
	limited, free := float64(l1-l0)/secs, float64(f1-f0)/secs
	t.Logf("over %.1f s: limited %.0f B/s (quota %d, %d throttled responses), free %.0f B/s (%d throttled)", secs, limited, quota, limitedHook.n.Load(), free, freeHook.n.Load())
	if limited < 0.9*quota || limited > 1.1*quota {
		t.Errorf("limited producer: %.0f B/s, want within 10%% of %d", limited, quota)
	}
	if limitedHook.n.Load() == 0 {
		t.Errorf("the limited producer was never throttled")
	}
	if freeHook.n.Load() != 0 {
		t.Errorf("the unlimited producer was throttled %d times", freeHook.n.Load())
	}
	if free <= limited {
		t.Errorf("the unlimited producer (%.0f B/s) was not faster than the limited one (%.0f B/s)", free, limited)
	}
}

// TestClusterForwardedProduceNotMetered: Produce requests a node forwards
// to the leader are metered once, by the leader as the client that sent
// them (an Envelope, TestClusterForwardIdentity), never under the
// forwarder's client id: with a 1 KB/s
// producer_byte_rate on client id tusk-forwarder (the one forwarding
// uses), ten 5 KB batches sent through a non-leader by an unlimited
// client are all acknowledged within seconds (the leader throttling the
// forwarding connection would hold them back about 4 s each).
func TestClusterForwardedProduceNotMetered(t *testing.T) {
	card(t, "raw kmsg + franz-go kadm", "cluster: forwarded Produce is not metered twice")
	c := startCluster(t, 3)
	const topic = "quota-fwd"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 1, nil, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	leader := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	via := c.ids()[0]
	if via == leader {
		via = c.ids()[1]
	}
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("tusk-forwarder")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1000}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %v", err, res)
	}
	// Every node applies the quota before the batches go out.
	for _, id := range c.ids() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			q, err := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(id))).DescribeClientQuotas(ctx, true, []kadm.DescribeClientQuotaComponent{{Type: "client-id", MatchName: strp("tusk-forwarder")}})
			if err == nil && len(q) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not list the quota: %v %v", id, q, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rc := dialRaw(t, c.node(via).Kafka)
	value := bytes.Repeat([]byte("q"), 5000)
	start := time.Now()
	for i := 0; i < 10; i++ {
		code, base := produceRaw(t, rc, 9, topic, 0, buildBatch([][]byte{value}, time.Now().UnixMilli()))
		if code != 0 || base != int64(i) {
			t.Fatalf("batch %d via node %d (leader %d): %s at %d, want NONE at %d", i, via, leader, errName(code), base, i)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("ten forwarded batches took %v: the leader throttled the forwarding connection", took)
	} else {
		t.Logf("ten forwarded 5 KB batches via node %d to leader %d in %v", via, leader, took)
	}
}

// TestConsumerByteRateQuota: a consumer whose client id has a
// consumer_byte_rate of 512 KiB/s, reading a 16 MB backlog (16 KiB
// batches) with 64 KiB fetches, is throttled to within 10% of it over
// 10 s (after a 3 s warm-up); a consumer with another client id reading the same backlog
// is never throttled.
func TestConsumerByteRateQuota(t *testing.T) {
	card(t, "franz-go kgo + kadm", "consumer_byte_rate quota measured over 10 s")
	const quota = 512 << 10
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, "quota-read", 1, nil)
	ctx := ctxTimeout(t, 90*time.Second)
	prod := newKgo(t, n, kgo.DefaultProduceTopic("quota-read"), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(16<<10))
	value := make([]byte, 1000)
	const records = 16000
	for i := 0; i < records; i++ {
		prod.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("slow-reader")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: quota}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %v", err, res)
	}
	consume := func(client string, hook *throttleHook, read *atomic.Int64, stop <-chan struct{}) {
		cl := newKgo(t, n, kgo.ClientID(client), kgo.ConsumeTopics("quota-read"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxBytes(64<<10), kgo.FetchMaxPartitionBytes(64<<10), kgo.WithHooks(hook))
		for {
			select {
			case <-stop:
				return
			default:
			}
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			fs := cl.PollFetches(pctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) { read.Add(int64(len(r.Value))) })
		}
	}
	var slowHook, fastHook throttleHook
	var slowRead, fastRead atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); consume("slow-reader", &slowHook, &slowRead, stop) }()
	go func() { defer wg.Done(); consume("fast-reader", &fastHook, &fastRead, stop) }()
	time.Sleep(3 * time.Second) // warm-up: the burst the quota allows, not measured
	s0, t0 := slowRead.Load(), time.Now()
	time.Sleep(10 * time.Second)
	s1, t1 := slowRead.Load(), time.Now()
	close(stop)
	wg.Wait()
	rate := float64(s1-s0) / t1.Sub(t0).Seconds()
	t.Logf("slow reader: %.0f B/s of record values (quota %d on fetched batch bytes, %d throttled answers); fast reader: %d bytes, %d throttled", rate, quota, slowHook.n.Load(), fastRead.Load(), fastHook.n.Load())
	// Record values are ~98% of the batch bytes the quota counts.
	if rate < 0.9*quota || rate > 1.1*quota {
		t.Errorf("slow reader: %.0f B/s, want within 10%% of %d (less the batch overhead)", rate, quota)
	}
	if slowHook.n.Load() == 0 {
		t.Errorf("the limited consumer was never throttled")
	}
	if fastHook.n.Load() != 0 || fastRead.Load() != records*int64(len(value)) {
		t.Errorf("the unlimited consumer read %d bytes, throttled %d times; want all %d, never", fastRead.Load(), fastHook.n.Load(), records*len(value))
	}
}

// TestClusterDescribeLogDirs: on a 3-node cluster kadm's
// DescribeAllLogDirs lists each partition of a replication-factor-3 topic
// on every node (leaders' and followers' logs), each with the exact size
// of the batches written (acks=all: every replica holds them). Each
// node's DescribeConfigs reports default.replication.factor 3, the
// replication factor a topic created with -1 gets here (min(3, live
// brokers)).
func TestClusterDescribeLogDirs(t *testing.T) {
	card(t, "franz-go kadm", "cluster: DescribeLogDirs lists every replica")
	c := startCluster(t, 3)
	for _, id := range c.ids() {
		rcs, err := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(id))).DescribeBrokerConfigs(ctxTimeout(t, 10*time.Second), id)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("node %d: DescribeBrokerConfigs: %+v %v", id, rcs, err)
		}
		for _, cfg := range rcs[0].Configs {
			if cfg.Key == "default.replication.factor" && cfg.MaybeValue() != "3" {
				t.Errorf("node %d: default.replication.factor %q, want 3 (min(3, live brokers))", id, cfg.MaybeValue())
			}
		}
	}
	const topic = "logdirs-rf3"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 2, nil, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 2}, 10*time.Second)
	}
	batch := buildBatch([][]byte{[]byte("a"), []byte("b")}, time.Now().UnixMilli())
	rc := dialRaw(t, c.node(c.ids()[0]).Kafka)
	for p := int32(0); p < 2; p++ {
		for i := 0; i <= int(p); i++ {
			if code, base := produceRaw(t, rc, 9, topic, p, batch); code != 0 || base != int64(2*i) {
				t.Fatalf("produce %s/%d batch %d: %s at %d", topic, p, i, errName(code), base)
			}
		}
	}
	want := map[string]int64{}
	for _, id := range c.ids() {
		want[fmt.Sprintf("%d %s/0", id, topic)] = int64(len(batch))
		want[fmt.Sprintf("%d %s/1", id, topic)] = int64(2 * len(batch))
	}
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	deadline := time.Now().Add(15 * time.Second)
	for {
		all, err := adm.DescribeAllLogDirs(ctxTimeout(t, 10*time.Second), kadm.TopicsSet{topic: {0: {}, 1: {}}})
		got := map[string]int64{}
		if err == nil {
			all.Each(func(d kadm.DescribedLogDir) {
				d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
					got[fmt.Sprintf("%d %s/%d", d.Broker, p.Topic, p.Partition)] = p.Size
				})
			})
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("log dirs %v (err %v), want %v", got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape returns node n's /metrics samples without labels or with the
// given topic label, by series name (labels dropped).
func scrape(t *testing.T, n *node, topic string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(metricsText(t, n), "\n") {
		if !strings.HasPrefix(line, "tusk_") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, labels, hasLabels := strings.Cut(series, "{")
		if hasLabels && labels != `topic="`+topic+`"}` {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("scrape %s: %q: %v", n.label(), line, err)
		}
		out[name] = v
	}
	return out
}

// metricsText is node n's /metrics page.
func metricsText(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", n.label(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", n.label(), err)
	}
	return string(body)
}

// TestClusterPartitionMetrics: on a 3-node cluster with one RF=3
// partition, exactly one node reports it led and none under-replicated
// or offline; the leader counts the records produced to the topic; once
// a follower is killed the leader reports its time since the follower's
// last fetch growing past a second, then the partition under-replicated
// (its active segment lacks a live replica, and after the roll that
// drops the follower, a replica), and one roll for a laggard, while no
// node reports it offline.
func TestClusterPartitionMetrics(t *testing.T) {
	card(t, "/metrics (3-node cluster)", "partitions led, under-replicated, offline, per-topic records")
	c := startCluster(t, 3)
	const topic = "metrics-rf3"
	if codes, msgs, err := c.raw(t, 1).createTopics([]string{topic}, 1, nil, 10*time.Second); err != nil || codes[topic] != 0 {
		t.Fatalf("create %s: %v %v %v", topic, err, codes, msgs)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	leader := c.metadataOf(t, 1, []string{topic}).Topics[topic].Leaders[0]
	rc := dialRaw(t, c.node(leader).Kafka)
	for i := 0; i < 5; i++ {
		if code, base := produceRaw(t, rc, 9, topic, 0, buildBatch([][]byte{[]byte("x"), []byte("y")}, time.Now().UnixMilli())); code != 0 || base != int64(2*i) {
			t.Fatalf("produce batch %d: %s at %d", i, errName(code), base)
		}
	}
	for _, id := range c.ids() {
		m := scrape(t, c.node(id), topic)
		led := 0.0
		if id == leader {
			led = 1
			if m["tusk_topic_produced_records_total"] != 10 {
				t.Errorf("leader %d: tusk_topic_produced_records_total{topic=%q} = %v, want 10", id, topic, m["tusk_topic_produced_records_total"])
			}
		}
		if m["tusk_leader_partitions"] != led || m["tusk_under_replicated_partitions"] != 0 || m["tusk_offline_partitions"] != 0 || m["tusk_lease_valid"] != 1 {
			t.Errorf("node %d: led %v under-replicated %v offline %v lease %v, want %v 0 0 1", id, m["tusk_leader_partitions"], m["tusk_under_replicated_partitions"], m["tusk_offline_partitions"], m["tusk_lease_valid"], led)
		}
	}
	// The followers fetch everything: the leader reports no record lag.
	waitFor(t, 10*time.Second, "the leader reports its followers caught up", func() (bool, string) {
		m := scrape(t, c.node(leader), topic)
		v, ok := m["tusk_follower_lag_records"]
		return ok && v == 0, fmt.Sprintf("tusk_follower_lag_records %v (present %v)", v, ok)
	})
	for _, id := range c.ids() {
		if _, ok := scrape(t, c.node(id), topic)["tusk_follower_lag_records"]; ok != (id == leader) {
			t.Errorf("node %d (leader %d) reports tusk_follower_lag_records: %v", id, leader, ok)
		}
	}
	var follower int32
	for _, id := range c.ids() {
		if id != leader {
			follower = id
			break
		}
	}
	c.node(follower).Kill9(t)
	deadline := time.Now().Add(20 * time.Second)
	lagSecs := 0.0 // the largest tusk_follower_lag_seconds seen
	for {
		m := scrape(t, c.node(leader), topic)
		lagSecs = max(lagSecs, m["tusk_follower_lag_seconds"])
		if m["tusk_under_replicated_partitions"] == 1 && m["tusk_leader_partitions"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %d after follower %d died: under-replicated %v led %v, want 1 1", leader, follower, m["tusk_under_replicated_partitions"], m["tusk_leader_partitions"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The dead follower is fenced (a lease timeout after its last
	// heartbeat) before the partition counts as under-replicated: its
	// time since the last fetch grew past a second meanwhile. The leader
	// then rolls to a segment without it, a roll for a laggard.
	t.Logf("leader %d: largest tusk_follower_lag_seconds seen while follower %d was dead: %.2f", leader, follower, lagSecs)
	if lagSecs < 1 {
		t.Errorf("leader %d: largest tusk_follower_lag_seconds{topic=%q} seen while follower %d was dead: %v, want >= 1", leader, topic, follower, lagSecs)
	}
	waitFor(t, 20*time.Second, "the leader rolls the dead follower out", func() (bool, string) {
		v := metricValue(t, c.node(leader), `tusk_segment_rolls_total{reason="laggard"}`)
		return v == 1, fmt.Sprintf(`tusk_segment_rolls_total{reason="laggard"} = %v`, v)
	})
	for _, id := range c.ids() {
		if id == follower {
			continue
		}
		if m := scrape(t, c.node(id), topic); m["tusk_offline_partitions"] != 0 {
			t.Errorf("node %d: tusk_offline_partitions %v, want 0", id, m["tusk_offline_partitions"])
		}
	}
}

// TestClusterRollMetrics: on a 3-node cluster, an RF=3 topic with 4 KiB
// segments written through several rolls, and one with segment.ms 300
// written a batch at a time, each batch waiting for a roll: summed over
// the nodes (leadership rotates, each roll is counted by the node that
// sealed), tusk_segment_rolls_total{reason="size"} is exactly the first
// topic's sealed segments and {reason="time"} the second's, and no roll
// has another reason.
func TestClusterRollMetrics(t *testing.T) {
	card(t, "/metrics (3-node cluster)", "segment rolls by reason: size, time")
	c := startCluster(t, 3)
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 60*time.Second)
	const bySize, byTime = "rolls-size", "rolls-time"
	for topic, cfg := range map[string]map[string]*string{bySize: {"segment.bytes": strp("4096")}, byTime: {"segment.ms": strp("300")}} {
		resp, err := adm.CreateTopic(ctx, 1, 3, cfg, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{bySize: 1, byTime: 1}, 10*time.Second)
	}
	all := c.kafkaAddrs(c.ids()...)
	for r := 0; r < 3; r++ {
		producePartitions(t, all, bySize, []int32{0}, 200, fmt.Sprintf("size%d", r), map[int32]int64{0: int64(200 * r)}, kgo.ProducerBatchCompression(kgo.NoCompression()))
	}
	sealed := func(topic string) int {
		n := 0
		for _, s := range c.segmentsVia(t, c.ids()[0], topic, 0) {
			if s.State == "sealed" {
				n++
			}
		}
		return n
	}
	for r := 0; r < 3; r++ {
		producePartitions(t, all, byTime, []int32{0}, 1, fmt.Sprintf("time%d", r), map[int32]int64{0: int64(r)})
		waitFor(t, 20*time.Second, fmt.Sprintf("%s rolls after batch %d", byTime, r), func() (bool, string) {
			n := sealed(byTime)
			return n == r+1, fmt.Sprintf("%d sealed segments", n)
		})
	}
	waitFor(t, 20*time.Second, "rolls by reason summed over the nodes = sealed segments", func() (bool, string) {
		got := map[string]float64{}
		for _, id := range c.ids() {
			for _, line := range strings.Split(metricsText(t, c.node(id)), "\n") {
				if rest, ok := strings.CutPrefix(line, `tusk_segment_rolls_total{reason="`); ok {
					reason, value, _ := strings.Cut(rest, `"} `)
					v, err := strconv.ParseFloat(value, 64)
					if err != nil {
						t.Fatalf("node %d: %q: %v", id, line, err)
					}
					got[reason] += v
				}
			}
		}
		want := map[string]float64{"size": float64(sealed(bySize)), "time": float64(sealed(byTime))}
		return fmt.Sprint(got) == fmt.Sprint(want) && want["size"] >= 3, fmt.Sprintf("rolls %v, sealed segments %v", got, want)
	})
}
