package broker

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/console"
	"github.com/tuskdb/tusk/console/groupinfo"
	"github.com/tuskdb/tusk/metadata"
)

// The web console (package console) reads the metadata directly and the
// rest through ConsoleSource: each node's own status over the internal
// listener (pathConsoleNode), consumer groups and their lag over the Kafka
// protocol from this node's own listener, as any admin tool would.

// pathConsoleNode answers a node's console.NodeStatus on the internal
// listener.
const pathConsoleNode = "/v1/console/node"

type consoleNodeRequest struct {
	Topic string `json:"topic,omitempty"`
}

// httpMount is a handler MountHTTP added to the HTTP listener.
type httpMount struct {
	patterns []string
	h        http.Handler
}

// MountHTTP serves h at patterns on the HTTP listener (beside /metrics
// and /healthz). Call it before Listen.
func (b *Broker) MountHTTP(patterns []string, h http.Handler) {
	b.httpMounts = append(b.httpMounts, httpMount{patterns: patterns, h: h})
}

// consoleInternal registers the console's endpoint on the internal mux.
func (b *Broker) consoleInternal(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathConsoleNode, rpc.Handler(func(ctx context.Context, body []byte) (any, error) {
		var req consoleNodeRequest
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, fmt.Errorf("%w: console node: %v", metadata.ErrInvalidCommand, err)
			}
		}
		return b.localConsoleStatus(req.Topic), nil
	}))
}

// ConsoleSource implements console.Broker for this node. Close it after
// the broker.
type ConsoleSource struct {
	b       *Broker
	version string

	mu  sync.Mutex
	adm *kadm.Client // nil until the first group call; over this node's Kafka listener
	cl  *kgo.Client
}

var _ console.Broker = (*ConsoleSource)(nil)

// ConsoleSource returns the console's view of this node; version is the
// binary's version, shown per node.
func (b *Broker) ConsoleSource(version string) *ConsoleSource {
	b.consoleVersion = version
	return &ConsoleSource{b: b, version: version}
}

// Close closes the Kafka client of the group pages, if one was made.
func (s *ConsoleSource) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl != nil {
		s.cl.Close()
		s.cl, s.adm = nil, nil
	}
}

// FSM implements console.Broker.
func (s *ConsoleSource) FSM() *metadata.FSM { return s.b.store.FSM() }

// NodeID implements console.Broker.
func (s *ConsoleSource) NodeID() int32 { return s.b.cfg.NodeID }

// Controller implements console.Broker.
func (s *ConsoleSource) Controller() int32 { return s.b.store.Leader() }

// localConsoleStatus is this node's own console.NodeStatus: version,
// lease, the size of its local logs per topic and, for topic, its logs.
func (b *Broker) localConsoleStatus(topic string) console.NodeStatus {
	st := console.NodeStatus{ID: b.cfg.NodeID, Version: b.consoleVersion, TopicBytes: map[string]int64{}}
	lease := b.currentLease()
	if now := time.Now(); lease.Valid(now) {
		st.Lease = console.Lease{Valid: true, RemainingMs: lease.Expiry().Sub(now).Milliseconds()}
	}
	for _, t := range b.store.FSM().Topics() {
		for p := range t.Parts {
			l, ok := b.engine.Log(b.tp(t.Name, int32(p)))
			if !ok {
				continue
			}
			size := l.Size()
			st.DiskBytes += size
			st.TopicBytes[t.Name] += size
			if t.Name == topic {
				st.Logs = append(st.Logs, console.LogStatus{Topic: t.Name, Partition: int32(p), LogStart: l.LogStartOffset(),
					LogEnd: l.LogEndOffset(), HighWatermark: l.HighWatermark(), Bytes: size})
			}
		}
	}
	return st
}

// Nodes implements console.Broker: this node answers itself, the others
// over their internal listeners, concurrently.
func (s *ConsoleSource) Nodes(ctx context.Context, topic string) []console.NodeStatus {
	brokers := s.b.store.FSM().Brokers()
	out := make([]console.NodeStatus, len(brokers))
	var wg sync.WaitGroup
	for i, br := range brokers {
		if br.ID == s.b.cfg.NodeID {
			out[i] = s.b.localConsoleStatus(topic)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st console.NodeStatus
			err := s.b.internalClient.Call(ctx, br.Internal, http.MethodPost, pathConsoleNode, consoleNodeRequest{Topic: topic}, &st)
			if err != nil {
				st = console.NodeStatus{Error: err.Error()}
			}
			st.ID = br.ID
			out[i] = st
		}()
	}
	wg.Wait()
	return out
}

func (s *ConsoleSource) admin() (*kadm.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adm == nil {
		opts, err := s.b.consoleClientOpts()
		if err != nil {
			return nil, fmt.Errorf("broker: console kafka client: %w", err)
		}
		cl, err := kgo.NewClient(append(opts, kgo.ClientID("tusk-console"))...)
		if err != nil {
			return nil, fmt.Errorf("broker: console kafka client: %w", err)
		}
		s.cl, s.adm = cl, kadm.NewClient(cl)
	}
	return s.adm, nil
}

// consoleClientOpts are the kgo options of the console's Kafka client.
// With the authorizer on, or without a PLAINTEXT or SSL listener, it is
// node traffic on the internal listeners (over node TLS when configured),
// which ACLs do not apply to: the console is behind the admin token
// (adminGate) and shows every group. Otherwise it is a client of this
// node's own listener (selfClientOpts).
func (b *Broker) consoleClientOpts() ([]kgo.Opt, error) {
	if !b.cfg.Authorizer {
		if opts, err := b.selfClientOpts(); err == nil {
			return opts, nil
		}
	}
	opts := []kgo.Opt{kgo.SeedBrokers(b.InternalAddr())}
	if b.nodeTLS() {
		opts = append(opts, kgo.DialTLSConfig(b.tls.NodeClientConfig(-1)))
	}
	return opts, nil
}

// Groups implements console.Broker: every group with its type
// (groupinfo.List: ListGroups on every node).
func (s *ConsoleSource) Groups(ctx context.Context) ([]console.GroupSummary, error) {
	adm, err := s.admin()
	if err != nil {
		return nil, err
	}
	gs, err := groupinfo.List(ctx, adm)
	if err != nil {
		return nil, fmt.Errorf("broker: console list groups: %w", err)
	}
	return gs, nil
}

// Group implements console.Broker: one group of any type with its lag
// (groupinfo.Describe: DescribeGroups, ConsumerGroupDescribe or
// ShareGroupDescribe, then the offsets).
func (s *ConsoleSource) Group(ctx context.Context, id string) (console.Group, error) {
	adm, err := s.admin()
	if err != nil {
		return console.Group{}, err
	}
	g, err := groupinfo.Describe(ctx, adm, id)
	if err != nil && !errors.Is(err, console.ErrNotFound) {
		return console.Group{}, fmt.Errorf("broker: console group: %w", err)
	}
	return g, err
}

// adminTokenCookie is the cookie the console sets from /ui/?token=T
// (package console); the gate accepts it too.
const adminTokenCookie = "tusk_admin_token"

// adminGate guards /debug/pprof, /ui and /api/v1 on the HTTP listener
// (docs/security.md, "Node to node"): with the authorizer on, only the
// http.admin-token (as "Authorization: Bearer T", the console's cookie,
// or ?token=T) gets in, from anywhere; without it, loopback clients or the
// token. Anything else is answered 401.
func (b *Broker) adminGate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.adminAllowed(r) {
			h.ServeHTTP(w, r)
			return
		}
		msg := "needs the admin token (http.admin-token) or a loopback client"
		if b.cfg.Authorizer {
			msg = "needs the admin token (http.admin-token): the authorizer is on"
		}
		http.Error(w, msg, http.StatusUnauthorized)
	})
}

func (b *Broker) adminAllowed(r *http.Request) bool {
	if tok := b.cfg.HTTP.AdminToken; tok != "" {
		var given string
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			given = strings.TrimPrefix(h, "Bearer ")
		} else if q := r.URL.Query().Get("token"); q != "" {
			given = q
		} else if ck, err := r.Cookie(adminTokenCookie); err == nil {
			given = ck.Value
		}
		if given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(tok)) == 1 {
			return true
		}
	}
	if b.cfg.Authorizer {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
