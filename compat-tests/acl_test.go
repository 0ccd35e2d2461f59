package compat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestACLs: one node with --authorizer and
// --allow-everyone-if-no-acl-found, its clients PLAINTEXT
// (User:ANONYMOUS). ACLs are made with `tusk acl` and with kafka-python's
// admin client (while the cluster resource has no ACL, anyone may manage
// them), then a cluster ACL for User:admin takes that away. Then: kgo's
// default idempotent producer writes with WRITE on a prefixed family of
// topics alone (KIP-679, no IDEMPOTENT_WRITE on the cluster); a topic
// with READ only answers TOPIC_AUTHORIZATION_FAILED to produce and is
// still consumed in a group the prefixed group ACL allows; a DENY beats
// the prefixed ALLOW of ALL; Metadata for all topics leaves out a topic
// whose only ACL is another user's; `tusk acl list` is then refused;
// kcat (librdkafka) lists, consumes and is refused produce alike.
func TestACLs(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no authorizer")
	}
	py := requirePythonModule(t, "kafka", "python3-kafka")
	n := startTusk(t, func(o *startOpts) { o.args = append(o.args, "--authorizer", "--allow-everyone-if-no-acl-found") })
	card(t, "tusk acl (kadm), kafka-python admin, kgo", "ACLs: create/list/delete, prefixed and DENY rules, idempotent producer with WRITE only, hidden topics")
	ctx := ctxTimeout(t, 60*time.Second)
	adm, _ := newAdm(t, n)

	// Topics and the records of "ro", before any ACL applies to them.
	for _, topic := range []string{"ro", "app-a", "app-secret", "hidden", "open"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}
	seed := newKgo(t, n)
	for _, v := range []string{"r0", "r1", "r2"} {
		if err := seed.ProduceSync(ctx, &kgo.Record{Topic: "ro", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	b := []string{"--brokers", n.Kafka}
	args := func(a ...string) []string { return append(a, b...) }
	acl := func(principal, host, op, perm, rt, name, pattern string) map[string]any {
		return map[string]any{"principal": principal, "host": host, "operation": op, "permission": perm, "resource_type": rt, "resource_name": name, "pattern": pattern}
	}
	runCLISteps(t, []cliStep{
		{name: "create read on ro", args: args("acl", "create", "--principal", "User:ANONYMOUS", "--operation", "read", "--topic", "ro", "--format", "json"), code: 0,
			json: []any{acl("User:ANONYMOUS", "*", "READ", "ALLOW", "TOPIC", "ro", "LITERAL")}},
		{name: "create all on app- prefixed", args: args("acl", "create", "--principal", "User:ANONYMOUS", "--operation", "all", "--topic", "app-", "--pattern", "prefixed"), code: 0,
			stdout: []string{"User:ANONYMOUS", "ALL", "app-", "PREFIXED"}},
		{name: "deny write on app-secret", args: args("acl", "create", "--principal", "User:ANONYMOUS", "--operation", "write", "--topic", "app-secret", "--permission", "deny"), code: 0},
		{name: "another user's ACL on hidden", args: args("acl", "create", "--principal", "User:bob", "--operation", "read", "--operation", "describe", "--topic", "hidden"), code: 0},
		{name: "create without a principal", args: args("acl", "create", "--operation", "read", "--topic", "x"), code: 2, stderr: []string{"--principal is required"}},
		{name: "create with a bad operation", args: args("acl", "create", "--principal", "User:a", "--operation", "reed", "--topic", "x"), code: 2, stderr: []string{`--operation "reed"`}},
		{name: "create with a match pattern", args: args("acl", "create", "--principal", "User:a", "--operation", "read", "--topic", "x", "--pattern", "match"), code: 2},
		{name: "delete without a filter", args: args("acl", "delete"), code: 2, stderr: []string{"--all-acls"}},
		{name: "list bob's", args: args("acl", "list", "--principal", "User:bob", "--format", "json"), code: 0, json: []any{
			acl("User:bob", "*", "DESCRIBE", "ALLOW", "TOPIC", "hidden", "LITERAL"),
			acl("User:bob", "*", "READ", "ALLOW", "TOPIC", "hidden", "LITERAL"),
		}},
		{name: "list what applies to app-secret", args: args("acl", "list", "--topic", "app-secret", "--pattern", "match", "--format", "json"), code: 0, json: []any{
			acl("User:ANONYMOUS", "*", "ALL", "ALLOW", "TOPIC", "app-", "PREFIXED"),
			acl("User:ANONYMOUS", "*", "WRITE", "DENY", "TOPIC", "app-secret", "LITERAL"),
		}},
		{name: "delete bob's describe", args: args("acl", "delete", "--principal", "User:bob", "--operation", "describe", "--format", "json"), code: 0, json: []any{
			acl("User:bob", "*", "DESCRIBE", "ALLOW", "TOPIC", "hidden", "LITERAL"),
		}},
	})

	// kafka-python's admin: create, describe with MATCH, delete.
	out, err := exec.CommandContext(ctx, py, filepath.Join("testdata", "kafka_python_acls.py"), n.Kafka).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka_python_acls.py: %v\n%s", err, out)
	}
	var pyOut struct {
		Created       int              `json:"created"`
		CreateFailed  []string         `json:"create_failed"`
		MatchPyGroup  []map[string]any `json:"match_py_group"`
		DescribeError string           `json:"describe_error"`
		Deleted       []map[string]any `json:"deleted"`
		AllAfter      []map[string]any `json:"all_after"`
	}
	if err := json.Unmarshal(out, &pyOut); err != nil {
		t.Fatalf("kafka_python_acls.py output: %v\n%s", err, out)
	}
	pyRow := func(principal, op, perm, rt, name, pattern string) map[string]any {
		return map[string]any{"principal": principal, "host": "*", "operation": op, "permission": perm, "resource_type": rt, "resource_name": name, "pattern": pattern}
	}
	if pyOut.Created != 2 || len(pyOut.CreateFailed) != 0 || pyOut.DescribeError != "NoError" {
		t.Fatalf("kafka-python: %s", out)
	}
	if g, w := canonJSON(t, pyOut.MatchPyGroup), canonJSON(t, []any{pyRow("User:ANONYMOUS", "READ", "ALLOW", "GROUP", "py-", "PREFIXED")}); g != w {
		t.Fatalf("kafka-python MATCH py-group:\n got %s\nwant %s", g, w)
	}
	if len(pyOut.Deleted) != 1 || pyOut.Deleted[0]["principal"] != "User:carol" || pyOut.Deleted[0]["error"] != "NoError" {
		t.Fatalf("kafka-python delete: %v", pyOut.Deleted)
	}
	var all []string
	for _, r := range pyOut.AllAfter {
		all = append(all, r["principal"].(string)+" "+r["permission"].(string)+" "+r["operation"].(string)+" "+r["resource_type"].(string)+":"+r["resource_name"].(string)+":"+r["pattern"].(string))
	}
	sort.Strings(all)
	want := []string{
		"User:ANONYMOUS ALLOW ALL TOPIC:app-:PREFIXED",
		"User:ANONYMOUS ALLOW READ GROUP:py-:PREFIXED",
		"User:ANONYMOUS ALLOW READ TOPIC:ro:LITERAL",
		"User:ANONYMOUS DENY WRITE TOPIC:app-secret:LITERAL",
		"User:bob ALLOW READ TOPIC:hidden:LITERAL",
	}
	if strings.Join(all, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ACLs kafka-python lists:\n%s\nwant:\n%s", strings.Join(all, "\n"), strings.Join(want, "\n"))
	}

	// From now on the cluster has an ACL: only User:admin may manage ACLs
	// or write idempotently by IDEMPOTENT_WRITE.
	runCLISteps(t, []cliStep{
		{name: "cluster ACL for admin", args: args("acl", "create", "--principal", "User:admin", "--operation", "all", "--cluster"), code: 0},
		{name: "list refused", args: args("acl", "list"), code: 1, stderr: []string{"CLUSTER_AUTHORIZATION_FAILED"}},
	})

	p := newKgo(t, n, kgo.RecordRetries(2))
	r := &kgo.Record{Topic: "app-a", Value: []byte("a0")}
	if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatalf("idempotent produce to app-a with WRITE on app-* only: %v", err)
	}
	if r.Offset != 0 || r.ProducerID < 0 {
		t.Fatalf("app-a record at %d, producer id %d", r.Offset, r.ProducerID)
	}
	for _, topic := range []string{"ro", "app-secret", "hidden"} {
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("produce to %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
	}

	c := newKgo(t, n, kgo.ConsumeTopics("ro"), kgo.ConsumerGroup("py-group"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 3 {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %v: %v", got, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if strings.Join(got, ",") != "r0,r1,r2" {
		t.Fatalf("consumed %v", got)
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit in py-group: %v", err)
	}

	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, mt := range resp.Topics {
		if mt.Topic != nil && !strings.HasPrefix(*mt.Topic, "__") {
			listed = append(listed, *mt.Topic)
		}
	}
	sort.Strings(listed)
	if strings.Join(listed, ",") != "app-a,app-secret,open,ro" {
		t.Fatalf("all-topics metadata lists %v, want app-a, app-secret, open, ro (not hidden)", listed)
	}

	// librdkafka (kcat): the same rules.
	kcat := requireTool(t, "kcat")
	common := []string{"-b", n.Kafka, "-X", "api.version.request=true"}
	meta, _ := runTool(t, nil, kcat, append(common, "-L")...)
	if !strings.Contains(meta, `topic "ro"`) || strings.Contains(meta, `topic "hidden"`) {
		t.Fatalf("kcat -L:\n%s", meta)
	}
	consumed, _ := runTool(t, nil, kcat, append(common, "-C", "-t", "ro", "-o", "beginning", "-e", "-f", `%o:%s\n`)...)
	if consumed != "0:r0\n1:r1\n2:r2\n" {
		t.Fatalf("kcat -C ro: %q", consumed)
	}
	cmd := exec.CommandContext(ctx, kcat, append(common, "-P", "-t", "ro", "-X", "message.send.max.retries=0")...)
	cmd.Stdin = strings.NewReader("denied\n")
	kout, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(kout), "Topic authorization failed") {
		t.Fatalf("kcat -P ro: %v\n%s", err, kout)
	}
}

// TestACLsSASL: one node with a PLAINTEXT and a SASL_PLAINTEXT listener,
// --authorizer and super user User:admin (a bootstrap user). As admin,
// `tusk user` adds alice and bob and `tusk acl` grants alice WRITE and
// READ on the topics a-*, bob READ on a-data. Then, with kgo over
// SCRAM-SHA-512: alice's idempotent producer writes a-data with WRITE on
// a-* alone and is refused b-data; bob reads alice's records, is refused
// produce, and his metadata lists a-data only; the PLAINTEXT listener's
// User:ANONYMOUS sees no topic. (kcat is not used here: librdkafka 2.0.2
// finds no SASL handshake while SaslHandshake v0 is not advertised.)
func TestACLsSASL(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no authorizer")
	}
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("admin:admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startTusk(t, withFlag("kafka-listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"),
		withFlag("sasl-bootstrap-users-file", users), withFlag("super-users", "User:admin"),
		func(o *startOpts) { o.args = append(o.args, "--authorizer") })
	card(t, "kgo, tusk user/acl over SASL_PLAINTEXT", "ACLs for SASL users: prefixed grants, produce refused, hidden topics")
	ctx := ctxTimeout(t, 60*time.Second)
	var ready struct {
		Listeners map[string]string `json:"listeners"`
	}
	if b, err := os.ReadFile(n.readyPath); err != nil || json.Unmarshal(b, &ready) != nil || ready.Listeners["SASL_PLAINTEXT"] == "" {
		t.Fatalf("ready file listeners: %+v %v", ready, err)
	}
	saslAddr, plainAddr := ready.Listeners["SASL_PLAINTEXT"], ready.Listeners["PLAINTEXT"]

	adminEnv := []string{"TUSK_BROKERS=" + saslAddr, "TUSK_CLI_SASL_USER=admin", "TUSK_CLI_SASL_PASSWORD=admin-secret"}
	sm := []string{"--sasl-mechanism", "SCRAM-SHA-512"}
	runCLISteps(t, []cliStep{
		{name: "user alice", env: adminEnv, args: append([]string{"user", "create", "alice", "--password", "alice-secret"}, sm...), code: 0},
		{name: "user bob", env: adminEnv, args: append([]string{"user", "create", "bob", "--password", "bob-secret"}, sm...), code: 0},
		{name: "topics", env: adminEnv, args: append([]string{"topic", "create", "a-data", "b-data", "-p", "1", "-r", "1"}, sm...), code: 0},
		{name: "alice on a-*", env: adminEnv, args: append([]string{"acl", "create", "--principal", "User:alice", "--operation", "write", "--operation", "read", "--topic", "a-", "--pattern", "prefixed"}, sm...), code: 0},
		{name: "bob reads a-data", env: adminEnv, args: append([]string{"acl", "create", "--principal", "User:bob", "--operation", "read", "--topic", "a-data"}, sm...), code: 0},
		{name: "alice may not list ACLs", env: []string{"TUSK_BROKERS=" + saslAddr, "TUSK_CLI_SASL_USER=alice", "TUSK_CLI_SASL_PASSWORD=alice-secret"},
			args: append([]string{"acl", "list"}, sm...), code: 1, stderr: []string{"CLUSTER_AUTHORIZATION_FAILED"}},
	})

	user := func(name string, opts ...kgo.Opt) *kgo.Client {
		t.Helper()
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(saslAddr), kgo.RetryTimeout(5 * time.Second),
			kgo.SASL(scram.Auth{User: name, Pass: name + "-secret"}.AsSha512Mechanism())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	alice := user("alice")
	for i := range 3 {
		r := &kgo.Record{Topic: "a-data", Value: []byte(fmt.Sprintf("v%d", i))}
		if err := alice.ProduceSync(ctx, r).FirstErr(); err != nil || r.Offset != int64(i) || r.ProducerID < 0 {
			t.Fatalf("alice's idempotent producer: offset %d, producer id %d, %v", r.Offset, r.ProducerID, err)
		}
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "b-data", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice produces to b-data: %v", err)
	}
	if err := user("bob", kgo.DisableIdempotentWrite()).ProduceSync(ctx, &kgo.Record{Topic: "a-data", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob produces to a-data: %v", err)
	}
	bob := user("bob", kgo.ConsumeTopics("a-data"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 3 {
		fs := bob.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("bob read %v: %v", got, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("bob fetches %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Value)) })
	}
	if strings.Join(got, ",") != "0:v0,1:v1,2:v2" {
		t.Fatalf("bob read %v", got)
	}
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Topics) != 1 || *meta.Topics[0].Topic != "a-data" {
		t.Fatalf("bob's all-topics metadata: %d topics", len(meta.Topics))
	}

	anon, err := kgo.NewClient(kgo.SeedBrokers(plainAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, anon)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 0 {
		t.Fatalf("User:ANONYMOUS sees %d topics", len(resp.Topics))
	}
}
