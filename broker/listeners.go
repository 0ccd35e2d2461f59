package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/tlsutil"
)

// Listeners and TLS on client listeners (docs/security.md, "Listeners
// and TLS"). Every kafka.listeners entry is a listener with a name and a
// security protocol; SSL and SASL_SSL wrap their connections in TLS, with
// the handshake on the connection's goroutine. Every address handed to a
// client is that of the listener it connected on (endpoint).

// handshakeTimeout bounds a TLS handshake on a client listener.
const handshakeTimeout = 10 * time.Second

// listener is one Kafka listener: a name, its security protocol and the
// socket it accepts on. The internal listener is one too (node traffic,
// named internalListener, which no configured name can be as configured
// names are upper case).
type listener struct {
	name     string
	protocol string // configs.Protocol*
	ln       net.Listener
	// advertised is the host:port clients of this listener are given.
	advertised string
	// tlsConf is set on SSL and SASL_SSL listeners; it reads the current
	// material of the broker's tlsutil.Reloader at every handshake.
	tlsConf *tls.Config
	// internal marks the node-to-node listener: its connections are
	// node traffic (conn.node).
	internal bool
}

// internalListener names the internal listener in conns and logs.
const internalListener = "internal"

// tls reports whether the listener's connections are TLS.
func (l *listener) tls() bool { return configs.UsesTLS(l.protocol) }

// sasl reports whether the listener's connections must authenticate
// with SASL before any other request.
func (l *listener) sasl() bool {
	return l.protocol == configs.ProtocolSASLPlaintext || l.protocol == configs.ProtocolSASLSSL
}

// TLS is the broker's TLS material, nil without tls.cert-file.
func (b *Broker) TLS() *tlsutil.Reloader { return b.tls }

// listenKafka binds every Kafka listener; on an error none stays open.
func (b *Broker) listenKafka() (err error) {
	cfgs, err := b.cfg.KafkaListeners()
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	clientAuth, err := b.cfg.TLS.ClientAuthType()
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer func() {
		if err != nil {
			for _, l := range b.listeners {
				l.ln.Close()
			}
			b.listeners = nil
		}
	}()
	for _, lc := range cfgs {
		ln, err := net.Listen("tcp", lc.Addr)
		if err != nil {
			return fmt.Errorf("broker: listen kafka %s %s: %w", lc.Name, lc.Addr, err)
		}
		l := &listener{name: lc.Name, protocol: lc.Protocol, ln: ln, advertised: lc.Advertised}
		b.listeners = append(b.listeners, l)
		if l.advertised == "" {
			l.advertised = ln.Addr().String()
		}
		if _, port := hostPort(l.advertised); port < 0 {
			return fmt.Errorf("broker: listener %s: advertised address %q is not host:port", l.name, l.advertised)
		}
		if l.tls() {
			if b.tls == nil {
				return fmt.Errorf("broker: listener %s is %s: tls.cert-file and tls.key-file are required", l.name, l.protocol)
			}
			l.tlsConf = b.tls.ServerConfig(clientAuth)
		}
	}
	return nil
}

// listenerAddrs maps each Kafka listener's name to its bound address
// (the ready file's "listeners").
func (b *Broker) listenerAddrs() map[string]string {
	out := make(map[string]string, len(b.listeners))
	for _, l := range b.listeners {
		out[l.name] = l.ln.Addr().String()
	}
	return out
}

// ListenerAddr is the bound address of the Kafka listener name, or "".
func (b *Broker) ListenerAddr(name string) string {
	for _, l := range b.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// advertisedListeners maps each Kafka listener's name to the address its
// clients are given (metadata.Broker.Listeners).
func (b *Broker) advertisedListeners() map[string]string {
	out := make(map[string]string, len(b.listeners))
	for _, l := range b.listeners {
		out[l.name] = l.advertised
	}
	return out
}

// endpoint is the address of broker br that a client on c is given: that
// of br's listener of the same name. Node connections get br's internal
// listener, c nil br's first listener. False if br has no such listener;
// a client is then not told about br, as Kafka leaves such brokers out.
func (b *Broker) endpoint(br metadata.Broker, c *conn) (host string, port int32, ok bool) {
	addr := br.Kafka
	switch {
	case c != nil && c.node && br.Internal != "":
		// Node traffic stays node traffic: a node's client (the
		// console's, broker/console.go) is pointed at internal listeners.
		addr = br.Internal
	case c != nil && !c.node:
		if addr, ok = br.Endpoint(c.listener.name); !ok {
			return "", -1, false
		}
	}
	host, port = hostPort(addr)
	return host, port, port >= 0
}

// selfClientOpts are the kgo options of a client of this node's own
// Kafka listeners (the console): its first PLAINTEXT listener, else its
// first SSL one, presenting this node's certificate and checking the
// brokers' against the CA (without one, against this node's own).
// SASL listeners need credentials the node does not have.
func (b *Broker) selfClientOpts() ([]kgo.Opt, error) {
	for _, proto := range []string{configs.ProtocolPlaintext, configs.ProtocolSSL} {
		for _, l := range b.listeners {
			if l.protocol != proto {
				continue
			}
			opts := []kgo.Opt{kgo.SeedBrokers(l.ln.Addr().String())}
			if l.tls() {
				opts = append(opts, kgo.DialTLSConfig(b.selfTLS()))
			}
			return opts, nil
		}
	}
	return nil, errors.New("no PLAINTEXT or SSL listener to connect to")
}

// selfTLS is the client side of selfClientOpts.
func (b *Broker) selfTLS() *tls.Config {
	m := b.tls
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return m.Certificate(), nil
		},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if m.HasCA() {
				_, err := m.VerifyPeer(cs)
				return err
			}
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, m.Certificate().Leaf.Raw) {
				return errors.New("broker: the peer is not this node (no tls.ca-file to check other certificates against)")
			}
			return nil
		},
	}
}

// reachable reports whether node id is alive and has a listener of c's
// name: only then may c be pointed at it (PreferredReadReplica).
func (b *Broker) reachable(id int32, c *conn) bool {
	br, ok := b.store.FSM().Broker(id)
	if !ok || br.State != metadata.BrokerAlive {
		return false
	}
	_, _, ok = b.endpoint(br, c)
	return ok
}

// reloadTLSLoop re-reads the TLS files every tls.reload-check when they
// changed (docs/security.md); SIGHUP calls ReloadTLS at once.
func (b *Broker) reloadTLSLoop() {
	defer b.bgWG.Done()
	t := time.NewTicker(b.cfg.TLS.ReloadCheck)
	defer t.Stop()
	for {
		select {
		case <-b.shutdown:
			return
		case <-t.C:
			b.ReloadTLS()
		}
	}
}

// ReloadTLS loads the TLS files if they changed: new connections present
// the new certificate, established ones keep theirs. A file that does not
// load is logged and the current material stays. It reports whether new
// material was loaded.
func (b *Broker) ReloadTLS() bool {
	if b.tls == nil {
		return false
	}
	changed, err := b.tls.Reload()
	switch {
	case err != nil:
		b.log.Error().Err(err).Msg("tls: reload failed; keeping the current certificate")
	case changed:
		c := b.tls.Certificate()
		ev := b.log.Info()
		if c.Leaf != nil {
			ev = ev.Str("subject", c.Leaf.Subject.String()).Time("not_after", c.Leaf.NotAfter)
		}
		ev.Msg("tls: certificate reloaded")
	}
	return changed
}

// handshake runs the TLS handshake of a connection on an SSL or SASL_SSL
// listener (its deadline was set at accept) and sets the principal: the
// client certificate's subject, or Anonymous without one.
func (c *conn) handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(c.b.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("broker: tls handshake on %s: %w", c.listener.name, err)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("broker: tls handshake on %s: %w", c.listener.name, err)
	}
	// On SASL_SSL the principal is the SASL user, whatever certificate
	// the client presented (as Kafka).
	if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 && !c.listener.sasl() {
		c.setPrincipal(certPrincipal(cs.PeerCertificates[0]))
	}
	return nil
}

// certPrincipal is an SSL client's principal: User: and the certificate's
// subject in RFC 2253 form, as Kafka's default principal builder
// (X500Principal.getName()).
func certPrincipal(cert *x509.Certificate) auth.Principal {
	return auth.User(rfc2253(cert.RawSubject))
}

// rfc2253Keywords are the attribute types Java's RFC 2253 form names;
// others appear as their OID with the value's DER in hex.
var rfc2253Keywords = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.9":                    "STREET",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET is one relative distinguished name (a SET OF; encoding/asn1
// reads a slice type named ...SET as one).
type rawRDNSET []rawATV

// rfc2253 writes a DER distinguished name as RFC 2253 does, the way
// Java's X500Principal.getName() does: last RDN first, keywords for the
// types it knows, backslash before , = + < > # ; " \ and before a leading
// or trailing space.
func rfc2253(rawSubject []byte) string {
	var seq []rawRDNSET
	if rest, err := asn1.Unmarshal(rawSubject, &seq); err != nil || len(rest) > 0 {
		return "#" + hex.EncodeToString(rawSubject)
	}
	var sb strings.Builder
	for i := len(seq) - 1; i >= 0; i-- {
		if i < len(seq)-1 {
			sb.WriteByte(',')
		}
		for j, atv := range seq[i] {
			if j > 0 {
				sb.WriteByte('+')
			}
			kw, known := rfc2253Keywords[atv.Type.String()]
			if !known {
				kw = atv.Type.String()
			}
			sb.WriteString(kw)
			sb.WriteByte('=')
			var s string
			if _, err := asn1.Unmarshal(atv.Value.FullBytes, &s); known && err == nil {
				sb.WriteString(escapeRFC2253(s))
			} else {
				sb.WriteByte('#')
				sb.WriteString(hex.EncodeToString(atv.Value.FullBytes))
			}
		}
	}
	return sb.String()
}

func escapeRFC2253(s string) string {
	var sb strings.Builder
	for i, r := range s {
		switch {
		case strings.ContainsRune(`,=+<>#;"\`, r):
			sb.WriteByte('\\')
		case r == ' ' && (i == 0 || i == len(s)-1):
			sb.WriteByte('\\')
		case r == 0:
			sb.WriteString(`\00`)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// principal is who the connection acts as (auth.Anonymous until
// authenticated, and for PLAINTEXT). Handlers on any goroutine may call
// it.
func (c *conn) principal() auth.Principal {
	if p := c.princ.Load(); p != nil {
		return *p
	}
	return auth.Anonymous
}

// setPrincipal changes the connection's principal (an SSL handshake, a
// SASL authentication).
func (c *conn) setPrincipal(p auth.Principal) { c.princ.Store(&p) }

// host is the client's IP address, as ACLs match hosts.
func (c *conn) host() string {
	a := c.nc.RemoteAddr()
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}
