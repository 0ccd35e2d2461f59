package compat

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// secureCerts are the PEM files `tusk certs` wrote for a test cluster.
type secureCerts struct{ dir string }

func (s secureCerts) cert(name string) string { return filepath.Join(s.dir, name+".crt") }
func (s secureCerts) key(name string) string  { return filepath.Join(s.dir, name+".key") }
func (s secureCerts) ca() string              { return filepath.Join(s.dir, "ca.crt") }

// tlsFlags are the serve (and `tusk cluster`) flags of certificate name.
func (s secureCerts) tlsFlags(name string) []string {
	return []string{"--tls-cert-file", s.cert(name), "--tls-key-file", s.key(name), "--tls-ca-file", s.ca()}
}

// attacker presents certificate name of s and trusts any server.
func (s secureCerts) attacker(t *testing.T, name string) *tls.Config {
	t.Helper()
	c, err := tls.LoadX509KeyPair(s.cert(name), s.key(name))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, InsecureSkipVerify: true} //nolint:gosec // the test's attacker
}

// clientTLS trusts the CA of s (the brokers' SSL listeners).
func (s secureCerts) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.ca())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", s.ca())
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// makeCerts runs `tusk certs` into a fresh directory.
func makeCerts(t *testing.T, args ...string) secureCerts {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t}
	c.cli(t, append([]string{"certs", "--dir", dir}, args...)...)
	return secureCerts{dir: dir}
}

// TestClusterSecureNodes: three nodes with mutual TLS between them (the
// internal listeners and Raft), certificates from `tusk certs`, clients
// on a SASL_SSL listener logged in with SCRAM-SHA-512 as a bootstrap user
// (a PLAINTEXT one serves the harness's raw checks). Produce through segment rolls, SIGKILL of the controller, more
// produce on the survivors: every acknowledged record is read back
// exactly once, in order. A fourth party with a self-signed node
// certificate, and one with a client certificate of the cluster CA, can
// neither join (add-node), heartbeat, POST /v1/apply, fetch as a replica
// nor talk Raft: each is refused in the TLS handshake; node 1's
// certificate cannot add node 4 (403); plain HTTP to an internal listener
// fails; the metadata is unchanged. Node 4 with its own certificate then
// joins.
func TestClusterSecureNodes(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster, node-to-node mutual TLS")
	certs := makeCerts(t, "--nodes", "1,2,3,4", "--ips", "127.0.0.1", "--clients", "alice")
	rogue := makeCerts(t, "--nodes", "4", "--ips", "127.0.0.1") // another CA
	// `tusk cluster` (status, dump) runs with node 1's certificate.
	t.Setenv("TUSK_TLS_CERT_FILE", certs.cert("node1"))
	t.Setenv("TUSK_TLS_KEY_FILE", certs.key("node1"))
	t.Setenv("TUSK_TLS_CA_FILE", certs.ca())
	setFaultTimings(t)
	// A PLAINTEXT listener first (the harness's raw checks use the ready
	// file's "kafka"), and the SSL listener the test's clients use.
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("app:app-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterWith(t, 3, func(id int32) []startOpt {
		name := fmt.Sprintf("node%d", id)
		return []startOpt{withFlag("tls-cert-file", certs.cert(name)), withFlag("tls-key-file", certs.key(name)), withFlag("tls-ca-file", certs.ca()),
			withListeners("PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"), withFlag("sasl-bootstrap-users-file", users)}
	})
	done()
	card(t, "franz-go kgo (SASL_SSL, SCRAM-SHA-512) + tusk cluster CLI", "secure cluster: node TLS, SASL_SSL clients, RF=3 rolls + controller SIGKILL, no loss")
	// Clients log in over TLS with SCRAM-SHA-512.
	sslOpts := []kgo.Opt{kgo.DialTLSConfig(certs.clientTLS(t)), kgo.SASL(scram.Auth{User: "app", Pass: "app-secret"}.AsSha512Mechanism())}
	ssl := func(ids ...int32) []string {
		var out []string
		for _, id := range ids {
			out = append(out, c.node(id).listener(t, "SASL_SSL"))
		}
		return out
	}

	const topic, parts, rounds, perRound = "sec", 3, 12, 200
	ps := []int32{0, 1, 2}
	adm := kadm.NewClient(newClusterClient(t, ssl(c.ids()...), sslOpts...))
	resp, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), parts, 3, map[string]*string{"segment.bytes": strp("4096")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: parts}, 10*time.Second)
	}
	// Rounds of produce (a fresh producer each), so that segments roll
	// between them; half before the kill, half after.
	acked := map[int32][]prodRec{}
	round := 0
	produceRounds := func(seeds []string) {
		for i := 0; i < rounds/2; i++ {
			at := int64(round * perRound)
			for p, recs := range producePartitions(t, seeds, topic, ps, perRound, fmt.Sprintf("r%d", round), map[int32]int64{0: at, 1: at, 2: at}, sslOpts...) {
				acked[p] = append(acked[p], recs...)
			}
			round++
		}
	}
	produceRounds(ssl(c.ids()...))

	ids := c.ids()
	leader := c.waitLeader(t, ids, ids, 20*time.Second)
	c.node(leader).Kill9(t)
	var survivors []int32
	for _, id := range ids {
		if id != leader {
			survivors = append(survivors, id)
		}
	}
	newLeader := c.waitLeader(t, survivors, survivors, 30*time.Second)
	t.Logf("killed controller %d; node %d took over", leader, newLeader)
	produceRounds(ssl(survivors...))
	const n = rounds * perRound
	got := readPartitions(t, ssl(survivors...), topic, map[int32]int64{0: 0, 1: 0, 2: 0},
		map[int32]int{0: n, 1: n, 2: n}, 60*time.Second, sslOpts...)
	for _, p := range ps {
		sameRecords(t, fmt.Sprintf("%s/%d", topic, p), acked[p], got[p])
	}
	_, raw, err := c.dump(t, newLeader)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Topics map[string]struct {
			Parts []struct {
				Segments []struct{ State string } `json:"segments"`
			} `json:"parts"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	rolls := 0
	for _, part := range d.Topics[topic].Parts {
		for _, s := range part.Segments {
			if s.State == "sealed" {
				rolls++
			}
		}
	}
	t.Logf("measure: %d rolls over %d partitions", rolls, parts)
	if rolls < 3*parts {
		t.Errorf("%d segment rolls, want at least %d", rolls, 3*parts)
	}
	// The killed node comes back over TLS and catches up.
	c.restartNode(t, leader)
	c.waitBrokers(t, ids, ids, clusterFormTimeout)

	t.Run("outsiders", func(t *testing.T) {
		card(t, "tusk cluster CLI + raw TLS", "secure cluster: self-signed and client certificates cannot join, heartbeat, apply, replica-fetch or talk Raft")
		// What an outsider's command could change (segments keep
		// changing meanwhile: the restarted node is restored as a replica).
		before := outsiderView(t, c)
		via := c.node(newLeader)
		rogueNode := launchRogue(t, c, rogue)
		outsiders := []struct {
			name  string
			flags []string
			cfg   *tls.Config
		}{
			{"self-signed node 4", rogue.tlsFlags("node4"), rogue.attacker(t, "node4")},
			{"cluster-CA client alice", []string{"--tls-cert-file", certs.cert("alice"), "--tls-key-file", certs.key("alice"), "--tls-ca-file", certs.ca()}, certs.attacker(t, "alice")},
		}
		for _, o := range outsiders {
			// Join: add-node through the CLI with the outsider's
			// certificate.
			args := append([]string{"cluster", "add-node", "--node-id", "4", "--raft-addr", rogueNode.Raft, "--server", via.Internal, "--timeout", "5s"}, o.flags...)
			out, err := c.cliOut(t, 20*time.Second, args...)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Errorf("%s: add-node: %v (output %q), want a TLS handshake failure", o.name, err, out)
			}
			for _, n := range survivors {
				addr := c.node(n).Internal
				for _, path := range []string{"/v1/apply", "/v1/heartbeat", "/v1/add-node"} {
					if err := postTLS(addr, o.cfg, path, `{"v":1,"kind":"create_topic","body":{"name":"forged","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":1}}`); err == nil || !handshakeRefused(err) {
						t.Errorf("%s: POST %s on node %d: %v, want a refused TLS handshake", o.name, path, n, err)
					}
				}
				if err := replicaFetchTLS(addr, o.cfg); err == nil || !handshakeRefused(err) {
					t.Errorf("%s: replica Fetch on node %d: %v, want a refused TLS handshake", o.name, n, err)
				}
				if err := raftTLS(c.raft[n], o.cfg); err == nil || !handshakeRefused(err) {
					t.Errorf("%s: Raft on node %d: %v, want a refused TLS handshake", o.name, n, err)
				}
			}
		}
		// Plain HTTP (a forged /v1/apply without any certificate).
		hc := &http.Client{Timeout: 5 * time.Second}
		if resp, err := hc.Post("http://"+via.Internal+"/v1/apply", "application/json",
			strings.NewReader(`{"v":1,"kind":"create_topic","body":{"name":"forged","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":1}}`)); err == nil {
			resp.Body.Close()
			t.Errorf("plain HTTP /v1/apply on a TLS internal listener answered %s", resp.Status)
		}
		// Node 1's certificate is a node's, but not node 4's.
		out, err := c.cliOut(t, 20*time.Second, "cluster", "add-node", "--node-id", "4", "--raft-addr", rogueNode.Raft, "--server", via.Internal, "--timeout", "5s")
		if err == nil || !strings.Contains(err.Error(), "forbidden, 403") {
			t.Errorf("add-node 4 with node 1's certificate: %v (output %q), want forbidden, 403", err, out)
		}
		after := outsiderView(t, c)
		if after != before {
			t.Errorf("the outsiders changed the metadata:\nbefore %s\nafter  %s", before, after)
		}
		st, err := c.status(t, newLeader)
		if err != nil {
			t.Fatal(err)
		}
		if v := st.voterIDs(); fmt.Sprint(v) != fmt.Sprint(ids) {
			t.Errorf("voters %v after the outsiders, want %v", v, ids)
		}
		rogueNode.Stop(t)

		// Node 4 with its own certificate joins (Raft dials it over TLS).
		n4 := launchNode4(t, c, certs)
		c.cli(t, append([]string{"cluster", "add-node", "--node-id", "4", "--raft-addr", n4.Raft, "--server", via.Internal}, certs.tlsFlags("node4")...)...)
		waitFor(t, 30*time.Second, "node 4 registered as a broker", func() (bool, string) {
			st, err := c.status(t, newLeader)
			if err != nil {
				return false, err.Error()
			}
			return containsID(st.brokerIDs(), 4) && containsID(st.voterIDs(), 4), fmt.Sprintf("voters %v brokers %v", st.voterIDs(), st.brokerIDs())
		})
	})
}

// outsiderView is the part of the agreed metadata dump a forged command
// would change: the cluster id, brokers, cluster configs, the producer id
// block, and each topic's name, id, partition count and configs.
func outsiderView(t *testing.T, c *cluster) string {
	t.Helper()
	_, raw := c.agreedDump(t, 20*time.Second)
	var d struct {
		ClusterID      string          `json:"cluster_id"`
		NextProducerID int64           `json:"next_producer_id"`
		Configs        json.RawMessage `json:"configs"`
		Brokers        json.RawMessage `json:"brokers"`
		Topics         map[string]struct {
			Name       string          `json:"name"`
			ID         json.RawMessage `json:"id"`
			Partitions int32           `json:"partitions"`
			Configs    json.RawMessage `json:"configs"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// launchRogue starts a fourth process with the rogue CA's node 4
// certificate, not an initial voter.
// (The test stops it; it is not one of the cluster's nodes.)
func launchRogue(t *testing.T, c *cluster, rogue secureCerts) *node {
	t.Helper()
	n, err := launchTusk(t, fourthOpts(c, "rogue4", rogue)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.waitReady(time.Now().Add(clusterReadyTimeout)); err != nil {
		t.Fatal(err)
	}
	return n
}

// launchNode4 starts node 4 with its certificate of the cluster CA, as a
// node of c.
func launchNode4(t *testing.T, c *cluster, certs secureCerts) *node {
	t.Helper()
	n, err := launchTusk(t, append(fourthOpts(c, "node4", certs), withManagedStop())...)
	if err != nil {
		t.Fatal(err)
	}
	c.setNode(4, n)
	if err := n.waitReady(time.Now().Add(clusterReadyTimeout)); err != nil {
		t.Fatal(err)
	}
	return n
}

func fourthOpts(c *cluster, name string, certs secureCerts) []startOpt {
	return []startOpt{withName(name), withLogTail(clusterLogTail),
		withFlag("node-id", "4"), withFlag("raft-listen", freeAddrs(c.t, 1)[0]), withFlag("internal-listen", "127.0.0.1:0"),
		withFlag("voters", c.voters), withFlag("tls-cert-file", certs.cert("node4")), withFlag("tls-key-file", certs.key("node4")), withFlag("tls-ca-file", certs.ca())}
}

// handshakeRefused reports whether err is the end of a connection the
// server refused in the TLS handshake (its alert, or the connection
// closed under it).
func handshakeRefused(err error) bool {
	s := err.Error()
	return strings.Contains(s, "tls: ") || strings.Contains(s, "EOF") || strings.Contains(s, "connection reset")
}

// postTLS POSTs body to path over TLS with cfg and reads the answer.
func postTLS(addr string, cfg *tls.Config, path, body string) error {
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if err := req.Write(nc); err != nil {
		return err
	}
	raw, err := io.ReadAll(nc)
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		return io.EOF
	}
	return fmt.Errorf("answered: %q", bytes.SplitN(raw, []byte("\r\n"), 2)[0])
}

// replicaFetchTLS sends a replica Fetch (ReplicaID 4) over TLS with cfg.
func replicaFetchTLS(addr string, cfg *tls.Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(cfg), kgo.DialTimeout(5*time.Second), kgo.RequestRetries(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = 4
	req.MaxWaitMillis = 10
	_, err = cl.SeedBrokers()[0].Request(ctx, req)
	return err
}

// raftTLS opens a TLS connection to a Raft listener with cfg and waits
// for the server's verdict (in TLS 1.3 the client's handshake ends before
// the server checked its certificate; the refusal is the next read).
func raftTLS(addr string, cfg *tls.Config) error {
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	if _, err := nc.Write([]byte{0}); err != nil {
		return err
	}
	_, err = nc.Read(make([]byte, 1))
	if err == nil {
		return fmt.Errorf("the Raft listener answered")
	}
	return err
}

// TestAuthorizerNeedsNodeTLS: `tusk serve --authorizer` with an internal
// or Raft listener on a non-loopback address and no node TLS exits
// non-zero before serving, saying why; on loopback it serves.
func TestAuthorizerNeedsNodeTLS(t *testing.T) {
	skipClusterInKfakeMode(t)
	card(t, "tusk serve", "--authorizer without node TLS refused on non-loopback internal/raft listeners")
	t.Setenv("TUSK_AUTHORIZER", "true") // (withFlag passes a value as its own argument)
	raft := freeAddrs(t, 1)[0]
	_, raftPort, err := net.SplitHostPort(raft)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, internal, raft, want string
	}{
		{"internal on every address", "0.0.0.0:0", raft, `internal.listen "0.0.0.0:0" binds a non-loopback address`},
	}
	// Raft needs an advertisable address: one of this machine's own.
	if ip := nonLoopbackIP(t); ip != "" {
		r := net.JoinHostPort(ip, raftPort)
		cases = append(cases, struct{ name, internal, raft, want string }{"raft on " + ip, "127.0.0.1:0", r, `raft.listen "` + r + `" binds a non-loopback address`})
	} else {
		t.Log("no non-loopback IPv4 address: the Raft case is left out")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := launchTusk(t, withName("authz-open"), withFlag("node-id", "1"),
				withFlag("internal-listen", c.internal), withFlag("raft-listen", c.raft), withFlag("voters", "1="+raft))
			if err != nil {
				t.Fatal(err)
			}
			err = n.waitReady(time.Now().Add(readyTimeout))
			if !errors.Is(err, errExitedEarly) {
				t.Fatalf("tusk serve --authorizer with %s: %v, want an exit before serving", c.name, err)
			}
			log, rerr := os.ReadFile(n.LogPath)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !strings.Contains(string(log), c.want) {
				t.Errorf("log does not say %q:\n%s", c.want, log)
			}
		})
	}
	n := startTusk(t, withName("authz-loopback"), withFlag("node-id", "1"),
		withFlag("internal-listen", "127.0.0.1:0"), withFlag("raft-listen", raft), withFlag("voters", "1="+raft))
	if code := n.healthz(t); code != http.StatusOK {
		t.Errorf("loopback node with the authorizer: /healthz %d", code)
	}
}

// nonLoopbackIP is one of this machine's IPv4 addresses outside
// 127.0.0.0/8, or "".
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
