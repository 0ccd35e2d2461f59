package storage

import (
	"fmt"
	"os"
	"time"
)

// Recycling segment files (docs/io-and-scale.md, "Produce write path").
//
// When retention (or DeleteRecords) drops a log's oldest segment, the
// segment's file is renamed to a *.deleted name like every deleted file
// (deleter.go). If the log has no spare yet and no Section reads the file,
// the log keeps that file as its spare instead of handing it to the
// deleter; its next roll renames the spare to the new segment's name and
// overwrites it from the start rather than creating an empty file. Two
// costs go away:
//
//   - Writing into an existing file's blocks, still in the page cache,
//     costs a fraction of writing into new ones: no block allocation and,
//     on a virtual machine whose free memory is returned to the host, no
//     host page fault per new page-cache page (measured in
//     docs/io-and-scale.md).
//   - The deleted file is never unlinked, so the journal never frees its
//     extents while group-commit fsyncs wait.
//
// Correctness rests on offsets. A recycled file holds whole, valid batches
// of its earlier life past the new segment's end. All of them belong to
// this log and lie below its log start offset, while every batch the new
// segment receives lies at or above its base, the log end offset. Recovery
// (scanBatches) accepts a batch only at or above the next expected offset
// (offset gaps of cleaned ranges pass, docs/compaction.md), so it stops
// where the new life ends and cuts the rest off, as it does with a torn
// tail. A crash before the rename is durable leaves the spare
// under its *.deleted name, which recovery hands to the deleter. Before a
// recycled segment is sealed, rollLocked truncates the file to its size
// (a sealed segment ends at its file's end), and a clean close does the
// same for the active segment.
//
// The spare is handed to the deleter when a retention pass finds it unused
// for a whole retention check interval (a quiet log does not hold disk
// space retention freed), and it goes with the directory when the log is
// deleted.

// minRecycleBytes is the smallest deleted file worth keeping as a spare.
const minRecycleBytes = 64 << 10

// spareFile is a deleted segment file a log keeps for its next roll.
type spareFile struct {
	path  string // its *.deleted name in the log directory
	size  int64
	since time.Time // when retention dropped it
}

// newActiveFileLocked opens the file for a new active segment at base: the
// log's spare, renamed to the segment's name (stale is its length, bytes
// of its earlier life the segment overwrites), or a new empty file (stale
// 0). The caller syncs the directory.
func (l *Log) newActiveFileLocked(base int64) (f File, stale int64, err error) {
	name := segName(l.dir, base, logSuffix)
	if sp := l.spare; sp != nil {
		l.spare = nil
		if err := l.fs.Rename(sp.path, name); err != nil {
			l.logger().Warn().Err(err).Str("tp", l.tp.String()).Str("spare", sp.path).Msg("recycle segment file: rename failed; creating a new file")
			l.engine.reclaim(sp.path, sp.size, nil)
		} else if f, err := l.openSegFile(base, os.O_RDWR); err != nil {
			// The spare now has the segment's name: recovery would
			// read it as the (empty) active segment. Start it over.
			l.logger().Warn().Err(err).Str("tp", l.tp.String()).Msg("recycle segment file: open failed; creating a new file")
		} else {
			l.engine.stats.recycled.Add(1)
			return f, sp.size, nil
		}
	}
	f, err = l.openSegFile(base, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return nil, 0, fmt.Errorf("segment %d: %w", base, err)
	}
	return f, 0, nil
}
