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
	"github.com/twmb/franz-go/pkg/kgo"
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
			json: []any{map[string]any{"group": group, "state": "Empty", "protocol_type": "", "coordinator": 1}}},
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
			json: []any{map[string]any{"group": group, "state": "Empty", "protocol_type": "", "protocol": "", "coordinator": 1, "members": []any{},
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
