package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
)

// envelopeSetup creates topic with one partition and sets
// producer_byte_rate for entity (user or client-id name) to rate,
// waiting until the node sees both.
func envelopeSetup(t *testing.T, b *Broker, topic, entityType, entityName string, rate float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: []kadm.ClientQuotaEntityComponent{{Type: entityType, Name: &entityName}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: metadata.QuotaProducerByteRate, Value: rate}},
	}})
	if err == nil && len(res) == 1 {
		err = res[0].Err
	}
	if err != nil {
		t.Fatalf("alter quotas: %v", err)
	}
	user, client := "nobody", "nobody"
	if entityType == "user" {
		user = entityName
	} else {
		client = entityName
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, _, ok := b.store.FSM().ClientQuota(user, client, metadata.QuotaProducerByteRate); ok && b.store.FSM().HasTopic(topic) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("quota or topic not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// produceReq is a Produce v9 (flexible) of one partition with n bytes of
// value in one record.
func produceReq(topic string, n int) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, 1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), []kafkaproto.KV{{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), n)}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// envelopeOf wraps req for principal p at host on listener.
func envelopeOf(req kmsg.Request, clientID string, p auth.Principal, host, listener string) *kmsg.EnvelopeRequest {
	env := kmsg.NewPtrEnvelopeRequest()
	env.RequestData = appendRequestData(nil, 7, clientID, req)
	env.RequestPrincipal = encodeEnvelopePrincipal(p, listener)
	env.ClientHostAddress = envelopeHost(host)
	return env
}

// sendEnvelope sends env on r and decodes its inner Produce answer (nil
// with the Envelope's error code when it carries none).
func sendEnvelope(t *testing.T, r *rawConn, env *kmsg.EnvelopeRequest) (*kmsg.ProduceResponse, int16) {
	t.Helper()
	resp := kmsg.NewPtrEnvelopeResponse()
	r.roundTrip(env, resp)
	if resp.ErrorCode != 0 || len(resp.ResponseData) == 0 {
		return nil, resp.ErrorCode
	}
	pr := kmsg.NewPtrProduceResponse()
	pr.SetVersion(9)
	if got := int32(binary.BigEndian.Uint32(resp.ResponseData)); got != 7 {
		t.Fatalf("inner correlation id %d, want 7", got)
	}
	if err := readResponseData(resp.ResponseData, int16(kmsg.Produce), true, pr); err != nil {
		t.Fatal(err)
	}
	return pr, 0
}

func apiKeys(r *rawConn) map[int16][2]int16 {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1"
	resp := kmsg.NewPtrApiVersionsResponse()
	r.roundTrip(req, resp)
	out := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		out[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	return out
}

// TestEnvelopeNodeConnectionsOnly: ApiVersions lists Envelope (58, v0)
// on the internal listener only; an Envelope sent on a client listener
// closes that connection (as Kafka closes one outside its inter-broker
// listener) and nothing is appended, while other connections go on.
func TestEnvelopeNodeConnectionsOnly(t *testing.T) {
	b := startBroker(t, t.TempDir())
	envelopeSetup(t, b, "t", "user", "alice", 1e9)

	client := dialRaw(t, b.KafkaAddr())
	if v, ok := apiKeys(client)[int16(kmsg.Envelope)]; ok {
		t.Fatalf("client listener ApiVersions lists Envelope %v", v)
	}
	node := dialRaw(t, b.InternalAddr())
	if v, ok := apiKeys(node)[int16(kmsg.Envelope)]; !ok || v != [2]int16{0, 0} {
		t.Fatalf("internal listener ApiVersions: Envelope %v listed %v, want v0-0", v, ok)
	}

	if err := client.send(envelopeOf(produceReq("t", 10), "app", auth.Principal{Type: "User", Name: "alice"}, "10.1.2.3", "PLAINTEXT")); err != nil {
		t.Fatal(err)
	}
	if !client.closed() {
		t.Fatal("client connection still open after an Envelope")
	}
	if l, code := b.partitionLog("t", 0); code != 0 || l.LogEndOffset() != 0 {
		t.Fatalf("log end offset after a client's Envelope: %v (code %d), want 0", l, code)
	}
	// The node connection serves one.
	pr, code := sendEnvelope(t, node, envelopeOf(produceReq("t", 10), "app", auth.Principal{Type: "User", Name: "alice"}, "10.1.2.3", "PLAINTEXT"))
	if code != 0 || pr.Topics[0].Partitions[0].ErrorCode != 0 || pr.Topics[0].Partitions[0].BaseOffset != 0 {
		t.Fatalf("node envelope: code %d answer %+v", code, pr)
	}
}

// TestEnvelopeProduceAsClient: a Produce in an Envelope is metered on
// this node as the client it names: alice's producer_byte_rate (1000 B/s)
// throttles her 5000 bytes by about 4 s, in the inner answer, while the
// node connection itself is not muted (the next Envelope, bob's, who has
// no quota, is answered at once and not throttled).
func TestEnvelopeProduceAsClient(t *testing.T) {
	b := startBroker(t, t.TempDir())
	envelopeSetup(t, b, "t", "user", "alice", 1000)
	node := dialRaw(t, b.InternalAddr())

	pr, code := sendEnvelope(t, node, envelopeOf(produceReq("t", 5000), "app", auth.Principal{Type: "User", Name: "alice"}, "10.1.2.3", "PLAINTEXT"))
	if code != 0 {
		t.Fatalf("envelope error %d", code)
	}
	p := pr.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("alice's produce: %+v", p)
	}
	if pr.ThrottleMillis < 3500 || pr.ThrottleMillis > 4200 {
		t.Fatalf("alice's throttle %d ms, want about 4000 (5000-odd bytes over a 1000 B/s quota with a 1 s burst)", pr.ThrottleMillis)
	}
	start := time.Now()
	pr, code = sendEnvelope(t, node, envelopeOf(produceReq("t", 5000), "app", auth.Principal{Type: "User", Name: "bob"}, "10.1.2.4", "PLAINTEXT"))
	if code != 0 || pr.ThrottleMillis != 0 || pr.Topics[0].Partitions[0].BaseOffset != 1 {
		t.Fatalf("bob's produce: code %d throttle %d answer %+v", code, pr.ThrottleMillis, pr.Topics[0].Partitions[0])
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("bob's envelope took %v: the node connection was muted for alice's throttle", took)
	}
}

// TestForwarderClientIDMetered: a client calling itself tusk-forwarder
// (the client id of a node's own requests) is metered like any other:
// before Envelope the bare id exempted it from producer_byte_rate.
func TestForwarderClientIDMetered(t *testing.T) {
	b := startBroker(t, t.TempDir())
	envelopeSetup(t, b, "t", "client-id", forwardClientID, 1000)
	r := dialRaw(t, b.KafkaAddr())
	r.fmt = kmsg.NewRequestFormatter(kmsg.FormatterClientID(forwardClientID))
	resp := kmsg.NewPtrProduceResponse()
	r.roundTrip(produceReq("t", 5000), resp)
	if resp.Topics[0].Partitions[0].ErrorCode != 0 || resp.ThrottleMillis < 3500 || resp.ThrottleMillis > 4200 {
		t.Fatalf("produce as %s: %+v throttle %d ms, want NONE and about 4000", forwardClientID, resp.Topics[0].Partitions[0], resp.ThrottleMillis)
	}
}

// TestEnvelopeRefusals: malformed Envelopes are answered with Kafka's
// error code and no inner answer, nothing is appended, and the node
// connection keeps serving.
func TestEnvelopeRefusals(t *testing.T) {
	b := startBroker(t, t.TempDir())
	envelopeSetup(t, b, "t", "user", "alice", 1e9)
	node := dialRaw(t, b.InternalAddr())
	alice := auth.Principal{Type: "User", Name: "alice"}
	good := func() *kmsg.EnvelopeRequest {
		return envelopeOf(produceReq("t", 10), "app", alice, "10.1.2.3", "PLAINTEXT")
	}

	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	badVersion := produceReq("t", 10)
	badVersion.Version = 12
	hugeRecords := good()
	// The records' compact length (the uvarint before them)
	// claims about 2 GiB.
	i := bytes.Index(hugeRecords.RequestData, produceReq("t", 10).Topics[0].Partitions[0].Records[:12])
	if i < 0 {
		t.Fatal("records not found in the inner request")
	}
	hugeRecords.RequestData = append(hugeRecords.RequestData[:i-1:i-1], 0xff, 0xff, 0xff, 0xff, 0x07)
	noListener := kmsg.NewDefaultPrincipalData()
	noListener.Type, noListener.Name = "User", "alice"

	cases := []struct {
		name string
		env  func() *kmsg.EnvelopeRequest
		want int16
	}{
		{"principal garbage", func() *kmsg.EnvelopeRequest { e := good(); e.RequestPrincipal = []byte{0, 0, 9}; return e }, kerr.PrincipalDeserializationFailure.Code},
		{"principal without listener", func() *kmsg.EnvelopeRequest { e := good(); e.RequestPrincipal = noListener.AppendTo(nil); return e }, kerr.PrincipalDeserializationFailure.Code},
		{"principal version 1", func() *kmsg.EnvelopeRequest {
			e := good()
			e.RequestPrincipal = slices.Clone(e.RequestPrincipal)
			e.RequestPrincipal[1] = 1
			return e
		}, kerr.PrincipalDeserializationFailure.Code},
		{"host of 3 bytes", func() *kmsg.EnvelopeRequest { e := good(); e.ClientHostAddress = []byte{10, 1, 2}; return e }, kerr.InvalidRequest.Code},
		{"no inner request", func() *kmsg.EnvelopeRequest { e := good(); e.RequestData = nil; return e }, kerr.InvalidRequest.Code},
		{"truncated inner request", func() *kmsg.EnvelopeRequest {
			e := good()
			e.RequestData = e.RequestData[:len(e.RequestData)-20]
			return e
		}, kerr.InvalidRequest.Code},
		{"records of 2 GiB", func() *kmsg.EnvelopeRequest { return hugeRecords }, kerr.InvalidRequest.Code},
		{"envelope in envelope", func() *kmsg.EnvelopeRequest { return envelopeOf(good(), "app", alice, "10.1.2.3", "PLAINTEXT") }, kerr.InvalidRequest.Code},
		{"fetch inside", func() *kmsg.EnvelopeRequest { return envelopeOf(fetch, "app", alice, "10.1.2.3", "PLAINTEXT") }, kerr.InvalidRequest.Code},
		{"produce v12", func() *kmsg.EnvelopeRequest { return envelopeOf(badVersion, "app", alice, "10.1.2.3", "PLAINTEXT") }, kerr.UnsupportedVersion.Code},
	}
	for _, c := range cases {
		pr, code := sendEnvelope(t, node, c.env())
		if code != c.want || pr != nil {
			t.Errorf("%s: envelope error %d (answer %v), want %d (%s)", c.name, code, pr != nil, c.want, kerr.ErrorForCode(c.want))
		}
	}
	if l, code := b.partitionLog("t", 0); code != 0 || l.LogEndOffset() != 0 {
		t.Fatalf("log end offset after refused envelopes: %d, want 0", l.LogEndOffset())
	}
	pr, code := sendEnvelope(t, node, good())
	if code != 0 || pr.Topics[0].Partitions[0].ErrorCode != 0 || pr.Topics[0].Partitions[0].BaseOffset != 0 {
		t.Fatalf("a good envelope after the refusals: code %d answer %+v", code, pr)
	}
}

// FuzzOpenEnvelope: whatever an Envelope holds, openEnvelope answers an
// error code or a decoded Produce within the registered versions, and
// never panics.
func FuzzOpenEnvelope(f *testing.F) {
	alice := auth.Principal{Type: "User", Name: "alice"}
	good := envelopeOf(produceReq("t", 10), "app", alice, "10.1.2.3", "PLAINTEXT")
	f.Add(good.RequestPrincipal, good.ClientHostAddress, good.RequestData)
	inner := envelopeOf(good, "app", alice, "::1", "PLAINTEXT")
	f.Add(inner.RequestPrincipal, inner.ClientHostAddress, inner.RequestData)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	f.Add(good.RequestPrincipal, good.ClientHostAddress, appendRequestData(nil, 1, "c", fetch))
	f.Add([]byte{0, 0}, []byte{1, 2, 3, 4}, []byte{0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	apis := newAPITable()
	f.Fuzz(func(t *testing.T, principal, host, data []byte) {
		env := kmsg.NewPtrEnvelopeRequest()
		env.RequestPrincipal, env.ClientHostAddress, env.RequestData = principal, host, data
		id, hdr, req, code, msg := openEnvelope(apis, env)
		if code != 0 {
			if req != nil || msg == "" {
				t.Fatalf("code %d with request %v, message %q", code, req, msg)
			}
			return
		}
		p, ok := req.(*kmsg.ProduceRequest)
		if !ok || hdr.APIKey != int16(kmsg.Produce) || p.Version != hdr.APIVersion || hdr.APIVersion < 0 || hdr.APIVersion > apis[0].max {
			t.Fatalf("accepted %T, header %+v", req, hdr)
		}
		if id.principal.Type == "" || id.principal.Name == "" || id.listener == "" || id.host == "" {
			t.Fatalf("accepted identity %+v", id)
		}
	})
}

// TestTagCountBomb: a flexible request whose tagged-field count is 2^32-1
// with nothing behind it is refused at once. kmsg v1.15.0 looped that
// many times (minutes of a core per 20-byte request, before SASL
// authentication on ApiVersions v3); v1.15.1 stops at the end of the
// bytes. On a client listener the connection closes (a malformed body);
// in an Envelope the principal and the inner request are refused.
func TestTagCountBomb(t *testing.T) {
	b := startBroker(t, t.TempDir())
	envelopeSetup(t, b, "t", "user", "alice", 1e9)
	bomb := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}

	r := dialRaw(t, b.KafkaAddr())
	frame := binary.BigEndian.AppendUint16(nil, uint16(kmsg.ApiVersions))
	frame = binary.BigEndian.AppendUint16(frame, 3)
	frame = binary.BigEndian.AppendUint32(frame, 1)
	frame = binary.BigEndian.AppendUint16(frame, 0) // client id ""
	frame = append(frame, 0)                        // header tags
	frame = append(frame, 2, 'a', 2, 'b')           // software name and version
	frame = append(frame, bomb...)
	start := time.Now()
	if _, err := r.nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)); err != nil {
		t.Fatal(err)
	}
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.br.ReadByte(); err == nil || !(errors.Is(err, io.EOF) || isReset(err)) {
		t.Fatalf("ApiVersions v3 with 2^32-1 tags: %v after %v, want the connection closed", err, time.Since(start))
	}

	node := dialRaw(t, b.InternalAddr())
	alice := auth.Principal{Type: "User", Name: "alice"}
	env := envelopeOf(produceReq("t", 10), "app", alice, "10.1.2.3", "PLAINTEXT")
	p := kmsg.NewDefaultPrincipalData()
	p.Type, p.Name = "User", "alice"
	env.RequestPrincipal = append(p.AppendTo(nil)[:2+1+len("User")+1+len("alice")+1], bomb...)
	start = time.Now()
	if _, code := sendEnvelope(t, node, env); code != kerr.PrincipalDeserializationFailure.Code || time.Since(start) > 3*time.Second {
		t.Fatalf("principal with 2^32-1 tags: code %d after %v", code, time.Since(start))
	}
	env = envelopeOf(produceReq("t", 10), "app", alice, "10.1.2.3", "PLAINTEXT")
	env.RequestData = append(env.RequestData[:len(env.RequestData)-1:len(env.RequestData)-1], bomb...) // the request's own tags
	start = time.Now()
	if _, code := sendEnvelope(t, node, env); code != kerr.InvalidRequest.Code || time.Since(start) > 3*time.Second {
		t.Fatalf("inner Produce with 2^32-1 tags: code %d after %v", code, time.Since(start))
	}
}
