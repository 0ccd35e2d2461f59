package metadata

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/tlsutil"
)

// The RPC types of hashicorp/raft's NetworkTransport (net_transport.go,
// v1.7.3): each request on a connection is one of these bytes followed by
// the msgpack-encoded request; an InstallSnapshot request is followed by
// its Size bytes of snapshot data.
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// peerConn is an accepted Raft connection whose peer presented node
// certificate N (docs/security.md, "Node to node"): every RPC that arrives
// on it must claim server ID N in its header, and must not give as its
// address one the Raft configuration lists for another node.
// NetworkTransport decodes the requests itself from the connection and
// hands them to raft without saying which connection they came on, so the
// check sits in the connection: Read parses each request as it arrives
// (with the same msgpack codec, keeping its bytes) and gives raft those
// bytes only once the header matched the certificate. A request that
// claims another ID, or none, or another node's address, closes the
// connection with a warning; raft reads it as the peer hanging up before
// a request, so it neither sees the RPC nor logs an error, and the peer's
// transport redials like after any dropped connection.
//
// Cost: the requests on Raft connections are decoded twice (once here,
// keeping only the header, and once by raft), and their bytes copied once
// more; snapshot data passes through without either.
type peerConn struct {
	*tls.Conn
	log zerolog.Logger
	// nodeAt names the server ID the Raft configuration gives an
	// address: a request whose header gives the address of another node
	// is refused too.
	nodeAt func(raft.ServerAddress) (int32, bool)

	// Read goroutine only (raft's handleConn).
	node    int32 // from the certificate, after the handshake
	checked bool  // the handshake ran and node is set
	in      recordingReader
	dec     *codec.Decoder
	pending []byte // bytes of checked requests raft has not read yet
	raw     int64  // snapshot bytes still to pass through unchecked
}

// rpcHead is what peerConn decodes of a request: the header (inlined, as
// raft's requests embed it) and an InstallSnapshot's data size. Other
// fields are skipped by the decoder.
type rpcHead struct {
	raft.RPCHeader
	Size int64
}

func newPeerConn(c *tls.Conn, nodeAt func(raft.ServerAddress) (int32, bool), log zerolog.Logger) *peerConn {
	pc := &peerConn{Conn: c, log: log, nodeAt: nodeAt}
	pc.in.r = bufio.NewReader(c)
	pc.dec = codec.NewDecoder(&pc.in, &codec.MsgpackHandle{})
	return pc
}

// errRefusedRPC ends a connection whose RPC claimed a server ID other
// than its certificate's. Raft sees io.EOF (a peer that hung up).
var errRefusedRPC = io.EOF

// maxKeptRecord bounds the record buffer kept between requests; a larger
// one (a big AppendEntries) is dropped after use.
const maxKeptRecord = 1 << 20

func (c *peerConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.raw > 0 {
		if int64(len(p)) > c.raw {
			p = p[:c.raw]
		}
		n, err := c.in.r.Read(p)
		c.raw -= int64(n)
		return n, err
	}
	if !c.checked {
		if err := c.peerNode(); err != nil {
			return 0, err
		}
	}
	if err := c.next(); err != nil {
		return 0, err
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// peerNode runs the handshake (on raft's connection goroutine, at its
// first read) and takes the peer's node id from its certificate. The
// stream layer's TLS configuration already refused a certificate without
// one; this is the same check, kept here so that a connection never
// passes on an RPC without knowing its node.
func (c *peerConn) peerNode() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	id, ok := tlsutil.PeerNode(c.ConnectionState())
	if !ok {
		c.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("refusing raft connection: the peer's certificate names no node")
		c.Close()
		return errRefusedRPC
	}
	c.node, c.checked = id, true
	return nil
}

// next reads one whole request, checks the ID its header claims and
// makes its bytes pending.
func (c *peerConn) next() error {
	if cap(c.in.rec) > maxKeptRecord {
		c.in.rec = nil
	}
	c.in.rec = c.in.rec[:0]
	typ, err := c.in.ReadByte()
	if err != nil {
		return err
	}
	var h rpcHead
	switch typ {
	case rpcAppendEntries, rpcRequestVote, rpcInstallSnapshot, rpcTimeoutNow, rpcRequestPreVote:
		if err := c.dec.Decode(&h); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, new(net.Error)) {
				// The peer went away mid-request: raft would have
				// seen the same.
				return err
			}
			return c.refuse(fmt.Errorf("decode RPC type %d: %w", typ, err), nil)
		}
	default:
		return c.refuse(fmt.Errorf("unknown RPC type %d", typ), nil)
	}
	if string(h.ID) != strconv.Itoa(int(c.node)) {
		return c.refuse(errors.New("the RPC claims another server ID than its certificate's node"), h.ID)
	}
	if id, ok := c.nodeAt(raft.ServerAddress(h.Addr)); ok && id != c.node {
		return c.refuse(fmt.Errorf("the RPC gives the address of node %d, %s", id, h.Addr), h.ID)
	}
	if typ == rpcInstallSnapshot {
		if h.Size < 0 {
			return c.refuse(fmt.Errorf("snapshot size %d", h.Size), h.ID)
		}
		c.raw = h.Size
	}
	c.pending = c.in.rec
	return nil
}

// refuse logs why the connection's request is refused and closes it.
func (c *peerConn) refuse(why error, claimed []byte) error {
	ev := c.log.Warn().Err(why).Str("remote", c.RemoteAddr().String()).Int32("node", c.node)
	if claimed != nil {
		ev = ev.Bytes("claimed_id", claimed)
	}
	ev.Msg("refusing raft RPC: closing the connection")
	c.Close()
	return errRefusedRPC
}

// recordingReader reads from r and keeps every byte it returned in rec
// (less one given back by UnreadByte). The msgpack decoder reads through
// an io.ByteScanner exactly up to the end of a value, which is what raft
// relies on too before it reads snapshot data from the same reader.
type recordingReader struct {
	r   *bufio.Reader
	rec []byte
}

var _ io.ByteScanner = (*recordingReader)(nil)

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.rec = append(r.rec, p[:n]...)
	return n, err
}

func (r *recordingReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.rec = append(r.rec, b)
	}
	return b, err
}

func (r *recordingReader) UnreadByte() error {
	if len(r.rec) == 0 {
		return errors.New("metadata: raft RPC reader: nothing to unread")
	}
	if err := r.r.UnreadByte(); err != nil {
		return err
	}
	r.rec = r.rec[:len(r.rec)-1]
	return nil
}

var _ net.Conn = (*peerConn)(nil)
