package compat

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Exactly-once (issue 13, docs/transactions.md): franz-go's
// GroupTransactSession consume-transform-produce loop copies every input
// record "rec-<n>" to an output topic while one member's process is
// killed with SIGKILL in the middle of a transaction (and, on a cluster, a
// segment leader too). Each output record is keyed "<transactional
// id>.<incarnation>/<round>", so the test knows which transaction wrote it; a member
// reports every round it ended (committed or aborted, with the values it
// produced), and the output is checked exactly against the rounds:
// read_committed holds precisely the committed rounds' records (every
// input once), read_uncommitted every round's.

// eosMember is the configuration of one session member; a member run in a
// child process gets it as JSON in TUSK_EOS_MEMBER.
type eosMember struct {
	Seeds          []string      `json:"seeds"`
	TxnID          string        `json:"txn_id"`
	Incarnation    int           `json:"incarnation"` // a new process with the same transactional id counts up
	Group          string        `json:"group"`
	In             string        `json:"in"`
	Out            string        `json:"out"`
	AbortRounds    []int         `json:"abort_rounds"`    // rounds aborted after their records reached the partitions
	HangAfter      int           `json:"hang_after"`      // once it committed this many records, the member flushes its next round and stops inside that transaction (-1: never)
	TxnTimeout     time.Duration `json:"txn_timeout"`     // transaction.timeout.ms
	SessionTimeout time.Duration `json:"session_timeout"` // the group session timeout
	FetchBytes     int32         `json:"fetch_bytes"`     // per partition, so rounds are small
}

// eosRound is one transaction of a member as the member saw it end.
type eosRound struct {
	TxnID       string   `json:"txn_id"`
	Incarnation int      `json:"incarnation"`
	Round       int      `json:"round"`
	Outcome     string   `json:"outcome"`           // committed, aborted, hung (flushed, never ended: the member is killed) or unknown (End failed)
	EndErr      string   `json:"end_err,omitempty"` // why End failed (outcome unknown)
	Values      []string `json:"values"`            // what the round produced (key TxnID/Round)
	Err         string   `json:"err,omitempty"`
}

func (r eosRound) key() string { return fmt.Sprintf("%s.%d/%d", r.TxnID, r.Incarnation, r.Round) }

// runEOSMember runs the consume-transform-produce loop until stop() is
// true between two rounds (a round in progress is ended first) or until
// its hang round (m.HangAfter). It reports every round it ended.
func runEOSMember(ctx context.Context, m eosMember, stop func() bool, report func(eosRound)) error {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(m.Seeds...), kgo.ClientID("tusk-compat-eos-"+m.TxnID), kgo.RetryTimeout(60*time.Second),
		kgo.TransactionalID(m.TxnID), kgo.TransactionTimeout(m.TxnTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumerGroup(m.Group), kgo.ConsumeTopics(m.In),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(m.SessionTimeout),
		kgo.FetchMaxPartitionBytes(m.FetchBytes), kgo.FetchMaxBytes(3*m.FetchBytes), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(m.Out),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // uncompressed: the output rolls its segments
	if err != nil {
		return fmt.Errorf("eos member %s: new session: %w", m.TxnID, err)
	}
	defer sess.Close()
	committedRecs, endErrs := 0, 0
	for round := 0; !stop(); {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sess.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("eos member %s: round %d: %w", m.TxnID, round, ctx.Err())
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return fmt.Errorf("eos member %s: round %d: %w", m.TxnID, round, ferr)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("eos member %s: round %d: begin: %w", m.TxnID, round, err)
		}
		r := eosRound{TxnID: m.TxnID, Incarnation: m.Incarnation, Round: round}
		var mu sync.Mutex // guards r.Err
		fs.EachRecord(func(in *kgo.Record) {
			r.Values = append(r.Values, string(in.Value))
			sess.Produce(ctx, &kgo.Record{Partition: in.Partition, Key: []byte(r.key()), Value: in.Value}, func(_ *kgo.Record, err error) {
				if err != nil && !errors.Is(err, kgo.ErrAborting) {
					mu.Lock()
					if r.Err == "" {
						r.Err = "produce: " + err.Error()
					}
					mu.Unlock()
				}
			})
		})
		abort := slices.Contains(m.AbortRounds, round)
		hang := m.HangAfter >= 0 && committedRecs >= m.HangAfter
		if abort || hang {
			// The records reach the partitions inside the transaction.
			if err := sess.Client().Flush(ctx); err != nil {
				return fmt.Errorf("eos member %s: round %d: flush: %w", m.TxnID, round, err)
			}
		}
		if hang {
			r.Outcome = "hung"
			report(r)
			<-ctx.Done() // the test kills the process now
			return nil
		}
		commit := kgo.TryCommit
		if abort {
			commit = kgo.TryAbort
		}
		committed, err := sess.End(ctx, commit)
		if err != nil {
			// End can fail (e.g. TxnOffsetCommit could not reach a
			// group coordinator that was just killed). kgo then tries
			// to abort and rewinds the session to the committed
			// offsets, and an application goes on: the round's fate is
			// not known to the member, but it is all or nothing, which
			// eosVerify checks.
			if ctx.Err() != nil || endErrs >= 20 {
				return fmt.Errorf("eos member %s: round %d: end (commit %v), failure %d: %w", m.TxnID, round, bool(commit), endErrs+1, err)
			}
			endErrs++
			r.Outcome, r.EndErr = "unknown", err.Error()
			mu.Lock()
			report(r)
			mu.Unlock()
			round++
			continue
		}
		r.Outcome = "aborted"
		if committed {
			r.Outcome = "committed"
			committedRecs += len(r.Values)
		}
		mu.Lock()
		report(r)
		mu.Unlock()
		round++
	}
	return nil
}

// TestTxnEOSMemberProcess is the child process side of a killed member
// (it does nothing unless TUSK_EOS_MEMBER is set): it runs runEOSMember
// and prints each round as an "eos-round <json>" line; it stops between
// rounds once its stdin is closed.
func TestTxnEOSMemberProcess(t *testing.T) {
	spec := os.Getenv("TUSK_EOS_MEMBER")
	if spec == "" {
		t.Skip("the child process of the exactly-once tests (TUSK_EOS_MEMBER)")
	}
	var m eosMember
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		t.Fatalf("TUSK_EOS_MEMBER: %v", err)
	}
	var stopped atomic.Bool
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stopped.Store(true)
	}()
	var outMu sync.Mutex
	err := runEOSMember(context.Background(), m, stopped.Load, func(r eosRound) {
		b, err := json.Marshal(r)
		if err != nil {
			panic(err)
		}
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf("eos-round %s\n", b)
	})
	if err != nil {
		fmt.Printf("eos-error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(3)
	}
}

// eosChild is a member running in a child process (this test binary).
type eosChild struct {
	m       eosMember
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	done    chan struct{} // closed once the process exited and its output was read
	errMsg  atomic.Value  // string: an eos-error line
}

// startEOSChild starts member m in a child process; its rounds go to rounds.
func startEOSChild(t *testing.T, m eosMember, rounds *eosRounds) *eosChild {
	t.Helper()
	spec, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c := &eosChild{m: m, done: make(chan struct{}), logPath: filepath.Join(t.TempDir(), "member.log")}
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestTxnEOSMemberProcess$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), "TUSK_EOS_MEMBER="+string(spec))
	c.cmd.Stderr = logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start member %s: %v", m.TxnID, err)
	}
	go func() {
		defer close(c.done)
		defer logf.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "eos-round "):
				var r eosRound
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "eos-round ")), &r); err != nil {
					c.errMsg.Store("bad round line: " + err.Error())
					continue
				}
				rounds.add(r)
			case strings.HasPrefix(line, "eos-error "):
				c.errMsg.Store(strings.TrimPrefix(line, "eos-error "))
			default:
				fmt.Fprintln(logf, line)
			}
		}
		_ = c.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			b, _ := os.ReadFile(c.logPath)
			t.Logf("---- member %s (child process) output ----\n%s\n---- end ----", m.TxnID, tail(b, 8<<10))
		}
	})
	return c
}

// kill9 kills the member's process with SIGKILL.
func (c *eosChild) kill9(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("member %s did not die after SIGKILL", c.m.TxnID)
	}
}

// stop closes the member's stdin (it ends its round and leaves the group)
// and waits for a clean exit.
func (c *eosChild) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("member %s did not stop within %v of its stop", c.m.TxnID, timeout)
	}
	if msg, _ := c.errMsg.Load().(string); msg != "" {
		t.Fatalf("member %s: %s", c.m.TxnID, msg)
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("member %s exited with code %d", c.m.TxnID, code)
	}
}

// eosRounds collects every member's rounds.
type eosRounds struct {
	mu     sync.Mutex // guards rounds and hung
	rounds []eosRound
	hung   chan eosRound // the first hung round
}

func newEOSRounds() *eosRounds { return &eosRounds{hung: make(chan eosRound, 1)} }

func (rs *eosRounds) add(r eosRound) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.rounds = append(rs.rounds, r)
	if r.Outcome == "hung" {
		select {
		case rs.hung <- r:
		default:
		}
	}
}

func (rs *eosRounds) all() []eosRound {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.rounds)
}

// committed is how many records committed rounds hold.
func (rs *eosRounds) committed() int {
	n := 0
	for _, r := range rs.all() {
		if r.Outcome == "committed" {
			n += len(r.Values)
		}
	}
	return n
}

// eosProduceInput writes "rec-<i>" for i < n to partition i%3 of topic
// (idempotent, acks=all, uncompressed batches of at most 2 KiB, so that
// the members' small fetches make many rounds).
func eosProduceInput(t *testing.T, seeds []string, topic string, n int) {
	t.Helper()
	cl := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(2<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(60*time.Second))
	defer cl.Close()
	ctx := ctxTimeout(t, 120*time.Second)
	var failed atomic.Int64
	var first atomic.Value
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte(fmt.Sprintf("rec-%d", i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce the input: %v", err)
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("produce the input: %d of %d records failed, first: %v", f, n, first.Load())
	}
}

// eosWaitConsumed polls the group's committed offsets of the input until
// they reach its end offsets (every input record consumed in a committed
// transaction).
func eosWaitConsumed(t *testing.T, adm *kadm.Client, group, in string, timeout time.Duration, progress func() string) {
	t.Helper()
	ctx := ctxTimeout(t, timeout+30*time.Second)
	var ends kadm.ListedOffsets
	waitFor(t, 30*time.Second, "input end offsets", func() (bool, string) {
		var err error
		ends, err = adm.ListEndOffsets(ctx, in)
		if err == nil {
			err = ends.Error()
		}
		return err == nil, fmt.Sprint(err)
	})
	waitFor(t, timeout, "the group committed the input's end offsets", func() (bool, string) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got, err := adm.FetchOffsets(qctx, group)
		if err == nil {
			err = got.Error()
		}
		if err != nil {
			return false, err.Error() + "; " + progress()
		}
		var lag []string
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := got.Lookup(in, o.Partition)
			if !ok || c.At != o.Offset {
				lag = append(lag, fmt.Sprintf("%d: %d of %d", o.Partition, c.At, o.Offset))
			}
		})
		return len(lag) == 0, strings.Join(lag, ", ") + "; " + progress()
	})
}

// eosVerify reads the output topic with read_committed and
// read_uncommitted and checks it against the rounds: read_committed holds
// exactly the committed rounds' records (every "rec-<i>", i < n, once),
// read_uncommitted every round's. A plain record "end" written to each
// partition after the members stopped marks where to stop reading (under
// read_committed it is readable once every transaction before it ended).
// It returns the number of records of aborted and hung rounds.
func eosVerify(t *testing.T, seeds []string, out string, parts int32, n int, rounds []eosRound, timeout time.Duration) int {
	t.Helper()
	ctx := ctxTimeout(t, timeout+30*time.Second)
	{
		cl := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for p := int32(0); p < parts; p++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: out, Partition: p, Value: []byte("end")}).FirstErr(); err != nil {
				t.Fatalf("produce the end mark to %s/%d: %v", out, p, err)
			}
		}
		cl.Close()
	}
	read := func(level kgo.IsolationLevel) map[string][]string {
		t.Helper()
		cl := newClusterClient(t, seeds, kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(level), kgo.FetchMaxWait(200*time.Millisecond))
		defer cl.Close()
		byKey := map[string][]string{}
		ended := map[int32]bool{}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for len(ended) < int(parts) {
			fs := cl.PollFetches(rctx)
			if rctx.Err() != nil {
				t.Fatalf("read %s: the end marks of %d of %d partitions within %v", out, len(ended), parts, timeout)
			}
			fs.EachError(func(topic string, p int32, err error) { t.Fatalf("read %s/%d: %v", topic, p, err) })
			fs.EachRecord(func(r *kgo.Record) {
				switch {
				case ended[r.Partition]:
					t.Fatalf("read %s/%d: record %q at %d after the end mark", out, r.Partition, r.Value, r.Offset)
				case string(r.Value) == "end" && len(r.Key) == 0:
					ended[r.Partition] = true
				default:
					byKey[string(r.Key)] = append(byKey[string(r.Key)], string(r.Value))
				}
			})
		}
		for _, vs := range byKey {
			sort.Strings(vs)
		}
		return byKey
	}
	wantCommitted, wantAll := map[string][]string{}, map[string][]string{}
	aborted := 0
	for _, r := range rounds {
		if r.Err != "" {
			t.Fatalf("round %s (%s): %s", r.key(), r.Outcome, r.Err)
		}
		vs := slices.Clone(r.Values)
		sort.Strings(vs)
		if _, dup := wantAll[r.key()]; dup {
			t.Fatalf("round %s reported twice", r.key())
		}
		wantAll[r.key()] = vs
		if r.Outcome == "committed" {
			wantCommitted[r.key()] = vs
		} else if r.Outcome != "unknown" {
			aborted += len(vs)
		}
	}
	committed := read(kgo.ReadCommitted())
	// A round whose End failed committed all of its records or none.
	for _, r := range rounds {
		if r.Outcome != "unknown" {
			continue
		}
		if _, ok := committed[r.key()]; ok {
			wantCommitted[r.key()] = wantAll[r.key()]
			t.Logf("round %s: End failed (%s) and it committed", r.key(), r.EndErr)
		} else {
			aborted += len(r.Values)
			t.Logf("round %s: End failed (%s) and it aborted", r.key(), r.EndErr)
		}
	}
	seen := map[string]int{}
	total := 0
	for _, vs := range committed {
		for _, v := range vs {
			seen[v]++
			total++
		}
	}
	for i := 0; i < n; i++ {
		if c := seen[fmt.Sprintf("rec-%d", i)]; c != 1 {
			t.Errorf("read_committed: rec-%d appears %d times, want once", i, c)
		}
	}
	if total != n {
		t.Errorf("read_committed: %d records, want %d", total, n)
	}
	eosSameRounds(t, "read_committed", committed, wantCommitted)
	eosSameRounds(t, "read_uncommitted", read(kgo.ReadUncommitted()), wantAll)
	return aborted
}

// eosSameRounds compares what a read found per round key with the rounds.
func eosSameRounds(t *testing.T, label string, got, want map[string][]string) {
	t.Helper()
	var bad []string
	for k, w := range want {
		if g := got[k]; !slices.Equal(g, w) {
			bad = append(bad, fmt.Sprintf("%s: %d records, want %d", k, len(g), len(w)))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			bad = append(bad, fmt.Sprintf("%s: %d records of no such round", k, len(g)))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s differs from the members' rounds in %d rounds: %s", label, len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
}

// eosOutcomes counts rounds by outcome for the log.
func eosOutcomes(rounds []eosRound) string {
	c := map[string]int{}
	recs := map[string]int{}
	for _, r := range rounds {
		c[r.Outcome]++
		recs[r.Outcome] += len(r.Values)
	}
	return fmt.Sprintf("%d committed (%d records), %d aborted (%d records), %d hung (%d records), %d ended with an error (%d records)",
		c["committed"], recs["committed"], c["aborted"], recs["aborted"], c["hung"], recs["hung"], c["unknown"], recs["unknown"])
}

// eosLocalMember runs member m in this process until stop is set; the
// returned func waits for it and returns its error.
func eosLocalMember(m eosMember, rounds *eosRounds, stop *atomic.Bool) (wait func(timeout time.Duration) error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- runEOSMember(ctx, m, stop.Load, rounds.add) }()
	return func(timeout time.Duration) error {
		defer cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(timeout):
			cancel()
			return fmt.Errorf("member %s did not stop within %v", m.TxnID, timeout)
		}
	}
}

// TestTxnEOS: one node, 100k input records over 3 partitions, an output
// topic of 3 partitions rolling every 256 KiB. Two GroupTransactSession
// members: one in this process (it aborts its round 3 after flushing
// it), one in a child process that, once it committed a quarter of the
// input, flushes a round and is killed with SIGKILL inside that
// transaction; the coordinator aborts the dead
// member's transaction at its timeout and the group gives its partitions
// to the survivor. read_committed: every input exactly once, exactly the
// committed rounds; read_uncommitted: every round, the aborted and the
// killed one included.
func TestTxnEOS(t *testing.T) {
	if kfakeMode() {
		t.Skip("kfake")
	}
	n := startTusk(t, withFlag("groups-initial-rebalance-delay", "0"))
	card(t, "franz-go kgo GroupTransactSession", "1 node: consume-transform-produce 100k records, a member killed -9 mid-transaction: exactly once under read_committed")
	const in, out, group, total = "eos-in", "eos-out", "eos-group", 100_000
	adm, _ := newAdm(t, n)
	createTopic(t, adm, in, 3, nil)
	createTopic(t, adm, out, 3, map[string]*string{"segment.bytes": strp(fmt.Sprint(256 << 10))})
	seeds := []string{n.Kafka}
	began := time.Now()
	eosProduceInput(t, seeds, in, total)
	t.Logf("measure: produced %d input records in %v", total, time.Since(began).Round(time.Millisecond))

	rounds := newEOSRounds()
	base := eosMember{Seeds: seeds, Group: group, In: in, Out: out, HangAfter: -1,
		TxnTimeout: 5 * time.Second, SessionTimeout: 6 * time.Second, FetchBytes: 4 << 10}
	child := base
	child.TxnID, child.HangAfter = "eos-child", total/4
	local := base
	local.TxnID, local.AbortRounds, local.TxnTimeout = "eos-local", []int{3}, 60*time.Second
	var stop atomic.Bool
	wait := eosLocalMember(local, rounds, &stop)
	kid := startEOSChild(t, child, rounds)
	select {
	case r := <-rounds.hung:
		kid.kill9(t)
		t.Logf("killed member %s with SIGKILL inside round %d (%d records flushed); %d committed records so far", r.TxnID, r.Round, len(r.Values), rounds.committed())
	case <-time.After(60 * time.Second):
		stop.Store(true)
		t.Fatalf("member %s never committed %d records: %s", child.TxnID, child.HangAfter, eosOutcomes(rounds.all()))
	}
	eosWaitConsumed(t, adm, group, in, 120*time.Second, func() string { return eosOutcomes(rounds.all()) })
	stop.Store(true)
	if err := wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	all := rounds.all()
	t.Logf("measure: %d input records copied in %v: %s", total, time.Since(began).Round(time.Millisecond), eosOutcomes(all))
	aborted := eosVerify(t, seeds, out, 3, total, all, 60*time.Second)
	if !slices.ContainsFunc(all, func(r eosRound) bool {
		return r.TxnID == local.TxnID && r.Round == 3 && r.Outcome == "aborted" && len(r.Values) > 0
	}) {
		t.Errorf("no aborted round 3 with records from %s: %s", local.TxnID, eosOutcomes(all))
	}
	if aborted == 0 {
		t.Errorf("no aborted records to check against read_uncommitted")
	}
}

// TestTxnZombieFenced: a transactional producer (the zombie) writes
// records in a transaction; a new instance with the same transactional id
// initializes (the coordinator bumps the epoch and aborts the zombie's
// transaction) and commits its own. The zombie's commit then fails with
// PRODUCER_FENCED, and its records stay invisible to read_committed while
// read_uncommitted sees them.
func TestTxnZombieFenced(t *testing.T) {
	if kfakeMode() {
		t.Skip("kfake")
	}
	n := startTusk(t)
	card(t, "franz-go kgo transactional producer", "1 node: a fenced zombie producer cannot commit; aborted records only under read_uncommitted")
	const topic, T = "zombie", "zombie-txn"
	adm, _ := newAdm(t, n)
	createTopic(t, adm, topic, 1, nil)
	ctx := ctxTimeout(t, 60*time.Second)
	newProducer := func() *kgo.Client {
		return newKgo(t, n, kgo.TransactionalID(T), kgo.DefaultProduceTopic(topic), kgo.TransactionTimeout(60*time.Second))
	}
	produce := func(cl *kgo.Client, tag string) []string {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("%s: begin: %v", tag, err)
		}
		var vs []string
		for i := 0; i < 5; i++ {
			v := fmt.Sprintf("%s-%d", tag, i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("%s: produce: %v", tag, err)
			}
			vs = append(vs, v)
		}
		return vs
	}
	zombie := newProducer()
	zv := produce(zombie, "zombie")
	fresh := newProducer()
	fv := produce(fresh, "fresh")
	if err := fresh.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("the new instance's commit: %v", err)
	}
	err := zombie.EndTransaction(ctx, kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the zombie's commit: %v, want PRODUCER_FENCED", err)
	}
	read := func(level kgo.IsolationLevel, want []string) {
		t.Helper()
		cl := newKgo(t, n, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(level))
		defer cl.Close()
		var got []string
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for len(got) < len(want) {
			fs := cl.PollFetches(rctx)
			if rctx.Err() != nil {
				t.Fatalf("read %d of %d records: %v", len(got), len(want), got)
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		// A plain record after them ends the read exactly.
		if !slices.Equal(got, want) {
			t.Fatalf("read: %v, want %v", got, want)
		}
	}
	// The end mark: a plain record after both transactions.
	plain := newKgo(t, n, kgo.DefaultProduceTopic(topic))
	if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte("end")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	read(kgo.ReadCommitted(), append(slices.Clone(fv), "end"))
	read(kgo.ReadUncommitted(), append(append(slices.Clone(zv), fv...), "end"))
}

// TestClusterTxnEOS (make test-faults, or TUSK_LONG_FAULTS=1): the
// exactly-once loop on 3 nodes over 100k records, see clusterTxnEOS.
func TestClusterTxnEOS(t *testing.T) {
	if os.Getenv("TUSK_LONG_FAULTS") != "1" {
		t.Skip("long fault scenario: run with make test-faults (TUSK_LONG_FAULTS=1)")
	}
	clusterTxnEOS(t, 100_000)
}

// TestClusterTxnEOSShort is TestClusterTxnEOS over 10k records (make test).
func TestClusterTxnEOSShort(t *testing.T) {
	clusterTxnEOS(t, 10_000)
}

// clusterTxnEOS: 3 nodes, RF=3 input and output topics of 3 partitions
// rolling every 256 KiB (each roll moves the segment's leadership). Two
// GroupTransactSession members copy the input: one in this process, one
// in a child process that, once it committed an eighth of the input, is
// killed with SIGKILL inside a transaction (its records flushed) and
// replaced by a new process with the same transactional id (whose
// InitProducerId fences the dead one and aborts its transaction). With half of the input committed, the leader of the
// output partition 0's active segment is killed with SIGKILL; after 10%
// more it is restarted. read_committed: every input exactly once, exactly
// the committed rounds; read_uncommitted: every round.
func clusterTxnEOS(t *testing.T, total int) {
	const in, out, group = "eos-in", "eos-out", "eos-group"
	segs := map[string]*string{"segment.bytes": strp(fmt.Sprint(256 << 10))}
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo GroupTransactSession + kill -9",
		scenario: fmt.Sprintf("cluster: consume-transform-produce %dk records, a member and a segment leader killed -9: exactly once under read_committed", total/1000),
		env:      map[string]string{"TUSK_TRANSACTIONS_PARTITIONS": "5", "TUSK_GROUPS_INITIAL_REBALANCE_DELAY": "0"},
		topics:   []faultTopic{{name: in, partitions: 3, configs: segs}, {name: out, partitions: 3, configs: segs}},
	})
	seeds := c.kafkaAddrs(c.ids()...)
	began := time.Now()
	eosProduceInput(t, seeds, in, total)
	t.Logf("measure: produced %d input records in %v", total, time.Since(began).Round(time.Millisecond))

	rounds := newEOSRounds()
	base := eosMember{Seeds: seeds, Group: group, In: in, Out: out, HangAfter: -1,
		TxnTimeout: 60 * time.Second, SessionTimeout: scaled(t, 6*time.Second), FetchBytes: 4 << 10}
	child := base
	child.TxnID, child.HangAfter = "eos-child", total/8
	local := base
	local.TxnID, local.AbortRounds = "eos-local", []int{3}
	var stop atomic.Bool
	wait := eosLocalMember(local, rounds, &stop)
	defer stop.Store(true)
	kid := startEOSChild(t, child, rounds)
	select {
	case r := <-rounds.hung:
		kid.kill9(t)
		t.Logf("killed member %s with SIGKILL inside round %d (%d records flushed); %d committed records so far", r.TxnID, r.Round, len(r.Values), rounds.committed())
	case <-time.After(120 * time.Second):
		t.Fatalf("member %s never committed %d records: %s", child.TxnID, child.HangAfter, eosOutcomes(rounds.all()))
	}
	again := child
	again.HangAfter, again.Incarnation = -1, 1
	kid2 := startEOSChild(t, again, rounds)

	progress := func() string { return eosOutcomes(rounds.all()) }
	waitFor(t, 180*time.Second, "half of the input committed", func() (bool, string) {
		return rounds.committed() >= total/2, progress()
	})
	via := c.ids()[0]
	ss := c.segmentsVia(t, via, out, 0)
	if len(ss) == 0 {
		t.Fatalf("no segments of %s/0 in node %d's dump", out, via)
	}
	victim := ss[len(ss)-1].Leader
	c.node(victim).Kill9(t)
	killedAt := rounds.committed()
	t.Logf("killed node %d with SIGKILL, leader of %s/0's active segment %d (of %d); %d committed records so far", victim, out, ss[len(ss)-1].ID, len(ss), killedAt)
	// 10% more, or the rest: with the race build's timing the members may
	// have committed the whole input by the time the kill lands (seen
	// with the 10k variant), and no more can come.
	more := min(killedAt+total/10, total)
	if killedAt >= total {
		t.Logf("the whole input was committed before the kill landed")
	}
	waitFor(t, 180*time.Second, "10% more of the input (or the rest) committed without the killed node", func() (bool, string) {
		return rounds.committed() >= more, progress()
	})
	c.restartNodeSamePorts(t, victim)
	t.Logf("restarted node %d; %d committed records so far", victim, rounds.committed())

	eosWaitConsumed(t, adm, group, in, 300*time.Second, progress)
	stop.Store(true)
	kid2.stop(t, 60*time.Second)
	if err := wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	all := rounds.all()
	t.Logf("measure: %d input records copied in %v: %s", total, time.Since(began).Round(time.Millisecond), eosOutcomes(all))
	eosVerify(t, c.kafkaAddrs(c.ids()...), out, 3, total, all, 120*time.Second)
	if !slices.ContainsFunc(all, func(r eosRound) bool { return r.Outcome == "hung" && len(r.Values) > 0 }) {
		t.Errorf("no killed round with records: %s", eosOutcomes(all))
	}
	var leaders []int32
	final := c.segmentsVia(t, c.ids()[0], out, 0)
	for _, s := range final {
		if !slices.Contains(leaders, s.Leader) {
			leaders = append(leaders, s.Leader)
		}
	}
	t.Logf("%s/0: %d segments led by nodes %v", out, len(final), leaders)
	if total >= 100_000 && len(final) < 3 {
		t.Errorf("%s/0 has %d segments: the output did not rotate", out, len(final))
	}
}

// TestClusterTxnCoordinatorKillBeforeMarkers: the transaction coordinator
// is killed with SIGKILL after EndTxn was answered (PrepareCommit
// persisted) and provably before any marker: the nodes wait
// transactions.test-marker-delay before writing markers, and just before
// the kill DescribeTransactions shows PrepareCommit and every partition's
// read_committed end offset is still the transaction's first offset. The
// new coordinator completes the commit: each partition then holds exactly
// one control batch, a COMMIT with the new coordinator's epoch (a marker
// of the dead coordinator would be a second), and read_committed returns
// the transaction's records exactly once.
func TestClusterTxnCoordinatorKillBeforeMarkers(t *testing.T) {
	const topic, T = "txkb", "txkb-producer"
	parts := []int32{0, 1, 2}
	delay := scaled(t, 5*time.Second)
	c, adm := startFaultScenario(t, faultScenario{
		nodes: 3, client: "franz-go kgo transactional producer + kill -9",
		scenario: "cluster: transaction coordinator killed between EndTxn and the markers, the new one completes the commit",
		env:      map[string]string{"TUSK_TRANSACTIONS_PARTITIONS": "5", "TUSK_TRANSACTIONS_TEST_MARKER_DELAY": delay.String()},
		topics:   []faultTopic{{name: topic, partitions: int32(len(parts))}},
	})
	all := c.kafkaAddrs(c.ids()...)
	ctx := ctxTimeout(t, 180*time.Second)
	prod := newClusterClient(t, all, kgo.TransactionalID(T), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var values []string
	for i := 0; i < 60; i++ {
		v := fmt.Sprintf("first-%03d", i)
		if err := prod.ProduceSync(ctx, &kgo.Record{Partition: parts[i%len(parts)], Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
		values = append(values, v)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	answered := time.Now()
	prod.Close()
	var coord int32 = -1
	adm.FindTxnCoordinators(ctx, T).Each(func(d kadm.FindCoordinatorResponse) {
		if d.Err == nil {
			coord = d.NodeID
		}
	})
	if coord < 0 {
		t.Fatal("FindCoordinator key type 1: no coordinator")
	}
	ds, err := adm.DescribeTransactions(ctx, T)
	if err != nil {
		t.Fatal(err)
	}
	if d := ds[T]; d.Err != nil || d.State != "PrepareCommit" {
		t.Fatalf("before the kill: DescribeTransactions %s: state %q (%v), want PrepareCommit", T, d.State, d.Err)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if o, _ := lso.Lookup(topic, p); o.Offset != 0 {
			t.Fatalf("before the kill: %s/%d read_committed end offset %d, want 0 (no marker yet)", topic, p, o.Offset)
		}
	}
	if since := time.Since(answered); since > delay/2 {
		t.Fatalf("the checks took %v after EndTxn, too close to the %v marker delay to prove the window", since, delay)
	}
	c.node(coord).Kill9(t)
	killed := time.Now()
	t.Logf("killed the transaction coordinator, node %d, %v after EndTxn was answered (PrepareCommit, no marker)", coord, killed.Sub(answered).Round(time.Millisecond))
	var live []int32
	for _, id := range c.ids() {
		if id != coord {
			live = append(live, id)
		}
	}
	liveAddrs := c.kafkaAddrs(live...)
	ladm := kadm.NewClient(newClusterClient(t, liveAddrs))
	waitFor(t, 30*time.Second+delay, "the new coordinator completes the commit", func() (bool, string) {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		// Only once FindCoordinator names a live node: kgo caches the
		// coordinator a DescribeTransactions found and keeps dialling it.
		now := int32(-1)
		var ferr error
		ladm.FindTxnCoordinators(dctx, T).Each(func(d kadm.FindCoordinatorResponse) { now, ferr = d.NodeID, d.Err })
		if ferr != nil || now < 0 || now == coord {
			return false, fmt.Sprintf("coordinator %d (%v)", now, ferr)
		}
		ds, err := ladm.DescribeTransactions(dctx, T)
		if err != nil {
			return false, err.Error()
		}
		d := ds[T]
		if d.Err != nil {
			return false, d.Err.Error()
		}
		return d.State == "CompleteCommit", "state " + d.State
	})
	t.Logf("measure: the new coordinator completed the commit %v after the kill (marker delay %v)", time.Since(killed).Round(10*time.Millisecond), delay)

	// Every partition: one control batch, a COMMIT of the producer,
	// written by the new coordinator (one coordinator epoch for all).
	cl := newClusterClient(t, liveAddrs)
	epochs := map[int32]bool{}
	for _, p := range parts {
		markers := txnMarkersOf(t, ctx, cl, topic, p)
		if len(markers) != 1 || !markers[0].commit {
			t.Fatalf("%s/%d: markers %+v, want exactly one COMMIT", topic, p, markers)
		}
		epochs[markers[0].coordinatorEpoch] = true
	}
	if len(epochs) != 1 {
		t.Fatalf("the markers carry coordinator epochs %v, want one", epochs)
	}
	readValues := func(want []string) {
		t.Helper()
		rc := newClusterClient(t, liveAddrs, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
		defer rc.Close()
		var got []string
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for len(got) < len(want) {
			fs := rc.PollFetches(rctx)
			if rctx.Err() != nil {
				t.Fatalf("read_committed: %d of %d records", len(got), len(want))
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		sort.Strings(got)
		w := slices.Clone(want)
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Fatalf("read_committed: %v, want %v", got, w)
		}
	}
	// The end offsets are then committed: nothing beyond the values.
	lso, err = ladm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if o, _ := lso.Lookup(topic, p); o.Offset != int64(len(values)/len(parts))+1 {
			t.Fatalf("%s/%d: read_committed end offset %d, want %d (records and the marker)", topic, p, o.Offset, len(values)/len(parts)+1)
		}
	}
	readValues(values)

	// A second transaction through the new coordinator.
	prod2 := newClusterClient(t, liveAddrs, kgo.TransactionalID(T), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
	if err := prod2.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		v := fmt.Sprintf("second-%03d", i)
		if err := prod2.ProduceSync(ctx, &kgo.Record{Partition: parts[i%len(parts)], Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
		values = append(values, v)
	}
	if err := prod2.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("second commit: %v", err)
	}
	readValues(values)
}

// txnMarker is one COMMIT/ABORT control batch of a partition.
type txnMarker struct {
	offset           int64
	producerID       int64
	commit           bool
	coordinatorEpoch int32
}

// txnMarkersOf reads topic/p from its start to its end with raw Fetch
// requests (read_uncommitted) at the partition's leader and returns its
// control batches.
func txnMarkersOf(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, p int32) []txnMarker {
	t.Helper()
	var out []txnMarker
	deadline := time.Now().Add(30 * time.Second)
	for next := int64(0); ; {
		if time.Now().After(deadline) {
			t.Fatalf("raw fetch %s/%d: stuck at %d", topic, p, next)
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MaxBytes = 8 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.LogStartOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, next, -1, 8<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
		md, err := kadm.NewClient(cl).Metadata(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		rt.TopicID = md.Topics[topic].ID // Fetch v13+ names topics by id
		req.Topics = append(req.Topics, rt)
		leader := md.Topics[topic].Partitions[p].Leader
		resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
		if err != nil {
			t.Fatalf("raw fetch %s/%d@%d from node %d: %v", topic, p, next, leader, err)
		}
		fp := resp.Topics[0].Partitions[0]
		if fp.ErrorCode != 0 {
			t.Fatalf("raw fetch %s/%d@%d from node %d: %v", topic, p, next, leader, kerr.ErrorForCode(fp.ErrorCode))
		}
		if next >= fp.HighWatermark {
			return out
		}
		for b := fp.RecordBatches; len(b) > 0; {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(b); err != nil || int(rb.Length)+12 > len(b) {
				break // a partial batch at the end
			}
			b = b[12+int(rb.Length):]
			if rb.Attributes&0x20 != 0 {
				var rec kmsg.Record
				var key kmsg.ControlRecordKey
				var val kmsg.EndTxnMarker
				if err := rec.ReadFrom(rb.Records); err != nil {
					t.Fatalf("%s/%d: control batch at %d: %v", topic, p, rb.FirstOffset, err)
				}
				if err := key.ReadFrom(rec.Key); err != nil {
					t.Fatalf("%s/%d: control key at %d: %v", topic, p, rb.FirstOffset, err)
				}
				if err := val.ReadFrom(rec.Value); err != nil {
					t.Fatalf("%s/%d: control value at %d: %v", topic, p, rb.FirstOffset, err)
				}
				out = append(out, txnMarker{offset: rb.FirstOffset, producerID: rb.ProducerID, commit: key.Type == kmsg.ControlRecordKeyTypeCommit, coordinatorEpoch: val.CoordinatorEpoch})
			}
			next = rb.FirstOffset + int64(rb.LastOffsetDelta) + 1
		}
	}
}
