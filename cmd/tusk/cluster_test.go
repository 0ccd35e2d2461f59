package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/metadata"
)

// fakeNode serves /v1/status and /v1/remove-node the way a node does.
func fakeNode(t *testing.T) (addr string, removed chan rpc.RemoveNodeRequest) {
	t.Helper()
	removed = make(chan rpc.RemoveNodeRequest, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+rpc.PathStatus, rpc.Handler(func(context.Context, []byte) (any, error) {
		return rpc.Status{Node: 2, Leader: 1, Voters: []metadata.Member{{ID: 1, Raft: "127.0.0.1:1", Voter: true}}}, nil
	}))
	mux.HandleFunc("POST "+rpc.PathRemoveNode, rpc.Handler(func(_ context.Context, body []byte) (any, error) {
		var req rpc.RemoveNodeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", metadata.ErrInvalidCommand, err)
		}
		removed <- req
		return nil, fmt.Errorf("%w: node %d leads partitions", metadata.ErrPreconditionFailed, req.ID)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), removed
}

func runCluster(args ...string) (string, error) {
	cmd := newClusterCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestClusterStatusPrintsIndentedJSON(t *testing.T) {
	addr, _ := fakeNode(t)
	out, err := runCluster("status", "--server", addr, "--timeout", "5s")
	if err != nil {
		t.Fatalf("cluster status: %v", err)
	}
	want := `{
  "node": 2,
  "leader": 1,
  "voters": [
    {
      "id": 1,
      "raft": "127.0.0.1:1",
      "voter": true
    }
  ],
  "brokers": null
}
`
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
}

func TestClusterRemoveNodeReportsTheNodesError(t *testing.T) {
	addr, removed := fakeNode(t)
	_, err := runCluster("remove-node", "--server", addr, "--node-id", "3", "--timeout", "5s")
	select {
	case got := <-removed:
		if got != (rpc.RemoveNodeRequest{ID: 3}) {
			t.Errorf("node got %+v, want id 3", got)
		}
	default:
		t.Errorf("the node never got the remove-node call")
	}
	want := "cluster: rpc: " + addr + rpc.PathRemoveNode + ": metadata: precondition failed: node 3 leads partitions (precondition, 409)"
	if err == nil || err.Error() != want {
		t.Errorf("remove-node error %v, want %s", err, want)
	}
}
