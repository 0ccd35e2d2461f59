package compat

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/tlsutil"
)

// compatPKI is a throwaway CA with a server certificate for 127.0.0.1
// (an IP SAN: librdkafka verifies the host) and a client certificate, in
// files.
type compatPKI struct {
	ca     *tlsutil.CA
	caFile string
	server tlsutil.Files
	client tlsutil.Files // subject CN=compat-client,OU=tests
	dir    string
}

func newCompatPKI(t *testing.T) *compatPKI {
	t.Helper()
	ca, err := tlsutil.NewCA("tusk compat CA", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &compatPKI{ca: ca, dir: dir}
	if p.caFile, err = ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	p.server = p.issue(t, "server", pkix.Name{CommonName: "server-1"}, true)
	p.client = p.issue(t, "client", pkix.Name{CommonName: "compat-client", OrganizationalUnit: []string{"tests"}}, false)
	return p
}

func (p *compatPKI) issue(t *testing.T, name string, subject pkix.Name, server bool) tlsutil.Files {
	t.Helper()
	r := tlsutil.CertRequest{Subject: subject, Node: -1}
	if server {
		// The single node's certificate names it too, for node-to-node
		// TLS (tls.ca-file is set).
		r.IPs, r.Node = []net.IP{net.IPv4(127, 0, 0, 1)}, 1
	}
	f, err := p.ca.IssueFiles(p.dir, name, r)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// opts are the serve flags of an SSL node with these files.
func (p *compatPKI) opts(clientAuth string) []startOpt {
	return []startOpt{
		withFlag("tls-cert-file", p.server.CertFile), withFlag("tls-key-file", p.server.KeyFile),
		withFlag("tls-ca-file", p.caFile), withFlag("tls-client-auth", clientAuth),
	}
}

// tlsConfig trusts the CA and presents the client certificate if cert.
func (p *compatPKI) tlsConfig(t *testing.T, cert bool) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert {
		kp, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}

// sslRecords produces count records "<prefix>-<i>" to partition 0 of
// topic through cl and returns them as kcat would print them with
// -f '%o %s\n'.
func sslRecords(t *testing.T, cl *kgo.Client, topic, prefix string, count int) string {
	t.Helper()
	ctx := ctxTimeout(t, 60*time.Second)
	var want strings.Builder
	for i := 0; i < count; i++ {
		r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		if r.Offset != int64(i) {
			t.Fatalf("record %d at offset %d", i, r.Offset)
		}
		fmt.Fprintf(&want, "%d %s\n", i, r.Value)
	}
	return want.String()
}

// consumeLines reads partition 0 of topic from the start through cl until
// count records arrived and prints them as "<offset> <value>" lines.
func consumeLines(t *testing.T, cl *kgo.Client, topic string, count int) string {
	t.Helper()
	ctx := ctxTimeout(t, 60*time.Second)
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}})
	var out strings.Builder
	for got := 0; got < count; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d: %v", got, count, ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Fprintf(&out, "%d %s\n", r.Offset, r.Value)
			got++
		})
	}
	return out.String()
}

// TestTLSClients: one node with a PLAINTEXT and an SSL listener
// (tls.client-auth requested). kgo (with and without a client
// certificate), kcat, confluent-kafka-python and sarama produce and consume
// exact records over SSL; each listener's clients are given only its own
// address; plaintext bytes on the SSL port and a TLS handshake on the
// plaintext port close only those connections.
func TestTLSClients(t *testing.T) {
	setupDone := cardSetup(t, "tls")
	pki := newCompatPKI(t)
	n := startTusk(t, append(pki.opts("requested"), withListeners("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"))...)
	plain, ssl := n.listener(t, "PLAINTEXT"), n.listener(t, "SSL")
	if n.Kafka != plain || plain == ssl {
		t.Fatalf("ready file kafka %q, listeners %v", n.Kafka, n.Listeners)
	}
	adm, _ := newAdm(t, n)
	setupDone()

	t.Run("kgo", func(t *testing.T) {
		card(t, "kgo", "SSL produce/consume (without and with a client certificate)")
		createTopic(t, adm, "tls-kgo", 1, nil)
		anon := newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, false)))
		want := sslRecords(t, anon, "tls-kgo", "kgo", 200)
		withCert := newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, true)))
		if got := consumeLines(t, withCert, "tls-kgo", 200); got != want {
			t.Fatalf("consumed over SSL:\n%s\nwant:\n%s", got, want)
		}
		// Each listener's clients see only its address.
		for _, c := range []struct {
			addr string
			cl   *kgo.Client
		}{{ssl, anon}, {plain, newKgo(t, n)}} {
			resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxTimeout(t, 20*time.Second), c.cl)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Brokers) != 1 || net.JoinHostPort(resp.Brokers[0].Host, fmt.Sprint(resp.Brokers[0].Port)) != c.addr {
				t.Fatalf("Metadata brokers %+v, want only %s", resp.Brokers, c.addr)
			}
		}
	})

	t.Run("kcat", func(t *testing.T) {
		card(t, "kcat", "SSL produce/consume (ssl.ca.location)")
		kcat := requireTool(t, "kcat")
		createTopic(t, adm, "tls-kcat", 1, nil)
		common := []string{"-b", ssl, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + pki.caFile}
		var in, want strings.Builder
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&in, "kcat-%d\n", i)
			fmt.Fprintf(&want, "%d kcat-%d\n", i, i)
		}
		runTool(t, []byte(in.String()), kcat, append(common, "-P", "-t", "tls-kcat", "-p", "0", "-X", "acks=all")...)
		out, _ := runTool(t, nil, kcat, append(common, "-C", "-t", "tls-kcat", "-p", "0", "-o", "beginning", "-e", "-f", "%o %s\n")...)
		if out != want.String() {
			t.Fatalf("kcat consumed:\n%s\nwant:\n%s", out, want.String())
		}
		// kgo reads what kcat wrote.
		if got := consumeLines(t, newKgo(t, n), "tls-kcat", 100); got != want.String() {
			t.Fatalf("kgo read kcat's records:\n%s", got)
		}
	})

	t.Run("confluent", func(t *testing.T) {
		card(t, "confluent-kafka-python", "SSL produce/consume (with and without a client certificate)")
		py := requirePythonModule(t, "confluent_kafka", "python3-confluent-kafka")
		script, err := filepath.Abs("testdata/confluent_ssl.py")
		if err != nil {
			t.Fatal(err)
		}
		for i, args := range [][]string{{}, {pki.client.CertFile, pki.client.KeyFile}} {
			topic := fmt.Sprintf("tls-confluent-%d", i)
			createTopic(t, adm, topic, 1, nil)
			out, _ := runTool(t, nil, py, append([]string{script, ssl, topic, "50", pki.caFile}, args...)...)
			var want strings.Builder
			for j := 0; j < 50; j++ {
				fmt.Fprintf(&want, "%d confluent-ssl-%d\n", j, j)
			}
			if out != want.String() {
				t.Fatalf("confluent-kafka consumed (%v):\n%s\nwant:\n%s", args, out, want.String())
			}
		}
	})

	t.Run("sarama", func(t *testing.T) {
		card(t, "sarama", "SSL SyncProducer + ConsumePartition")
		const topic, count = "tls-sarama", 500
		createTopic(t, adm, topic, 1, nil)
		cfg := sarama.NewConfig()
		cfg.Version = sarama.V2_1_0_0
		cfg.ClientID = "tusk-compat-sarama-ssl"
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = pki.tlsConfig(t, true)
		cfg.Net.DialTimeout = 5 * time.Second
		cfg.Net.ReadTimeout = 15 * time.Second
		cfg.Net.WriteTimeout = 15 * time.Second
		cfg.Producer.Return.Successes = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Partitioner = sarama.NewManualPartitioner
		cfg.Metadata.AllowAutoTopicCreation = false
		cfg.Consumer.Return.Errors = true
		prod, err := sarama.NewSyncProducer([]string{ssl}, cfg)
		if err != nil {
			t.Fatalf("NewSyncProducer over SSL: %v", err)
		}
		for i := 0; i < count; i++ {
			p, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(fmt.Sprintf("sarama-%d", i))})
			if err != nil || p != 0 || off != int64(i) {
				t.Fatalf("message %d: partition %d offset %d, %v", i, p, off, err)
			}
		}
		if err := prod.Close(); err != nil {
			t.Fatal(err)
		}
		cons, err := sarama.NewConsumer([]string{ssl}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		deadline := time.After(60 * time.Second)
		for i := 0; i < count; i++ {
			select {
			case m := <-pc.Messages():
				if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("sarama-%d", i) {
					t.Fatalf("record %d: offset %d %q", i, m.Offset, m.Value)
				}
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-deadline:
				t.Fatalf("consumed %d of %d", i, count)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		card(t, "raw", "plaintext bytes on the SSL port, TLS on the plaintext port")
		// An ApiVersions request in plaintext to the SSL port: the
		// handshake fails and the broker closes the connection.
		rc := dialRaw(t, ssl)
		if err := rc.write(frame(appendRequestHeader(nil, 18, 0, 1, "raw", false))); err != nil {
			t.Fatal(err)
		}
		if what, _ := rc.expectClosed(10 * time.Second); what != "closed" {
			t.Fatalf("plaintext on the SSL port: %s", what)
		}
		// A TLS handshake to the plaintext port: the ClientHello is a bad
		// frame, the connection closes.
		nc, err := net.DialTimeout("tcp", plain, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cfg := pki.tlsConfig(t, false)
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(nc, cfg)
		if err := tc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := tc.Handshake(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("TLS on the plaintext port: %v, want the connection closed", err)
		}
		// Both listeners still serve.
		createTopic(t, adm, "tls-after-bad", 1, nil)
		want := sslRecords(t, newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, false))), "tls-after-bad", "after", 5)
		if got := consumeLines(t, newKgo(t, n), "tls-after-bad", 5); got != want {
			t.Fatalf("after bad input:\n%s", got)
		}
	})
}

// TestTLSClientAuthRequired: with tls.client-auth=required a client
// without a certificate is refused (kgo, kcat) and one with a certificate
// of the CA works.
func TestTLSClientAuthRequired(t *testing.T) {
	card(t, "tls", "tls.client-auth=required (kgo, kcat)")
	pki := newCompatPKI(t)
	n := startTusk(t, append(pki.opts("required"), withListeners("SSL://127.0.0.1:0"))...)
	ssl := n.listener(t, "SSL")
	if n.Kafka != ssl {
		t.Fatalf("ready file kafka %q, listeners %v", n.Kafka, n.Listeners)
	}
	noCert := newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, false)), kgo.RetryTimeout(3*time.Second))
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxTimeout(t, 10*time.Second), noCert); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("kgo without a client certificate: %v, want the certificate required alert", err)
	}
	withCert := newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, true)))
	adm := newAdmOn(withCert)
	createTopic(t, adm, "tls-required", 1, nil)
	want := sslRecords(t, withCert, "tls-required", "req", 20)

	kcat := requireTool(t, "kcat")
	common := []string{"-b", ssl, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + pki.caFile}
	out, _ := runTool(t, nil, kcat, append(common, "-X", "ssl.certificate.location="+pki.client.CertFile, "-X", "ssl.key.location="+pki.client.KeyFile,
		"-C", "-t", "tls-required", "-p", "0", "-o", "beginning", "-e", "-f", "%o %s\n")...)
	if out != want {
		t.Fatalf("kcat with a certificate consumed:\n%s\nwant:\n%s", out, want)
	}
	if err := runToolErr(nil, kcat, append(common, "-L", "-m", "5")...); err == nil {
		t.Fatal("kcat without a client certificate listed the metadata")
	}
}

// TestTLSReloadSIGHUP: a new certificate written over the files is served
// to new connections after SIGHUP, without a restart (the file check is
// an hour away); a client connected before keeps working.
func TestTLSReloadSIGHUP(t *testing.T) {
	card(t, "tls", "certificate reload on SIGHUP")
	pki := newCompatPKI(t)
	n := startTusk(t, append(pki.opts("none"), withListeners("SSL://127.0.0.1:0"), withFlag("tls-reload-check", "1h"))...)
	ssl := n.listener(t, "SSL")
	served := func() string {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ssl, pki.tlsConfig(t, false))
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "server-1" {
		t.Fatalf("served %q, want server-1", cn)
	}
	before := newKgo(t, n, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.tlsConfig(t, false)))
	createTopic(t, newAdmOn(before), "tls-reload", 1, nil)
	sslRecords(t, before, "tls-reload", "before", 3)

	c, k, err := pki.ca.Issue(tlsutil.CertRequest{Subject: pkix.Name{CommonName: "server-2"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pki.server.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pki.server.CertFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if cn := served(); cn != "server-1" {
		t.Fatalf("served %q before SIGHUP, want server-1 (the file check is an hour away)", cn)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the new certificate served after SIGHUP", func() bool { return served() == "server-2" })
	// The client connected before still produces, at the next offset.
	r := &kgo.Record{Topic: "tls-reload", Partition: 0, Value: []byte("after")}
	if err := before.ProduceSync(ctxTimeout(t, 20*time.Second), r).FirstErr(); err != nil || r.Offset != 3 {
		t.Fatalf("produce after the reload: offset %d, %v", r.Offset, err)
	}
	if !bytes.Contains(mustRead(t, n.LogPath), []byte("tls: certificate reloaded")) {
		t.Fatal("the log does not show the reload")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newAdmOn is a kadm client over cl.
func newAdmOn(cl *kgo.Client) *kadm.Client { return kadm.NewClient(cl) }

// runToolErr runs a tool that is expected to fail and returns its error
// (nil if it succeeded).
func runToolErr(stdin []byte, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.Run()
}

// TestClusterListeners: three nodes, each with a PLAINTEXT and an SSL
// listener. Over each listener Metadata names every node at that
// listener's address, a consumer group's coordinator is found there, and
// kgo produces to and consumes from partitions led by every node over SSL
// alone (exact records, committed offsets). With produce.forward off, a
// misdirected Produce's KIP-951 hint names the leader at the address of
// the listener the client used.
func TestClusterListeners(t *testing.T) {
	card(t, "kgo", "3 nodes with PLAINTEXT and SSL listeners: per-listener addresses, produce/consume/group over SSL")
	pki := newCompatPKI(t)
	certs := map[int32]tlsutil.Files{}
	for id := int32(1); id <= 3; id++ {
		f, err := pki.ca.IssueFiles(pki.dir, fmt.Sprintf("node%d", id), tlsutil.CertRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("node%d", id)},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: id})
		if err != nil {
			t.Fatal(err)
		}
		certs[id] = f
	}
	c := startClusterWith(t, 3, func(id int32) []startOpt {
		return []startOpt{withListeners("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"), func(o *startOpts) { o.args = append(o.args, "--produce-forward=false") },
			withFlag("tls-cert-file", certs[id].CertFile), withFlag("tls-key-file", certs[id].KeyFile), withFlag("tls-ca-file", pki.caFile)}
	})
	want := map[string]map[int32]string{"PLAINTEXT": {}, "SSL": {}}
	for id := int32(1); id <= 3; id++ {
		for name := range want {
			want[name][id] = c.node(id).listener(t, name)
		}
	}
	sslOpts := func(id int32) []kgo.Opt {
		return []kgo.Opt{kgo.SeedBrokers(want["SSL"][id]), kgo.DialTLSConfig(pki.tlsConfig(t, false))}
	}
	for name, addrs := range want {
		for id := int32(1); id <= 3; id++ {
			opts := []kgo.Opt{kgo.SeedBrokers(addrs[id])}
			if name == "SSL" {
				opts = sslOpts(id)
			}
			cl := newKgo(t, c.node(id), opts...)
			waitUntil(t, 20*time.Second, fmt.Sprintf("Metadata over %s of node %d names every node at its %s address", name, id, name), func() bool {
				resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxTimeout(t, 10*time.Second), cl)
				if err != nil || len(resp.Brokers) != 3 {
					return false
				}
				for _, b := range resp.Brokers {
					if net.JoinHostPort(b.Host, fmt.Sprint(b.Port)) != addrs[b.NodeID] {
						return false
					}
				}
				return true
			})
		}
	}

	const topic, parts, perPart = "cluster-ssl", 6, 100
	prod := newKgo(t, c.node(1), append(sslOpts(1), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	adm := kadm.NewClient(prod)
	if _, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), parts, 3, nil, topic); err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]bool{}
	leaderOf := map[int32]int32{}
	waitUntil(t, 20*time.Second, "every partition has a leader", func() bool {
		md, err := adm.Metadata(ctxTimeout(t, 10*time.Second), topic)
		if err != nil || len(md.Topics[topic].Partitions) != parts {
			return false
		}
		clear(leaders)
		for _, p := range md.Topics[topic].Partitions {
			if p.Leader < 0 {
				return false
			}
			leaders[p.Leader] = true
			leaderOf[p.Partition] = p.Leader
		}
		return true
	})
	// With produce.forward off, a Produce (v10+) to a node that does not
	// lead the partition answers NOT_LEADER_OR_FOLLOWER with the KIP-951
	// hint: the leader's address on the listener the client used.
	ldr := leaderOf[0]
	other := ldr%3 + 1
	for name, addrs := range want {
		opts := []kgo.Opt{kgo.SeedBrokers(addrs[other])}
		if name == "SSL" {
			opts = sslOpts(other)
		}
		cl := newKgo(t, c.node(other), opts...)
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = 0, buildBatch([][]byte{[]byte("misdirected")}, time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		// Node other learns of the topic when it applies the Raft entry,
		// which may come after the node that answered Metadata above:
		// until then it answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka does.
		var pr *kmsg.ProduceResponse
		waitUntil(t, 20*time.Second, fmt.Sprintf("node %d knows partition 0 of %s", other, topic), func() bool {
			r, err := cl.SeedBrokers()[0].Request(ctxTimeout(t, 20*time.Second), req)
			if err != nil {
				t.Fatal(err)
			}
			pr = r.(*kmsg.ProduceResponse)
			return pr.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code
		})
		sp := pr.Topics[0].Partitions[0]
		if pr.Version < 10 || sp.ErrorCode != kerr.NotLeaderForPartition.Code || sp.CurrentLeader.LeaderID != ldr || len(pr.Brokers) != 1 ||
			pr.Brokers[0].NodeID != ldr || net.JoinHostPort(pr.Brokers[0].Host, fmt.Sprint(pr.Brokers[0].Port)) != addrs[ldr] {
			t.Fatalf("Produce v%d over %s to node %d for a partition node %d leads: error %d, leader %d, brokers %+v; want NOT_LEADER_OR_FOLLOWER and node %d at %s",
				pr.Version, name, other, ldr, sp.ErrorCode, sp.CurrentLeader.LeaderID, pr.Brokers, ldr, addrs[ldr])
		}
	}
	ctx := ctxTimeout(t, 60*time.Second)
	for i := 0; i < parts*perPart; i++ {
		r := &kgo.Record{Topic: topic, Partition: int32(i % parts), Value: []byte(fmt.Sprintf("v-%d-%d", i%parts, i/parts))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d over SSL: %v", i, err)
		}
		if r.Offset != int64(i/parts) {
			t.Fatalf("record %d at %d/%d", i, r.Partition, r.Offset)
		}
	}
	// A group member on node 2's SSL listener: FindCoordinator answers an
	// SSL address, the group reads everything and commits.
	cons := newKgo(t, c.node(2), append(sslOpts(2), kgo.ConsumerGroup("ssl-group"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	next := map[int32]int64{}
	for got := 0; got < parts*perPart; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d: %v", got, parts*perPart, ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch over SSL: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			if w := fmt.Sprintf("v-%d-%d", r.Partition, next[r.Partition]); r.Offset != next[r.Partition] || string(r.Value) != w {
				t.Fatalf("partition %d: offset %d %q, want %d %q", r.Partition, r.Offset, r.Value, next[r.Partition], w)
			}
			next[r.Partition]++
			got++
		})
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey, fc.CoordinatorKeys = "ssl-group", []string{"ssl-group"}
	resp, err := fc.RequestWith(ctx, cons)
	if err != nil {
		t.Fatal(err)
	}
	host, port, id := resp.Host, resp.Port, resp.NodeID
	if len(resp.Coordinators) == 1 {
		host, port, id = resp.Coordinators[0].Host, resp.Coordinators[0].Port, resp.Coordinators[0].NodeID
	}
	if net.JoinHostPort(host, fmt.Sprint(port)) != want["SSL"][id] {
		t.Fatalf("FindCoordinator over SSL: node %d at %s:%d, want its SSL address %s", id, host, port, want["SSL"][id])
	}
	offs, err := kadm.NewClient(cons).FetchOffsets(ctx, "ssl-group")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		if o, ok := offs.Lookup(topic, p); !ok || o.At != perPart {
			t.Fatalf("committed offset of partition %d: %+v, want %d", p, o, perPart)
		}
	}
	t.Logf("partition leaders %v; coordinator node %d", leaders, id)
}
