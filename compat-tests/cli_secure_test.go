package compat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCLISecure: the admin CLI against a SASL_SSL listener: with --tls-ca
// and SCRAM-SHA-256 credentials from $TUSK_CLI_SASL_USER and
// $TUSK_CLI_SASL_PASSWORD it creates and lists a topic; with the client
// certificate too (mutual TLS) as well; a wrong password exits 1 with
// SASL_AUTHENTICATION_FAILED; without the CA the TLS handshake fails
// (exit 1); usage errors (an unknown mechanism, --tls-cert without
// --tls-key) exit 2.
func TestCLISecure(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no SASL_SSL listener")
	}
	card(t, "tusk topic over SASL_SSL", "CLI TLS and SASL flags")
	pki := newCompatPKI(t)
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("ops:ops-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startTusk(t, append(pki.opts("requested"), withListeners("PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"),
		withFlag("sasl-bootstrap-users-file", users))...)
	addr := n.listener(t, "SASL_SSL")
	env := []string{"TUSK_BROKERS=" + addr, "TUSK_CLI_SASL_USER=ops", "TUSK_CLI_SASL_PASSWORD=ops-secret"}
	sec := []string{"--tls-ca", pki.caFile, "--sasl-mechanism", "SCRAM-SHA-256", "--timeout", "10s"}
	// The bootstrap users are applied once the node is caught up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, errOut, code := cliRun(t, env, append([]string{"topic", "list"}, sec...)...)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tusk topic list over SASL_SSL never succeeded: exit %d, %s", code, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	with := func(extra ...string) []string { return append(append([]string{}, sec...), extra...) }
	runCLISteps(t, []cliStep{
		{name: "create over SASL_SSL", env: env, args: append([]string{"topic", "create", "cli-sec", "-p", "2", "-r", "1"}, sec...), code: 0},
		{name: "list over SASL_SSL", env: env, args: append([]string{"topic", "list"}, sec...), code: 0, stdout: []string{"cli-sec"}},
		{name: "list with a client certificate", env: env, args: append([]string{"topic", "list"}, with("--tls-cert", pki.client.CertFile, "--tls-key", pki.client.KeyFile)...), code: 0, stdout: []string{"cli-sec"}},
		{name: "wrong password", env: []string{"TUSK_BROKERS=" + addr, "TUSK_CLI_SASL_USER=ops", "TUSK_CLI_SASL_PASSWORD=nope"},
			args: append([]string{"topic", "list"}, sec...), code: 1, stderr: []string{"SASL_AUTHENTICATION_FAILED"}},
		{name: "no CA", env: env, args: []string{"topic", "list", "--tls", "--sasl-mechanism", "SCRAM-SHA-256", "--timeout", "3s"}, code: 1, stderr: []string{"certificate"}},
		{name: "unknown mechanism", env: env, args: []string{"topic", "list", "--sasl-mechanism", "GSSAPI"}, code: 2, stderr: []string{"want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"}},
		{name: "cert without key", env: env, args: []string{"topic", "list", "--tls-cert", pki.client.CertFile}, code: 2, stderr: []string{"--tls-cert and --tls-key go together"}},
	})
}
