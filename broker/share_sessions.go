package broker

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share sessions (KIP-932): one per (share group, member) on this node,
// holding the partitions the member fetches here and the session epoch,
// Kafka's ShareSessionEpoch rules: a ShareFetch with epoch 0 opens a
// session (replacing the member's previous one; SHARE_SESSION_LIMIT_REACHED
// beyond share.max-sessions; no acknowledgements allowed), then every
// ShareFetch or ShareAcknowledge carries the session's next epoch (1, 2,
// ...; INVALID_SHARE_SESSION_EPOCH otherwise, SHARE_SESSION_NOT_FOUND
// without a session) and adds its partitions / drops the forgotten ones;
// epoch -1 closes it (after its acknowledgements) and releases the
// member's records on the session's partitions, as does the connection's
// close.

// shareSessionKey names a share session.
type shareSessionKey struct{ group, member string }

// shareTP is a partition of a share session.
type shareTP struct {
	topicID   [16]byte
	partition int32
}

type shareSession struct {
	key  shareSessionKey
	conn *conn
	// epoch is the epoch the next request must carry.
	epoch int32
	// parts are the session's partitions; true while the partition has
	// not appeared in an answer since it was added (Kafka's
	// requiresUpdateInResponse).
	parts map[shareTP]bool
}

// shareSessions is this node's share-session cache.
type shareSessions struct {
	mu  sync.Mutex
	max int
	m   map[shareSessionKey]*shareSession
}

func (s *shareSessions) init(max int) {
	s.max = max
	s.m = map[shareSessionKey]*shareSession{}
}

// SHARE_SESSION_LIMIT_REACHED (Kafka 4.1; not in kerr yet).
const shareSessionLimitReached int16 = 133

// open replaces key's session by a new one over topics (epoch 0); the
// session then expects epoch 1. The caller checked there are no
// acknowledgements. It returns the copy of the session's partitions the
// request works on.
func (s *shareSessions) open(key shareSessionKey, c *conn, topics []kmsg.ShareFetchRequestTopic) (map[shareTP]bool, int16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	if len(s.m) >= s.max {
		return nil, shareSessionLimitReached
	}
	ss := &shareSession{key: key, conn: c, epoch: 1, parts: map[shareTP]bool{}}
	for _, t := range topics {
		for _, p := range t.Partitions {
			ss.parts[shareTP{t.TopicID, p.Partition}] = true
		}
	}
	s.m[key] = ss
	return clonePartSet(ss.parts), 0
}

// next checks a request's epoch against key's session and moves it on,
// adding topics and dropping forgotten; it returns the session's
// partitions after the change.
func (s *shareSessions) next(key shareSessionKey, c *conn, epoch int32, topics []kmsg.ShareFetchRequestTopic, forgotten []kmsg.ShareFetchRequestForgottenTopicsData) (map[shareTP]bool, int16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	if ss == nil {
		return nil, kerr.ShareSessionNotFound.Code
	}
	if epoch != ss.epoch {
		return nil, kerr.InvalidShareSessionEpoch.Code
	}
	ss.epoch++
	if ss.epoch < 1 {
		ss.epoch = 1
	}
	ss.conn = c
	for _, t := range topics {
		for _, p := range t.Partitions {
			tp := shareTP{t.TopicID, p.Partition}
			if _, ok := ss.parts[tp]; !ok {
				ss.parts[tp] = true
			}
		}
	}
	for _, f := range forgotten {
		for _, p := range f.Partitions {
			delete(ss.parts, shareTP{f.TopicID, p})
		}
	}
	return clonePartSet(ss.parts), 0
}

// answered records that the partitions of an answer were sent.
func (s *shareSessions) answered(key shareSessionKey, sent map[shareTP]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.m[key]; ss != nil {
		for tp := range sent {
			if _, ok := ss.parts[tp]; ok {
				ss.parts[tp] = false
			}
		}
	}
}

// remove closes key's session and returns its partitions (nil: none).
func (s *shareSessions) remove(key shareSessionKey) (map[shareTP]bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	if ss == nil {
		return nil, false
	}
	delete(s.m, key)
	return ss.parts, true
}

// live reports whether key's session is open and was last used on c: an
// answer being made for c can still reach its client.
func (s *shareSessions) live(key shareSessionKey, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	return ss != nil && ss.conn == c
}

// removeConn closes the sessions last used on c and returns them.
func (s *shareSessions) removeConn(c *conn) []*shareSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*shareSession
	for k, ss := range s.m {
		if ss.conn == c {
			out = append(out, ss)
			delete(s.m, k)
		}
	}
	return out
}

func clonePartSet(m map[shareTP]bool) map[shareTP]bool {
	out := make(map[shareTP]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// closeSession releases what key's member holds on the session's
// partitions here.
func (h *shareHost) closeSession(key shareSessionKey, parts map[shareTP]bool) {
	only := make(map[sharePartKey]bool, len(parts))
	for tp := range parts {
		only[sharePartKey{key.group, tp.topicID, tp.partition}] = true
	}
	h.releaseMember(h.b.reqCtx, key.group, key.member, only)
}

// connClosed closes the share sessions last used on c (Kafka releases a
// session's records when its connection closes).
func (h *shareHost) connClosed(c *conn) {
	for _, ss := range h.sessions.removeConn(c) {
		h.closeSession(ss.key, ss.parts)
	}
}
