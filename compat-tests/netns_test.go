//go:build linux

package compat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network namespaces for link faults (needs root; skipped otherwise).
//
// netnsLab gives each cluster node its own network namespace with one
// interface, eth0, on a private /24 (10.213.X.i; X is picked per run so
// that concurrent runs do not collide), plugged by a veth pair into a
// bridge in the root namespace, which holds .254 so the test process
// reaches every node. The namespaces have no default route and the root
// namespace does not route for them: nothing leaves this host.
//
// isolate(id) unplugs node id's host-side veth from the bridge. Its eth0
// stays up and its own address keeps working inside its namespace (a
// client dialing through dialer(id) goes over the namespace's lo), but
// no packet reaches a peer or the test process. heal(id) plugs it back.
//
// Everything is removed in a cleanup registered first, so it runs after
// the nodes are stopped; processes still inside a namespace are killed
// before it is deleted.

const (
	netnsNet      = "10.213" // first two octets of the per-run /24
	netnsRaftPort = "9093"   // fixed: nothing else listens in a fresh namespace
)

var netnsRuns atomic.Int32 // per-process run counter (go test -count)

type netnsLab struct {
	t      *testing.T
	tag    string // "tk<pid><run letter>": prefix of link names
	bridge string
	subnet string // "10.213.X"

	mu       sync.Mutex
	ns       map[int32]string // node id → namespace name
	veth     map[int32]string // node id → host-side veth
	isolated map[int32]bool
}

// newNetnsLab builds namespaces for node ids 1..size, or skips the test
// when this host cannot (not root, no `ip`, namespaces unavailable).
func newNetnsLab(t *testing.T, size int) *netnsLab {
	t.Helper()
	// CI (TUSK_REQUIRE_TOOLS=1, root, iproute2 installed by .ci/run) must
	// run the partition scenario, not skip it.
	skip := t.Skipf
	if os.Getenv("TUSK_REQUIRE_TOOLS") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("network namespaces need root (CI runs the compat tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("network namespaces need the ip command (iproute2): %v", err)
	}
	removeStaleNetns(t)
	pid := os.Getpid()
	run := netnsRuns.Add(1) - 1
	l := &netnsLab{
		t:        t,
		tag:      fmt.Sprintf("tk%d%c", pid, 'a'+rune(run%26)),
		ns:       map[int32]string{},
		veth:     map[int32]string{},
		isolated: map[int32]bool{},
	}
	l.bridge = l.tag + "br"
	// Probe: a namespace we cannot create means the host cannot do this.
	probe := fmt.Sprintf("tusk-%d-%d-probe", pid, run)
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		skip("cannot create a network namespace (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", probe, err, out)
	}
	t.Cleanup(l.teardown)
	l.subnet = pickSubnet(t, pid)
	l.must("ip", "link", "add", l.bridge, "type", "bridge")
	l.must("ip", "addr", "add", l.subnet+".254/24", "dev", l.bridge)
	l.must("ip", "link", "set", l.bridge, "up")
	for i := 1; i <= size; i++ {
		id := int32(i)
		ns := fmt.Sprintf("tusk-%d-%d-n%d", pid, run, i)
		host, peer := fmt.Sprintf("%sn%d", l.tag, i), fmt.Sprintf("%sp%d", l.tag, i)
		l.mu.Lock()
		l.ns[id] = ns
		l.mu.Unlock()
		l.must("ip", "netns", "add", ns)
		l.must("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		l.mu.Lock()
		l.veth[id] = host
		l.mu.Unlock()
		l.must("ip", "link", "set", peer, "netns", ns)
		l.must("ip", "-n", ns, "link", "set", peer, "name", "eth0")
		l.must("ip", "-n", ns, "addr", "add", l.addr(id)+"/24", "dev", "eth0")
		l.must("ip", "-n", ns, "link", "set", "eth0", "up")
		l.must("ip", "-n", ns, "link", "set", "lo", "up")
		l.must("ip", "link", "set", host, "master", l.bridge)
		l.must("ip", "link", "set", host, "up")
	}
	// Every node reachable from the root namespace over the bridge
	// (and hence from its peers) before anything starts.
	for i := 1; i <= size; i++ {
		l.waitReachable(int32(i), 10*time.Second)
	}
	t.Logf("network namespaces: %d nodes on %s.0/24 behind bridge %s", size, l.subnet, l.bridge)
	return l
}

// pickSubnet returns a 10.213.X prefix that no local address or route
// uses, starting from one derived from the pid.
func pickSubnet(t *testing.T, pid int) string {
	t.Helper()
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v: %s", err, out)
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show: %v: %s", err, routes)
	}
	used := string(out) + string(routes)
	for k := 0; k < 250; k++ {
		x := 1 + (pid+k)%250
		p := fmt.Sprintf("%s.%d", netnsNet, x)
		if !strings.Contains(used, p+".") {
			return p
		}
	}
	t.Fatalf("no free %s.X.0/24 subnet", netnsNet)
	return ""
}

var staleNetns = regexp.MustCompile(`^tusk-(\d+)-\d+-(n\d+|probe)$`)
var staleLink = regexp.MustCompile(`^tk(\d+)[a-z](br|n\d+)$`)

// removeStaleNetns deletes namespaces and bridges left by earlier test
// processes that died without their cleanups (go test -timeout).
func removeStaleNetns(t *testing.T) {
	alive := func(pid string) bool {
		_, err := os.Stat("/proc/" + pid)
		return err == nil
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m := staleNetns.FindStringSubmatch(f[0]); m != nil && !alive(m[1]) {
			killNetnsPids(f[0])
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
			t.Logf("removed stale namespace %s", f[0])
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if m := staleLink.FindStringSubmatch(name); m != nil && !alive(m[1]) {
			_ = exec.Command("ip", "link", "del", name).Run()
			t.Logf("removed stale link %s", name)
		}
	}
}

// killNetnsPids SIGKILLs every process in namespace ns and waits (≤ 5 s)
// for them to go; it returns the pids it found.
func killNetnsPids(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return pids
}

func (l *netnsLab) must(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
}

// addr is node id's address (inside its namespace).
func (l *netnsLab) addr(id int32) string { return fmt.Sprintf("%s.%d", l.subnet, id) }

// nsName is node id's namespace.
func (l *netnsLab) nsName(id int32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ns[id]
}

// waitReachable waits until the root namespace gets an answer (even a
// refusal: nothing listens yet) from node id's address.
func (l *netnsLab) waitReachable(id int32, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(l.addr(id), "1"), 500*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("node %d's namespace (%s) unreachable over bridge %s: %v", id, l.addr(id), l.bridge, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isolate unplugs node id from the bridge: it keeps its address and
// sockets but reaches no peer and is reached by nobody outside its
// namespace.
func (l *netnsLab) isolate(id int32) {
	l.t.Helper()
	l.mu.Lock()
	veth := l.veth[id]
	l.isolated[id] = true
	l.mu.Unlock()
	l.must("ip", "link", "set", veth, "nomaster")
}

// heal plugs node id back into the bridge.
func (l *netnsLab) heal(id int32) {
	l.t.Helper()
	l.mu.Lock()
	veth := l.veth[id]
	was := l.isolated[id]
	delete(l.isolated, id)
	l.mu.Unlock()
	if was {
		l.must("ip", "link", "set", veth, "master", l.bridge)
	}
}

// teardown kills whatever still runs in the namespaces, then deletes the
// namespaces (which deletes their veth pairs) and the bridge; anything
// left behind is a test error.
func (l *netnsLab) teardown() {
	l.mu.Lock()
	ns := make(map[int32]string, len(l.ns))
	for id, n := range l.ns {
		ns[id] = n
	}
	veths := make(map[int32]string, len(l.veth))
	for id, v := range l.veth {
		veths[id] = v
	}
	l.mu.Unlock()
	for id, n := range ns {
		if pids := killNetnsPids(n); len(pids) > 0 {
			l.t.Logf("netns teardown: killed %v still running in %s (node %d)", pids, n, id)
		}
	}
	for _, n := range ns {
		if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
			l.t.Errorf("netns teardown: ip netns del %s: %v: %s", n, err, strings.TrimSpace(string(out)))
		}
	}
	for _, v := range veths {
		// Normally gone with its peer's namespace, though not always at
		// once (the namespace is dismantled asynchronously).
		deadline := time.Now().Add(2 * time.Second)
		for exec.Command("ip", "link", "show", v).Run() == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if exec.Command("ip", "link", "show", v).Run() == nil {
			out, err := exec.Command("ip", "link", "del", v).CombinedOutput()
			if err != nil && exec.Command("ip", "link", "show", v).Run() == nil {
				l.t.Errorf("netns teardown: ip link del %s: %v: %s", v, err, strings.TrimSpace(string(out)))
			}
		}
	}
	if exec.Command("ip", "link", "show", l.bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", l.bridge).CombinedOutput(); err != nil {
			l.t.Errorf("netns teardown: ip link del %s: %v: %s", l.bridge, err, strings.TrimSpace(string(out)))
		}
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, n := range ns {
		if strings.Contains(string(list), n) {
			l.t.Errorf("netns teardown: namespace %s still exists", n)
		}
	}
	if strings.Contains(string(links), l.tag) {
		l.t.Errorf("netns teardown: links named %s* still exist:\n%s", l.tag, links)
	}
}

// dialer returns a kgo-style dial function whose sockets are created in
// node id's namespace, so they keep working while id is isolated (the
// node's own address is then only reachable from inside).
func (l *netnsLab) dialer(id int32) func(ctx context.Context, network, host string) (net.Conn, error) {
	path := "/var/run/netns/" + l.nsName(id)
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			c, err := dialInNetns(ctx, path, network, host)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// dialInNetns switches the calling goroutine's OS thread into the
// namespace at path, dials (a socket belongs to the namespace it was
// created in), and switches back. If switching back fails the thread
// stays locked, so the runtime discards it when the goroutine ends.
func dialInNetns(ctx context.Context, path, network, host string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", path, err)
	}
	var d net.Dialer
	c, dialErr := d.DialContext(ctx, network, host)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Still locked: this thread dies with the goroutine.
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("setns back from %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}

// startNetnsCluster starts a cluster of one node per namespace of lab
// (ids 1..size, all initial voters), every listener on the node's own
// address, and waits until Metadata from every node lists every broker.
func startNetnsCluster(t *testing.T, lab *netnsLab, size int) *cluster {
	t.Helper()
	skipClusterInKfakeMode(t)
	c := &cluster{t: t, raft: map[int32]string{}, nodes: map[int32]*node{}}
	var vs []string
	for id := int32(1); id <= int32(size); id++ {
		c.raft[id] = net.JoinHostPort(lab.addr(id), netnsRaftPort)
		vs = append(vs, fmt.Sprintf("%d=%s", id, c.raft[id]))
	}
	c.voters = strings.Join(vs, ",")
	_ = t.TempDir() // see tryStartCluster: nodes stop before their dirs go
	t.Cleanup(func() { c.cleanup(t) })
	for id := int32(1); id <= int32(size); id++ {
		addr := lab.addr(id)
		opts := append(c.nodeOpts(id, c.raft[id]),
			withCommandPrefix("ip", "netns", "exec", lab.nsName(id)),
			withListenHost(addr),
			withFlag("internal-listen", net.JoinHostPort(addr, "0")),
		)
		n, err := launchTusk(t, opts...)
		if err != nil {
			t.Fatalf("start node %d in %s: %v", id, lab.nsName(id), err)
		}
		c.setNode(id, n)
	}
	if err := c.waitReadyAll(c.ids()); err != nil {
		t.Fatalf("start %d-node cluster in network namespaces: %v", size, err)
	}
	c.waitBrokers(t, c.ids(), c.ids(), clusterFormTimeout)
	return c
}
