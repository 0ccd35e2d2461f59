package broker

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/kafkaproto"
)

// Envelope 0 (API 58, KIP-590; docs/security.md, "Node to node"): a node
// that forwards a client's request to another node (a Produce for a
// partition the other node leads, forward.go) wraps it in an Envelope
// carrying who the client is, so the receiving node serves it as that
// client: its quotas and throttle times, logs and KIP-951 hints for the
// client's listener.
//
//   - RequestData is the client's request with its request header (the
//     client's client id), as Kafka embeds it; its records are never
//     decoded on the way.
//   - RequestPrincipal is Kafka's DefaultPrincipalData v0, prefixed with
//     its version (Kafka's DefaultKafkaPrincipalBuilder serialisation),
//     with the name of the listener the client connected on in tagged
//     field envelopeListenerTag.
//   - ClientHostAddress is the client's IP address, 4 or 16 bytes (Java's
//     InetAddress.getAddress()).
//
// The inner request may only be a Produce (the only client request a node
// forwards): another API, an Envelope inside an Envelope included, is
// INVALID_REQUEST; a principal that does not decode is
// PRINCIPAL_DESERIALIZATION_FAILURE; a host that is not an IP address, or
// inner bytes that do not decode, INVALID_REQUEST; an inner version out of
// the Produce range UNSUPPORTED_VERSION. Each is the Envelope's error code
// with no ResponseData, and the connection stays open, as in Kafka.
//
// Only node connections (the internal listener: node certificates with
// node TLS, loopback or a trusted network otherwise) may send it, and only
// their ApiVersions lists it. On a client listener the connection is
// closed with a log line, as Kafka closes a connection that sends an
// Envelope outside its inter-broker listener. Authorization stays on the
// node that received the client's request: the node connection is
// allowed everything (authz.go), so nothing is checked twice.

// envelopeListenerTag is the DefaultPrincipalData tagged field holding the
// client's listener name (Kafka defines no tags there; Tusk's own number,
// far from any Kafka would choose).
const envelopeListenerTag = 10000

// clientIdentity is who a forwarded request acts for: the client's
// principal, IP address and listener name on the node that received it.
type clientIdentity struct {
	principal auth.Principal
	host      string
	listener  string
}

func apiEnvelope() api {
	return api{key: kmsg.Envelope, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		if !rc.conn.node {
			rc.conn.log.Info().Str("principal", rc.conn.principal().String()).
				Msg("closing connection: an Envelope is accepted only from other nodes on the internal listener")
			b.m.badRequests.Inc()
			rc.conn.closeAfter = true
			return nil, nil
		}
		return b.handleEnvelope(rc, rc.req.(*kmsg.EnvelopeRequest))
	}}
}

// handleEnvelope serves the inner request of env as the client it names
// and wraps its answer (header and body) in the Envelope's answer.
func (b *Broker) handleEnvelope(rc *request, env *kmsg.EnvelopeRequest) (kmsg.Response, func() kmsg.Response) {
	id, hdr, req, code, msg := openEnvelope(b.apis, env)
	if code != 0 {
		rc.conn.log.Warn().Int16("error", code).Str("msg", msg).Msg("envelope refused")
		resp := kmsg.NewPtrEnvelopeResponse()
		resp.ErrorCode = code
		return resp, nil
	}
	inner := &request{hdr: hdr, req: req, received: rc.received, conn: rc.conn, client: &id}
	a := b.apis[hdr.APIKey]
	resp, later := a.handle(b, inner)
	resp, later = rc.conn.requestTime(inner, a.key, resp, later)
	wrap := func(r kmsg.Response) kmsg.Response {
		out := kmsg.NewPtrEnvelopeResponse()
		if r != nil { // nil: an acks=0 Produce, answered by nothing
			r.SetVersion(hdr.APIVersion)
			out.ResponseData = appendResponseData(make([]byte, 0, sizeHint(r)), hdr, r)
		}
		return out
	}
	if later == nil {
		return wrap(resp), nil
	}
	return nil, func() kmsg.Response { return wrap(later()) }
}

// openEnvelope decodes an Envelope: the client's identity and the inner
// request (header and decoded body, whose byte fields are slices of
// env.RequestData). A refusal returns the Envelope's error code and why.
func openEnvelope(apis apiTable, env *kmsg.EnvelopeRequest) (clientIdentity, kafkaproto.RequestHeader, kmsg.Request, int16, string) {
	var id clientIdentity
	var hdr kafkaproto.RequestHeader
	var err error
	if id.principal, id.listener, err = decodeEnvelopePrincipal(env.RequestPrincipal); err != nil {
		return id, hdr, nil, kerr.PrincipalDeserializationFailure.Code, err.Error()
	}
	if n := len(env.ClientHostAddress); n != net.IPv4len && n != net.IPv6len {
		return id, hdr, nil, kerr.InvalidRequest.Code, fmt.Sprintf("client host address of %d bytes", n)
	}
	id.host = net.IP(env.ClientHostAddress).String()
	hdr, req, body, err := kafkaproto.ParseRequest(env.RequestData)
	if err != nil {
		return id, hdr, nil, kerr.InvalidRequest.Code, fmt.Sprintf("inner request: %v", err)
	}
	switch kmsg.Key(hdr.APIKey) {
	case kmsg.Produce:
	case kmsg.Envelope:
		return id, hdr, nil, kerr.InvalidRequest.Code, "an Envelope inside an Envelope"
	default:
		return id, hdr, nil, kerr.InvalidRequest.Code, fmt.Sprintf("api %s is not forwarded between nodes", kmsg.NameForKey(hdr.APIKey))
	}
	a := apis[hdr.APIKey]
	if hdr.APIVersion < a.min || hdr.APIVersion > a.max {
		return id, hdr, nil, kerr.UnsupportedVersion.Code, fmt.Sprintf("inner %s v%d", a.key.Name(), hdr.APIVersion)
	}
	if err := req.ReadFrom(body); err != nil {
		return id, hdr, nil, kerr.InvalidRequest.Code, fmt.Sprintf("inner %s v%d: %v", a.key.Name(), hdr.APIVersion, err)
	}
	return id, hdr, req, 0, ""
}

// encodeEnvelopePrincipal serialises a client's principal and listener
// for an Envelope's RequestPrincipal.
func encodeEnvelopePrincipal(p auth.Principal, listener string) []byte {
	d := kmsg.NewDefaultPrincipalData()
	d.Type, d.Name = p.Type, p.Name
	d.UnknownTags.Set(envelopeListenerTag, []byte(listener))
	return d.AppendTo(make([]byte, 0, 16+len(p.Type)+len(p.Name)+len(listener)))
}

// decodeEnvelopePrincipal is the inverse of encodeEnvelopePrincipal.
func decodeEnvelopePrincipal(b []byte) (auth.Principal, string, error) {
	var d kmsg.DefaultPrincipalData
	if err := d.ReadFrom(b); err != nil {
		return auth.Principal{}, "", fmt.Errorf("envelope principal: %w", err)
	}
	if d.Version != 0 {
		return auth.Principal{}, "", fmt.Errorf("envelope principal: version %d", d.Version)
	}
	if d.Type == "" || d.Name == "" {
		return auth.Principal{}, "", fmt.Errorf("envelope principal: empty type or name (%q:%q)", d.Type, d.Name)
	}
	var listener string
	d.UnknownTags.Each(func(key uint32, v []byte) {
		if key == envelopeListenerTag {
			listener = string(v)
		}
	})
	if listener == "" {
		return auth.Principal{}, "", fmt.Errorf("envelope principal: no listener name")
	}
	return auth.Principal{Type: d.Type, Name: d.Name}, listener, nil
}

// envelopeHost is an IP address as an Envelope's ClientHostAddress: 4
// bytes for IPv4, 16 for IPv6, and the IPv6 unspecified address for a
// host that is not an IP address (not on TCP connections).
func envelopeHost(host string) []byte {
	ip := net.ParseIP(host)
	if ip == nil {
		return net.IPv6unspecified
	}
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// appendRequestData appends a request with its header (v1, or v2 for a
// flexible version) to dst: an Envelope's RequestData.
func appendRequestData(dst []byte, correlationID int32, clientID string, req kmsg.Request) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.Key()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.GetVersion()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	dst = append(dst, clientID...)
	if req.IsFlexible() {
		dst = append(dst, 0) // no header tags
	}
	return req.AppendTo(dst)
}

// appendResponseData appends a response with its header to dst: an
// Envelope's ResponseData.
func appendResponseData(dst []byte, hdr kafkaproto.RequestHeader, resp kmsg.Response) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(hdr.CorrelationID))
	if kafkaproto.ResponseHeaderFlexible(hdr.APIKey, hdr.Flexible) {
		dst = append(dst, 0) // no header tags
	}
	return resp.AppendTo(dst)
}

// readResponseData decodes an Envelope's ResponseData into resp, whose
// request (of version set in resp) was flexible or not.
func readResponseData(b []byte, key int16, flexibleRequest bool, resp kmsg.Response) error {
	if len(b) < 4 {
		return fmt.Errorf("envelope response: %d bytes", len(b))
	}
	b = b[4:]
	if kafkaproto.ResponseHeaderFlexible(key, flexibleRequest) {
		n, used := binary.Uvarint(b)
		if used <= 0 || n != 0 {
			return fmt.Errorf("envelope response: unexpected header tags")
		}
		b = b[used:]
	}
	if err := resp.ReadFrom(b); err != nil {
		return fmt.Errorf("envelope response: %w", err)
	}
	return nil
}

// principal is who the request acts for: the client an Envelope named,
// else the connection's principal.
func (rc *request) principal() auth.Principal {
	if rc.client != nil {
		return rc.client.principal
	}
	return rc.conn.principal()
}

// host is the IP address of the client the request comes from.
func (rc *request) host() string {
	if rc.client != nil {
		return rc.client.host
	}
	return rc.conn.host()
}

// listenerName is the listener the client connected on (on the node that
// received its request).
func (rc *request) listenerName() string {
	if rc.client != nil {
		return rc.client.listener
	}
	return rc.conn.listener.name
}
