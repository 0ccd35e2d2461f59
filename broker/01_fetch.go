package broker

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// Fetch 4-13, with incremental fetch sessions (KIP-227, fetch_session.go)
// from v7. v13 names topics by ID.
func apiFetch() api {
	return api{key: kmsg.Fetch, min: 4, max: 13, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		resp, deferred := b.handleFetch(rc, rc.req.(*kmsg.FetchRequest))
		if rc.conn.node {
			return resp, deferred // another node's: no client quota
		}
		// consumer_byte_rate (quota.go): the bytes answered count.
		throttled := func(r kmsg.Response) kmsg.Response {
			fr, n := fetchBytes(r)
			if fr == nil {
				return r
			}
			if d := b.quotas.throttle(b.store.FSM(), metadata.QuotaConsumerByteRate, rc.conn.principal().Name, rc.hdr.ClientID, float64(n), time.Now()); d > 0 {
				fr.ThrottleMillis = throttleMillis(d)
				rc.conn.mute(d)
			}
			return r
		}
		if deferred != nil {
			return resp, func() kmsg.Response { return throttled(deferred()) }
		}
		return throttled(resp), nil
	}}
}

// fetchPart is one requested partition, resolved.
type fetchPart struct {
	resp    *kmsg.FetchResponseTopicPartition
	log     *storage.Log
	tp      storage.TopicPartition
	offset  int64
	max     int
	replica bool // a follower's fetch: reads up to the log end offset
	// epoch: for a follower's fetch, the epoch of the active segment
	// this node led when the partition was looked up. Each read first
	// checks that it still leads it (stillLeads), as Kafka re-checks
	// leadership when a delayed fetch completes: a long poll that
	// outlives a roll must not hand the follower what this node has
	// since copied from the next segment's leader.
	epoch int32
	// sealedEnd >= 0: a consumer fetch this node serves as a replica of a
	// sealed segment ending there (sealed_reads.go); reads stop at it.
	sealedEnd int64
	// sealedStable is that segment's Segment.StableEnd (read_committed
	// reads of it stop there).
	sealedStable int64
	// sec holds the partition's records instead of resp.RecordBatches
	// when they are served from the segment file (sendfile).
	sec *storage.Section
	// next is the offset after the last batch returned (0: none), for
	// the records-out metrics.
	next int64
	// committed: a read_committed consumer's fetch (isolation_level 1):
	// records end below the last stable offset and the answer lists the
	// aborted transactions of the range.
	committed bool
}

func (b *Broker) handleFetch(rc *request, req *kmsg.FetchRequest) (kmsg.Response, func() kmsg.Response) {
	resp := kmsg.NewPtrFetchResponse()
	var parts []fetchPart
	fromFollower := req.ReplicaID >= 0
	if fromFollower && (!rc.conn.node || !b.replicaPeerOK(rc.conn, req.ReplicaID)) {
		// Replica fetches are node traffic (internal_kafka.go): one on a
		// client listener, or with node TLS from another node than its
		// ReplicaID (internal_tls.go), moves no high watermark and
		// registers no learner.
		refuseReplicaFetch(req, resp)
		return resp, nil
	}
	if fromFollower {
		replica.MarkDurableAware(resp) // Fetched below takes the durable offsets
	}
	// An incremental fetch becomes a full one over the session's
	// partitions here; fetchDone drops what has not changed.
	sess, full, code := b.fetchSessions.begin(req, time.Now())
	if code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	if sess != nil && sess.rs != nil {
		return b.handleReplicaSession(rc, req, sess, full) // fetch_replica.go
	}
	// read_committed (v4+): a consumer's fetch reads below the last
	// stable offset (docs/transactions.md).
	committed := !fromFollower && req.IsolationLevel == 1
	// Sized up front: a follower's session of thousands of partitions
	// grew these by doubling every round (most of an idle node's
	// allocation; docs/io-and-scale.md, "Scale").
	n := 0
	for _, rt := range req.Topics {
		n += len(rt.Partitions)
	}
	parts = make([]fetchPart, 0, n)
	resp.Topics = make([]kmsg.FetchResponseTopic, 0, len(req.Topics))
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		var topic metadata.Topic
		var ok bool
		switch {
		case fromFollower:
			// A replica fetch needs only the name and each partition's
			// leader epoch (read below): no copy of the topic, which a
			// fetcher's request carrying thousands of partitions would
			// make per topic every round.
			if req.Version >= 13 {
				topic.Name, ok = b.store.FSM().TopicNameByID(metadata.TopicID(rt.TopicID))
			} else {
				topic.Name, ok = rt.Topic, b.store.FSM().HasTopic(rt.Topic)
			}
		case req.Version >= 13:
			topic, ok = b.store.FSM().TopicByID(metadata.TopicID(rt.TopicID))
		default:
			topic, ok = b.store.FSM().Topic(rt.Topic)
		}
		// A consumer needs READ on the topic (checked before whether it
		// exists, when named; an unknown topic ID is answered as such).
		var denied int16
		if !fromFollower {
			switch {
			case ok:
				denied = rc.topicDenied(auth.OpRead, topic.Name)
			case req.Version < 13:
				denied = rc.topicDenied(auth.OpRead, rt.Topic)
			}
		}
		// Sized up front: parts keep pointers into this array.
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			sp := &st.Partitions[i]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark = -1
			sp.LastStableOffset = -1
			sp.LogStartOffset = -1
			sp.PreferredReadReplica = -1
			if denied != 0 {
				sp.ErrorCode = denied
				continue
			}
			if !ok {
				if req.Version >= 13 {
					sp.ErrorCode = kerr.UnknownTopicID.Code
				} else {
					sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				}
				continue
			}
			l, code, epoch := b.partitionLogEpoch(topic.Name, rp.Partition)
			leader := int32(-1) // used by client fetches only
			if !fromFollower {
				leader, epoch = topic.Leader(rp.Partition)
			}
			sealedEnd, sealedStable := int64(-1), int64(-1)
			if code == kerr.NotLeaderForPartition.Code && !fromFollower {
				// Not the leader: serve a sealed range held here, or
				// point the consumer at the leader (sealed_reads.go).
				if sr, ok := b.sealedSource(topic, rp.Partition, rp.FetchOffset); ok && (!committed || sealedCommittedEnd(sr.log, sr.seg) > rp.FetchOffset) {
					l, code, sealedEnd, sealedStable = sr.log, 0, sr.seg.EndOffset, sr.seg.StableEnd()
				} else if req.Version >= 11 && req.Rack != "" && leader >= 0 && leader != b.cfg.NodeID && topic.Parts[rp.Partition].Active().State == metadata.SegmentActive && b.reachable(leader, rc.conn) {
					// Only a client that opted into KIP-392 (it sent
					// a rack) is told where to go; others get
					// NOT_LEADER_OR_FOLLOWER and refresh their
					// metadata, as they expect.
					sp.PreferredReadReplica = leader
					continue
				}
			}
			if code == 0 {
				code = checkLeaderEpoch(rp.CurrentLeaderEpoch, epoch)
			}
			if code == 0 && !fromFollower && sealedEnd < 0 && req.Version >= 11 {
				if pr := b.preferredReplica(rc.conn, topic, rp.Partition, rp.FetchOffset, req.Rack, committed); pr >= 0 {
					sp.PreferredReadReplica = pr
					sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = l.HighWatermark(), l.HighWatermark(), l.LogStartOffset()
					if committed {
						sp.LastStableOffset = l.LastStableOffset()
					}
					continue
				}
			}
			tp := b.tp(topic.Name, rp.Partition)
			if code == 0 && fromFollower && !b.repl.Fetched(tp, req.ReplicaID, replica.AckOffset(&rp), rp.LogStartOffset) {
				code = kerr.NotLeaderForPartition.Code // not a replica of this partition
			}
			sp.ErrorCode = code
			if code == 0 {
				parts = append(parts, fetchPart{resp: sp, log: l, tp: tp, offset: rp.FetchOffset, max: int(rp.PartitionMaxBytes), replica: fromFollower, epoch: epoch, sealedEnd: sealedEnd, sealedStable: sealedStable, committed: committed})
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	maxWait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	// ready: enough bytes to answer, or a follower's partition whose
	// leadership moved (answered at once, as Kafka completes a delayed
	// fetch then).
	rf := func() bool {
		n, moved := b.readFetch(req, parts, rc.conn.sendfile && !b.sendfileOff.Load())
		return moved || n >= int(req.MinBytes)
	}
	ready := rf()
	done := func() kmsg.Response { return b.fetchDone(resp, parts, sess, full) }
	// A long poll ends at shutdown: a client's when Close begins, a
	// follower's once the clients drained (its fetches still move the
	// high watermark for the acks=all produces in flight).
	stop := b.shutdown
	if rc.conn.node {
		stop = b.nodesStop
	}
	if ready || maxWait <= 0 || len(parts) == 0 || closed(stop) {
		return done(), nil
	}
	return nil, func() kmsg.Response {
		deadline := time.NewTimer(maxWait)
		defer deadline.Stop()
		wake := make(chan struct{}, 1)
		// Each pass registers wake on every log and unregisters it when
		// the pass ends, woken or not, so a poll that times out leaves no
		// waiter behind on an idle partition.
		cancels := make([]func(), 0, len(parts))
		unregister := func() {
			for _, cancel := range cancels {
				cancel()
			}
			cancels = cancels[:0]
		}
		defer unregister()
		for {
			// A follower's poll also ends when this node starts leading
			// a segment (replica.Manager.LeadershipStarted).
			var newLeader <-chan struct{}
			if fromFollower {
				newLeader = b.repl.LeadershipStarted()
			}
			for _, p := range parts {
				// On a replicated log this also wakes when the log end
				// offset grows, which is what a follower waits for.
				cancels = append(cancels, p.log.AddWaiter(wake))
			}
			// Re-check after registering so an append racing with the
			// first read is not missed.
			if rf() {
				return done()
			}
			select {
			case <-wake:
			case <-deadline.C:
				rf()
				return done()
			case <-newLeader:
				rf()
				return done()
			case <-stop:
				rf()
				return done()
			}
			unregister()
			// A second log may have signalled meanwhile; the re-check
			// after the next registration covers it.
			select {
			case <-wake:
			default:
			}
		}
	}
}

// readFetch fills every partition's records and offsets from its log and
// returns the total bytes, honouring the request and partition limits;
// moved: a follower's partition that this node no longer leads at the
// fetch's epoch (stillLeads), answered with an error and no records.
// With sections, records come back as file sections to be sent with
// sendfile (storage.Log.ReadSection) rather than copied into memory.
func (b *Broker) readFetch(req *kmsg.FetchRequest, parts []fetchPart, sections bool) (total int, moved bool) {
	budget := int(req.MaxBytes)
	if budget <= 0 {
		budget = 50 << 20
	}
	for i := range parts {
		p := &parts[i]
		sp := p.resp
		sp.ErrorCode = 0
		// Empty, never null: librdkafka rejects a null record set
		// ("invalid MessageSetSize -1").
		sp.RecordBatches = noRecords
		p.closeSection(b)
		if p.replica {
			if code := b.stillLeads(p.tp, p.epoch); code != 0 {
				sp.ErrorCode = code
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
				moved = true
				continue
			}
		}
		limit := min(p.max, budget-total)
		var res storage.ReadResult
		var err error
		switch {
		case p.sealedEnd >= 0:
			// The sealed range is committed; this log's own high
			// watermark may lag behind the leader's. read_committed
			// stops at the segment's first unstable offset
			// (sealedCommittedEnd).
			end := p.sealedEnd
			if p.committed {
				end = committedEnd(p.log, p.sealedStable)
			}
			res, err = p.log.ReadUncommitted(p.offset, max(limit, 0), total == 0)
			res.Data = trimTo(res.Data, end)
			res.HighWatermark = max(res.HighWatermark, p.sealedEnd)
			res.LastStableOffset = end
		case p.committed && sections:
			res, err = p.log.ReadSectionCommitted(p.offset, max(limit, 0), total == 0)
		case p.committed:
			res, err = p.log.ReadCommitted(p.offset, max(limit, 0), total == 0)
		case p.replica && sections:
			res, err = p.log.ReadSectionUncommitted(p.offset, max(limit, 0), total == 0)
		case p.replica:
			res, err = p.log.ReadUncommitted(p.offset, max(limit, 0), total == 0)
		case sections:
			res, err = p.log.ReadSection(p.offset, max(limit, 0), total == 0)
		default:
			res, err = p.log.Read(p.offset, max(limit, 0), total == 0)
		}
		// Read reports the offsets with an out-of-range error too.
		sp.HighWatermark = res.HighWatermark
		sp.LastStableOffset = res.HighWatermark
		if p.committed {
			sp.LastStableOffset = res.LastStableOffset
		}
		sp.LogStartOffset = res.LogStartOffset
		sp.AbortedTransactions = nil
		if err == nil && p.committed && p.offset < res.LastStableOffset {
			// Every aborted transaction overlapping [offset, LSO):
			// the records returned end below the LSO, and an entry
			// past them is harmless (clients filter by producer and
			// offset).
			var aborted []storage.AbortedTxn
			aborted, err = p.log.AbortedTransactions(p.offset, res.LastStableOffset)
			for _, a := range aborted {
				at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
				sp.AbortedTransactions = append(sp.AbortedTransactions, at)
			}
			if err != nil && res.Section != nil {
				if cerr := res.Section.Close(); cerr != nil {
					b.log.Warn().Err(cerr).Msg("fetch: close section")
				}
				res.Section = nil
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, storage.ErrOffsetOutOfRange):
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
			case errors.Is(err, storage.ErrClosed):
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			default:
				sp.ErrorCode = kerr.KafkaStorageError.Code
				b.log.Error().Err(err).Msg("fetch read failed")
			}
			continue
		}
		if res.Section != nil {
			p.sec = res.Section
			p.next = res.NextOffset
			total += int(res.Section.Len())
		} else if len(res.Data) > 0 {
			sp.RecordBatches = res.Data
			p.next = nextOffset(res.Data) // sealed reads trim Data
			total += len(res.Data)
		}
	}
	return total, moved
}

// closeSection drops the partition's section from an earlier read.
func (p *fetchPart) closeSection(b *Broker) {
	if p.sec == nil {
		return
	}
	if err := p.sec.Close(); err != nil {
		b.log.Warn().Err(err).Msg("fetch: close section")
	}
	p.sec = nil
}

// fetchDone records the bytes a final fetch response carries. In a fetch
// session it keeps only what the client has not been told (all of it for a
// full response). A response with file sections travels as a
// *splicedFetch, which the connection writes with sendfile.
func (b *Broker) fetchDone(resp *kmsg.FetchResponse, parts []fetchPart, sess *fetchSession, full bool) kmsg.Response {
	if sess != nil {
		withSection := make(map[*kmsg.FetchResponseTopicPartition]bool)
		for _, p := range parts {
			if p.sec != nil {
				withSection[p.resp] = true
			}
		}
		moved := sess.filter(resp, full, func(sp *kmsg.FetchResponseTopicPartition) bool {
			return len(sp.RecordBatches) > 0 || withSection[sp]
		})
		for i := range parts {
			// A partition dropped from the response has no
			// records, so no section, to send.
			parts[i].resp = moved[parts[i].resp]
		}
	}
	n := 0
	var secs []fetchSection
	for _, p := range parts {
		if p.resp == nil {
			continue
		}
		pn := len(p.resp.RecordBatches)
		if p.sec != nil {
			pn += int(p.sec.Len())
			secs = append(secs, fetchSection{part: p.resp, sec: p.sec})
		}
		n += pn
		if !p.replica {
			b.m.fetchedBy(p.tp, pn, max(p.next-p.offset, 0))
		}
	}
	b.m.fetchedBytes.Add(float64(n))
	if len(secs) > 0 {
		return &splicedFetch{FetchResponse: resp, secs: secs}
	}
	return resp
}

// nextOffset is the offset after the last of the whole batches in data
// (0 if none).
func nextOffset(data []byte) int64 {
	next := int64(0)
	_ = kafkaproto.SplitBatches(data, func(_ []byte, h kafkaproto.BatchHeader) error {
		next = h.LastOffset() + 1
		return nil
	})
	return next
}

// noRecords is an empty, non-nil record set.
var noRecords = []byte{}

// checkLeaderEpoch validates a client's CurrentLeaderEpoch (-1: unknown)
// against the partition's (its active segment's): an older one is
// FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one
// UNKNOWN_LEADER_EPOCH (this node's metadata is behind).
func checkLeaderEpoch(requested, current int32) int16 {
	switch {
	case requested < 0 || requested == current:
		return 0
	case requested < current:
		return kerr.FencedLeaderEpoch.Code
	default:
		return kerr.UnknownLeaderEpoch.Code
	}
}

// stillLeads reports, as a Kafka error code, whether this node still
// leads tp's active segment at epoch: 0 if it does, FENCED_LEADER_EPOCH
// if it leads a later one, NOT_LEADER_OR_FOLLOWER if another node leads
// (or none, failing over), UNKNOWN_TOPIC_OR_PARTITION if tp is gone.
func (b *Broker) stillLeads(tp storage.TopicPartition, epoch int32) int16 {
	leader, current, ok := b.store.FSM().PartitionLeader(tp.Topic, tp.Partition)
	switch {
	case !ok:
		return kerr.UnknownTopicOrPartition.Code
	case leader != b.cfg.NodeID:
		return kerr.NotLeaderForPartition.Code
	case current != epoch:
		return kerr.FencedLeaderEpoch.Code
	}
	return 0
}

// refuseReplicaFetch answers a Fetch with a ReplicaID from a client
// connection: CLUSTER_AUTHORIZATION_FAILED, for the request and every
// partition it names.
func refuseReplicaFetch(req *kmsg.FetchRequest, resp *kmsg.FetchResponse) {
	resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.PreferredReadReplica = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
}

// sealedCommittedEnd is where a read_committed fetch of sealed segment
// seg, served by a replica that does not lead the partition, must stop
// (docs/transactions.md, "Sealed segments"): below the segment's first
// unstable offset as the seal recorded it (Segment.StableEnd: its base
// when unknown, after a failover seal), so every transaction with
// records below that point ended inside the segment and this replica
// holds its marker (and, for an ABORT, its .txnindex entry). The first
// transaction this replica's own log has open bounds it too: it is never
// lower than the recorded value unless this log's producer state missed
// a transaction, and then the lower bound is the safe one. Beyond it the
// fetch goes to the leader (handleFetch), whose last stable offset
// covers the rest.
func sealedCommittedEnd(l *storage.Log, seg metadata.Segment) int64 {
	return committedEnd(l, seg.StableEnd())
}

// committedEnd is min(stable, the first offset of the oldest transaction
// l has open).
func committedEnd(l *storage.Log, stable int64) int64 {
	end := stable
	if open := l.OpenTransactions(); len(open) > 0 && open[0].FirstOffset < end {
		end = open[0].FirstOffset
	}
	return end
}
