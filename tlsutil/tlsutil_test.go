package tlsutil

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func node(t *testing.T, ca *CA, dir, name string, id int32) *Reloader {
	t.Helper()
	f, err := ca.IssueFiles(dir, name, CertRequest{Subject: pkix.Name{CommonName: name}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Node: id})
	if err != nil {
		t.Fatal(err)
	}
	if f.CAFile, err = ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	r, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// handshake runs one TLS handshake between a server and a client config
// and returns the client's and server's errors.
func handshake(t *testing.T, srv, cli *tls.Config) (cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		b, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer b.Close()
		b.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
		s := tls.Server(b, srv)
		err = s.Handshake()
		if err == nil {
			_, err = s.Read(make([]byte, 1)) // the client's verification result arrives as an alert
		}
		done <- err
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	c := tls.Client(a, cli)
	cerr = c.Handshake()
	if cerr == nil {
		if _, cerr = c.Write([]byte{1}); cerr == nil {
			_, cerr = c.Read(make([]byte, 1)) // the server's refusal arrives as an alert (TLS 1.3); EOF otherwise
			if cerr != nil && cerr.Error() == "EOF" {
				cerr = nil
			}
		}
	}
	c.Close()
	return cerr, <-done
}

func TestNodeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := node(t, ca, dir, "n1", 1), node(t, ca, dir, "n2", 2)
	srv := n2.ServerConfig(tls.RequireAndVerifyClientCert)

	if cerr, serr := handshake(t, srv, n1.ClientConfig(2)); cerr != nil || serr != nil {
		t.Fatalf("node 1 -> node 2: client %v, server %v", cerr, serr)
	}
	if cerr, _ := handshake(t, srv, n1.ClientConfig(3)); cerr == nil || !strings.Contains(cerr.Error(), "want node 3") {
		t.Fatalf("node 1 expecting node 3 connected to node 2: %v", cerr)
	}
	if id, ok := NodeID(n2.Certificate().Leaf); !ok || id != 2 {
		t.Fatalf("NodeID = %d, %v", id, ok)
	}

	// A certificate from another CA is refused by the server.
	other, err := NewCA("other-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	odir := t.TempDir()
	stranger := node(t, other, odir, "x", 1)
	if _, serr := handshake(t, srv, stranger.ClientConfig(-1)); serr == nil {
		t.Fatal("a certificate of another CA was accepted")
	}

	// Reload: a re-issued certificate for node 2 with node id 5 is served
	// after Reload, and not before.
	time.Sleep(10 * time.Millisecond) // modification times must differ; not a synchronization
	f, err := ca.IssueFiles(dir, "n2", CertRequest{Subject: pkix.Name{CommonName: "n2"}, Node: 5})
	if err != nil {
		t.Fatal(err)
	}
	_ = f
	changed, err := n2.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if cerr, serr := handshake(t, srv, n1.ClientConfig(5)); cerr != nil || serr != nil {
		t.Fatalf("after reload: client %v, server %v", cerr, serr)
	}
	if changed, err := n2.Reload(); err != nil || changed {
		t.Fatalf("second Reload = %v, %v", changed, err)
	}
	// A broken file keeps the old material.
	if err := os.WriteFile(n2.files.CertFile, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if id, _ := NodeID(n2.Certificate().Leaf); id != 5 {
		t.Fatalf("material after a failed reload names node %d", id)
	}
}
