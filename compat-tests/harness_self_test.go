package compat

import (
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRaceReportScan checks the harness's race report scan on a log laid
// out as a race-detector build of tusk writes it: JSON log lines with two
// reports among them. It needs no tusk binary.
func TestRaceReportScan(t *testing.T) {
	first := strings.Join([]string{
		"WARNING: DATA RACE",
		"Write at 0x00c0000bf5a0 by goroutine 115:",
		"  github.com/tuskdb/tusk/broker.(*Broker).producePartition()",
		"",
		"Previous read at 0x00c0000bf5a0 by goroutine 44:",
		"  github.com/tuskdb/tusk/broker.(*leaderPart).full()",
	}, "\n")
	log := strings.Join([]string{
		`{"level":"info","message":"serving"}`,
		"==================",
		first,
		"==================",
		`{"level":"info","message":"rolled"}`,
		"==================",
		"WARNING: DATA RACE",
		"Read at 0x00c000412b10 by goroutine 9:",
		"==================",
		`{"level":"info","message":"stopped"}`,
	}, "\n") + "\n"
	path := filepath.Join(t.TempDir(), "tusk.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	count, got, err := raceReports(path)
	if err != nil || count != 2 || got != first {
		t.Fatalf("raceReports: count %d, err %v, first:\n%s\nwant count 2, no error, first:\n%s", count, err, got, first)
	}
	clean := filepath.Join(t.TempDir(), "clean.log")
	if err := os.WriteFile(clean, []byte(`{"level":"info","message":"serving"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if count, got, err := raceReports(clean); err != nil || count != 0 || got != "" {
		t.Fatalf("raceReports of a clean log: count %d, first %q, err %v; want 0, empty, nil", count, got, err)
	}
	if _, _, err := raceReports(filepath.Join(t.TempDir(), "missing.log")); err == nil {
		t.Fatal("raceReports of a missing log: no error")
	}
}

// hangHelperEnv makes the test binary, started by TestForcedStopDump,
// run hangHelper instead of the tests.
const hangHelperEnv = "TUSK_HARNESS_HANG_HELPER"

// hangHelper stands for a node whose shutdown hangs: it ignores SIGTERM,
// says it is ready on stdout and blocks in a function the dump names.
func hangHelper() {
	signal.Ignore(syscall.SIGTERM)
	os.Stdout.WriteString("hang helper ready\n")
	blockedInShutdownForTest(make(chan struct{}))
}

func blockedInShutdownForTest(never chan struct{}) {
	<-never
}

// TestForcedStopDump checks the harness's stop of a process that ignores
// SIGTERM: after stopTimeout it sends SIGQUIT, and the error holds the Go
// goroutine dump, naming the blocked function. It needs no tusk binary
// (the test binary itself is the hanging process).
func TestForcedStopDump(t *testing.T) {
	t.Setenv("TUSK_TEST_STOP_TIMEOUT", "")
	logPath := filepath.Join(t.TempDir(), "tusk.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hangHelperEnv+"=1")
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	n := &node{Name: "hanger", LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	n.quitAt.Store(-1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.waitErr = cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	t.Cleanup(func() {
		if !n.exited() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "hang helper ready") {
			break
		}
		if n.exited() || time.Now().After(deadline) {
			t.Fatalf("hang helper not ready (exited %v: %v); log:\n%s", n.exited(), n.waitErr, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	err = n.stopQuietly()
	took := time.Since(start)
	if err == nil {
		t.Fatal("stopQuietly of a process that ignores SIGTERM: no error")
	}
	msg := err.Error()
	for _, want := range []string{"hanger did not stop within 10s of SIGTERM", "SIGQUIT sent;", "goroutine ", "blockedInShutdownForTest", "end of hanger goroutine dump"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stop error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hang helper ready") {
		t.Errorf("the dump includes the log written before SIGQUIT:\n%s", msg)
	}
	if !n.exited() {
		t.Error("the process still runs after the forced stop")
	}
	if took > stopTimeout+quitTimeout {
		t.Errorf("forced stop took %v, want at most %v", took, stopTimeout+quitTimeout)
	}
}
