package compat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The web console (/ui) and its JSON API (/api/v1/) against a real
// 3-node cluster with rotation: the API's segment chains match the Raft
// metadata, its lag matches kadm's, unknown names are 404 JSON; then
// headless Chromium (chromedp) renders the pages and the test reads the
// DOM: the timeline shows segments led by at least two nodes, the group
// page the lag kadm computes, names with markup render as text, and the
// partition page refreshes itself as records arrive.

// consoleGroup is a group id with markup in it (group ids are free-form;
// topic names cannot hold '<').
const consoleGroup = "console-<script>window.pwned=1</script>"

type consoleSegment struct {
	ID       int64   `json:"id"`
	Base     int64   `json:"base"`
	End      int64   `json:"end"`
	Epoch    int32   `json:"epoch"`
	Leader   int32   `json:"leader"`
	Replicas []int32 `json:"replicas"`
	State    string  `json:"state"`
	Bytes    int64   `json:"bytes"`
}

type consolePartition struct {
	Topic         string           `json:"topic"`
	Partition     int32            `json:"partition"`
	Leader        int32            `json:"leader"`
	LogEnd        int64            `json:"log_end"`
	HighWatermark int64            `json:"high_watermark"`
	Segments      []consoleSegment `json:"segments"`
	Leaders       map[string]int   `json:"leaders"`
}

type consoleGroupView struct {
	Group   string `json:"group"`
	State   string `json:"state"`
	Members []struct {
		MemberID    string `json:"member_id"`
		Assignments []struct {
			Topic      string  `json:"topic"`
			Partitions []int32 `json:"partitions"`
		} `json:"assignments"`
	} `json:"members"`
	Lag []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Committed int64  `json:"committed"`
		End       int64  `json:"end"`
		Lag       int64  `json:"lag"`
	} `json:"lag"`
	TotalLag int64 `json:"total_lag"`
}

// consoleGet GETs path on an HTTP address and decodes the JSON answer.
func consoleGet(t *testing.T, addr, path string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q: %s", path, ct, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// kadmLag is kadm's lag per "topic/partition" and in total.
func kadmLag(t *testing.T, adm *kadm.Client, group string) (map[string]int64, int64) {
	t.Helper()
	lags, err := adm.Lag(ctxTimeout(t, 10*time.Second), group)
	if err != nil {
		t.Fatalf("kadm lag: %v", err)
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		t.Fatalf("kadm lag %s: %v", group, err)
	}
	out := map[string]int64{}
	var total int64
	for _, ml := range l.Lag.Sorted() {
		out[fmt.Sprintf("%s/%d", ml.Topic, ml.Partition)] = ml.Lag
		if ml.Lag >= 0 {
			total += ml.Lag
		}
	}
	return out, total
}

// consoleCluster is a 3-node cluster with an RF=3 topic "rot" (2
// partitions, 4 KiB segments) written through several rolls, and a
// consumer group that read part of it, committed, and stays a member
// without reading further (so its lag holds still).
type consoleCluster struct {
	c     *cluster
	adm   *kadm.Client
	http  string // node 1's HTTP address
	parts []int32
}

func startConsoleCluster(t *testing.T) *consoleCluster {
	t.Helper()
	c := startCluster(t, 3)
	const topic = "rot"
	parts := []int32{0, 1}
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	resp, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), int32(len(parts)), 3, map[string]*string{"segment.bytes": strp("4096")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: len(parts)}, 10*time.Second)
	}
	const rounds, perRound = 5, 200
	for r := 0; r < rounds; r++ {
		start := map[int32]int64{}
		for _, p := range parts {
			start[p] = int64(r * perRound)
		}
		producePartitions(t, c.kafkaAddrs(c.ids()...), topic, parts, perRound, fmt.Sprintf("con%d", r), start)
	}
	// The group reads some records, commits them, and stops reading.
	gcl := newClusterClient(t, c.kafkaAddrs(c.ids()...), kgo.ConsumerGroup(consoleGroup), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	read := 0
	deadline := time.Now().Add(30 * time.Second)
	for read < 300 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := gcl.PollRecords(ctx, 100)
		cancel()
		read += fs.NumRecords()
	}
	if read < 300 {
		t.Fatalf("the group read %d records in 30 s, want ≥ 300", read)
	}
	if err := gcl.CommitUncommittedOffsets(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("group commit: %v", err)
	}
	n1 := c.node(1)
	return &consoleCluster{c: c, adm: adm, http: n1.HTTP, parts: parts}
}

// waitRotated polls the API until every partition's chain has segments
// led by at least two nodes and every segment is sealed but the last.
func (cc *consoleCluster) waitRotated(t *testing.T) map[int32]consolePartition {
	t.Helper()
	out := map[int32]consolePartition{}
	waitFor(t, 30*time.Second, "segments led by two nodes in every partition", func() (bool, string) {
		for _, p := range cc.parts {
			var v consolePartition
			if code := consoleGet(t, cc.http, fmt.Sprintf("/api/v1/topics/rot/partitions/%d", p), &v); code != 200 {
				return false, fmt.Sprintf("partition %d: status %d", p, code)
			}
			if len(v.Leaders) < 2 || v.LogEnd != 1000 {
				return false, fmt.Sprintf("partition %d: leaders %v, log end %d", p, v.Leaders, v.LogEnd)
			}
			out[p] = v
		}
		return true, ""
	})
	return out
}

func TestConsoleCluster(t *testing.T) {
	skipClusterInKfakeMode(t)
	done := cardSetup(t, "tusk 3-node cluster")
	cc := startConsoleCluster(t)
	done()

	t.Run("api", func(t *testing.T) {
		card(t, "console API + kadm", "console: /api/v1 chains match the metadata, lag matches kadm, 404 JSON")
		views := cc.waitRotated(t)
		// The chain is the metadata's, segment for segment.
		_, raw, err := cc.c.dump(t, 1)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Topics map[string]struct {
				Parts []struct {
					Segments []struct {
						ID            int64 `json:"id"`
						Base, End     int64
						Epoch, Leader int32
						State         string
					} `json:"segments"`
				} `json:"parts"`
			} `json:"topics"`
		}
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range cc.parts {
			v, md := views[p], d.Topics["rot"].Parts[p].Segments
			if len(v.Segments) != len(md) {
				t.Fatalf("partition %d: API has %d segments, metadata %d", p, len(v.Segments), len(md))
			}
			for i, s := range v.Segments {
				m := md[i]
				end := m.End
				if m.State == "active" {
					end = v.LogEnd // the API ends the active segment at the leader's log end
				}
				if s.ID != m.ID || s.Base != m.Base || s.End != end || s.Epoch != m.Epoch || s.Leader != m.Leader || s.State != m.State {
					t.Fatalf("partition %d segment %d: API %+v, metadata %+v", p, i, s, m)
				}
				if s.State == "sealed" && s.Bytes <= 0 {
					t.Fatalf("partition %d: sealed segment %+v has no size", p, s)
				}
			}
			t.Logf("partition %d: %d segments, led by %v", p, len(v.Segments), v.Leaders)
		}
		// Cluster: three alive nodes, each with a live lease, a version and data on disk.
		var cl struct {
			Controller int32 `json:"controller"`
			Nodes      []struct {
				ID    int32  `json:"id"`
				State string `json:"state"`
				Lease *struct {
					Valid bool `json:"valid"`
				} `json:"lease"`
				Version   string `json:"version"`
				DiskBytes int64  `json:"disk_bytes"`
				Error     string `json:"error"`
			} `json:"nodes"`
		}
		waitFor(t, 10*time.Second, "three nodes with leases", func() (bool, string) {
			consoleGet(t, cc.http, "/api/v1/cluster", &cl)
			if len(cl.Nodes) != 3 {
				return false, fmt.Sprintf("%+v", cl)
			}
			for _, n := range cl.Nodes {
				if n.State != "alive" || n.Lease == nil || !n.Lease.Valid || n.Version == "" || n.DiskBytes <= 0 || n.Error != "" {
					return false, fmt.Sprintf("%+v", cl)
				}
			}
			return cl.Controller >= 1 && cl.Controller <= 3, fmt.Sprintf("%+v", cl)
		})
		// Lag: the API's equals kadm's, partition by partition.
		want, wantTotal := kadmLag(t, cc.adm, consoleGroup)
		var g consoleGroupView
		if code := consoleGet(t, cc.http, "/api/v1/groups/"+url.PathEscape(consoleGroup), &g); code != 200 {
			t.Fatalf("group: status %d", code)
		}
		got := map[string]int64{}
		for _, l := range g.Lag {
			got[fmt.Sprintf("%s/%d", l.Topic, l.Partition)] = l.Lag
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || g.TotalLag != wantTotal || wantTotal <= 0 {
			t.Fatalf("group lag: API %v (total %d), kadm %v (total %d)", got, g.TotalLag, want, wantTotal)
		}
		if g.Group != consoleGroup || g.State != "Stable" || len(g.Members) != 1 || len(g.Members[0].Assignments) != 1 ||
			fmt.Sprint(g.Members[0].Assignments[0].Partitions) != "[0 1]" {
			t.Fatalf("group %+v", g)
		}
		// A topic cannot be called <script> (Kafka's topic name rule), so
		// markup reaches the console only in group ids and the paths asked
		// for (the browser test renders both).
		r, err := cc.adm.CreateTopic(ctxTimeout(t, 10*time.Second), 1, 1, nil, "<script>")
		if err == nil {
			err = r.Err
		}
		if !errors.Is(err, kerr.InvalidTopicException) {
			t.Errorf("create topic <script>: %v, want INVALID_TOPIC_EXCEPTION", err)
		}
		// Bad input: JSON errors with 404.
		for path, msg := range map[string]string{
			"/api/v1/topics/nope":             `unknown topic "nope"`,
			"/api/v1/topics/rot/partitions/7": `topic "rot" has no partition "7" (it has 2)`,
			"/api/v1/groups/nope":             `unknown group "nope"`,
		} {
			var e struct {
				Error string `json:"error"`
			}
			if code := consoleGet(t, cc.http, path, &e); code != 404 || e.Error != msg {
				t.Errorf("GET %s: %d %q, want 404 %q", path, code, e.Error, msg)
			}
		}
	})

	t.Run("browser", func(t *testing.T) {
		card(t, "console in headless Chromium", "console: timeline led by ≥2 nodes, group lag = kadm, names escaped")
		cc.waitRotated(t)
		testConsoleBrowser(t, cc)
	})
}

// chromiumPath finds Debian's chromium; the browser test fails without it
// (.ci/run installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not installed (apt-get install chromium; .ci/run installs it): the console's browser test needs it")
	return ""
}

func testConsoleBrowser(t *testing.T, cc *consoleCluster) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	base := "http://" + cc.http + "/ui/"
	// The first action starts the browser, which lives as long as that
	// action's context: bctx, without a timeout; the rest use ctx.
	if err := chromedp.Do(bctx, chromedp.Navigate(base)); err != nil {
		t.Fatalf("open %s: %v", base, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	shots := t.TempDir()
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
		if name == "partition.png" && os.Getenv("TUSK_UPDATE_CONSOLE_PNG") == "1" {
			root, err := moduleRoot()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "docs", "console.png"), buf, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// page moves to a hash route and waits until sel is visible in the
	// content rendered for that route.
	page := func(hash, sel string) {
		t.Helper()
		q, err := json.Marshal(hash)
		if err != nil {
			t.Fatal(err)
		}
		sel = `main[data-route="` + hash + `"] ` + sel
		setHash := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[json.RawMessage]("location.hash = "+string(q))(ctx, tg)
			return err
		})
		if err := chromedp.Do(ctx, setHash, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main"))) // diagnostics only
			t.Fatalf("page %s: waiting for %s: %v; main: %s", hash, sel, err, html)
		}
	}
	// eval evaluates js in the page into out (JSON-decoded).
	eval := func(js string, out any) {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("evaluate %s: %v in %s", js, err, raw)
		}
	}

	// Cluster page: three nodes, each with a valid lease.
	// The page refreshes every 2 s; on a loaded machine a lease can lapse
	// for a moment (all three did once, at a load average of 16 on 2
	// cores), so the rows are read until they show three valid leases.
	page("#/cluster", "#nodes tbody tr")
	var nodes []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		eval(`[...document.querySelectorAll('#nodes tbody tr')].map(r => r.getAttribute('data-node-id') + ':' + r.querySelector('td.lease').textContent)`, &nodes)
		valid := 0
		for _, n := range nodes {
			if strings.Contains(n, "valid") && !strings.Contains(n, "expired") {
				valid++
			}
		}
		if len(nodes) == 3 && valid == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster page rows %q: want 3 nodes, every lease valid", nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	shot("cluster.png")

	// Topics page lists the topic.
	page("#/topics", `#topics tr[data-topic="rot"]`)
	shot("topics.png")

	// The timeline: one block per segment, coloured by leader; at least
	// two leaders, and exactly the API's chain.
	for _, p := range cc.parts {
		var v consolePartition
		consoleGet(t, cc.http, fmt.Sprintf("/api/v1/topics/rot/partitions/%d", p), &v)
		page(fmt.Sprintf("#/topics/rot/%d", p), "#timeline .seg")
		var segs []struct {
			ID     string `json:"id"`
			Leader string `json:"leader"`
			State  string `json:"state"`
			Colour string `json:"colour"`
		}
		eval(`[...document.querySelectorAll('#timeline .seg')].map(s => ({id: s.getAttribute('data-segment'), leader: s.getAttribute('data-leader'), state: s.getAttribute('data-state'), colour: s.style.background}))`, &segs)
		leaders, colours := map[string]bool{}, map[string]string{}
		for _, s := range segs {
			leaders[s.Leader] = true
			if c, ok := colours[s.Leader]; ok && c != s.Colour {
				t.Fatalf("partition %d: leader %s drawn in %s and %s", p, s.Leader, c, s.Colour)
			}
			colours[s.Leader] = s.Colour
		}
		if len(leaders) < 2 || len(colours) != len(leaders) {
			t.Fatalf("partition %d: timeline %+v: want segments of at least two leaders in distinct colours", p, segs)
		}
		// The page refreshes; the chain can only have grown since the API call.
		if len(segs) < len(v.Segments) {
			t.Fatalf("partition %d: timeline has %d segments, API %d", p, len(segs), len(v.Segments))
		}
		for i, s := range v.Segments {
			if segs[i].ID != strconv.FormatInt(s.ID, 10) || segs[i].Leader != strconv.Itoa(int(s.Leader)) {
				t.Fatalf("partition %d: timeline segment %d is %+v, API %+v", p, i, segs[i], s)
			}
		}
		if last := segs[len(segs)-1]; last.State != "active" {
			t.Fatalf("partition %d: last timeline segment %+v not active", p, last)
		}
		var rows int
		eval(`document.querySelectorAll('#segments tbody tr').length`, &rows)
		if rows != len(segs) {
			t.Fatalf("partition %d: %d table rows for %d segments", p, rows, len(segs))
		}
		t.Logf("partition %d timeline: %d segments, leaders %v", p, len(segs), colours)
		if p == 0 {
			shot("partition.png")
		}
	}

	// The group page: the name renders as text (no script ran), and the
	// lag per partition and in total is kadm's.
	page("#/groups", "#groups tbody tr")
	var listed []string
	eval(`[...document.querySelectorAll('#groups tbody tr')].map(r => r.querySelector('a').textContent)`, &listed)
	if fmt.Sprint(listed) != fmt.Sprint([]string{consoleGroup}) {
		t.Fatalf("groups page lists %q, want [%q]", listed, consoleGroup)
	}
	page("#/groups/"+url.PathEscape(consoleGroup), "#lag tbody tr")
	want, wantTotal := kadmLag(t, cc.adm, consoleGroup)
	// One evaluation reads the whole page (it re-renders every 2 s).
	var gp struct {
		Lag    map[string]string `json:"lag"`
		Total  string            `json:"total"`
		Name   string            `json:"name"`
		Markup bool              `json:"markup"`
		Pwned  bool              `json:"pwned"`
		HTML   string            `json:"html"`
	}
	eval(`(() => { const g = id => document.getElementById(id); return {
		lag: Object.fromEntries([...document.querySelectorAll('#lag tbody tr')].map(r => [r.getAttribute('data-topic') + '/' + r.getAttribute('data-partition'), r.querySelector('td.lag').textContent])),
		total: g('total-lag') ? g('total-lag').textContent : null,
		name: g('group-name') ? g('group-name').textContent : null,
		markup: !!g('group-name') && g('group-name').children.length > 0 || document.querySelectorAll('main script').length > 0,
		pwned: window.pwned === 1,
		html: document.querySelector('main').outerHTML}; })()`, &gp)
	got, total, name, markup, pwned := gp.Lag, gp.Total, gp.Name, gp.Markup, gp.Pwned
	if total == "" {
		t.Fatalf("group page without a total lag: %s", gp.HTML)
	}
	wantS := map[string]string{}
	for k, v := range want {
		wantS[k] = strconv.FormatInt(v, 10)
	}
	keys := func(m map[string]string) string {
		var ks []string
		for k, v := range m {
			ks = append(ks, k+"="+v)
		}
		sort.Strings(ks)
		return strings.Join(ks, " ")
	}
	if keys(got) != keys(wantS) || total != strconv.FormatInt(wantTotal, 10) {
		t.Fatalf("group page lag %s (total %s), kadm %s (total %d)", keys(got), total, keys(wantS), wantTotal)
	}
	if name != consoleGroup || markup || pwned {
		t.Fatalf("group name rendered as %q (markup %v, script ran %v), want the text %q", name, markup, pwned, consoleGroup)
	}
	t.Logf("group page lag %s, total %s (kadm's)", keys(got), total)
	shot("group.png")

	// An unknown topic with markup in its name: the 404's message as text.
	bad := "<img src=x onerror=window.pwned=1>"
	page("#/topics/"+url.PathEscape(bad), "#error")
	var msg string
	eval(`document.getElementById('error').textContent`, &msg)
	eval(`window.pwned === 1 || document.querySelectorAll('main img').length > 0`, &pwned)
	if msg != fmt.Sprintf("unknown topic %q", bad) || pwned {
		t.Fatalf("unknown topic page says %q (markup ran %v)", msg, pwned)
	}

	// The live view: the partition page refreshes by itself. Once 200
	// more records are written to partition 0 (through at least one roll
	// of its 4 KiB segments), the same page, neither navigated nor
	// reloaded (a window variable set before survives), shows the new
	// log end and more segments.
	page("#/topics/rot/0", "#timeline .seg")
	type liveView struct {
		Route  string `json:"route"`
		Segs   int    `json:"segs"`
		End    string `json:"end"`
		Marker bool   `json:"marker"`
	}
	const liveJS = `(() => { const s = [...document.querySelectorAll('#timeline .seg')]; return {
		route: document.querySelector('main').getAttribute('data-route'), segs: s.length,
		end: s.length ? s[s.length - 1].getAttribute('data-end') : '', marker: window.liveMarker === 1}; })()`
	var before liveView
	eval(`window.liveMarker = 1`, new(int))
	eval(liveJS, &before)
	if before.End != "1000" {
		t.Fatalf("partition 0 page before more records: %+v, want its active segment ending at 1000", before)
	}
	producePartitions(t, cc.c.kafkaAddrs(cc.c.ids()...), "rot", []int32{0}, 200, "live", map[int32]int64{0: 1000})
	var after liveView
	deadline = time.Now().Add(20 * time.Second)
	for {
		eval(liveJS, &after)
		if after.End == "1200" && after.Segs > before.Segs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partition page did not refresh by itself within 20 s: before %+v, now %+v", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after.Route != "#/topics/rot/0" || !after.Marker {
		t.Fatalf("the partition page refreshed by navigating or reloading: %+v", after)
	}
	t.Logf("live view: %d segments ending at %s, then %d ending at %s without a reload", before.Segs, before.End, after.Segs, after.End)

	// Throughput: the topic page's produce rate per partition, from the
	// log ends of two refreshes: 0/s while nothing is written, then above
	// 0 for partition 1 once 200 records arrive (and its log end 1200).
	page("#/topics/rot", `#partitions tbody tr[data-partition="1"]`)
	const rateJS = `Object.fromEntries([...document.querySelectorAll('#partitions tbody tr')].map(r => [r.getAttribute('data-partition'), [...r.querySelectorAll('td')].slice(8, 10).map(td => td.textContent)]))`
	rates := map[string][]string{}
	poll := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			eval(rateJS, &rates)
			if ok() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("topic page: %s not shown within 20 s: log end and rate per partition %v", what, rates)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	poll("a produce rate of 0/s", func() bool { return fmt.Sprint(rates["1"]) == "[1000 0/s]" })
	producePartitions(t, cc.c.kafkaAddrs(cc.c.ids()...), "rot", []int32{1}, 200, "rate", map[int32]int64{1: 1000})
	poll("partition 1's new log end with a produce rate above 0", func() bool {
		r := rates["1"]
		var n int
		_, err := fmt.Sscanf(strings.TrimSuffix(fmt.Sprint(r), "]"), "[1200 %d/s", &n)
		return err == nil && n > 0
	})
	t.Logf("topic page: log end and produce rate per partition %v", rates)
	t.Logf("screenshots in %s", shots)
}

// gtConsoleWant is the console's answer for a group of the
// startGroupTypes fixture without member_id, host and coordinator.
func gtConsoleWant(group string) map[string]any {
	member := func(client string) map[string]any {
		return map[string]any{"client_id": client, "member_epoch": 1, "subscribed_topics": []any{gtTopic},
			"assignments": []any{map[string]any{"topic": gtTopic, "partitions": []any{0, 1}}}}
	}
	return map[string]map[string]any{
		gtConsumer: {"group": gtConsumer, "type": "consumer", "state": "Stable", "protocol_type": "", "protocol": "",
			"group_epoch": 1, "assignment_epoch": 1, "assignor": "uniform", "members": []any{member("gt-848-client")},
			"lag": []any{gtLag(0, 4, 9, 5), gtLag(1, 1, 4, 3)}, "total_lag": 8},
		gtShare: {"group": gtShare, "type": "share", "state": "Stable", "protocol_type": "", "protocol": "",
			"group_epoch": 1, "assignment_epoch": 1, "assignor": "simple", "members": []any{member("gt-share-client")},
			"lag": []any{gtLag(0, 6, 9, 3), gtLag(1, 4, 4, 0)}, "total_lag": 3},
		gtClassic: {"group": gtClassic, "type": "classic", "state": "Empty", "protocol_type": "", "protocol": "",
			"members": []any{}, "lag": []any{gtLag(0, 2, 9, 7), gtLag(1, -1, 4, 4)}, "total_lag": 11},
	}[group]
}

// TestClusterConsoleGroupTypes: the startGroupTypes fixture on 3 nodes
// (the topic at RF 3): every node's console describes the classic,
// KIP-848 and share groups the same, exactly, with the coordinator kadm
// finds, wherever the groups are coordinated.
func TestClusterConsoleGroupTypes(t *testing.T) {
	skipClusterInKfakeMode(t)
	c := startClusterWith(t, 3, func(int32) []startOpt { return shareFlags() })
	card(t, "console API", "console on 3 nodes: classic, KIP-848 and share groups alike from every node")
	var all []*node
	for _, id := range c.ids() {
		all = append(all, c.node(id))
	}
	startGroupTypes(t, c.node(1), all...)
	adm, _ := newAdm(t, c.node(2))
	coords := map[string]int32{}
	cgs, err := adm.DescribeConsumerGroups(ctxTimeout(t, 10*time.Second), gtConsumer)
	if err != nil {
		t.Fatal(err)
	}
	sgs, err := adm.DescribeShareGroups(ctxTimeout(t, 10*time.Second), gtShare)
	if err != nil {
		t.Fatal(err)
	}
	dgs, err := adm.DescribeGroups(ctxTimeout(t, 10*time.Second), gtClassic)
	if err != nil {
		t.Fatal(err)
	}
	coords[gtConsumer], coords[gtShare], coords[gtClassic] = cgs[gtConsumer].Coordinator.NodeID, sgs[gtShare].Coordinator.NodeID,
		dgs[gtClassic].Coordinator.NodeID
	for _, id := range c.ids() {
		for _, group := range []string{gtConsumer, gtShare, gtClassic} {
			var got any
			if code := consoleGet(t, c.node(id).HTTP, "/api/v1/groups/"+url.PathEscape(group), &got); code != 200 {
				t.Fatalf("node %d: GET group %s: %d %v", id, group, code, got)
			}
			w := gtConsoleWant(group)
			w["coordinator"] = coords[group]
			if g, w := canonJSON(t, dropKeys(got, []string{"member_id", "host"})), canonJSON(t, w); g != w {
				t.Errorf("node %d: group %s\n got %s\nwant %s", id, group, g, w)
			}
		}
	}
	t.Logf("coordinators %v", coords)
}

// TestConsoleGroupTypes: /api/v1/groups lists a classic, a KIP-848
// consumer and a KIP-932 share group with their types, and
// /api/v1/groups/{group} describes each with members, member epochs,
// assignments and lag per partition exactly (the startGroupTypes fixture
// of TestCLIGroupTypes); an unknown group is 404 JSON.
func TestConsoleGroupTypes(t *testing.T) {
	if kfakeMode() {
		t.Skip("TUSK_COMPAT_KFAKE=1: the kfake stand-in has no console")
	}
	n := startTusk(t, shareFlags()...)
	card(t, "console API", "console: classic, KIP-848 and share groups with members, epochs, lag")
	startGroupTypes(t, n)
	get := func(path string, ignore []string) string {
		t.Helper()
		var got any
		if code := consoleGet(t, n.HTTP, path, &got); code != 200 {
			t.Fatalf("GET %s: status %d: %v", path, code, got)
		}
		return canonJSON(t, dropKeys(got, ignore))
	}
	want := func(v any) string { return canonJSON(t, v) }
	if g, w := get("/api/v1/groups", nil), want([]any{
		map[string]any{"group": gtConsumer, "type": "consumer", "state": "Stable", "protocol_type": "consumer", "coordinator": 1},
		map[string]any{"group": gtClassic, "type": "classic", "state": "Empty", "protocol_type": "", "coordinator": 1},
		map[string]any{"group": gtShare, "type": "share", "state": "Stable", "protocol_type": "share", "coordinator": 1},
	}); g != w {
		t.Fatalf("groups\n got %s\nwant %s", g, w)
	}
	ignore := []string{"member_id", "host"}
	for _, group := range []string{gtConsumer, gtShare, gtClassic} {
		w := gtConsoleWant(group)
		w["coordinator"] = 1
		if g, w := get("/api/v1/groups/"+url.PathEscape(group), ignore), want(w); g != w {
			t.Errorf("group %s\n got %s\nwant %s", group, g, w)
		}
	}
	// Each lag row names the member assigned the partition.
	var g struct {
		Members []struct {
			MemberID string `json:"member_id"`
		} `json:"members"`
		Lag []struct {
			MemberID string `json:"member_id"`
		} `json:"lag"`
	}
	for _, id := range []string{gtConsumer, gtShare} {
		if code := consoleGet(t, n.HTTP, "/api/v1/groups/"+id, &g); code != 200 || len(g.Members) != 1 || g.Members[0].MemberID == "" ||
			len(g.Lag) != 2 || g.Lag[0].MemberID != g.Members[0].MemberID || g.Lag[1].MemberID != g.Members[0].MemberID {
			t.Errorf("group %s: status %d, members and lag rows %+v", id, code, g)
		}
	}
	var e struct {
		Error string `json:"error"`
	}
	if code := consoleGet(t, n.HTTP, "/api/v1/groups/"+url.PathEscape("gt-<b>nope"), &e); code != 404 || e.Error != `unknown group "gt-<b>nope"` {
		t.Errorf("unknown group: %d %q", code, e.Error)
	}
	t.Run("browser", func(t *testing.T) { testConsoleGroupTypesBrowser(t, n.HTTP) })

	// A consumer group in the middle of a rebalance, by raw heartbeats:
	// a joins and is given both partitions, b joins and a does not
	// heartbeat again, so one partition is b's target but still a's (or
	// pending its revocation): the console shows the target beside the
	// assignment.
	cl := newKgo(t, n)
	hb := func(member string, epoch int32) *kmsg.ConsumerGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.MemberEpoch, req.RebalanceTimeoutMillis = "gt-recon", member, epoch, 60000
		req.SubscribedTopicNames, req.Topics = []string{gtTopic}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		resp, err := req.RequestWith(ctxTimeout(t, 10*time.Second), cl)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("ConsumerGroupHeartbeat %s: %v %+v", member, err, resp)
		}
		return resp
	}
	hb("gt-recon-member-a-0001", 0)
	hb("gt-recon-member-b-0001", 0)
	var recon struct {
		GroupEpoch int32 `json:"group_epoch"`
		Members    []struct {
			MemberID    string `json:"member_id"`
			MemberEpoch int32  `json:"member_epoch"`
			Assignments []struct {
				Partitions []int32 `json:"partitions"`
			} `json:"assignments"`
			Target []struct {
				Partitions []int32 `json:"partitions"`
			} `json:"target_assignments"`
		} `json:"members"`
	}
	if code := consoleGet(t, n.HTTP, "/api/v1/groups/gt-recon", &recon); code != 200 || len(recon.Members) != 2 {
		t.Fatalf("gt-recon: status %d %+v", code, recon)
	}
	targets, reconciling := map[int32]string{}, 0
	for _, m := range recon.Members {
		ps := m.Assignments
		if m.Target != nil {
			ps = m.Target
			reconciling++
		}
		for _, a := range ps {
			for _, p := range a.Partitions {
				if other, dup := targets[p]; dup {
					t.Fatalf("partition %d is the target of %s and %s: %+v", p, other, m.MemberID, recon)
				}
				targets[p] = m.MemberID
			}
		}
	}
	if len(targets) != 2 || reconciling == 0 || recon.GroupEpoch != 2 {
		t.Fatalf("gt-recon: targets %v, %d members reconciling, group epoch %d, want both partitions targeted, one reconciling, epoch 2: %+v",
			targets, reconciling, recon.GroupEpoch, recon)
	}

	// A share group member that never fetched: the group has no state on
	// its partitions, so their lag is unknown.
	shareHBClient{t, cl}.hb("gt-share-idle", "gt-share-idle-member-01", 0, gtTopic)
	if g, w := get("/api/v1/groups/gt-share-idle", ignore), want(map[string]any{"group": "gt-share-idle", "type": "share", "state": "Stable",
		"protocol_type": "", "protocol": "", "group_epoch": 1, "assignment_epoch": 1, "assignor": "simple", "coordinator": 1,
		"members": []any{map[string]any{"client_id": "tusk-compat", "member_epoch": 1, "subscribed_topics": []any{gtTopic},
			"assignments": []any{map[string]any{"topic": gtTopic, "partitions": []any{0, 1}}}}},
		"lag": []any{gtLag(0, -1, 9, -1), gtLag(1, -1, 4, -1)}, "total_lag": 0}); g != w {
		t.Errorf("gt-share-idle\n got %s\nwant %s", g, w)
	}
}

// testConsoleGroupTypesBrowser renders the groups page and the consumer
// and share group pages in headless Chromium and reads the DOM: each
// group's type, the member's epoch and assignment, the lag per partition.
func testConsoleGroupTypesBrowser(t *testing.T, httpAddr string) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+httpAddr+"/ui/")); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	// read moves to hash, waits for sel in that route's content and
	// evaluates js into out.
	read := func(hash, sel, js string, out any) {
		t.Helper()
		q, err := json.Marshal(hash)
		if err != nil {
			t.Fatal(err)
		}
		setHash := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[json.RawMessage]("location.hash = "+string(q))(ctx, tg)
			return err
		})
		if err := chromedp.Do(ctx, setHash, chromedp.WaitVisible(chromedp.CSS(`main[data-route="`+hash+`"] `+sel))); err != nil {
			t.Fatalf("page %s: waiting for %s: %v", hash, sel, err)
		}
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("evaluate %s: %v in %s", js, err, raw)
		}
	}
	var listed [][]string
	read("#/groups", "#groups tbody tr", `[...document.querySelectorAll('#groups tbody tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[2].textContent])`, &listed)
	if got, want := fmt.Sprint(listed), fmt.Sprint([][]string{{gtConsumer, "consumer", "Stable"}, {gtClassic, "classic", "Empty"}, {gtShare, "share", "Stable"}}); got != want {
		t.Fatalf("groups page %s, want %s", got, want)
	}
	for _, c := range []struct{ group, typ, lag string }{
		{gtConsumer, "consumer", "[[gt-topic 0 4 9 5] [gt-topic 1 1 4 3]] 8"},
		{gtShare, "share", "[[gt-topic 0 6 9 3] [gt-topic 1 4 4 0]] 3"},
	} {
		var gp struct {
			Type    string     `json:"type"`
			Members [][]string `json:"members"`
			Lag     [][]string `json:"lag"`
			Total   string     `json:"total"`
		}
		read("#/groups/"+c.group, "#lag tbody tr", `({
			type: document.getElementById('group-type').textContent,
			members: [...document.querySelectorAll('#members tbody tr')].map(r => [r.querySelector('.epoch').textContent, r.querySelector('.assigned').textContent]),
			lag: [...document.querySelectorAll('#lag tbody tr')].map(r => [...r.cells].slice(0, 5).map(c => c.textContent)),
			total: document.getElementById('total-lag').textContent})`, &gp)
		if gp.Type != c.typ || fmt.Sprint(gp.Members) != "[[1 gt-topic: 0, 1]]" || fmt.Sprint(gp.Lag)+" "+gp.Total != c.lag {
			t.Errorf("group page %s: %+v, want type %s, member [1 gt-topic: 0, 1], lag %s", c.group, gp, c.typ, c.lag)
		}
	}
}
