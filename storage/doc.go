// Package storage owns the durable partition logs of one node: segment
// files, their sparse offset and time indexes, producer-state snapshots,
// group commit under an fsync policy, recovery (truncating torn tails) and
// retention. It reaches the disk only through the FS interface: OSFS in
// production, CrashFS (simulated power loss) and FaultFS (injected I/O
// errors) in tests.
//
// # Concurrency
//
// Engine and Log methods are safe for concurrent use. Each Log has one
// mutex guarding its segment list, offsets, producer state and waiters;
// appends are serialized by it and never decode records, only the batch
// header. Reads copy a segment's bounds under the mutex and then pread
// without it, holding the segment's closeMu shared so that a retention
// delete or Close (which take it exclusively) cannot close the file under
// them. Lock order: Log.mu before segment.closeMu; the engine's mu before
// any Log.mu.
//
// One syncer goroutine per Engine does group commit: Append marks its log
// dirty and pokes the syncer; the syncer takes every dirty log, captures its
// log end offset, fdatasyncs (up to 4 logs at once) and then advances the
// durable offset, waking WaitDurable callers and AddWaiter channels. With
// FsyncAlways the high watermark is the durable offset, so consumers never
// see a record a crash could remove; with FsyncInterval (a ticker) and
// FsyncNever it is the log end offset. A failed or short write, or a failed
// fsync, fences the log: later appends fail with ErrFenced, pending waiters
// get the error, and the durable offset and high watermark never move again.
// A retention goroutine applies segment.ms rolls and retention deletes.
//
// # On-disk format
//
//	<Dir>/
//	  <topic>-<partition>/          (split at the last '-')
//	    00000000000000000000.log        record batches, back to back
//	    00000000000000000000.index      sealed segments only
//	    00000000000000000000.timeindex  sealed segments only
//	    00000000000000001234.log        next segment, base offset 1234
//	    00000000000000001234.snapshot   producer state as of offset 1234
//	    log-start-offset                checkpoint
//	  <topic>-<partition>.<ns>.deleted  a log being deleted
//
// A .log file holds Kafka v2 record batches exactly as produced, except
// that BaseOffset and PartitionLeaderEpoch (both outside the CRC) are
// rewritten on append. Offsets are contiguous across batches and segments:
// a segment's first batch starts at the segment's base offset (its name),
// and its last batch ends just before the next segment's base.
//
//	.log        +--------------------+--------------------+----
//	            | batch @base (61B   | batch @base+n      | ...
//	            | header + records)  |                    |
//	            +--------------------+--------------------+----
//	.index      +-----------+-----------+   8-byte entries, big-endian,
//	            | rel u32   | pos u32   |   one per IndexIntervalBytes:
//	            +-----------+-----------+   batch base offset - segment
//	                                        base, and that batch's position
//	.timeindex  +-----------+-----------+   12-byte entries: the segment's
//	            | maxTs i64 | rel u32   |   max timestamp so far and the base
//	            +-----------+-----------+   (relative) of the batch that
//	                                        raised it; appended when a batch
//	                                        raises the max and at least
//	                                        IndexIntervalBytes followed the
//	                                        last entry, and once at seal, so
//	                                        the last entry is the segment's
//	                                        max timestamp.
//	.snapshot   "TSKP" | version u16 (1) | count u32 |
//	            count × { producerID i64 | epoch i16 | lastTimestamp i64 |
//	                      n u8 | n × { firstSeq i32 | lastSeq i32 |
//	                                   firstOffset i64 | lastOffset i64 } } |
//	            CRC-32C u32 of everything before it
//	log-start-offset  "TSKL" | offset i64 | CRC-32C u32   (16 bytes)
//
// All integers are big-endian.
//
// # Durability of files
//
// Rolling a segment fdatasyncs the old .log, writes and fsyncs its .index,
// .timeindex and the .snapshot named after the new base, creates the new
// .log and fsyncs the directory, so sealed segments are always durable and
// indexed. log-start-offset is replaced atomically (write .tmp, fsync,
// rename, fsync directory) before any segment below it is deleted.
//
// # Recovery
//
// OpenLog of an existing directory loads log-start-offset, deletes segments
// wholly below it, and trusts each sealed segment's index files after a
// cheap check (entries in range and monotonic; the batches after the last
// index entry end exactly at the file's end and at the next segment's base);
// a missing or inconsistent index is rebuilt by scanning and rewritten. A
// sealed segment that does not reach the next base truncates the log there.
// The last (active) segment is scanned batch header by batch header,
// verifying CRC-32C and offset contiguity, and truncated at the first torn,
// corrupt or short batch; its indexes are rebuilt in memory. Producer state
// is the newest valid .snapshot at or below the active segment's base, plus
// a replay of the batch headers after it.
package storage
