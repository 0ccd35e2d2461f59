package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/tlsutil"
)

// connOn waits for the broker's connection whose remote address is
// local (the client side's address) and returns it.
func connOn(t *testing.T, b *Broker, local net.Addr) *conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.connMu.Lock()
		for c := range b.conns {
			if c.nc.RemoteAddr().String() == local.String() {
				b.connMu.Unlock()
				return c
			}
		}
		b.connMu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no broker connection from %s", local)
	return nil
}

func TestConnListenerPrincipalHost(t *testing.T) {
	b := startBroker(t, t.TempDir())
	nc, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := connOn(t, b, nc.LocalAddr())
	if c.listener.name != configs.ProtocolPlaintext || c.listener.protocol != configs.ProtocolPlaintext || c.node {
		t.Fatalf("listener %q protocol %q node %v, want PLAINTEXT PLAINTEXT false", c.listener.name, c.listener.protocol, c.node)
	}
	if p := c.principal(); p != auth.Anonymous {
		t.Fatalf("principal %v, want %v", p, auth.Anonymous)
	}
	if h := c.host(); h != "127.0.0.1" {
		t.Fatalf("host %q, want 127.0.0.1", h)
	}
	c.setPrincipal(auth.User("alice"))
	if p := c.principal(); p.String() != "User:alice" {
		t.Fatalf("principal %v after setPrincipal, want User:alice", p)
	}

	// A Kafka connection on the internal listener is node traffic.
	in, err := net.Dial("tcp", b.InternalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.Write([]byte{0}); err != nil { // the first byte of a Kafka frame
		t.Fatal(err)
	}
	ic := connOn(t, b, in.LocalAddr())
	if ic.listener.name != internalListener || !ic.node {
		t.Fatalf("internal conn: listener %q node %v", ic.listener.name, ic.node)
	}
}

// testPKI is a CA and a server certificate for 127.0.0.1 in files.
type testPKI struct {
	ca     *tlsutil.CA
	caFile string
	server tlsutil.Files
	dir    string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := tlsutil.NewCA("tusk test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueFiles(dir, "server", tlsutil.CertRequest{Subject: pkix.Name{CommonName: "server-1"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, caFile: caFile, server: srv, dir: dir}
}

// clientTLS trusts the CA and, with subject set, presents a client
// certificate of that subject.
func (p *testPKI) clientTLS(t *testing.T, subject *pkix.Name) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if subject != nil {
		cp, kp, err := p.ca.Issue(tlsutil.CertRequest{Subject: *subject, Node: -1})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

func (p *testPKI) configure(cfg *configs.Config) {
	cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.CAFile = p.server.CertFile, p.server.KeyFile, p.caFile
}

// roundTrip produces n records to a new topic through cl and consumes
// them back through cons, checking every value and offset.
func roundTrip(t *testing.T, cl, cons *kgo.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("%s-%d", topic, i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(i) {
			t.Fatalf("record %d at offset %d", i, r.Offset)
		}
	}
	cons.AddConsumeTopics(topic)
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != topic {
				return
			}
			if want := fmt.Sprintf("%s-%d", topic, got); r.Offset != int64(got) || string(r.Value) != want {
				t.Fatalf("record at %d %q, want %d %q", r.Offset, r.Value, got, want)
			}
			got++
		})
	}
}

// A client on each of two listeners is handed only its own listener's
// addresses: Metadata, FindCoordinator, DescribeCluster.
func TestListenersPerListenerAddresses(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	b := startBroker(t, dir, func(c *configs.Config) {
		c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0,client://127.0.0.1:0"
		c.Kafka.ListenerProtocols = "CLIENT:PLAINTEXT"
		c.Kafka.AdvertisedListeners = "CLIENT://client.example:19092"
		c.ReadyFile = ready
	})
	plain, client := b.ListenerAddr("PLAINTEXT"), b.ListenerAddr("CLIENT")
	if plain == "" || client == "" || plain == client || b.KafkaAddr() != plain {
		t.Fatalf("listeners PLAINTEXT %q CLIENT %q, KafkaAddr %q", plain, client, b.KafkaAddr())
	}
	var rf struct {
		Kafka     string            `json:"kafka"`
		Listeners map[string]string `json:"listeners"`
	}
	body, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &rf); err != nil {
		t.Fatal(err)
	}
	if rf.Kafka != plain || !maps.Equal(rf.Listeners, map[string]string{"PLAINTEXT": plain, "CLIENT": client}) {
		t.Fatalf("ready file %s", body)
	}
	reg, ok := b.store.FSM().Broker(b.cfg.NodeID)
	if !ok || reg.Kafka != plain || !maps.Equal(reg.Listeners, map[string]string{"PLAINTEXT": plain, "CLIENT": "client.example:19092"}) {
		t.Fatalf("registration %+v", reg)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A real client on PLAINTEXT works end to end: it only ever learns
	// PLAINTEXT's address.
	pc := newClient(t, b)
	roundTrip(t, pc, newClient(t, b, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), "per-listener", 20)
	// Each listener's answers, over a connection to that listener (the
	// seed broker: CLIENT's advertised address is not reachable).
	for _, tc := range []struct {
		addr, host string
		port       int32
	}{
		{plain, "127.0.0.1", portOf(t, plain)},
		{client, "client.example", 19092},
	} {
		cl := newClient(t, b, kgo.SeedBrokers(tc.addr))
		seed := cl.SeedBrokers()[0]
		mreq := kmsg.NewPtrMetadataRequest()
		mr, err := seed.Request(ctx, mreq)
		if err != nil {
			t.Fatal(err)
		}
		m := mr.(*kmsg.MetadataResponse)
		if len(m.Brokers) != 1 || m.Brokers[0].Host != tc.host || m.Brokers[0].Port != tc.port {
			t.Fatalf("%s: Metadata brokers %+v, want %s:%d", tc.addr, m.Brokers, tc.host, tc.port)
		}
		freq := kmsg.NewPtrFindCoordinatorRequest()
		freq.CoordinatorKeys = []string{"g1"}
		var f kmsg.FindCoordinatorResponseCoordinator
		for { // the offsets topic is created by the first FindCoordinator
			fr, err := seed.Request(ctx, freq)
			if err != nil {
				t.Fatal(err)
			}
			if cs := fr.(*kmsg.FindCoordinatorResponse).Coordinators; len(cs) != 1 {
				t.Fatalf("FindCoordinator v%d answered %d coordinators", fr.GetVersion(), len(cs))
			} else if f = cs[0]; f.ErrorCode != kerr.CoordinatorNotAvailable.Code || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if f.ErrorCode != 0 || f.Host != tc.host || f.Port != tc.port {
			t.Fatalf("%s: FindCoordinator %+v, want %s:%d", tc.addr, f, tc.host, tc.port)
		}
		dreq := kmsg.NewPtrDescribeClusterRequest()
		dr, err := seed.Request(ctx, dreq)
		if err != nil {
			t.Fatal(err)
		}
		d := dr.(*kmsg.DescribeClusterResponse)
		if len(d.Brokers) != 1 || d.Brokers[0].Host != tc.host || d.Brokers[0].Port != tc.port {
			t.Fatalf("%s: DescribeCluster brokers %+v, want %s:%d", tc.addr, d.Brokers, tc.host, tc.port)
		}
	}

	// A broker without the client's listener is left out; a registration
	// from before named listeners has one address for all.
	c := connOn(t, b, dialKeep(t, client))
	if _, _, ok := b.endpoint(metadata.Broker{ID: 2, Kafka: "h:1", Listeners: map[string]string{"PLAINTEXT": "h:1"}}, c); ok {
		t.Fatal("a broker without listener CLIENT got an endpoint")
	}
	if h, p, ok := b.endpoint(metadata.Broker{ID: 2, Kafka: "h:1"}, c); !ok || h != "h" || p != 1 {
		t.Fatalf("a registration without listeners: %s %d %v", h, p, ok)
	}

	// Over the internal listener (node traffic), Metadata names the
	// internal addresses.
	nodeCl := newClient(t, b, kgo.SeedBrokers(b.InternalAddr()))
	mr, err := nodeCl.SeedBrokers()[0].Request(ctx, kmsg.NewPtrMetadataRequest())
	if err != nil {
		t.Fatal(err)
	}
	if m := mr.(*kmsg.MetadataResponse); len(m.Brokers) != 1 || m.Brokers[0].Host != "127.0.0.1" || m.Brokers[0].Port != portOf(t, b.InternalAddr()) {
		t.Fatalf("Metadata over the internal listener: %+v, want %s", m.Brokers, b.InternalAddr())
	}
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p := hostPort(addr)
	if p < 0 {
		t.Fatalf("address %q", addr)
	}
	return p
}

// dialKeep opens a TCP connection kept for the test and returns its local
// address.
func dialKeep(t *testing.T, addr string) net.Addr {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc.LocalAddr()
}

// apiVersionsFrame is an ApiVersions v0 request, correlation id 7.
var apiVersionsFrame = []byte{0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 7, 0, 1, 't'}

// apiVersions sends an ApiVersions v0 request on nc and reads the
// response's correlation id.
func apiVersions(nc net.Conn) error {
	if err := nc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := nc.Write(apiVersionsFrame); err != nil {
		return err
	}
	var head [8]byte
	if _, err := io.ReadFull(nc, head[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(head[:4])
	if id := binary.BigEndian.Uint32(head[4:]); id != 7 {
		return fmt.Errorf("correlation id %d, want 7", id)
	}
	_, err := io.CopyN(io.Discard, nc, int64(size)-4)
	return err
}

// closedByPeer reports whether nc gets EOF (or a reset) within 10 s.
func closedByPeer(t *testing.T, nc net.Conn) {
	t.Helper()
	if err := nc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := nc.Read(make([]byte, 64))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
	}
}

func tlsDial(t *testing.T, addr string, c *tls.Config) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", addr, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

// SSL listener: kgo produces and consumes over TLS; the principal is the
// client certificate's subject (RFC 2253) or Anonymous without one;
// plaintext bytes on the TLS port and a TLS handshake on the plaintext
// port close those connections while the broker keeps serving.
func TestSSLListener(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"
		c.TLS.ClientAuth = "requested"
		pki.configure(c)
	})
	ssl, plain := b.ListenerAddr("SSL"), b.ListenerAddr("PLAINTEXT")
	anon := newClient(t, b, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.clientTLS(t, nil)))
	alice := &pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}}
	withCert := newClient(t, b, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.clientTLS(t, alice)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	roundTrip(t, anon, withCert, "over-tls", 50)

	for _, tc := range []struct {
		subject *pkix.Name
		want    string
	}{
		{nil, "User:ANONYMOUS"},
		{alice, "User:CN=alice,OU=eng"},
		{&pkix.Name{CommonName: "bob, jr", Organization: []string{"Acme"}, Country: []string{"DE"}}, `User:CN=bob\, jr,O=Acme,C=DE`},
	} {
		nc := tlsDial(t, ssl, pki.clientTLS(t, tc.subject))
		if err := apiVersions(nc); err != nil { // the server finished its handshake
			t.Fatal(err)
		}
		c := connOn(t, b, nc.LocalAddr())
		if p := c.principal().String(); p != tc.want || c.listener.name != "SSL" || c.sendfile {
			t.Fatalf("principal %q listener %s sendfile %v, want %q SSL false", p, c.listener.name, c.sendfile, tc.want)
		}
	}

	failures := counter(t, b.m.tlsHandshakeFailures)
	raw, err := net.Dial("tcp", ssl)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write(apiVersionsFrame); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, raw)
	if got := counter(t, b.m.tlsHandshakeFailures); got != failures+1 {
		t.Fatalf("tls handshake failures %v, want %v", got, failures+1)
	}

	bad := counter(t, b.m.badRequests)
	d := &net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", plain)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hello := pki.clientTLS(t, nil)
	hello.ServerName = "127.0.0.1"
	tc := tls.Client(nc, hello)
	if err := tc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tc.Handshake(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("TLS handshake on the plaintext port: %v, want the connection closed", err)
	}
	if got := counter(t, b.m.badRequests); got != bad+1 {
		t.Fatalf("bad requests %v, want %v", got, bad+1)
	}

	// Both listeners still serve.
	nc2 := tlsDial(t, ssl, pki.clientTLS(t, nil))
	if err := apiVersions(nc2); err != nil {
		t.Fatal(err)
	}
	pc := newClient(t, b, kgo.SeedBrokers(plain), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	roundTrip(t, pc, pc, "after-bad", 5)
}

// tls.client-auth=required refuses a client without a certificate.
func TestSSLClientAuthRequired(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "SSL://127.0.0.1:0"
		c.TLS.ClientAuth = "required"
		pki.configure(c)
	})
	ssl := b.ListenerAddr("SSL")
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ssl, pki.clientTLS(t, nil))
	if err == nil { // TLS 1.3: the client learns at its first read
		defer nc.Close()
		err = apiVersions(nc)
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a client without a certificate: %v, want the server's certificate required alert", err)
	}
	// A certificate from another CA is refused too.
	other := newTestPKI(t)
	cfg := other.clientTLS(t, &pkix.Name{CommonName: "mallory"})
	cfg.RootCAs = pki.clientTLS(t, nil).RootCAs
	nc, err = tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ssl, cfg)
	if err == nil {
		defer nc.Close()
		err = apiVersions(nc)
	}
	if err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	cl := newClient(t, b, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.clientTLS(t, &pkix.Name{CommonName: "carol"})), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	roundTrip(t, cl, cl, "required", 10)
}

// A changed certificate file is served to new connections without a
// restart (the tls.reload-check loop); an established connection keeps
// working.
func TestTLSReloadOnFileChange(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "SSL://127.0.0.1:0"
		c.TLS.ReloadCheck = 20 * time.Millisecond
		pki.configure(c)
	})
	ssl := b.ListenerAddr("SSL")
	peerCN := func(tc *tls.Conn) string { return tc.ConnectionState().PeerCertificates[0].Subject.CommonName }
	old := tlsDial(t, ssl, pki.clientTLS(t, nil))
	if cn := peerCN(old); cn != "server-1" {
		t.Fatalf("served %q, want server-1", cn)
	}
	c, k, err := pki.ca.Issue(tlsutil.CertRequest{Subject: pkix.Name{CommonName: "server-2"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pki.server.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pki.server.CertFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tc := tlsDial(t, ssl, pki.clientTLS(t, nil))
		cn := peerCN(tc)
		tc.Close()
		if cn == "server-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still served %q 10 s after the files changed", cn)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := apiVersions(old); err != nil {
		t.Fatalf("the connection made before the reload: %v", err)
	}
	if b.ReloadTLS() {
		t.Fatal("ReloadTLS of unchanged files reported a change")
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The console's Kafka client reaches a node whose only listener is SSL
// (with client certificates required).
func TestConsoleOverSSL(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "SSL://127.0.0.1:0"
		c.TLS.ClientAuth = "required"
		pki.configure(c)
	})
	src := b.ConsoleSource("test")
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := src.Groups(ctx); err != nil {
		t.Fatal(err)
	}
}

// SASL_SSL: kgo authenticates with SCRAM inside TLS and produces and
// consumes; the principal is the SASL user even with a client
// certificate; without SASL nothing but the pre-authentication APIs is
// served.
func TestSASLSSLListener(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"
		c.TLS.ClientAuth = "requested"
		pki.configure(c)
	})
	addUser(t, b, "alice", "alice-secret")
	addr := b.ListenerAddr("SASL_SSL")
	mech := scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism()
	cl := saslClient(t, addr, mech, kgo.DialTLSConfig(pki.clientTLS(t, &pkix.Name{CommonName: "cert-holder"})), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	roundTrip(t, cl, cl, "sasl-ssl", 20)
	found := false
	b.connMu.Lock()
	for c := range b.conns {
		if c.listener.name == "SASL_SSL" {
			found = true
			if p := c.principal().String(); p != "User:alice" {
				t.Errorf("SASL_SSL principal %q, want User:alice", p)
			}
		}
	}
	b.connMu.Unlock()
	if !found {
		t.Fatal("no SASL_SSL connection")
	}
	// TLS without SASL: ApiVersions is answered, Metadata closes.
	nc := tlsDial(t, addr, pki.clientTLS(t, nil))
	if err := apiVersions(nc); err != nil {
		t.Fatal(err)
	}
	md := []byte{0, 0, 0, 15, 0, 3, 0, 1, 0, 0, 0, 8, 0, 1, 't', 0xff, 0xff, 0xff, 0xff}
	if _, err := nc.Write(md); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, nc)
}

// certPrincipal writes subjects as Java's X500Principal.getName() (RFC
// 2253): last RDN first, its keywords, other types as OID=#hex, escapes.
func TestCertPrincipalRFC2253(t *testing.T) {
	email := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	uid := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	dc := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	ia5 := func(s string) asn1.RawValue {
		b, err := asn1.MarshalWithParams(s, "ia5")
		if err != nil {
			t.Fatal(err)
		}
		var rv asn1.RawValue
		if _, err := asn1.Unmarshal(b, &rv); err != nil {
			t.Fatal(err)
		}
		return rv
	}
	for _, tc := range []struct {
		name pkix.RDNSequence
		want string
	}{
		{(&pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}, Organization: []string{"Acme"}, Country: []string{"DE"}}).ToRDNSequence(),
			"CN=alice,OU=eng,O=Acme,C=DE"},
		{pkix.RDNSequence{{{Type: dc, Value: "example"}}, {{Type: dc, Value: "com"}}, {{Type: uid, Value: "u1"}}},
			"UID=u1,DC=com,DC=example"},
		{pkix.RDNSequence{{{Type: cn, Value: " a+b#c,d=e;\"x\"<y>\\ "}}},
			`CN=\ a\+b\#c\,d\=e\;\"x\"\<y\>\\\ `},
		{pkix.RDNSequence{{{Type: cn, Value: "bob"}, {Type: uid, Value: "42"}}},
			"CN=bob+UID=42"},
		{pkix.RDNSequence{{{Type: cn, Value: "carol"}}, {{Type: email, Value: ia5("c@x.io")}}},
			"1.2.840.113549.1.9.1=#16066340782e696f,CN=carol"},
	} {
		raw, err := asn1.Marshal(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := rfc2253(raw); got != tc.want {
			t.Errorf("rfc2253(%v) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A node restarted with another listener set re-registers: the metadata
// and Metadata answers follow the new listeners.
func TestListenersChangeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, func(c *configs.Config) { c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, dir, func(c *configs.Config) {
		c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0,EXTERNAL://127.0.0.1:0"
		c.Kafka.ListenerProtocols = "EXTERNAL:PLAINTEXT"
	})
	want := map[string]string{"PLAINTEXT": b.ListenerAddr("PLAINTEXT"), "EXTERNAL": b.ListenerAddr("EXTERNAL")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		reg, _ := b.store.FSM().Broker(b.cfg.NodeID)
		if maps.Equal(reg.Listeners, want) && reg.Kafka == want["PLAINTEXT"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration %+v, want listeners %v", reg, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl := newClient(t, b, kgo.SeedBrokers(want["EXTERNAL"]))
	mr, err := cl.SeedBrokers()[0].Request(ctx, kmsg.NewPtrMetadataRequest())
	if err != nil {
		t.Fatal(err)
	}
	if m := mr.(*kmsg.MetadataResponse); len(m.Brokers) != 1 || m.Brokers[0].Port != portOf(t, want["EXTERNAL"]) {
		t.Fatalf("Metadata over EXTERNAL after the restart: %+v, want %s", m.Brokers, want["EXTERNAL"])
	}
}
