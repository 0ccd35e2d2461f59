package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/share"
	"github.com/tuskdb/tusk/storage"
)

// Share-partition hosting (docs/groups-next.md, part B): this node keeps
// one share.Partition per (share group, topic-partition) whose active
// segment it leads, made on first use from share.auto.offset.reset (or
// from the state the share coordinator holds, share_coordinator.go),
// and drives it: reads the log for
// Acquire, applies acknowledgements, expires acquisition locks on a
// timer, and releases a member's records when its share session closes.

// sharePartKey names one share-partition.
type sharePartKey struct {
	group     string
	topicID   [16]byte
	partition int32
}

// sharePart is one hosted share-partition. mu is held across FetchOffset,
// the log read and Acquire, and while an Update is persisted, so Updates
// are made and written in order (share's concurrency contract).
type sharePart struct {
	key   sharePartKey
	topic string

	mu sync.Mutex
	p  *share.Partition
	// epoch is the leader epoch (the active segment's) the state is
	// current for; a later epoch is taken over only when this node led
	// every segment in between (sharePartsHost.get).
	epoch int32
	// stateEpoch is the share coordinator's state epoch the state was
	// read or created at (it moves when the offsets are reset).
	stateEpoch int32
	// minEpoch: the state was handed over or dropped when leadership
	// moved to this epoch; a request that looked the partition up at an
	// older epoch (before this node's metadata showed the move) must not
	// restore it, or it would hand out what the next leader also holds.
	minEpoch int32
	timer    *time.Timer // lock expiry, at p.NextDeadline()
	gone     bool        // dropped from the host: its timer does nothing
	// recordBytes estimates the log bytes per record of the partition
	// from its acquisitions (0: none yet); readSize bounds each read by
	// it.
	recordBytes float64
}

// Bounds of a share-partition's log read (shareReadSize).
const (
	shareReadMin     = 64 << 10
	shareReadInitial = 1 << 20
)

// readSize is how many bytes acquire reads for maxRecords records: the
// request's maxBytes at most, but no more than the records can take at
// the partition's bytes per record so far (with a quarter to spare), and
// 1 MiB before any estimate. A ShareFetch asks for up to 50 MB (kgo) but
// acquires at most its MaxRecords; reading all of it for each fetch put
// 58% of a node's CPU in the read and the buffer's clearing with 16
// consumers on one partition (bench/RESULTS.md, "Share groups"). The
// read returns at least one whole batch whatever the size.
func (sp *sharePart) readSize(maxRecords, maxBytes int) int {
	want := shareReadInitial
	if sp.recordBytes > 0 {
		want = max(shareReadMin, int(sp.recordBytes*float64(maxRecords)*1.25))
	}
	return min(want, maxBytes)
}

// learnRecordBytes updates recordBytes from a read of n bytes holding
// records offsets.
func (sp *sharePart) learnRecordBytes(n int, records int64) {
	if n <= 0 || records <= 0 {
		return
	}
	x := float64(n) / float64(records)
	if sp.recordBytes == 0 {
		sp.recordBytes = x
		return
	}
	sp.recordBytes = 0.75*sp.recordBytes + 0.25*x
}

// shareHost holds this node's share-partitions and share sessions.
type shareHost struct {
	b *Broker

	mu    sync.Mutex
	parts map[sharePartKey]*sharePart
	// wake is closed and replaced whenever records become available
	// again without a log append (a release, a lock expiry), so that
	// ShareFetch long polls look again.
	wake chan struct{}

	sessions shareSessions

	// Roll handovers (share_handover.go): received and not used yet, by
	// partition and epoch; when this node began waiting for one; which
	// it sent; handoverCh is closed and replaced at each arrival.
	handovers     map[shareHandoverKey]*handoverSet
	handoverSince map[shareHandoverKey]time.Time
	handedOver    map[shareHandoverKey]bool
	handoverCh    chan struct{}
}

func newShareHost(b *Broker) *shareHost {
	h := &shareHost{b: b, parts: map[sharePartKey]*sharePart{}, wake: make(chan struct{}),
		handovers: map[shareHandoverKey]*handoverSet{}, handoverSince: map[shareHandoverKey]time.Time{}, handedOver: map[shareHandoverKey]bool{}, handoverCh: make(chan struct{})}
	h.sessions.init(b.cfg.Share.MaxSessions)
	return h
}

// wakeCh returns the channel the next release closes.
func (h *shareHost) wakeCh() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wake
}

// kick wakes every ShareFetch long poll.
func (h *shareHost) kick() {
	h.mu.Lock()
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// lookup resolves a topic id and partition to this node's log of it and
// the active segment's epoch, or an error code (UNKNOWN_TOPIC_ID,
// UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER) with the leader
// and epoch for the client's hint.
func (h *shareHost) lookup(topicID [16]byte, partition int32) (topic metadata.Topic, l *storage.Log, leader, epoch int32, code int16) {
	t, ok := h.b.store.FSM().TopicByID(metadata.TopicID(topicID))
	if !ok {
		return t, nil, -1, -1, kerr.UnknownTopicID.Code
	}
	if partition < 0 || int(partition) >= len(t.Parts) {
		return t, nil, -1, -1, kerr.UnknownTopicOrPartition.Code
	}
	leader, epoch = t.Leader(partition)
	l, code, _ = h.b.partitionLogEpoch(t.Name, partition)
	return t, l, leader, epoch, code
}

// continuous reports whether this node led every segment of part with an
// epoch above from: its in-memory state of epoch from is still current.
func (h *shareHost) continuous(part metadata.Partition, from int32) bool {
	for _, s := range part.Segments {
		if s.Epoch > from && s.Leader != h.b.cfg.NodeID {
			return false
		}
		for _, e := range s.Epochs {
			if e.Epoch > from && s.Leader != h.b.cfg.NodeID {
				return false
			}
		}
	}
	return true
}

// get returns the share-partition for key, made if needed, with its mutex
// held; the caller unlocks it. Called only once lookup found this node
// leading the partition at epoch with log l.
func (h *shareHost) get(ctx context.Context, key sharePartKey, t metadata.Topic, l *storage.Log, epoch int32) (*sharePart, int16) {
	h.mu.Lock()
	sp := h.parts[key]
	if sp == nil {
		sp = &sharePart{key: key, topic: t.Name, epoch: -1}
		h.parts[key] = sp
	}
	h.mu.Unlock()
	sp.mu.Lock()
	if sp.gone {
		// Dropped meanwhile: start over with the new entry.
		sp.mu.Unlock()
		return h.get(ctx, key, t, l, epoch)
	}
	if epoch < sp.minEpoch {
		sp.mu.Unlock()
		return nil, kerr.NotLeaderForPartition.Code
	}
	// The caller's lookup may be stale: a ShareFetch looks the partition
	// up, then long-polls before it acquires. Once a roll has moved the
	// partition, this node must acquire and acknowledge nothing more
	// (what it answers after its handover is lost to the next leader, and
	// past the sealed end it would hand out the next leader's records),
	// so leadership at epoch is checked again under sp.mu, which the
	// handover also takes: whatever passes this check is in the handover.
	if _, part, ok := h.b.store.FSM().Partition(t.Name, key.partition); !ok || part.Active().Leader != h.b.cfg.NodeID || part.Active().Epoch != epoch {
		sp.mu.Unlock()
		return nil, kerr.NotLeaderForPartition.Code
	}
	if sp.p != nil && sp.epoch != epoch {
		if sp.epoch < epoch && h.continuous(t.Parts[key.partition], sp.epoch) {
			sp.epoch = epoch
		} else {
			// Another node led the partition meanwhile: what this
			// node holds is stale.
			sp.p = nil
		}
	}
	if sp.p == nil {
		if code := h.takeOver(ctx, sp, t, l, epoch); code != 0 {
			sp.mu.Unlock()
			return nil, code
		}
	} else {
		// Group configs altered since the state was made apply now.
		sp.p.SetConfig(h.b.shareConfig(key.group))
	}
	if u := sp.p.AdvanceLogStart(l.LogStartOffset()); !u.Empty() {
		if code := h.persist(ctx, sp, u); code != 0 {
			sp.mu.Unlock()
			return nil, code
		}
	}
	return sp, 0
}

// restore loads sp's state at leader epoch epoch: from the share
// coordinator (acquired records there come back available, their
// delivery counts kept), or, with none, a new share-partition at
// share.auto-offset-reset whose start is written first. sp.mu held.
func (h *shareHost) restore(ctx context.Context, sp *sharePart, l *storage.Log, epoch int32) int16 {
	cfg := h.b.shareConfig(sp.key.group)
	resp := h.b.shareState(ctx, shareStateRequest{Op: shareOpRead, Group: sp.key.group, TopicID: sp.key.topicID, Partition: sp.key.partition, LeaderEpoch: epoch})
	if resp.Code != 0 {
		return shareClientCode(resp.Code)
	}
	sp.epoch = epoch
	if resp.Found {
		p, err := share.Restore(cfg, share.Snapshot{StartOffset: resp.StartOffset, Batches: resp.Batches})
		if err != nil {
			h.b.log.Error().Err(err).Str("group", sp.key.group).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share: persisted state does not restore")
			return kerr.UnknownServerError.Code
		}
		sp.p, sp.stateEpoch = p, resp.StateEpoch
		return 0
	}
	p := share.New(cfg, l.LogStartOffset(), l.HighWatermark())
	sp.p, sp.stateEpoch = p, 0
	if code := h.persist(ctx, sp, share.Update{StartOffset: p.SPSO()}); code != 0 {
		sp.p = nil
		return code
	}
	return 0
}

// persist makes an Update durable (the share coordinator's write,
// answered once replicated) before the answer that reports it; sp.mu
// held. On an error the caller drops sp's state: the next use reads it
// back.
func (h *shareHost) persist(ctx context.Context, sp *sharePart, u share.Update) int16 {
	resp := h.b.shareState(ctx, shareStateRequest{Op: shareOpWrite, Group: sp.key.group, TopicID: sp.key.topicID, Partition: sp.key.partition,
		LeaderEpoch: sp.epoch, StateEpoch: sp.stateEpoch, StartOffset: u.StartOffset, Batches: u.Batches})
	if resp.Code != 0 {
		h.b.log.Info().Str("group", sp.key.group).Str("topic", sp.topic).Int32("partition", sp.key.partition).Str("error", kerr.ErrorForCode(resp.Code).Error()).Msg("share: state write refused")
		return shareClientCode(resp.Code)
	}
	return 0
}

// shareClientCode is what a client is told when the share coordinator
// refused or could not take a read or write: a fenced leader epoch means
// another node leads the partition now, anything else is retriable.
func shareClientCode(code int16) int16 {
	switch code {
	case kerr.FencedLeaderEpoch.Code:
		return kerr.NotLeaderForPartition.Code
	case kerr.FencedStateEpoch.Code, kerr.NotCoordinator.Code, kerr.CoordinatorLoadInProgress.Code, kerr.RequestTimedOut.Code:
		return kerr.CoordinatorNotAvailable.Code
	}
	return code
}

// reconciled follows a partition's leadership after a metadata change:
// share-partitions of a partition this node no longer leads are dropped,
// and handed over to the next leader after a planned roll
// (share_handover.go), and so is the share coordinator of a
// __share_group_state partition it no longer leads.
func (h *shareHost) reconciled(t metadata.Topic, p int32, role replica.Role) {
	if role == replica.RoleLeader && t.Parts[p].Active().State == metadata.SegmentActive {
		return
	}
	if t.Name == shareStateTopic {
		h.b.shareCoords.unload(p)
		return
	}
	h.handOver(t, p)
}

// schedule arms sp's lock-expiry timer at the next deadline; sp.mu held.
func (h *shareHost) schedule(sp *sharePart) {
	d, ok := sp.p.NextDeadline()
	if !ok {
		if sp.timer != nil {
			sp.timer.Stop()
		}
		return
	}
	wait := time.Until(d)
	if sp.timer == nil {
		sp.timer = time.AfterFunc(wait, func() { h.expire(sp) })
		return
	}
	sp.timer.Reset(wait)
}

// expire releases sp's records whose lock ran out.
func (h *shareHost) expire(sp *sharePart) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.gone || sp.p == nil {
		return
	}
	u := sp.p.Expire(time.Now())
	if !u.Empty() {
		if code := h.persist(h.b.reqCtx, sp, u); code != 0 {
			h.b.log.Warn().Str("group", sp.key.group).Str("topic", sp.topic).Int32("partition", sp.key.partition).Int16("code", code).Msg("share: lock expiry not persisted; the state is dropped")
			sp.p = nil
			return
		}
		h.kick()
	}
	h.schedule(sp)
}

// releaseMember releases what member holds on the given share-partitions
// of group (nil: all of this node's), for a closed share session or a
// member that left.
func (h *shareHost) releaseMember(ctx context.Context, group, member string, only map[sharePartKey]bool) {
	h.mu.Lock()
	var sps []*sharePart
	for k, sp := range h.parts {
		if k.group == group && (only == nil || only[k]) {
			sps = append(sps, sp)
		}
	}
	h.mu.Unlock()
	released := false
	for _, sp := range sps {
		sp.mu.Lock()
		if !sp.gone && sp.p != nil {
			if u := sp.p.ReleaseMember(member); !u.Empty() {
				if code := h.persist(ctx, sp, u); code != 0 {
					sp.p = nil // dropped: the next use starts from what is durable
				}
				released = true
			}
			if sp.p != nil {
				h.schedule(sp)
			}
		}
		sp.mu.Unlock()
	}
	if released {
		h.kick()
	}
}

// unacquire takes back ranges acquired for member whose answer will not
// be sent (share.Partition.Unacquire); sp.mu held.
func (h *shareHost) unacquire(ctx context.Context, sp *sharePart, member string, ranges []share.AcquiredRange) {
	if sp.p == nil {
		return
	}
	if u := sp.p.Unacquire(member, ranges); !u.Empty() {
		if code := h.persist(ctx, sp, u); code != 0 {
			sp.p = nil // the next use starts from what is durable
			return
		}
		h.kick()
	}
	h.schedule(sp)
}

// forget drops this node's in-memory state of key (its offsets were
// reset or deleted); the next use reads it from the share coordinator.
func (h *shareHost) forget(key sharePartKey) {
	h.mu.Lock()
	sp := h.parts[key]
	h.mu.Unlock()
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.p = nil
	if sp.timer != nil {
		sp.timer.Stop()
	}
	sp.mu.Unlock()
}

// close stops every timer (broker shutdown). It takes each
// share-partition's mutex only after releasing h.mu, as expire and
// releases do (they kick under a share-partition's mutex).
func (h *shareHost) close() {
	h.drop(func(sharePartKey) bool { return true })
}

// dropPartition drops every share-partition of partition p of the topic
// with id topicID: its log is being deleted (a deleted topic, or an
// earlier topic of the same name), so nothing will look it up again.
func (h *shareHost) dropPartition(topicID [16]byte, p int32) {
	h.drop(func(k sharePartKey) bool { return k.topicID == topicID && k.partition == p })
}

// drop removes the share-partitions whose keys match from the host and
// stops their timers, taking each one's mutex only after releasing h.mu.
func (h *shareHost) drop(match func(sharePartKey) bool) {
	h.mu.Lock()
	var sps []*sharePart
	for k, sp := range h.parts {
		if match(k) {
			sps = append(sps, sp)
			delete(h.parts, k)
		}
	}
	h.mu.Unlock()
	for _, sp := range sps {
		sp.mu.Lock()
		sp.gone = true
		if sp.timer != nil {
			sp.timer.Stop()
		}
		sp.mu.Unlock()
	}
}

// acquired is one partition's answer to an acquisition.
type acquired struct {
	ranges  []share.AcquiredRange
	records []byte
}

// acquire reads sp's log from its fetch offset and hands member up to
// maxRecords records; sp.mu held. committed reads below the last stable
// offset and archives aborted records and markers.
func (h *shareHost) acquire(ctx context.Context, sp *sharePart, l *storage.Log, member string, maxRecords, maxBytes int, strict, committed bool) (acquired, int16) {
	from := sp.p.FetchOffset()
	var (
		res storage.ReadResult
		err error
	)
	size := sp.readSize(maxRecords, maxBytes)
	if committed {
		res, err = l.ReadCommitted(from, size, true)
	} else {
		res, err = l.Read(from, size, true)
	}
	if err != nil {
		switch {
		case errors.Is(err, storage.ErrOffsetOutOfRange):
			// Below the log start (retention moved it since get) or
			// past the end (truncated after a failover): take the
			// log's bounds.
			if u := sp.p.AdvanceLogStart(res.LogStartOffset); !u.Empty() {
				if code := h.persist(ctx, sp, u); code != 0 {
					return acquired{}, code
				}
			}
			return acquired{}, 0
		case errors.Is(err, storage.ErrClosed):
			return acquired{}, kerr.NotLeaderForPartition.Code
		default:
			h.b.log.Error().Err(err).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share fetch read failed")
			return acquired{}, kerr.KafkaStorageError.Code
		}
	}
	if len(res.Data) == 0 {
		return acquired{}, 0
	}
	spans, err := batchSpans(res.Data)
	if err != nil {
		h.b.log.Error().Err(err).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share fetch: log batches")
		return acquired{}, kerr.CorruptMessage.Code
	}
	if committed {
		aborted, err := l.AbortedTransactions(spans[0].base, res.LastStableOffset)
		if err != nil {
			if errors.Is(err, storage.ErrClosed) {
				return acquired{}, kerr.NotLeaderForPartition.Code
			}
			h.b.log.Error().Err(err).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share fetch: aborted transactions")
			return acquired{}, kerr.KafkaStorageError.Code
		}
		skipAborted(spans, aborted)
	}
	sp.learnRecordBytes(spans[len(spans)-1].end, spans[len(spans)-1].last-spans[0].base+1)
	bs := make([]share.BatchSpan, len(spans))
	for i, s := range spans {
		bs[i] = share.BatchSpan{Base: s.base, Last: s.last, Skip: s.skip}
	}
	acquire := sp.p.Acquire
	if strict {
		acquire = sp.p.AcquireStrict
	}
	ranges, u, err := acquire(member, maxRecords, from, bs, time.Now())
	if err != nil {
		h.b.log.Error().Err(err).Str("topic", sp.topic).Int32("partition", sp.key.partition).Msg("share fetch: acquire")
		return acquired{}, kerr.UnknownServerError.Code
	}
	if !u.Empty() {
		if code := h.persist(ctx, sp, u); code != 0 {
			// Not durable: the acquisition is not answered, and the
			// in-memory state, which has it, is dropped.
			sp.p = nil
			return acquired{}, code
		}
	}
	h.schedule(sp)
	if len(ranges) == 0 {
		return acquired{}, 0
	}
	// The batches up to the last acquired offset; the client keeps
	// the acquired records of them.
	last, end := ranges[len(ranges)-1].Last, 0
	for _, s := range spans {
		if s.base > last {
			break
		}
		end = s.end
	}
	return acquired{ranges: ranges, records: res.Data[:end]}, 0
}

// logBatch is one record batch read from the log: its offsets, where it
// ends in the read bytes, and whether it has nothing to deliver (a
// control batch, or aborted records under read_committed).
type logBatch struct {
	base, last int64
	end        int
	pid        int64
	txn        bool
	control    bool
	abort      bool // an ABORT marker
	skip       bool
}

// batchSpans parses the headers of the record batches (v2) in data, as
// storage returns them (whole batches).
func batchSpans(data []byte) ([]logBatch, error) {
	var out []logBatch
	for pos := 0; pos < len(data); {
		if len(data)-pos < 61 {
			return nil, fmt.Errorf("share: batch at byte %d: %d bytes left, want a 61-byte header", pos, len(data)-pos)
		}
		h := data[pos:]
		length := int(int32(binary.BigEndian.Uint32(h[8:12])))
		if length < 49 || 12+length > len(h) {
			return nil, fmt.Errorf("share: batch at byte %d: length %d of %d bytes left", pos, length, len(h)-12)
		}
		attrs := int16(binary.BigEndian.Uint16(h[21:23]))
		b := logBatch{
			base:    int64(binary.BigEndian.Uint64(h[0:8])),
			pid:     int64(binary.BigEndian.Uint64(h[43:51])),
			txn:     attrs&0x10 != 0,
			control: attrs&0x20 != 0,
			end:     pos + 12 + length,
		}
		b.last = b.base + int64(int32(binary.BigEndian.Uint32(h[23:27])))
		if b.last < b.base {
			return nil, fmt.Errorf("share: batch at %d: last offset delta negative", b.base)
		}
		if b.control {
			b.skip = true
			b.abort = controlIsAbort(h[61 : 12+length])
		}
		out = append(out, b)
		pos = b.end
	}
	return out, nil
}

// controlIsAbort reports whether a control batch's first record (its
// records section, uncompressed) is an ABORT marker: key version int16,
// type int16 (0 ABORT, 1 COMMIT).
func controlIsAbort(recs []byte) bool {
	// record: length, attributes int8, timestampDelta, offsetDelta,
	// keyLength (varints), key.
	p := recs
	next := func() (int64, bool) {
		v, n := binary.Varint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	if _, ok := next(); !ok || len(p) < 1 {
		return false
	}
	p = p[1:]
	for range 2 {
		if _, ok := next(); !ok {
			return false
		}
	}
	kl, ok := next()
	if !ok || kl < 4 || int64(len(p)) < kl {
		return false
	}
	return binary.BigEndian.Uint16(p[2:4]) == 0
}

// skipAborted marks the batches of aborted transactions (a read_committed
// consumer's filter, as Kafka's share-partition leader archives them at
// acquisition): a producer's transactional batches from an aborted
// transaction's first offset until its ABORT marker.
func skipAborted(spans []logBatch, aborted []storage.AbortedTxn) {
	aborted = slices.Clone(aborted) // in marker order: sort by first offset
	sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
	open := map[int64]bool{}
	next := 0
	for i := range spans {
		s := &spans[i]
		for next < len(aborted) && aborted[next].FirstOffset <= s.base {
			open[aborted[next].ProducerID] = true
			next++
		}
		switch {
		case s.control && s.abort:
			delete(open, s.pid)
		case s.txn && !s.control && open[s.pid]:
			s.skip = true
		}
	}
}
