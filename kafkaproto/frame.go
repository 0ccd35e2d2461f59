package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Framing errors. Any of them means the connection is unusable and must be
// closed after logging.
var (
	ErrFrameTooLarge   = errors.New("kafkaproto: frame exceeds socket.request.max.bytes")
	ErrMalformedFrame  = errors.New("kafkaproto: malformed frame")
	ErrUnknownAPIKey   = errors.New("kafkaproto: unknown api key")
	ErrMalformedHeader = errors.New("kafkaproto: malformed request header")
)

// RequestHeader is a decoded request header (v0, v1 or v2).
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	ClientID      string
	// Flexible reports whether the header (and body) use the flexible
	// encoding with tagged fields (request header v2).
	Flexible bool
}

// ReadFrame reads one size-prefixed frame. A negative size, or one above
// max, fails with ErrFrameTooLarge or ErrMalformedFrame before anything of
// the body is read or allocated. buf is reused when it is large enough.
func ReadFrame(r io.Reader, max int32, buf []byte) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	switch {
	case n < 0:
		return nil, fmt.Errorf("%w: negative size %d", ErrMalformedFrame, n)
	case n > max:
		return nil, fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, n, max)
	case n < 8:
		return nil, fmt.Errorf("%w: size %d below the request header", ErrMalformedFrame, n)
	}
	if cap(buf) >= int(n) {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformedFrame, err)
	}
	return buf, nil
}

// ParseRequest decodes the request header in frame and returns a kmsg
// request of the right key with its version set, plus the body bytes. The
// body is not decoded: the caller first checks the version against what it
// supports. An unknown key returns ErrUnknownAPIKey with the header filled.
func ParseRequest(frame []byte) (RequestHeader, kmsg.Request, []byte, error) {
	var h RequestHeader
	if len(frame) < 10 {
		return h, nil, nil, fmt.Errorf("%w: %d bytes", ErrMalformedHeader, len(frame))
	}
	h.APIKey = int16(binary.BigEndian.Uint16(frame))
	h.APIVersion = int16(binary.BigEndian.Uint16(frame[2:]))
	h.CorrelationID = int32(binary.BigEndian.Uint32(frame[4:]))
	idLen := int(int16(binary.BigEndian.Uint16(frame[8:])))
	rest := frame[10:]
	if idLen > 0 {
		if idLen > len(rest) {
			return h, nil, nil, fmt.Errorf("%w: client id length %d", ErrMalformedHeader, idLen)
		}
		h.ClientID = string(rest[:idLen])
		rest = rest[idLen:]
	} else if idLen < -1 {
		return h, nil, nil, fmt.Errorf("%w: client id length %d", ErrMalformedHeader, idLen)
	}
	req := kmsg.RequestForKey(h.APIKey)
	if req == nil {
		return h, nil, nil, fmt.Errorf("%w %d", ErrUnknownAPIKey, h.APIKey)
	}
	req.SetVersion(h.APIVersion)
	h.Flexible = req.IsFlexible()
	if h.Flexible {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return h, nil, nil, err
		}
	}
	return h, req, rest, nil
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, used := binary.Uvarint(b)
	if used <= 0 {
		return nil, fmt.Errorf("%w: bad tag count", ErrMalformedHeader)
	}
	b = b[used:]
	for i := uint64(0); i < n; i++ {
		_, used = binary.Uvarint(b)
		if used <= 0 {
			return nil, fmt.Errorf("%w: bad tag", ErrMalformedHeader)
		}
		b = b[used:]
		sz, used := binary.Uvarint(b)
		if used <= 0 || sz > uint64(len(b)-used) {
			return nil, fmt.Errorf("%w: bad tag size", ErrMalformedHeader)
		}
		b = b[used+int(sz):]
	}
	return b, nil
}

// AppendResponse appends a complete size-prefixed response frame to dst.
// flexibleHeader selects response header v1 (an empty tag section after the
// correlation id). ApiVersions responses always use header v0.
func AppendResponse(dst []byte, correlationID int32, flexibleHeader bool, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if flexibleHeader {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// ResponseHeaderFlexible reports whether the response to key at a version
// whose request was flexible carries a v1 header. ApiVersions never does.
func ResponseHeaderFlexible(key int16, flexibleRequest bool) bool {
	return flexibleRequest && key != int16(kmsg.ApiVersions)
}
