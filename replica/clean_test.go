package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// compactTopic makes topic "t" compacted and reinstalls the roles.
func (c *cluster) compactTopic() {
	c.t.Helper()
	if err := c.meta.fsm.Apply(metadata.SetTopicConfigs{Name: "t", ID: metadata.TopicID{1}, Configs: map[string]string{"cleanup.policy": "compact"}}); err != nil {
		c.t.Fatal(err)
	}
	c.reconcileAll()
}

// produceKV appends one batch holding one record key=value (value nil:
// a tombstone) under node id's leadership.
func (c *cluster) produceKV(id int32, key string, value []byte) int64 {
	c.t.Helper()
	return c.produceKVTo(id, tp0, key, value)
}

// produceKVTo is produceKV to partition tp.
func (c *cluster) produceKVTo(id int32, tp storage.TopicPartition, key string, value []byte) int64 {
	c.t.Helper()
	lp := c.nodes[id].m.Leader(tp)
	if lp == nil {
		c.t.Fatalf("node %d does not lead %s", id, tp)
	}
	batch := kafkaproto.AppendBatch(nil, 1000, []kafkaproto.KV{{Key: []byte(key), Value: value}})
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		c.t.Fatal(err)
	}
	epoch, release, err := lp.Begin(context.Background())
	if err != nil {
		c.t.Fatalf("node %d: begin: %v", id, err)
	}
	res, err := lp.log.Append(batch, h, epoch)
	if err != nil {
		release(0)
		c.t.Fatalf("node %d: append: %v", id, err)
	}
	release(int64(len(batch)))
	return res.LastOffset
}

// rollOn rolls node id's active segment once every replica holds it.
func (c *cluster) rollOn(id int32) {
	c.t.Helper()
	lp := c.nodes[id].m.Leader(tp0)
	end := lp.log.LogEndOffset()
	c.eventually("followers caught up before the roll", func() bool {
		for n := range c.nodes {
			if l, ok := c.nodes[n].eng.Log(tp0); ok && l.LogEndOffset() < end {
				return false
			}
		}
		return true
	})
	before := len(c.partition().Segments)
	c.nodes[id].m.Roll(lp)
	if len(c.partition().Segments) != before+1 {
		c.t.Fatalf("roll on node %d did not commit", id)
	}
	c.reconcileAll()
}

func (c *cluster) partition() metadata.Partition {
	t, _ := c.meta.fsm.Topic("t")
	return t.Parts[0]
}

type kv struct {
	off   int64
	key   string
	value string
}

// records decodes every record of node id's log.
func (c *cluster) records(id int32) []kv {
	c.t.Helper()
	var d kafkaproto.Decompressor
	defer d.Close()
	var out []kv
	err := kafkaproto.SplitBatches(c.bytesOf(id), func(batch []byte, _ kafkaproto.BatchHeader) error {
		recs, err := d.Records(batch)
		if err != nil {
			return err
		}
		for _, r := range recs {
			v := string(r.Value)
			if r.Value == nil {
				v = "<nil>"
			}
			out = append(out, kv{r.Offset, string(r.Key), v})
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// writeVersions writes keys k0..k4 in rounds v0..v3 (one roll after
// each round), then a tombstone of k4 and one more roll; offsets run
// 0..20 and k4's tombstone is at 20.
func (c *cluster) writeVersions(leader int32) {
	c.t.Helper()
	for v := range 4 {
		for k := range 5 {
			c.produceKV(leader, fmt.Sprintf("k%d", k), fmt.Appendf(nil, "v%d", v))
		}
		c.rollOn(leader)
	}
	c.produceKV(leader, "k4", nil)
	c.rollOn(leader)
}

// wantCleaned is what a consumer reads after the cleaning of
// writeVersions' range: the last version of k0..k3, k4 gone with its
// tombstone (delete.retention.ms 0).
var wantCleaned = []kv{{15, "k0", "v3"}, {16, "k1", "v3"}, {17, "k2", "v3"}, {18, "k3", "v3"}}

// checkCleaned checks node id's log holds exactly wantCleaned, at the
// committed generation, and that every sealed segment's bytes match the
// chain's checksum.
func (c *cluster) checkCleaned(id int32, gen int32) {
	c.t.Helper()
	if got := c.records(id); !slices.Equal(got, wantCleaned) {
		c.t.Fatalf("node %d records after cleaning:\n got %v\nwant %v", id, got, wantCleaned)
	}
	l := c.log(id)
	if l.CleanGeneration() != gen {
		c.t.Fatalf("node %d at generation %d, want %d", id, l.CleanGeneration(), gen)
	}
	for _, s := range c.partition().Segments {
		if s.State != metadata.SegmentSealed || s.EndOffset == s.BaseOffset {
			continue
		}
		crc, n, err := l.SegmentChecksum(s.BaseOffset, s.EndOffset)
		if err != nil || crc != s.Checksum || n != s.Bytes {
			c.t.Fatalf("node %d segment %d [%d, %d): crc %d bytes %d err %v; metadata crc %d bytes %d (generation %d)",
				id, s.ID, s.BaseOffset, s.EndOffset, crc, n, err, s.Checksum, s.Bytes, s.Generation)
		}
	}
}

// TestCleaningCommitsOnEveryReplica: the leader proposes a cleaning of
// the sealed range, all three participants clean, report identical
// checksums, the generation commits and every replica swaps it in: the
// same bytes everywhere, each segment's last batch kept (emptied), and
// only the last value of each key left.
func TestCleaningCommitsOnEveryReplica(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	c.writeVersions(1)
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	cl := c.partition().Clean
	if cl == nil || cl.Generation != 1 || cl.Start != 0 || cl.UpTo != 21 || !slices.Equal(cl.Participants, []int32{1, 2, 3}) {
		t.Fatalf("proposed cleaning %+v", cl)
	}
	c.eventually("generation 1 swapped in on every replica", func() bool {
		c.reconcileAll()
		for id := range c.nodes {
			if c.log(id).CleanGeneration() != 1 {
				return false
			}
		}
		return true
	})
	p := c.partition()
	if p.Clean != nil || p.CommittedGeneration() != 1 {
		t.Fatalf("after the commit: clean %+v cleaned %+v", p.Clean, p.Cleaned)
	}
	for id := range c.nodes {
		c.checkCleaned(id, 1)
	}
	if !c.sameBytes(1, 2) || !c.sameBytes(1, 3) {
		t.Fatal("replicas differ after the cleaning")
	}
	// Every sealed segment keeps a batch ending at its end (its epoch
	// and end never move).
	ends := map[int64]bool{}
	_ = kafkaproto.SplitBatches(c.bytesOf(1), func(_ []byte, h kafkaproto.BatchHeader) error {
		ends[h.LastOffset()+1] = true
		return nil
	})
	for _, s := range p.Segments[:len(p.Segments)-1] {
		if !ends[s.EndOffset] {
			t.Fatalf("no batch ends at segment %d's end %d", s.ID, s.EndOffset)
		}
	}
	// Appends go on above the cleaned range.
	if off := c.produceKV(p.Active().Leader, "k9", []byte("x")); off != 21 {
		t.Fatalf("next offset %d, want 21", off)
	}
	if st := c.nodes[1].m.CleanerStats(); st.Cleanings != 1 || st.BytesOut >= st.BytesIn {
		t.Fatalf("cleaner stats %+v", st)
	}
}

// TestCleaningRedoneByAMissingReplica: a node that was fenced when the
// cleaning was proposed is no participant; two of three commit it, and
// once back the node redoes the committed cleaning over its own bytes and
// swaps in identical bytes.
func TestCleaningRedoneByAMissingReplica(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	c.writeVersions(1)
	if err := c.meta.fsm.Apply(metadata.SetBrokerState{ID: 3, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
		t.Fatal(err)
	}
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if cl := c.partition().Clean; cl == nil || !slices.Equal(cl.Participants, []int32{1, 2}) {
		t.Fatalf("proposed cleaning %+v", cl)
	}
	c.eventually("generation 1 on nodes 1 and 2", func() bool {
		c.nodes[1].reconcile("t")
		c.nodes[2].reconcile("t")
		return c.log(1).CleanGeneration() == 1 && c.log(2).CleanGeneration() == 1
	})
	if c.log(3).CleanGeneration() != 0 || bytes.Equal(c.bytesOf(3), c.bytesOf(1)) {
		t.Fatal("node 3 changed before it came back")
	}
	// Meanwhile the leader merges the cleaned segments into one: node 3
	// checks its redo against the merged segment's checksum.
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if segs := c.partition().Segments; len(segs) != 2 || segs[0].BaseOffset != 0 || segs[0].EndOffset != 21 || len(segs[0].Epochs) != 5 ||
		!slices.Equal(segs[0].Replicas, []int32{1, 2, 3}) {
		t.Fatalf("after the merge: %+v", segs)
	}
	if err := c.meta.fsm.Apply(metadata.SetBrokerState{ID: 3, From: metadata.BrokerFenced, To: metadata.BrokerAlive}); err != nil {
		t.Fatal(err)
	}
	c.eventually("node 3 redid generation 1", func() bool {
		c.nodes[3].reconcile("t")
		return c.log(3).CleanGeneration() == 1
	})
	c.checkCleaned(3, 1)
	if !c.sameBytes(1, 3) {
		t.Fatal("node 3 differs after its redo")
	}
	// The redo counts itself after its swap (the generation seen above)
	// is in.
	c.eventually("node 3 counted one redo", func() bool { return c.nodes[3].m.CleanerStats().Redone == 1 })
	if st := c.nodes[3].m.CleanerStats(); st.Redone != 1 || st.Failed != 0 || st.Cleanings != 0 {
		t.Fatalf("node 3 stats %+v", st)
	}
}

// TestCleaningAbandonedWhenAParticipantIsFenced: a participant fenced
// before it reported makes the leader abandon the generation; nothing is
// swapped in, and the next proposal takes generation 2.
func TestCleaningAbandonedWhenAParticipantIsFenced(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	c.writeVersions(1)
	before := c.bytesOf(1)
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if c.partition().Clean == nil {
		t.Fatal("no cleaning proposed")
	}
	if err := c.meta.fsm.Apply(metadata.SetBrokerState{ID: 3, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
		t.Fatal(err)
	}
	// Nodes 1 and 2 never run it (their reconcile is not called); the
	// leader's next check abandons it.
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if p := c.partition(); p.Clean != nil || p.Cleaned != nil || p.CleanGen != 1 {
		t.Fatalf("after abandoning: %+v", p)
	}
	if !bytes.Equal(c.bytesOf(1), before) {
		t.Fatal("an abandoned cleaning changed the log")
	}
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if cl := c.partition().Clean; cl == nil || cl.Generation != 2 || !slices.Equal(cl.Participants, []int32{1, 2}) {
		t.Fatalf("next proposal %+v", cl)
	}
}

// TestMergeAfterCleaning: once a generation committed, the leader merges
// the cleaned sealed segments (their bytes fit segment.bytes) into one
// whose checksum every replica's bytes match, with the epochs of all of
// them; a second check finds nothing more to merge.
func TestMergeAfterCleaning(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	c.writeVersions(1)
	before := c.partition().Segments
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	c.eventually("generation 1 on every replica", func() bool {
		c.reconcileAll()
		for id := range c.nodes {
			if c.log(id).CleanGeneration() != 1 {
				return false
			}
		}
		return true
	})
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	segs := c.partition().Segments
	if len(segs) != 2 || segs[0].ID != before[0].ID || segs[0].EndOffset != 21 || segs[0].Generation != 1 || segs[1].ID != before[len(before)-1].ID {
		t.Fatalf("after the merge: %+v", segs)
	}
	var want []metadata.EpochStart
	for _, s := range before[:len(before)-1] {
		want = append(want, metadata.EpochStart{Epoch: s.Epoch, Start: s.BaseOffset, SealedAtMs: s.SealedAtMs})
	}
	if !slices.Equal(segs[0].Epochs, want) || segs[0].Epoch != before[len(before)-2].Epoch {
		t.Fatalf("merged epochs %v (epoch %d), want %v", segs[0].Epochs, segs[0].Epoch, want)
	}
	for id := range c.nodes {
		c.checkCleaned(id, 1)
	}
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if got := c.partition().Segments; len(got) != 2 || got[0].Checksum != segs[0].Checksum {
		t.Fatalf("a second check changed the chain: %+v", got)
	}
}

// TestCleaningNextGenerationAfterAnAbandonedOne: a participant is
// fenced while the others clean generation 1; the leader abandons it and
// proposes generation 2 (the two live nodes) once both have cleaned and
// are reporting, so the reconcile that follows those changes finds them
// busy, and their generation 1 reports are refused. Reconciling, as the broker
// does, only when the partition's metadata changes, the two must still
// drop their generation 1 output, take part in generation 2, commit it
// and swap it in (nothing changes the metadata between the refused
// reports and their generation 2 reports).
func TestCleaningNextGenerationAfterAnAbandonedOne(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	c.writeVersions(1)
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if cl := c.partition().Clean; cl == nil || cl.Generation != 1 {
		t.Fatalf("proposed cleaning %+v", cl)
	}
	var mu sync.Mutex
	seen := "" // the partition's cleaning state nodes 1 and 2 last reconciled
	reconcileOnChange := func() {
		mu.Lock()
		defer mu.Unlock()
		p := c.partition()
		if k := fmt.Sprintf("%+v %+v %d", p.Clean, p.Cleaned, p.CleanGen); k != seen {
			seen = k
			c.nodes[1].reconcile("t")
			c.nodes[2].reconcile("t")
		}
	}
	// The generation 1 reports wait until both nodes have cleaned; then
	// the leader abandons it and proposes generation 2, and the
	// reconcile that change causes finds both busy reporting.
	var arrived atomic.Int32
	both := make(chan struct{})
	c.meta.setHook(func(cmd metadata.Command) error {
		if r, ok := cmd.(metadata.CleanReport); ok && r.Generation == 1 {
			if arrived.Add(1) == 2 {
				if err := c.meta.fsm.Apply(metadata.SetBrokerState{ID: 3, From: metadata.BrokerAlive, To: metadata.BrokerFenced}); err != nil {
					t.Error(err)
				}
				c.nodes[1].m.maybeClean(tp0, c.log(1)) // abandons generation 1
				c.nodes[1].m.maybeClean(tp0, c.log(1)) // proposes generation 2
				reconcileOnChange()
				close(both)
			}
			select {
			case <-both:
			case <-time.After(10 * time.Second):
				return errors.New("test: the other generation 1 report did not come")
			}
		}
		return c.meta.fsm.Apply(cmd)
	})
	reconcileOnChange()
	c.eventually("generation 2 committed and swapped in on nodes 1 and 2", func() bool {
		reconcileOnChange()
		return c.log(1).CleanGeneration() == 2 && c.log(2).CleanGeneration() == 2
	})
	if p := c.partition(); p.Clean != nil || p.CommittedGeneration() != 2 || !slices.Equal(p.Cleaned.Participants, []int32{1, 2}) {
		t.Fatalf("after generation 2: clean %+v cleaned %+v", p.Clean, p.Cleaned)
	}
	c.checkCleaned(1, 2)
	c.checkCleaned(2, 2)
	if !c.sameBytes(1, 2) {
		t.Fatal("nodes 1 and 2 differ")
	}
	for _, id := range []int32{1, 2} {
		if st := c.nodes[id].m.CleanerStats(); st.Abandoned != 1 || st.Cleanings != 1 {
			t.Fatalf("node %d stats %+v, want one abandoned generation and one cleaning", id, st)
		}
	}
}

// txnBatch is AppendBatch's batch for key=value made transactional for
// producer pid (attributes bit 4, producer id, sequence 0, CRC redone).
func txnBatch(pid int64, key, value string) []byte {
	b := kafkaproto.AppendBatch(nil, 1000, []kafkaproto.KV{{Key: []byte(key), Value: []byte(value)}})
	binary.BigEndian.PutUint16(b[21:], binary.BigEndian.Uint16(b[21:])|0x10) // transactional
	binary.BigEndian.PutUint64(b[43:], uint64(pid))                          // producer id
	binary.BigEndian.PutUint16(b[51:], 0)                                    // producer epoch
	binary.BigEndian.PutUint32(b[53:], 0)                                    // base sequence
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// TestCleaningStopsAtTheFirstUnstableOffset: an open transaction in a
// sealed segment bounds the cleanable range: the leader proposes a
// cleaning only of the segments before it.
func TestCleaningStopsAtTheFirstUnstableOffset(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	for v := range 2 {
		for k := range 5 {
			c.produceKV(1, fmt.Sprintf("k%d", k), fmt.Appendf(nil, "v%d", v))
		}
		c.rollOn(1)
	}
	// [10, 11): an open transaction, then a plain record; both sealed.
	lp := c.nodes[1].m.Leader(tp0)
	b := txnBatch(42, "t", "open")
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	epoch, release, err := lp.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.log.Append(b, h, epoch); err != nil {
		t.Fatal(err)
	}
	release(int64(len(b)))
	c.produceKV(1, "k0", []byte("v9"))
	c.rollOn(1)
	if lso := c.log(1).LastStableOffset(); lso != 10 {
		t.Fatalf("last stable offset %d, want 10 (the open transaction's first offset)", lso)
	}
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	cl := c.partition().Clean
	if cl == nil || cl.UpTo != 10 {
		t.Fatalf("proposed cleaning %+v, want one up to 10", cl)
	}
}

// TestFailoverSealGetsChecksum: a segment sealed without a checksum (as a
// failover seals) gets one from the next leader's cleaner check, equal to
// every replica's bytes, and then becomes cleanable.
func TestFailoverSealGetsChecksum(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	for k := range 5 {
		c.produceKV(1, fmt.Sprintf("k%d", k), []byte("v"))
	}
	end := c.log(1).LogEndOffset()
	c.eventually("followers hold every record", func() bool {
		return c.log(2).LogEndOffset() == end && c.log(3).LogEndOffset() == end
	})
	a := c.active()
	if err := c.meta.fsm.Apply(metadata.RollSegment{Topic: "t", ID: metadata.TopicID{1}, Partition: 0, ExpectedSegment: a.ID, ExpectedEpoch: a.Epoch,
		EndOffset: end, NextLeader: 2, NextReplicas: []int32{2, 3, 1}, SealedAtMs: c.clock.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	c.reconcileAll()
	if s := c.partition().Segments[0]; s.Bytes != 0 {
		t.Fatalf("sealed with a checksum already: %+v", s)
	}
	c.nodes[2].m.maybeClean(tp0, c.log(2))
	s := c.partition().Segments[0]
	for id := range c.nodes {
		crc, n, err := c.log(id).SegmentChecksum(s.BaseOffset, s.EndOffset)
		if err != nil || n == 0 || crc != s.Checksum || n != s.Bytes {
			t.Fatalf("node %d: crc %d bytes %d err %v; recorded crc %d bytes %d", id, crc, n, err, s.Checksum, s.Bytes)
		}
	}
	// The new leader's high watermark (so its last stable offset) covers
	// the sealed segment once its followers fetched from it.
	c.produceKV(2, "k9", []byte("w"))
	c.eventually("the new leader's high watermark passes the seal", func() bool { return c.log(2).HighWatermark() > end })
	c.nodes[2].m.maybeClean(tp0, c.log(2))
	if cl := c.partition().Clean; cl == nil || cl.UpTo != end {
		t.Fatalf("no cleaning proposed once the checksum is known: %+v", cl)
	}
}
