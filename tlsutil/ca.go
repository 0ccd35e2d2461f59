package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway certificate authority for tests and local secure
// clusters (`tusk certs`, `make cluster-secure`). It is not meant to run
// production PKI.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// NewCA creates a self-signed CA valid for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte { return ca.pem }

// CertRequest describes a certificate to issue.
type CertRequest struct {
	Subject pkix.Name
	IPs     []net.IP
	DNS     []string
	URIs    []*url.URL
	// Node, if >= 0, adds the node identity URI SAN tusk://node/<Node>.
	Node     int32
	ValidFor time.Duration // default 24h
	// NotBefore, if set, backdates or postdates the certificate (tests
	// of expired certificates).
	NotBefore time.Time
}

// Issue creates a key and a certificate signed by the CA, usable by both
// servers and clients, and returns them in PEM.
func (ca *CA) Issue(r CertRequest) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: key: %w", err)
	}
	if r.ValidFor == 0 {
		r.ValidFor = 24 * time.Hour
	}
	nb := r.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	uris := append([]*url.URL(nil), r.URIs...)
	if r.Node >= 0 {
		uris = append(uris, NodeURI(r.Node))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      r.Subject,
		NotBefore:    nb,
		NotAfter:     nb.Add(r.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  r.IPs,
		DNSNames:     r.DNS,
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// IssueFiles issues a certificate and writes dir/name.crt and
// dir/name.key (mode 0600), returning their paths.
func (ca *CA) IssueFiles(dir, name string, r CertRequest) (Files, error) {
	c, k, err := ca.Issue(r)
	if err != nil {
		return Files{}, err
	}
	f := Files{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	if err := os.WriteFile(f.CertFile, c, 0o644); err != nil {
		return Files{}, fmt.Errorf("tlsutil: write %s: %w", f.CertFile, err)
	}
	if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
		return Files{}, fmt.Errorf("tlsutil: write %s: %w", f.KeyFile, err)
	}
	return f, nil
}

// WriteCA writes the CA certificate to dir/ca.crt and returns the path.
func (ca *CA) WriteCA(dir string) (string, error) {
	p := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(p, ca.pem, 0o644); err != nil {
		return "", fmt.Errorf("tlsutil: write %s: %w", p, err)
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic("tlsutil: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return n
}
