package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions written and read by clients other than franz-go: kafkajs
// (node), librdkafka through confluent-kafka-python, and kcat reading
// what kgo wrote. Each topic's partitions end with a committed record, so
// a reader that has seen every partition's last committed record has seen
// everything a read_committed consumer may return.

// txnRec is one record as the client scripts print it.
type txnRec struct {
	P int32  `json:"p"`
	O int64  `json:"o"`
	V string `json:"v"`
}

// byPartition groups recs by partition, in the order they were read.
func byPartition(recs []txnRec) map[int32][]txnRec {
	out := map[int32][]txnRec{}
	for _, r := range recs {
		out[r.P] = append(out[r.P], r)
	}
	return out
}

// sameTxnRecs fails unless got holds exactly want per partition, in order,
// at the same offsets.
func sameTxnRecs(t *testing.T, who string, got []txnRec, want map[int32][]txnRec) {
	t.Helper()
	g := byPartition(got)
	for p := range g {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %d records of partition %d, want none: %v", who, len(g[p]), p, g[p])
		}
	}
	for p, w := range want {
		if !slices.Equal(g[p], w) {
			t.Errorf("%s: partition %d:\n got %v\nwant %v", who, p, g[p], w)
		}
	}
}

// txnWant builds the expected records of partition p: for each tag
// (values tag-p<P>-<i>, i < n) starting at the given offset.
func txnWant(p int32, parts ...txnRun) []txnRec {
	var out []txnRec
	for _, pt := range parts {
		for i := 0; i < pt.n; i++ {
			v := fmt.Sprintf("%s-p%d-%d", pt.tag, p, i)
			if pt.n == 1 && pt.tag == "end" {
				v = fmt.Sprintf("end-p%d", p)
			}
			out = append(out, txnRec{P: p, O: pt.first + int64(i), V: v})
		}
	}
	return out
}

// txnRun is n records tag-p<P>-<i> from offset first ("end": one record
// end-p<P>).
type txnRun struct {
	tag   string
	n     int
	first int64
}

// produceInput writes perPartition plain records in-p<P>-<i> to every
// partition of topic, uncompressed (kafkajs has no snappy codec), and
// waits for their acknowledgements.
func produceInput(t *testing.T, n *node, topic string, partitions int32, perPartition int) {
	t.Helper()
	cl := newKgo(t, n, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer cl.Close()
	ctx := ctxTimeout(t, 30*time.Second)
	var recs []*kgo.Record
	for p := range partitions {
		for i := range perPartition {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "in-p%d-%d", p, i)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %s: %v", topic, err)
	}
}

// readIsolated reads topic from the start at an isolation level with kgo
// until every partition in want has returned want[p] records, and
// returns them (values per partition, in order).
func readIsolated(t *testing.T, n *node, topic string, committed bool, want map[int32]int) map[int32][]string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := newKgo(t, n, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[int32][]string{}
	done := func() bool {
		for p, w := range want {
			if len(got[p]) < w {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s (read_committed %v): timed out with %v", topic, committed, got)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("read %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got[r.Partition] = append(got[r.Partition], string(r.Value)) })
	}
	return got
}

// npmProject returns a directory holding testdata/kafkajs with its
// node_modules: testdata/kafkajs itself if `npm ci` was run there,
// otherwise a copy in a temporary directory where the test runs `npm ci`
// (package-lock.json pins kafkajs 2.2.4).
func npmProject(t *testing.T, npm string) string {
	t.Helper()
	src, err := filepath.Abs("testdata/kafkajs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "node_modules", "kafkajs", "package.json")); err == nil {
		return src
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "txn.js"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

// runJSONScript runs a client script and decodes the last line of its
// stdout into out; it fails the test on a non-zero exit, showing stderr.
func runJSONScript(t *testing.T, timeout time.Duration, dir string, out any, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	if jerr := json.Unmarshal([]byte(last), out); err != nil || jerr != nil {
		t.Fatalf("%s %s: exit %v (ctx %v), last line %q (%v)\nstderr:\n%s", name, strings.Join(args, " "), err, ctx.Err(), last, jerr, tail(stderr.Bytes(), 8192))
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("%s stderr:\n%s", filepath.Base(args[0]), tail(stderr.Bytes(), 4096))
	}
}

// txnClientResult is the JSON a client script prints last.
type txnClientResult struct {
	ReadCommitted   []txnRec `json:"readCommitted"`
	ReadUncommitted []txnRec `json:"readUncommitted"`
	CTP             struct {
		Transactions int `json:"transactions"`
		Processed    int `json:"processed"`
	} `json:"ctp"`
	Error *string `json:"error"`
}

// txnClientTopics are the topics and group a client script uses.
type txnClientTopics struct {
	topic, input, output, group string
	parts                       int32
	perInput                    int
}

// setup creates the topics and writes the input.
func (tt txnClientTopics) setup(t *testing.T, n *node) {
	t.Helper()
	adm, _ := newAdm(t, n)
	for _, tp := range []string{tt.topic, tt.input, tt.output} {
		createTopic(t, adm, tp, tt.parts, nil)
	}
	produceInput(t, n, tt.input, tt.parts, tt.perInput)
}

// config is the script's JSON argument.
func (tt txnClientTopics) config(bootstrap string) string {
	b, _ := json.Marshal(map[string]any{
		"bootstrap": bootstrap, "brokers": []string{bootstrap},
		"topic": tt.topic, "input": tt.input, "output": tt.output, "group": tt.group,
		"partitions": tt.parts, "inputPerPartition": tt.perInput,
	})
	return string(b)
}

// check asserts what a script read and wrote: per partition of the topic,
// c1 at offsets 0-9, its COMMIT at 10, a2 at 11-20, its ABORT at 21, the
// sentinel at 22; read_committed returns c1 and the sentinel,
// read_uncommitted a2 too. The consume-transform-produce output holds
// every input record transformed exactly once under read_committed (and
// the aborted "bogus" first in partition 0 under read_uncommitted), and
// the group's committed offsets are the input's end offsets.
func (tt txnClientTopics) check(t *testing.T, n *node, who string, res txnClientResult) {
	t.Helper()
	if res.Error != nil {
		t.Fatalf("%s script: %s", who, *res.Error)
	}
	rc, ru := map[int32][]txnRec{}, map[int32][]txnRec{}
	for p := range tt.parts {
		rc[p] = txnWant(p, txnRun{"c1", 10, 0}, txnRun{"end", 1, 22})
		ru[p] = txnWant(p, txnRun{"c1", 10, 0}, txnRun{"a2", 10, 11}, txnRun{"end", 1, 22})
	}
	sameTxnRecs(t, who+" read_committed", res.ReadCommitted, rc)
	sameTxnRecs(t, who+" read_uncommitted", res.ReadUncommitted, ru)

	total := int(tt.parts) * tt.perInput
	if res.CTP.Processed != total {
		t.Errorf("%s consume-transform-produce processed %d records, want %d", who, res.CTP.Processed, total)
	}
	t.Logf("%s consume-transform-produce: %d records in %d transactions", who, res.CTP.Processed, res.CTP.Transactions)
	want := map[int32][]string{}
	wantN := map[int32]int{}
	for p := range tt.parts {
		for i := range tt.perInput {
			want[p] = append(want[p], fmt.Sprintf("out-in-p%d-%d", p, i))
		}
		wantN[p] = tt.perInput
	}
	if got := readIsolated(t, n, tt.output, true, wantN); !mapsEqualSlices(got, want) {
		t.Errorf("%s output read_committed:\n got %v\nwant %v", who, got, want)
	}
	wantN[0]++
	want[0] = append([]string{"bogus"}, want[0]...)
	if got := readIsolated(t, n, tt.output, false, wantN); !mapsEqualSlices(got, want) {
		t.Errorf("%s output read_uncommitted:\n got %v\nwant %v", who, got, want)
	}
	adm, _ := newAdm(t, n)
	waitFor(t, 15*time.Second, "the group's transactional offsets", func() (bool, string) {
		com := committedOffsets(t, adm, tt.group, tt.input)
		ok := len(com) == int(tt.parts)
		for p := range tt.parts {
			ok = ok && com[p] == int64(tt.perInput)
		}
		return ok, fmt.Sprint(com)
	})
}

// TestTxnKafkajs: kafkajs 2.2.4 (testdata/kafkajs/txn.js): a
// transactional producer (idempotent, maxInFlightRequests 1) commits a
// transaction over 3 partitions, aborts one, and commits a sentinel per
// partition; its readUncommitted:false consumer reads exactly the
// committed records at their offsets, its readUncommitted:true consumer
// the aborted ones too. Then consume-transform-produce with sendOffsets:
// an aborted transaction's output and offsets stay invisible, every input
// record is transformed exactly once (read_committed), and the group's
// committed offsets are the input's end offsets.
func TestTxnKafkajs(t *testing.T) {
	node := requireTool(t, "node")
	npm := requireTool(t, "npm")
	done := cardSetup(t, "kafkajs 2.2.4")
	dir := npmProject(t, npm)
	n := startTusk(t, withFlag("groups-initial-rebalance-delay", "100ms"))
	tt := txnClientTopics{topic: "kjs-txn", input: "kjs-in", output: "kjs-out", group: "kjs-ctp", parts: 3, perInput: 20}
	tt.setup(t, n)
	done()
	card(t, "kafkajs 2.2.4", "transactional producer commit/abort, readUncommitted:false consumer, sendOffsets consume-transform-produce")
	var res txnClientResult
	runJSONScript(t, 4*time.Minute, dir, &res, node, "txn.js", tt.config(n.Kafka))
	tt.check(t, n, "kafkajs", res)
}

// TestTxnConfluent: librdkafka through confluent-kafka-python
// (testdata/confluent_txn.py), the same scenario as TestTxnKafkajs:
// init_transactions, commit and abort over 3 partitions, consumers with
// isolation.level read_committed and read_uncommitted, and
// consume-transform-produce with send_offsets_to_transaction (the
// consumer's group metadata: TxnOffsetCommit with its generation and
// member id).
func TestTxnConfluent(t *testing.T) {
	py := requirePythonModule(t, "confluent_kafka", "python3-confluent-kafka")
	done := cardSetup(t, "confluent-kafka-python (librdkafka)")
	n := startTusk(t, withFlag("groups-initial-rebalance-delay", "100ms"))
	tt := txnClientTopics{topic: "cf-txn", input: "cf-in", output: "cf-out", group: "cf-ctp", parts: 3, perInput: 20}
	tt.setup(t, n)
	done()
	card(t, "confluent-kafka-python (librdkafka)", "transactional producer commit/abort, read_committed consumer, send_offsets_to_transaction consume-transform-produce")
	var res txnClientResult
	runJSONScript(t, 4*time.Minute, ".", &res, py, "testdata/confluent_txn.py", tt.config(n.Kafka))
	tt.check(t, n, "confluent-kafka-python", res)
}

func mapsEqualSlices(a, b map[int32][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestTxnKcat: kgo writes a committed, an aborted and a committed
// transaction over 2 partitions; once the markers are in (ListOffsets
// read_committed = the end offset), `kcat -C -e` with
// `-X isolation.level=read_committed` prints exactly the committed
// records at their offsets, and with read_uncommitted the aborted ones
// too.
func TestTxnKcat(t *testing.T) {
	kcat := requireTool(t, "kcat")
	done := cardSetup(t, "kcat")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	const topic, parts = "kcat-txn", 2
	createTopic(t, adm, topic, parts, nil)
	done()
	card(t, "kcat", "-X isolation.level=read_committed / read_uncommitted of kgo transactions")

	ctx := ctxTimeout(t, 60*time.Second)
	prod := newKgo(t, n, kgo.TransactionalID("kcat-txn-producer"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	txn := func(commit bool, values func(p int32) []string) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for p := range int32(parts) {
			for _, v := range values(p) {
				recs = append(recs, &kgo.Record{Partition: p, Value: []byte(v)})
			}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit %v): %v", commit, err)
		}
	}
	tagged := func(tag string) func(p int32) []string {
		return func(p int32) []string {
			var out []string
			for i := range 5 {
				out = append(out, fmt.Sprintf("%s-p%d-%d", tag, p, i))
			}
			return out
		}
	}
	txn(true, tagged("c1"))
	txn(false, tagged("a2"))
	txn(true, func(p int32) []string { return []string{fmt.Sprintf("end-p%d", p)} })
	// Per partition: c1 at 0-4, COMMIT at 5, a2 at 6-10, ABORT at 11,
	// the sentinel at 12, COMMIT at 13.
	waitFor(t, 15*time.Second, "every marker written (read_committed end = log end)", func() (bool, string) {
		lo, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		ok := true
		lo.Each(func(o kadm.ListedOffset) { ok = ok && o.Err == nil && o.Offset == 14 })
		return ok && len(lo[topic]) == parts, fmt.Sprint(lo[topic])
	})

	read := func(isolation string) []txnRec {
		t.Helper()
		out, _ := runTool(t, nil, kcat, "-b", n.Kafka, "-X", "api.version.request=true", "-X", "isolation.level="+isolation,
			"-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", `%p %o %s\n`)
		var recs []txnRec
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r txnRec
			if _, err := fmt.Sscanf(line, "%d %d %s", &r.P, &r.O, &r.V); err != nil {
				t.Fatalf("kcat %s: line %q: %v\n%s", isolation, line, err, out)
			}
			recs = append(recs, r)
		}
		return recs
	}
	rc, ru := map[int32][]txnRec{}, map[int32][]txnRec{}
	for p := range int32(parts) {
		rc[p] = txnWant(p, txnRun{"c1", 5, 0}, txnRun{"end", 1, 12})
		ru[p] = txnWant(p, txnRun{"c1", 5, 0}, txnRun{"a2", 5, 6}, txnRun{"end", 1, 12})
	}
	sameTxnRecs(t, "kcat read_committed", read("read_committed"), rc)
	sameTxnRecs(t, "kcat read_uncommitted", read("read_uncommitted"), ru)
}

// TestTxnReadmeAPIVersions: the README's "Supported Kafka APIs" table
// lists each transaction API (and FindCoordinator, InitProducerId,
// DescribeProducers) with exactly the versions ApiVersions advertises.
func TestTxnReadmeAPIVersions(t *testing.T) {
	card(t, "kadm ApiVersions", "README API table: transaction API versions as advertised")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	vs, err := adm.ApiVersions(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var bv kadm.BrokerApiVersions
	vs.Each(func(v kadm.BrokerApiVersions) { bv = v })
	if bv.Err != nil {
		t.Fatalf("ApiVersions: %v", bv.Err)
	}
	rows := map[int16]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 5 {
			continue
		}
		var key int16
		if _, err := fmt.Sscanf(strings.TrimSpace(f[2]), "%d", &key); err == nil {
			rows[key] = strings.TrimSpace(f[1]) + " " + strings.TrimSpace(f[3])
		}
	}
	for _, key := range []kmsg.Key{kmsg.FindCoordinator, kmsg.InitProducerID, kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn,
		kmsg.EndTxn, kmsg.WriteTxnMarkers, kmsg.TxnOffsetCommit, kmsg.DescribeProducers, kmsg.DescribeTransactions, kmsg.ListTransactions} {
		lo, hi, ok := bv.KeyVersions(int16(key))
		if !ok {
			t.Errorf("ApiVersions does not advertise %s", kmsg.NameForKey(int16(key)))
			continue
		}
		want := kmsg.NameForKey(int16(key)) + " " + fmt.Sprintf("%d–%d", lo, hi)
		if lo == hi {
			want = kmsg.NameForKey(int16(key)) + " " + fmt.Sprint(lo)
		}
		// Kafka spells it InitProducerId, kmsg InitProducerID.
		if got := rows[int16(key)]; !strings.EqualFold(got, want) {
			t.Errorf("README row of key %d: %q, ApiVersions: %q", key, got, want)
		} else {
			t.Logf("%s", got)
		}
	}
}
