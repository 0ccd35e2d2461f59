package broker

import (
	"net"
	"testing"
	"time"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
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
