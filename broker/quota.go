package broker

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// Client quota enforcement, per node as in Kafka: each node meters the
// bytes the clients sharing a quota (metadata.FSM.ClientQuota) produce to
// it or fetch from it, and when they exceed the quota answers with
// throttle_time_ms, the time until their rate is back within it, and
// stops reading the connection's next request for that long (Kafka's
// channel muting, KIP-219), so a client that ignores the throttle time is
// held back too. The meter is a token bucket holding up to one second of
// the quota: over any span T a client gets at most quota × (T + 1 s)
// (Kafka's sampled rate lets a little more through: ~10% over 20 s when
// measured against the same producer). The user is the connection's
// principal's name (Kafka's ANONYMOUS without authentication); a Produce
// forwarded to a partition's leader is metered there, as the client the
// Envelope names (58_envelope.go).
//
// request_percentage (KIP-124) meters the time a node spends on a
// client's requests: from reading a request to its handler's answer (a
// deferred handler's waiting, such as a long-polling Fetch or acks=all,
// is not counted, as Kafka counts thread time, not purgatory), in
// percent of one thread: a quota of 50 lets the clients sharing it use
// half a second of handling per second. ApiVersions and other nodes' own
// requests are exempt (the requests they forward for clients are not).

const (
	// quotaBurst is how much of a quota a client may use at once.
	quotaBurst = time.Second
	// maxThrottle bounds one throttle time.
	maxThrottle = 30 * time.Second
	// maxQuotaBuckets is how many buckets are kept before the idle ones
	// are dropped.
	maxQuotaBuckets = 10000
)

// quotaMeters holds a bucket per quota key and group of clients.
type quotaMeters struct {
	mu      sync.Mutex
	buckets map[string]*quotaBucket
}

// quotaBucket holds the bytes a group of clients may still send (or
// receive) before being throttled; negative: owed.
type quotaBucket struct {
	tokens float64
	last   time.Time
}

// throttle records n units (bytes, or percent-seconds of handling time)
// for user and clientID against quota key and returns how long the
// client must wait (0 when no quota applies or it is not exceeded).
func (q *quotaMeters) throttle(fsm *metadata.FSM, key, user, clientID string, n float64, now time.Time) time.Duration {
	quota, who, ok := fsm.ClientQuota(user, clientID, key)
	if !ok {
		return 0
	}
	burst := quota * quotaBurst.Seconds()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.buckets == nil {
		q.buckets = map[string]*quotaBucket{}
	}
	b := q.buckets[key+" "+who]
	if b == nil {
		if len(q.buckets) >= maxQuotaBuckets {
			q.dropRefilled(now)
		}
		b = &quotaBucket{tokens: burst, last: now}
		q.buckets[key+" "+who] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*quota)
	b.last = now
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return min(time.Duration(-b.tokens/quota*float64(time.Second)), maxThrottle)
}

// dropRefilled drops the buckets idle long enough to have refilled from
// any debt up to maxThrottle: a new one starts full, the same. q.mu held.
func (q *quotaMeters) dropRefilled(now time.Time) {
	for k, b := range q.buckets {
		if now.Sub(b.last) > maxThrottle+quotaBurst {
			delete(q.buckets, k)
		}
	}
}

// produceBytes is the record bytes of a Produce request (what
// producer_byte_rate counts).
func produceBytes(req *kmsg.ProduceRequest) int {
	n := 0
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			n += len(p.Records)
		}
	}
	return n
}

// fetchBytes is the record bytes a Fetch response carries (what
// consumer_byte_rate counts), and the response to set the throttle time
// on.
func fetchBytes(r kmsg.Response) (*kmsg.FetchResponse, int) {
	var resp *kmsg.FetchResponse
	n := 0
	switch v := r.(type) {
	case *kmsg.FetchResponse:
		resp = v
	case *splicedFetch:
		resp = v.FetchResponse
		for _, s := range v.secs {
			n += int(s.sec.Len())
		}
	default:
		return nil, 0
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			n += len(p.RecordBatches)
		}
	}
	return resp, n
}

// requestTime charges the time rc took to handle against the
// request_percentage quota of its client; throttled, the connection is
// muted and the response carries the throttle time (the larger of it and
// a byte-rate throttle already set). A request another node forwarded in
// an Envelope is charged to its client (rc.client) and only answered with
// the throttle time: the forwarding node mutes the client's connection
// (forward.go), not the node connection here.
func (c *conn) requestTime(rc *request, key kmsg.Key, resp kmsg.Response, later func() kmsg.Response) (kmsg.Response, func() kmsg.Response) {
	if c.node && rc.client == nil || key == kmsg.ApiVersions {
		return resp, later
	}
	used := time.Since(rc.received).Seconds() * 100 // percent-seconds of one thread
	d := c.b.quotas.throttle(c.b.store.FSM(), metadata.QuotaRequestPercentage, rc.principal().Name, rc.hdr.ClientID, used, time.Now())
	if d <= 0 {
		return resp, later
	}
	if rc.client == nil {
		c.mute(d)
	}
	if resp != nil {
		setThrottle(resp, d)
	}
	if later != nil {
		inner := later
		later = func() kmsg.Response {
			r := inner()
			setThrottle(r, d)
			return r
		}
	}
	return resp, later
}

// setThrottle raises a response's throttle time to d.
func setThrottle(r kmsg.Response, d time.Duration) {
	t, ok := r.(kmsg.ThrottleResponse)
	if !ok {
		return
	}
	if cur, _ := t.Throttle(); cur >= throttleMillis(d) {
		return
	}
	if s, ok := r.(kmsg.SetThrottleResponse); ok {
		s.SetThrottle(throttleMillis(d))
	}
}

// throttleMillis converts a throttle time for a response field.
func throttleMillis(d time.Duration) int32 {
	return int32(min(d.Milliseconds(), 1<<31-1))
}
