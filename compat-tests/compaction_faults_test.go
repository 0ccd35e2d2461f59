package compat

import (
	"context"
	"encoding/json"
	"errors"
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
	createClusterTopic(t, c, adm, topic, cfgs)
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

// writeVersions writes versions [from, to) of keys k000..k199 (1 KiB
// values "kNNN-vVV-…", CreateTime ts) to partition 0 of topic, waiting
// for a roll after each version, then the sentinel "zz-sentinel-<to>"
// (value "end", a key of its own: a later cleaning may not reach the
// next one) and a roll after it; it records every record in want (key → last record) and
// returns the sentinel's offset and the offset of each key's record of
// the last version.
func writeVersions(t *testing.T, seeds []string, topic string, sealedEnd func() int64, from, to int, ts time.Time, want map[string]compactRec) (int64, map[string]int64) {
	t.Helper()
	cl := newClusterClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(64<<10))
	defer cl.Close()
	pad := strings.Repeat("x", 1000)
	ctx := ctxTimeout(t, 120*time.Second)
	last := map[string]int64{}
	sealedPast := func(what string, off int64) {
		waitFor(t, 15*time.Second, "a roll after "+what, func() (bool, string) {
			end := sealedEnd()
			return end > off, fmt.Sprintf("sealed up to %d, %s ends at %d", end, what, off)
		})
	}
	for v := from; v < to; v++ {
		recs := make([]*kgo.Record, 0, compactKeys)
		for k := range compactKeys {
			recs = append(recs, &kgo.Record{Partition: 0, Timestamp: ts, Key: fmt.Appendf(nil, "k%03d", k), Value: fmt.Appendf(nil, "k%03d-v%02d-%s", k, v, pad)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce version %d: %v", v, err)
		}
		for _, r := range recs {
			want[string(r.Key)] = compactRec{r.Offset, string(r.Value)}
			last[string(r.Key)] = r.Offset
		}
		sealedPast(fmt.Sprintf("version %d", v), recs[len(recs)-1].Offset)
	}
	end := &kgo.Record{Partition: 0, Timestamp: ts, Key: fmt.Appendf(nil, "zz-sentinel-%d", to), Value: []byte("end")}
	if err := cl.ProduceSync(ctx, end).FirstErr(); err != nil {
		t.Fatalf("produce the sentinel: %v", err)
	}
	want[string(end.Key)] = compactRec{end.Offset, "end"}
	sealedPast("the sentinel", end.Offset)
	return end.Offset, last
}

// startOffset is topic/0's log start offset (kadm ListStartOffsets).
func startOffset(t *testing.T, adm *kadm.Client, topic string) (int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return -1, err
	}
	o, ok := lo.Lookup(topic, 0)
	if !ok {
		return -1, fmt.Errorf("no start offset of %s/0", topic)
	}
	return o.Offset, o.Err
}

// above is want without the records below offset from.
func above(want map[string]compactRec, from int64) map[string]compactRec {
	out := map[string]compactRec{}
	for k, r := range want {
		if r.off >= from {
			out[k] = r
		}
	}
	return out
}

// waitCleanedFrom polls until a fresh consumer reading from offset from
// gets exactly want (up to sentinel).
func waitCleanedFrom(t *testing.T, seeds []string, topic string, from int64, want map[string]compactRec, sentinel int64) {
	t.Helper()
	waitFor(t, compactWait, fmt.Sprintf("a fresh consumer from %d reads exactly the last value of every key", from), func() (bool, string) {
		got, _, err := readCompactedFrom(t, seeds, topic, from, sentinel)
		if err != nil {
			return false, err.Error()
		}
		return maps.Equal(got, want), diffCompacted(got, want)
	})
}

// waitCommitted waits until the chain (via node via) holds a committed
// cleaning of generation > after that reaches end (its UpTo ≥ end); it
// returns it.
func waitCommitted(t *testing.T, c *cluster, via int32, topic string, after int32, end int64) dumpClean {
	t.Helper()
	var d dumpClean
	waitFor(t, compactWait, fmt.Sprintf("a cleaning above generation %d committed up to %d", after, end), func() (bool, string) {
		var ok bool
		if d, ok = c.cleanVia(t, via, topic); !ok {
			return false, "no metadata"
		}
		if d.Cleaned == nil || d.Cleaned.Generation <= after || d.Cleaned.UpTo < end {
			return false, fmt.Sprintf("committed %+v, in flight %v", d.Cleaned, d.Clean != nil)
		}
		return true, ""
	})
	return d
}

// TestCompactionRetentionAndDeleteRecords: 3 nodes RF=3, a
// `compact,delete` topic with retention.ms 10 minutes (retention checked
// every 200 ms) and cleaning held back by min.compaction.lag.ms one hour.
// Versions 0-4 of 200 keys are written with CreateTime one hour ago,
// versions 5-9 now: retention removes exactly the old versions' files
// (the log start moves to the old sentinel or the first record of
// version 5). Then cleaning
// runs above the log start: a fresh consumer reads exactly version 9 of
// every key; the replicas are byte-identical. DeleteRecords to the
// offset of k100's version 9 moves the log start exactly there and
// consumers read exactly k100..k199 and the sentinel; the next cleaning
// starts there (inside its first segment), commits on the three nodes
// with a higher generation, and a consumer reads exactly version 10 of
// every key.
func TestCompactionRetentionAndDeleteRecords(t *testing.T) {
	const topic = "compactdel"
	quick := []startOpt{withFlag("storage-retention-check-interval", "200ms")}
	c, adm := startCompactCluster(t, 3, topic, "compaction: retention and DeleteRecords on compact,delete; cleaning goes on above the log start",
		map[int32][]startOpt{1: quick, 2: quick, 3: quick},
		map[string]*string{"cleanup.policy": strp("compact,delete"), "retention.ms": strp("600000"), "min.compaction.lag.ms": strp("3600000")})
	seeds := c.kafkaAddrs(c.ids()...)
	sealed := func() int64 { return sealedEndVia(t, c, c.ids()[0], topic) }
	want := map[string]compactRec{}
	old := time.Now().Add(-time.Hour)
	oldSentinel, last := writeVersions(t, seeds, topic, sealed, 0, 5, old, want)
	oldEnd := last["k199"] + 1 // the end of version 4
	sentinel, _ := writeVersions(t, seeds, topic, sealed, 5, 10, time.Now(), want)

	// Retention: every file of versions 0-4 goes; the old sentinel, in a
	// segment of its own, goes too unless a node's file holding it also
	// holds version 5 (local files need not end where chain segments do).
	var first int64
	waitFor(t, 30*time.Second, fmt.Sprintf("retention moves the log start to %d or %d", oldEnd, oldSentinel+1), func() (bool, string) {
		var err error
		first, err = startOffset(t, adm, topic)
		return err == nil && first >= oldEnd, fmt.Sprintf("log start %d (%v)", first, err)
	})
	if first != oldSentinel && first != oldSentinel+1 {
		t.Fatalf("retention moved the log start to %d: want %d (the old sentinel) or %d (version 5)", first, oldSentinel, oldSentinel+1)
	}
	if d, ok := c.cleanVia(t, c.ids()[0], topic); !ok || d.CleanGen != 0 {
		t.Fatalf("a cleaning was proposed under min.compaction.lag.ms one hour: %+v", d)
	}
	alterTopic(t, adm, topic, "min.compaction.lag.ms", "0")
	d := waitCommitted(t, c, c.ids()[0], topic, 0, sentinel)
	if d.Cleaned.Start != first {
		t.Fatalf("the cleaning starts at %d, want the log start %d", d.Cleaned.Start, first)
	}
	waitCleanedFrom(t, seeds, topic, 0, above(want, first), sentinel)
	upTo, sum := waitIdentical(t, c, c.ids(), c.ids()[0], topic, sentinel+1, 30*time.Second)
	t.Logf("measure: retention to %d, generation %d committed, nodes identical below %d (%s)", first, d.Cleaned.Generation, upTo, sum)
	if lso, err := startOffset(t, adm, topic); err != nil || lso != first {
		t.Fatalf("log start %d (%v) after cleaning, want %d", lso, err, first)
	}

	// DeleteRecords to the middle of the last cleaned segment.
	to := want["k100"].off
	resp, err := adm.DeleteRecords(ctxTimeout(t, 30*time.Second), kadm.Offsets{topic: {0: {At: to}}})
	if err == nil {
		r, ok := resp.Lookup(topic, 0)
		switch {
		case !ok:
			err = errors.New("no answer for the partition")
		case r.Err != nil:
			err = r.Err
		case r.LowWatermark != to:
			err = fmt.Errorf("low watermark %d", r.LowWatermark)
		}
	}
	if err != nil {
		t.Fatalf("DeleteRecords %s/0 to %d: %v", topic, to, err)
	}
	if lso, err := startOffset(t, adm, topic); err != nil || lso != to {
		t.Fatalf("log start %d (%v) after DeleteRecords, want %d", lso, err, to)
	}
	survivors := above(want, to)
	if len(survivors) != 101 {
		t.Fatalf("%d records at or above %d, want k100..k199 and the sentinel", len(survivors), to)
	}
	waitCleanedFrom(t, seeds, topic, 0, survivors, sentinel)
	for _, id := range c.ids() {
		got, _, err := readCompactedFrom(t, []string{c.node(id).Kafka}, topic, 0, sentinel, kgo.Rack(fmt.Sprintf("r%d", id)))
		if err != nil || !maps.Equal(got, survivors) {
			d, _ := c.cleanVia(t, c.ids()[0], topic)
			t.Logf("segments %+v", d.Segments)
			for _, n := range c.ids() {
				for _, off := range []int64{0, to} {
					r, ferr := rawFetch(t, newRawClient(t, c.node(n).Kafka), 11, topic, off, fmt.Sprintf("r%d", id))
					t.Logf("raw fetch (rack r%d) from node %d at %d: %s, %d bytes, log start %d, hw %d, preferred %d, %v", id, n, off, errName(r.ErrorCode), len(r.RecordBatches), r.LogStartOffset, r.HighWatermark, r.PreferredReadReplica, ferr)
				}
			}
			t.Fatalf("consumer in rack r%d after DeleteRecords: %v: %s", id, err, diffCompacted(got, survivors))
		}
	}

	// Cleaning goes on: version 10, a new generation starting at the log
	// start inside its first segment.
	gen := d.Cleaned.Generation
	// (The sentinel's own segment, a few bytes, is too small a dirty share
	// to be cleaned again.)
	sentinel, _ = writeVersions(t, seeds, topic, sealed, 10, 11, time.Now(), want)
	d = waitCommitted(t, c, c.ids()[0], topic, gen, sentinel)
	if d.Cleaned.Start != to {
		t.Fatalf("the cleaning after DeleteRecords starts at %d, want the log start %d", d.Cleaned.Start, to)
	}
	waitCleanedFrom(t, seeds, topic, 0, above(want, to), sentinel)
	if n := len(above(want, to)); n != compactKeys+2 {
		t.Fatalf("%d records expected after version 10, want %d (every key and two sentinels)", n, compactKeys+2)
	}
	upTo, sum = waitIdentical(t, c, c.ids(), c.ids()[0], topic, sentinel, 30*time.Second)
	for _, s := range d.Segments {
		if s.State == "sealed" && s.End > to && s.End <= d.Cleaned.UpTo && s.Generation != d.Cleaned.Generation && s.End > s.Base {
			t.Fatalf("segment %d [%d, %d) at generation %d, want %d", s.ID, s.Base, s.End, s.Generation, d.Cleaned.Generation)
		}
	}
	t.Logf("measure: after DeleteRecords to %d, generation %d committed from %d; nodes identical below %d (%s)", to, d.Cleaned.Generation, d.Cleaned.Start, upTo, sum)
}

// TestCompactionLearnerDuringCommit: 4 nodes, RF=3, replica.restore 2 s;
// the spare node copies partitions at storage.background-io-rate
// 512 KiB/s and the cleaners run at 2 MiB/s, so a copy of the ~4 MiB
// workload and a cleaning both take seconds. The workload is written
// uncompressed with cleaning held back (min.compaction.lag.ms one hour);
// then a follower is killed with SIGKILL and the lag set to 0: the
// survivors clean while the spare node, assigned as a learner, copies the
// partition. Once the learner is taken into the replica set (records
// make the active segment roll), every sealed segment lists it, the three
// live logs are byte-identical below the committed cleaning's end, a
// fresh consumer reads exactly the last value of every key, and a
// consumer in the new node's rack reads exactly the cleaned records, part
// of them from it.
//
// The learner copies part of the range before the commit and part after,
// so its redo of the committed cleaning over that mix does not match: it
// then re-copies the committed range from the leader (the learner's
// redone_total counts it; docs/compaction.md, "Crash and disagreement
// cases").
func TestCompactionLearnerDuringCommit(t *testing.T) {
	const topic = "compactlearn"
	restore := scaled(t, 2*time.Second)
	t.Setenv("TUSK_REPLICA_RESTORE", restore.String())
	flags := []startOpt{withFlag("cleaner-io-rate", strconv.Itoa(2<<20)), withFlag("storage-background-io-rate", strconv.Itoa(512<<10))}
	c, adm := startCompactCluster(t, 4, topic, "compaction: a learner copies the partition while a generation commits; it ends identical",
		map[int32][]startOpt{1: flags, 2: flags, 3: flags, 4: flags}, map[string]*string{"min.compaction.lag.ms": strp("3600000")})
	seeds := c.kafkaAddrs(c.ids()...)
	want, sentinel, _ := writeCompactWorkload(t, seeds, topic, func() int64 { return sealedEndVia(t, c, c.ids()[0], topic) },
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	d, ok := c.cleanVia(t, c.ids()[0], topic)
	if !ok || d.CleanGen != 0 {
		t.Fatalf("a cleaning was proposed under min.compaction.lag.ms one hour: %+v", d)
	}
	a := d.active()
	var victim, spare int32 = -1, -1
	for _, id := range c.ids() {
		switch {
		case !slices.Contains(a.Replicas, id):
			spare = id
		case id != a.Leader && victim < 0:
			victim = id
		}
	}
	if victim < 0 || spare < 0 || len(a.Replicas) != 3 {
		t.Fatalf("active segment %+v: want 3 replicas of 4 nodes", a)
	}
	c.node(victim).Kill9(t)
	killed := time.Now()
	var live []int32
	for _, id := range c.ids() {
		if id != victim {
			live = append(live, id)
		}
	}
	alterTopic(t, adm, topic, "min.compaction.lag.ms", "0")
	t.Logf("killed node %d (replicas %v, leader %d); spare node %d", victim, a.Replicas, a.Leader, spare)

	// The spare learns while the survivors clean; note which came first.
	var learning, committed time.Duration
	waitFor(t, compactWait, fmt.Sprintf("node %d assigned as a learner and a committed cleaning over the workload", spare), func() (bool, string) {
		d, ok := c.cleanVia(t, live[0], topic)
		if !ok {
			return false, "no metadata"
		}
		if learning == 0 && slices.Contains(d.active().Learners, spare) {
			learning = time.Since(killed)
		}
		if committed == 0 && d.committedUpTo() > sentinel {
			committed = time.Since(killed)
		}
		return learning > 0 && committed > 0, fmt.Sprintf("active %+v, committed %+v, in flight %v", d.active(), d.Cleaned, d.Clean != nil)
	})
	t.Logf("measure: learner assigned %v and generation committed %v after the kill", learning.Round(10*time.Millisecond), committed.Round(10*time.Millisecond))
	sentinel = produceUntil(t, c.kafkaAddrs(live...), topic, "after", want, 60*time.Second, fmt.Sprintf("node %d in the active replica set", spare), func() (bool, string) {
		d, ok := c.cleanVia(t, live[0], topic)
		a := d.active()
		return ok && slices.Contains(a.Replicas, spare) && !slices.Contains(a.Replicas, victim), fmt.Sprintf("active segment %d: replicas %v learners %v", a.ID, a.Replicas, a.Learners)
	})
	t.Logf("measure: node %d taken in %v after the kill", spare, time.Since(killed).Round(10*time.Millisecond))
	d, _ = c.cleanVia(t, live[0], topic)
	for _, s := range d.Segments[:len(d.Segments)-1] {
		if s.End > s.Base && (!slices.Contains(s.Replicas, spare) || slices.Contains(s.Replicas, victim)) {
			var all []string
			for _, s := range d.Segments {
				all = append(all, fmt.Sprintf("%d[%d,%d) %v gen %d %s", s.ID, s.Base, s.End, s.Replicas, s.Generation, s.State))
			}
			t.Errorf("sealed segment %d [%d, %d) replicas %v: want %d in, %d out; chain: %s", s.ID, s.Base, s.End, s.Replicas, spare, victim, strings.Join(all, "; "))
		}
	}
	upTo, sum := waitIdentical(t, c, live, live[0], topic, d.committedUpTo(), compactWait)
	t.Logf("measure: nodes %v identical below %d (%s) %v after the kill", live, upTo, sum, time.Since(killed).Round(10*time.Millisecond))
	t.Logf("measure: the learner's cleaner: %s", cleanerCounters(c.node(spare)))
	waitCompacted(t, c.kafkaAddrs(live...), topic, want, sentinel)
	checkSealedReadsFrom(t, c, c.kafkaAddrs(live...), topic, spare, want, sentinel)
}
