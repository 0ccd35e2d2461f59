package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/tlsutil"
)

// newClusterCmd is `tusk cluster`: admin calls to any node's internal
// listener (the node forwards controller-only calls to the controller).
func newClusterCmd() *cobra.Command {
	var server string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change cluster membership (talks to a node's internal listener)",
	}
	cmd.PersistentFlags().StringVar(&server, "server", "127.0.0.1:9093", "internal listener (host:port) of any node; see its ready file")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the answer")
	// With node TLS (docs/security.md) the internal listener accepts only
	// node certificates: run the command with one (add-node with the new
	// node's own).
	var files tlsutil.Files
	cmd.PersistentFlags().StringVar(&files.CertFile, "tls-cert-file", os.Getenv("TUSK_TLS_CERT_FILE"), "PEM node certificate for a TLS internal listener (env TUSK_TLS_CERT_FILE)")
	cmd.PersistentFlags().StringVar(&files.KeyFile, "tls-key-file", os.Getenv("TUSK_TLS_KEY_FILE"), "PEM key of --tls-cert-file (env TUSK_TLS_KEY_FILE)")
	cmd.PersistentFlags().StringVar(&files.CAFile, "tls-ca-file", os.Getenv("TUSK_TLS_CA_FILE"), "PEM cluster CA the node's certificate is checked against (env TUSK_TLS_CA_FILE)")
	client := func() (*rpc.Client, error) {
		if !files.Set() {
			return rpc.NewClient(rpc.NewHTTPClient(timeout)), nil
		}
		if files.CAFile == "" {
			return nil, fmt.Errorf("cluster: --tls-ca-file is required with --tls-cert-file")
		}
		r, err := tlsutil.Load(files)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		return rpc.NewClient(rpc.NewTLSHTTPClient(timeout, func(string) *tls.Config { return r.ClientConfig(-1) })), nil
	}

	// call sends body (nil: none) to path on the node and prints its JSON
	// answer, indented.
	call := func(c *cobra.Command, method, path string, body any) error {
		ctx, cancel := context.WithTimeout(c.Context(), timeout)
		defer cancel()
		var out json.RawMessage
		cl, err := client()
		if err != nil {
			return err
		}
		if err := cl.Call(ctx, server, method, path, body, &out); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, out, "", "  ") == nil {
			out = pretty.Bytes()
		}
		_, err = fmt.Fprintln(c.OutOrStdout(), string(bytes.TrimSpace(out)))
		return err
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Print the controller, the Raft voters and the registered brokers as JSON",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return call(c, http.MethodGet, rpc.PathStatus, nil) },
	}
	dump := &cobra.Command{
		Use:   "dump",
		Short: "Print the node's metadata as canonical JSON (broker addresses and liveness left out)",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return call(c, http.MethodGet, rpc.PathDump, nil) },
	}
	snapshot := &cobra.Command{
		Use:   "snapshot",
		Short: "Force a Raft snapshot on the node",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return call(c, http.MethodPost, rpc.PathSnapshot, nil) },
	}
	var nodeID int32
	var raftAddr string
	add := &cobra.Command{
		Use:   "add-node",
		Short: "Add a started node (its --voters need not list it) as a Raft voter",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if raftAddr == "" {
				return fmt.Errorf("cluster add-node: --raft-addr is required")
			}
			return call(c, http.MethodPost, rpc.PathAddNode, rpc.AddNodeRequest{ID: nodeID, Raft: raftAddr})
		},
	}
	add.Flags().Int32Var(&nodeID, "node-id", -1, "id of the node to add")
	add.Flags().StringVar(&raftAddr, "raft-addr", "", "Raft address of the node to add")
	remove := &cobra.Command{
		Use:   "remove-node",
		Short: "Remove a node that leads no partitions from the cluster",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return call(c, http.MethodPost, rpc.PathRemoveNode, rpc.RemoveNodeRequest{ID: nodeID})
		},
	}
	remove.Flags().Int32Var(&nodeID, "node-id", -1, "id of the node to remove")
	for _, c := range []*cobra.Command{add, remove} {
		c.MarkFlagRequired("node-id") //nolint:errcheck // the flag exists
	}
	cmd.AddCommand(status, dump, snapshot, add, remove)
	return cmd
}
