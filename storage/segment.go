package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tuskdb/tusk/kafkaproto"
)

const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	snapshotSuffix  = ".snapshot"

	indexEntrySize     = 8
	timeIndexEntrySize = 12
	// maxSegmentBytes keeps file positions within the index's uint32.
	maxSegmentBytes = 1<<32 - 1
)

func segName(dir string, base int64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, suffix))
}

type indexEntry struct {
	rel uint32 // offset - segment base of a batch's first record
	pos uint32 // that batch's file position
}

type timeEntry struct {
	ts  int64  // the segment's max timestamp once this batch was appended
	rel uint32 // base offset - segment base of the batch that raised it
}

// segment is one log file with its in-memory indexes.
type segment struct {
	base int64
	f    File

	// closeMu is held shared by anyone using f outside the log mutex
	// (readers, the syncer) and exclusively to close f.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu
	// sections counts open Sections of this file: the deleter shrinks
	// it only once they are closed (deleter.go).
	sections readerRefs

	// The fields below are guarded by the owning Log's mu.
	size        int64 // bytes of whole batches
	next        int64 // offset after the last batch
	maxTs       int64 // largest batch MaxTimestamp, -1 if none
	maxTsOffset int64 // base offset of the first batch reaching maxTs
	index       []indexEntry
	timeIndex   []timeEntry
	sinceIndex  int64     // bytes appended since the last offset index entry
	sinceTime   int64     // bytes appended since the last time index entry
	created     time.Time // first append (zero while empty), for segment.ms
	// aborted is the file's aborted-transaction index (txn.go), in
	// marker order; written to .txnindex when the file is sealed.
	aborted []abortedEntry
	// stale is the file's length when it is longer than size: a
	// recycled file still holding its earlier life's bytes past size
	// (recycle.go), or blocks reserved ahead of the writes
	// (prealloc.go); 0 (or at most size) when the file ends at size.
	stale int64
	// dropOn marks a file this process writes (drop-behind may drop
	// its pages, dropbehind.go); dropped is the position below which
	// they were dropped.
	dropOn  bool
	dropped int64
}

func newSegment(base int64, f File, interval int64) *segment {
	return &segment{base: base, f: f, next: base, maxTs: -1, maxTsOffset: -1, sinceTime: interval}
}

// track updates the in-memory indexes for a batch appended at pos.
func (s *segment) track(base, last, maxTs int64, pos, size, interval int64) {
	if s.sinceIndex >= interval && pos > 0 {
		s.index = append(s.index, indexEntry{rel: uint32(base - s.base), pos: uint32(pos)})
		s.sinceIndex = 0
	}
	if maxTs > s.maxTs {
		s.maxTs, s.maxTsOffset = maxTs, base
		if s.sinceTime >= interval {
			s.timeIndex = append(s.timeIndex, timeEntry{ts: maxTs, rel: uint32(base - s.base)})
			s.sinceTime = 0
		}
	}
	s.sinceIndex += size
	s.sinceTime += size
	s.size = pos + size
	s.next = last + 1
}

// seal appends the final time index entry, so that the last entry of a
// sealed segment's time index is its max timestamp.
func (s *segment) seal() {
	if s.maxTs >= 0 && (len(s.timeIndex) == 0 || s.timeIndex[len(s.timeIndex)-1].ts != s.maxTs) {
		s.timeIndex = append(s.timeIndex, timeEntry{ts: s.maxTs, rel: uint32(s.maxTsOffset - s.base)})
	}
}

// lookup returns the position of the batch that starts at the largest
// indexed offset <= off.
func (s *segment) lookup(off int64) int64 {
	rel := off - s.base
	i := sort.Search(len(s.index), func(i int) bool { return int64(s.index[i].rel) > rel })
	if i == 0 {
		return 0
	}
	return int64(s.index[i-1].pos)
}

// timeLookup returns an offset from which scanning for the first batch with
// MaxTimestamp >= ts may start.
func (s *segment) timeLookup(ts int64) int64 {
	i := sort.Search(len(s.timeIndex), func(i int) bool { return s.timeIndex[i].ts >= ts })
	if i == 0 {
		return s.base
	}
	return s.base + int64(s.timeIndex[i-1].rel)
}

func encodeIndex(ix []indexEntry) []byte {
	b := make([]byte, len(ix)*indexEntrySize)
	for i, e := range ix {
		binary.BigEndian.PutUint32(b[i*8:], e.rel)
		binary.BigEndian.PutUint32(b[i*8+4:], e.pos)
	}
	return b
}

func encodeTimeIndex(ix []timeEntry) []byte {
	b := make([]byte, len(ix)*timeIndexEntrySize)
	for i, e := range ix {
		binary.BigEndian.PutUint64(b[i*12:], uint64(e.ts))
		binary.BigEndian.PutUint32(b[i*12+8:], e.rel)
	}
	return b
}

var errBadIndex = errors.New("index inconsistent")

// decodeIndex parses an offset index and checks it against the segment:
// strictly increasing offsets and positions, all inside the log.
func decodeIndex(b []byte, logSize, span int64) ([]indexEntry, error) {
	if len(b)%indexEntrySize != 0 {
		return nil, fmt.Errorf("%w: size %d", errBadIndex, len(b))
	}
	ix := make([]indexEntry, len(b)/indexEntrySize)
	for i := range ix {
		e := indexEntry{rel: binary.BigEndian.Uint32(b[i*8:]), pos: binary.BigEndian.Uint32(b[i*8+4:])}
		if e.pos == 0 || int64(e.pos) >= logSize || int64(e.rel) >= span ||
			(i > 0 && (e.rel <= ix[i-1].rel || e.pos <= ix[i-1].pos)) {
			return nil, fmt.Errorf("%w: entry %d", errBadIndex, i)
		}
		ix[i] = e
	}
	return ix, nil
}

func decodeTimeIndex(b []byte, span int64) ([]timeEntry, error) {
	if len(b)%timeIndexEntrySize != 0 {
		return nil, fmt.Errorf("%w: time index size %d", errBadIndex, len(b))
	}
	ix := make([]timeEntry, len(b)/timeIndexEntrySize)
	for i := range ix {
		e := timeEntry{ts: int64(binary.BigEndian.Uint64(b[i*12:])), rel: binary.BigEndian.Uint32(b[i*12+8:])}
		if int64(e.rel) >= span || (i > 0 && (e.ts <= ix[i-1].ts || e.rel <= ix[i-1].rel)) {
			return nil, fmt.Errorf("%w: time entry %d", errBadIndex, i)
		}
		ix[i] = e
	}
	return ix, nil
}

// readWhole reads a whole small file.
func readWhole(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, err
	}
	return b, nil
}

// writeFileSync creates (or truncates) name, writes b and fsyncs it. The
// caller syncs the directory.
func writeFileSync(fsys FS, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if n, err := f.WriteAt(b, 0); err != nil || n != len(b) {
		f.Close()
		if err == nil {
			err = io.ErrShortWrite
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

// errStop ends a scan early without error.
var errStop = errors.New("stop")

// scanBatches walks the batches of f from pos (whose first batch must start
// at or above offset next) up to size, checking structure (magic, length,
// strictly increasing offsets: each batch's base at or above the offset
// after the previous batch, so cleaned ranges with offset gaps pass, see
// docs/compaction.md) and, if verify, each batch's CRC-32C. A batch below
// the expected offset (a recycled file's stale batch, recycle.go) ends the
// walk as corrupt. fn (optional) sees every valid batch header and its
// position; returning errStop ends the walk. It returns where the valid
// prefix ends (position and the offset after its last batch, next if
// none) and, if the walk stopped before size, why (nil for errStop).
func scanBatches(f File, pos, next, size int64, verify bool, fn func(h *kafkaproto.BatchHeader, pos int64) error) (int64, int64, error) {
	var hdr [kafkaproto.BatchHeaderSize]byte
	var buf []byte
	for pos < size {
		if size-pos < kafkaproto.BatchHeaderSize {
			return pos, next, fmt.Errorf("%d trailing bytes at %d: %w", size-pos, pos, kafkaproto.ErrShortBatch)
		}
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return pos, next, fmt.Errorf("read header at %d: %w", pos, err)
		}
		h, err := kafkaproto.ParseBatchHeader(hdr[:])
		if err != nil {
			return pos, next, fmt.Errorf("batch at %d: %w", pos, err)
		}
		if h.BaseOffset < next || h.LastOffsetDelta < 0 || h.RecordCount < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1 {
			return pos, next, fmt.Errorf("batch at %d: offsets %d+%d (%d records), want base at or above %d: %w", pos, h.BaseOffset, h.LastOffsetDelta, h.RecordCount, next, kafkaproto.ErrCorruptBatch)
		}
		sz := int64(h.Size())
		if pos+sz > size {
			return pos, next, fmt.Errorf("batch at %d: %d bytes past end %d: %w", pos, sz, size, kafkaproto.ErrShortBatch)
		}
		if verify {
			if int64(cap(buf)) < sz {
				buf = make([]byte, sz)
			}
			buf = buf[:sz]
			if _, err := f.ReadAt(buf, pos); err != nil {
				return pos, next, fmt.Errorf("read batch at %d: %w", pos, err)
			}
			if err := kafkaproto.VerifyCRC(buf, &h); err != nil {
				return pos, next, fmt.Errorf("batch at %d: %w", pos, err)
			}
		}
		if fn != nil {
			if err := fn(&h, pos); err != nil {
				if err == errStop {
					return pos, next, nil
				}
				return pos, next, err
			}
		}
		pos += sz
		next = h.LastOffset() + 1
	}
	return pos, next, nil
}
