package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuskdb/tusk/broker/rpc"
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

	// call sends body (nil: none) to path on the node and prints its JSON
	// answer, indented.
	call := func(c *cobra.Command, method, path string, body any) error {
		ctx, cancel := context.WithTimeout(c.Context(), timeout)
		defer cancel()
		var out json.RawMessage
		if err := rpc.NewClient(rpc.NewHTTPClient(timeout)).Call(ctx, server, method, path, body, &out); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, out, "", "  ") == nil {
			out = pretty.Bytes()
		}
		_, err := fmt.Fprintln(c.OutOrStdout(), string(bytes.TrimSpace(out)))
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
