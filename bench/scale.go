package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ScaleConfig describes one `tusk bench scale` run: a local cluster of
// Nodes tusk processes on loopback, Partitions partitions created at
// replication factor Nodes (PerTopic partitions per topic), then Idle of
// doing nothing while each node's CPU time is sampled.
type ScaleConfig struct {
	Bin        string        // tusk binary to run the nodes with
	Dir        string        // where the nodes' data dirs and logs go
	Nodes      int           // cluster size (and replication factor)
	Partitions int           // partitions to create in total
	PerTopic   int           // partitions per topic
	Batch      int           // topics per CreateTopics request
	Parallel   int           // CreateTopics requests in flight
	Settle     time.Duration // wait between creation and the idle window
	Idle       time.Duration // idle window over which CPU is measured
	Timeout    time.Duration // bound on each phase (start, creation, readiness)
	// ExtraArgs are passed to every node's `tusk serve`.
	ExtraArgs []string
	// ProfileDir, when set, gets a CPU profile of each node over the idle
	// window (node-N-idle.pprof, from the node's /debug/pprof/profile on
	// loopback). Profiling costs a node some CPU of its own.
	ProfileDir string
}

// DefaultScaleConfig returns the defaults of `tusk bench scale`.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{Nodes: 3, Partitions: 3000, PerTopic: 3, Batch: 100, Parallel: 4,
		Settle: 5 * time.Second, Idle: 20 * time.Second, Timeout: 5 * time.Minute}
}

// ScaleNode is one node's figures.
type ScaleNode struct {
	ID        int
	Logs      int     // log directories on disk once ready
	CreateCPU float64 // CPU seconds (user+system) the node used from the first CreateTopics until ready
	IdleCPU   float64 // share of one core over the idle window
	RSSBytes  int64   // resident set at the end of the idle window
	FDs       int     // open file descriptors at the end of the idle window
	// SegmentFDs are the FDs open on segment files (*.log); the rest
	// are sockets, Raft's and other files.
	SegmentFDs int
}

// ScaleResult is what a scale run measured.
type ScaleResult struct {
	Partitions int
	Topics     int
	// Created is the time from the first CreateTopics request until every
	// request was answered without error; Ready until, in addition, every
	// node lists every partition with a leader in Metadata and holds a
	// log directory for each of its replicas.
	Created, Ready time.Duration
	Idle           time.Duration
	Nodes          []ScaleNode
	LoadAvg        string // /proc/loadavg's 1, 5 and 15 minute figures at the start
}

// String renders r as lines of text.
func (r ScaleResult) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "partitions %d (%d topics), created in %s, ready in %s\n", r.Partitions, r.Topics, fmtDur(r.Created), fmtDur(r.Ready))
	for _, n := range r.Nodes {
		fmt.Fprintf(&sb, "node %d: logs %d, creation used %.1f CPU-s, idle CPU %.1f%% of a core over %s, RSS %d MiB, fds %d (segment files %d)\n",
			n.ID, n.Logs, n.CreateCPU, 100*n.IdleCPU, r.Idle, n.RSSBytes>>20, n.FDs, n.SegmentFDs)
	}
	return sb.String()
}

// scaleNode is one running node.
type scaleNode struct {
	id      int
	dir     string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // Wait's result, set before done closes
	kafka   string
	http    string
	logPath string
}

// RunScale starts the cluster, creates the partitions, measures and stops
// the cluster again (also on error). Progress goes to w.
func RunScale(ctx context.Context, cfg ScaleConfig, w io.Writer) (ScaleResult, error) {
	res := ScaleResult{Partitions: cfg.Partitions, Idle: cfg.Idle}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			res.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if cfg.Nodes < 1 || cfg.PerTopic < 1 || cfg.Partitions < cfg.PerTopic || cfg.Batch < 1 || cfg.Parallel < 1 {
		return res, fmt.Errorf("bench scale: invalid sizes (nodes %d, partitions %d, per topic %d, batch %d, parallel %d)",
			cfg.Nodes, cfg.Partitions, cfg.PerTopic, cfg.Batch, cfg.Parallel)
	}
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(w, "scale: %5.1fs %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	// Segment files hold descriptors only while in use (storage.max-
	// open-files, derived from this limit, and storage.open-file-idle),
	// but a node creating thousands of logs at once uses many: the
	// nodes inherit this limit (Go raises the soft limit to the hard
	// one), so raise it where allowed.
	if err := raiseFileLimit(uint64(cfg.Partitions + 4096)); err != nil {
		logf("file descriptor limit: %v", err)
	}
	nodes, err := startScaleCluster(ctx, cfg, logf)
	defer stopScaleCluster(nodes, logf)
	if err != nil {
		return res, err
	}
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, n.kafka)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequestTimeoutOverhead(cfg.Timeout))
	if err != nil {
		return res, fmt.Errorf("bench scale: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(cfg.Timeout / time.Millisecond))
	if err := waitBrokers(ctx, nodes, cfg.Timeout); err != nil {
		return res, err
	}
	logf("%d nodes up; creating %d partitions", cfg.Nodes, cfg.Partitions)

	topics := cfg.Partitions / cfg.PerTopic
	res.Topics = topics
	res.Partitions = topics * cfg.PerTopic
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("scale-%06d", i)
	}
	cpu0 := make([]int64, len(nodes))
	for i, n := range nodes {
		if cpu0[i], err = cpuTicks(n.cmd.Process.Pid); err != nil {
			return res, err
		}
	}
	start := time.Now()
	if err := createTopics(ctx, adm, names, cfg); err != nil {
		return res, err
	}
	res.Created = time.Since(start)
	logf("created in %s; waiting until every node serves them", fmtDur(res.Created))
	if err := waitScaleReady(ctx, nodes, names, cfg); err != nil {
		return res, err
	}
	res.Ready = time.Since(start)
	createCPU := make([]float64, len(nodes))
	for i, n := range nodes {
		t, err := cpuTicks(n.cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		createCPU[i] = float64(t-cpu0[i]) / clockTicks
	}
	logf("ready in %s; settling %s, then measuring %s idle", fmtDur(res.Ready), cfg.Settle, cfg.Idle)

	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		if before[i], err = cpuTicks(n.cmd.Process.Pid); err != nil {
			return res, err
		}
	}
	t0 := time.Now()
	var profiles sync.WaitGroup
	profileErrs := make([]error, len(nodes))
	if cfg.ProfileDir != "" {
		secs := int(cfg.Idle / time.Second)
		if secs < 1 {
			secs = 1
		}
		for i, n := range nodes {
			profiles.Add(1)
			go func() {
				defer profiles.Done()
				profileErrs[i] = fetchProfile(ctx, n, secs, filepath.Join(cfg.ProfileDir, fmt.Sprintf("node-%d-idle.pprof", n.id)))
			}()
		}
	}
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	secs := time.Since(t0).Seconds()
	profiles.Wait()
	for _, err := range profileErrs {
		if err != nil {
			logf("%v", err)
		}
	}
	for i, n := range nodes {
		after, err := cpuTicks(n.cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		rss, err := rssBytes(n.cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		fdDir := fmt.Sprintf("/proc/%d/fd", n.cmd.Process.Pid)
		fds, _ := os.ReadDir(fdDir)
		segFDs := 0
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasSuffix(target, ".log") {
				segFDs++
			}
		}
		logs, err := countLogDirs(n.dir)
		if err != nil {
			return res, err
		}
		res.Nodes = append(res.Nodes, ScaleNode{ID: n.id, Logs: logs, CreateCPU: createCPU[i], IdleCPU: float64(after-before[i]) / clockTicks / secs, RSSBytes: rss, FDs: len(fds), SegmentFDs: segFDs})
	}
	return res, nil
}

// fetchProfile writes a CPU profile of n over secs seconds to path.
func fetchProfile(ctx context.Context, n *scaleNode, secs int, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench scale: profile of node %d: %w", n.id, err)
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.http, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bench scale: profile of node %d: %w", n.id, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench scale: profile of node %d: %w", n.id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench scale: profile of node %d: %s", n.id, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("bench scale: profile of node %d: %w", n.id, err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("bench scale: profile of node %d: %w", n.id, err)
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux platform Go supports).
const clockTicks = 100

func startScaleCluster(ctx context.Context, cfg ScaleConfig, logf func(string, ...any)) ([]*scaleNode, error) {
	// Raft addresses are named in every node's --voters, so they are
	// picked up front; everything else listens on port 0.
	var ls []net.Listener
	var voters []string
	for i := 1; i <= cfg.Nodes; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench scale: pick a port: %w", err)
		}
		ls = append(ls, l)
		voters = append(voters, fmt.Sprintf("%d=%s", i, l.Addr()))
	}
	for _, l := range ls {
		l.Close()
	}
	var nodes []*scaleNode
	for i := 1; i <= cfg.Nodes; i++ {
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nodes, fmt.Errorf("bench scale: %w", err)
		}
		raftAddr := strings.SplitN(voters[i-1], "=", 2)[1]
		args := append([]string{"serve", "--node-id", strconv.Itoa(i), "--data-dir", filepath.Join(dir, "data"),
			"--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0",
			"--raft-listen", raftAddr, "--voters", strings.Join(voters, ","),
			"--ready-file", filepath.Join(dir, "ready.json"), "--log-level", "warn"}, cfg.ExtraArgs...)
		n := &scaleNode{id: i, dir: dir, done: make(chan struct{}), logPath: filepath.Join(dir, "node.log")}
		logFile, err := os.Create(n.logPath)
		if err != nil {
			return nodes, fmt.Errorf("bench scale: %w", err)
		}
		n.cmd = exec.Command(cfg.Bin, args...)
		n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
		if err := n.cmd.Start(); err != nil {
			logFile.Close()
			return nodes, fmt.Errorf("bench scale: start node %d: %w", i, err)
		}
		go func() {
			n.err = n.cmd.Wait()
			logFile.Close()
			close(n.done)
		}()
		nodes = append(nodes, n)
		logf("node %d: pid %d, %s %s", i, n.cmd.Process.Pid, cfg.Bin, strings.Join(args, " "))
	}
	deadline := time.Now().Add(cfg.Timeout)
	for _, n := range nodes {
		for {
			b, err := os.ReadFile(filepath.Join(n.dir, "ready.json"))
			if err == nil && len(b) > 0 {
				var rf struct {
					Kafka string `json:"kafka"`
					HTTP  string `json:"http"`
				}
				if err := json.Unmarshal(b, &rf); err != nil {
					return nodes, fmt.Errorf("bench scale: node %d ready file: %w", n.id, err)
				}
				n.kafka, n.http = rf.Kafka, rf.HTTP
				break
			}
			select {
			case <-n.done:
				return nodes, fmt.Errorf("bench scale: node %d exited during start (%v); see %s", n.id, n.err, n.logPath)
			case <-ctx.Done():
				return nodes, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return nodes, fmt.Errorf("bench scale: node %d not ready after %s; see %s", n.id, cfg.Timeout, n.logPath)
			}
		}
	}
	return nodes, nil
}

// stopScaleCluster stops the nodes gracefully (SIGTERM), killing those
// still running after 30 s.
func stopScaleCluster(nodes []*scaleNode, logf func(string, ...any)) {
	for _, n := range nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			logf("node %d did not stop within 30 s; killing it", n.id)
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

// waitBrokers waits until every node's own Metadata (asked directly, not
// through a client's cache) lists all nodes.
func waitBrokers(ctx context.Context, nodes []*scaleNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range nodes {
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.kafka))
		if err != nil {
			return fmt.Errorf("bench scale: client: %w", err)
		}
		for {
			req := kmsg.NewPtrMetadataRequest()
			req.Topics = []kmsg.MetadataRequestTopic{}
			resp, err := req.RequestWith(ctx, cl.SeedBrokers()[0])
			listed := 0
			if err == nil {
				listed = len(resp.Brokers)
			}
			if listed == len(nodes) {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("bench scale: node %d lists %d of %d brokers after %s (error %v)", n.id, listed, len(nodes), timeout, err)
			}
			select {
			case <-ctx.Done():
				cl.Close()
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		cl.Close()
	}
	return nil
}

// createTopics creates names in batches of cfg.Batch, cfg.Parallel
// requests at a time; a topic that reports an error is retried (in a
// later request) until cfg.Timeout passes.
func createTopics(ctx context.Context, adm *kadm.Client, names []string, cfg ScaleConfig) error {
	work := make(chan []string)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work {
				if err := createBatch(ctx, adm, batch, cfg); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < len(names); i += cfg.Batch {
		work <- names[i:min(i+cfg.Batch, len(names))]
	}
	close(work)
	wg.Wait()
	return firstErr
}

func createBatch(ctx context.Context, adm *kadm.Client, batch []string, cfg ScaleConfig) error {
	deadline := time.Now().Add(cfg.Timeout)
	for {
		resp, err := adm.CreateTopics(ctx, int32(cfg.PerTopic), int16(cfg.Nodes), nil, batch...)
		var retry []string
		var last error
		if err != nil {
			retry, last = batch, err
		} else {
			for _, name := range batch {
				r, ok := resp[name]
				switch {
				case !ok:
					retry, last = append(retry, name), fmt.Errorf("no answer for %s", name)
				case r.Err != nil && !strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS"):
					retry, last = append(retry, name), fmt.Errorf("%s: %w", name, r.Err)
				}
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench scale: create topics: %d not created after %s: %w", len(retry), cfg.Timeout, last)
		}
		batch = retry
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitScaleReady waits until every node's Metadata lists every topic with
// all partitions led and every node holds a log directory per replica
// (replication factor = nodes: one per partition).
func waitScaleReady(ctx context.Context, nodes []*scaleNode, names []string, cfg ScaleConfig) error {
	want := len(names) * cfg.PerTopic
	deadline := time.Now().Add(cfg.Timeout)
	for _, n := range nodes {
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.kafka))
		if err != nil {
			return fmt.Errorf("bench scale: client: %w", err)
		}
		adm := kadm.NewClient(cl)
		var last string
		for {
			led, logs := 0, 0
			md, err := adm.Metadata(ctx, names...)
			if err == nil {
				for _, t := range md.Topics {
					for _, p := range t.Partitions {
						if p.Err == nil && p.Leader >= 0 {
							led++
						}
					}
				}
			}
			logs, lerr := countLogDirs(n.dir)
			if lerr != nil {
				cl.Close()
				return lerr
			}
			if led == want && logs >= want {
				break
			}
			last = fmt.Sprintf("%d of %d partitions led in its Metadata (error %v), %d log dirs", led, want, err, logs)
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("bench scale: node %d not ready after %s: %s", n.id, cfg.Timeout, last)
			}
			select {
			case <-ctx.Done():
				cl.Close()
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		cl.Close()
	}
	return nil
}

// countLogDirs counts the partition directories of a node (data/logs/*-N).
func countLogDirs(dir string) (int, error) {
	es, err := os.ReadDir(filepath.Join(dir, "data", "logs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bench scale: count logs: %w", err)
	}
	n := 0
	for _, e := range es {
		if e.IsDir() && strings.HasPrefix(e.Name(), "scale-") && !strings.HasSuffix(e.Name(), ".deleted") {
			n++
		}
	}
	return n, nil
}

// cpuTicks is a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench scale: %w", err)
	}
	// Fields after the command name (which may hold spaces) start after
	// the last ')': state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench scale: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench scale: malformed /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench scale: malformed /proc/%d/stat", pid)
	}
	return u + s, nil
}

// rssBytes is a process's resident set size (VmRSS).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench scale: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("bench scale: no VmRSS in /proc/%d/status", pid)
}

// raiseFileLimit raises RLIMIT_NOFILE (soft and hard) to at least n; the
// hard limit can only be raised with CAP_SYS_RESOURCE.
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	want := syscall.Rlimit{Cur: max(lim.Cur, n), Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE from %d/%d to %d: %w", lim.Cur, lim.Max, n, err)
	}
	return nil
}
