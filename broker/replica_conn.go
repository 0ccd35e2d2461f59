package broker

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Replica fetches go over connections of their own to the leader's
// internal listener (docs/io-and-scale.md, "Replication at a fixed
// load"), not through the forwarding kgo client: kgo reads every answer
// into a freshly allocated buffer, and at tens of MB/s of replication
// clearing those buffers (and the page faults of the memory the runtime
// gave back in between) cost each node more than a tenth of its CPU. Here
// an answer is read into a recycled buffer; its record batches stay
// slices of it (kmsg decodes bytes fields without copying) until the
// fetcher has appended them and calls the release function Fetch returns.
//
// A connection carries one request at a time; a Fetch takes an idle one
// (or dials) and puts it back once the answer is read, so the fetcher of
// a leader and a re-copy from the same node each get their own. A
// cancelled or failed fetch closes its connection, as kgo did: the
// leader's fetch session then restarts with a full fetch.

// replicaAnswerMax bounds the size of an answer read (a fetch asks for
// at most 16 MiB of records).
const replicaAnswerMax = 256 << 20

// replicaGrowMax bounds a buffer's growth ahead of need: a follower asks
// for at most 16 MiB of records (replica.fetcher), plus the answer's
// framing.
const replicaGrowMax = 16<<20 + 64<<10

// replicaMinBuf is the least an answer buffer holds.
const replicaMinBuf = 64 << 10

// replicaFreeBufs is how many answer buffers are kept for reuse.
const replicaFreeBufs = 4

// replicaDialTimeout bounds a dial with its TLS handshake and ApiVersions.
const replicaDialTimeout = 10 * time.Second

// replicaConns are a node's connections for replica fetches, by the
// leader's node ID and internal address.
type replicaConns struct {
	mu     sync.Mutex
	idle   map[fwdKey][]*replicaConn
	open   map[*replicaConn]struct{} // idle or in use: closed by close
	free   [][]byte                  // answer buffers to reuse
	closed bool
}

// replicaConn is one connection to a leader's internal listener.
type replicaConn struct {
	nc      net.Conn
	fmt     *kmsg.RequestFormatter // with this node's client ID
	version int16                  // the Fetch version both sides speak
	corr    int32
	wbuf    []byte // the encoded request, reused
}

// replicaFetchMax is the highest Fetch version a follower sends: from v15
// on the replica ID moves into ReplicaState, which the fetcher does not
// fill.
const replicaFetchMax = 14

// Fetch sends req to node at addr and returns its answer. The answer's
// record batches live in a recycled buffer: release must be called once
// nothing refers to them any more (it is never nil when err is nil).
// tlsFor is the client TLS configuration to a node (internal_tls.go), nil
// for plaintext.
func (rc *replicaConns) Fetch(ctx context.Context, tlsFor func(node int32) *tls.Config, node int32, addr string, req *kmsg.FetchRequest) (resp *kmsg.FetchResponse, release func(), err error) {
	c, err := rc.take(ctx, tlsFor, node, addr)
	if err != nil {
		return nil, nil, err
	}
	req.SetVersion(c.version)
	buf, body, err := c.exchange(ctx, req, rc.takeBuf())
	if err != nil {
		rc.drop(c)
		rc.putBuf(buf)
		return nil, nil, fmt.Errorf("broker: replica fetch from node %d: %w", node, err)
	}
	rc.put(fwdKey{node, addr}, c)
	resp = kmsg.NewPtrFetchResponse()
	resp.Version = req.Version
	if err := resp.ReadFrom(body); err != nil {
		rc.putBuf(buf)
		return nil, nil, fmt.Errorf("broker: replica fetch from node %d: decode the answer: %w", node, err)
	}
	var once sync.Once
	return resp, func() { once.Do(func() { rc.putBuf(buf) }) }, nil
}

// take returns an idle connection to node at addr, or dials one.
func (rc *replicaConns) take(ctx context.Context, tlsFor func(node int32) *tls.Config, node int32, addr string) (*replicaConn, error) {
	k := fwdKey{node, addr}
	rc.mu.Lock()
	if rc.closed {
		rc.mu.Unlock()
		return nil, errors.New("broker: replica fetch: closed")
	}
	if cs := rc.idle[k]; len(cs) > 0 {
		c := cs[len(cs)-1]
		rc.idle[k] = cs[:len(cs)-1]
		rc.mu.Unlock()
		return c, nil
	}
	rc.mu.Unlock()
	var cfg *tls.Config
	if tlsFor != nil {
		cfg = tlsFor(node)
	}
	c, err := dialReplica(ctx, addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("broker: replica fetch: connect to node %d at %s: %w", node, addr, err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		c.nc.Close()
		return nil, errors.New("broker: replica fetch: closed")
	}
	if rc.open == nil {
		rc.open = map[*replicaConn]struct{}{}
	}
	rc.open[c] = struct{}{}
	return c, nil
}

// put makes c idle again.
func (rc *replicaConns) put(k fwdKey, c *replicaConn) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return // close closed it
	}
	if rc.idle == nil {
		rc.idle = map[fwdKey][]*replicaConn{}
	}
	rc.idle[k] = append(rc.idle[k], c)
}

// drop closes c after a failed or cancelled exchange.
func (rc *replicaConns) drop(c *replicaConn) {
	rc.mu.Lock()
	delete(rc.open, c)
	rc.mu.Unlock()
	c.nc.Close()
}

func (rc *replicaConns) takeBuf() []byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if n := len(rc.free); n > 0 {
		b := rc.free[n-1]
		rc.free[n-1] = nil
		rc.free = rc.free[:n-1]
		return b
	}
	return nil
}

func (rc *replicaConns) putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.free) < replicaFreeBufs {
		rc.free = append(rc.free, b[:0])
	}
}

// close closes every connection, aborting the fetches in flight.
func (rc *replicaConns) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.closed = true
	for c := range rc.open {
		c.nc.Close()
	}
	rc.open, rc.idle, rc.free = nil, nil, nil
}

// dialReplica connects to a leader's internal listener (with node TLS if
// cfg is set) and picks the highest Fetch version both sides speak.
func dialReplica(ctx context.Context, addr string, cfg *tls.Config) (*replicaConn, error) {
	ctx, cancel := context.WithTimeout(ctx, replicaDialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	c := &replicaConn{nc: nc, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID(forwardClientID))}
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(0) // answered with a v0 header by any version
	_, body, err := c.exchange(ctx, av, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ApiVersions: %w", err)
	}
	avr := kmsg.NewPtrApiVersionsResponse()
	avr.Version = 0
	if err := avr.ReadFrom(body); err != nil {
		nc.Close()
		return nil, fmt.Errorf("ApiVersions: decode: %w", err)
	}
	if err := kerr.ErrorForCode(avr.ErrorCode); err != nil {
		nc.Close()
		return nil, fmt.Errorf("ApiVersions: %w", err)
	}
	c.version = -1
	for _, k := range avr.ApiKeys {
		if v := min(k.MaxVersion, replicaFetchMax); k.ApiKey == kmsg.Fetch.Int16() && v >= k.MinVersion {
			c.version = v
		}
	}
	if c.version < 0 {
		nc.Close()
		return nil, errors.New("the node serves no Fetch version this one speaks")
	}
	return c, nil
}

// exchange writes req and reads its answer into buf (grown if needed):
// it returns the buffer and the answer's body (past its header) in it.
// ctx's deadline and cancellation bound both; after an error the
// connection is not used again.
func (c *replicaConn) exchange(ctx context.Context, req kmsg.Request, buf []byte) (full, body []byte, err error) {
	if dl, ok := ctx.Deadline(); ok {
		err = c.nc.SetDeadline(dl)
	} else {
		err = c.nc.SetDeadline(time.Time{})
	}
	if err != nil {
		return buf, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	full, body, err = c.read(req, buf)
	if !stop() && err == nil {
		// The cancellation raced the answer: the connection's deadline
		// may be in the past now, so it is not reused.
		err = context.Cause(ctx)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return full, body, err
}

// read writes req and reads its answer (exchange).
func (c *replicaConn) read(req kmsg.Request, buf []byte) (full, body []byte, err error) {
	c.corr++
	c.wbuf = c.fmt.AppendRequest(c.wbuf[:0], req, c.corr)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return buf, nil, fmt.Errorf("write: %w", err)
	}
	// One read takes the size and as much of the answer as has come (a
	// small answer whole): nothing follows the answer on the connection,
	// one request being in flight at a time.
	buf = buf[:cap(buf)]
	if len(buf) < replicaMinBuf {
		buf = make([]byte, replicaMinBuf)
	}
	got, err := io.ReadAtLeast(c.nc, buf, 4)
	if err != nil {
		return buf[:0], nil, fmt.Errorf("read: %w", err)
	}
	n := int(int32(binary.BigEndian.Uint32(buf)))
	if n < 4 || n > replicaAnswerMax || got > 4+n {
		return buf[:0], nil, fmt.Errorf("answer of %d bytes (%d read)", n, got)
	}
	if cap(buf) < 4+n {
		// Grow by at least half again, so that answers growing by a
		// little each time do not reallocate each time, but not past
		// the largest answer a follower asks for unless one is larger
		// (the free buffers stay bounded: replicaFreeBufs of them).
		grown := make([]byte, 4+n, max(4+n, min(cap(buf)+cap(buf)/2, replicaGrowMax)))
		copy(grown, buf[:got])
		buf = grown
	}
	buf = buf[:4+n]
	if _, err := io.ReadFull(c.nc, buf[got:]); err != nil {
		return buf, nil, fmt.Errorf("read: %w", err)
	}
	if corr := int32(binary.BigEndian.Uint32(buf[4:])); corr != c.corr {
		return buf, nil, fmt.Errorf("answer to request %d, want %d", corr, c.corr)
	}
	body = buf[8:]
	// A flexible answer's header (v1) carries tagged fields after the
	// correlation ID; ApiVersions answers always with a v0 header.
	if req.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		if body, err = skipTags(body); err != nil {
			return buf, nil, err
		}
	}
	return buf, body, nil
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, errors.New("answer header: bad tag count")
	}
	b = b[w:]
	for range n {
		_, w := binary.Uvarint(b) // tag
		if w <= 0 {
			return nil, errors.New("answer header: bad tag")
		}
		b = b[w:]
		size, w := binary.Uvarint(b)
		if w <= 0 || size > uint64(len(b)-w) {
			return nil, errors.New("answer header: bad tag size")
		}
		b = b[w+int(size):]
	}
	return b, nil
}
