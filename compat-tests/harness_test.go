package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
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
}

type startOpt func(*startOpts)

// withDataDir reuses an existing data directory (restarts).
func withDataDir(dir string) startOpt { return func(o *startOpts) { o.dataDir = dir } }

// withFlag appends `--name value` to the serve command line.
func withFlag(name, value string) startOpt {
	return func(o *startOpts) { o.args = append(o.args, "--"+name, value) }
}

type readyInfo struct {
	NodeID int32  `json:"node_id"`
	Kafka  string `json:"kafka"`
	HTTP   string `json:"http"`
}

type node struct {
	readyInfo
	DataDir string
	LogPath string

	opts    []startOpt
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// startTusk launches `tusk serve` and waits until its ready file appears.
// Cleanup stops it with SIGTERM (failing the test if it needs SIGKILL) and
// dumps its log on failure.
func startTusk(t *testing.T, opts ...startOpt) *node {
	t.Helper()
	bin := tuskBinary(t)
	var o startOpts
	for _, opt := range opts {
		opt(&o)
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	runDir := t.TempDir()
	ready := filepath.Join(runDir, "ready.json")
	logPath := filepath.Join(runDir, "tusk.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve",
		"--data-dir", o.dataDir,
		"--kafka-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0",
		"--ready-file", ready,
		"--log-level", "info",
	}
	args = append(args, o.args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	n := &node{DataDir: o.dataDir, LogPath: logPath, opts: opts, cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			const max = 64 << 10
			if len(b) > max {
				b = append([]byte("...[truncated]...\n"), b[len(b)-max:]...)
			}
			t.Logf("---- tusk log %s (%s) ----\n%s\n---- end of tusk log ----", strings.Join(args, " "), logPath, b)
		}
	})
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start tusk: %v", err)
	}
	go func() {
		n.waitErr = cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	t.Cleanup(func() {
		if n.exited() {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
			if n.waitErr != nil {
				t.Errorf("tusk exited uncleanly on cleanup SIGTERM: %v", n.waitErr)
			}
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
			t.Errorf("tusk did not stop within %v of SIGTERM; killed", stopTimeout)
		}
	})

	deadline := time.Now().Add(readyTimeout)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			var ri readyInfo
			if json.Unmarshal(b, &ri) == nil && ri.Kafka != "" {
				n.readyInfo = ri
				break
			}
		}
		if n.exited() {
			t.Fatalf("tusk exited before becoming ready: %v", n.waitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tusk not ready after %v (no valid %s)", readyTimeout, ready)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(n.Kafka, "127.0.0.1:") || strings.HasSuffix(n.Kafka, ":0") {
		t.Fatalf("ready file kafka address %q: want 127.0.0.1:<bound port>", n.Kafka)
	}
	return n
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
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
		t.Fatalf("tusk did not stop within %v of SIGTERM", stopTimeout)
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
