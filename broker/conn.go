package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/kafkaproto"
)

// request is one decoded request travelling through a handler.
type request struct {
	hdr      kafkaproto.RequestHeader
	req      kmsg.Request
	received time.Time
	conn     *conn
	// client is the client a node forwarded the request for, in an
	// Envelope (58_envelope.go); nil for the connection's own requests.
	client *clientIdentity
}

// slot is one response position in a connection's in-order output queue.
type slot struct {
	done  chan struct{}
	frame []byte
	// splices are file sections sent into frame at their positions
	// (zero-copy Fetch); the writer closes them.
	splices []splice
	api     kmsg.Key
	start   time.Time
}

type conn struct {
	b   *Broker
	nc  net.Conn
	log zerolog.Logger
	out chan *slot
	// sendfile is set for plaintext TCP connections, to which Fetch
	// sends record bytes straight from segment files.
	sendfile bool
	// node is set for connections accepted on the internal listener:
	// another node's traffic, the only one allowed to fetch as a replica.
	node bool
	// listener is the listener the connection was accepted on; client
	// addresses handed to it are that listener's (docs/security.md).
	listener *listener
	// princ is who the connection acts as, nil for auth.Anonymous; set
	// on the read goroutine, read by handlers anywhere (principal()).
	princ atomic.Pointer[auth.Principal]
	// sasl is the connection's SASL exchange and session
	// (36_sasl_authenticate.go); only the read goroutine touches it.
	sasl saslConn
	// authed is set once a SASL_* connection authenticated (the other
	// protocols count as authenticated from the start).
	authed atomic.Bool
	// authBy is when a SASL_* connection that has not authenticated is
	// closed (authDeadline); only the read goroutine touches it.
	authBy time.Time
	// closeAfter makes the read loop stop after the request being
	// dispatched (a failed authentication); only the read goroutine
	// touches it. Responses already queued are still written.
	closeAfter bool

	// groupTail is closed when the connection's latest group request has
	// been served; only the read goroutine touches the field.
	groupTail chan struct{}
	// fwdTail is closed when the connection's latest forwarded Produce was
	// answered; only the read goroutine touches the field.
	fwdTail chan struct{}

	// mutedUntil (unix nanos) holds back reading the next request while a
	// quota throttles the client (quota.go).
	mutedUntil atomic.Int64

	stopOnce sync.Once
}

func newConn(b *Broker, nc net.Conn, l *listener) *conn {
	c := &conn{
		b:         b,
		nc:        nc,
		listener:  l,
		node:      l.internal,
		log:       b.log.With().Str("remote", nc.RemoteAddr().String()).Str("listener", l.name).Logger(),
		out:       make(chan *slot, b.cfg.Kafka.MaxInflight),
		groupTail: make(chan struct{}),
	}
	close(c.groupTail)
	c.fwdTail = make(chan struct{})
	close(c.fwdTail)
	_, c.sendfile = nc.(*net.TCPConn)
	return c
}

// authenticated reports whether the connection may send any request:
// SASL_* connections once they authenticated, others from the start
// (docs/security.md).
func (c *conn) authenticated() bool { return !c.listener.sasl() || c.authed.Load() }

// preAuthMaxFrame bounds a request frame before authentication: a larger
// one closes the connection (docs/security.md).
const preAuthMaxFrame = 512 << 10

// preAuthAPI reports whether an unauthenticated connection may send key.
func preAuthAPI(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return true
	}
	return false
}

// stopReading makes the read loop stop at its next frame boundary or
// immediately if it is blocked in a read; pending responses still go out.
func (c *conn) stopReading() {
	c.stopOnce.Do(func() { c.nc.SetReadDeadline(time.Now()) }) //nolint:errcheck // a closed conn stops reading anyway
}

func (c *conn) serve() {
	defer c.b.dropConn(c)
	defer c.b.share.connClosed(c) // its share sessions close with it
	c.b.m.connections.Inc()
	defer c.b.m.connections.Dec()
	if tc, ok := c.nc.(*tls.Conn); ok && c.listener.tlsConf != nil { // the internal listener handshakes before (internal_tls.go)
		if err := c.handshake(tc); err != nil {
			c.log.Debug().Err(err).Msg("closing connection: tls handshake failed")
			c.b.m.tlsHandshakeFailures.Inc()
			c.nc.Close()
			return
		}
	}
	writerDone := make(chan struct{})
	go c.writeLoop(writerDone)
	c.readLoop()
	close(c.out)
	<-writerDone
	c.nc.Close()
}

func (c *conn) readLoop() {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	if stop := c.authDeadline(); stop != nil {
		defer stop()
	}
	for {
		if c.b.stopped(c) || !c.waitMuted() {
			return
		}
		if c.sasl.raw {
			// After SaslHandshake v0 (36_sasl_authenticate.go).
			if !c.readRawSASL(br) {
				return
			}
			continue
		}
		limit := c.b.cfg.Kafka.RequestMaxBytes
		var buf []byte
		if c.authenticated() {
			buf = c.produceFrameBuf(br)
		} else {
			limit = min(limit, preAuthMaxFrame)
		}
		frame, err := kafkaproto.ReadFrame(br, limit, buf)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
			default:
				c.log.Warn().Err(err).Msg("closing connection: bad frame")
				c.b.m.badRequests.Inc()
			}
			return
		}
		ok := c.dispatch(frame)
		if buf != nil {
			c.b.frames.put(frame)
		}
		if !ok {
			return
		}
	}
}

// mute holds back reading the connection's next request for d (a quota's
// throttle time), or longer if it is muted longer already (a forwarded
// Produce's throttle time arrives on another goroutine).
func (c *conn) mute(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.mutedUntil.Load()
		if cur >= until || c.mutedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitMuted waits out a mute; false if the broker shuts down meanwhile.
func (c *conn) waitMuted() bool {
	d := time.Until(time.Unix(0, c.mutedUntil.Load()))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.b.shutdown:
		return false
	}
}

// produceFrameBuf returns a pooled buffer for the next frame if it is a
// Produce request, or an Envelope on a node connection (whose inner
// request can only be a Produce, 58_envelope.go), see framePool; else nil
// (ReadFrame allocates). It peeks at the frame's size and API key without
// consuming them.
func (c *conn) produceFrameBuf(br *bufio.Reader) []byte {
	head, err := br.Peek(6)
	if err != nil {
		return nil
	}
	if key := kmsg.Key(binary.BigEndian.Uint16(head[4:])); key != kmsg.Produce && (key != kmsg.Envelope || !c.node) {
		return nil
	}
	n := int32(binary.BigEndian.Uint32(head))
	if n < 0 || n > c.b.cfg.Kafka.RequestMaxBytes {
		return nil // ReadFrame rejects it
	}
	return c.b.frames.get(int(n))
}

// dispatch decodes and serves one frame. It returns false when the
// connection must be closed.
func (c *conn) dispatch(frame []byte) bool {
	hdr, req, body, err := kafkaproto.ParseRequest(frame)
	if err != nil {
		c.log.Warn().Err(err).Int16("api_key", hdr.APIKey).Int16("api_version", hdr.APIVersion).Msg("closing connection: bad request header")
		c.b.m.badRequests.Inc()
		return false
	}
	if !c.authenticated() && !preAuthAPI(hdr.APIKey) {
		c.log.Warn().Int16("api_key", hdr.APIKey).Msg("closing connection: request before SASL authentication")
		c.b.m.badRequests.Inc()
		return false
	}
	if c.sasl.expired(time.Now()) && hdr.APIKey != int16(kmsg.SASLHandshake) && hdr.APIKey != int16(kmsg.SASLAuthenticate) {
		c.log.Info().Str("principal", c.principal().String()).Msg("closing connection: SASL session expired without re-authentication")
		return false
	}
	a, ok := c.b.apis[hdr.APIKey]
	if !ok {
		c.log.Warn().Int16("api_key", hdr.APIKey).Msg("closing connection: unsupported api")
		c.b.m.badRequests.Inc()
		return false
	}
	if hdr.APIVersion < a.min || hdr.APIVersion > a.max {
		if a.key == kmsg.ApiVersions {
			// KIP-511: answer in v0 with UNSUPPORTED_VERSION and our
			// ranges so the client can pick a version.
			resp := c.b.apiVersionsResponse(0, c.node)
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			c.enqueue(&request{hdr: hdr, req: req, conn: c}, a.key, resp, nil)
			return true
		}
		c.log.Warn().Str("api", a.key.Name()).Int16("api_version", hdr.APIVersion).Msg("closing connection: unsupported api version")
		c.b.m.badRequests.Inc()
		return false
	}
	if err := req.ReadFrom(body); err != nil {
		c.log.Warn().Err(err).Str("api", a.key.Name()).Int16("api_version", hdr.APIVersion).Msg("closing connection: malformed request body")
		c.b.m.badRequests.Inc()
		return false
	}
	rc := &request{hdr: hdr, req: req, received: time.Now(), conn: c}
	resp, later := a.handle(c.b, rc)
	resp, later = c.requestTime(rc, a.key, resp, later)
	if resp == nil && later == nil {
		c.b.m.observe(a.key, rc.received)
		return !c.closeAfter
	}
	c.enqueue(rc, a.key, resp, later)
	return !c.closeAfter
}

// enqueue reserves the next output slot for rc and fills it now or, for a
// deferred response, from a new goroutine. It blocks while the connection
// has max-inflight responses pending.
func (c *conn) enqueue(rc *request, key kmsg.Key, resp kmsg.Response, later func() kmsg.Response) {
	s := &slot{done: make(chan struct{}), api: key, start: rc.received}
	c.out <- s
	if later == nil {
		c.fill(s, rc, resp)
		return
	}
	go func() { c.fill(s, rc, later()) }()
}

func (c *conn) fill(s *slot, rc *request, resp kmsg.Response) {
	resp.SetVersion(rc.req.GetVersion())
	if rc.hdr.APIKey == int16(kmsg.ApiVersions) && rc.hdr.APIVersion > c.b.apis[rc.hdr.APIKey].max {
		resp.SetVersion(0)
	}
	flexHeader := kafkaproto.ResponseHeaderFlexible(rc.hdr.APIKey, rc.hdr.Flexible)
	if z, ok := resp.(*splicedFetch); ok {
		frame, splices, err := z.encode(rc.hdr.CorrelationID, flexHeader)
		if err == nil {
			s.frame, s.splices = frame, splices
			close(s.done)
			return
		}
		c.log.Warn().Err(err).Msg("fetch: zero-copy encoding failed; copying records")
		if err := z.copyIn(); err != nil {
			c.log.Error().Err(err).Msg("fetch: read records of a section")
		}
		resp = z.FetchResponse
	}
	s.frame = kafkaproto.AppendResponse(make([]byte, 0, sizeHint(resp)), rc.hdr.CorrelationID, flexHeader, resp)
	close(s.done)
}

// write writes a slot's frame, sending its sections (if any) with
// sendfile between the encoded pieces.
func (c *conn) write(bw *bufio.Writer, s *slot) error {
	prev := 0
	for _, sp := range s.splices {
		if _, err := bw.Write(s.frame[prev:sp.at]); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		n, err := sp.sec.WriteTo(c.nc)
		if err != nil {
			return err
		}
		c.b.m.sendfileBytes.Add(float64(n))
		prev = sp.at
	}
	_, err := bw.Write(s.frame[prev:])
	return err
}

// release closes a written (or abandoned) slot's sections.
func (c *conn) release(s *slot) {
	for _, sp := range s.splices {
		if err := sp.sec.Close(); err != nil {
			c.log.Warn().Err(err).Msg("fetch: close section")
		}
	}
	s.splices = nil
}

func (c *conn) writeLoop(done chan struct{}) {
	defer close(done)
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	failed := false
	for s := range c.out {
		select {
		case <-s.done:
		default:
			// Don't hold finished responses back behind a slow one.
			if !failed {
				if err := bw.Flush(); err != nil {
					c.writeFailed(err)
					failed = true
				}
			}
			<-s.done
		}
		c.b.m.observe(s.api, s.start)
		if failed {
			c.release(s)
			continue // drain so deferred handlers never block
		}
		err := c.write(bw, s)
		c.release(s)
		if err != nil {
			c.writeFailed(err)
			failed = true
			continue
		}
		if len(c.out) == 0 {
			if err := bw.Flush(); err != nil {
				c.writeFailed(err)
				failed = true
			}
		}
	}
	if !failed {
		if err := bw.Flush(); err != nil {
			c.writeFailed(err)
		}
	}
}

func (c *conn) writeFailed(err error) {
	if !errors.Is(err, net.ErrClosed) {
		c.log.Debug().Err(err).Msg("write failed; closing connection")
	}
	c.stopReading()
	c.nc.Close()
}

// ctx is the context the request's waits on the cluster run under (Raft
// commands, other nodes, followers, coordinators): it ends when Close
// begins, so that a request in flight does not hold the shutdown waiting
// for peers that may be stopping too; the request is answered with the
// error its wait ends with. Work on this node's own disk uses the
// broker's ctx, which ends with the shutdown grace period.
func (rc *request) ctx() context.Context { return rc.conn.b.reqCtx }

// inGroupOrder defers fn so that it runs after every earlier group request
// of this connection has been served. Group requests (which may park, like
// JoinGroup) thus take effect in the order the client sent them, as Kafka
// serves one request of a connection at a time; other requests are not held
// up behind a parked JoinGroup.
func (rc *request) inGroupOrder(fn func() kmsg.Response) func() kmsg.Response {
	prev, done := rc.conn.groupTail, make(chan struct{})
	rc.conn.groupTail = done
	return func() kmsg.Response {
		defer close(done)
		<-prev
		return fn()
	}
}

// sizeHint guesses an encoded response's size so that encoding allocates
// once: fetch responses are dominated by their record bytes.
func sizeHint(resp kmsg.Response) int {
	f, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 512
	}
	n := 256
	for i := range f.Topics {
		n += 64 + len(f.Topics[i].Topic)
		for j := range f.Topics[i].Partitions {
			n += 96 + len(f.Topics[i].Partitions[j].RecordBatches)
		}
	}
	return n
}
