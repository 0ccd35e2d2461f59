package compat

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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

// TestBrokerVersionConfigs: DescribeConfigs on the broker resource reports
// a Kafka version (what kafbat UI reads), the log dir DescribeLogDirs
// lists, and the broker default of every topic config as its synonym.
func TestBrokerVersionConfigs(t *testing.T) {
	card(t, "franz-go kadm + sarama", "DescribeConfigs broker versions")
	n := startTusk(t)
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
		"log.retention.ms":                "604800000",
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
