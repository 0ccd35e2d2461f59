package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"sort"

	"github.com/tuskdb/tusk/kafkaproto"
)

// epochEntry says that the batches from start on carry epoch (until the
// next entry's start).
type epochEntry struct {
	epoch int32
	start int64
}

// epochCache is the log's leader-epoch cache (Kafka's leader-epoch-
// checkpoint): one entry per epoch, in increasing epoch and start order.
// Batches stamped with a negative epoch, or with an epoch below the latest
// (which AppendReplica refuses), add nothing. The owning Log's mu guards it.
type epochCache struct {
	entries []epochEntry
	latest  int32 // epoch of the last entry, -1 if none
}

func (c *epochCache) reset() { c.entries, c.latest = nil, -1 }

// assign records that epoch starts at start; epoch must exceed c.latest.
func (c *epochCache) assign(epoch int32, start int64) {
	c.entries = append(c.entries, epochEntry{epoch: epoch, start: start})
	c.latest = epoch
}

// observe feeds one batch header (in log order) to the cache.
func (c *epochCache) observe(h *kafkaproto.BatchHeader) {
	if h.PartitionLeaderEpoch > c.latest {
		c.assign(h.PartitionLeaderEpoch, h.BaseOffset)
	}
}

// truncate drops the entries starting at or above end.
func (c *epochCache) truncate(end int64) {
	i := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].start >= end })
	c.entries = c.entries[:i:i] // a later append must not reuse the array
	c.latest = -1
	if i > 0 {
		c.latest = c.entries[i-1].epoch
	}
}

// trimFront drops the entries wholly below start (the log start offset):
// the last entry starting at or below start is kept, moved up to start.
func (c *epochCache) trimFront(start int64) {
	i := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].start > start }) - 1
	if i <= 0 {
		if i == 0 {
			c.entries[0].start = start
		}
		return
	}
	c.entries = append([]epochEntry(nil), c.entries[i:]...)
	c.entries[0].start = start
}

// EndOffsetForEpoch answers Kafka's OffsetForLeaderEpoch on this log: the
// largest epoch at or below the requested one that the log holds, and the
// start offset of the first batch with a higher epoch, or the log end
// offset if there is none. A requested epoch below every epoch in the log
// yields (epoch, start offset of the log's first epoch), as Kafka answers;
// a negative epoch or a log without epochs yields (-1, -1). It reads only
// memory.
func (l *Log) EndOffsetForEpoch(epoch int32) (endOffset int64, foundEpoch int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	es := l.epochs.entries
	if epoch < 0 || len(es) == 0 {
		return -1, -1
	}
	// First entry with a higher epoch.
	i := sort.Search(len(es), func(i int) bool { return es[i].epoch > epoch })
	switch {
	case i == len(es):
		return l.leo, es[i-1].epoch
	case i == 0:
		return es[0].start, epoch
	default:
		return es[i].start, es[i-1].epoch
	}
}

// LatestEpoch is the highest leader epoch stamped on a batch of the log,
// -1 if none.
func (l *Log) LatestEpoch() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epochs.latest
}

const (
	epochFile        = "leader-epoch-checkpoint"
	epochMagic       = "TSKE"
	epochFileVersion = 1
)

// writeEpochCheckpoint atomically replaces the epoch checkpoint with
// entries, all of which start below end (the checkpoint covers the log up
// to end): write a temporary file, fsync it, rename it over the old one.
// The caller syncs the directory.
func writeEpochCheckpoint(fsys FS, dir string, entries []epochEntry, end int64) error {
	b := make([]byte, 0, 4+2+8+4+len(entries)*12+4)
	b = append(b, epochMagic...)
	b = binary.BigEndian.AppendUint16(b, epochFileVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = binary.BigEndian.AppendUint32(b, uint32(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.start))
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	name := filepath.Join(dir, epochFile)
	if err := writeFileSync(fsys, name+".tmp", b); err != nil {
		return err
	}
	return fsys.Rename(name+".tmp", name)
}

// readEpochCheckpoint loads the checkpoint; found is false when there is
// none.
func readEpochCheckpoint(fsys FS, dir string) (entries []epochEntry, end int64, found bool, err error) {
	b, err := readWhole(fsys, filepath.Join(dir, epochFile))
	if err != nil {
		if isNotExist(err) {
			return nil, 0, false, nil
		}
		return nil, 0, false, err
	}
	if len(b) < 22 || string(b[:4]) != epochMagic {
		return nil, 0, false, errors.New("leader-epoch-checkpoint: bad header")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, 0, false, fmt.Errorf("leader-epoch-checkpoint: %w", errBadChecksum)
	}
	if v := binary.BigEndian.Uint16(body[4:]); v != epochFileVersion {
		return nil, 0, false, fmt.Errorf("leader-epoch-checkpoint: unknown version %d", v)
	}
	end = int64(binary.BigEndian.Uint64(body[6:]))
	n := binary.BigEndian.Uint32(body[14:])
	p := body[18:]
	if uint64(len(p)) != uint64(n)*12 {
		return nil, 0, false, errors.New("leader-epoch-checkpoint: bad length")
	}
	entries = make([]epochEntry, n)
	for i := range entries {
		entries[i] = epochEntry{epoch: int32(binary.BigEndian.Uint32(p)), start: int64(binary.BigEndian.Uint64(p[4:]))}
		p = p[12:]
		if entries[i].epoch < 0 || (i > 0 && (entries[i].epoch <= entries[i-1].epoch || entries[i].start <= entries[i-1].start)) {
			return nil, 0, false, fmt.Errorf("leader-epoch-checkpoint: entry %d out of order", i)
		}
	}
	return entries, end, true, nil
}

// recoverEpochs rebuilds the epoch cache at open for the sealed segments
// l.segs (the active segment's batches are fed to it by the caller's scan
// afterwards): the checkpoint's entries that start below both its coverage
// end and activeBase, then a header scan of the sealed batches from there
// up to activeBase. Without a usable checkpoint every sealed segment is
// scanned.
func (l *Log) recoverEpochs(activeBase int64) error {
	l.epochs.reset()
	entries, end, found, err := readEpochCheckpoint(l.fs, l.dir)
	if err != nil {
		l.logger().Warn().Err(err).Msg("ignoring unreadable leader epoch checkpoint: rescanning sealed segments")
		found = false
	}
	from := int64(-1)
	if found {
		from = min(end, activeBase)
		for _, e := range entries {
			if e.start >= from {
				break
			}
			l.epochs.assign(e.epoch, e.start)
		}
	}
	for _, s := range l.segs {
		if s.next <= from {
			continue
		}
		if _, _, err := scanBatches(s.f, 0, s.base, s.size, false, func(h *kafkaproto.BatchHeader, _ int64) error {
			if h.BaseOffset >= from {
				l.epochs.observe(h)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("rebuild leader epochs from segment %d: %w", s.base, err)
		}
	}
	return nil
}
