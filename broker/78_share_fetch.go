package broker

import (
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/share"
	"github.com/tuskdb/tusk/storage"
)

// ShareFetch 0-2 (KIP-932; v2: ShareAcquireMode, KIP-1206, and renew
// acknowledgements, KIP-1222), served by the partition's active segment
// leader (share_partitions.go) in a share session (share_sessions.go).
// Piggybacked acknowledgements are applied first, then records are
// acquired from the session's partitions up to MaxRecords (whole batches
// unless ShareAcquireMode is 1), read below the high watermark, or
// below the last stable offset with aborted records archived when
// share.isolation.level is read_committed; with nothing acquired it waits
// up to MaxWaitMillis for appends or released records. Like Kafka's
// partition leader it does not ask the group coordinator whether the
// member is assigned the partition.
// shareFetchSlack is how long past its MaxWait a ShareFetch may take
// loading share-partitions and persisting acquisitions (kgo waits
// MaxWait + 5 s for the answer).
const shareFetchSlack = 2 * time.Second

func apiShareFetch() api {
	return api{key: kmsg.ShareFetch, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleShareFetch(rc, rc.req.(*kmsg.ShareFetchRequest))
	}}
}

// validShareMember is Kafka's check of a share request's member id.
func validShareMember(m *string) (string, bool) {
	if m == nil || *m == "" || len(*m) > 36 {
		return "", false
	}
	return *m, true
}

func (b *Broker) handleShareFetch(rc *request, req *kmsg.ShareFetchRequest) (kmsg.Response, func() kmsg.Response) {
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	group := ""
	if req.GroupID != nil {
		group = *req.GroupID
	}
	resp.AcquisitionLockTimeoutMillis = int32(b.shareConfig(group).LockDuration / time.Millisecond)
	if code := rc.groupDenied(auth.OpRead, group); code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	member, ok := validShareMember(req.MemberID)
	if !ok || group == "" {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	renew := req.Version >= 2 && req.IsRenewAck
	if renew {
		// KIP-1222: a renewal fetches nothing.
		if req.MaxBytes != 0 || req.MinBytes != 0 || req.MaxRecords != 0 || req.MaxWaitMillis != 0 {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp, nil
		}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				if len(p.AcknowledgementBatches) == 0 {
					resp.ErrorCode = kerr.InvalidRequest.Code
					return resp, nil
				}
			}
		}
	}
	h := b.share
	key := shareSessionKey{group, member}
	var (
		parts map[shareTP]bool
		code  int16
	)
	switch req.ShareSessionEpoch {
	case -1:
		closing, ok := h.sessions.remove(key)
		if !ok {
			resp.ErrorCode = kerr.ShareSessionNotFound.Code
			return resp, nil
		}
		return nil, func() kmsg.Response {
			ctx := rc.ctx()
			b.shareAckFetchTopics(ctx, rc, resp, group, member, req.Topics, renew)
			h.closeSession(key, closing)
			return resp
		}
	case 0:
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				if len(p.AcknowledgementBatches) > 0 {
					resp.ErrorCode = kerr.InvalidRequest.Code
					return resp, nil
				}
			}
		}
		parts, code = h.sessions.open(key, rc.conn, req.Topics)
	default:
		parts, code = h.sessions.next(key, rc.conn, req.ShareSessionEpoch, req.Topics, req.ForgottenTopicsData)
	}
	if code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	return nil, func() kmsg.Response {
		// Answer while the client still waits: kgo gives up MaxWait + 5 s
		// after sending (and an acquisition answered after that is lost
		// to it), so loading a share-partition (a handover wait, share
		// coordinator calls) and persisting stop at MaxWait +
		// shareFetchSlack; the client asks again.
		ctx, cancel := context.WithTimeout(rc.ctx(), time.Duration(max(req.MaxWaitMillis, 0))*time.Millisecond+shareFetchSlack)
		defer cancel()
		b.shareAckFetchTopics(ctx, rc, resp, group, member, req.Topics, renew)
		if renew {
			return resp
		}
		f := b.newShareFetch(rc, req, resp, group, member, parts)
		if f.run(ctx) == 0 && req.MaxWaitMillis > 0 && len(f.targets) > 0 {
			f.wait(ctx, time.Duration(req.MaxWaitMillis)*time.Millisecond)
		}
		f.finish()
		return resp
	}
}

// shareAckFetchTopics applies ShareFetch's piggybacked acknowledgements
// and lists every acknowledged partition in resp (the client confirms its
// acknowledgements by the partition's presence).
func (b *Broker) shareAckFetchTopics(ctx context.Context, rc *request, resp *kmsg.ShareFetchResponse, group, member string, topics []kmsg.ShareFetchRequestTopic, renew bool) {
	for _, t := range topics {
		for _, p := range t.Partitions {
			if len(p.AcknowledgementBatches) == 0 {
				continue
			}
			batches := make([]share.AckBatch, len(p.AcknowledgementBatches))
			for i, ab := range p.AcknowledgementBatches {
				batches[i] = share.AckBatch{First: ab.FirstOffset, Last: ab.LastOffset, Types: ackTypes(ab.AcknowledgeTypes)}
			}
			sp := shareFetchPart(resp, t.TopicID, p.Partition)
			sp.AcknowledgeErrorCode, sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = b.shareAcknowledge(ctx, rc, group, member, t.TopicID, p.Partition, batches, renew)
		}
	}
}

func ackTypes(ts []int8) []share.AckType {
	out := make([]share.AckType, len(ts))
	for i, t := range ts {
		out[i] = share.AckType(t)
	}
	return out
}

// shareAcknowledge applies one partition's acknowledgements; it returns
// the partition's acknowledge error code and, with
// NOT_LEADER_OR_FOLLOWER, the leader and epoch as the metadata has them.
func (b *Broker) shareAcknowledge(ctx context.Context, rc *request, group, member string, topicID [16]byte, partition int32, batches []share.AckBatch, renew bool) (int16, int32, int32) {
	for _, ab := range batches {
		for _, t := range ab.Types {
			if t < share.AckGap || t > share.AckRenew || (t == share.AckRenew && !renew) {
				return kerr.InvalidRequest.Code, -1, -1
			}
		}
	}
	h := b.share
	t, l, leader, epoch, code := h.lookup(topicID, partition)
	if rc != nil && t.Name != "" && (code == 0 || code == kerr.NotLeaderForPartition.Code) {
		if denied := rc.topicDenied(auth.OpRead, t.Name); denied != 0 {
			return denied, -1, -1
		}
	}
	// A client acknowledging on the node it fetched from after a roll
	// moved the partition: forward to the leader, which holds the
	// member's locks (share_handover.go), rather than fail the
	// acknowledgement and have the records delivered again. get finds the
	// move too when this node's log has not yet left the leader role.
	forward := func() (int16, int32, int32, bool) {
		if rc == nil || leader < 0 || leader == b.cfg.NodeID {
			return 0, 0, 0, false
		}
		fwd, ok := b.forwardShareAck(ctx, leader, shareAckForward{Group: group, Member: member, TopicID: topicID, Partition: partition, Batches: batches, Renew: renew})
		if !ok {
			return 0, 0, 0, false
		}
		if fwd == kerr.NotLeaderForPartition.Code {
			return fwd, leader, epoch, true
		}
		return fwd, -1, -1, true
	}
	if code == kerr.NotLeaderForPartition.Code {
		if c, l, e, ok := forward(); ok {
			return c, l, e
		}
	}
	if code != 0 {
		if code == kerr.NotLeaderForPartition.Code {
			return code, leader, epoch
		}
		return code, -1, -1
	}
	sp, code := h.get(ctx, sharePartKey{group, topicID, partition}, t, l, epoch)
	if code == kerr.NotLeaderForPartition.Code {
		_, _, leader, epoch, _ = h.lookup(topicID, partition)
		if c, l, e, ok := forward(); ok {
			return c, l, e
		}
		return code, leader, epoch
	}
	if code != 0 {
		return code, -1, -1
	}
	defer sp.mu.Unlock()
	errs, u := sp.p.Acknowledge(member, batches, time.Now())
	for _, e := range errs {
		if e != 0 {
			return e, -1, -1
		}
	}
	if !u.Empty() {
		if code := h.persist(ctx, sp, u); code != 0 {
			sp.p = nil // not durable: start again from what is
			return code, -1, -1
		}
		released := false
		for _, sb := range u.Batches {
			if sb.State == share.Available {
				released = true
			}
		}
		if released {
			h.kick()
		}
	}
	h.schedule(sp)
	return 0, -1, -1
}

// shareFetchPart returns resp's entry for the partition, added if needed.
func shareFetchPart(resp *kmsg.ShareFetchResponse, topicID [16]byte, partition int32) *kmsg.ShareFetchResponseTopicPartition {
	ti := -1
	for i := range resp.Topics {
		if resp.Topics[i].TopicID == topicID {
			ti = i
			break
		}
	}
	if ti < 0 {
		t := kmsg.NewShareFetchResponseTopic()
		t.TopicID = topicID
		resp.Topics = append(resp.Topics, t)
		ti = len(resp.Topics) - 1
	}
	t := &resp.Topics[ti]
	for i := range t.Partitions {
		if t.Partitions[i].Partition == partition {
			return &t.Partitions[i]
		}
	}
	sp := kmsg.NewShareFetchResponseTopicPartition()
	sp.Partition = partition
	sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = -1, -1
	t.Partitions = append(t.Partitions, sp)
	return &t.Partitions[len(t.Partitions)-1]
}

// shareTarget is a session partition this node leads.
type shareTarget struct {
	tp    shareTP
	topic metadata.Topic
	log   *storage.Log
	epoch int32
}

// shareFetch is one ShareFetch's acquisition over its session's
// partitions.
type shareFetch struct {
	b        *Broker
	rc       *request
	req      *kmsg.ShareFetchRequest
	resp     *kmsg.ShareFetchResponse
	group    string
	member   string
	parts    map[shareTP]bool
	targets  []shareTarget
	leaders  map[int32]bool // nodes named in NOT_LEADER_OR_FOLLOWER hints
	acquired int
}

func (b *Broker) newShareFetch(rc *request, req *kmsg.ShareFetchRequest, resp *kmsg.ShareFetchResponse, group, member string, parts map[shareTP]bool) *shareFetch {
	f := &shareFetch{b: b, rc: rc, req: req, resp: resp, group: group, member: member, parts: parts, leaders: map[int32]bool{}}
	tps := make([]shareTP, 0, len(parts))
	for tp := range parts {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].topicID != tps[j].topicID {
			return string(tps[i].topicID[:]) < string(tps[j].topicID[:])
		}
		return tps[i].partition < tps[j].partition
	})
	for _, tp := range tps {
		t, l, leader, epoch, code := b.share.lookup(tp.topicID, tp.partition)
		if code == 0 {
			code = rc.topicDenied(auth.OpRead, t.Name)
		}
		if code != 0 {
			sp := shareFetchPart(resp, tp.topicID, tp.partition)
			sp.ErrorCode = code
			if code == kerr.NotLeaderForPartition.Code && leader >= 0 {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = leader, epoch
				f.leaders[leader] = true
			}
			continue
		}
		f.targets = append(f.targets, shareTarget{tp: tp, topic: t, log: l, epoch: epoch})
	}
	// Start at a different partition every round, for fairness.
	if n := len(f.targets); n > 1 {
		k := int(uint32(req.ShareSessionEpoch)) % n
		f.targets = append(f.targets[k:], f.targets[:k]...)
	}
	return f
}

// run acquires from every target partition within the request's limits
// and returns how many records it acquired (in total so far).
func (f *shareFetch) run(ctx context.Context) int {
	maxRecords := int(f.req.MaxRecords)
	if maxRecords <= 0 || f.req.Version < 1 {
		maxRecords = 500 // Kafka's default max.poll.records for share consumers
	}
	strict := f.req.Version >= 2 && f.req.ShareAcquireMode == 1
	budget := int(f.req.MaxBytes)
	if budget <= 0 {
		budget = 50 << 20
	}
	committed := f.b.shareIsolationCommitted(f.group)
	h := f.b.share
	for _, tg := range f.targets {
		if f.acquired >= maxRecords || budget <= 0 {
			break
		}
		sp, code := h.get(ctx, sharePartKey{f.group, tg.tp.topicID, tg.tp.partition}, tg.topic, tg.log, tg.epoch)
		var a acquired
		if code == 0 {
			live := h.sessions.live(shareSessionKey{f.group, f.member}, f.rc.conn)
			if live {
				a, code = h.acquire(ctx, sp, tg.log, f.member, maxRecords-f.acquired, budget, strict, committed)
			}
			// A session closed before this answer could be made (its
			// connection dropped: the client gave up on the request)
			// gets nothing; what was acquired for it meanwhile is
			// taken back, delivery counts included, since nobody
			// will see it. A close after this check releases it
			// (connClosed takes sp.mu after removing the session).
			if live && code == 0 && len(a.ranges) > 0 && !h.sessions.live(shareSessionKey{f.group, f.member}, f.rc.conn) {
				h.unacquire(ctx, sp, f.member, a.ranges)
				a = acquired{}
				live = false
			}
			sp.mu.Unlock()
			if !live {
				return f.acquired
			}
		}
		if code == 0 && len(a.ranges) == 0 {
			continue
		}
		rp := shareFetchPart(f.resp, tg.tp.topicID, tg.tp.partition)
		rp.ErrorCode = code
		if code != 0 {
			continue
		}
		rp.Records = append(rp.Records, a.records...)
		for _, r := range splitRanges(a.ranges, f.req) {
			ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
			ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = r.First, r.Last, r.DeliveryCount
			rp.AcquiredRecords = append(rp.AcquiredRecords, ar)
			f.acquired += int(r.Last - r.First + 1)
		}
		budget -= len(a.records)
	}
	return f.acquired
}

// splitRanges cuts acquired ranges at the request's BatchSize in the
// batch-optimized mode (KIP-1206), as Kafka answers them.
func splitRanges(rs []share.AcquiredRange, req *kmsg.ShareFetchRequest) []share.AcquiredRange {
	n := int64(req.BatchSize)
	if req.Version < 1 || n <= 0 || (req.Version >= 2 && req.ShareAcquireMode != 0) {
		return rs
	}
	var out []share.AcquiredRange
	for _, r := range rs {
		for o := r.First; o <= r.Last; o += n {
			out = append(out, share.AcquiredRange{First: o, Last: min(o+n-1, r.Last), DeliveryCount: r.DeliveryCount})
		}
	}
	return out
}

// wait long-polls until records are acquired, the wait ends, or the
// broker stops: it looks again whenever a target's high watermark moves
// or records are released anywhere on this node.
func (f *shareFetch) wait(ctx context.Context, maxWait time.Duration) {
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	logWake := make(chan struct{}, 1)
	for {
		released := f.b.share.wakeCh()
		cancels := make([]func(), 0, len(f.targets))
		for _, tg := range f.targets {
			cancels = append(cancels, tg.log.AddWaiter(logWake))
		}
		got := f.run(ctx)
		if got == 0 {
			select {
			case <-logWake:
			case <-released:
			case <-deadline.C:
				got = -1
			case <-f.b.shutdown:
				got = -1
			case <-ctx.Done():
				got = -1
			}
		}
		for _, c := range cancels {
			c()
		}
		if got != 0 {
			return
		}
		select {
		case <-logWake:
		default:
		}
	}
}

// finish adds the session's partitions not answered yet since they
// joined it, and the endpoints of the leaders named in hints, and marks
// the session's partitions answered.
func (f *shareFetch) finish() {
	for tp, needs := range f.parts {
		if needs {
			shareFetchPart(f.resp, tp.topicID, tp.partition)
		}
	}
	sent := map[shareTP]bool{}
	for _, t := range f.resp.Topics {
		for _, p := range t.Partitions {
			sent[shareTP{t.TopicID, p.Partition}] = true
		}
	}
	f.b.share.sessions.answered(shareSessionKey{f.group, f.member}, sent)
	for id := range f.leaders {
		br, ok := f.b.store.FSM().Broker(id)
		if !ok {
			continue
		}
		host, port, ok := f.b.clientEndpoint(br, f.rc)
		if !ok {
			continue
		}
		ne := kmsg.NewShareFetchResponseNodeEndpoint()
		ne.NodeID, ne.Host, ne.Port = id, host, port
		if br.Rack != "" {
			rack := br.Rack
			ne.Rack = &rack
		}
		f.resp.NodeEndpoints = append(f.resp.NodeEndpoints, ne)
	}
}

// shareIsolationCommitted reports whether group reads read_committed
// (share.isolation.level); the broker default is read_uncommitted.
func (b *Broker) shareIsolationCommitted(group string) bool {
	return b.groupConfig(group, "share.isolation.level") == "read_committed" // groupconfig.go
}
