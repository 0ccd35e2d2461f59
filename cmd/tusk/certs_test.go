package main

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tuskdb/tusk/tlsutil"
)

// `tusk certs` writes a CA, node certificates with the node URI SAN and
// the IP SANs asked for, and client certificates without a node identity,
// all verifying against the CA; keys are 0600.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	cmd := newCertsCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--dir", dir, "--nodes", "1,2=127.0.0.2", "--ips", "127.0.0.1", "--clients", "alice"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node1", "node2", "alice"} {
		fi, err := os.Stat(filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.key mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, c := range []struct {
		name   string
		node   int32
		isNode bool
		ips    []string
	}{
		{"node1", 1, true, []string{"127.0.0.1"}},
		{"node2", 2, true, []string{"127.0.0.1", "127.0.0.2"}},
		{"alice", 0, false, nil},
	} {
		r, err := tlsutil.Load(tlsutil.Files{CertFile: filepath.Join(dir, c.name+".crt"), KeyFile: filepath.Join(dir, c.name+".key")})
		if err != nil {
			t.Fatal(err)
		}
		leaf := r.Certificate().Leaf
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not verify against ca.crt: %v", c.name, err)
		}
		id, ok := tlsutil.NodeID(leaf)
		if ok != c.isNode || id != c.node {
			t.Errorf("%s names node %d (%v), want %d (%v)", c.name, id, ok, c.node, c.isNode)
		}
		var got []string
		for _, ip := range leaf.IPAddresses {
			got = append(got, ip.String())
		}
		if len(got) != len(c.ips) {
			t.Errorf("%s IP SANs %v, want %v", c.name, got, c.ips)
			continue
		}
		for i := range got {
			if !net.ParseIP(got[i]).Equal(net.ParseIP(c.ips[i])) {
				t.Errorf("%s IP SANs %v, want %v", c.name, got, c.ips)
			}
		}
		if leaf.Subject.CommonName != c.name {
			t.Errorf("%s subject CN %q", c.name, leaf.Subject.CommonName)
		}
	}
	for _, bad := range [][]string{{"--dir", dir, "--nodes", "x"}, {"--dir", dir, "--ips", "nope"}, {"--nodes", "1"}, {"--dir", dir, "--clients", "node7"}} {
		cmd := newCertsCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(bad)
		if err := cmd.Execute(); err == nil {
			t.Errorf("certs %v succeeded, want an error", bad)
		}
	}
}
