package configs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Security protocols of Kafka listeners (docs/security.md).
const (
	ProtocolPlaintext     = "PLAINTEXT"
	ProtocolSSL           = "SSL"
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	ProtocolSASLSSL       = "SASL_SSL"
)

// protocols are the security protocols, for validation and messages.
var protocols = []string{ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL}

func isProtocol(s string) bool {
	for _, p := range protocols {
		if s == p {
			return true
		}
	}
	return false
}

// UsesTLS reports whether a protocol's connections are TLS.
func UsesTLS(protocol string) bool { return protocol == ProtocolSSL || protocol == ProtocolSASLSSL }

// Listener is one named Kafka listener (Kafka's listeners,
// advertised.listeners and listener.security.protocol.map).
type Listener struct {
	// Name is upper case, as Kafka normalises listener names.
	Name     string
	Protocol string
	// Addr is the host:port to bind (port 0 picks one).
	Addr string
	// Advertised is the host:port given to clients; empty: the bound
	// address.
	Advertised string
}

// KafkaListeners returns the Kafka listeners in configuration order:
// kafka.listeners if set, else one PLAINTEXT listener on kafka.listen
// advertising kafka.advertised.
func (c Config) KafkaListeners() ([]Listener, error) {
	k := c.Kafka
	if strings.TrimSpace(k.Listeners) == "" {
		if _, _, err := net.SplitHostPort(k.Listen); err != nil {
			return nil, fmt.Errorf("kafka.listen %q: %w", k.Listen, err)
		}
		if k.AdvertisedListeners != "" {
			return nil, errors.New("kafka.advertised-listeners is set without kafka.listeners")
		}
		l := Listener{Name: ProtocolPlaintext, Protocol: ProtocolPlaintext, Addr: k.Listen, Advertised: k.Advertised}
		if l.Advertised != "" {
			if err := checkAdvertised(l.Advertised); err != nil {
				return nil, fmt.Errorf("kafka.advertised %q: %w", l.Advertised, err)
			}
		}
		return []Listener{l}, nil
	}
	if k.Advertised != "" {
		return nil, errors.New("kafka.advertised is set with kafka.listeners: use kafka.advertised-listeners")
	}
	protoOf := map[string]string{}
	if strings.TrimSpace(k.ListenerProtocols) != "" {
		for _, e := range strings.Split(k.ListenerProtocols, ",") {
			name, proto, ok := strings.Cut(strings.TrimSpace(e), ":")
			name, proto = strings.ToUpper(strings.TrimSpace(name)), strings.ToUpper(strings.TrimSpace(proto))
			if !ok || !validName(name) {
				return nil, fmt.Errorf("kafka.listener-protocols entry %q: want NAME:PROTOCOL", e)
			}
			if !isProtocol(proto) {
				return nil, fmt.Errorf("kafka.listener-protocols entry %q: unknown protocol %q (want one of %s)", e, proto, strings.Join(protocols, ", "))
			}
			if _, dup := protoOf[name]; dup {
				return nil, fmt.Errorf("kafka.listener-protocols: listener %s is mapped twice", name)
			}
			protoOf[name] = proto
		}
	}
	ls, err := parseEndpoints("kafka.listeners", k.Listeners)
	if err != nil {
		return nil, err
	}
	for i := range ls {
		l := &ls[i]
		if p, ok := protoOf[l.Name]; ok {
			l.Protocol = p
		} else if isProtocol(l.Name) {
			l.Protocol = l.Name
		} else {
			return nil, fmt.Errorf("kafka.listeners: listener %s has no protocol: name it after one (%s) or map it in kafka.listener-protocols", l.Name, strings.Join(protocols, ", "))
		}
	}
	if strings.TrimSpace(k.AdvertisedListeners) != "" {
		adv, err := parseEndpoints("kafka.advertised-listeners", k.AdvertisedListeners)
		if err != nil {
			return nil, err
		}
		for _, a := range adv {
			i := indexOf(ls, a.Name)
			if i < 0 {
				return nil, fmt.Errorf("kafka.advertised-listeners: %s is not a listener of kafka.listeners", a.Name)
			}
			if err := checkAdvertised(a.Addr); err != nil {
				return nil, fmt.Errorf("kafka.advertised-listeners: %s %q: %w", a.Name, a.Addr, err)
			}
			ls[i].Advertised = a.Addr
		}
	}
	return ls, nil
}

func indexOf(ls []Listener, name string) int {
	for i := range ls {
		if ls[i].Name == name {
			return i
		}
	}
	return -1
}

// parseEndpoints parses NAME://host:port,... with distinct names.
func parseEndpoints(key, s string) ([]Listener, error) {
	var out []Listener
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		name, addr, ok := strings.Cut(e, "://")
		name = strings.ToUpper(name)
		if !ok || !validName(name) {
			return nil, fmt.Errorf("%s entry %q: want NAME://host:port", key, e)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%s entry %q: %w", key, e, err)
		}
		if indexOf(out, name) >= 0 {
			return nil, fmt.Errorf("%s: listener %s appears twice", key, name)
		}
		out = append(out, Listener{Name: name, Addr: addr})
	}
	return out, nil
}

// validName: letters, digits and underscores, as Kafka's listener names.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// checkAdvertised checks an address given to clients: a host they can
// reach and a real port.
func checkAdvertised(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return fmt.Errorf("host %q is not an address clients can connect to", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("port %q must be in [1, 65535]", port)
	}
	return nil
}

// ClientAuthType is tls.client-auth as crypto/tls understands it.
func (t TLSConfig) ClientAuthType() (tls.ClientAuthType, error) {
	switch t.ClientAuth {
	case "none":
		return tls.NoClientCert, nil
	case "requested":
		return tls.VerifyClientCertIfGiven, nil
	case "required":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("tls.client-auth %q: want none, requested or required", t.ClientAuth)
}

// validateListeners checks the listeners and the TLS settings they need.
func (c Config) validateListeners() []error {
	var errs []error
	ls, err := c.KafkaListeners()
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := c.TLS.ClientAuthType(); err != nil {
		errs = append(errs, err)
	}
	for _, l := range ls {
		if UsesTLS(l.Protocol) && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
			errs = append(errs, fmt.Errorf("listener %s is %s: tls.cert-file and tls.key-file are required", l.Name, l.Protocol))
		}
	}
	if c.TLS.ClientAuth != "none" && c.TLS.CAFile == "" {
		errs = append(errs, fmt.Errorf("tls.client-auth %s needs tls.ca-file to check client certificates against", c.TLS.ClientAuth))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert-file and tls.key-file go together"))
	}
	if c.TLS.ReloadCheck <= 0 {
		errs = append(errs, fmt.Errorf("tls.reload-check %v must be positive", c.TLS.ReloadCheck))
	}
	return errs
}
