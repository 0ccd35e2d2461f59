package compat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
