package broker

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// Incremental fetch sessions (KIP-227). A client (or a follower's replica
// fetcher) that asks for one (SessionID 0, SessionEpoch 0) gets a session
// ID with its full response; from then on it names only the partitions
// whose fetch position changed, and the broker answers only the partitions
// that have something new: records, a moved high watermark or log start
// offset, or an error. A consumer or follower of thousands of quiet
// partitions then sends and receives a few bytes per fetch instead of an
// entry per partition. For a consumer's session the broker still reads
// every session partition on each fetch (and long-polls on all of them),
// as Kafka does; a follower's session (fetch_replica.go) is visited only
// where something changed.
//
// Sessions live in memory on the node that created them; a client whose
// session is gone (restart, eviction) gets FETCH_SESSION_ID_NOT_FOUND and
// starts over with a full fetch. At most kafka.fetch-session-cache-slots
// sessions are kept; a new one evicts the least recently used, or one idle
// for sessionIdleEviction.

const sessionIdleEviction = 2 * time.Minute

// sessionKey names a partition as the client does: by topic ID (Fetch
// v13+) or by name (earlier versions).
type sessionKey struct {
	topic     string
	id        [16]byte
	partition int32
}

// sessionPart is what a session holds for one partition: the client's
// fetch position and what the last response told it.
type sessionPart struct {
	fetchOffset, logStartOffset int64
	// ackOffset: what a follower's fetch acknowledges, its fetch offset
	// or the lower durable offset it reported (replica.AckOffset).
	ackOffset             int64
	maxBytes, leaderEpoch int32
	lastFetchedEpoch      int32
	sent                  bool // a response has carried it
	hw, lso, logStart     int64

	// A follower's session only (fetch_replica.go), under the session's
	// mu unless noted.
	key      sessionKey
	tp       storage.TopicPartition // resolved by the last visit
	log      *storage.Log           // the log watched (nil: none)
	unwatch  func()                 // ends the watch of log
	attached bool                   // FetchedIn took it: Forgot when it leaves
	inRound  bool                   // visited in the round in progress
	dirty    bool                   // queued in replicaState.dirty (under its dmu)
	gone     bool                   // forgotten (under replicaState.dmu)
}

// fetchSession is one client's session.
type fetchSession struct {
	id int32

	mu       sync.Mutex
	epoch    int32 // the next request's SessionEpoch
	parts    map[sessionKey]*sessionPart
	order    []sessionKey // insertion order, for stable requests
	topics   int          // topics the last requestTopics returned (a size hint)
	lastUsed time.Time
	// rs is the leader's state of a follower's session (nil for a
	// consumer's; fetch_replica.go).
	rs *replicaState
}

// fetchSessions is the node's session cache.
type fetchSessions struct {
	slots int
	// repl, if set, gives followers' sessions their rounds' timing
	// (fetch_replica.go); without it they are served like consumers'.
	repl sessionReplication

	mu   sync.Mutex
	byID map[int32]*fetchSession
}

func newFetchSessions(slots int) *fetchSessions {
	return &fetchSessions{slots: slots, byID: map[int32]*fetchSession{}}
}

// begin resolves req's session fields (KIP-227): for an incremental fetch
// it folds the request into the session and rewrites req.Topics to every
// partition the session holds, so the fetch goes on as a full one. sess is
// nil for a sessionless fetch; full reports that the response carries
// every partition (a new session, or none). A non-zero code is the
// request-level error to answer with.
func (c *fetchSessions) begin(req *kmsg.FetchRequest, now time.Time) (sess *fetchSession, full bool, code int16) {
	if req.Version < 7 {
		return nil, true, 0
	}
	id, epoch := req.SessionID, req.SessionEpoch
	switch {
	case epoch == -1: // sessionless; closes the named session
		if id != 0 {
			c.remove(id)
		}
		return nil, true, 0
	case epoch == 0: // a new session (closing the named one)
		if id != 0 {
			c.remove(id)
		}
		s := c.create(now)
		if s == nil {
			return nil, true, 0 // no room: a sessionless answer
		}
		s.mu.Lock()
		if req.ReplicaID >= 0 && c.repl != nil {
			s.rs = newReplicaState(c.repl, req.ReplicaID)
		}
		s.merge(req)
		s.epoch = 1
		s.mu.Unlock()
		return s, true, 0
	case id == 0:
		return nil, false, kerr.InvalidFetchSessionEpoch.Code
	}
	c.mu.Lock()
	s := c.byID[id]
	c.mu.Unlock()
	if s == nil || (s.rs != nil) != (req.ReplicaID >= 0 && c.repl != nil) || (s.rs != nil && s.rs.replica != req.ReplicaID) {
		return nil, false, kerr.FetchSessionIDNotFound.Code
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		return nil, false, kerr.InvalidFetchSessionEpoch.Code
	}
	s.epoch = nextSessionEpoch(s.epoch)
	s.lastUsed = now
	s.merge(req)
	for _, ft := range req.ForgottenTopics {
		for _, p := range ft.Partitions {
			s.forget(sessionKey{topic: ft.Topic, id: ft.TopicID, partition: p})
		}
	}
	if s.rs == nil {
		req.Topics = s.requestTopics()
	}
	return s, false, 0
}

func nextSessionEpoch(e int32) int32 {
	if e == math.MaxInt32 {
		return 1
	}
	return e + 1
}

// create adds a session, evicting one if the cache is full; nil if
// sessions are off.
func (c *fetchSessions) create(now time.Time) *fetchSession {
	if c.slots <= 0 {
		return nil
	}
	var ended []*fetchSession
	defer func() {
		for _, s := range ended {
			s.close()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byID) >= c.slots {
		var lru *fetchSession
		var lruAt time.Time
		for _, s := range c.byID {
			s.mu.Lock()
			at := s.lastUsed
			s.mu.Unlock()
			if lru == nil || at.Before(lruAt) {
				lru, lruAt = s, at
			}
		}
		delete(c.byID, lru.id)
		ended = append(ended, lru)
	}
	for id, s := range c.byID {
		s.mu.Lock()
		idle := now.Sub(s.lastUsed) >= sessionIdleEviction
		s.mu.Unlock()
		if idle {
			delete(c.byID, id)
			ended = append(ended, s)
		}
	}
	id := rand.Int32()
	for id == 0 || c.byID[id] != nil {
		id = rand.Int32()
	}
	s := &fetchSession{id: id, parts: map[sessionKey]*sessionPart{}, lastUsed: now}
	c.byID[id] = s
	return s
}

func (c *fetchSessions) remove(id int32) {
	c.mu.Lock()
	s := c.byID[id]
	delete(c.byID, id)
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
}

// len is the number of cached sessions.
func (c *fetchSessions) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

// merge adds or updates the request's partitions. s.mu held.
func (s *fetchSession) merge(req *kmsg.FetchRequest) {
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			k := sessionKey{topic: rt.Topic, id: rt.TopicID, partition: rp.Partition}
			p := s.parts[k]
			if p == nil {
				p = &sessionPart{key: k}
				s.parts[k] = p
				s.order = append(s.order, k)
			}
			p.fetchOffset, p.logStartOffset, p.ackOffset = rp.FetchOffset, rp.LogStartOffset, replica.AckOffset(&rp)
			p.maxBytes, p.leaderEpoch, p.lastFetchedEpoch = rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LastFetchedEpoch
			if s.rs != nil {
				s.rs.mark(p, false) // its position changed: visit it this round
			}
		}
	}
}

// forget drops a partition. s.mu held.
func (s *fetchSession) forget(k sessionKey) {
	p, ok := s.parts[k]
	if !ok {
		return
	}
	if s.rs != nil {
		s.rs.release(p)
	}
	delete(s.parts, k)
	for i, o := range s.order {
		if o == k {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// requestTopics is every session partition as request topics, grouped by
// topic in the order they joined. s.mu held.
func (s *fetchSession) requestTopics() []kmsg.FetchRequestTopic {
	type topicKey struct {
		topic string
		id    [16]byte
	}
	out := make([]kmsg.FetchRequestTopic, 0, s.topics)
	at := make(map[topicKey]int, s.topics)
	for _, k := range s.order {
		p := s.parts[k]
		tk := topicKey{k.topic, k.id}
		i, ok := at[tk]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = k.topic, k.id
			out = append(out, rt)
			i = len(out) - 1
			at[tk] = i
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = k.partition
		rp.FetchOffset, rp.LogStartOffset = p.fetchOffset, p.logStartOffset
		rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LastFetchedEpoch = p.maxBytes, p.leaderEpoch, p.lastFetchedEpoch
		out[i].Partitions = append(out[i].Partitions, rp)
	}
	s.topics = len(out)
	return out
}

// filter records what resp tells the client and, for an incremental
// response (full false), drops the partitions with nothing new for it:
// no records, no error, no preferred replica, and the same high
// watermark, last stable offset and log start offset as last time.
// hasData reports whether a partition carries records (possibly as a file
// section). It returns, for each kept partition, its new address (the
// response's partition arrays are rebuilt).
func (s *fetchSession) filter(resp *kmsg.FetchResponse, full bool, hasData func(*kmsg.FetchResponseTopicPartition) bool) map[*kmsg.FetchResponseTopicPartition]*kmsg.FetchResponseTopicPartition {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := map[*kmsg.FetchResponseTopicPartition]*kmsg.FetchResponseTopicPartition{}
	topics := resp.Topics[:0]
	for ti := range resp.Topics {
		rt := &resp.Topics[ti]
		kept := make([]kmsg.FetchResponseTopicPartition, 0, len(rt.Partitions))
		keptFrom := make([]*kmsg.FetchResponseTopicPartition, 0, len(rt.Partitions))
		for pi := range rt.Partitions {
			sp := &rt.Partitions[pi]
			p := s.parts[sessionKey{topic: rt.Topic, id: rt.TopicID, partition: sp.Partition}]
			changed := p == nil || !p.sent || hasData(sp) || sp.ErrorCode != 0 || sp.PreferredReadReplica >= 0 ||
				sp.HighWatermark != p.hw || sp.LastStableOffset != p.lso || sp.LogStartOffset != p.logStart
			if p != nil {
				p.sent, p.hw, p.lso, p.logStart = true, sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset
			}
			if full || changed {
				kept = append(kept, *sp)
				keptFrom = append(keptFrom, sp)
			}
		}
		if len(kept) == 0 && !full {
			continue
		}
		nt := *rt
		nt.Partitions = kept
		topics = append(topics, nt)
		last := &topics[len(topics)-1]
		for i, from := range keptFrom {
			moved[from] = &last.Partitions[i]
		}
	}
	resp.Topics = topics
	resp.SessionID = s.id
	return moved
}
