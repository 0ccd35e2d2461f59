package storage

import (
	"errors"
	"io"
)

// Preallocated active segments (docs/io-and-scale.md, "Preallocated
// active segments").
//
// Under fsync=always every group commit is an fdatasync after an append
// at the end of the active segment. On ext4 such an fdatasync commits a
// journal transaction for the new blocks and the new file size; into
// blocks reserved ahead with fallocate(2) (which also sets the size) it
// commits much less. Measured on this project's machine (1,100-byte
// appends, each followed by fdatasync): appending p50 202–206 µs and
// 120 µs of CPU per operation; into blocks reserved 64 KiB or 1 MiB
// ahead p50 178–185 µs and 83–94 µs of CPU.
//
// So a log under fsync=always reserves its active segment's blocks ahead
// of its writes, in chunks that grow with the segment: its size rounded
// up to a page, at least preallocMin and at most preallocMax, never past
// segment.bytes (thousands of partitions must not each reserve a
// segment's worth of disk: a partition written once reserves 16 KiB).
//
// The reserved range is a recycled file's stale tail by another name
// (recycle.go): segment.stale records the file's length past the data;
// a roll and a clean close truncate the file to its data, and recovery
// cuts the zeros after a crash as it cuts a torn tail (openActive). A
// file system without fallocate turns preallocation off for the engine;
// another failure (the disk full) skips it for this chunk, and the write
// itself then decides.

const (
	preallocMin = 16 << 10
	preallocMax = 1 << 20
)

// preallocLocked reserves the active segment's blocks up to at least end
// (the end of the write about to be made at its size).
func (l *Log) preallocLocked(seg *segment, end int64) {
	if l.policy != FsyncAlways || end <= seg.stale || l.engine.noPrealloc.Load() {
		return
	}
	from := max(seg.stale, seg.size)
	chunk := min(max((seg.size+4095)&^4095, preallocMin), preallocMax)
	to := max(end, min(from+chunk, l.cfg.segmentBytes()))
	err := allocate(seg.f, from, to-from)
	switch {
	case err == nil:
		seg.stale = to
	case errors.Is(err, errAllocUnsupported):
		if l.engine.noPrealloc.CompareAndSwap(false, true) {
			l.logger().Info().Err(err).Msg("segment preallocation not supported here; appends extend the file")
		}
	default:
		// The write after it reports what matters (ENOSPC, EIO);
		// the next chunk tries again.
		l.logger().Debug().Err(err).Str("tp", l.tp.String()).Int64("base", seg.base).Msg("segment preallocation failed")
	}
}

// zeroTail reports whether f holds only zeros from pos to size (at most
// the first preallocMax bytes are looked at): what a crash leaves of
// preallocated blocks, as opposed to a torn batch.
func zeroTail(f File, pos, size int64) bool {
	buf := make([]byte, min(size-pos, preallocMax))
	n, err := f.ReadAt(buf, pos)
	if n != len(buf) || (err != nil && !errors.Is(err, io.EOF)) {
		return false
	}
	for _, c := range buf {
		if c != 0 {
			return false
		}
	}
	return true
}
