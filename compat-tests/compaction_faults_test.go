package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Compaction under faults and through a partition's lifecycle
// (docs/compaction.md, "The protocol"): a participant killed in the
// middle of a cleaning, retention and DeleteRecords on compacted
// topics, a learner copying a partition while a generation commits, and
// sealed reads of cleaned segments from replicas that do not lead.

// dumpClean is a partition's compaction state as `tusk cluster dump`
// prints it (metadata.Partition's clean, cleaned and clean_gen).
type dumpClean struct {
	Segments []struct {
		dumpSegment
		Checksum uint32 `json:"checksum"`
		Bytes    int64  `json:"bytes"`
	} `json:"segments"`
	Clean *struct {
		Generation   int32                      `json:"generation"`
		Participants []int32                    `json:"participants"`
		Reports      map[string]json.RawMessage `json:"reports"`
	} `json:"clean"`
	Cleaned *struct {
		Generation int32 `json:"generation"`
		Start      int64 `json:"start"`
		UpTo       int64 `json:"up_to"`
	} `json:"cleaned"`
	CleanGen int32 `json:"clean_gen"`
}

// reported reports whether node id's report of the cleaning in flight is
// in.
func (d dumpClean) reported(id int32) bool {
	_, ok := d.Clean.Reports[strconv.Itoa(int(id))]
	return ok
}

// active is the partition's active segment.
func (d dumpClean) active() dumpSegment {
	if len(d.Segments) == 0 {
		return dumpSegment{}
	}
	return d.Segments[len(d.Segments)-1].dumpSegment
}

// committedUpTo is the end of the last committed cleaning (0: none).
func (d dumpClean) committedUpTo() int64 {
	if d.Cleaned == nil {
		return 0
	}
	return d.Cleaned.UpTo
}

// cleanVia returns topic/0's compaction state as node via's metadata has
// it (ok false when via cannot answer).
func (c *cluster) cleanVia(t *testing.T, via int32, topic string) (dumpClean, bool) {
	t.Helper()
	_, raw, err := c.dump(t, via)
	if err != nil {
		return dumpClean{}, false
	}
	var d struct {
		Topics map[string]struct {
			Parts []dumpClean `json:"parts"`
		} `json:"topics"`
	}
	if json.Unmarshal([]byte(raw), &d) != nil || len(d.Topics[topic].Parts) == 0 {
		return dumpClean{}, false
	}
	return d.Topics[topic].Parts[0], true
}

// cleanedFiles lists the cleaner's output files (*.cleaned, a rewrite not
// swapped in) under a node's data dir.
func cleanedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed under the walk
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".cleaned") {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// alterTopic sets topic configs through IncrementalAlterConfigs.
func alterTopic(t *testing.T, adm *kadm.Client, topic string, kv ...string) {
	t.Helper()
	var cfgs []kadm.AlterConfig
	for i := 0; i+1 < len(kv); i += 2 {
		cfgs = append(cfgs, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[i], Value: strp(kv[i+1])})
	}
	resp, err := adm.AlterTopicConfigs(ctxTimeout(t, 30*time.Second), cfgs, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("alter %s %v: %v", topic, kv, err)
	}
}

// readCompactedFrom is readCompacted from offset from, with extra
// consumer options, also returning the record bytes each node served.
func readCompactedFrom(t *testing.T, seeds []string, topic string, from, sentinel int64, opts ...kgo.Opt) (map[string]compactRec, map[int32]int, error) {
	t.Helper()
	seen := &servedBy{}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}),
		kgo.FetchMaxWait(200 * time.Millisecond), kgo.WithHooks(seen)}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]compactRec{}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return got, seen.get(), fmt.Errorf("sentinel at %d not reached: %w", sentinel, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return got, seen.get(), ferr
		}
		done := false
		var dup error
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset > sentinel {
				return
			}
			if _, ok := got[string(r.Key)]; ok && dup == nil {
				dup = fmt.Errorf("key %s read twice (offset %d)", r.Key, r.Offset)
			}
			got[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
			done = done || r.Offset == sentinel
		})
		if dup != nil {
			return got, seen.get(), dup
		}
		if done {
			return got, seen.get(), nil
		}
	}
}

// diffCompacted describes how got differs from want.
func diffCompacted(got, want map[string]compactRec) string {
	var extra, missing []string
	for k, r := range got {
		if w, ok := want[k]; !ok || w != r {
			extra = append(extra, fmt.Sprintf("%s@%d", k, r.off))
		}
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			missing = append(missing, fmt.Sprintf("%s@%d", k, w.off))
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	return fmt.Sprintf("%d records read, %d wanted: unexpected %v, missing %v", len(got), len(want), head(extra, 5), head(missing, 5))
}

// checkSealedReadsFrom has a consumer in node follower's rack (a replica
// that does not lead the active segment; the nodes run with --rack rN)
// read the partition from the start: the leader sends its sealed fetches
// to follower (KIP-392), which must serve exactly the cleaned records.
func checkSealedReadsFrom(t *testing.T, c *cluster, seeds []string, topic string, follower int32, want map[string]compactRec, sentinel int64) {
	t.Helper()
	got, by, err := readCompactedFrom(t, seeds, topic, 0, sentinel, kgo.Rack(fmt.Sprintf("r%d", follower)))
	if err != nil {
		t.Fatalf("consumer in rack r%d: %v", follower, err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("consumer in rack r%d: %s", follower, diffCompacted(got, want))
	}
	if by[follower] == 0 {
		t.Fatalf("consumer in rack r%d: no record bytes came from node %d (bytes per node %v)", follower, follower, by)
	}
	t.Logf("measure: rack r%d consumer read exactly %d records; bytes per node %v", follower, len(got), by)
}

// startCompactCluster starts size nodes in racks r1..rN with the fault
// timings, the cleaner checking every 200 ms and extra flags, and
// creates an RF=3 compacted topic with compactTopicConfigs plus configs.
func startCompactCluster(t *testing.T, size int, topic, scenario string, flags map[int32][]startOpt, configs map[string]*string) (*cluster, *kadm.Client) {
	t.Helper()
	skipClusterInKfakeMode(t)
	ft := setFaultTimings(t)
	done := cardSetup(t, fmt.Sprintf("tusk %d-node cluster in racks, lease %v, cleaner.backoff 200ms", size, ft.lease))
	c := startClusterWith(t, size, func(id int32) []startOpt {
		return append([]startOpt{withFlag("rack", fmt.Sprintf("r%d", id)), withFlag("cleaner-backoff", "200ms")}, flags[id]...)
	})
	done()
	card(t, "franz-go kgo + kadm + tusk cluster", scenario)
	adm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(c.ids()...)))
	cfgs := compactTopicConfigs()
	maps.Copy(cfgs, configs)
	resp, err := adm.CreateTopic(ctxTimeout(t, 30*time.Second), 1, 3, cfgs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	for _, id := range c.ids() {
		c.waitTopicsOn(t, id, map[string]int{topic: 1}, 10*time.Second)
	}
	return c, adm
}

// sealedEndVia is the end of topic/0's last sealed segment as node via
// sees it (merges of cleaned segments make counting segments useless).
func sealedEndVia(t *testing.T, c *cluster, via int32, topic string) int64 {
	end := int64(-1)
	for _, s := range c.segmentsVia(t, via, topic, 0) {
		if s.State == "sealed" {
			end = max(end, s.End)
		}
	}
	return end
}

// produceUntil produces one record with a fresh key at a time
// ("<tag>-NNNN"), at least one, until cond holds, adding each to want; it
// returns the last record's offset. The records make the active segment roll
// (segment.ms), which is what takes a caught-up learner in.
func produceUntil(t *testing.T, seeds []string, topic, tag string, want map[string]compactRec, timeout time.Duration, what string, cond func() (bool, string)) int64 {
	t.Helper()
	cl := newClusterClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	last := int64(-1)
	i := 0
	waitFor(t, timeout, what, func() (bool, string) {
		if i > 0 {
			if ok, desc := cond(); ok {
				return true, desc
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r := &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "%s-%04d", tag, i), Value: []byte("after")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return false, fmt.Sprintf("produce %s: %v", r.Key, err)
		}
		i++
		want[string(r.Key)] = compactRec{r.Offset, "after"}
		last = r.Offset
		time.Sleep(100 * time.Millisecond) // pace: a record per roll check, not a flood
		return false, "produced " + string(r.Key)
	})
	return last
}

// waitIdentical waits until the nodes' logs are byte-identical below the
// end of the last committed cleaning, which must reach at least min; it
// returns that end and the checksum.
func waitIdentical(t *testing.T, c *cluster, ids []int32, via int32, topic string, min int64, timeout time.Duration) (int64, string) {
	t.Helper()
	var upTo int64
	var sums []string
	waitFor(t, timeout, fmt.Sprintf("nodes %v byte-identical over the cleaned range", ids), func() (bool, string) {
		d, ok := c.cleanVia(t, via, topic)
		if !ok {
			return false, "no metadata"
		}
		upTo = d.committedUpTo()
		if upTo < min {
			return false, fmt.Sprintf("cleaned up to %d, want ≥ %d", upTo, min)
		}
		sums = sums[:0]
		for _, id := range ids {
			sums = append(sums, c.logChecksum(t, id, topic, 0, upTo))
		}
		for _, s := range sums[1:] {
			if s != sums[0] {
				return false, fmt.Sprintf("below %d: %v", upTo, sums)
			}
		}
		return true, ""
	})
	return upTo, sums[0]
}

// TestCompactionKillParticipant: 3 nodes RF=3, every node's cleaner
// paced at 1 MiB/s. The workload is written with min.compaction.lag.ms
// one hour (nothing cleanable), then the lag is set to 0: one cleaning
// over ~4 MiB that takes seconds. Once the chain shows it in flight and a
// participant that does not lead has written cleaner output (*.cleaned
// files) but not reported, that participant is killed with SIGKILL. The
// others commit a generation; the victim restarts (recovery removes its
// output), rejoins, redoes the committed cleaning and ends byte-identical
// to the others, with no *.cleaned file left; a fresh consumer reads
// exactly the last value of every key, and a consumer in the victim's
// rack reads the cleaned sealed range from the victim.
func TestCompactionKillParticipant(t *testing.T) {
	const topic = "compactkill"
	slow := []startOpt{withFlag("cleaner-io-rate", strconv.Itoa(1<<20))}
	c, adm := startCompactCluster(t, 3, topic, "compaction: kill -9 a participant mid-cleaning; it rejoins byte-identical",
		map[int32][]startOpt{1: slow, 2: slow, 3: slow}, map[string]*string{"min.compaction.lag.ms": strp("3600000")})
	seeds := c.kafkaAddrs(c.ids()...)
	want, sentinel, _ := writeCompactWorkload(t, seeds, topic, func() int64 { return sealedEndVia(t, c, c.ids()[0], topic) },
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if d, ok := c.cleanVia(t, c.ids()[0], topic); !ok || d.CleanGen != 0 {
		t.Fatalf("a cleaning was proposed under min.compaction.lag.ms one hour: %+v", d)
	}
	alterTopic(t, adm, topic, "min.compaction.lag.ms", "0")

	// A cleaning in flight, a non-leading participant with output on
	// disk and no report yet.
	var victim int32 = -1
	var gen int32
	var files []string
	waitFor(t, 60*time.Second, "a cleaning in flight with a non-leading participant's output on disk", func() (bool, string) {
		d, ok := c.cleanVia(t, c.ids()[0], topic)
		if !ok || d.Clean == nil {
			return false, "no cleaning in flight"
		}
		leader := d.active().Leader
		for _, p := range d.Clean.Participants {
			if p == leader || d.reported(p) {
				continue
			}
			if files = cleanedFiles(t, c.node(p).DataDir); len(files) > 0 {
				victim, gen = p, d.Clean.Generation
				return true, ""
			}
		}
		return false, fmt.Sprintf("generation %d, participants %v, leader %d, reports %d", d.Clean.Generation, d.Clean.Participants, leader, len(d.Clean.Reports))
	})
	c.node(victim).Kill9(t)
	killed := time.Now()
	var live []int32
	for _, id := range c.ids() {
		if id != victim {
			live = append(live, id)
		}
	}
	// Its report never came: the in-flight cleaning at the kill could
	// not have committed with the victim's output.
	if d, ok := c.cleanVia(t, live[0], topic); ok && d.Clean != nil && d.Clean.Generation == gen && d.reported(victim) {
		t.Fatalf("node %d reported generation %d after all", victim, gen)
	}
	t.Logf("killed node %d during generation %d with %d output files on disk: %v", victim, gen, len(files), head(files, 3))
	if left := cleanedFiles(t, c.node(victim).DataDir); len(left) == 0 {
		t.Fatalf("node %d's output vanished before it was killed", victim)
	}

	// The survivors commit a generation covering the whole workload.
	var committed int32
	waitFor(t, compactWait, "the survivors commit a cleaning over the workload", func() (bool, string) {
		d, ok := c.cleanVia(t, live[0], topic)
		if !ok {
			return false, "no metadata"
		}
		if d.committedUpTo() <= sentinel {
			return false, fmt.Sprintf("committed up to %d (generation %d), clean in flight %v", d.committedUpTo(), d.CleanGen, d.Clean != nil)
		}
		committed = d.Cleaned.Generation
		for _, s := range d.Segments {
			if s.State == "sealed" && s.End > s.Base && s.End <= d.Cleaned.UpTo && s.Base >= d.Cleaned.Start && s.Generation != committed {
				return false, fmt.Sprintf("segment %d [%d, %d) at generation %d, want %d", s.ID, s.Base, s.End, s.Generation, committed)
			}
		}
		return true, ""
	})
	t.Logf("measure: generation %d committed by nodes %v %v after the kill", committed, live, time.Since(killed).Round(10*time.Millisecond))
	waitCompacted(t, c.kafkaAddrs(live...), topic, want, sentinel)

	// The victim comes back, is taken into the replica set again (records
	// make the active segment roll) and redoes the committed cleaning.
	c.restartNode(t, victim)
	seeds = c.kafkaAddrs(c.ids()...)
	workloadEnd := sentinel + 1
	sentinel = produceUntil(t, seeds, topic, "after", want, 60*time.Second, fmt.Sprintf("node %d back in the active replica set", victim), func() (bool, string) {
		d, ok := c.cleanVia(t, live[0], topic)
		a := d.active()
		return ok && slices.Contains(a.Replicas, victim), fmt.Sprintf("active segment %d: replicas %v learners %v", a.ID, a.Replicas, a.Learners)
	})
	upTo, sum := waitIdentical(t, c, c.ids(), live[0], topic, workloadEnd, compactWait)
	t.Logf("measure: nodes %v identical below %d (%s) %v after the kill", c.ids(), upTo, sum, time.Since(killed).Round(10*time.Millisecond))
	waitFor(t, 30*time.Second, fmt.Sprintf("no *.cleaned file left on node %d", victim), func() (bool, string) {
		left := cleanedFiles(t, c.node(victim).DataDir)
		return len(left) == 0, fmt.Sprintf("%v", left)
	})
	waitCompacted(t, seeds, topic, want, sentinel)
	checkSealedReadsFrom(t, c, seeds, topic, victim, want, sentinel)
}
