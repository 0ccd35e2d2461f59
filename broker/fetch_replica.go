package broker

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// A follower's fetch session, on the leader (docs/io-and-scale.md,
// "Scale"). A follower of thousands of quiet partitions fetches them all
// in one session; a round visits (looks up, acknowledges with
// replica.Manager.FetchedIn, reads, answers) only the partitions with
// news, so an idle node's cost does not grow with its partition count:
//   - a partition the request names (its fetch position or epoch moved)
//     is visited in that round;
//   - each visited partition's log is watched (storage.Log.Watch): a
//     moved log end, high watermark or log start, or a closed or fenced
//     log, queues it and wakes the session's long poll, which then visits
//     what was queued (one wake-up per session, no waiter per partition);
//   - a partition the round answered with an error, whose follower is
//     still behind the log end after the answer, or whose high watermark
//     stayed below what the followers hold (no live lease, or the leader's
//     own durable offset behind), stays queued for the next round;
//   - each round counts as the follower's fetch of every partition the
//     session holds (replica.FetchRounds), so an idle, caught-up partition
//     does not lag, and a follower that stops fetching still does.
// A partition not visited would have been dropped from the incremental
// answer anyway: nothing the answer carries for it changed.

// sessionReplication is what followers' sessions need of the replica
// manager.
type sessionReplication interface {
	NewFetchRounds() *replica.FetchRounds
	FetchRound(r *replica.FetchRounds)
	FetchedIn(tp storage.TopicPartition, replica int32, offset, logStart int64, r *replica.FetchRounds) (ok, frozen bool)
	Forgot(tp storage.TopicPartition, replica int32, r *replica.FetchRounds)
}

// replicaState is the leader's state of one follower's session.
type replicaState struct {
	repl    sessionReplication
	replica int32
	rounds  *replica.FetchRounds
	wake    chan struct{} // capacity 1: something was queued
	// closed: the session ended (close); a round still in progress
	// visits nothing more. Under the session's mu.
	closed bool

	// dmu guards dirty and every part's dirty and gone. Log watches take
	// it under the log's lock: nothing holding it calls into a log.
	dmu   sync.Mutex
	dirty []*sessionPart
}

func newReplicaState(repl sessionReplication, id int32) *replicaState {
	return &replicaState{repl: repl, replica: id, rounds: repl.NewFetchRounds(), wake: make(chan struct{}, 1)}
}

// mark queues p for a visit; wake also ends the session's long poll.
func (rs *replicaState) mark(p *sessionPart, wake bool) {
	rs.dmu.Lock()
	if !p.dirty && !p.gone {
		p.dirty = true
		rs.dirty = append(rs.dirty, p)
	}
	rs.dmu.Unlock()
	if wake {
		select {
		case rs.wake <- struct{}{}:
		default:
		}
	}
}

// take returns the queued partitions and empties the queue.
func (rs *replicaState) take() []*sessionPart {
	rs.dmu.Lock()
	defer rs.dmu.Unlock()
	out := rs.dirty
	rs.dirty = nil
	kept := out[:0]
	for _, p := range out {
		p.dirty = false
		if !p.gone {
			kept = append(kept, p)
		}
	}
	return kept
}

// release ends p's watch and attachment (it left the session). The
// session's mu held.
func (rs *replicaState) release(p *sessionPart) {
	rs.dmu.Lock()
	p.gone = true
	rs.dmu.Unlock()
	if p.unwatch != nil {
		p.unwatch()
		p.unwatch, p.log = nil, nil
	}
	if p.attached {
		rs.repl.Forgot(p.tp, rs.replica, rs.rounds)
		p.attached = false
	}
}

// close releases every partition of a session that ended.
func (s *fetchSession) close() {
	if s.rs == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rs.closed = true
	for _, p := range s.parts {
		s.rs.release(p)
	}
}

// visited is a partition a round looked at, in its answer.
type visited struct {
	p      *sessionPart
	sp     *kmsg.FetchResponseTopicPartition
	part   int  // index in the round's fetchParts, -1: answered with an error
	frozen bool // FetchedIn: the high watermark waits for a lease
}

// replicaRound is one fetch of a follower's session.
type replicaRound struct {
	b       *Broker
	req     *kmsg.FetchRequest
	sess    *fetchSession
	visited []visited
	parts   []fetchPart
}

// visit looks up, acknowledges and watches the partitions ps (not yet in
// this round) and adds them to the round.
func (r *replicaRound) visit(ps []*sessionPart) {
	b, s, rs := r.b, r.sess, r.sess.rs
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs.closed {
		return // nothing is watched or attached for a session that ended
	}
	n := 0
	for _, p := range ps {
		if !p.inRound && s.parts[p.key] == p {
			n++
		}
	}
	if n == 0 {
		return
	}
	chunk := make([]kmsg.FetchResponseTopicPartition, n) // r.visited points into it
	i := 0
	for _, p := range ps {
		if p.inRound || s.parts[p.key] != p {
			continue // visited already, or forgotten since it was queued
		}
		p.inRound = true
		sp := &chunk[i]
		i++
		*sp = kmsg.NewFetchResponseTopicPartition()
		sp.Partition = p.key.partition
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
		sp.PreferredReadReplica = -1
		v := visited{p: p, sp: sp, part: -1}
		var name string
		var ok bool
		if r.req.Version >= 13 {
			name, ok = b.store.FSM().TopicNameByID(metadata.TopicID(p.key.id))
		} else {
			name, ok = p.key.topic, b.store.FSM().HasTopic(p.key.topic)
		}
		if !ok {
			sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if r.req.Version >= 13 {
				sp.ErrorCode = kerr.UnknownTopicID.Code
			}
			r.visited = append(r.visited, v)
			continue
		}
		tp := b.tp(name, p.key.partition)
		if p.attached && p.tp != tp {
			rs.repl.Forgot(p.tp, rs.replica, rs.rounds)
			p.attached = false
		}
		p.tp = tp
		l, code, epoch := b.partitionLogEpoch(name, p.key.partition)
		if code == 0 {
			code = checkLeaderEpoch(p.leaderEpoch, epoch)
		}
		if code == 0 {
			var accepted bool
			accepted, v.frozen = rs.repl.FetchedIn(tp, rs.replica, p.ackOffset, p.logStartOffset, rs.rounds)
			if accepted {
				p.attached = true
			} else {
				code = kerr.NotLeaderForPartition.Code // not a replica of this partition
			}
		}
		sp.ErrorCode = code
		if code == 0 {
			if l != p.log {
				// Watched before it is read: whatever moves after the
				// read queues it again.
				if p.unwatch != nil {
					p.unwatch()
				}
				p.log = l
				p.unwatch = l.Watch(func() { rs.mark(p, true) })
			}
			v.part = len(r.parts)
			r.parts = append(r.parts, fetchPart{resp: sp, log: l, tp: tp, offset: p.fetchOffset, max: int(p.maxBytes), replica: true, epoch: epoch, sealedEnd: -1, sealedStable: -1})
		}
		r.visited = append(r.visited, v)
	}
}

// handleReplicaSession serves a fetch of a follower's session (see
// above); full: a new session, every partition named and answered.
func (b *Broker) handleReplicaSession(rc *request, req *kmsg.FetchRequest, sess *fetchSession, full bool) (kmsg.Response, func() kmsg.Response) {
	rs := sess.rs
	b.repl.FetchRound(rs.rounds)
	r := &replicaRound{b: b, req: req, sess: sess}
	r.visit(rs.take())
	maxWait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	sections := rc.conn.sendfile && !b.sendfileOff.Load()
	// ready: enough bytes to answer, or a partition whose leadership
	// moved (answered at once, as Kafka completes a delayed fetch then).
	rf := func() bool {
		n, moved := b.readFetch(req, r.parts, sections)
		return moved || n >= int(req.MinBytes)
	}
	ready := rf()
	stop := b.nodesStop // a follower's poll ends once the clients drained
	sess.mu.Lock()
	everything := len(r.visited) == len(sess.parts)
	sess.mu.Unlock()
	// Nothing healthy to wait on: answer the errors at once.
	if ready || maxWait <= 0 || closed(stop) || (len(r.parts) == 0 && everything) {
		return r.done(full), nil
	}
	return nil, func() kmsg.Response {
		deadline := time.NewTimer(maxWait)
		defer deadline.Stop()
		for {
			// The poll also ends when this node starts leading a
			// segment (replica.Manager.LeadershipStarted): the
			// follower's next fetch may name it.
			select {
			case <-rs.wake:
				r.visit(rs.take())
				if rf() {
					return r.done(full)
				}
				continue
			case <-deadline.C:
			case <-b.repl.LeadershipStarted():
			case <-stop:
			}
			rf()
			return r.done(full)
		}
	}
}

// done builds the round's answer from the partitions it visited and
// queues for the next round those that must be looked at again.
func (r *replicaRound) done(full bool) kmsg.Response {
	resp := kmsg.NewPtrFetchResponse()
	replica.MarkDurableAware(resp) // FetchedIn took the durable offsets
	type topicKey struct {
		topic string
		id    [16]byte
	}
	at := make(map[topicKey]int, len(r.visited))
	counts := make([]int, 0, len(r.visited))
	for _, v := range r.visited {
		k := topicKey{v.p.key.topic, v.p.key.id}
		i, ok := at[k]
		if !ok {
			i = len(counts)
			at[k] = i
			counts = append(counts, 0)
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = k.topic, k.id
			resp.Topics = append(resp.Topics, rt)
		}
		counts[i]++
	}
	for i := range resp.Topics {
		resp.Topics[i].Partitions = make([]kmsg.FetchResponseTopicPartition, 0, counts[i])
	}
	for _, v := range r.visited {
		i := at[topicKey{v.p.key.topic, v.p.key.id}]
		rt := &resp.Topics[i]
		rt.Partitions = append(rt.Partitions, *v.sp)
		if v.part >= 0 {
			r.parts[v.part].resp = &rt.Partitions[len(rt.Partitions)-1]
		}
	}
	// Before fetchDone: it may hand the parts' sections on to be sent.
	rs := r.sess.rs
	r.sess.mu.Lock()
	for _, v := range r.visited {
		v.p.inRound = false
		switch {
		case v.part < 0 || v.sp.ErrorCode != 0 || v.frozen:
			// Looked at again next round, as every partition was.
			rs.mark(v.p, false)
		default:
			p := &r.parts[v.part]
			if next := max(p.next, p.offset); next < p.log.LogEndOffset() {
				rs.mark(v.p, true) // more to copy: the next round answers at once
			}
		}
	}
	r.sess.mu.Unlock()
	return r.b.fetchDone(resp, r.parts, r.sess, full)
}
