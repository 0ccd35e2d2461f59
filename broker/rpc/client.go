package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tuskdb/tusk/metadata"
)

// MaxBody bounds a request or response body read from the wire.
const MaxBody = 64 << 20

// errorSnippet bounds how much of a non-JSON error body an error quotes.
const errorSnippet = 512

// Client calls other nodes' internal listeners.
type Client struct {
	hc *http.Client
}

// NewClient is a Client over hc; nil means NewHTTPClient(30 * time.Second).
func NewClient(hc *http.Client) *Client {
	if hc == nil {
		hc = NewHTTPClient(30 * time.Second)
	}
	return &Client{hc: hc}
}

// NewHTTPClient is the HTTP client for node-to-node calls: a 2 s dial
// timeout, kept-alive connections, and timeout as the bound of a whole
// call (0: only the call's context bounds it).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// NewTLSHTTPClient is NewHTTPClient over mutual TLS (node-to-node
// traffic, docs/security.md): every connection to addr is a TLS
// connection made with tlsFor(addr), inside which the calls travel as
// plain HTTP/1.1, as on a plaintext internal listener.
func NewTLSHTTPClient(timeout time.Duration, tlsFor func(addr string) *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				tc := tls.Client(nc, tlsFor(addr))
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := tc.HandshakeContext(hctx); err != nil {
					nc.Close()
					return nil, fmt.Errorf("rpc: TLS handshake with %s: %w", addr, err)
				}
				return tc, nil
			},
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// Call sends in as the JSON body of method path to the internal listener
// at addr (host:port) and decodes the 200 answer into out (nil: discard
// it; a *json.RawMessage keeps it as sent). A nil in sends no body; a
// json.RawMessage in is sent as is (an encoded metadata command, for
// example).
//
// Errors: a transport failure wraps metadata.ErrUnreachable; an error
// answer is a *RemoteError that wraps the metadata sentinel of its kind;
// any other non-200 answer is an error quoting the status and the start of
// the body.
func (c *Client) Call(ctx context.Context, addr, method, path string, in, out any) error {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case json.RawMessage:
		body = bytes.NewReader(v)
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("rpc: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return fmt.Errorf("rpc: %s %s%s: %w", method, addr, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s%s: %w", metadata.ErrUnreachable, method, addr, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return fmt.Errorf("%w: %s %s%s: read answer: %w", metadata.ErrUnreachable, method, addr, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorBody
		if json.Unmarshal(raw, &e) != nil || e.Kind == "" {
			snippet := bytes.TrimSpace(raw)
			if len(snippet) > errorSnippet {
				snippet = append(snippet[:errorSnippet:errorSnippet], "..."...)
			}
			return fmt.Errorf("rpc: %s %s%s: %s: %q", method, addr, path, resp.Status, snippet)
		}
		return &RemoteError{Addr: addr, Path: path, Status: resp.StatusCode, Kind: e.Kind, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("rpc: %s %s%s: decode answer: %w", method, addr, path, err)
	}
	return nil
}
