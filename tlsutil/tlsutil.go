package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Files names the PEM files of a node's TLS material.
type Files struct {
	CertFile, KeyFile, CAFile string
}

// Set reports whether a certificate and key are configured.
func (f Files) Set() bool { return f.CertFile != "" && f.KeyFile != "" }

// material is one loaded generation of the files.
type material struct {
	cert   *tls.Certificate
	pool   *x509.CertPool // nil without a CA file
	stamps []fileStamp
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

// Reloader holds a node's certificate, key and CA, and swaps in new ones
// when Reload finds the files changed. Connections already established
// keep the material they were made with.
type Reloader struct {
	files Files

	mu  sync.Mutex // guards cur
	cur *material
}

// Load reads the files once; a missing or invalid file is an error.
func Load(f Files) (*Reloader, error) {
	if !f.Set() {
		return nil, errors.New("tlsutil: tls.cert-file and tls.key-file are both required")
	}
	m, err := load(f)
	if err != nil {
		return nil, err
	}
	return &Reloader{files: f, cur: m}, nil
}

func stampsOf(f Files) []fileStamp {
	var out []fileStamp
	for _, p := range []string{f.CertFile, f.KeyFile, f.CAFile} {
		var s fileStamp
		if p != "" {
			if fi, err := os.Stat(p); err == nil {
				s = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
			}
		}
		out = append(out, s)
	}
	return out
}

func load(f Files) (*material, error) {
	stamps := stampsOf(f)
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: load %s / %s: %w", f.CertFile, f.KeyFile, err)
	}
	if len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsutil: parse %s: %w", f.CertFile, err)
		}
	}
	m := &material{cert: &cert, stamps: stamps}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: read CA %s: %w", f.CAFile, err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tlsutil: CA %s holds no PEM certificate", f.CAFile)
		}
	}
	return m, nil
}

func (r *Reloader) material() *material {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Reload re-reads the files if their size or modification time changed;
// it reports whether new material was loaded. On an error the previous
// material stays in use.
func (r *Reloader) Reload() (bool, error) {
	old := r.material()
	if stampsEqual(old.stamps, stampsOf(r.files)) {
		return false, nil
	}
	m, err := load(r.files)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	r.cur = m
	r.mu.Unlock()
	return true, nil
}

func stampsEqual(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].modTime.Equal(b[i].modTime) {
			return false
		}
	}
	return true
}

// Certificate is the current certificate (its Leaf is parsed).
func (r *Reloader) Certificate() *tls.Certificate { return r.material().cert }

// HasCA reports whether a CA file is configured.
func (r *Reloader) HasCA() bool { return r.files.CAFile != "" }

// ServerConfig is a TLS 1.2+ server configuration presenting the current
// certificate and checking client certificates against the current CA
// as clientAuth says.
func (r *Reloader) ServerConfig(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.material()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   clientAuth,
				ClientCAs:    m.pool,
			}, nil
		},
	}
}

// ClientConfig is a TLS 1.2+ client configuration that presents the
// current certificate (node-to-node mutual TLS) and checks the server
// against the current CA. A node connects to addresses, not names: the
// server is accepted if it chains to the CA and, when wantNode >= 0, is
// that node (VerifyNode).
func (r *Reloader) ClientConfig(wantNode int32) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.material().cert, nil
		},
		// The chain is verified below against the CA; host names are not
		// checked because nodes are addressed by IP and identified by
		// their URI SAN.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := r.VerifyPeer(cs); err != nil {
				return err
			}
			if wantNode >= 0 {
				return VerifyNode(cs, wantNode)
			}
			return nil
		},
	}
}

// VerifyPeer checks that the peer's certificate chains to the current CA
// and returns its leaf.
func (r *Reloader) VerifyPeer(cs tls.ConnectionState) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("tlsutil: peer sent no certificate")
	}
	m := r.material()
	if m.pool == nil {
		return nil, errors.New("tlsutil: no CA configured to verify the peer")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("tlsutil: peer certificate: %w", err)
	}
	return leaf, nil
}

// NodeURIScheme and the host "node" form a node's identity URI.
const nodeURIPrefix = "tusk://node/"

// NodeURI is node id's identity, a URI SAN of its certificate.
func NodeURI(id int32) *url.URL {
	u, _ := url.Parse(nodeURIPrefix + strconv.Itoa(int(id)))
	return u
}

// NodeID returns the node id a certificate names in its URI SAN, if any.
func NodeID(c *x509.Certificate) (int32, bool) {
	for _, u := range c.URIs {
		s := u.String()
		if !strings.HasPrefix(s, nodeURIPrefix) {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(s, nodeURIPrefix), 10, 32)
		if err == nil && n >= 0 {
			return int32(n), true
		}
	}
	return 0, false
}

// VerifyNode checks that a verified connection's peer is node want.
func VerifyNode(cs tls.ConnectionState, want int32) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsutil: peer sent no certificate")
	}
	got, ok := NodeID(cs.PeerCertificates[0])
	switch {
	case !ok:
		return errors.New("tlsutil: peer certificate names no node (no tusk://node/<id> URI SAN)")
	case got != want:
		return fmt.Errorf("tlsutil: peer is node %d, want node %d", got, want)
	}
	return nil
}

// PeerNode returns the node id of a verified connection's peer, if its
// certificate names one.
func PeerNode(cs tls.ConnectionState) (int32, bool) {
	if len(cs.PeerCertificates) == 0 {
		return 0, false
	}
	return NodeID(cs.PeerCertificates[0])
}

// NodeServerConfig is the server configuration of node-to-node
// listeners (the internal listener, Raft): a client certificate of the CA
// is required and must name a node (RequireNode).
func (r *Reloader) NodeServerConfig() *tls.Config {
	cfg := r.ServerConfig(tls.RequireAndVerifyClientCert)
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := inner(h)
		if err != nil {
			return nil, err
		}
		c.VerifyConnection = RequireNode
		return c, nil
	}
	return cfg
}

// NodeClientConfig is the client configuration of a call to node want;
// with want < 0, to any node, as long as the server's certificate names
// one (RequireNode).
func (r *Reloader) NodeClientConfig(want int32) *tls.Config {
	cfg := r.ClientConfig(want)
	if want < 0 {
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return err
			}
			return RequireNode(cs)
		}
	}
	return cfg
}

// RequireNode refuses a peer whose certificate names no node (a client
// certificate of the same CA).
func RequireNode(cs tls.ConnectionState) error {
	if _, ok := PeerNode(cs); !ok {
		return errors.New("tlsutil: the peer certificate names no node (no tusk://node/<id> URI SAN)")
	}
	return nil
}
