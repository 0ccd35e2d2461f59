package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/metadata"
)

// fakeBroker serves a real FSM and canned node and group answers.
type fakeBroker struct {
	fsm    *metadata.FSM
	nodes  []NodeStatus
	groups map[string]Group
	asked  []string // topics Nodes was asked for
}

func (f *fakeBroker) FSM() *metadata.FSM { return f.fsm }
func (f *fakeBroker) NodeID() int32      { return 1 }
func (f *fakeBroker) Controller() int32  { return 2 }
func (f *fakeBroker) Nodes(_ context.Context, topic string) []NodeStatus {
	f.asked = append(f.asked, topic)
	out := []NodeStatus{}
	for _, n := range f.nodes {
		if topic == "" {
			n.Logs = nil
		} else {
			var logs []LogStatus
			for _, l := range n.Logs {
				if l.Topic == topic {
					logs = append(logs, l)
				}
			}
			n.Logs = logs
		}
		out = append(out, n)
	}
	return out
}
func (f *fakeBroker) Groups(context.Context) ([]GroupSummary, error) {
	var out []GroupSummary
	for _, g := range f.groups {
		out = append(out, GroupSummary{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
	}
	return out, nil
}
func (f *fakeBroker) Group(_ context.Context, id string) (Group, error) {
	g, ok := f.groups[id]
	if !ok {
		return Group{}, ErrNotFound
	}
	return g, nil
}

func apply(t *testing.T, f *metadata.FSM, cmds ...metadata.Command) {
	t.Helper()
	for _, c := range cmds {
		if err := f.Apply(c); err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
	}
}

// newFake: 3 brokers (3 fenced), topic "rot" with 2 partitions whose
// partition 0 rolled twice (leaders 1 → 2 → 3), and groups "g1" and
// "<script>" (the metadata refuses such topic names; group ids are free).
func newFake(t *testing.T) *fakeBroker {
	t.Helper()
	f := metadata.NewFSM()
	apply(t, f, metadata.InitCluster{ClusterID: "tusk-test"})
	for id := int32(1); id <= 3; id++ {
		apply(t, f, metadata.RegisterBroker{Broker: metadata.Broker{ID: id, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:2", Raft: "127.0.0.1:3", Rack: "r" + string(rune('0'+id))}})
	}
	apply(t, f, metadata.SetBrokerState{ID: 3, From: metadata.BrokerAlive, To: metadata.BrokerFenced})
	rot := metadata.TopicID{1}
	apply(t, f,
		metadata.CreateTopic{Name: "rot", ID: rot, Partitions: 2, Configs: map[string]string{"segment.bytes": "4096"},
			Assignments: [][]int32{{1, 2, 3}, {2, 3, 1}}},
	)
	seg := func(p int32) metadata.Segment { tp, _ := f.Topic("rot"); return tp.Parts[p].Active() }
	s := seg(0)
	apply(t, f, metadata.RollSegment{Topic: "rot", ID: rot, Partition: 0, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 100,
		NextLeader: 2, NextReplicas: []int32{2, 3, 1}, Bytes: 5000})
	s = seg(0)
	apply(t, f, metadata.RollSegment{Topic: "rot", ID: rot, Partition: 0, ExpectedSegment: s.ID, ExpectedEpoch: s.Epoch, EndOffset: 250,
		NextLeader: 3, NextReplicas: []int32{3, 1}, Bytes: 7000})
	return &fakeBroker{fsm: f,
		nodes: []NodeStatus{
			{ID: 1, Version: "v1", Lease: Lease{Valid: true, RemainingMs: 1500}, DiskBytes: 20000, TopicBytes: map[string]int64{"rot": 13000},
				Logs: []LogStatus{{Topic: "rot", Partition: 0, LogStart: 0, LogEnd: 300, HighWatermark: 290, Bytes: 13000}}},
			{ID: 2, Version: "v1", Lease: Lease{Valid: true, RemainingMs: 1700}, DiskBytes: 30000, TopicBytes: map[string]int64{"rot": 12000},
				Logs: []LogStatus{{Topic: "rot", Partition: 0, LogStart: 100, LogEnd: 300, HighWatermark: 290, Bytes: 8000},
					{Topic: "rot", Partition: 1, LogStart: 0, LogEnd: 40, HighWatermark: 40, Bytes: 4000}}},
			{ID: 3, Error: "dial tcp: connection refused"},
		},
		groups: map[string]Group{"g1": {Group: "g1", State: "Stable", ProtocolType: "consumer", Coordinator: 2, TotalLag: 7,
			Members: []GroupMember{{MemberID: "m1", ClientID: "c", Host: "/127.0.0.1", Assignments: []Assignment{{Topic: "rot", Partitions: []int32{0, 1}}}}},
			Lag:     []PartitionLag{{Topic: "rot", Partition: 0, Committed: 293, End: 300, Lag: 7, MemberID: "m1"}}},
			"a/b<c>":   {Group: "a/b<c>", State: "Empty", Coordinator: 3, Members: []GroupMember{}, Lag: []PartitionLag{}},
			"<script>": {Group: "<script>", State: "Empty", Coordinator: 1, Members: []GroupMember{}, Lag: []PartitionLag{}}},
	}
}

func get(t *testing.T, h http.Handler, path string, out any) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); strings.HasPrefix(path, "/api/") && ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %v in %q", path, err, w.Body.String())
		}
	}
	return w.Code
}

func TestClusterAPI(t *testing.T) {
	c := New(newFake(t), Options{})
	var got ClusterView
	if code := get(t, c, "/api/v1/cluster", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	l1, l2 := Lease{Valid: true, RemainingMs: 1500}, Lease{Valid: true, RemainingMs: 1700}
	want := ClusterView{ClusterID: "tusk-test", Controller: 2, ServedBy: 1, Nodes: []NodeView{
		// active segments: rot/0 led by 3 on {3,1}; rot/1 led by 2 on {2,3,1}
		{ID: 1, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:2", Raft: "127.0.0.1:3", Rack: "r1", State: "alive", Leads: 0, Replicas: 2, Version: "v1", Lease: &l1, DiskBytes: 20000},
		{ID: 2, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:2", Raft: "127.0.0.1:3", Rack: "r2", State: "alive", Controller: true, Leads: 1, Replicas: 1, Version: "v1", Lease: &l2, DiskBytes: 30000},
		{ID: 3, Kafka: "127.0.0.1:1", Internal: "127.0.0.1:2", Raft: "127.0.0.1:3", Rack: "r3", State: "fenced", Leads: 1, Replicas: 2, Error: "dial tcp: connection refused"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cluster:\n got %+v\nwant %+v", got, want)
	}
}

func TestTopicsAPI(t *testing.T) {
	fb := newFake(t)
	c := New(fb, Options{})
	var got []TopicSummary
	if code := get(t, c, "/api/v1/topics", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	want := []TopicSummary{
		{Name: "rot", ID: "AQAAAAAAAAAAAAAAAAAAAA", Partitions: 2, ReplicationFactor: 3, Segments: 4,
			Configs: map[string]string{"segment.bytes": "4096"}, DiskBytes: 25000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("topics:\n got %+v\nwant %+v", got, want)
	}
}

func TestNamesEscapedInJSON(t *testing.T) {
	c := New(newFake(t), Options{})
	// JSON escapes markup in names, so the raw answer never holds "<script>".
	req := httptest.NewRequest(http.MethodGet, "/api/v1/groups", nil)
	req.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	c.ServeHTTP(w, req)
	if body := w.Body.String(); strings.Contains(body, "<script>") || !strings.Contains(body, `\u003cscript\u003e`) {
		t.Fatalf("groups body not escaped: %s", body)
	}
}

func TestTopicAPI(t *testing.T) {
	c := New(newFake(t), Options{})
	var got TopicView
	if code := get(t, c, "/api/v1/topics/rot", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	want := []PartitionSummary{
		{Partition: 0, Leader: 3, Epoch: 2, State: "active", Replicas: []int32{3, 1}, Segments: 3, LogStart: -1, LogEnd: -1, HighWatermark: -1, Bytes: 13000},
		{Partition: 1, Leader: 2, Epoch: 0, State: "active", Replicas: []int32{2, 3, 1}, Segments: 1, LogStart: 0, LogEnd: 40, HighWatermark: 40, Bytes: 4000},
	}
	if !reflect.DeepEqual(got.PartitionList, want) || got.DiskBytes != 25000 || got.Name != "rot" || got.ReplicationFactor != 3 {
		t.Fatalf("topic:\n got %+v\nwant partitions %+v, disk 25000", got, want)
	}
}

func TestPartitionAPITimeline(t *testing.T) {
	fb := newFake(t)
	c := New(fb, Options{})
	// Node 3 (the active leader) does not answer: offsets unknown, sealed
	// sizes from the metadata.
	var got PartitionView
	if code := get(t, c, "/api/v1/topics/rot/partitions/0", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	want := []SegmentView{
		{ID: 0, Base: 0, End: 100, Epoch: 0, Leader: 1, Replicas: []int32{1, 2, 3}, Learners: []int32{}, State: "sealed", Bytes: 5000},
		{ID: 2, Base: 100, End: 250, Epoch: 1, Leader: 2, Replicas: []int32{2, 3, 1}, Learners: []int32{}, State: "sealed", Bytes: 7000, LeaderChanged: true},
		{ID: 3, Base: 250, End: -1, Epoch: 2, Leader: 3, Replicas: []int32{3, 1}, Learners: []int32{}, State: "active", LeaderChanged: true, ReplicasShrunk: true},
	}
	if !reflect.DeepEqual(got.Segments, want) {
		t.Fatalf("segments:\n got %+v\nwant %+v", got.Segments, want)
	}
	if !reflect.DeepEqual(got.Leaders, map[string]int{"1": 1, "2": 1, "3": 1}) || got.LogEnd != -1 || got.Leader != 3 || got.Epoch != 2 {
		t.Fatalf("partition: %+v", got)
	}
	wantReps := []LogStatus{{Node: 1, Topic: "rot", LogEnd: 300, HighWatermark: 290, Bytes: 13000}, {Node: 2, Topic: "rot", LogStart: 100, LogEnd: 300, HighWatermark: 290, Bytes: 8000}}
	if !reflect.DeepEqual(got.Replicas, wantReps) {
		t.Fatalf("replicas:\n got %+v\nwant %+v", got.Replicas, wantReps)
	}
	// With node 2 leading, the active segment ends at its log end and its
	// size is the leader's log minus the sealed bytes it holds (7000: it
	// starts at 100).
	f := fb.fsm
	tp, _ := f.Topic("rot")
	a := tp.Parts[0].Active()
	apply(t, f, metadata.RollSegment{Topic: "rot", ID: tp.ID, Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 260,
		NextLeader: 1, NextReplicas: []int32{1, 2}, Bytes: 100})
	tp, _ = f.Topic("rot")
	a = tp.Parts[0].Active()
	apply(t, f, metadata.RollSegment{Topic: "rot", ID: tp.ID, Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch, EndOffset: 270,
		NextLeader: 2, NextReplicas: []int32{2, 1}, Bytes: 100})
	got = PartitionView{}
	get(t, c, "/api/v1/topics/rot/partitions/0", &got)
	last := got.Segments[len(got.Segments)-1]
	if last.End != 300 || last.Bytes != 8000-7000-100-100 || !last.BytesEstimated || got.LogEnd != 300 || got.HighWatermark != 290 || got.LogStart != 100 {
		t.Fatalf("active segment %+v, partition %+v", last, got)
	}
}

func TestUnknownNamesAre404JSON(t *testing.T) {
	c := New(newFake(t), Options{})
	for path, msg := range map[string]string{
		"/api/v1/topics/nope":                  `unknown topic "nope"`,
		"/api/v1/topics/nope/partitions/0":     `unknown topic "nope"`,
		"/api/v1/topics/rot/partitions/2":      `topic "rot" has no partition "2" (it has 2)`,
		"/api/v1/topics/rot/partitions/x":      `topic "rot" has no partition "x" (it has 2)`,
		"/api/v1/groups/nope":                  `unknown group "nope"`,
		"/api/v1/nothing":                      "no such endpoint: GET /api/v1/nothing",
		"/api/v1/topics/%3Cb%3Ex/partitions/0": `unknown topic "<b>x"`,
	} {
		var e errorBody
		if code := get(t, c, path, &e); code != http.StatusNotFound || e.Error != msg {
			t.Errorf("GET %s: %d %q, want 404 %q", path, code, e.Error, msg)
		}
	}
}

func TestGroupAPI(t *testing.T) {
	c := New(newFake(t), Options{})
	var list []GroupSummary
	get(t, c, "/api/v1/groups", &list)
	if want := []GroupSummary{{Group: "<script>", State: "Empty", Coordinator: 1}, {Group: "a/b<c>", State: "Empty", Coordinator: 3}, {Group: "g1", State: "Stable", ProtocolType: "consumer", Coordinator: 2}}; !reflect.DeepEqual(list, want) {
		t.Fatalf("groups %+v", list)
	}
	var g Group
	if code := get(t, c, "/api/v1/groups/g1", &g); code != 200 || g.TotalLag != 7 || len(g.Lag) != 1 || g.Lag[0].Lag != 7 || g.Members[0].Assignments[0].Partitions[1] != 1 {
		t.Fatalf("group %d %+v", code, g)
	}
	// A group id with a slash, escaped in the path as the pages do.
	g = Group{}
	if code := get(t, c, "/api/v1/groups/a%2Fb%3Cc%3E", &g); code != 200 || g.Group != "a/b<c>" || g.Coordinator != 3 {
		t.Fatalf("group a/b<c>: %d %+v", code, g)
	}
}

func TestAccessLoopbackOrToken(t *testing.T) {
	for _, tc := range []struct {
		name, token, remote, auth, cookie, query string
		want                                     int
	}{
		{name: "loopback, no token set", remote: "127.0.0.1:1", want: 200},
		{name: "loopback v6", remote: "[::1]:1", want: 200},
		{name: "remote, no token set", remote: "10.0.0.5:1", want: 401},
		{name: "remote, token set, none given", token: "s3cret", remote: "10.0.0.5:1", want: 401},
		{name: "remote, wrong token", token: "s3cret", remote: "10.0.0.5:1", auth: "Bearer nope", want: 401},
		{name: "remote, bearer token", token: "s3cret", remote: "10.0.0.5:1", auth: "Bearer s3cret", want: 200},
		{name: "remote, cookie", token: "s3cret", remote: "10.0.0.5:1", cookie: "s3cret", want: 200},
		{name: "remote, query", token: "s3cret", remote: "10.0.0.5:1", query: "?token=s3cret", want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(newFake(t), Options{AdminToken: tc.token})
			req := httptest.NewRequest(http.MethodGet, "/api/v1/cluster"+tc.query, nil)
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: tokenCookie, Value: tc.cookie})
			}
			w := httptest.NewRecorder()
			c.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body.String())
			}
			if tc.query != "" && !strings.Contains(w.Header().Get("Set-Cookie"), tokenCookie+"=s3cret") {
				t.Fatalf("no cookie set: %q", w.Header().Get("Set-Cookie"))
			}
		})
	}
}

func TestPagesEmbeddedAndSelfContained(t *testing.T) {
	c := New(newFake(t), Options{})
	srv := httptest.NewServer(c)
	defer srv.Close()
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("GET %s: %d %v", p, resp.StatusCode, err)
		}
		// No external fonts, scripts or CDNs.
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
			if strings.Contains(string(body), bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no CSP header", p)
		}
	}
	resp, err := http.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/ui/" {
		t.Fatalf("/ui led to %s", resp.Request.URL.Path)
	}
}
