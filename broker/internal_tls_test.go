package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/tlsutil"
)

// tlsNode is a node's TLS files issued by a test CA.
type tlsNode struct {
	files tlsutil.Files
	r     *tlsutil.Reloader
}

// issue writes a certificate of ca (node >= 0: with that node's URI SAN)
// and the CA's file, and loads them.
func issue(t *testing.T, ca *tlsutil.CA, dir, name string, node int32) tlsNode {
	t.Helper()
	f, err := ca.IssueFiles(dir, name, tlsutil.CertRequest{Subject: pkix.Name{CommonName: name}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if f.CAFile, err = ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	r, err := tlsutil.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return tlsNode{files: f, r: r}
}

func newCA(t *testing.T, name string) *tlsutil.CA {
	t.Helper()
	ca, err := tlsutil.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// startTLSBroker runs node 1 with node TLS (its certificate from ca).
func startTLSBroker(t *testing.T, ca *tlsutil.CA, mutate ...func(*configs.Config)) *Broker {
	t.Helper()
	n1 := issue(t, ca, t.TempDir(), "node1", 1)
	return startBroker(t, t.TempDir(), append([]func(*configs.Config){func(c *configs.Config) {
		c.NodeID = 1
		c.Internal.Listen = "127.0.0.1:0"
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.CAFile = n1.files.CertFile, n1.files.KeyFile, n1.files.CAFile
	}}, mutate...)...)
}

// tlsCall posts body to path on the internal listener over TLS with
// cfg; it returns the HTTP status and the error kind of the answer.
func tlsCall(t *testing.T, addr string, cfg *tls.Config, path string, body []byte) (int, string, error) {
	t.Helper()
	hc := rpc.NewTLSHTTPClient(5*time.Second, func(string) *tls.Config { return cfg })
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://"+addr+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	var e rpc.ErrorBody
	_ = json.Unmarshal(raw, &e) // a 200 is not an ErrorBody
	return resp.StatusCode, e.Kind, nil
}

// attacker presents n's certificate and trusts any server.
func attacker(n tlsNode) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{*n.r.Certificate()}, InsecureSkipVerify: true} //nolint:gosec // the test's attacker
}

func encode(t *testing.T, c metadata.Command) []byte {
	t.Helper()
	b, err := metadata.EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// With node TLS the internal listener serves only peers whose
// certificate chains to the cluster CA and names a node; the node id of
// the certificate must be the one a heartbeat or a replica Fetch claims,
// and /v1/apply refuses the controller's own commands. Every refusal
// leaves the metadata unchanged.
func TestInternalListenerNodeTLS(t *testing.T) {
	ca := newCA(t, "cluster")
	b := startTLSBroker(t, ca)
	addr := b.InternalAddr()
	dir := t.TempDir()
	node2 := issue(t, ca, dir, "node2", 2)
	client := issue(t, ca, dir, "alice", -1)                            // same CA, no node URI
	selfSigned := issue(t, newCA(t, "rogue"), t.TempDir(), "rogue2", 2) // a node URI, another CA
	// The node gives the cluster its id in the background; wait for it
	// so that the comparison below sees only the refused calls.
	for deadline := time.Now().Add(10 * time.Second); b.store.FSM().ClusterID() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no cluster id after 10 s")
		}
	}
	before := b.store.FSM().Dump()

	forged := encode(t, metadata.CreateTopic{Name: "forged", ID: metadata.TopicID{1}, Partitions: 1})

	t.Run("plain HTTP", func(t *testing.T) {
		hc := &http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Post("http://"+addr+rpc.PathApply, "application/json", bytes.NewReader(forged))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("plain HTTP /v1/apply answered %s, want the connection closed by the TLS handshake", resp.Status)
		}
	})
	refused := []struct {
		name string
		cfg  *tls.Config
	}{
		{"self-signed node certificate", attacker(selfSigned)},
		{"client certificate of the cluster CA", attacker(client)},
		{"no certificate", &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the test's client
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{rpc.PathApply, rpc.PathHeartbeat, rpc.PathAddNode} {
				status, kind, err := tlsCall(t, addr, c.cfg, path, forged)
				if err == nil {
					t.Fatalf("%s answered %d %s, want a failed TLS handshake", path, status, kind)
				}
				if !strings.Contains(err.Error(), "tls:") && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection reset") {
					t.Errorf("%s: %v, want a TLS handshake failure", path, err)
				}
			}
			// A Kafka replica fetch from the same peer fails the same way.
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(c.cfg), kgo.DialTimeout(5*time.Second), kgo.RequestRetries(0))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID = 2
			req.MaxWaitMillis = 10
			if _, err := cl.SeedBrokers()[0].Request(ctx, req); err == nil {
				t.Errorf("replica Fetch answered, want a failed TLS handshake")
			}
		})
	}

	n2 := node2.r.NodeClientConfig(1)
	t.Run("node 2 claiming node 3", func(t *testing.T) {
		hb, _ := json.Marshal(metadata.Heartbeat{ID: 3, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:2", Raft: "127.0.0.1:3"})
		if status, kind, err := tlsCall(t, addr, n2, rpc.PathHeartbeat, hb); err != nil || status != http.StatusForbidden || kind != rpc.KindForbidden {
			t.Errorf("heartbeat of node 3 with node 2's certificate: %d %q %v, want 403 forbidden", status, kind, err)
		}
		add, _ := json.Marshal(rpc.AddNodeRequest{ID: 3, Raft: "127.0.0.1:3"})
		if status, kind, err := tlsCall(t, addr, n2, rpc.PathAddNode, add); err != nil || status != http.StatusForbidden || kind != rpc.KindForbidden {
			t.Errorf("add-node 3 with node 2's certificate: %d %q %v, want 403 forbidden", status, kind, err)
		}
		reg := encode(t, metadata.RegisterBroker{Broker: metadata.Broker{ID: 1, Kafka: "10.9.9.9:9092", Internal: "10.9.9.9:9093"}})
		if status, kind, err := tlsCall(t, addr, n2, rpc.PathApply, reg); err != nil || status != http.StatusForbidden || kind != rpc.KindForbidden {
			t.Errorf("apply RegisterBroker from node 2: %d %q %v, want 403 forbidden", status, kind, err)
		}
		fence := encode(t, metadata.SetBrokerState{ID: 1, From: metadata.BrokerAlive, To: metadata.BrokerFenced})
		if status, kind, err := tlsCall(t, addr, n2, rpc.PathApply, fence); err != nil || status != http.StatusForbidden || kind != rpc.KindForbidden {
			t.Errorf("apply SetBrokerState from node 2: %d %q %v, want 403 forbidden", status, kind, err)
		}
		bad := []byte(`{"v":1,"kind":"create_topic","body":{"name":"../x","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":1}}`)
		if status, kind, err := tlsCall(t, addr, n2, rpc.PathApply, bad); err != nil || status != http.StatusConflict || kind != "invalid" {
			t.Errorf("apply of an invalid CreateTopic from node 2: %d %q %v, want 409 invalid", status, kind, err)
		}
	})
	if after := b.store.FSM().Dump(); !bytes.Equal(after, before) {
		t.Fatalf("refused calls changed the metadata:\nbefore %s\nafter  %s", before, after)
	}

	t.Run("replica fetch claiming another node", func(t *testing.T) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(n2), kgo.DialTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range []struct {
			replica int32
			want    int16
		}{{3, kerr.ClusterAuthorizationFailed.Code}, {2, 0}} {
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID = c.replica
			req.MaxWaitMillis = 10
			req.SessionEpoch = -1
			resp, err := cl.SeedBrokers()[0].Request(ctx, req)
			if err != nil {
				t.Fatalf("replica Fetch as %d: %v", c.replica, err)
			}
			if got := resp.(*kmsg.FetchResponse).ErrorCode; got != c.want {
				t.Errorf("replica Fetch as node %d with node 2's certificate: error %d, want %d", c.replica, got, c.want)
			}
		}
	})

	t.Run("node 2 as itself", func(t *testing.T) {
		status, kind, err := tlsCall(t, addr, n2, rpc.PathApply, forged)
		if err != nil || status != http.StatusOK {
			t.Fatalf("apply CreateTopic from node 2: %d %q %v, want 200", status, kind, err)
		}
		if _, ok := b.store.FSM().Topic("forged"); !ok {
			t.Fatal("the applied topic is missing")
		}
	})
}

// The HTTP listener: /healthz and /metrics open; /debug/pprof, /ui and
// /api/v1 need the admin token when the authorizer is on (even from
// loopback), and loopback or the token otherwise.
func TestHTTPAdminGate(t *testing.T) {
	const token = "s3cret"
	ca := newCA(t, "cluster")
	b := startTLSBroker(t, ca, func(c *configs.Config) { c.Authorizer = true; c.HTTP.AdminToken = token })
	get := func(path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+b.HTTPAddr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/metrics", "", 200},
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", "wrong", 401},
		{"/debug/pprof/", token, 200},
		{"/debug/pprof/symbol", "", 401},
	} {
		if got := get(c.path, c.auth); got != c.want {
			t.Errorf("GET %s (token %q) with the authorizer on: %d, want %d", c.path, c.auth, got, c.want)
		}
	}

	// The rule itself, for clients that are not on loopback.
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	for _, c := range []struct {
		authorizer bool
		token      string
		remote     string
		auth       string
		cookie     string
		query      string
		want       int
	}{
		{false, "", "127.0.0.1:5", "", "", "", 200},
		{false, "", "10.0.0.1:5", "", "", "", 401},
		{false, token, "10.0.0.1:5", token, "", "", 200},
		{false, token, "10.0.0.1:5", "", token, "", 200},
		{false, token, "10.0.0.1:5", "", "", token, 200},
		{false, token, "10.0.0.1:5", "nope", "", "", 401},
		{true, token, "127.0.0.1:5", "", "", "", 401},
		{true, token, "[::1]:5", "", "", "", 401},
		{true, token, "10.0.0.1:5", token, "", "", 200},
		{true, "", "127.0.0.1:5", "", "", "", 401},
		{true, "", "127.0.0.1:5", "x", "", "", 401},
	} {
		gb := &Broker{}
		gb.cfg.Authorizer, gb.cfg.HTTP.AdminToken = c.authorizer, c.token
		target := "/ui/"
		if c.query != "" {
			target += "?token=" + c.query
		}
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = c.remote
		if c.auth != "" {
			req.Header.Set("Authorization", "Bearer "+c.auth)
		}
		if c.cookie != "" {
			req.AddCookie(&http.Cookie{Name: adminTokenCookie, Value: c.cookie})
		}
		w := httptest.NewRecorder()
		gb.adminGate(ok).ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("%+v: %d, want %d", c, w.Code, c.want)
		}
	}
}

// The authorizer without node TLS starts only if the internal and Raft
// listeners bind loopback.
func TestAuthorizerNeedsNodeTLSOrLoopback(t *testing.T) {
	ca := newCA(t, "cluster")
	n1 := issue(t, ca, t.TempDir(), "node1", 1)
	for _, c := range []struct {
		internal, raft string
		tls            bool
		wantErr        string
	}{
		{"127.0.0.1:0", "127.0.0.1:9", false, ""},
		{"localhost:0", "", false, ""},
		{"[::1]:0", "127.0.0.2:9", false, ""},
		{"0.0.0.0:9093", "127.0.0.1:9", false, `internal.listen "0.0.0.0:9093" binds a non-loopback address`},
		{":9093", "127.0.0.1:9", false, `internal.listen ":9093" binds a non-loopback address`},
		{"127.0.0.1:0", "10.1.2.3:9094", false, `raft.listen "10.1.2.3:9094" binds a non-loopback address`},
		{"0.0.0.0:9093", "10.1.2.3:9094", true, ""},
	} {
		b := &Broker{}
		b.cfg.Authorizer = true
		b.cfg.Internal.Listen, b.cfg.Raft.Listen = c.internal, c.raft
		if c.tls {
			b.tls = n1.r
		}
		err := b.checkNodeSecurity()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%+v: %v, want none", c, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%+v: %v, want an error containing %q", c, err, c.wantErr)
		}
	}
	b := &Broker{}
	b.cfg.Internal.Listen = "0.0.0.0:9093"
	if err := b.checkNodeSecurity(); err != nil {
		t.Errorf("without the authorizer: %v", err)
	}
}

// With the authorizer on, the console reads groups as node traffic on the
// internal listeners (over node TLS): an anonymous client of the Kafka
// listener sees none of them.
func TestConsoleGroupsUnderAuthorizer(t *testing.T) {
	ca := newCA(t, "cluster")
	b := startTLSBroker(t, ca, func(c *configs.Config) { c.Authorizer = true })
	node2 := issue(t, ca, t.TempDir(), "node2", 2)
	// Set up a topic, a record and a group's commit as node traffic.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.InternalAddr()), kgo.DialTLSConfig(node2.r.NodeClientConfig(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.AddOffset("orders", 0, 1, -1)
	if err := adm.CommitAllOffsets(ctx, "billing", offs); err != nil {
		t.Fatal(err)
	}
	// The Kafka listener's anonymous client sees no group.
	if anon, err := kadm.NewClient(newClient(t, b)).ListGroups(ctx); err == nil && len(anon) != 0 {
		t.Fatalf("an anonymous ListGroups listed %v under the authorizer; the test shows nothing", anon.Groups())
	}
	src := b.ConsoleSource("test")
	defer src.Close()
	groups, err := src.Groups(ctx)
	if err != nil {
		t.Fatalf("console groups under the authorizer: %v", err)
	}
	if len(groups) != 1 || groups[0].Group != "billing" {
		t.Fatalf("console groups %+v, want billing alone", groups)
	}
	g, err := src.Group(ctx, "billing")
	if err != nil {
		t.Fatalf("console group: %v", err)
	}
	if len(g.Lag) != 1 || g.Lag[0].Topic != "orders" || g.Lag[0].Committed != 1 || g.Lag[0].End != 1 || g.Lag[0].Lag != 0 {
		t.Fatalf("console group lag %+v, want orders/0 committed 1, end 1, lag 0", g.Lag)
	}
}
