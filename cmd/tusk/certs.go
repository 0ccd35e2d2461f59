package main

import (
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuskdb/tusk/tlsutil"
)

// newCertsCmd is `tusk certs`: a throwaway CA and the certificates of a
// local secure cluster (docs/security.md, `make cluster-secure`). Node
// certificates carry the node identity URI SAN tusk://node/<id>, which
// node-to-node TLS requires, and IP SANs (librdkafka checks host names);
// client certificates carry neither a node URI nor node powers. The CA's
// key is not written: to issue more certificates, run it again for all.
func newCertsCmd() *cobra.Command {
	var (
		dir      string
		nodes    string
		ips      string
		dns      string
		clients  string
		validFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a throwaway CA with node and client certificates for a local secure cluster",
		Long: `certs writes DIR/ca.crt, DIR/node<ID>.crt and .key for every --nodes entry
(with the URI SAN tusk://node/<ID> and the IP SANs of --ips plus the entry's
own IP, as in --nodes 1=10.0.0.1,2=10.0.0.2) and DIR/<NAME>.crt and .key for
every --clients name (subject CN=<NAME>, no node identity). Keys are mode 0600.
The CA key is not kept: this is for tests and local clusters, not a PKI.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("certs: --dir is required")
			}
			common, err := parseIPs(ips)
			if err != nil {
				return err
			}
			type nodeSpec struct {
				id  int32
				ips []net.IP
			}
			var specs []nodeSpec
			for _, e := range splitList(nodes) {
				idStr, ip, hasIP := strings.Cut(e, "=")
				id, err := strconv.ParseInt(idStr, 10, 32)
				if err != nil || id < 0 {
					return fmt.Errorf("certs: --nodes entry %q: want ID or ID=IP with a node id >= 0", e)
				}
				s := nodeSpec{id: int32(id), ips: append([]net.IP(nil), common...)}
				if hasIP {
					extra, err := parseIPs(ip)
					if err != nil {
						return err
					}
					s.ips = append(s.ips, extra...)
				}
				specs = append(specs, s)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("certs: %w", err)
			}
			ca, err := tlsutil.NewCA("tusk throwaway CA", validFor)
			if err != nil {
				return fmt.Errorf("certs: %w", err)
			}
			caFile, err := ca.WriteCA(dir)
			if err != nil {
				return fmt.Errorf("certs: %w", err)
			}
			out := c.OutOrStdout()
			fmt.Fprintln(out, caFile)
			names := splitList(dns)
			for _, s := range specs {
				name := "node" + strconv.Itoa(int(s.id))
				f, err := ca.IssueFiles(dir, name, tlsutil.CertRequest{Subject: pkix.Name{CommonName: name}, IPs: s.ips, DNS: names, Node: s.id, ValidFor: validFor})
				if err != nil {
					return fmt.Errorf("certs: %s: %w", name, err)
				}
				fmt.Fprintln(out, f.CertFile, f.KeyFile)
			}
			for _, name := range splitList(clients) {
				if strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, "node") || name == "ca" {
					return fmt.Errorf("certs: client name %q: no path separators, and not ca or node*", name)
				}
				f, err := ca.IssueFiles(dir, name, tlsutil.CertRequest{Subject: pkix.Name{CommonName: name}, Node: -1, ValidFor: validFor})
				if err != nil {
					return fmt.Errorf("certs: %s: %w", name, err)
				}
				fmt.Fprintln(out, f.CertFile, f.KeyFile)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the PEM files to (created)")
	cmd.Flags().StringVar(&nodes, "nodes", "1,2,3", "node ids to issue node certificates for, each optionally ID=IP")
	cmd.Flags().StringVar(&ips, "ips", "127.0.0.1,::1", "IP SANs of every node certificate")
	cmd.Flags().StringVar(&dns, "dns", "localhost", "DNS SANs of every node certificate")
	cmd.Flags().StringVar(&clients, "clients", "", "names to issue client certificates for (CN=<name>)")
	cmd.Flags().DurationVar(&validFor, "valid-for", 365*24*time.Hour, "validity of the CA and the certificates")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func parseIPs(s string) ([]net.IP, error) {
	var out []net.IP
	for _, e := range splitList(s) {
		ip := net.ParseIP(e)
		if ip == nil {
			return nil, fmt.Errorf("certs: %q is not an IP address", e)
		}
		out = append(out, ip)
	}
	return out, nil
}
