package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
)

// saslBroker is a broker with a SASL_PLAINTEXT listener, advertised to
// clients, beside its plaintext one.
type saslBroker struct {
	*Broker
	addr string // the SASL_PLAINTEXT listener
}

func startSASLBroker(t *testing.T, mutate ...func(*configs.Config)) saslBroker {
	t.Helper()
	return startSASLBrokerIn(t, t.TempDir(), mutate...)
}

func startSASLBrokerIn(t *testing.T, dir string, mutate ...func(*configs.Config)) saslBroker {
	t.Helper()
	b := startBroker(t, dir, append([]func(*configs.Config){func(c *configs.Config) {
		c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"
		c.SASL.FailedAuthDelay = 20 * time.Millisecond
	}}, mutate...)...)
	return saslBroker{Broker: b, addr: b.ListenerAddr(configs.ProtocolSASLPlaintext)}
}

// addUser stores SCRAM-SHA-256 and SCRAM-SHA-512 credentials of a user.
func addUser(t *testing.T, b *Broker, user, pass string) {
	t.Helper()
	var ups []metadata.ScramUpsert
	for _, mech := range auth.ScramMechanisms() {
		c, err := auth.NewScramCredential(mech, pass, []byte("salt-"+user), 4096)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, metadata.ScramUpsert{User: user, Mechanism: mech, Credential: metadata.ScramCredential(c)})
	}
	if err := b.store.Apply(context.Background(), metadata.AlterScramCredentials{Upserts: ups}); err != nil {
		t.Fatal(err)
	}
}

func saslClient(t *testing.T, addr string, m sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.SASL(m), kgo.MetadataMinAge(50 * time.Millisecond),
		kgo.RetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestSASLClients: franz-go authenticates with SCRAM-SHA-256,
// SCRAM-SHA-512 and PLAIN, produces and reads back; a wrong password or
// an unknown user gets SASL_AUTHENTICATION_FAILED; the plaintext listener
// keeps answering without SASL.
func TestSASLClients(t *testing.T) {
	b := startSASLBroker(t)
	addUser(t, b.Broker, "alice", "alice-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := scram.Auth{User: "alice", Pass: "alice-secret"}
	for i, m := range []sasl.Mechanism{good.AsSha256Mechanism(), good.AsSha512Mechanism(), plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism()} {
		topic := fmt.Sprintf("sasl-%d", i)
		cl := saslClient(t, b.addr, m, kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(topic))
		for j := 0; j < 3; j++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(j))}).FirstErr(); err != nil {
				t.Fatalf("%s produce: %v", m.Name(), err)
			}
		}
		var got []string
		for len(got) < 3 {
			fs := cl.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("%s fetch: %v", m.Name(), err)
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Value)) })
		}
		if strings.Join(got, ",") != "0:0,1:1,2:2" {
			t.Fatalf("%s read %v", m.Name(), got)
		}
	}
	bad := scram.Auth{User: "alice", Pass: "wrong"}
	for _, m := range []sasl.Mechanism{bad.AsSha256Mechanism(), bad.AsSha512Mechanism(), plain.Auth{User: "alice", Pass: "wrong"}.AsMechanism(),
		scram.Auth{User: "nobody", Pass: "x"}.AsSha512Mechanism()} {
		cl := saslClient(t, b.addr, m)
		err := cl.Ping(ctx)
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("%s with a wrong password: %v", m.Name(), err)
		}
	}
	plainCl := newClient(t, b.Broker, kgo.SeedBrokers(b.KafkaAddr()))
	if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, plainCl); err != nil {
		t.Fatal(err)
	}
}

// rawConn speaks Kafka framing over one connection.
type rawConn struct {
	t    *testing.T
	nc   net.Conn
	br   *bufio.Reader
	corr int32
	fmt  *kmsg.RequestFormatter
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc), fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw"))}
}

// send writes one request and returns its correlation id.
func (r *rawConn) send(req kmsg.Request) error {
	r.corr++
	_, err := r.nc.Write(r.fmt.AppendRequest(nil, req, r.corr))
	return err
}

// recv reads the response to the last request into resp.
func (r *rawConn) recv(req kmsg.Request, resp kmsg.Response) error {
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(r.br, sz[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(sz[:]))
	if _, err := io.ReadFull(r.br, body); err != nil {
		return err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != r.corr {
		return fmt.Errorf("correlation id %d, want %d", got, r.corr)
	}
	body = body[4:]
	if req.IsFlexible() && req.Key() != int16(kmsg.ApiVersions) {
		body = body[1:] // empty header tags
	}
	resp.SetVersion(req.GetVersion())
	return resp.ReadFrom(body)
}

func (r *rawConn) roundTrip(req kmsg.Request, resp kmsg.Response) {
	r.t.Helper()
	if err := r.send(req); err != nil {
		r.t.Fatal(err)
	}
	if err := r.recv(req, resp); err != nil {
		r.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
}

// closed waits until the server closes the connection (a read ends
// without data).
func (r *rawConn) closed() bool {
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := r.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func (r *rawConn) handshake(mech string) *kmsg.SASLHandshakeResponse {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = 1, mech
	resp := kmsg.NewPtrSASLHandshakeResponse()
	r.roundTrip(req, resp)
	return resp
}

func (r *rawConn) authenticate(version int16, msg []byte) *kmsg.SASLAuthenticateResponse {
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.Version, req.SASLAuthBytes = version, msg
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	r.roundTrip(req, resp)
	return resp
}

// TestSASLPreAuth: before authenticating, another API or a frame above
// 512 KiB (a 100 MB size prefix too) closes the connection; ApiVersions
// advertises SaslHandshake v0-1 and SaslAuthenticate v0-2; an
// authenticated client meanwhile keeps working.
func TestSASLPreAuth(t *testing.T) {
	b := startSASLBroker(t)
	addUser(t, b.Broker, "alice", "pw")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := saslClient(t, b.addr, scram.Auth{User: "alice", Pass: "pw"}.AsSha512Mechanism(), kgo.AllowAutoTopicCreation())
	produce := func() {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce()

	r := dialRaw(t, b.addr)
	av := kmsg.NewPtrApiVersionsResponse()
	avReq := kmsg.NewPtrApiVersionsRequest()
	avReq.Version = 3
	avReq.ClientSoftwareName, avReq.ClientSoftwareVersion = "raw", "1"
	r.roundTrip(avReq, av)
	versions := map[int16][2]int16{}
	for _, k := range av.ApiKeys {
		versions[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	if versions[17] != [2]int16{0, 1} || versions[36] != [2]int16{0, 2} {
		t.Fatalf("SaslHandshake %v, SaslAuthenticate %v", versions[17], versions[36])
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 9
	if err := r.send(md); err != nil {
		t.Fatal(err)
	}
	if !r.closed() {
		t.Fatal("Metadata before authentication did not close the connection")
	}

	for _, size := range []uint32{512<<10 + 1, 100 << 20} {
		r := dialRaw(t, b.addr)
		var frame [10]byte
		binary.BigEndian.PutUint32(frame[:], size)
		binary.BigEndian.PutUint16(frame[4:], 36) // SaslAuthenticate
		if _, err := r.nc.Write(frame[:]); err != nil {
			t.Fatal(err)
		}
		if !r.closed() {
			t.Fatalf("a %d-byte frame before authentication did not close the connection", size)
		}
	}
	// Truncated exchange: client-first, then the client goes away.
	r = dialRaw(t, b.addr)
	r.handshake(auth.MechanismScramSHA256)
	r.authenticate(1, []byte("n,,n=alice,r=abc"))
	r.nc.Close()
	produce()
}

// TestSASLBadExchanges: a mechanism not enabled answers
// UNSUPPORTED_SASL_MECHANISM with the enabled list and closes; a wrong
// nonce, a bad proof, a malformed message, PLAIN with a wrong password
// and a SaslAuthenticate without a handshake fail with
// SASL_AUTHENTICATION_FAILED (or ILLEGAL_SASL_STATE) and close; the
// failure delay doubles for repeated failures from one address.
func TestSASLBadExchanges(t *testing.T) {
	const base = 20 * time.Millisecond
	b := startSASLBroker(t, func(c *configs.Config) { c.SASL.Mechanisms = "SCRAM-SHA-256,PLAIN" })
	addUser(t, b.Broker, "alice", "pw")

	r := dialRaw(t, b.addr)
	hs := r.handshake(auth.MechanismScramSHA512)
	if hs.ErrorCode != kerr.UnsupportedSaslMechanism.Code || strings.Join(hs.SupportedMechanisms, ",") != "SCRAM-SHA-256,PLAIN" {
		t.Fatalf("handshake: error %d, mechanisms %v", hs.ErrorCode, hs.SupportedMechanisms)
	}
	if !r.closed() {
		t.Fatal("not closed after an unsupported mechanism")
	}

	r = dialRaw(t, b.addr)
	resp := r.authenticate(0, []byte("\x00alice\x00pw"))
	if resp.ErrorCode != kerr.IllegalSaslState.Code || !r.closed() {
		t.Fatalf("SaslAuthenticate without handshake: error %d", resp.ErrorCode)
	}

	type attempt struct {
		name string
		mech string
		run  func(r *rawConn) *kmsg.SASLAuthenticateResponse
	}
	scramFinal := func(final func(serverFirst string) string) func(r *rawConn) *kmsg.SASLAuthenticateResponse {
		return func(r *rawConn) *kmsg.SASLAuthenticateResponse {
			first := r.authenticate(1, []byte("n,,n=alice,r=clientnonce"))
			if first.ErrorCode != 0 {
				t.Fatalf("client-first: error %d", first.ErrorCode)
			}
			return r.authenticate(1, []byte(final(string(first.SASLAuthBytes))))
		}
	}
	attempts := []attempt{
		{"wrong nonce", auth.MechanismScramSHA256, scramFinal(func(string) string {
			return "c=biws,r=clientnonceXYZ,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		})},
		{"bad proof", auth.MechanismScramSHA256, scramFinal(func(sf string) string {
			nonce := strings.TrimPrefix(strings.Split(sf, ",")[0], "r=")
			return "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		})},
		{"malformed client-first", auth.MechanismScramSHA256, func(r *rawConn) *kmsg.SASLAuthenticateResponse {
			return r.authenticate(2, []byte("garbage"))
		}},
		{"PLAIN wrong password", auth.MechanismPlain, func(r *rawConn) *kmsg.SASLAuthenticateResponse {
			return r.authenticate(2, []byte("\x00alice\x00nope"))
		}},
	}
	for i, a := range attempts {
		r := dialRaw(t, b.addr)
		if hs := r.handshake(a.mech); hs.ErrorCode != 0 {
			t.Fatalf("%s: handshake error %d", a.name, hs.ErrorCode)
		}
		start := time.Now()
		resp := a.run(r)
		took := time.Since(start)
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || resp.ErrorMessage == nil {
			t.Fatalf("%s: error %d", a.name, resp.ErrorCode)
		}
		if want := base << i; took < want {
			t.Fatalf("%s (failure %d from this address): answered after %v, want at least %v", a.name, i+1, took, want)
		}
		if !r.closed() {
			t.Fatalf("%s: connection not closed", a.name)
		}
	}
	if got := b.authFailures.record("127.0.0.1", base, time.Now()); got != base<<len(attempts) {
		t.Fatalf("next delay %v, want %v", got, base<<len(attempts))
	}

	// Others are served meanwhile: PLAIN works.
	cl := saslClient(t, b.addr, plain.Auth{User: "alice", Pass: "pw"}.AsMechanism())
	if err := cl.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAuthFailureDelay: the delay doubles per recent failure from an
// address, is capped at 5 s, starts over after a quiet minute, and other
// addresses are not slowed.
func TestAuthFailureDelay(t *testing.T) {
	var f authFailures
	now := time.Unix(1000, 0)
	var got []time.Duration
	for i := 0; i < 8; i++ {
		got = append(got, f.record("10.0.0.1", 100*time.Millisecond, now))
		now = now.Add(time.Second)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v", got)
		}
	}
	if d := f.record("10.0.0.2", 100*time.Millisecond, now); d != 100*time.Millisecond {
		t.Fatalf("another address waits %v", d)
	}
	if d := f.record("10.0.0.1", 100*time.Millisecond, now.Add(2*time.Minute)); d != 100*time.Millisecond {
		t.Fatalf("after a quiet minute %v", d)
	}
}

// TestSASLReauth (KIP-368): with sasl.max-reauth 3 s, franz-go
// re-authenticates its connections in place and keeps producing across
// more than two lifetimes without a disconnect; a raw connection that
// does not re-authenticate is closed at its first request after expiry,
// and a re-authentication as another user fails.
func TestSASLReauth(t *testing.T) {
	const lifetime = 3 * time.Second
	b := startSASLBroker(t, func(c *configs.Config) { c.SASL.MaxReauth = lifetime })
	addUser(t, b.Broker, "alice", "pw")
	addUser(t, b.Broker, "bob", "pw")

	var disconnects atomic.Int32
	cl := saslClient(t, b.addr, scram.Auth{User: "alice", Pass: "pw"}.AsSha256Mechanism(), kgo.AllowAutoTopicCreation(),
		kgo.WithHooks(disconnectHook{&disconnects}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	end := time.Now().Add(2*lifetime + lifetime/2)
	n := 0
	for time.Now().Before(end) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "reauth", Value: []byte(fmt.Sprint(n))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", n, err)
		}
		n++
		time.Sleep(50 * time.Millisecond) // pacing the producer, not synchronization
	}
	if d := disconnects.Load(); d != 0 {
		t.Fatalf("%d disconnects while re-authenticating", d)
	}

	r := dialRaw(t, b.addr)
	r.handshake(auth.MechanismPlain)
	resp := r.authenticate(1, []byte("\x00alice\x00pw"))
	if resp.ErrorCode != 0 || resp.SessionLifetimeMillis != lifetime.Milliseconds() {
		t.Fatalf("authenticate: error %d, lifetime %d", resp.ErrorCode, resp.SessionLifetimeMillis)
	}
	// Re-authenticating as someone else fails and closes.
	r.handshake(auth.MechanismPlain)
	if resp := r.authenticate(1, []byte("\x00bob\x00pw")); resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || !r.closed() {
		t.Fatalf("re-authentication as bob: error %d", resp.ErrorCode)
	}

	r = dialRaw(t, b.addr)
	r.handshake(auth.MechanismPlain)
	r.authenticate(1, []byte("\x00alice\x00pw"))
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 9
	r.roundTrip(md, kmsg.NewPtrMetadataResponse())
	deadline := time.Now().Add(lifetime + 100*time.Millisecond)
	for d := time.Until(deadline); d > 0; d = time.Until(deadline) {
		time.Sleep(d) // waiting out the lifetime is what is tested
	}
	if err := r.send(md); err != nil {
		t.Fatal(err)
	}
	if !r.closed() {
		t.Fatal("an expired session was not closed at its next request")
	}
}

type disconnectHook struct{ n *atomic.Int32 }

func (h disconnectHook) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) { h.n.Add(1) }

// rawToken writes one raw SASL token (after SaslHandshake v0) and reads
// the answer token.
func (r *rawConn) rawToken(tok []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(tok)))
	if _, err := r.nc.Write(append(frame, tok...)); err != nil {
		return nil, err
	}
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(r.br, sz[:]); err != nil {
		return nil, err
	}
	out := make([]byte, binary.BigEndian.Uint32(sz[:]))
	_, err := io.ReadFull(r.br, out)
	return out, err
}

func (r *rawConn) handshakeV0(mech string) *kmsg.SASLHandshakeResponse {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = 0, mech
	resp := kmsg.NewPtrSASLHandshakeResponse()
	r.roundTrip(req, resp)
	return resp
}

// TestSASLRawTokens: after SaslHandshake v0 the exchange runs in raw
// size-prefixed tokens (kafka-python's framing): PLAIN answers an empty
// token, SCRAM-SHA-512 (franz-go's client messages) its server-first and
// server-final; the connection then serves Metadata. A wrong password
// closes the connection without an answer, after the failure delay.
func TestSASLRawTokens(t *testing.T) {
	b := startSASLBroker(t)
	addUser(t, b.Broker, "alice", "pw")
	metadataOK := func(r *rawConn) {
		t.Helper()
		md := kmsg.NewPtrMetadataRequest()
		md.Version = 9
		resp := kmsg.NewPtrMetadataResponse()
		r.roundTrip(md, resp)
		if len(resp.Brokers) != 1 {
			t.Fatalf("metadata brokers %v", resp.Brokers)
		}
	}

	r := dialRaw(t, b.addr)
	if hs := r.handshakeV0(auth.MechanismPlain); hs.ErrorCode != 0 {
		t.Fatalf("handshake v0: %d", hs.ErrorCode)
	}
	out, err := r.rawToken([]byte("alice\x00alice\x00pw"))
	if err != nil || len(out) != 0 {
		t.Fatalf("PLAIN raw token: %q %v", out, err)
	}
	metadataOK(r)

	r = dialRaw(t, b.addr)
	r.handshakeV0(auth.MechanismScramSHA512)
	sess, first, err := scram.Auth{User: "alice", Pass: "pw"}.AsSha512Mechanism().Authenticate(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := first
	for i := 0; ; i++ {
		out, err := r.rawToken(msg)
		if err != nil {
			t.Fatalf("SCRAM raw token %d: %v", i, err)
		}
		done, next, err := sess.Challenge(out)
		if err != nil {
			t.Fatalf("client refused %q: %v", out, err)
		}
		if done {
			break
		}
		msg = next
	}
	metadataOK(r)

	r = dialRaw(t, b.addr)
	r.handshakeV0(auth.MechanismPlain)
	if _, err := r.rawToken([]byte("\x00alice\x00wrong")); err == nil {
		t.Fatal("a wrong password got an answer")
	}
	if !r.closed() {
		t.Fatal("not closed after a wrong password")
	}
}

// TestSASLAuthTimeout: a SASL connection that does not authenticate in
// time is closed; one that authenticated is not.
func TestSASLAuthTimeout(t *testing.T) {
	b := startSASLBroker(t)
	b.saslAuthTimeout.Store(int64(300 * time.Millisecond))
	addUser(t, b.Broker, "alice", "pw")
	idle := dialRaw(t, b.addr)
	authed := dialRaw(t, b.addr)
	authed.handshake(auth.MechanismPlain)
	if resp := authed.authenticate(1, []byte("\x00alice\x00pw")); resp.ErrorCode != 0 {
		t.Fatalf("authenticate: %d", resp.ErrorCode)
	}
	if !idle.closed() {
		t.Fatal("an unauthenticated connection stayed open")
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 9
	authed.roundTrip(md, kmsg.NewPtrMetadataResponse())
}

// TestSASLHashCap: with sasl.max-concurrent-hashes 1, concurrent PLAIN
// logins (right and wrong passwords, an unknown user) against credentials
// of the maximum iteration count never run more than one PBKDF2 at a
// time, and each gets its right answer. A login that gets no turn before
// its connection's authentication deadline ends without authenticating
// and is not counted as a failure of its address.
func TestSASLHashCap(t *testing.T) {
	b := startSASLBroker(t, func(c *configs.Config) { c.SASL.MaxConcurrentHashes = 1 })
	var ups []metadata.ScramUpsert
	for _, mech := range auth.ScramMechanisms() {
		c, err := auth.NewScramCredential(mech, "pw", []byte("salt-alice"), auth.MaxScramIterations)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, metadata.ScramUpsert{User: "alice", Mechanism: mech, Credential: metadata.ScramCredential(c)})
	}
	if err := b.store.Apply(context.Background(), metadata.AlterScramCredentials{Upserts: ups}); err != nil {
		t.Fatal(err)
	}

	const n = 8
	type result struct {
		i    int
		code int16
		err  error
	}
	msg := func(i int) []byte {
		switch i % 4 {
		case 1:
			return []byte("\x00alice\x00wrong")
		case 3:
			return []byte("\x00nobody\x00pw")
		}
		return []byte("\x00alice\x00pw")
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		r := dialRaw(t, b.addr)
		go func() {
			res := result{i: i}
			defer func() { results <- res }()
			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 1, auth.MechanismPlain
			hsResp := kmsg.NewPtrSASLHandshakeResponse()
			if res.err = r.send(hs); res.err != nil {
				return
			}
			if res.err = r.recv(hs, hsResp); res.err != nil || hsResp.ErrorCode != 0 {
				res.err = fmt.Errorf("handshake: %v, error %d", res.err, hsResp.ErrorCode)
				return
			}
			req := kmsg.NewPtrSASLAuthenticateRequest()
			req.Version, req.SASLAuthBytes = 2, msg(i)
			resp := kmsg.NewPtrSASLAuthenticateResponse()
			if res.err = r.send(req); res.err != nil {
				return
			}
			res.err = r.recv(req, resp)
			res.code = resp.ErrorCode
		}()
	}
	for range n {
		res := <-results
		want := int16(0)
		if res.i%2 == 1 {
			want = kerr.SaslAuthenticationFailed.Code
		}
		if res.err != nil || res.code != want {
			t.Errorf("login %d (%q): error code %d, %v; want %d", res.i, msg(res.i), res.code, res.err, want)
		}
	}
	if got := b.hashes.Peak(); got != 1 {
		t.Errorf("at most %d password hashes ran at once, want 1", got)
	}

	// The one turn is taken: a login waits for it only until its
	// connection's authentication deadline.
	b.authFailures.mu.Lock()
	failuresBefore := b.authFailures.hosts["127.0.0.1"].n
	b.authFailures.mu.Unlock()
	b.saslAuthTimeout.Store(int64(300 * time.Millisecond))
	hold, held := make(chan struct{}), make(chan struct{})
	go b.hashes.Do(context.Background(), func() { close(held); <-hold }) //nolint:errcheck // a background context never ends
	<-held
	r := dialRaw(t, b.addr)
	if hs := r.handshake(auth.MechanismPlain); hs.ErrorCode != 0 {
		t.Fatalf("handshake: error %d", hs.ErrorCode)
	}
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.Version, req.SASLAuthBytes = 2, []byte("\x00alice\x00pw")
	if err := r.send(req); err != nil {
		t.Fatal(err)
	}
	// Either answer is right: the refusal, or the connection closed
	// by its deadline before the refusal went out.
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	if err := r.recv(req, resp); err == nil && resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("login without a turn to hash: error %d, want SASL_AUTHENTICATION_FAILED", resp.ErrorCode)
	} else if err != nil && !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("login without a turn to hash: %v", err)
	}
	if !r.closed() {
		t.Fatal("login without a turn to hash: connection not closed")
	}
	close(hold)
	b.authFailures.mu.Lock()
	failuresAfter := b.authFailures.hosts["127.0.0.1"].n
	b.authFailures.mu.Unlock()
	if failuresAfter != failuresBefore {
		t.Errorf("failures counted for 127.0.0.1: %d, before the login without a turn %d", failuresAfter, failuresBefore)
	}
	if got := b.hashes.Peak(); got != 1 {
		t.Errorf("at most %d password hashes ran at once, want 1", got)
	}
}
