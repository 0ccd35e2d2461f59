package compat

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCLI: `tusk topic|group|config` against a real node, table-driven:
// each step runs the binary and asserts its exit code (0 ok, 1 error, 2
// usage) and its output, exactly where it is JSON; some steps then check
// the cluster's state with kadm.

// cliRun runs the tusk binary with args (and extra environment) and
// returns stdout, stderr and the exit code.
func cliRun(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tuskBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run tusk %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

type cliStep struct {
	name string
	args []string
	env  []string
	code int
	// json: stdout decoded must equal this (compared as re-encoded JSON
	// after dropping the keys in ignore); nil: not checked.
	json   any
	ignore []string
	// contains: substrings stdout (code 0) or stderr must hold.
	stdout, stderr []string
	// check runs after the step (cluster state through kadm).
	check func(t *testing.T)
}

// dropKeys removes keys from every object in v (decoded JSON).
func dropKeys(v any, keys []string) any {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(x, k)
		}
		for k, e := range x {
			x[k] = dropKeys(e, keys)
		}
	case []any:
		for i, e := range x {
			x[i] = dropKeys(e, keys)
		}
	}
	return v
}

func canonJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(d)
	return string(b)
}

func TestCLI(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no admin CLI")
	}
	n := startTusk(t)
	card(t, "tusk topic|group|config (kadm)", "CLI: create/list/describe/alter/delete, groups, reset-offsets, configs, exit codes")
	adm, _ := newAdm(t, n)
	b := []string{"--brokers", n.Kafka}
	const topic, group = "cli-a", "cli-g"
	// Records produced after the topic exists: 5 to partition 0, 3 to 1.
	produce := func(t *testing.T) {
		cl := newKgo(t, n, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for p, count := range map[int32]int{0: 5, 1: 3} {
			for i := 0; i < count; i++ {
				if err := cl.ProduceSync(ctxTimeout(t, 10*time.Second), &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
			}
		}
	}
	commits := func(t *testing.T) map[string]int64 {
		t.Helper()
		resp, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), group)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil {
				t.Fatalf("fetch offsets: %v", o.Err)
			}
			out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.At
		})
		return out
	}
	wantCommits := func(want map[string]int64) func(t *testing.T) {
		return func(t *testing.T) {
			if got := commits(t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("committed %v, want %v", got, want)
			}
		}
	}
	args := func(a ...string) []string { return append(a, b...) }
	lag := func(p, committed, end, lagv int) map[string]any {
		return map[string]any{"topic": topic, "partition": p, "committed": committed, "end": end, "lag": lagv}
	}
	steps := []cliStep{
		{name: "create", args: args("topic", "create", topic, "-p", "3", "-r", "1", "-c", "retention.ms=60000", "--format", "json"), code: 0,
			json: []any{map[string]any{"topic": topic, "partitions": 3, "replication_factor": 1}}, ignore: []string{"id"},
			check: func(t *testing.T) {
				produce(t)
				if got := endOffsets(t, adm, topic); fmt.Sprint(got) != fmt.Sprint(map[int32]int64{0: 5, 1: 3, 2: 0}) {
					t.Fatalf("end offsets %v", got)
				}
			}},
		{name: "create again", args: args("topic", "create", topic), code: 1, stdout: []string{"TOPIC_ALREADY_EXISTS"}, stderr: []string{"1 failed: cli-a: TOPIC_ALREADY_EXISTS"}},
		{name: "create without a name", args: args("topic", "create"), code: 2, stderr: []string{"requires at least 1 arg"}},
		{name: "bad format", args: args("topic", "list", "--format", "yaml"), code: 2, stderr: []string{`--format "yaml"`}},
		{name: "unknown flag", args: args("topic", "list", "--bogus"), code: 2, stderr: []string{"unknown flag: --bogus"}},
		{name: "unknown subcommand", args: args("topic", "frobnicate"), code: 2, stderr: []string{`unknown subcommand "frobnicate"`}},
		{name: "list", args: args("topic", "list", "--format", "json"), code: 0,
			json: []any{map[string]any{"topic": topic, "partitions": 3, "replication_factor": 1, "internal": false}}, ignore: []string{"id"},
			check: func(t *testing.T) {
				// The id is printed as Kafka prints it (URL-safe base64, no padding).
				out, _, _ := cliRun(t, nil, args("topic", "list", "--format", "json")...)
				var l []struct {
					ID string `json:"id"`
				}
				md, err := adm.Metadata(ctxTimeout(t, 10*time.Second), topic)
				if err != nil {
					t.Fatal(err)
				}
				id := md.Topics[topic].ID
				if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != 1 || l[0].ID != base64.RawURLEncoding.EncodeToString(id[:]) {
					t.Fatalf("topic list ids %+v (%v), want %s", l, err, base64.RawURLEncoding.EncodeToString(id[:]))
				}
			}},
		{name: "list table via TUSK_BROKERS", args: []string{"topic", "list"}, env: []string{"TUSK_BROKERS=" + n.Kafka}, code: 0,
			stdout: []string{"TOPIC", "PARTITIONS", topic + "  3 "}},
		{name: "alter", args: args("topic", "alter", topic, "-p", "5", "--set", "segment.bytes=1048576", "--delete", "retention.ms", "--format", "json"), code: 0,
			json: []any{
				map[string]any{"topic": topic, "change": "partitions=5"},
				map[string]any{"topic": topic, "change": "segment.bytes=1048576 -retention.ms"},
			}},
		{name: "alter nothing", args: args("topic", "alter", topic), code: 2, stderr: []string{"nothing to change"}},
		{name: "describe", args: args("topic", "describe", topic, "--format", "json"), code: 0,
			json: []any{map[string]any{"topic": topic, "internal": false, "configs": map[string]any{"segment.bytes": "1048576"},
				"partitions": []any{
					map[string]any{"partition": 0, "leader": 1, "replicas": []any{1}, "isr": []any{1}, "log_start": 0, "log_end": 5},
					map[string]any{"partition": 1, "leader": 1, "replicas": []any{1}, "isr": []any{1}, "log_start": 0, "log_end": 3},
					map[string]any{"partition": 2, "leader": 1, "replicas": []any{1}, "isr": []any{1}, "log_start": 0, "log_end": 0},
					map[string]any{"partition": 3, "leader": 1, "replicas": []any{1}, "isr": []any{1}, "log_start": 0, "log_end": 0},
					map[string]any{"partition": 4, "leader": 1, "replicas": []any{1}, "isr": []any{1}, "log_start": 0, "log_end": 0},
				}}}, ignore: []string{"id", "leader_epoch"}},
		{name: "describe table", args: args("topic", "describe", topic), code: 0,
			stdout: []string{"topic cli-a", "PARTITION  LEADER  EPOCH", "config segment.bytes=1048576"}},
		{name: "describe unknown", args: args("topic", "describe", "nope"), code: 1, stderr: []string{"nope: "}},
		{name: "config get topic key", args: args("config", "get", "topic", topic, "segment.bytes", "--format", "json"), code: 0,
			json: []any{map[string]any{"key": "segment.bytes", "value": "1048576", "source": "DYNAMIC_TOPIC_CONFIG"}}},
		{name: "config get unknown key", args: args("config", "get", "topic", topic, "no.such.key"), code: 1, stderr: []string{`has no config "no.such.key"`}},
		{name: "config set topic", args: args("config", "set", "topic", topic, "retention.ms=120000", "--delete", "segment.bytes"), code: 0,
			stdout: []string{"topic cli-a: set retention.ms=120000", "topic cli-a: deleted segment.bytes"}},
		{name: "config get after set", args: args("config", "get", "topic", topic, "retention.ms", "--format", "json"), code: 0,
			json: []any{map[string]any{"key": "retention.ms", "value": "120000", "source": "DYNAMIC_TOPIC_CONFIG"}}},
		{name: "config get after delete", args: args("config", "get", "topic", topic, "segment.bytes", "--format", "json"), code: 0,
			json: []any{map[string]any{"key": "segment.bytes", "source": "DEFAULT_CONFIG"}}, ignore: []string{"value"}},
		{name: "config get broker", args: args("config", "get", "broker", "1", "broker.id", "--format", "json"), code: 0,
			json: []any{map[string]any{"key": "broker.id", "value": "1", "source": "STATIC_BROKER_CONFIG"}}},
		{name: "config set broker (static in tusk)", args: args("config", "set", "broker", "1", "num.partitions=4"), code: 1,
			stderr: []string{"INVALID_REQUEST", "broker configs are static"}},
		{name: "config on a bad resource", args: args("config", "get", "cluster", "x"), code: 2, stderr: []string{`"cluster": want topic NAME or broker ID`}},
		{name: "config set bad pair", args: args("config", "set", "topic", topic, "novalue"), code: 2, stderr: []string{`"novalue": want key=value`}},
		{name: "seed the group", args: args("group", "reset-offsets", group, "--topic", topic+":0,1", "--to-earliest"), code: 0,
			stdout: []string{"TOPIC", "cli-a  0          -        0"}, check: wantCommits(map[string]int64{"cli-a/0": 0, "cli-a/1": 0})},
		{name: "group list", args: args("group", "list", "--format", "json"), code: 0,
			json: []any{map[string]any{"group": group, "type": "classic", "state": "Empty", "protocol_type": "", "coordinator": 1}}},
		{name: "reset dry run", args: args("group", "reset-offsets", group, "--all-topics", "--to-latest", "--dry-run", "--format", "json"), code: 0,
			json: map[string]any{"group": group, "dry_run": true, "offsets": []any{
				map[string]any{"topic": topic, "partition": 0, "current": 0, "new": 5},
				map[string]any{"topic": topic, "partition": 1, "current": 0, "new": 3},
			}}, check: wantCommits(map[string]int64{"cli-a/0": 0, "cli-a/1": 0})},
		{name: "reset to latest", args: args("group", "reset-offsets", group, "--all-topics", "--to-latest"), code: 0,
			check: wantCommits(map[string]int64{"cli-a/0": 5, "cli-a/1": 3})},
		{name: "shift back", args: args("group", "reset-offsets", group, "--topic", topic+":0", "--shift-by", "-3"), code: 0,
			check: wantCommits(map[string]int64{"cli-a/0": 2, "cli-a/1": 3})},
		{name: "shift beyond the start clamps", args: args("group", "reset-offsets", group, "--topic", topic+":1", "--shift-by", "-100"), code: 0,
			check: wantCommits(map[string]int64{"cli-a/0": 2, "cli-a/1": 0})},
		{name: "describe lag", args: args("group", "describe", group, "--format", "json"), code: 0,
			json: []any{map[string]any{"group": group, "type": "classic", "state": "Empty", "protocol_type": "", "protocol": "", "coordinator": 1, "members": []any{},
				// kadm lists every partition of a topic with a commit (-1: none).
				"lag": []any{lag(0, 2, 5, 3), lag(1, 0, 3, 3), lag(2, -1, 0, 0), lag(3, -1, 0, 0), lag(4, -1, 0, 0)}, "total_lag": 6}}},
		{name: "to datetime in the past", args: args("group", "reset-offsets", group, "--topic", topic, "--to-datetime", "2001-01-01T00:00:00Z"), code: 0,
			check: wantCommits(map[string]int64{"cli-a/0": 0, "cli-a/1": 0, "cli-a/2": 0, "cli-a/3": 0, "cli-a/4": 0})},
		{name: "to datetime in the future", args: args("group", "reset-offsets", group, "--topic", topic, "--to-datetime", "2199-01-01T00:00:00Z"), code: 0,
			check: wantCommits(map[string]int64{"cli-a/0": 5, "cli-a/1": 3, "cli-a/2": 0, "cli-a/3": 0, "cli-a/4": 0})},
		{name: "reset with two modes", args: args("group", "reset-offsets", group, "--all-topics", "--to-latest", "--to-earliest"), code: 2, stderr: []string{"exactly one of"}},
		{name: "reset without topics", args: args("group", "reset-offsets", group, "--to-latest"), code: 2, stderr: []string{"--topic (repeatable) or --all-topics"}},
		{name: "reset bad datetime", args: args("group", "reset-offsets", group, "--all-topics", "--to-datetime", "yesterday"), code: 2, stderr: []string{"want RFC 3339"}},
		{name: "reset an unknown topic", args: args("group", "reset-offsets", group, "--topic", "nope", "--to-latest"), code: 1, stderr: []string{"nope: unknown topic"}},
		{name: "group delete", args: args("group", "delete", group, "--format", "json"), code: 0,
			json: []any{map[string]any{"group": group, "result": "deleted"}}},
		{name: "describe a deleted group", args: args("group", "describe", group), code: 1, stderr: []string{"cli-g: GROUP_ID_NOT_FOUND"}},
		{name: "topic delete", args: args("topic", "delete", topic), code: 0, stdout: []string{"cli-a  deleted  ok"}},
		{name: "topic delete again", args: args("topic", "delete", topic), code: 1, stderr: []string{"UNKNOWN_TOPIC_OR_PARTITION"}},
		{name: "unreachable broker", args: []string{"topic", "list", "--brokers", "127.0.0.1:1", "--timeout", "2s"}, code: 1, stderr: []string{"list topics:"}},
	}
	runCLISteps(t, steps)
}

// runCLISteps runs steps in order, stopping at the first that fails
// (later steps depend on it).
func runCLISteps(t *testing.T, steps []cliStep) {
	t.Helper()
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			out, errOut, code := cliRun(t, s.env, s.args...)
			if code != s.code {
				t.Fatalf("tusk %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, out, errOut)
			}
			for _, want := range s.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range s.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if s.json != nil {
				var got any
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("stdout is not JSON: %v\n%s", err, out)
				}
				if g, w := canonJSON(t, dropKeys(got, s.ignore)), canonJSON(t, s.json); g != w {
					t.Fatalf("JSON\n got %s\nwant %s", g, w)
				}
			}
			if s.check != nil {
				s.check(t)
			}
		})
		if !ok {
			break // later steps depend on this one
		}
	}
}

// groupTypes is the fixture of TestCLIGroupTypes and
// TestConsoleGroupTypes: on topic gtTopic (2 partitions, 9 records on
// partition 0 and 4 on 1) a classic group with commits only, a KIP-848
// consumer group (kgo ServerSideBalancer) with one live member that read
// everything and committed 4 and 1, and a KIP-932 share group with one
// live kgo member that acknowledged the first 10 records (share-partition
// start offsets 6 and 4).
type groupTypes struct {
	consumer, share *kgo.Client
}

const (
	gtTopic    = "gt-topic"
	gtClassic  = "gt-classic"
	gtConsumer = "gt-848"
	gtShare    = "gt-share"
)

// gtLag is one expected lag row.
func gtLag(p, committed, end, lagv int) map[string]any {
	return map[string]any{"topic": gtTopic, "partition": p, "committed": committed, "end": end, "lag": lagv}
}

// startGroupTypes builds the groupTypes fixture through n. On a cluster,
// all lists every node: the share group's
// share.auto.offset.reset=earliest is waited for on each (a partition
// leader whose metadata has not applied it yet would start the group at
// the partition's end).
func startGroupTypes(t *testing.T, n *node, all ...*node) *groupTypes {
	t.Helper()
	adm, cl := newAdm(t, n)
	createTopic(t, adm, gtTopic, 2, nil)
	waitTopicReady(t, adm, gtTopic, 2)
	ctx := ctxTimeout(t, time.Minute)
	prod := newKgo(t, n, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(p int32, count int) {
		for i := 0; i < count; i++ {
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: gtTopic, Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i))}).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
	}
	produce(0, 6)
	produce(1, 4)
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: gtTopic, Partition: 0, At: 2, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, gtClassic, commit); err != nil {
		t.Fatalf("classic commit: %v", err)
	}
	// readAll polls until every one of the first 10 records was read.
	readAll := func(name string, cl *kgo.Client, each func(*kgo.Record)) {
		read := 0
		var got []string // partition/offset, and fetch errors
		deadline := time.Now().Add(30 * time.Second)
		for read < 10 && time.Now().Before(deadline) {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			fs := cl.PollFetches(pctx)
			cancel()
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					got = append(got, fmt.Sprintf("%s/%d: %v", topic, p, err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				read++
				got = append(got, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
				each(r)
			})
		}
		if read != 10 {
			t.Fatalf("%s read %d records in 30 s, want 10: %v", name, read, got)
		}
	}
	gt := &groupTypes{}
	gt.consumer = newKgo(t, n, kgo.ClientID("gt-848-client"), kgo.ConsumerGroup(gtConsumer), kgo.ConsumeTopics(gtTopic),
		kgo.ServerSideBalancer(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond))
	readAll("the consumer group", gt.consumer, func(*kgo.Record) {})
	var commitErr error
	gt.consumer.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{gtTopic: {0: {Epoch: -1, Offset: 4}, 1: {Epoch: -1, Offset: 1}}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			commitErr = err
			if err == nil {
				for _, rt := range resp.Topics {
					for _, rp := range rt.Partitions {
						if rp.ErrorCode != 0 && commitErr == nil {
							commitErr = kerr.ErrorForCode(rp.ErrorCode)
						}
					}
				}
			}
		})
	if commitErr != nil {
		t.Fatalf("consumer group commit: %v", commitErr)
	}
	if code := alterGroupConfig(t, cl, gtShare, kmsg.IncrementalAlterConfigOpSet, "share.auto.offset.reset", "earliest"); code != 0 {
		t.Fatalf("share.auto.offset.reset: %v", kerr.ErrorForCode(code))
	}
	for _, o := range all {
		rc := newRawClient(t, o.Kafka)
		deadline := time.Now().Add(20 * time.Second)
		for last := ""; ; {
			req := kmsg.NewPtrDescribeConfigsRequest()
			r := kmsg.NewDescribeConfigsRequestResource()
			r.ResourceType, r.ResourceName, r.ConfigNames = kmsg.ConfigResourceTypeGroupConfig, gtShare, []string{"share.auto.offset.reset"}
			req.Resources = append(req.Resources, r)
			resp, err := rc.do(req, 4, 5*time.Second)
			if err != nil {
				last = err.Error()
			} else if rs := resp.(*kmsg.DescribeConfigsResponse).Resources; len(rs) == 1 && len(rs[0].Configs) == 1 {
				if v := rs[0].Configs[0].Value; v != nil && *v == "earliest" {
					break
				}
				last = fmt.Sprintf("%+v", rs[0].Configs[0])
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: share.auto.offset.reset not earliest in 20 s: %s", o.label(), last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	gt.share = newKgo(t, n, kgo.ClientID("gt-share-client"), kgo.ShareGroup(gtShare), kgo.ConsumeTopics(gtTopic),
		kgo.FetchMaxWait(200*time.Millisecond))
	readAll("the share group", gt.share, func(r *kgo.Record) { r.Ack(kgo.AckAccept) })
	if err := gt.share.FlushAcks(ctx); err != nil {
		t.Fatalf("flush acks: %v", err)
	}
	produce(0, 3)
	return gt
}

// close makes both groups empty (their members leave).
func (gt *groupTypes) close() {
	gt.consumer.Close()
	gt.share.Close()
}

// TestCLIGroupTypes: `tusk group list|describe|delete` on a classic, a
// KIP-848 consumer and a KIP-932 share group: types, members, member
// epochs, assignments and lag exactly; delete of a live group refused,
// of each emptied group done.
func TestCLIGroupTypes(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no admin CLI")
	}
	n := startTusk(t, shareFlags()...)
	card(t, "tusk group (kadm)", "CLI: classic, KIP-848 and share groups listed, described with lag, deleted")
	gt := startGroupTypes(t, n)
	args := func(a ...string) []string { return append(a, "--brokers", n.Kafka) }
	member := func(client string, epoch int, subscribed bool) map[string]any {
		m := map[string]any{"client_id": client, "assigned": map[string]any{gtTopic: []any{0, 1}}, "member_epoch": epoch}
		if subscribed {
			m["subscribed_topics"] = []any{gtTopic}
		}
		return m
	}
	ignore := []string{"member_id", "host"}
	steps := []cliStep{
		{name: "list", args: args("group", "list", "--format", "json"), code: 0, json: []any{
			map[string]any{"group": gtConsumer, "type": "consumer", "state": "Stable", "protocol_type": "consumer", "coordinator": 1},
			map[string]any{"group": gtClassic, "type": "classic", "state": "Empty", "protocol_type": "", "coordinator": 1},
			map[string]any{"group": gtShare, "type": "share", "state": "Stable", "protocol_type": "share", "coordinator": 1},
		}},
		{name: "list table", args: args("group", "list"), code: 0, stdout: []string{"GROUP", "TYPE", "consumer", "share", "classic"}},
		{name: "describe consumer", args: args("group", "describe", gtConsumer, "--format", "json"), code: 0, ignore: ignore, json: []any{
			map[string]any{"group": gtConsumer, "type": "consumer", "state": "Stable", "protocol_type": "", "protocol": "",
				"group_epoch": 1, "assignment_epoch": 1, "assignor": "uniform", "coordinator": 1,
				"members":   []any{member("gt-848-client", 1, true)},
				"lag":       []any{gtLag(0, 4, 9, 5), gtLag(1, 1, 4, 3)},
				"total_lag": 8}}},
		{name: "describe share", args: args("group", "describe", gtShare, "--format", "json"), code: 0, ignore: ignore, json: []any{
			map[string]any{"group": gtShare, "type": "share", "state": "Stable", "protocol_type": "", "protocol": "",
				"group_epoch": 1, "assignment_epoch": 1, "assignor": "simple", "coordinator": 1,
				"members":   []any{member("gt-share-client", 1, true)},
				"lag":       []any{gtLag(0, 6, 9, 3), gtLag(1, 4, 4, 0)},
				"total_lag": 3}}},
		{name: "describe classic", args: args("group", "describe", gtClassic, "--format", "json"), code: 0, json: []any{
			map[string]any{"group": gtClassic, "type": "classic", "state": "Empty", "protocol_type": "", "protocol": "", "coordinator": 1,
				"members": []any{}, "lag": []any{gtLag(0, 2, 9, 7), gtLag(1, -1, 4, 4)}, "total_lag": 11}}},
		{name: "describe table", args: args("group", "describe", gtConsumer, gtShare), code: 0, stdout: []string{
			"group gt-848  type consumer  state Stable  epoch 1  assignor uniform  coordinator 1  members 1  total lag 8",
			"group gt-share  type share  state Stable  epoch 1  assignor simple  coordinator 1  members 1  total lag 3",
			"SHARE-START", "client gt-share-client", "epoch 1  assigned gt-topic:0,1"}},
		{name: "describe unknown", args: args("group", "describe", "gt-nope"), code: 1, stderr: []string{"gt-nope: GROUP_ID_NOT_FOUND"}},
		{name: "delete live groups", args: args("group", "delete", gtConsumer, gtShare), code: 1, stderr: []string{"NON_EMPTY_GROUP"},
			check: func(*testing.T) { gt.close() }},
		{name: "delete", args: args("group", "delete", gtConsumer, gtShare, gtClassic, "--format", "json"), code: 0, json: []any{
			map[string]any{"group": gtConsumer, "result": "deleted"},
			map[string]any{"group": gtClassic, "result": "deleted"},
			map[string]any{"group": gtShare, "result": "deleted"},
		}},
		{name: "list after delete", args: args("group", "list", "--format", "json"), code: 0, json: []any{}},
		{name: "describe deleted", args: args("group", "describe", gtShare), code: 1, stderr: []string{"gt-share: GROUP_ID_NOT_FOUND"}},
	}
	runCLISteps(t, steps)
}
