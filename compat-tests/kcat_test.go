package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TUSK_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s not installed (TUSK_REQUIRE_TOOLS=1)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func runTool(t *testing.T, stdin []byte, name string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		t.Fatalf("%s %s: %v (ctx %v)\nstderr:\n%s", name, strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// TestKcat: metadata listing, produce with zstd and lz4 (compression must
// really be stored), consume with an exact format string.
func TestKcat(t *testing.T) {
	kcat := requireTool(t, "kcat")

	setupDone := cardSetup(t, "kcat")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	common := []string{"-b", n.Kafka, "-X", "api.version.request=true"}
	setupDone()

	t.Run("metadata", func(t *testing.T) {
		card(t, "kcat", "-L metadata")
		createTopic(t, adm, "kcat-meta", 3, nil)
		out, _ := runTool(t, nil, kcat, append(common, "-L")...)
		for _, want := range []string{
			fmt.Sprintf("broker %d at %s", n.NodeID, n.Kafka),
			`topic "kcat-meta" with 3 partitions:`,
			fmt.Sprintf("partition 0, leader %d,", n.NodeID),
			fmt.Sprintf("partition 2, leader %d,", n.NodeID),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kcat -L output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "Broker: ") {
			t.Errorf("kcat -L reports an error:\n%s", out)
		}
	})

	for _, c := range []struct {
		codec string
		attr  int8
	}{{"zstd", 4}, {"lz4", 3}} {
		t.Run(c.codec, func(t *testing.T) {
			card(t, "kcat", c.codec+" produce/consume round trip")
			topic := "kcat-" + c.codec
			createTopic(t, adm, topic, 1, nil)
			const count = 2000
			var in, want bytes.Buffer
			for i := range count {
				k := fmt.Sprintf("key-%05d", i)
				v := fmt.Sprintf("value %05d %s", i, strings.Repeat(c.codec, 20))
				fmt.Fprintf(&in, "%s:%s\n", k, v)
				fmt.Fprintf(&want, "%s|%s|%d|0\n", k, v, i)
			}
			runTool(t, in.Bytes(), kcat, append(common, "-P", "-t", topic, "-p", "0", "-K:", "-z", c.codec,
				"-X", "linger.ms=20", "-X", "acks=all")...)
			ends := endOffsets(t, adm, topic)
			if ends[0] != count {
				t.Fatalf("end offset after kcat -P: %d, want %d", ends[0], count)
			}
			out, _ := runTool(t, nil, kcat, append(common, "-C", "-t", topic, "-o", "beginning", "-e", "-f", `%k|%s|%o|%p\n`)...)
			if out != want.String() {
				gotLines, wantLines := strings.Split(out, "\n"), strings.Split(want.String(), "\n")
				for i := range min(len(gotLines), len(wantLines)) {
					if gotLines[i] != wantLines[i] {
						t.Fatalf("kcat -C output differs at line %d:\n got %q\nwant %q\n(%d lines vs %d)", i+1, gotLines[i], wantLines[i], len(gotLines), len(wantLines))
					}
				}
				t.Fatalf("kcat -C output: %d lines, want %d", len(gotLines), len(wantLines))
			}
			// librdkafka compresses only if the broker advertises Produce
			// v0 (and LZ4 only with FindCoordinator v0): look at the
			// stored batches, not just the round trip.
			batches := fetchBatches(t, n, topic, 0, count)
			for _, b := range batches {
				if b.Codec() != c.attr {
					t.Fatalf("stored batch at offset %d has codec attribute %d, want %d (%s): librdkafka did not compress; check advertised Produce v0 / FindCoordinator v0",
						b.BaseOffset, b.Codec(), c.attr, c.codec)
				}
			}
			t.Logf("%d stored batches, all %s", len(batches), c.codec)
		})
	}
}
