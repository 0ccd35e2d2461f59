package compat

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TUSK_COMPAT_NODE_TLS=1 runs every cluster the harness starts with
// node-to-node mutual TLS (docs/security.md, "Node to node"): a CA and node
// certificates from `tusk certs` per cluster, each node started with its
// own, `tusk cluster` run with node 1's (TUSK_TLS_*), and the tests' direct
// internal calls (internalPost) made over TLS. Clients stay PLAINTEXT.
// A test that sets TUSK_TLS_CERT_FILE itself (TestClusterSecureNodes)
// keeps its own certificates.
func nodeTLSMode() bool { return os.Getenv("TUSK_COMPAT_NODE_TLS") == "1" }

// maxTLSNodes is how many node certificates a cluster gets (spare nodes
// join with ids above the initial ones).
const maxTLSNodes = 9

// setupNodeTLS issues the cluster's certificates in node TLS mode.
func (c *cluster) setupNodeTLS(t *testing.T) {
	t.Helper()
	if !nodeTLSMode() || os.Getenv("TUSK_TLS_CERT_FILE") != "" {
		return
	}
	var ids []string
	for id := 1; id <= maxTLSNodes; id++ {
		ids = append(ids, strconv.Itoa(id))
	}
	certs := makeCerts(t, "--nodes", strings.Join(ids, ","), "--ips", "127.0.0.1")
	c.certs = &certs
	t.Setenv("TUSK_TLS_CERT_FILE", certs.cert("node1"))
	t.Setenv("TUSK_TLS_KEY_FILE", certs.key("node1"))
	t.Setenv("TUSK_TLS_CA_FILE", certs.ca())
}

// tlsOpts are node id's TLS serve flags in node TLS mode (none otherwise).
func (c *cluster) tlsOpts(id int32) []startOpt {
	if c.certs == nil {
		return nil
	}
	name := fmt.Sprintf("node%d", id)
	return []startOpt{withFlag("tls-cert-file", c.certs.cert(name)), withFlag("tls-key-file", c.certs.key(name)), withFlag("tls-ca-file", c.certs.ca())}
}

// cliTLSFlags are the `tusk cluster` flags that present node id's
// certificate (add-node needs the added node's own), none without TLS.
func (c *cluster) cliTLSFlags(id int32) []string {
	if c.certs == nil {
		return nil
	}
	return c.certs.tlsFlags(fmt.Sprintf("node%d", id))
}

// internalPost POSTs a JSON body to path on node id's internal listener,
// over TLS with node 1's certificate in node TLS mode.
func (c *cluster) internalPost(id int32, path string, body []byte) (*http.Response, error) {
	hc := http.DefaultClient
	if c.certs != nil {
		cert, err := tls.LoadX509KeyPair(c.certs.cert("node1"), c.certs.key("node1"))
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true} //nolint:gosec // the test's own cluster
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d tls.Dialer
				d.Config = cfg
				return d.DialContext(ctx, network, addr)
			},
		}}
	}
	return hc.Post("http://"+c.node(id).Internal+path, "application/json", bytes.NewReader(body))
}
