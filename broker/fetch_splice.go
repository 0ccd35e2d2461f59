package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Zero-copy Fetch responses.
//
// A fetch served from segment files carries, per partition, a file section
// (storage.Section) instead of record bytes. The response is encoded by
// kmsg with a unique 16-byte marker as each such partition's RecordBatches;
// the marker and its length prefix are then cut out and replaced by the
// section's real length prefix (int32 in non-flexible versions, compact
// uvarint(n+1) from v12), and the frame size is fixed up to count the
// section bytes. The connection writes the encoded pieces from memory and
// each section with sendfile between them. The bytes on the wire are those
// of the copying path, which TestFetchSpliceMatchesCopy checks for every
// advertised Fetch version.

// sectionSource is what a splice sends: storage.Section in production.
type sectionSource interface {
	Len() int64
	WriteTo(w io.Writer) (int64, error)
	Bytes() ([]byte, error)
	Close() error
}

// fetchSection is one partition whose records are a file section.
type fetchSection struct {
	part *kmsg.FetchResponseTopicPartition
	sec  sectionSource
}

// splicedFetch is a Fetch response some of whose record sets are file
// sections, in encoding order (topics, then partitions).
type splicedFetch struct {
	*kmsg.FetchResponse
	secs []fetchSection
}

// splice is a section sent into a frame at byte position at.
type splice struct {
	at  int
	sec sectionSource
}

const markerLen = 16

var errSpliceMarker = errors.New("broker: fetch splice marker not found where expected")

// encode builds the response frame without the section bytes and the
// positions where they go.
func (z *splicedFetch) encode(correlationID int32, flexibleHeader bool) ([]byte, []splice, error) {
	nonce := rand.Uint64()
	markers := make([]byte, markerLen*len(z.secs))
	for i, s := range z.secs {
		m := markers[i*markerLen : (i+1)*markerLen]
		binary.BigEndian.PutUint64(m, nonce)
		binary.BigEndian.PutUint64(m[8:], uint64(i))
		s.part.RecordBatches = m
	}
	defer func() {
		for _, s := range z.secs {
			s.part.RecordBatches = noRecords
		}
	}()
	enc := kafkaproto.AppendResponse(make([]byte, 0, sizeHint(z.FetchResponse)+markerLen*len(z.secs)),
		correlationID, flexibleHeader, z.FetchResponse)
	var markerPrefix []byte
	flexible := z.FetchResponse.IsFlexible()
	if flexible {
		markerPrefix = binary.AppendUvarint(nil, markerLen+1)
	} else {
		markerPrefix = binary.BigEndian.AppendUint32(nil, markerLen)
	}
	out := make([]byte, 0, len(enc)+4*len(z.secs))
	splices := make([]splice, 0, len(z.secs))
	cursor, sections := 0, int64(0)
	for i, s := range z.secs {
		m := markers[i*markerLen : (i+1)*markerLen]
		j := bytes.Index(enc[cursor:], m)
		if j < 0 {
			return nil, nil, fmt.Errorf("%w: partition %d", errSpliceMarker, s.part.Partition)
		}
		at := cursor + j
		pre := at - len(markerPrefix)
		if pre < cursor || !bytes.Equal(enc[pre:at], markerPrefix) {
			return nil, nil, fmt.Errorf("%w: partition %d: bad length prefix", errSpliceMarker, s.part.Partition)
		}
		out = append(out, enc[cursor:pre]...)
		n := s.sec.Len()
		if flexible {
			out = binary.AppendUvarint(out, uint64(n)+1)
		} else {
			out = binary.BigEndian.AppendUint32(out, uint32(n))
		}
		splices = append(splices, splice{at: len(out), sec: s.sec})
		sections += n
		cursor = at + markerLen
	}
	out = append(out, enc[cursor:]...)
	total := int64(len(out)-4) + sections
	if total > math.MaxInt32 {
		return nil, nil, fmt.Errorf("broker: fetch response of %d bytes exceeds a frame", total)
	}
	binary.BigEndian.PutUint32(out, uint32(total))
	return out, splices, nil
}

// copyIn is the fallback: it reads every section into the response and
// closes it, leaving a plain Fetch response. A partition whose section
// cannot be read answers KAFKA_STORAGE_ERROR without records.
func (z *splicedFetch) copyIn() error {
	var errs []error
	for _, s := range z.secs {
		b, err := s.sec.Bytes()
		if err != nil {
			errs = append(errs, err)
			s.part.ErrorCode = kerr.KafkaStorageError.Code
			s.part.RecordBatches = noRecords
		} else {
			s.part.RecordBatches = b
		}
		if err := s.sec.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	z.secs = nil
	return errors.Join(errs...)
}
