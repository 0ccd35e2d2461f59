package compat

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	// quitTimeout is how long a node that outlived stopTimeout after
	// SIGTERM has to write its goroutine dump after SIGQUIT before it is
	// killed (forceStop).
	quitTimeout = 10 * time.Second
	// maxDump caps the goroutine dump a forced stop puts in the test's
	// output.
	maxDump = 4 << 20
)

// stopGrace is how long a node has to exit after SIGTERM before the
// harness takes its goroutine dump (SIGQUIT) and fails the test:
// stopTimeout, or TUSK_TEST_STOP_TIMEOUT (a Go duration) to catch slow
// shutdowns, e.g. 2s.
func stopGrace() time.Duration {
	if v := os.Getenv("TUSK_TEST_STOP_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return stopTimeout
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string

	raceOnce  sync.Once
	raceBuild bool // the binary under test is a race-detector build
	raceErr   error
)

func TestMain(m *testing.M) {
	if os.Getenv(hangHelperEnv) == "1" {
		hangHelper() // TestForcedStopDump's stand-in for a node that ignores SIGTERM
	}
	code := m.Run()
	printReportCard()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// kfakeMode reports whether the suite runs against the kfake stand-in.
func kfakeMode() bool { return os.Getenv("TUSK_COMPAT_KFAKE") == "1" }

// tuskBinary builds the binary once, lazily, so that `go test -run XXX`
// (compile check) never needs a working broker.
func tuskBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("TUSK_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		binDir, err = os.MkdirTemp("", "tusk-compat-bin-")
		if err != nil {
			binErr = err
			return
		}
		pkg := "./cmd/tusk"
		if kfakeMode() {
			pkg = "./compat-tests/internal/kfaketusk"
		}
		binPath = filepath.Join(binDir, "tusk")
		cmd := exec.Command("go", "build", "-o", binPath, pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("tusk binary: %v", binErr)
	}
	return binPath
}

// raceScale is the factor by which the fault scenarios stretch their
// lease, renewal and replica lag settings (and the bounds that follow from
// them): 3 for a race-detector build of tusk, which runs several times
// slower (TUSK_RACE=1, or the binary's build information says -race), so
// that on two cores a heartbeat is not late merely because of the
// detector; 1 otherwise.
func raceScale(t *testing.T) time.Duration {
	t.Helper()
	bin := tuskBinary(t)
	raceOnce.Do(func() {
		if os.Getenv("TUSK_RACE") == "1" {
			raceBuild = true
			return
		}
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			raceErr = fmt.Errorf("read build information of %s: %w", bin, err)
			return
		}
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				raceBuild = true
			}
		}
	})
	if raceErr != nil {
		t.Fatal(raceErr)
	}
	if raceBuild {
		return 3
	}
	return 1
}

// scaled is d × raceScale.
func scaled(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	return d * raceScale(t)
}

// raceReportMarker starts every report of Go's race detector.
const raceReportMarker = "WARNING: DATA RACE"

// checkRaceReports fails the test if a node's log holds a data race
// report (a race-detector build of tusk prints them to stderr, which goes
// to the log, and carries on). The error quotes the first report, since
// the log dump on failure may already have run.
func checkRaceReports(t *testing.T, n *node) {
	t.Helper()
	count, first, err := raceReports(n.LogPath)
	if errors.Is(err, os.ErrNotExist) {
		return // removed with the temporary directory of the subtest that launched it, which scanned it
	}
	if err != nil {
		t.Errorf("%s: %v", n.label(), err)
	}
	if count > 0 {
		t.Errorf("%s: %d data race report(s) in %s; the first:\n%s", n.label(), count, n.LogPath, first)
	}
}

// raceReports counts the race detector's reports in a log and returns the
// first one (from its WARNING line to the closing line of = signs, at most
// 200 lines).
func raceReports(logPath string) (count int, first string, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, "", fmt.Errorf("check log for race reports: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var lines []string
	inFirst := false
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, raceReportMarker) {
			count++
			inFirst = count == 1
		}
		if inFirst {
			if strings.HasPrefix(line, "==================") || len(lines) >= 200 {
				inFirst = false
				continue
			}
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return count, strings.Join(lines, "\n"), fmt.Errorf("check log %s for race reports: %w", logPath, err)
	}
	return count, strings.Join(lines, "\n"), nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above " + dir)
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// Node lifecycle

type startOpts struct {
	dataDir string
	args    []string
	env     []string
	name    string // label of the process in log dumps
	managed bool   // stopped (and checked for race reports) by its cluster's cleanup, not its own
	logTail int    // bytes of log dumped on failure (default 64 KiB)

	prefix []string // command run in front of the binary (e.g. ip netns exec NS)
	host   string   // listen host of the default listeners (default 127.0.0.1)
}

type startOpt func(*startOpts)

// withDataDir reuses an existing data directory (restarts).
func withDataDir(dir string) startOpt { return func(o *startOpts) { o.dataDir = dir } }

// withFlag appends `--name value` to the serve command line. A later
// occurrence of the same flag overrides an earlier one.
func withFlag(name, value string) startOpt {
	return func(o *startOpts) { o.args = append(o.args, "--"+name, value) }
}

// withName labels the process in log dumps (e.g. "node2").
func withName(name string) startOpt { return func(o *startOpts) { o.name = name } }

// withManagedStop leaves stopping the process to its owner (a cluster,
// which stops all its nodes at once); the per-process cleanup then only
// dumps the log on failure.
func withManagedStop() startOpt { return func(o *startOpts) { o.managed = true } }

// withLogTail sets how many bytes of the log are dumped on failure.
func withLogTail(n int) startOpt { return func(o *startOpts) { o.logTail = n } }

// withCommandPrefix runs the binary through a command that execs it (e.g.
// "ip", "netns", "exec", NS), so the process id is still tusk's.
func withCommandPrefix(args ...string) startOpt {
	return func(o *startOpts) { o.prefix = append([]string(nil), args...) }
}

// withListenHost binds the default Kafka and HTTP listeners (port 0) on
// host instead of 127.0.0.1; the ready file must report that host.
func withListenHost(host string) startOpt { return func(o *startOpts) { o.host = host } }

type readyInfo struct {
	NodeID   int32  `json:"node_id"`
	Kafka    string `json:"kafka"`
	HTTP     string `json:"http"`
	Internal string `json:"internal,omitempty"` // cluster nodes
	Raft     string `json:"raft,omitempty"`     // cluster nodes
	// Listeners maps each Kafka listener's name to its bound address
	// (--kafka-listeners; one PLAINTEXT entry without). Kafka is the
	// first listener's.
	Listeners map[string]string `json:"listeners,omitempty"`
}

// withListeners starts the node with --kafka-listeners spec (for example
// "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"); read the bound
// addresses with node.listener.
func withListeners(spec string) startOpt { return withFlag("kafka-listeners", spec) }

// listener is the bound address of the node's Kafka listener name.
func (n *node) listener(t *testing.T, name string) string {
	t.Helper()
	a, ok := n.Listeners[name]
	if !ok {
		t.Fatalf("%s has no listener %s (ready file listeners %v)", n.label(), name, n.Listeners)
	}
	return a
}

type node struct {
	readyInfo
	Name      string
	DataDir   string
	LogPath   string
	readyPath string
	started   time.Time

	listenHost string // what the ready file's Kafka address must start with

	opts    []startOpt
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	// exitedAt is when the process was seen to exit (set before done
	// is closed).
	exitedAt time.Time
	// quitAt is the log's size when forceStop sent SIGQUIT (-1: never):
	// the log printed at a failure stops there, as the goroutine dump
	// after it is in the stop's error.
	quitAt atomic.Int64
}

// startTusk launches `tusk serve` and waits until its ready file appears.
// Cleanup stops it with SIGTERM (failing the test if it needs SIGKILL) and
// dumps its log on failure.
func startTusk(t *testing.T, opts ...startOpt) *node {
	t.Helper()
	n, err := launchTusk(t, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.waitReady(time.Now().Add(readyTimeout)); err != nil {
		t.Fatal(err)
	}
	return n
}

// launchTusk starts `tusk serve` without waiting for it to become ready
// (see waitReady). Cluster nodes are launched together because a node may
// wait for its peers before it serves.
func launchTusk(t *testing.T, opts ...startOpt) (*node, error) {
	t.Helper()
	bin := tuskBinary(t)
	var o startOpts
	for _, opt := range opts {
		opt(&o)
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.logTail <= 0 {
		o.logTail = 64 << 10
	}
	runDir := t.TempDir()
	ready := filepath.Join(runDir, "ready.json")
	logPath := filepath.Join(runDir, "tusk.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	if o.host == "" {
		o.host = "127.0.0.1"
	}
	level := "info"
	if v := os.Getenv("TUSK_TEST_LOG_LEVEL"); v != "" {
		level = v // e.g. debug, to look into a failing scenario
	}
	args := []string{"serve",
		"--data-dir", o.dataDir,
		"--kafka-listen", net.JoinHostPort(o.host, "0"),
		"--http-listen", net.JoinHostPort(o.host, "0"),
		"--ready-file", ready,
		"--log-level", level,
	}
	args = append(args, o.args...)
	cmdline := append(append(append([]string(nil), o.prefix...), bin), args...)
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Pdeathsig: a test binary killed from outside (go test -timeout,
	// Ctrl-C) runs no cleanups; without it the nodes, in their own
	// process groups, would live on as orphans.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	n := &node{Name: o.name, DataDir: o.dataDir, listenHost: o.host, LogPath: logPath, readyPath: ready, opts: opts, cmd: cmd, done: make(chan struct{})}
	n.quitAt.Store(-1)
	label := o.name
	if label == "" {
		label = "tusk"
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if q := n.quitAt.Load(); q >= 0 && q <= int64(len(b)) {
				b = append(b[:q:q], "...[goroutine dump after SIGQUIT: in the stop's error]\n"...)
			}
			if len(b) > o.logTail {
				b = append([]byte("...[truncated]...\n"), b[len(b)-o.logTail:]...)
			}
			t.Logf("---- %s log %s (%s) ----\n%s\n---- end of %s log ----", label, strings.Join(args, " "), logPath, b, label)
		}
	})
	n.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start tusk: %v", err)
	}
	go func() {
		n.waitErr = cmd.Wait()
		n.exitedAt = time.Now()
		logf.Close()
		close(n.done)
	}()
	if !o.managed {
		t.Cleanup(func() {
			if err := n.stopQuietly(); err != nil {
				t.Error(err)
			}
			checkRaceReports(t, n)
		})
	} else {
		// A cluster scans its nodes' logs once they stopped; a node a
		// subtest launched is scanned here too, before the subtest's
		// temporary directory (and the log in it) is removed.
		t.Cleanup(func() { checkRaceReports(t, n) })
	}
	return n, nil
}

// errExitedEarly is returned by waitReady when the process died first.
var errExitedEarly = errors.New("tusk exited before becoming ready")

// waitReady polls the ready file until it holds a valid address set, the
// process exits, or the deadline passes.
func (n *node) waitReady(deadline time.Time) error {
	for {
		if b, err := os.ReadFile(n.readyPath); err == nil {
			var ri readyInfo
			if json.Unmarshal(b, &ri) == nil && ri.Kafka != "" {
				n.readyInfo = ri
				break
			}
		}
		if n.exited() {
			return fmt.Errorf("%s %w: %v", n.label(), errExitedEarly, n.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (no valid %s)", n.label(), time.Since(n.started).Round(time.Millisecond), n.readyPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	host := n.listenHost
	if host == "" {
		host = "127.0.0.1"
	}
	if !strings.HasPrefix(n.Kafka, host+":") || strings.HasSuffix(n.Kafka, ":0") {
		return fmt.Errorf("%s ready file kafka address %q: want %s:<bound port>", n.label(), n.Kafka, host)
	}
	return nil
}

func (n *node) label() string {
	if n.Name != "" {
		return n.Name
	}
	return "tusk"
}

// stopQuietly is the cleanup stop: SIGTERM, then SIGKILL after
// stopTimeout. It returns an error for an unclean or forced exit.
func (n *node) stopQuietly() error {
	if n.exited() {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if n.waitErr != nil {
			return fmt.Errorf("%s exited uncleanly on cleanup SIGTERM: %v", n.label(), n.waitErr)
		}
	case <-time.After(stopGrace()):
		n.sendQuit()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; %s", n.label(), stopGrace(), n.collectDump())
	}
	return nil
}

// sendQuit is the start of a forced stop of a node that outlived
// stopTimeout after SIGTERM: SIGQUIT (to its process group, as the
// command may run behind a prefix) makes the Go runtime write every
// goroutine's stack to the node's stderr, its log, and exit with code 2.
// collectDump waits for that and returns it.
func (n *node) sendQuit() {
	from := int64(0)
	if fi, err := os.Stat(n.LogPath); err == nil {
		from = fi.Size()
	}
	n.quitAt.Store(from)
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGQUIT)
}

// collectDump waits up to quitTimeout for the node to exit after
// sendQuit (SIGKILL then) and returns what it wrote to its log after
// SIGQUIT: the goroutine dump that shows what held the shutdown.
func (n *node) collectDump() string {
	killed := ""
	select {
	case <-n.done:
	case <-time.After(quitTimeout):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
		killed = fmt.Sprintf(" (still running %v after SIGQUIT: killed)", quitTimeout)
	}
	b, err := readLogFrom(n.LogPath, n.quitAt.Load())
	if err != nil {
		return fmt.Sprintf("SIGQUIT sent%s; its goroutine dump is lost: %v", killed, err)
	}
	return fmt.Sprintf("SIGQUIT sent%s; goroutine dump from %s:\n%s\n---- end of %s goroutine dump ----", killed, n.LogPath, b, n.label())
}

// readLogFrom reads a log from offset from on, at most maxDump bytes
// (the end is cut off past that).
func readLogFrom(path string, from int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDump+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxDump {
		b = append(b[:maxDump:maxDump], "\n...[dump cut at 4 MiB]..."...)
	}
	return b, nil
}

func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and asserts a clean exit with code 0.
func (n *node) Stop(t *testing.T) {
	t.Helper()
	if n.exited() {
		t.Fatalf("tusk already exited: %v", n.waitErr)
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(stopGrace()):
		n.sendQuit()
		t.Fatalf("tusk did not stop within %v of SIGTERM; %s", stopGrace(), n.collectDump())
	}
	if n.waitErr != nil {
		t.Fatalf("tusk exit after SIGTERM: %v (want exit code 0)", n.waitErr)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("tusk exit code %d, want 0", code)
	}
}

// Kill9 kills the process with SIGKILL and waits for it.
func (n *node) Kill9(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		t.Fatal("tusk did not die after SIGKILL")
	}
}

// Restart starts a new process on the same data dir with the same options.
// The previous process must have exited (Stop or Kill9).
func (n *node) Restart(t *testing.T) *node {
	t.Helper()
	if !n.exited() {
		t.Fatal("Restart: previous process still running")
	}
	opts := append(append([]startOpt(nil), n.opts...), withDataDir(n.DataDir))
	return startTusk(t, opts...)
}

// relaunch is Restart without waiting for readiness; extra options are
// applied after the original ones (a repeated flag overrides).
func (n *node) relaunch(t *testing.T, extra ...startOpt) (*node, error) {
	t.Helper()
	if !n.exited() {
		return nil, fmt.Errorf("relaunch %s: previous process still running", n.label())
	}
	opts := append(append([]startOpt(nil), n.opts...), withDataDir(n.DataDir))
	return launchTusk(t, append(opts, extra...)...)
}

// healthz returns the HTTP status of GET /healthz.
func (n *node) healthz(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET /healthz: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ---------------------------------------------------------------------------
// Report card

type cardEntry struct {
	client, scenario, result string
}

var (
	cardMu  sync.Mutex
	entries []cardEntry
)

// card records the outcome of the calling test under client × scenario in
// the report card printed by TestMain.
func card(t *testing.T, client, scenario string) {
	t.Helper()
	t.Cleanup(func() {
		res := "pass"
		switch {
		case t.Failed():
			res = "FAIL"
		case t.Skipped():
			res = "skip"
		}
		cardMu.Lock()
		entries = append(entries, cardEntry{client, scenario, res})
		cardMu.Unlock()
	})
}

// cardSetup is for tests whose scenarios are subtests with their own card:
// it records "<client> / setup" as FAIL if the parent fails before calling
// the returned done func (node start, topic creation), so a broken setup
// still shows on the report card.
func cardSetup(t *testing.T, client string) (done func()) {
	t.Helper()
	ok := false
	t.Cleanup(func() {
		if !ok && t.Failed() {
			cardMu.Lock()
			entries = append(entries, cardEntry{client, "setup (" + t.Name() + ")", "FAIL"})
			cardMu.Unlock()
		}
	})
	return func() { ok = true }
}

func printReportCard() {
	cardMu.Lock()
	defer cardMu.Unlock()
	if len(entries) == 0 {
		return
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].client != entries[j].client {
			return entries[i].client < entries[j].client
		}
		return entries[i].scenario < entries[j].scenario
	})
	var buf bytes.Buffer
	target := "tusk"
	if kfakeMode() {
		target = "kfake stand-in (TUSK_COMPAT_KFAKE=1)"
	} else if p := os.Getenv("TUSK_BIN"); p != "" {
		target = p
	}
	fmt.Fprintf(&buf, "\n==== Tusk compat report card (target: %s) ====\n", target)
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSCENARIO\tRESULT")
	counts := map[string]int{}
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.client, e.scenario, e.result)
		counts[e.result]++
	}
	tw.Flush()
	fmt.Fprintf(&buf, "pass %d, FAIL %d, skip %d\n", counts["pass"], counts["FAIL"], counts["skip"])
	fmt.Print(buf.String())
	// go test hides a passing package's output; `make compat` prints
	// this copy.
	if path := os.Getenv("TUSK_REPORT_CARD"); path != "" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "write report card:", err)
		}
	}
}
