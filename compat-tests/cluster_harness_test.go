package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Multi-node harness: a cluster of real `tusk serve` processes on
// loopback. Kafka, HTTP and internal listeners use port 0 (reported in the
// ready file); Raft ports are picked up front because every node's
// --voters list names them.

const (
	clusterReadyTimeout = 30 * time.Second // processes up and ready files written
	clusterFormTimeout  = 30 * time.Second // Metadata from every node lists every broker
	clusterCLITimeout   = 30 * time.Second // one `tusk cluster ...` invocation
	clusterLogTail      = 24 << 10
)

// clusterStatus is the JSON printed by `tusk cluster status`.
type clusterStatus struct {
	Leader int32 `json:"leader"`
	Voters []struct {
		ID   int32  `json:"id"`
		Raft string `json:"raft"`
	} `json:"voters"`
	Brokers []struct {
		ID       int32  `json:"id"`
		Kafka    string `json:"kafka"`
		Internal string `json:"internal"`
		Raft     string `json:"raft"`
		State    string `json:"state"`
	} `json:"brokers"`
}

func (s clusterStatus) voterIDs() []int32 {
	var out []int32
	for _, v := range s.Voters {
		out = append(out, v.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (s clusterStatus) brokerIDs() []int32 {
	var out []int32
	for _, b := range s.Brokers {
		out = append(out, b.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type cluster struct {
	t      *testing.T
	voters string           // the --voters value of the initial cluster
	raft   map[int32]string // node id → Raft address
	mu     sync.Mutex
	nodes  map[int32]*node // node id → current process
	// launched is every process the cluster ever had (restarts included),
	// checked for race reports once all are stopped.
	launched []*node
	// extra adds serve options per node (e.g. a rack); nil: none.
	extra func(id int32) []startOpt
	// certs are the node certificates in node TLS mode (node_tls_test.go);
	// nil: plaintext node traffic.
	certs *secureCerts
}

// skipClusterInKfakeMode: the kfake stand-in has no Raft or cluster CLI.
func skipClusterInKfakeMode(t *testing.T) {
	t.Helper()
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in implements no cluster")
	}
}

// freeAddrs returns n distinct 127.0.0.1 addresses that were free a moment
// ago (all listeners are held until every port is picked).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out
}

func (c *cluster) ids() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for id := range c.nodes {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (c *cluster) node(id int32) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil {
		// A bug in the test. Errorf (not Fatalf) because c.t may be the
		// parent of the running subtest; the placeholder has no addresses,
		// so whatever uses it fails visibly.
		c.t.Errorf("cluster has no node %d", id)
		done := make(chan struct{})
		close(done)
		return &node{Name: fmt.Sprintf("missing-node%d", id), done: done}
	}
	return n
}

// lookup returns node id's current process, or nil.
func (c *cluster) lookup(id int32) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *cluster) setNode(id int32, n *node) {
	c.mu.Lock()
	c.nodes[id] = n
	c.launched = append(c.launched, n)
	c.mu.Unlock()
}

func (c *cluster) kafkaAddrs(ids ...int32) []string {
	var out []string
	for _, id := range ids {
		out = append(out, c.node(id).Kafka)
	}
	return out
}

// nodeOpts are the serve options of cluster node id.
func (c *cluster) nodeOpts(id int32, raftAddr string) []startOpt {
	opts := []startOpt{
		withName(fmt.Sprintf("node%d", id)),
		withManagedStop(),
		withLogTail(clusterLogTail),
		withFlag("node-id", strconv.Itoa(int(id))),
		withFlag("raft-listen", raftAddr),
		withFlag("internal-listen", "127.0.0.1:0"),
		withFlag("voters", c.voters),
	}
	opts = append(opts, c.tlsOpts(id)...)
	if c.extra != nil {
		opts = append(opts, c.extra(id)...)
	}
	return opts
}

// startCluster starts size nodes (ids 1..size, all initial voters) and
// waits until Metadata from every node lists every broker. A node that
// fails to bind its pre-picked Raft port makes the whole start retry once.
func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	return startClusterWith(t, size, nil)
}

// startClusterWith is startCluster with extra serve options per node.
func startClusterWith(t *testing.T, size int, extra func(id int32) []startOpt) *cluster {
	t.Helper()
	skipClusterInKfakeMode(t)
	for attempt := 1; ; attempt++ {
		c, err := tryStartCluster(t, size, extra)
		if err == nil {
			c.waitBrokers(t, c.ids(), c.ids(), clusterFormTimeout)
			return c
		}
		if attempt == 1 && errors.Is(err, errBindRace) {
			t.Logf("cluster start attempt %d: %v; retrying with new ports", attempt, err)
			continue
		}
		t.Fatalf("start %d-node cluster: %v", size, err)
	}
}

var errBindRace = errors.New("pre-picked port taken")

func tryStartCluster(t *testing.T, size int, extra func(id int32) []startOpt) (*cluster, error) {
	t.Helper()
	addrs := freeAddrs(t, size)
	c := &cluster{t: t, raft: map[int32]string{}, nodes: map[int32]*node{}, extra: extra}
	var vs []string
	for i, a := range addrs {
		id := int32(i + 1)
		c.raft[id] = a
		vs = append(vs, fmt.Sprintf("%d=%s", id, a))
	}
	c.voters = strings.Join(vs, ",")
	// The first TempDir call registers the removal of the test's temp
	// dirs; doing it before registering the cluster's stop makes the
	// nodes stop before their data dirs are removed (cleanups run LIFO).
	_ = t.TempDir()
	c.setupNodeTLS(t)
	t.Cleanup(func() { c.cleanup(t) })
	for id := int32(1); id <= int32(size); id++ {
		n, err := launchTusk(t, c.nodeOpts(id, c.raft[id])...)
		if err != nil {
			c.killAll()
			return nil, err
		}
		c.setNode(id, n)
	}
	if err := c.waitReadyAll(c.ids()); err != nil {
		c.killAll()
		return nil, err
	}
	return c, nil
}

// waitReadyAll waits for the ready files of the given nodes (launched
// together, so that none waits for a peer that is not started yet).
func (c *cluster) waitReadyAll(ids []int32) error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for _, id := range ids {
		n := c.node(id)
		if err := n.waitReady(deadline); err != nil {
			if errors.Is(err, errExitedEarly) {
				b, _ := os.ReadFile(n.LogPath)
				if bytes.Contains(b, []byte("address already in use")) {
					return fmt.Errorf("%w: %v", errBindRace, err)
				}
				return fmt.Errorf("%v; log tail:\n%s", err, tail(b, 4<<10))
			}
			return err
		}
		if n.NodeID != id {
			return fmt.Errorf("%s ready file says node_id %d, want %d", n.label(), n.NodeID, id)
		}
		if n.Internal == "" || n.Raft == "" {
			return fmt.Errorf("%s ready file %s lacks internal/raft addresses: %+v", n.label(), n.readyPath, n.readyInfo)
		}
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte("...[truncated]...\n"), b[len(b)-n:]...)
	}
	return b
}

func (c *cluster) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if !n.exited() {
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
	}
}

// cleanup runs `tusk cluster status` on every live node when the test
// failed (for the log), stops all nodes at once, then fails the test on a
// race report in the log of any process the cluster had.
func (c *cluster) cleanup(t *testing.T) {
	if t.Failed() {
		for _, id := range c.ids() {
			n := c.node(id)
			if n.exited() || n.Internal == "" {
				continue
			}
			out, err := c.cliOut(t, 3*time.Second, "cluster", "status", "--server", n.Internal)
			t.Logf("cluster status from node %d at failure: %s (err %v)", id, strings.TrimSpace(out), err)
		}
	}
	for _, err := range c.stopNodes(c.ids()) {
		t.Error(err)
	}
	c.mu.Lock()
	launched := append([]*node(nil), c.launched...)
	c.mu.Unlock()
	for _, n := range launched {
		checkRaceReports(t, n)
	}
}

// stopNodes sends SIGTERM to every given live node at once and waits for
// all of them; it returns an error per unclean, non-zero or forced exit.
func (c *cluster) stopNodes(ids []int32) []error {
	var ns []*node
	for _, id := range ids {
		if n := c.node(id); !n.exited() {
			ns = append(ns, n)
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	var errs []error
	sent := time.Now()
	deadline := time.After(stopGrace())
	for _, n := range ns {
		select {
		case <-n.done:
			c.t.Logf("measure: %s stopped %v after SIGTERM", n.label(), n.exitedAt.Sub(sent).Round(time.Millisecond))
			if n.waitErr != nil {
				errs = append(errs, fmt.Errorf("%s exit after SIGTERM: %v (want exit code 0)", n.label(), n.waitErr))
			}
		case <-deadline:
			// SIGQUIT to every node left (goroutine dumps), then
			// collect each.
			var stuck []*node
			for _, m := range ns {
				if !m.exited() {
					m.sendQuit()
					stuck = append(stuck, m)
				}
			}
			for _, m := range stuck {
				errs = append(errs, fmt.Errorf("%s did not stop within %v of SIGTERM; %s", m.label(), stopGrace(), m.collectDump()))
			}
			return errs
		}
	}
	return errs
}

// stopAll stops every node with SIGTERM (all at once) and fails the test
// unless each exits with code 0.
func (c *cluster) stopAll(t *testing.T) {
	t.Helper()
	if errs := c.stopNodes(c.ids()); len(errs) > 0 {
		t.Fatalf("stopping the cluster: %v", errors.Join(errs...))
	}
}

// relaunchAll restarts every (stopped) node on its data dir, all at once,
// and waits for the ready files. extra returns per-node extra options.
// It returns the time the first process was started.
func (c *cluster) relaunchAll(t *testing.T, extra func(old *node) []startOpt) time.Time {
	t.Helper()
	ids := c.ids()
	start := time.Now()
	for _, id := range ids {
		old := c.node(id)
		var ex []startOpt
		if extra != nil {
			ex = extra(old)
		}
		n, err := old.relaunch(t, ex...)
		if err != nil {
			t.Fatalf("relaunch node %d: %v", id, err)
		}
		c.setNode(id, n)
	}
	if err := c.waitReadyAll(ids); err != nil {
		t.Fatalf("restart: %v", err)
	}
	return start
}

// restartNode relaunches one stopped or killed node and waits for its
// ready file.
func (c *cluster) restartNode(t *testing.T, id int32) *node {
	t.Helper()
	n, err := c.node(id).relaunch(t)
	if err != nil {
		t.Fatalf("relaunch node %d: %v", id, err)
	}
	c.setNode(id, n)
	if err := c.waitReadyAll([]int32{id}); err != nil {
		t.Fatalf("restart node %d: %v", id, err)
	}
	return n
}

// sameKafkaPorts makes a relaunched node bind the listeners of its
// previous run, so broker addresses in the metadata stay identical.
// restartNodeSamePorts restarts node id on the Kafka, HTTP and internal
// addresses it had, as a real deployment would (clients keep reaching it).
func (c *cluster) restartNodeSamePorts(t *testing.T, id int32) *node {
	t.Helper()
	old := c.node(id)
	n, err := old.relaunchSamePorts(t)
	if err != nil {
		t.Fatalf("relaunch node %d: %v", id, err)
	}
	c.setNode(id, n)
	if err := c.waitReadyAll([]int32{id}); err != nil {
		t.Fatalf("restart node %d: %v", id, err)
	}
	return n
}

// relaunchSamePorts relaunches n on the addresses of its previous run
// (sameKafkaPorts). Meanwhile another process on this machine may have
// been given one of those ports (for a listener or a connection of its
// own): a node that exits because an address is in use is launched again
// until the port is free, for up to 30 s. It returns once the new process
// wrote its ready file, exited, or ran 10 s (its listeners are bound
// before it writes the ready file).
func (n *node) relaunchSamePorts(t *testing.T) (*node, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nn, err := n.relaunch(t, sameKafkaPorts(n)...)
		if err != nil {
			return nil, err
		}
		for !nn.exited() && time.Since(nn.started) < 10*time.Second {
			if _, err := os.Stat(nn.readyPath); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !nn.exited() {
			return nn, nil
		}
		b, _ := os.ReadFile(nn.LogPath)
		if !bytes.Contains(b, []byte("address already in use")) || time.Now().After(deadline) {
			return nn, nil // the caller sees the exit
		}
		t.Logf("%s: an address of its previous run is in use; launching it again", nn.label())
		time.Sleep(250 * time.Millisecond)
	}
}

func sameKafkaPorts(old *node) []startOpt {
	return []startOpt{
		withFlag("kafka-listen", old.Kafka),
		withFlag("http-listen", old.HTTP),
		withFlag("internal-listen", old.Internal),
	}
}

// ---------------------------------------------------------------------------
// Admin CLI

// cliOut runs `tusk args...` and returns its stdout; the error carries
// the exit status and stderr.
func (c *cluster) cliOut(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tuskBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("tusk %s: no answer within %v (stderr %q)", strings.Join(args, " "), timeout, stderr.String())
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("tusk %s: %v; stderr: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// cli runs an admin command and fails the test if it fails.
func (c *cluster) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.cliOut(t, clusterCLITimeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// status runs `tusk cluster status` against node via.
func (c *cluster) status(t *testing.T, via int32) (clusterStatus, error) {
	t.Helper()
	out, err := c.cliOut(t, 10*time.Second, "cluster", "status", "--server", c.node(via).Internal)
	if err != nil {
		return clusterStatus{}, err
	}
	var st clusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return clusterStatus{}, fmt.Errorf("tusk cluster status output is not the documented JSON: %v\n%s", err, out)
	}
	return st, nil
}

// waitLeader polls `tusk cluster status` on the given nodes until all of
// them name the same leader among allowed; it returns it.
func (c *cluster) waitLeader(t *testing.T, via []int32, allowed []int32, timeout time.Duration) int32 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		leader := int32(-1)
		ok := true
		for _, id := range via {
			st, err := c.status(t, id)
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			if !containsID(allowed, st.Leader) || (leader != -1 && st.Leader != leader) {
				ok, last = false, fmt.Sprintf("node %d reports leader %d (allowed %v, others %d)", id, st.Leader, allowed, leader)
				break
			}
			leader = st.Leader
		}
		if ok {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreed Raft leader among %v within %v: %s", allowed, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// dump runs `tusk cluster dump` against node via and returns the parsed
// JSON document.
func (c *cluster) dump(t *testing.T, via int32) (any, string, error) {
	t.Helper()
	out, err := c.cliOut(t, clusterCLITimeout, "cluster", "dump", "--server", c.node(via).Internal)
	if err != nil {
		return nil, out, err
	}
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, out, fmt.Errorf("tusk cluster dump from node %d is not JSON: %v", via, err)
	}
	return doc, out, nil
}

// agreedDump polls dumps from every node until they are identical (a
// follower may lag by a few entries) and returns the document.
func (c *cluster) agreedDump(t *testing.T, timeout time.Duration) (any, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var first any
		var firstRaw, problem string
		ids := c.ids()
		for _, id := range ids {
			doc, raw, err := c.dump(t, id)
			if err != nil {
				problem = err.Error()
				break
			}
			if first == nil {
				first, firstRaw = doc, raw
				continue
			}
			if !reflect.DeepEqual(first, doc) {
				problem = fmt.Sprintf("dump of node %d differs from node %d's: %s", id, ids[0], strings.Join(jsonDiff(first, doc, 20), "; "))
				break
			}
		}
		if problem == "" {
			return first, firstRaw
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes do not agree on a metadata dump within %v: %s", timeout, problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jsonDiff lists up to max paths where two decoded JSON documents differ.
func jsonDiff(a, b any, max int) []string {
	var out []string
	var walk func(path string, a, b any)
	walk = func(path string, a, b any) {
		if len(out) >= max {
			return
		}
		switch av := a.(type) {
		case map[string]any:
			bv, ok := b.(map[string]any)
			if !ok {
				out = append(out, fmt.Sprintf("%s: object vs %T", path, b))
				return
			}
			keys := map[string]bool{}
			for k := range av {
				keys[k] = true
			}
			for k := range bv {
				keys[k] = true
			}
			var ks []string
			for k := range keys {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			for _, k := range ks {
				x, okA := av[k]
				y, okB := bv[k]
				switch {
				case !okA:
					out = append(out, fmt.Sprintf("%s.%s: only in second (%s)", path, k, short(y)))
				case !okB:
					out = append(out, fmt.Sprintf("%s.%s: only in first (%s)", path, k, short(x)))
				default:
					walk(path+"."+k, x, y)
				}
				if len(out) >= max {
					return
				}
			}
		case []any:
			bv, ok := b.([]any)
			if !ok {
				out = append(out, fmt.Sprintf("%s: array vs %T", path, b))
				return
			}
			if len(av) != len(bv) {
				out = append(out, fmt.Sprintf("%s: %d vs %d elements", path, len(av), len(bv)))
			}
			for i := 0; i < len(av) && i < len(bv); i++ {
				walk(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])
				if len(out) >= max {
					return
				}
			}
		default:
			if !reflect.DeepEqual(a, b) {
				out = append(out, fmt.Sprintf("%s: %s vs %s", path, short(a), short(b)))
			}
		}
	}
	walk("$", a, b)
	return out
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Raw requests to one specific node (kgo would route to other brokers).

// rawClient sends requests to exactly one address, reconnecting after an
// error, with versions negotiated by ApiVersions v0.
type rawClient struct {
	t    *testing.T
	addr string
	rc   *rawConn
	av   map[int16][2]int16
}

func newRawClient(t *testing.T, addr string) *rawClient {
	r := &rawClient{t: t, addr: addr}
	t.Cleanup(r.close)
	return r
}

func (r *rawClient) close() {
	if r.rc != nil {
		r.rc.c.Close()
		r.rc = nil
	}
}

// do sends req at the highest version ≤ hi the node supports, waiting at
// most d for the answer.
func (r *rawClient) do(req kmsg.Request, hi int16, d time.Duration) (kmsg.Response, error) {
	if r.rc == nil {
		c, err := net.DialTimeout("tcp", r.addr, 2*time.Second)
		if err != nil {
			return nil, err
		}
		r.rc = &rawConn{t: r.t, c: c}
		avReq := kmsg.NewPtrApiVersionsRequest()
		resp, err := r.rc.roundTripWithin(avReq, d)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("ApiVersions: %w", err)
		}
		r.av = map[int16][2]int16{}
		for _, k := range resp.(*kmsg.ApiVersionsResponse).ApiKeys {
			r.av[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
		}
	}
	vr, ok := r.av[req.Key()]
	if !ok {
		return nil, fmt.Errorf("%s does not advertise %s", r.addr, kmsg.NameForKey(req.Key()))
	}
	v := min(hi, vr[1])
	if v < vr[0] {
		return nil, fmt.Errorf("%s advertises %s v%d-v%d, want ≤ v%d", r.addr, kmsg.NameForKey(req.Key()), vr[0], vr[1], hi)
	}
	req.SetVersion(v)
	resp, err := r.rc.roundTripWithin(req, d)
	if err != nil {
		r.close()
		return nil, err
	}
	return resp, nil
}

// mdTopic is one topic as a node's Metadata reports it.
type mdTopic struct {
	Err     int16
	ID      [16]byte
	Leaders map[int32]int32 // partition → leader
	PErr    map[int32]int16 // partition → error code
}

// ready reports whether the topic has n partitions, each with a leader.
func (m mdTopic) ready(n int) bool {
	if m.Err != 0 || len(m.Leaders) != n {
		return false
	}
	for p, l := range m.Leaders {
		if l < 0 || m.PErr[p] != 0 {
			return false
		}
	}
	return true
}

func (m mdTopic) String() string {
	var ps []int32
	for p := range m.Leaders {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var b strings.Builder
	fmt.Fprintf(&b, "err=%s partitions[", errName(m.Err))
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d→%d", p, m.Leaders[p])
		if m.PErr[p] != 0 {
			fmt.Fprintf(&b, "(%s)", errName(m.PErr[p]))
		}
	}
	b.WriteString("]")
	return b.String()
}

// mdView is one node's Metadata answer.
type mdView struct {
	Brokers    map[int32]string // id → host:port
	Controller int32
	Topics     map[string]mdTopic
}

func (v mdView) brokerIDs() []int32 {
	var out []int32
	for id := range v.Brokers {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// metadata asks this node (and only it) for Metadata v≤12 on the given
// topics (nil: all topics; empty: none), never auto-creating.
func (r *rawClient) metadata(topics []string) (mdView, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	if topics != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, tp := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(tp)
			req.Topics = append(req.Topics, rt)
		}
	}
	resp, err := r.do(req, 12, 5*time.Second)
	if err != nil {
		return mdView{}, err
	}
	mr := resp.(*kmsg.MetadataResponse)
	v := mdView{Brokers: map[int32]string{}, Controller: mr.ControllerID, Topics: map[string]mdTopic{}}
	for _, b := range mr.Brokers {
		v.Brokers[b.NodeID] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	for _, mt := range mr.Topics {
		if mt.Topic == nil {
			continue
		}
		tp := mdTopic{Err: mt.ErrorCode, ID: mt.TopicID, Leaders: map[int32]int32{}, PErr: map[int32]int16{}}
		for _, p := range mt.Partitions {
			tp.Leaders[p.Partition] = p.Leader
			tp.PErr[p.Partition] = p.ErrorCode
		}
		v.Topics[*mt.Topic] = tp
	}
	return v, nil
}

// raw returns a rawClient for node id's current Kafka address.
func (c *cluster) raw(t *testing.T, id int32) *rawClient {
	return newRawClient(t, c.node(id).Kafka)
}

// metadataOf asks node id for Metadata, failing the test on error.
func (c *cluster) metadataOf(t *testing.T, id int32, topics []string) mdView {
	t.Helper()
	r := c.raw(t, id)
	defer r.close()
	v, err := r.metadata(topics)
	if err != nil {
		t.Fatalf("Metadata from node %d: %v", id, err)
	}
	return v
}

// waitBrokers polls Metadata from each node in via until it lists exactly
// the brokers want, each at its node's current Kafka address. It returns
// how long that took.
func (c *cluster) waitBrokers(t *testing.T, via, want []int32, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for _, id := range via {
		r := c.raw(t, id)
		var last string
		for {
			v, err := r.metadata([]string{})
			if err != nil {
				last = err.Error()
			} else if got := v.brokerIDs(); !reflect.DeepEqual(got, want) {
				last = fmt.Sprintf("brokers %v", v.Brokers)
			} else {
				bad := ""
				for _, b := range want {
					if n := c.lookup(b); n != nil && v.Brokers[b] != n.Kafka {
						bad = fmt.Sprintf("broker %d at %s, its ready file says %s", b, v.Brokers[b], n.Kafka)
					}
				}
				if bad == "" {
					break
				}
				last = bad
			}
			if time.Now().After(deadline) {
				r.close()
				t.Fatalf("Metadata from node %d does not list brokers %v within %v: %s", id, want, timeout, last)
			}
			time.Sleep(25 * time.Millisecond)
		}
		r.close()
	}
	return time.Since(start)
}

// waitTopicsOn polls Metadata from node id until every topic has its
// partition count and a leader for each partition; it returns the view.
func (c *cluster) waitTopicsOn(t *testing.T, id int32, topics map[string]int, timeout time.Duration) mdView {
	t.Helper()
	r := c.raw(t, id)
	defer r.close()
	var names []string
	for tp := range topics {
		names = append(names, tp)
	}
	sort.Strings(names)
	deadline := time.Now().Add(timeout)
	var last string
	for {
		v, err := r.metadata(names)
		if err != nil {
			last = err.Error()
		} else {
			last = ""
			for _, tp := range names {
				if m, ok := v.Topics[tp]; !ok || !m.ready(topics[tp]) {
					last = fmt.Sprintf("topic %s: %v (want %d partitions with leaders)", tp, m, topics[tp])
					break
				}
			}
			if last == "" {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: topics not ready within %v: %s", id, timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// createTopicsRaw sends one CreateTopics (v≤7, replication factor -1) for
// the topics to this node. It returns topic → error code and message.
func (r *rawClient) createTopics(topics []string, partitions int32, configs map[string]string, d time.Duration) (map[string]int16, map[string]string, error) {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(d / time.Millisecond)
	for _, tp := range topics {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = tp
		rt.NumPartitions = partitions
		rt.ReplicationFactor = -1
		var keys []string
		for k := range configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			rc := kmsg.NewCreateTopicsRequestTopicConfig()
			rc.Name = k
			rc.Value = kmsg.StringPtr(configs[k])
			rt.Configs = append(rt.Configs, rc)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := r.do(req, 7, d+5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	codes, msgs := map[string]int16{}, map[string]string{}
	for _, rt := range resp.(*kmsg.CreateTopicsResponse).Topics {
		codes[rt.Topic] = rt.ErrorCode
		if rt.ErrorMessage != nil {
			msgs[rt.Topic] = *rt.ErrorMessage
		}
	}
	return codes, msgs, nil
}

// deleteTopics sends one DeleteTopics (v≤6, by name) to this node.
func (r *rawClient) deleteTopics(topics []string, d time.Duration) (map[string]int16, error) {
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = int32(d / time.Millisecond)
	req.TopicNames = append(req.TopicNames, topics...)
	for _, tp := range topics {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(tp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := r.do(req, 6, d+5*time.Second)
	if err != nil {
		return nil, err
	}
	codes := map[string]int16{}
	for _, rt := range resp.(*kmsg.DeleteTopicsResponse).Topics {
		if rt.Topic != nil {
			codes[*rt.Topic] = rt.ErrorCode
		}
	}
	return codes, nil
}

// retriable reports whether a Kafka error code is worth retrying.
func retriable(code int16) bool {
	return kerr.IsRetriable(kerr.ErrorForCode(code))
}

// ---------------------------------------------------------------------------
// Exact produce / consume across nodes

type prodRec struct {
	Key, Value string
	Offset     int64
}

// newClusterClient is a kgo client seeded with exactly the given addresses.
func newClusterClient(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("tusk-compat-cluster"),
		kgo.RetryTimeout(20 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// producePartitions produces n records to each partition (idempotent,
// acks=all) with a client seeded only with seeds (and opts, e.g. TLS). Keys are
// "<tag>-p<partition>-<i>". It asserts that each partition's acks are
// contiguous offsets starting at start[p], in production order, and
// returns partition → records in offset order.
func producePartitions(t *testing.T, seeds []string, topic string, parts []int32, n int, tag string, start map[int32]int64, opts ...kgo.Opt) map[int32][]prodRec {
	t.Helper()
	cl := newClusterClient(t, seeds, append([]kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30 * time.Second),
		kgo.ProducerLinger(time.Millisecond),
	}, opts...)...)
	defer cl.Close()
	ctx := ctxTimeout(t, 60*time.Second)
	var mu sync.Mutex
	var errs []string
	out := map[int32][]prodRec{}
	for i := 0; i < n; i++ {
		for _, p := range parts {
			key := fmt.Sprintf("%s-p%d-%d", tag, p, i)
			r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: []byte("value-" + key)}
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s/%d key %s: %v", topic, r.Partition, r.Key, err))
					return
				}
				out[r.Partition] = append(out[r.Partition], prodRec{Key: string(r.Key), Value: string(r.Value), Offset: r.Offset})
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce %s via %v: flush: %v", topic, seeds, err)
	}
	if len(errs) > 0 {
		t.Fatalf("produce %s via %v: %d failed acks, first: %s", topic, seeds, len(errs), errs[0])
	}
	for _, p := range parts {
		recs := out[p]
		sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
		if len(recs) != n {
			t.Fatalf("produce %s/%d: %d acks, want %d", topic, p, len(recs), n)
		}
		for i, r := range recs {
			wantKey := fmt.Sprintf("%s-p%d-%d", tag, p, i)
			if r.Offset != start[p]+int64(i) || r.Key != wantKey {
				t.Fatalf("produce %s/%d: ack #%d is key %s at offset %d, want key %s at offset %d (contiguous from %d, in order)", topic, p, i, r.Key, r.Offset, wantKey, start[p]+int64(i), start[p])
			}
		}
	}
	return out
}

// readPartitions consumes each partition p from start[p] until it holds
// want[p] records, with a client seeded only with seeds. Any fetch error
// or a record beyond start+want fails the test.
func readPartitions(t *testing.T, seeds []string, topic string, start map[int32]int64, want map[int32]int, timeout time.Duration, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	offs := map[int32]kgo.Offset{}
	total := 0
	for p, n := range want {
		offs[p] = kgo.NewOffset().At(start[p])
		total += n
	}
	out := map[int32][]*kgo.Record{}
	if total == 0 {
		return out
	}
	cl := newClusterClient(t, seeds, append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := 0
	for got < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			var have []string
			for p := range want {
				have = append(have, fmt.Sprintf("p%d %d/%d", p, len(out[p]), want[p]))
			}
			sort.Strings(have)
			t.Fatalf("consume %s via %v: timed out after %v: %s", topic, seeds, timeout, strings.Join(have, ", "))
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Fatalf("consume %s/%d via %v: fetch error: %v", tp, p, seeds, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= start[r.Partition]+int64(want[r.Partition]) {
				t.Fatalf("consume %s/%d: record at offset %d beyond the %d expected from %d", r.Topic, r.Partition, r.Offset, want[r.Partition], start[r.Partition])
			}
			out[r.Partition] = append(out[r.Partition], r)
			got++
		})
	}
	return out
}

// sameRecords asserts that got is exactly want: offsets, keys, values, order.
func sameRecords(t *testing.T, label string, want []prodRec, got []*kgo.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: read %d records, want %d", label, len(got), len(want))
	}
	for i := 0; i < len(want) && i < len(got); i++ {
		w, g := want[i], got[i]
		if g.Offset != w.Offset || string(g.Key) != w.Key || string(g.Value) != w.Value {
			t.Errorf("%s: record #%d is %s=%q at offset %d, want %s=%q at offset %d", label, i, g.Key, g.Value, g.Offset, w.Key, w.Value, w.Offset)
			return
		}
	}
}

// ---------------------------------------------------------------------------
// Fault scenarios

// faultTimings are the lease and lag settings of the fault scenarios, short
// so that failures are detected within seconds: a 1 s lease renewed every
// 200 ms, a follower dropped after 1 s without a fetch; each × raceScale.
type faultTimings struct {
	lease, renew, lag time.Duration
}

// setFaultTimings sets the fault timings for the nodes the test starts
// (TUSK_LEASE_TIMEOUT, TUSK_LEASE_RENEW, TUSK_REPLICA_LAG_TIME_MAX) and
// returns them.
func setFaultTimings(t *testing.T) faultTimings {
	t.Helper()
	ft := faultTimings{lease: scaled(t, time.Second), renew: scaled(t, 200*time.Millisecond), lag: scaled(t, time.Second)}
	t.Setenv("TUSK_LEASE_TIMEOUT", ft.lease.String())
	t.Setenv("TUSK_LEASE_RENEW", ft.renew.String())
	t.Setenv("TUSK_REPLICA_LAG_TIME_MAX", ft.lag.String())
	return ft
}

// faultTopic is a replication-factor-3 topic a fault scenario creates
// before its faults.
type faultTopic struct {
	name       string
	partitions int32
	configs    map[string]*string
}

// faultScenario is the setup shared by the cluster fault scenarios.
type faultScenario struct {
	nodes            int               // cluster size
	env              map[string]string // further TUSK_* settings of the nodes
	setupNote        string            // appended to the setup's report card label
	client, scenario string            // the scenario's report card entry
	topics           []faultTopic
}

// startFaultScenario sets the fault timings (and s.env), starts a cluster
// of s.nodes, records the report card entries, creates s.topics through a
// kadm client seeded with every node and waits until every node's Metadata
// shows them with all partitions led. It returns the cluster and that kadm
// client.
func startFaultScenario(t *testing.T, s faultScenario) (*cluster, *kadm.Client) {
	t.Helper()
	ft := setFaultTimings(t)
	for k, v := range s.env {
		t.Setenv(k, v)
	}
	done := cardSetup(t, fmt.Sprintf("tusk %d-node cluster, lease %v%s", s.nodes, ft.lease, s.setupNote))
	c := startCluster(t, s.nodes)
	done()
	card(t, s.client, s.scenario)
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	ctx := ctxTimeout(t, 30*time.Second)
	want := map[string]int{}
	for _, ft := range s.topics {
		resp, err := adm.CreateTopic(ctx, ft.partitions, 3, ft.configs, ft.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", ft.name, err)
		}
		want[ft.name] = int(ft.partitions)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, want, 10*time.Second)
	}
	return c, adm
}
