package broker

import (
	"net"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
)

// listener is one Kafka listener: a name, its security protocol and the
// socket it accepts on (docs/security.md, "Listeners and TLS"). The
// internal listener is one too (node traffic, named internalListener,
// which no configured name can be as configured names are upper case).
type listener struct {
	name     string
	protocol string // configs.Protocol*
	ln       net.Listener
	// internal marks the node-to-node listener: its connections are
	// node traffic (conn.node).
	internal bool
}

// internalListener names the internal listener in conns and logs.
const internalListener = "internal"

// tls reports whether the listener's connections are TLS.
func (l *listener) tls() bool {
	return l.protocol == configs.ProtocolSSL || l.protocol == configs.ProtocolSASLSSL
}

// sasl reports whether the listener's connections must authenticate
// with SASL before any other request.
func (l *listener) sasl() bool {
	return l.protocol == configs.ProtocolSASLPlaintext || l.protocol == configs.ProtocolSASLSSL
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
