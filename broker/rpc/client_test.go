package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tuskdb/tusk/metadata"
)

// server serves one handler on 127.0.0.1 and returns its host:port.
func server(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func call(t *testing.T, addr, method, path string, in, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return NewClient(nil).Call(ctx, addr, method, path, in, out)
}

// Every metadata sentinel a handler returns comes back from Call as an
// error that errors.Is matches against the same sentinel, with the status
// of its kind.
func TestCallErrorKindsMapBackToSentinels(t *testing.T) {
	cases := []struct {
		err    error
		kind   string
		status int
	}{
		{metadata.ErrTopicExists, "topic_exists", http.StatusConflict},
		{metadata.ErrTopicCollision, "topic_collision", http.StatusConflict},
		{metadata.ErrUnknownTopic, "unknown_topic", http.StatusConflict},
		{metadata.ErrPreconditionFailed, "precondition", http.StatusConflict},
		{metadata.ErrInvalidCommand, "invalid", http.StatusConflict},
		{metadata.ErrNotEnoughBrokers, "not_enough_brokers", http.StatusConflict},
		{metadata.ErrNotLeader, "not_leader", http.StatusMisdirectedRequest},
		{metadata.ErrNotMember, "not_member", http.StatusConflict},
		{ErrForbidden, "forbidden", http.StatusForbidden},
	}
	sentinels := make([]error, len(cases))
	for i, c := range cases {
		sentinels[i] = c.err
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			addr := server(t, Handler(func(context.Context, []byte) (any, error) {
				return nil, fmt.Errorf("fsm: apply cmd 7: %w", c.err)
			}))
			err := call(t, addr, http.MethodPost, PathApply, nil, nil)
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("Call: %v (%T), want a *RemoteError", err, err)
			}
			if re.Kind != c.kind || re.Status != c.status || re.Path != PathApply || re.Addr != addr {
				t.Errorf("RemoteError %+v, want kind %q status %d path %q addr %q", *re, c.kind, c.status, PathApply, addr)
			}
			if want := "fsm: apply cmd 7: " + c.err.Error(); re.Message != want {
				t.Errorf("message %q, want %q", re.Message, want)
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == c.err; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
			if errors.Is(err, metadata.ErrUnreachable) {
				t.Errorf("an answered error counts as unreachable: %v", err)
			}
			if Kind(err) != c.kind {
				t.Errorf("Kind of the returned error %q, want %q (a forwarded error keeps its kind)", Kind(err), c.kind)
			}
		})
	}
}

// An error that wraps no sentinel is kind internal, status 500, and comes
// back wrapping none.
func TestCallInternalError(t *testing.T) {
	addr := server(t, Handler(func(context.Context, []byte) (any, error) {
		return nil, errors.New("disk on fire")
	}))
	err := call(t, addr, http.MethodPost, PathSnapshot, nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Kind != KindInternal || re.Status != http.StatusInternalServerError || re.Message != "disk on fire" {
		t.Fatalf("Call: %#v, want kind internal, status 500, message %q", err, "disk on fire")
	}
	if re.Unwrap() != nil {
		t.Errorf("internal error wraps %v, want nil", re.Unwrap())
	}
	if want := "rpc: " + addr + PathSnapshot + ": disk on fire (internal, 500)"; err.Error() != want {
		t.Errorf("error text %q, want %q", err.Error(), want)
	}
}

// A non-200 answer that is not an ErrorBody (a proxy's page, plain text,
// a truncated body) gives an error naming the call, the status and the
// start of the body.
func TestCallNon200BodyIsAClearError(t *testing.T) {
	long := strings.Repeat("x", 2000)
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"plain text", "upstream exploded\n", http.StatusBadGateway, `rpc: POST ADDR/v1/apply: 502 Bad Gateway: "upstream exploded"`},
		{"json without kind", `{"error":"no kind"}`, http.StatusConflict, `rpc: POST ADDR/v1/apply: 409 Conflict: "{\"error\":\"no kind\"}"`},
		{"empty", "", http.StatusServiceUnavailable, `rpc: POST ADDR/v1/apply: 503 Service Unavailable: ""`},
		{"long", long, http.StatusInternalServerError, `rpc: POST ADDR/v1/apply: 500 Internal Server Error: "` + long[:errorSnippet] + `..."`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := server(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body) //nolint:errcheck // test server
			}))
			err := call(t, addr, http.MethodPost, PathApply, nil, nil)
			if err == nil {
				t.Fatal("Call succeeded on a non-200 answer")
			}
			if want := strings.Replace(c.want, "ADDR", addr, 1); err.Error() != want {
				t.Errorf("error\n %s\nwant\n %s", err, want)
			}
			var re *RemoteError
			if errors.As(err, &re) || errors.Is(err, metadata.ErrUnreachable) || errors.Is(err, metadata.ErrNotLeader) {
				t.Errorf("a non-protocol answer maps to a kind: %v", err)
			}
		})
	}
}

// Requests and answers travel as the documented JSON: a struct in is
// marshalled, a json.RawMessage in is sent unchanged, a nil in sends no
// body, and the answer decodes into out.
func TestCallBodies(t *testing.T) {
	type seen struct {
		method, path, contentType, body string
	}
	got := make(chan seen, 1)
	addr := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b)}
		io.WriteString(w, `{"leo":1234}`) //nolint:errcheck // test server
	}))
	cases := []struct {
		name   string
		method string
		in     any
		want   seen
	}{
		{"struct", http.MethodPost, ReplicaLEORequest{Topic: "t", Partition: 2, Segment: 3, Epoch: 4, FenceIndex: 5},
			seen{"POST", PathReplicaLEO, "application/json", `{"topic":"t","partition":2,"segment":3,"epoch":4,"fence_index":5}`}},
		{"raw", http.MethodPost, json.RawMessage(`{"raw":true}`), seen{"POST", PathReplicaLEO, "application/json", `{"raw":true}`}},
		{"nil", http.MethodGet, nil, seen{"GET", PathReplicaLEO, "", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out ReplicaLEOResponse
			if err := call(t, addr, c.method, PathReplicaLEO, c.in, &out); err != nil {
				t.Fatalf("Call: %v", err)
			}
			if s := <-got; s != c.want {
				t.Errorf("server saw %+v, want %+v", s, c.want)
			}
			if out.LEO != 1234 {
				t.Errorf("answer %+v, want leo 1234", out)
			}
		})
	}
}

// Handler answers the endpoint's value as JSON with status 200.
func TestHandlerAnswers(t *testing.T) {
	addr := server(t, Handler(func(_ context.Context, body []byte) (any, error) {
		var req AddNodeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", metadata.ErrInvalidCommand, err)
		}
		return Status{Node: req.ID, Leader: 1, Voters: []metadata.Member{{ID: 1, Raft: req.Raft, Voter: true}}}, nil
	}))
	var raw json.RawMessage
	if err := call(t, addr, http.MethodPost, PathAddNode, AddNodeRequest{ID: 4, Raft: "127.0.0.1:9"}, &raw); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if want := `{"node":4,"leader":1,"voters":[{"id":1,"raft":"127.0.0.1:9","voter":true}],"brokers":null}`; string(raw) != want {
		t.Errorf("answer %s, want %s", raw, want)
	}
	err := call(t, addr, http.MethodPost, PathAddNode, json.RawMessage(`{`), nil)
	if !errors.Is(err, metadata.ErrInvalidCommand) {
		t.Errorf("bad body: %v, want metadata.ErrInvalidCommand", err)
	}
}

// A node that does not answer is metadata.ErrUnreachable, the error
// callers retry.
func TestCallUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	err = call(t, addr, http.MethodPost, PathHeartbeat, nil, nil)
	if !errors.Is(err, metadata.ErrUnreachable) {
		t.Fatalf("Call to a closed port: %v, want metadata.ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), addr+PathHeartbeat) {
		t.Errorf("error %q does not name the call %s%s", err, addr, PathHeartbeat)
	}
}

// A node that forwards a call (to the controller) and answers with the
// forwarded call's error passes its kind and message on unchanged.
func TestHandlerPassesForwardedErrorsOn(t *testing.T) {
	controller := server(t, Handler(func(context.Context, []byte) (any, error) {
		return nil, fmt.Errorf("%w: node 3 leads partitions", metadata.ErrPreconditionFailed)
	}))
	node := server(t, Handler(func(ctx context.Context, body []byte) (any, error) {
		return nil, NewClient(nil).Call(ctx, controller, http.MethodPost, PathRemoveNode, json.RawMessage(body), nil)
	}))
	err := call(t, node, http.MethodPost, PathRemoveNode, RemoveNodeRequest{ID: 3}, nil)
	want := "rpc: " + node + PathRemoveNode + ": metadata: precondition failed: node 3 leads partitions (precondition, 409)"
	if err == nil || err.Error() != want || !errors.Is(err, metadata.ErrPreconditionFailed) {
		t.Errorf("forwarded error %v, want %s wrapping metadata.ErrPreconditionFailed", err, want)
	}
}
