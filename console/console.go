package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tuskdb/tusk/metadata"
)

// ErrNotFound is what Broker.Group returns for a group that does not
// exist; the API answers it with 404.
var ErrNotFound = errors.New("console: not found")

// Broker is what the console needs from the node beyond the metadata;
// package broker implements it (broker/console.go).
type Broker interface {
	// FSM is this node's replica of the metadata.
	FSM() *metadata.FSM
	// NodeID is this node's id; Controller is the controller's, or -1.
	NodeID() int32
	Controller() int32
	// Nodes asks every registered broker for its status. With topic set,
	// each status lists that topic's local logs (Logs); otherwise Logs is
	// empty. A node that does not answer has Error set.
	Nodes(ctx context.Context, topic string) []NodeStatus
	// Groups lists the consumer groups; Group describes one with its lag
	// (ErrNotFound if there is no such group).
	Groups(ctx context.Context) ([]GroupSummary, error)
	Group(ctx context.Context, id string) (Group, error)
}

// NodeStatus is one node's own view of itself.
type NodeStatus struct {
	ID        int32  `json:"id"`
	Error     string `json:"error,omitempty"` // the node did not answer
	Version   string `json:"version"`
	Lease     Lease  `json:"lease"`
	DiskBytes int64  `json:"disk_bytes"` // all local logs
	// TopicBytes is the size of the local logs per topic.
	TopicBytes map[string]int64 `json:"topic_bytes,omitempty"`
	// Logs are the local logs of the topic asked for.
	Logs []LogStatus `json:"logs,omitempty"`
}

// Lease is a node's write lease as the node sees it.
type Lease struct {
	Valid       bool  `json:"valid"`
	RemainingMs int64 `json:"remaining_ms"` // 0 when expired
}

// LogStatus is one local log (partition replica).
type LogStatus struct {
	Node          int32  `json:"node"` // set by the console
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	LogStart      int64  `json:"log_start"`
	LogEnd        int64  `json:"log_end"`
	HighWatermark int64  `json:"high_watermark"`
	Bytes         int64  `json:"bytes"`
}

// Group types, as ListGroups (v5) names them.
const (
	GroupClassic  = "classic"
	GroupConsumer = "consumer" // KIP-848
	GroupShare    = "share"    // KIP-932
)

// GroupSummary is one group in the list.
type GroupSummary struct {
	Group        string `json:"group"`
	Type         string `json:"type"` // classic, consumer, share
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

// Group is one group of any type with its members and lag.
type Group struct {
	Group        string `json:"group"`
	Type         string `json:"type"` // classic, consumer, share
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"` // classic groups
	Protocol     string `json:"protocol"`      // classic groups
	// GroupEpoch, AssignmentEpoch and Assignor are those of a consumer
	// or share group (zero and empty for a classic one).
	GroupEpoch      int32          `json:"group_epoch,omitempty"`
	AssignmentEpoch int32          `json:"assignment_epoch,omitempty"`
	Assignor        string         `json:"assignor,omitempty"`
	Coordinator     int32          `json:"coordinator"`
	Members         []GroupMember  `json:"members"`
	Lag             []PartitionLag `json:"lag"`
	// TotalLag sums the partitions' lag (those with a known lag).
	TotalLag int64  `json:"total_lag"`
	Error    string `json:"error,omitempty"`
}

// GroupMember is one member and what it was assigned.
type GroupMember struct {
	MemberID    string       `json:"member_id"`
	InstanceID  string       `json:"instance_id,omitempty"`
	ClientID    string       `json:"client_id"`
	Host        string       `json:"host"`
	Assignments []Assignment `json:"assignments"`
	// For consumer and share groups: the member's epoch, rack and
	// subscription; TargetAssignments (consumer groups) is what the
	// member is being moved to while it reconciles.
	MemberEpoch       int32        `json:"member_epoch,omitempty"`
	Rack              string       `json:"rack,omitempty"`
	SubscribedTopics  []string     `json:"subscribed_topics,omitempty"`
	SubscribedRegex   string       `json:"subscribed_regex,omitempty"`
	TargetAssignments []Assignment `json:"target_assignments,omitempty"`
}

// Assignment is a member's partitions of one topic.
type Assignment struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// PartitionLag is a group's position on one partition: Lag is End (the
// high watermark) minus Committed (minus the log start when nothing is
// committed), -1 when unknown. For a share group Committed is the
// share-partition start offset (-1: the group has no state there yet, lag
// unknown).
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // -1: no commit
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	MemberID  string `json:"member_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Options configure a Console.
type Options struct {
	// AdminToken lets non-loopback clients in (see the package doc);
	// empty: loopback only.
	AdminToken string
	// NodeTimeout bounds how long a page waits for the other nodes and
	// the group coordinator (default 3 s).
	NodeTimeout time.Duration
}

//go:embed ui
var assets embed.FS

// Console serves the pages and the API. Mount it at "/ui/" and "/api/v1/"
// (Paths lists both) on the HTTP listener.
type Console struct {
	b    Broker
	opts Options
	mux  *http.ServeMux
}

// Paths are the mux patterns a Console answers.
var Paths = []string{"/ui", "/ui/", "/api/v1/"}

// New builds a Console over b.
func New(b Broker, opts Options) *Console {
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = 3 * time.Second
	}
	c := &Console{b: b, opts: opts, mux: http.NewServeMux()}
	ui, err := fs.Sub(assets, "ui")
	if err != nil {
		panic(err) // the embedded directory exists: a build error otherwise
	}
	c.mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(ui)))
	c.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusFound))
	c.mux.HandleFunc("GET /api/v1/cluster", c.api(c.cluster))
	c.mux.HandleFunc("GET /api/v1/topics", c.api(c.topics))
	c.mux.HandleFunc("GET /api/v1/topics/{topic}", c.api(c.topic))
	c.mux.HandleFunc("GET /api/v1/topics/{topic}/partitions/{partition}", c.api(c.partition))
	c.mux.HandleFunc("GET /api/v1/groups", c.api(c.groups))
	c.mux.HandleFunc("GET /api/v1/groups/{group}", c.api(c.group))
	c.mux.HandleFunc("/api/v1/", c.api(func(r *http.Request) (any, error) {
		return nil, httpError{http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)}
	}))
	return c
}

// ServeHTTP checks access (loopback or the admin token) and serves.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.allowed(w, r) {
		msg := "the console needs a loopback client or the admin token (http.admin-token)"
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: msg})
		} else {
			http.Error(w, msg, http.StatusUnauthorized)
		}
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

const tokenCookie = "tusk_admin_token"

// allowed applies the access rule; /ui/?token=T sets the token cookie.
func (c *Console) allowed(w http.ResponseWriter, r *http.Request) bool {
	if tok := c.opts.AdminToken; tok != "" {
		given := ""
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			given = strings.TrimPrefix(h, "Bearer ")
		} else if q := r.URL.Query().Get("token"); q != "" {
			given = q
		} else if ck, err := r.Cookie(tokenCookie); err == nil {
			given = ck.Value
		}
		if given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(tok)) == 1 {
			if r.URL.Query().Get("token") != "" {
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: given, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			}
			return true
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type errorBody struct {
	Error string `json:"error"`
}

// httpError is an error with its HTTP status.
type httpError struct {
	status int
	msg    string
}

func (e httpError) Error() string { return e.msg }

func (c *Console) api(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := h(r)
		if err != nil {
			status := http.StatusInternalServerError
			var he httpError
			if errors.As(err, &he) {
				status = he.status
			} else if errors.Is(err, ErrNotFound) {
				status = http.StatusNotFound
			} else if errors.Is(err, context.DeadlineExceeded) {
				status = http.StatusGatewayTimeout
			}
			writeJSON(w, status, errorBody{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"console: encode the answer: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n')) //nolint:errcheck // the client went away; nothing to do
}

// ClusterView is GET /api/v1/cluster.
type ClusterView struct {
	ClusterID  string     `json:"cluster_id"`
	Controller int32      `json:"controller"`
	ServedBy   int32      `json:"served_by"`
	Nodes      []NodeView `json:"nodes"`
}

// NodeView is one node on the cluster page.
type NodeView struct {
	ID         int32  `json:"id"`
	Kafka      string `json:"kafka"`
	Internal   string `json:"internal"`
	Raft       string `json:"raft"`
	Rack       string `json:"rack"`
	State      string `json:"state"` // alive, fenced (the metadata's liveness)
	Controller bool   `json:"controller"`
	// Leads counts the partitions whose active segment this node leads;
	// Replicas those whose active segment it replicates (leading included).
	Leads    int `json:"leads"`
	Replicas int `json:"replicas"`
	// Version, Lease and DiskBytes are the node's own answer; Error says
	// why there is none.
	Version   string `json:"version"`
	Lease     *Lease `json:"lease"`
	DiskBytes int64  `json:"disk_bytes"`
	Error     string `json:"error,omitempty"`
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.opts.NodeTimeout)
}

func (c *Console) cluster(r *http.Request) (any, error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	f := c.b.FSM()
	ctrl := c.b.Controller()
	leads, reps := map[int32]int{}, map[int32]int{}
	for _, t := range f.Topics() {
		for _, p := range t.Parts {
			a := p.Active()
			if a.Leader >= 0 {
				leads[a.Leader]++
			}
			for _, id := range a.Replicas {
				reps[id]++
			}
		}
	}
	status := map[int32]NodeStatus{}
	for _, s := range c.b.Nodes(ctx, "") {
		status[s.ID] = s
	}
	out := ClusterView{ClusterID: f.ClusterID(), Controller: ctrl, ServedBy: c.b.NodeID(), Nodes: []NodeView{}}
	for _, br := range f.Brokers() {
		v := NodeView{ID: br.ID, Kafka: br.Kafka, Internal: br.Internal, Raft: br.Raft, Rack: br.Rack, State: string(br.State),
			Controller: br.ID == ctrl, Leads: leads[br.ID], Replicas: reps[br.ID]}
		if s, ok := status[br.ID]; !ok {
			v.Error = "no answer"
		} else if s.Error != "" {
			v.Error = s.Error
		} else {
			lease := s.Lease
			v.Version, v.Lease, v.DiskBytes = s.Version, &lease, s.DiskBytes
		}
		out.Nodes = append(out.Nodes, v)
	}
	return out, nil
}

// TopicSummary is one topic on the topics page.
type TopicSummary struct {
	Name              string            `json:"name"`
	ID                string            `json:"id"`
	Internal          bool              `json:"internal"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int               `json:"replication_factor"`
	Segments          int               `json:"segments"` // chain segments over all partitions
	Configs           map[string]string `json:"configs"`  // the topic's overrides
	// DiskBytes is the topic's size on disk summed over every replica
	// that answered.
	DiskBytes int64 `json:"disk_bytes"`
}

// topicID is a topic ID as Kafka prints it (Uuid.toString: URL-safe
// base64 without padding), as kafka-topics and the admin CLI show it.
func topicID(id metadata.TopicID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func summary(t metadata.Topic) TopicSummary {
	s := TopicSummary{Name: t.Name, ID: topicID(t.ID), Internal: t.Internal, Partitions: int32(len(t.Parts)),
		ReplicationFactor: t.ReplicationFactor(), Configs: t.Configs}
	if s.Configs == nil {
		s.Configs = map[string]string{}
	}
	for _, p := range t.Parts {
		s.Segments += len(p.Segments)
	}
	return s
}

func (c *Console) topics(r *http.Request) (any, error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	nodes := c.b.Nodes(ctx, "")
	out := []TopicSummary{}
	for _, t := range c.b.FSM().Topics() {
		s := summary(t)
		for _, n := range nodes {
			s.DiskBytes += n.TopicBytes[t.Name]
		}
		out = append(out, s)
	}
	return out, nil
}

// TopicView is GET /api/v1/topics/{topic}.
type TopicView struct {
	TopicSummary
	PartitionList []PartitionSummary `json:"partition_list"`
}

// PartitionSummary is one partition on the topic page. Offsets come from
// the leader's log (-1 when the leader did not answer); Bytes is the
// largest local log among the replicas that answered.
type PartitionSummary struct {
	Partition     int32   `json:"partition"`
	Leader        int32   `json:"leader"`
	Epoch         int32   `json:"epoch"`
	State         string  `json:"state"` // the active segment's state
	Replicas      []int32 `json:"replicas"`
	Segments      int     `json:"segments"`
	LogStart      int64   `json:"log_start"`
	LogEnd        int64   `json:"log_end"`
	HighWatermark int64   `json:"high_watermark"`
	Bytes         int64   `json:"bytes"`
}

func (c *Console) lookupTopic(name string) (metadata.Topic, error) {
	t, ok := c.b.FSM().Topic(name)
	if !ok {
		return t, httpError{http.StatusNotFound, fmt.Sprintf("unknown topic %q", name)}
	}
	return t, nil
}

// localLogs indexes the nodes' logs by partition and node.
func localLogs(nodes []NodeStatus) map[int32]map[int32]LogStatus {
	out := map[int32]map[int32]LogStatus{}
	for _, n := range nodes {
		for _, l := range n.Logs {
			if out[l.Partition] == nil {
				out[l.Partition] = map[int32]LogStatus{}
			}
			l.Node = n.ID
			out[l.Partition][n.ID] = l
		}
	}
	return out
}

func (c *Console) topic(r *http.Request) (any, error) {
	t, err := c.lookupTopic(r.PathValue("topic"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	nodes := c.b.Nodes(ctx, t.Name)
	logs := localLogs(nodes)
	out := TopicView{TopicSummary: summary(t), PartitionList: []PartitionSummary{}}
	for _, n := range nodes {
		out.DiskBytes += n.TopicBytes[t.Name]
	}
	for i, p := range t.Parts {
		a := p.Active()
		ps := PartitionSummary{Partition: int32(i), Leader: a.Leader, Epoch: a.Epoch, State: string(a.State), Replicas: a.Replicas,
			Segments: len(p.Segments), LogStart: -1, LogEnd: -1, HighWatermark: -1}
		if ps.Replicas == nil {
			ps.Replicas = []int32{}
		}
		if l, ok := logs[int32(i)][a.Leader]; ok {
			ps.LogStart, ps.LogEnd, ps.HighWatermark = l.LogStart, l.LogEnd, l.HighWatermark
		}
		for _, l := range logs[int32(i)] {
			ps.Bytes = max(ps.Bytes, l.Bytes)
		}
		out.PartitionList = append(out.PartitionList, ps)
	}
	return out, nil
}

// PartitionView is GET /api/v1/topics/{topic}/partitions/{partition}: the
// segment chain, oldest first.
type PartitionView struct {
	Topic         string        `json:"topic"`
	Partition     int32         `json:"partition"`
	Leader        int32         `json:"leader"`
	Epoch         int32         `json:"epoch"`
	LogStart      int64         `json:"log_start"` // the leader's, -1 unknown
	LogEnd        int64         `json:"log_end"`
	HighWatermark int64         `json:"high_watermark"`
	Segments      []SegmentView `json:"segments"`
	// Leaders counts the segments each node led (rotation at a glance).
	Leaders map[string]int `json:"leaders"`
	// Replicas are the local logs of the partition, per node that answered.
	Replicas []LogStatus `json:"replicas"`
}

// SegmentView is one link of the chain. End is exclusive; for the active
// segment it is the leader's log end (-1 if unknown) and Bytes is the
// leader's log size minus the sealed segments it holds (BytesEstimated).
type SegmentView struct {
	ID             int64   `json:"id"`
	Base           int64   `json:"base"`
	End            int64   `json:"end"`
	Epoch          int32   `json:"epoch"`
	Leader         int32   `json:"leader"`
	Replicas       []int32 `json:"replicas"`
	Learners       []int32 `json:"learners"`
	State          string  `json:"state"` // active, fenced, sealed
	Bytes          int64   `json:"bytes"`
	BytesEstimated bool    `json:"bytes_estimated,omitempty"`
	// LeaderChanged: the previous segment had another leader (a
	// rotation or failover happened at Base).
	LeaderChanged bool `json:"leader_changed"`
	// ReplicasShrunk: this segment has fewer replicas than the previous
	// one (a laggard dropped, or a failover sealed without a node).
	ReplicasShrunk bool `json:"replicas_shrunk"`
}

func (c *Console) partition(r *http.Request) (any, error) {
	t, err := c.lookupTopic(r.PathValue("topic"))
	if err != nil {
		return nil, err
	}
	pn, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || pn < 0 || int(pn) >= len(t.Parts) {
		return nil, httpError{http.StatusNotFound, fmt.Sprintf("topic %q has no partition %q (it has %d)", t.Name, r.PathValue("partition"), len(t.Parts))}
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	nodes := c.b.Nodes(ctx, t.Name)
	logs := localLogs(nodes)[int32(pn)]
	p := t.Parts[pn]
	a := p.Active()
	out := PartitionView{Topic: t.Name, Partition: int32(pn), Leader: a.Leader, Epoch: a.Epoch, LogStart: -1, LogEnd: -1, HighWatermark: -1,
		Segments: []SegmentView{}, Leaders: map[string]int{}, Replicas: []LogStatus{}}
	leaderLog, haveLeader := logs[a.Leader]
	if haveLeader {
		out.LogStart, out.LogEnd, out.HighWatermark = leaderLog.LogStart, leaderLog.LogEnd, leaderLog.HighWatermark
	}
	var sealedHeld int64 // sealed bytes at or above the leader's log start
	for i, s := range p.Segments {
		v := SegmentView{ID: s.ID, Base: s.BaseOffset, End: s.EndOffset, Epoch: s.Epoch, Leader: s.Leader, Replicas: s.Replicas,
			Learners: s.Learners, State: string(s.State), Bytes: s.Bytes}
		if v.Replicas == nil {
			v.Replicas = []int32{}
		}
		if v.Learners == nil {
			v.Learners = []int32{}
		}
		if i > 0 {
			prev := p.Segments[i-1]
			v.LeaderChanged = prev.Leader != s.Leader
			v.ReplicasShrunk = len(s.Replicas) < len(prev.Replicas)
		}
		if s.State == metadata.SegmentSealed {
			if haveLeader && s.BaseOffset >= leaderLog.LogStart {
				sealedHeld += s.Bytes
			}
		} else {
			v.End = -1
			if haveLeader {
				v.End = leaderLog.LogEnd
				v.Bytes, v.BytesEstimated = max(0, leaderLog.Bytes-sealedHeld), true
			}
		}
		out.Leaders[strconv.Itoa(int(s.Leader))]++
		out.Segments = append(out.Segments, v)
	}
	for _, l := range logs {
		out.Replicas = append(out.Replicas, l)
	}
	sort.Slice(out.Replicas, func(i, j int) bool { return out.Replicas[i].Node < out.Replicas[j].Node })
	return out, nil
}

func (c *Console) groups(r *http.Request) (any, error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	gs, err := c.b.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("console: list groups: %w", err)
	}
	if gs == nil {
		gs = []GroupSummary{}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].Group < gs[j].Group })
	return gs, nil
}

func (c *Console) group(r *http.Request) (any, error) {
	id := r.PathValue("group")
	ctx, cancel := c.ctx(r)
	defer cancel()
	g, err := c.b.Group(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, httpError{http.StatusNotFound, fmt.Sprintf("unknown group %q", id)}
	}
	if err != nil {
		return nil, fmt.Errorf("console: describe group %q: %w", id, err)
	}
	return g, nil
}
