package replica

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
	"github.com/tuskdb/tusk/storage/cleaner"
)

// Compaction (docs/compaction.md, "The protocol" and "The driver"). The
// active leader of a compacted partition proposes CleanPartition when
// enough of its sealed range is dirty; every participant runs the cleaner
// over its own verified bytes into files beside the old ones and reports
// the checksums of the result; the FSM commits the generation on a
// majority of identical reports, and each node whose prepared output
// matches the committed checksums swaps it in. A replica that did not
// take part (or whose output differed) redoes the last committed cleaning
// over its own bytes and swaps only a result that matches.

// CompactionConfig is a topic's compaction settings, as the host reads
// them (overrides and broker defaults).
type CompactionConfig struct {
	Compact, Delete   bool
	MinDirtyRatio     float64
	MinLagMs          int64
	MaxLagMs          int64
	DeleteRetentionMs int64
}

// CleanerConfig is the node's cleaner settings (configs' cleaner.*).
type CleanerConfig struct {
	Enable   bool
	Threads  int           // cleanings run at once on this node
	MapBytes int64         // key map memory per cleaning before it spills
	Backoff  time.Duration // between the leader's checks for cleanable partitions
	// Timeout abandons a cleaning whose participants have not all
	// reported this long after it was proposed.
	Timeout time.Duration
	// Budget, if set, paces the cleaner's reads and writes (cleaner.io-rate).
	Budget interface {
		Wait(ctx context.Context, n int) error
	}
	// SpillDir holds the key maps of cleanings that outgrow MapBytes.
	SpillDir string
}

// CleanerStats counts this node's cleaner work (metrics).
type CleanerStats struct {
	Cleanings, Redone, Failed, Abandoned int64
	BytesIn, BytesOut                    int64
}

// cleanState is the Manager's cleaner bookkeeping.
type cleanState struct {
	sem chan struct{} // Threads slots

	mu sync.Mutex
	// running: a cleaning (or redo) of the partition is in progress.
	running map[storage.TopicPartition]bool
	// pending: a participant's prepared output, waiting for the outcome
	// of its generation.
	pending map[storage.TopicPartition]*pendingClean
	// failedRedo: the committed generation whose redo (and re-copy) did
	// not match here, retried after redoRetry; until then the segments
	// are not served from this node.
	failedRedo map[storage.TopicPartition]failedRedo
	// joined: the last generation this node took part in, per log.
	// Reconcile may call checkClean with a snapshot of the metadata taken
	// before that generation ended (and its prepared output was settled):
	// it must not take part in it twice.
	joined map[storage.TopicPartition]joinedGen
	stats  CleanerStats
	// bytesIn and bytesOut count as the cleaner reads and writes, so the
	// metrics show a long cleaning's progress (CleanerStats adds them).
	bytesIn, bytesOut atomic.Int64
	// dirty: what the leader last computed per compacted partition it
	// leads.
	dirty map[storage.TopicPartition]DirtyState
}

// DirtyState is a compacted partition's cleanable share and cleaner lag,
// as its leader last computed them.
type DirtyState struct {
	// Ratio is the dirty bytes' share of the cleanable range.
	Ratio float64
	// LagMs is how long ago the oldest dirty sealed segment was sealed
	// (0: nothing dirty).
	LagMs int64
}

// redoRetry is how long after a failed redo (or re-copy) of a committed
// generation the node tries again.
const redoRetry = 5 * time.Second

// failedRedo is a committed generation whose redo failed here, and until
// when the node waits before it tries again.
type failedRedo struct {
	gen   int32
	until time.Time
}

// holds reports whether the failure of generation gen still holds at now.
func (f failedRedo) holds(gen int32, now time.Time) bool { return f.gen == gen && now.Before(f.until) }

// joinedGen is the last generation a node took part in with a log.
type joinedGen struct {
	log *storage.Log
	gen int32
}

// covers reports whether generation gen of log l was joined already.
func (j joinedGen) covers(l *storage.Log, gen int32) bool { return j.log == l && gen <= j.gen }

type pendingClean struct {
	report  metadata.CleanReport
	gen     int32
	rw      *storage.Rewrite
	log     *storage.Log
	results []metadata.SegmentResult
}

func newCleanState(threads int) *cleanState {
	return &cleanState{sem: make(chan struct{}, max(threads, 1)), running: map[storage.TopicPartition]bool{},
		pending: map[storage.TopicPartition]*pendingClean{}, failedRedo: map[storage.TopicPartition]failedRedo{}, joined: map[storage.TopicPartition]joinedGen{},
		dirty: map[storage.TopicPartition]DirtyState{}}
}

// CleanerStats returns the node's cleaner counters.
func (m *Manager) CleanerStats() CleanerStats {
	m.clean.mu.Lock()
	st := m.clean.stats
	m.clean.mu.Unlock()
	st.BytesIn, st.BytesOut = m.clean.bytesIn.Load(), m.clean.bytesOut.Load()
	return st
}

// Dirty returns the dirty state of each compacted partition this node
// leads, as of its last check; partitions it no longer leads are left
// out.
func (m *Manager) Dirty() map[storage.TopicPartition]DirtyState {
	m.clean.mu.Lock()
	defer m.clean.mu.Unlock()
	out := make(map[storage.TopicPartition]DirtyState, len(m.clean.dirty))
	for k, v := range m.clean.dirty {
		if m.Leader(k) == nil {
			delete(m.clean.dirty, k)
			continue
		}
		out[k] = v
	}
	return out
}

// compacts reports whether the topic's cleanup.policy includes compact.
func (m *Manager) compacts(topic string) bool {
	c, ok := m.host.Compaction(topic)
	return ok && c.Compact
}

// checkClean is reconcile's step for a partition whose log l this node
// holds as a replica of the active segment: settle a prepared cleaning
// whose generation was decided, take part in one in flight, or redo the
// last committed one. It only starts work; the work runs on its own
// goroutine.
func (m *Manager) checkClean(t metadata.Topic, part metadata.Partition, p int32, l *storage.Log) {
	if !m.cfg.Cleaner.Enable {
		return
	}
	tp := storage.TopicPartition{Topic: t.Name, Partition: p}
	cs := m.clean
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if pc := cs.pending[tp]; pc != nil {
		if cs.running[tp] {
			return // its report is being sent
		}
		if pc.log != l {
			delete(cs.pending, tp)
			cs.running[tp] = true
			m.step(tp, 0, func() { m.abortRewrite(tp, pc, "the log was replaced") })
			return
		}
		switch {
		case part.Cleaned != nil && part.Cleaned.Generation == pc.gen:
			delete(cs.pending, tp)
			cs.running[tp] = true
			m.step(tp, 0, func() { m.settle(tp, t, part, pc) })
		case part.Clean == nil || part.Clean.Generation != pc.gen:
			// Abandoned: drop the output, then (step's recheck) take
			// part in the generation that may already be in flight.
			delete(cs.pending, tp)
			cs.stats.Abandoned++
			cs.running[tp] = true
			m.step(tp, 0, func() { m.abortRewrite(tp, pc, "the generation was abandoned") })
		default:
			if _, reported := part.Clean.Reports[m.cfg.NodeID]; !reported {
				// The report did not commit (the controller was
				// unreachable): send it again, after a pause.
				cs.running[tp] = true
				m.step(tp, time.Second, func() { m.report(tp, pc.report) })
			}
		}
		return
	}
	if cs.running[tp] {
		return
	}
	self := m.cfg.NodeID
	if cl := part.Clean; cl != nil && slices.Contains(cl.Participants, self) && !cs.joined[tp].covers(l, cl.Generation) {
		if _, reported := cl.Reports[self]; !reported {
			cs.joined[tp] = joinedGen{l, cl.Generation}
			cs.running[tp] = true
			cmd := cl.CleanPartition.Clone()
			m.step(tp, 0, func() { m.participate(tp, t, cmd, part, l) })
			return
		}
	}
	if d := part.Cleaned; d != nil && l.CleanGeneration() < d.Generation && !cs.failedRedo[tp].holds(d.Generation, m.clock.Now()) && m.holdsAll(part, d) {
		cs.running[tp] = true
		cmd := d.Clone()
		m.step(tp, 0, func() { m.redo(tp, t, cmd, part, l) })
	}
}

// step runs one cleaning job of tp (checkClean marked tp running) on its
// own goroutine, after pause; then it clears running and rechecks tp:
// the next job (settle a generation its report committed, take part in
// the generation that replaced an abandoned one, redo a commit its
// output did not match) may follow without any metadata change, and the
// reconcile loop only revisits partitions whose metadata changed.
func (m *Manager) step(tp storage.TopicPartition, pause time.Duration, fn func()) {
	m.goTracked(func() {
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-m.ctx.Done():
			}
		}
		if m.ctx.Err() == nil {
			fn()
		}
		m.done(tp)
		m.recheck(tp) // after done: runs once the slot is free
	})
}

// holdsAll reports whether this node is a replica of every segment of
// the cleaning that the chain still holds.
func (m *Manager) holdsAll(part metadata.Partition, c *metadata.CleanPartition) bool {
	for _, cs := range c.Segments {
		for _, s := range part.Segments {
			if s.ID == cs.ID && !slices.Contains(s.Replicas, m.cfg.NodeID) {
				return false
			}
		}
	}
	return true
}

func (m *Manager) done(tp storage.TopicPartition) {
	m.clean.mu.Lock()
	delete(m.clean.running, tp)
	m.clean.mu.Unlock()
}

// recheck runs checkClean for tp again once a job ended: its report may
// have decided the generation, or its output may need a redo, and no
// metadata change may come to make reconcile look at the partition.
func (m *Manager) recheck(tp storage.TopicPartition) {
	if m.ctx.Err() != nil {
		return
	}
	t, ok := m.md.Topic(tp.Topic)
	l, lok := m.host.Log(tp)
	if !ok || !lok || int(tp.Partition) >= len(t.Parts) || !slices.Contains(t.Parts[tp.Partition].Active().Replicas, m.cfg.NodeID) {
		return
	}
	m.checkClean(t, t.Parts[tp.Partition], tp.Partition, l)
}

// acquire takes a cleaner slot, or fails when the Manager closes.
func (m *Manager) acquire() bool {
	select {
	case m.clean.sem <- struct{}{}:
		return true
	case <-m.ctx.Done():
		return false
	}
}

func (m *Manager) release() { <-m.clean.sem }

// participate runs cleaning cmd over l as one of its participants and
// reports the outcome; a prepared output waits in pending for the
// generation's commit.
func (m *Manager) participate(tp storage.TopicPartition, t metadata.Topic, cmd metadata.CleanPartition, part metadata.Partition, l *storage.Log) {
	if !m.acquire() {
		return
	}
	defer m.release()
	rep := metadata.CleanReport{Topic: t.Name, ID: t.ID, Partition: tp.Partition, Generation: cmd.Generation, Node: m.cfg.NodeID}
	rw, results, err := m.runCleaner(tp, t, cmd, part, l, true)
	if err != nil {
		m.log.Warn().Err(err).Str("tp", tp.String()).Int32("generation", cmd.Generation).Msg("cleaning failed here; reporting it")
		m.clean.mu.Lock()
		m.clean.stats.Failed++
		m.clean.mu.Unlock()
		rep.Reason = err.Error()
		if len(rep.Reason) > 500 {
			rep.Reason = rep.Reason[:500]
		}
	} else {
		rep.OK, rep.Results = true, results
		m.clean.mu.Lock()
		m.clean.pending[tp] = &pendingClean{report: rep, gen: cmd.Generation, rw: rw, log: l, results: results}
		m.clean.mu.Unlock()
	}
	m.report(tp, rep)
}

// report commits a participant's report.
func (m *Manager) report(tp storage.TopicPartition, rep metadata.CleanReport) {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	if err := m.md.Apply(ctx, rep); err != nil {
		m.log.Warn().Err(err).Str("tp", tp.String()).Int32("generation", rep.Generation).Msg("report a cleaning")
	}
}

// redo runs the partition's last committed cleaning over this node's own
// bytes (it did not take part, or its output differed) and swaps the
// result in only if it matches the committed checksums.
func (m *Manager) redo(tp storage.TopicPartition, t metadata.Topic, cmd metadata.CleanPartition, part metadata.Partition, l *storage.Log) {
	if !m.acquire() {
		return
	}
	defer m.release()
	rw, results, err := m.runCleaner(tp, t, cmd, part, l, false)
	if err == nil && !matchesCommitted(part, results) {
		err = errors.New("the result differs from the committed checksums")
		if aerr := rw.Abort(); aerr != nil {
			m.log.Warn().Err(aerr).Str("tp", tp.String()).Msg("remove a cleaning's output")
		}
		// This copy is no generation of the range (a learner that copied
		// part of it before a commit and part after): copy the committed
		// bytes from the leader instead.
		var cerr error
		if rw, results, cerr = m.recopy(tp, t, cmd, part, l); cerr == nil && !matchesCommitted(part, results) {
			cerr = errors.New("the leader's copy differs from the committed checksums")
			if aerr := rw.Abort(); aerr != nil {
				m.log.Warn().Err(aerr).Str("tp", tp.String()).Msg("remove a re-copy's output")
			}
		}
		if cerr == nil {
			err = nil
			m.log.Info().Str("tp", tp.String()).Int32("generation", cmd.Generation).Msg("re-copied the committed cleaning's range from the leader")
		} else {
			err = errors.Join(err, cerr)
		}
	}
	if err == nil {
		if err = rw.Commit(cmd.Generation); err != nil {
			err = errors.Join(err, rw.Abort())
		}
	}
	m.clean.mu.Lock()
	defer m.clean.mu.Unlock()
	if err != nil {
		// Retried after redoRetry (the leader may have moved, or not
		// swapped the generation in yet): a later check redoes it.
		m.clean.failedRedo[tp] = failedRedo{gen: cmd.Generation, until: m.clock.Now().Add(redoRetry)}
		m.goTracked(func() {
			select {
			case <-time.After(redoRetry):
				m.recheck(tp)
			case <-m.ctx.Done():
			}
		})
		m.clean.stats.Failed++
		m.log.Error().Err(err).Str("tp", tp.String()).Int32("generation", cmd.Generation).
			Msg("could not redo the committed cleaning: this node's copy of the cleaned segments is not served (their checksums differ)")
		return
	}
	m.clean.stats.Redone++
	m.log.Info().Str("tp", tp.String()).Int32("generation", cmd.Generation).Msg("redid the committed cleaning")
}

// settle swaps a participant's prepared output in once its generation
// committed with the same checksums, and drops it otherwise.
func (m *Manager) settle(tp storage.TopicPartition, t metadata.Topic, part metadata.Partition, pc *pendingClean) {
	if !matchesCommitted(part, pc.results) {
		m.abortRewrite(tp, pc, "the committed checksums differ from this node's output")
		return // step's recheck redoes it
	}
	if err := pc.rw.Commit(pc.gen); err != nil {
		// Before the swap's commit point the rewrite is still pending:
		// drop it, so that a redo can begin (after it, the log is
		// fenced and recovery completes the swap).
		err = errors.Join(err, pc.rw.Abort())
		m.log.Error().Err(err).Str("tp", tp.String()).Int32("generation", pc.gen).Msg("swap in a committed cleaning")
		m.clean.mu.Lock()
		m.clean.stats.Failed++
		m.clean.mu.Unlock()
		return
	}
	m.clean.mu.Lock()
	m.clean.stats.Cleanings++
	m.clean.mu.Unlock()
	m.log.Info().Str("tp", tp.String()).Int32("generation", pc.gen).Msg("cleaned generation swapped in")
}

func (m *Manager) abortRewrite(tp storage.TopicPartition, pc *pendingClean, why string) {
	if err := pc.rw.Abort(); err != nil {
		m.log.Warn().Err(err).Str("tp", tp.String()).Msg("remove a cleaning's output")
	}
	m.log.Info().Str("tp", tp.String()).Int32("generation", pc.gen).Str("why", why).Msg("cleaning output dropped")
}

// recopy writes the range [cmd.Start, cmd.UpTo) of the partition's
// active leader into a prepared rewrite of l (a consumer's Fetch over the
// leader's internal listener: it reads below the high watermark and
// counts as no replica's acknowledgement), under the cleaner's I/O budget,
// and returns it with the checksum of each segment of the command.
func (m *Manager) recopy(tp storage.TopicPartition, t metadata.Topic, cmd metadata.CleanPartition, part metadata.Partition, l *storage.Log) (*storage.Rewrite, []metadata.SegmentResult, error) {
	leader := part.Active().Leader
	if cur, ok := m.md.Topic(tp.Topic); ok && int(tp.Partition) < len(cur.Parts) {
		leader = cur.Parts[tp.Partition].Active().Leader // the leader now
	}
	if leader < 0 || leader == m.cfg.NodeID {
		return nil, nil, fmt.Errorf("replica: re-copy %s: no other node leads it", tp)
	}
	rw, err := l.BeginRewrite(cmd.UpTo)
	if err != nil {
		return nil, nil, fmt.Errorf("replica: re-copy %s: %w", tp, err)
	}
	fail := func(err error) (*storage.Rewrite, []metadata.SegmentResult, error) {
		return nil, nil, errors.Join(fmt.Errorf("replica: re-copy %s from node %d: %w", tp, leader, err), rw.Abort())
	}
	if err := rw.From(cmd.Start); err != nil {
		return fail(err)
	}
	acc := newSegmentSums(cmd.Segments)
	errStop := errors.New("stop")
	for next := cmd.Start; next < cmd.UpTo; {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1 // a consumer's read: below the HW, no acknowledgement
		req.MaxBytes = 4 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = t.Name, t.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch, rp.PartitionMaxBytes = tp.Partition, next, -1, 4<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		resp, release, err := m.tr.Fetch(ctx, leader, req)
		cancel()
		if err != nil {
			return fail(err)
		}
		var data []byte
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition != tp.Partition {
					continue
				}
				if rp.ErrorCode != 0 {
					release()
					return fail(kerr.ErrorForCode(rp.ErrorCode))
				}
				data = rp.RecordBatches
			}
		}
		progressed := false
		err = kafkaproto.SplitBatches(data, func(b []byte, h kafkaproto.BatchHeader) error {
			switch {
			case h.LastOffset() < next:
				return nil
			case h.BaseOffset >= cmd.UpTo:
				return errStop
			}
			if budget := m.cfg.Cleaner.Budget; budget != nil {
				if err := budget.Wait(m.ctx, len(b)); err != nil {
					return err
				}
			}
			if err := acc.add(b); err != nil {
				return err
			}
			if err := rw.Write(b); err != nil {
				return err
			}
			next, progressed = h.LastOffset()+1, true
			return nil
		})
		release() // written: data is not used any more
		if err != nil && !errors.Is(err, errStop) {
			return fail(err)
		}
		if errors.Is(err, errStop) {
			break
		}
		if !progressed {
			return fail(fmt.Errorf("no batches at %d", next))
		}
	}
	if err := rw.Prepare(); err != nil {
		return fail(err)
	}
	return rw, acc.results(), nil
}

// matchesCommitted reports whether results are the committed ones of
// the partition's last cleaning (its majority's checksums, whatever
// merges changed in the chain since).
func matchesCommitted(part metadata.Partition, results []metadata.SegmentResult) bool {
	return part.Cleaned != nil && slices.Equal(part.CleanedResults, results)
}

// runCleaner verifies (when verify) each segment of the range against the
// chain's checksums, then cleans [cmd.Start, cmd.UpTo) of l into a
// prepared rewrite and returns it with the checksum of each segment of
// the output, per segment of the command.
func (m *Manager) runCleaner(tp storage.TopicPartition, t metadata.Topic, cmd metadata.CleanPartition, part metadata.Partition, l *storage.Log, verify bool) (*storage.Rewrite, []metadata.SegmentResult, error) {
	cc, ok := m.host.Compaction(t.Name)
	if !ok || !cc.Compact {
		return nil, nil, fmt.Errorf("replica: clean %s: the topic is not compacted", tp)
	}
	if l.LogStartOffset() > cmd.Start {
		return nil, nil, fmt.Errorf("replica: clean %s: the log starts at %d, above the cleaning's start %d", tp, l.LogStartOffset(), cmd.Start)
	}
	if verify {
		for _, cs := range cmd.Segments {
			if cs.Base < cmd.Start || cs.End == cs.Base {
				continue // the bytes below Start are gone: nothing to verify
			}
			i := slices.IndexFunc(part.Segments, func(s metadata.Segment) bool { return s.ID == cs.ID })
			if i < 0 {
				return nil, nil, fmt.Errorf("replica: clean %s: segment %d left the chain", tp, cs.ID)
			}
			s := part.Segments[i]
			// The verification reads the segment too: under the budget,
			// and counted with the cleaner's reads.
			if budget := m.cfg.Cleaner.Budget; budget != nil {
				if err := budget.Wait(m.ctx, int(s.Bytes)); err != nil {
					return nil, nil, err
				}
			}
			m.clean.bytesIn.Add(s.Bytes)
			crc, n, err := l.SegmentChecksum(cs.Base, cs.End)
			if err != nil {
				return nil, nil, fmt.Errorf("replica: clean %s: verify segment %d: %w", tp, cs.ID, err)
			}
			if crc != s.Checksum || n != s.Bytes {
				return nil, nil, fmt.Errorf("replica: clean %s: segment %d [%d, %d) has crc %d and %d bytes here, %d and %d in metadata",
					tp, cs.ID, cs.Base, cs.End, crc, n, s.Checksum, s.Bytes)
			}
		}
	}
	rw, err := l.BeginRewrite(cmd.UpTo)
	if err != nil {
		return nil, nil, fmt.Errorf("replica: clean %s: %w", tp, err)
	}
	segs := make([]cleaner.Segment, len(cmd.Segments))
	var horizons []cleaner.Horizon
	for i, s := range cmd.Segments {
		segs[i] = cleaner.Segment{Base: s.Base, End: s.End, SealedAtMs: s.SealedAtMs}
		if len(s.Horizons) == 0 {
			horizons = append(horizons, cleaner.Horizon{Start: s.Base, SealedAtMs: s.SealedAtMs})
		}
		for _, h := range s.Horizons {
			horizons = append(horizons, cleaner.Horizon{Start: h.Start, SealedAtMs: h.SealedAtMs})
		}
	}
	params := cleaner.Params{Start: cmd.Start, UpTo: cmd.UpTo, NowMs: cmd.NowMs, DeleteRetentionMs: cc.DeleteRetentionMs,
		Segments: segs, Horizons: horizons, MapBytes: m.cfg.Cleaner.MapBytes, SpillDir: m.cfg.Cleaner.SpillDir}
	budget := m.cfg.Cleaner.Budget
	src := func(fn func(batch []byte) error) error {
		return rw.Input(cmd.Start, func(batch []byte, _ kafkaproto.BatchHeader) error {
			if budget != nil {
				if err := budget.Wait(m.ctx, len(batch)); err != nil {
					return err
				}
			}
			m.clean.bytesIn.Add(int64(len(batch)))
			return fn(batch)
		})
	}
	acc := newSegmentSums(cmd.Segments)
	write := func(batch []byte) error {
		if err := acc.add(batch); err != nil {
			return err
		}
		if budget != nil {
			if err := budget.Wait(m.ctx, len(batch)); err != nil {
				return err
			}
		}
		m.clean.bytesOut.Add(int64(len(batch)))
		return rw.Write(batch)
	}
	st, err := cleaner.Clean(src, params, write)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("replica: clean %s: %w", tp, err), rw.Abort())
	}
	m.log.Debug().Str("tp", tp.String()).Int32("generation", cmd.Generation).Int64("records_in", st.RecordsIn).Int64("records_out", st.RecordsOut).
		Int64("tombstones_removed", st.TombstonesRemoved).Int64("aborted_records_removed", st.AbortedRecordsRemoved).
		Int64("markers_removed", st.MarkersRemoved).Bool("spilled", st.Spilled).Msg("cleaner output written")
	if err := rw.Prepare(); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("replica: clean %s: %w", tp, err), rw.Abort())
	}
	return rw, acc.results(), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentSums computes, per chain segment, the CRC-32C and length of the
// output batches within it, as storage's SegmentChecksum will over the
// swapped-in files.
type segmentSums struct {
	segs []metadata.CleanSegment
	out  []metadata.SegmentResult
	i    int
}

func newSegmentSums(segs []metadata.CleanSegment) *segmentSums {
	s := &segmentSums{segs: segs, out: make([]metadata.SegmentResult, len(segs))}
	for i, cs := range segs {
		s.out[i].ID = cs.ID
	}
	return s
}

func (s *segmentSums) add(batch []byte) error {
	h, err := kafkaproto.ParseBatchHeader(batch)
	if err != nil {
		return fmt.Errorf("replica: cleaner output: %w", err)
	}
	for s.i < len(s.segs) && h.BaseOffset >= s.segs[s.i].End {
		s.i++
	}
	if s.i == len(s.segs) || h.BaseOffset < s.segs[s.i].Base || h.LastOffset() >= s.segs[s.i].End {
		return fmt.Errorf("replica: cleaner output batch [%d, %d] outside the cleaning's segments", h.BaseOffset, h.LastOffset())
	}
	r := &s.out[s.i]
	r.Checksum = crc32.Update(r.Checksum, castagnoli, batch)
	r.Bytes += int64(len(batch))
	return nil
}

func (s *segmentSums) results() []metadata.SegmentResult { return slices.Clone(s.out) }

// cleanLoop is the leader's side: every Backoff it looks at the
// compacted partitions this node leads and proposes a cleaning of those
// dirty enough, and abandons cleanings that overran Timeout.
func (m *Manager) cleanLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.Cleaner.Backoff)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		for _, lp := range m.leadingList() {
			if m.ctx.Err() != nil {
				return
			}
			m.maybeClean(lp.tp, lp.log)
		}
	}
}

// maybeClean proposes (or abandons) a cleaning of tp, which this node
// leads with log l.
func (m *Manager) maybeClean(tp storage.TopicPartition, l *storage.Log) {
	// The cheap check first: the loop visits every leadership, and
	// copying the topic is not cheap.
	cc, ok := m.host.Compaction(tp.Topic)
	if !ok || !cc.Compact {
		return
	}
	t, ok := m.md.Topic(tp.Topic)
	if !ok || int(tp.Partition) >= len(t.Parts) {
		return
	}
	part := t.Parts[tp.Partition]
	now := m.clock.Now().UnixMilli()
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	if cl := part.Clean; cl != nil {
		overdue := now-cl.NowMs > m.cfg.Cleaner.Timeout.Milliseconds()
		fenced := false
		for _, n := range cl.Participants {
			if _, reported := cl.Reports[n]; reported {
				continue
			}
			if b, ok := m.md.Broker(n); !ok || b.State != metadata.BrokerAlive {
				fenced = true
			}
		}
		if overdue || fenced {
			err := m.md.Apply(ctx, metadata.AbandonCleaning{Topic: t.Name, ID: t.ID, Partition: tp.Partition, Generation: cl.Generation})
			m.log.Warn().Err(err).Str("tp", tp.String()).Int32("generation", cl.Generation).Bool("participant_fenced", fenced).Msg("abandoning a cleaning")
		}
		return
	}
	if m.fillChecksums(ctx, t, tp, part, l) {
		return // the next check sees the checksums
	}
	if m.maybeMerge(ctx, t, tp, part, l) {
		return
	}
	cmd, ratio, lag, due := m.cleanable(t, tp.Partition, part, cc, l.LogStartOffset(), l.LastStableOffset(), now)
	m.clean.mu.Lock()
	m.clean.dirty[tp] = DirtyState{Ratio: ratio, LagMs: lag}
	m.clean.mu.Unlock()
	if !due {
		return
	}
	if err := m.md.Apply(ctx, cmd); err != nil {
		m.log.Info().Err(err).Str("tp", tp.String()).Msg("propose a cleaning")
		return
	}
	m.log.Info().Str("tp", tp.String()).Int32("generation", cmd.Generation).Int64("start", cmd.Start).Int64("first_dirty", cmd.FirstDirty).
		Int64("up_to", cmd.UpTo).Ints32("participants", cmd.Participants).Float64("dirty_ratio", ratio).Msg("cleaning proposed")
}

// fillChecksums records the checksum of each sealed segment of the
// partition that a failover sealed without one and that l holds whole
// (this node, the leader, truncated to its end before it took over), so
// that the cleaning's input can be verified (docs/compaction.md). It
// reports whether it proposed any.
func (m *Manager) fillChecksums(ctx context.Context, t metadata.Topic, tp storage.TopicPartition, part metadata.Partition, l *storage.Log) bool {
	proposed := false
	for _, s := range part.Segments {
		if s.State != metadata.SegmentSealed || s.Bytes != 0 || s.EndOffset <= s.BaseOffset ||
			s.BaseOffset < l.LogStartOffset() || s.EndOffset > l.LogEndOffset() || !slices.Contains(s.Replicas, m.cfg.NodeID) {
			continue
		}
		crc, n, err := l.SegmentChecksum(s.BaseOffset, s.EndOffset)
		if err != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", s.ID).Msg("checksum of a segment sealed by failover")
			continue
		}
		err = m.md.Apply(ctx, metadata.SetSegmentChecksum{Topic: t.Name, ID: t.ID, Partition: tp.Partition, Segment: s.ID, Checksum: crc, Bytes: n})
		if err != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Int64("segment", s.ID).Msg("record the checksum of a segment sealed by failover")
			continue
		}
		proposed = true
	}
	return proposed
}

// maxMergedEpochs bounds the epoch list of a merged segment.
const maxMergedEpochs = 256

// maybeMerge proposes merging the first run of adjacent cleaned sealed
// segments (below the last committed cleaning's end, above l's log
// start) whose bytes together fit the topic's segment.bytes, once l's
// copies of them match their checksums (docs/compaction.md, "Merging").
// It reports whether it proposed one.
func (m *Manager) maybeMerge(ctx context.Context, t metadata.Topic, tp storage.TopicPartition, part metadata.Partition, l *storage.Log) bool {
	if part.Clean != nil || part.Cleaned == nil {
		return false
	}
	limit := l.Config().SegmentBytes
	var run []metadata.Segment
	var size int64
	epochs := 0
	flush := func() bool {
		if len(run) < 2 {
			return false
		}
		cmd := metadata.MergeSegments{Topic: t.Name, ID: t.ID, Partition: tp.Partition}
		for _, s := range run {
			if s.EndOffset > s.BaseOffset {
				crc, n, err := l.SegmentChecksum(s.BaseOffset, s.EndOffset)
				if err != nil || crc != s.Checksum || n != s.Bytes {
					return false // this copy is not the committed one: leave it to the redo
				}
			}
			cmd.Inputs = append(cmd.Inputs, metadata.MergedInput{ID: s.ID, Checksum: s.Checksum, Bytes: s.Bytes, Generation: s.Generation})
		}
		crc, n, err := l.SegmentChecksum(run[0].BaseOffset, run[len(run)-1].EndOffset)
		if err != nil {
			m.log.Warn().Err(err).Str("tp", tp.String()).Msg("checksum of segments to merge")
			return false
		}
		cmd.Checksum, cmd.Bytes = crc, n
		if err := m.md.Apply(ctx, cmd); err != nil {
			m.log.Info().Err(err).Str("tp", tp.String()).Msg("propose a merge of cleaned segments")
			return false
		}
		m.log.Info().Str("tp", tp.String()).Int("segments", len(run)).Int64("base", run[0].BaseOffset).Int64("end", run[len(run)-1].EndOffset).Int64("bytes", n).Msg("cleaned segments merged")
		return true
	}
	for _, s := range part.Segments[:len(part.Segments)-1] {
		ok := s.State == metadata.SegmentSealed && s.EndOffset <= part.Cleaned.UpTo && s.BaseOffset >= l.LogStartOffset() &&
			(s.Bytes > 0 || s.EndOffset == s.BaseOffset)
		if !ok || (len(run) > 0 && (size+s.Bytes > limit || epochs+len(s.EpochList()) > maxMergedEpochs)) {
			if flush() {
				return true
			}
			run, size, epochs = nil, 0, 0
		}
		if ok {
			run = append(run, s)
			size += s.Bytes
			epochs += len(s.EpochList())
		}
	}
	return flush()
}

// cleanable computes the cleaning of t/p the leader would propose now:
// its range starts at the leader's log start (inside the first segment
// that holds it) and runs over whole sealed segments up to the last one
// sealed at least min.compaction.lag.ms ago and ending at or below the
// last stable offset stable (each, but the first, with a checksum); it is due when the dirty part's share of the bytes reaches
// min.cleanable.dirty.ratio, or a dirty segment was sealed more than
// max.compaction.lag.ms ago.
func (m *Manager) cleanable(t metadata.Topic, p int32, part metadata.Partition, cc CompactionConfig, logStart, stable, now int64) (cmd metadata.CleanPartition, ratio float64, lagMs int64, due bool) {
	cmd = metadata.CleanPartition{Topic: t.Name, ID: t.ID, Partition: p, Generation: part.CleanGen + 1, NowMs: now, Start: logStart}
	var total, dirty int64
	firstDirty := int64(-1)
	oldestDirty := int64(-1)
	cleanedTo := int64(0)
	if part.Cleaned != nil {
		cleanedTo = part.Cleaned.UpTo
	}
	for _, s := range part.Segments {
		if s.State != metadata.SegmentSealed {
			break
		}
		if s.EndOffset <= logStart {
			continue
		}
		if s.EndOffset == s.BaseOffset {
			continue // empty: nothing to clean
		}
		partial := s.BaseOffset < logStart
		// Never at or above the first unstable offset (an open
		// transaction's first offset; stable is the leader's last
		// stable offset).
		if (s.Bytes == 0 && !partial) || now-s.SealedAtMs < cc.MinLagMs || s.EndOffset > stable {
			break
		}
		cmd.Segments = append(cmd.Segments, metadata.CleanSegment{ID: s.ID, Base: s.BaseOffset, End: s.EndOffset, SealedAtMs: s.SealedAtMs, Horizons: slices.Clone(s.Epochs)})
		cmd.UpTo = s.EndOffset
		total += s.Bytes
		if s.EndOffset > cleanedTo {
			dirty += s.Bytes
			if firstDirty < 0 {
				firstDirty = max(s.BaseOffset, cleanedTo)
				oldestDirty = s.SealedAtMs
			}
		}
	}
	if len(cmd.Segments) == 0 || firstDirty < 0 || total == 0 {
		return cmd, 0, 0, false
	}
	cmd.FirstDirty = max(firstDirty, cmd.Start)
	ratio = float64(dirty) / float64(total)
	lagMs = max(now-oldestDirty, 0)
	due = ratio >= cc.MinDirtyRatio || (cc.MaxLagMs > 0 && lagMs >= cc.MaxLagMs)
	if !due {
		return cmd, ratio, lagMs, false
	}
	// Participants: the alive nodes that are replicas of every segment of
	// the range and of the active segment.
	active := part.Active()
	for _, n := range active.Replicas {
		if b, ok := m.md.Broker(n); !ok || b.State != metadata.BrokerAlive {
			continue
		}
		all := true
		for _, cs := range cmd.Segments {
			for _, s := range part.Segments {
				if s.ID == cs.ID && !slices.Contains(s.Replicas, n) {
					all = false
				}
			}
		}
		if all {
			cmd.Participants = append(cmd.Participants, n)
		}
	}
	slices.Sort(cmd.Participants)
	return cmd, ratio, lagMs, len(cmd.Participants) > 0
}
