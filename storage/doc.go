// Package storage owns the durable partition logs of one node: segment
// files, their sparse offset and time indexes, producer-state snapshots,
// group commit under an fsync policy, recovery (truncating torn tails) and
// retention. It reaches the disk only through the FS interface: OSFS in
// production, CrashFS (simulated power loss) and FaultFS (injected I/O
// errors) in tests.
//
// Its segment files are this node's; they are not the segments of the
// metadata's chains (docs/architecture.md, "Segment chains"), which are
// offset ranges of the log whose boundaries need not fall on a file's.
//
// Storage does not decide who leads or follows a partition: the
// replication layer (package replica) does, from the metadata. It enforces that decision at the moment
// bytes are written, though: once the engine has a lease source
// (SetLeaseSource), an append to a replicated log needs this node's live
// lease and the epoch the node was told to write at (see Replication API
// below, and docs/architecture.md, "Write path", step 3).
//
// # Concurrency
//
// Engine and Log methods are safe for concurrent use. Each Log has one
// mutex guarding its segment list, offsets, producer state and waiters;
// appends are serialized by it and never decode records, only the batch
// header (and a transaction marker's one record, decoded before the lock). Reads copy a segment's bounds under the mutex and then pread
// without it, holding the segment's closeMu shared so that a retention
// delete or Close (which take it exclusively) cannot close the file under
// them. Lock order: Log.mu before segment.closeMu; the engine's mu before
// any Log.mu.
//
// One syncer goroutine per Engine does group commit: Append marks its log
// dirty and pokes the syncer; the syncer takes every dirty log, captures its
// log end offset and pins its active segment, hands all those files to the
// I/O backend in one batch (see below) and then advances each durable
// offset, waking WaitDurable callers and AddWaiter channels. With
// FsyncAlways the high watermark is the durable offset, so consumers never
// see a record a crash could remove; with FsyncInterval (a ticker) and
// FsyncNever it is the log end offset. A failed or short write, or a failed
// fsync, fences the log: later appends fail with ErrFenced, pending waiters
// get the error, and the durable offset and high watermark never move again.
// WaitDurable and WaitHighWatermark share one waiter mechanism
// (waiters.go); an AddWaiter registration ends when it is signalled or
// when its caller cancels it (a long poll that timed out), so idle logs
// hold no stale waiters.
// A retention goroutine applies segment.ms rolls and retention deletes.
//
// # Replication API
//
// Storage keeps no replica sets, fetch offsets or metadata. It offers the
// primitives that package replica drives, and checks the one rule that
// must hold where bytes are written, the writer's lease and epoch:
//
//   - Replicated HW mode (LogConfig.Replicated, honoured by OpenLog and
//     SetConfig). The HW is then min(bound, local), where bound is the
//     largest value given to AdvanceHighWatermark (on a leader: the minimum
//     offset its replicas acknowledged; on a follower: the leader's HW) and
//     local is the durable offset under FsyncAlways, else the LEO. The HW
//     never moves backwards, never passes the LEO, and never moves once the
//     log is fenced. A replicated log opens with the HW its last clean
//     close recorded (the high-watermark file), else at its log start
//     offset. Under FsyncAlways a follower should acknowledge
//     DurableOffset, not its LEO.
//     With the mode off the HW follows local durability exactly as before.
//   - Read and ReadSection stop at the HW; ReadUncommitted and
//     ReadSectionUncommitted (replica fetchers) stop at the LEO. In
//     replicated mode AddWaiter channels are also signalled when the LEO
//     advances, so replica fetchers' long polls wake.
//   - WaitHighWatermark (acks=all) returns once the HW passes an offset;
//     it fails on fence, close, or when TruncateTo removes the offset
//     (ErrTruncated). WaitDurable stays the acks=1 wait.
//   - Once the engine has a lease source (SetLeaseSource), Append to a
//     replicated log runs fencing.CheckAppend: a live lease, and the
//     batch's epoch equal to the writer epoch set with SetWriterEpoch when
//     this node began leading the active segment (fencing.NoWriter
//     otherwise). The lease source is a function the broker hands in, so
//     storage reads the node's current lease without knowing where it
//     comes from. Refusals (ErrNotWriter,
//     ErrLeaseExpired, ErrStaleEpoch, ErrUnknownEpoch) write nothing and do
//     not fence the log.
//   - AppendReplica writes whole batches copied from the leader, unchanged:
//     validated (CRC-32C), starting at the LEO and contiguous
//     (ErrOffsetMismatch), epochs never below the log's latest
//     (ErrStaleEpoch); nothing is written on a validation error. Indexes,
//     epochs and producer state are updated as by Append, so a follower can
//     take over as leader with the same idempotent-producer state.
//     AppendReplicaGap is the same for a cleaned sealed range (learners,
//     re-copies): the first batch may start above the LEO, later ones need
//     only increasing offsets, and batches may hold fewer records than
//     offsets, or none.
//   - TruncateTo(off) drops the batches holding offsets >= off (the LEO
//     becomes off, or the base of a batch straddling off, or, if off lies
//     in an offset gap, the end of the batch before the gap); it refuses
//     to go below the HW (ErrBelowHighWatermark, invariant I3), and into
//     the files of a pending rewrite (ErrRewritePending).
//   - EndOffsetForEpoch answers OffsetForLeaderEpoch from the epoch cache.
//   - SegmentChecksum(base, end) is the CRC-32C and length of the stored
//     bytes of the batches in [base, end), gaps or not, for invariant I4.
//
// # I/O backends
//
// Segment (.log) files are opened through the FS and then wrapped by the
// engine's I/O backend (Options.IO, config storage.io), so appends, reads,
// recovery scans and fdatasyncs go through it; index, snapshot and
// checkpoint files use the FS directly. A segment's file is a segFile
// (fdpool.go): it holds a descriptor only while in use, pinned for each
// operation, within the Engine's bound (Options.MaxOpenFiles) and closed
// after Options.OpenFileIdle unused; a write no Sync covered is
// fdatasync'ed before its descriptor closes, and a sync error is kept for
// the next Sync (docs/io-and-scale.md, section 3). There are two backends:
//
//   - syscall: pwrite, pread and fdatasync; a group commit runs up to 4
//     fdatasyncs in parallel goroutines.
//   - uring: one io_uring ring per Engine (package storage/internal/uring,
//     256 SQ entries). A group commit submits the fdatasyncs of all dirty
//     logs with one io_uring_enter and waits for all completions; the
//     kernel runs them concurrently in its io-wq workers. With
//     storage.io=uring, writes and reads go through the ring too.
//
// storage.io=auto (the default) probes io_uring at Open (a ring and a NOP;
// it fails on old kernels, under seccomp and with kernel.io_uring_disabled)
// and logs a warning and uses syscall if it is unavailable. If it is
// available, auto uses the ring for group commits of several files only
// (a commit of one file calls fdatasync itself: the ring would batch
// nothing and add its reaper's wake-up) and plain pwrite/pread for writes
// and reads, because that measured fastest on the 2-core ext4 development
// machine (kernel 6.18):
//
//	4 KiB buffered write:  io_uring 68 µs (ext4 punts buffered writes to
//	                       io-wq), pwrite 5 µs
//	4 KiB page-cache read: io_uring 4.4 µs, pread 3.3 µs
//	group commit of 6 files (4 KiB each): uring 1.57 ms (3,815 fsyncs/s),
//	                       4 goroutines 2.63 ms (2,279 fsyncs/s)
//	group commit of 64 files: uring 3,907 fsyncs/s, syscall 3,071
//
// (go test ./storage/internal/uring -bench . and
// go test ./storage -bench 'GroupCommitSync|Append|Read|Recovery').
// Appends are written synchronously by Append, so one submission carries
// the fdatasyncs of many partitions but not their writes.
//
// Above either backend, storage.commit-sync=auto (Options.SyncMethod,
// syncfs.go) makes a group commit of two or more segment files on the data
// directory's file system one syncfs(2) of it: one journal commit and one
// device cache flush instead of one per file (6 files of 4 KiB: p50 0.37
// ms against 0.65-0.70 ms for parallel fdatasyncs, 1 flush against 5.5).
// It needs Linux 5.8+ (syncfs reports writeback errors since then) and
// OSFS, and is skipped while the machine has more than 32 MiB of dirty
// page cache (someone else's writes a syncfs would wait for). On a
// syncfs error each file is fdatasynced on its own to learn which
// failed; if none says, all of the commit's files fail.
//
// Fault handling is identical: a negative completion result becomes the
// same *os.PathError (with the errno) that the syscall returns, and a short
// write is io.ErrShortWrite; either fails the append or the waiters and
// fences the log. The suite runs over CrashFS and real files with both
// backends; with uring, faults are injected into the ring's ops.
//
// # On-disk format
//
//	<Dir>/
//	  <topic>-<partition>/          (split at the last '-')
//	    00000000000000000000.log        record batches, back to back
//	    00000000000000000000.index      sealed segments only
//	    00000000000000000000.timeindex  sealed segments only
//	    00000000000000000000.txnindex   sealed segments only: aborted transactions
//	    00000000000000001234.log        next segment, base offset 1234
//	    00000000000000001234.snapshot   producer state as of offset 1234
//	    log-start-offset                checkpoint
//	    high-watermark                  replicated logs: HW at the last clean close
//	    leader-epoch-checkpoint         epoch cache below the active segment
//	    truncate-to                     only while a TruncateTo runs
//	    clean-generation                generation of the last committed rewrite
//	    clean-swap                      only while a rewrite's Commit runs
//	    <base>.log.cleaned              a pending rewrite's output (with
//	    <base>.index.cleaned            .index.cleaned, .timeindex.cleaned and
//	    <base>.timeindex.cleaned        .txnindex.cleaned), not part of the
//	    <base>.txnindex.cleaned         log until swapped in
//	    *.deleted                       a dropped segment's file: queued for the
//	                                    deleter, or kept as the log's spare for
//	                                    its next roll (recycle.go); recovery
//	                                    hands every one to the deleter
//	  <topic>-<partition>.<ns>-<seq>.deleted  a log being deleted
//
// A .log file holds Kafka v2 record batches exactly as produced, except
// that BaseOffset and PartitionLeaderEpoch (both outside the CRC) are
// rewritten by Append; AppendReplica stores the leader's bytes unchanged,
// so replicas hold identical bytes. Offsets increase strictly across
// batches and segments. A file's name is the first offset it covers: its
// first batch starts there or, after a cleaning (docs/compaction.md),
// later (an offset gap), and its last batch ends just before the next
// file's base. Batches the log itself writes are contiguous; cleaned
// ranges may also have gaps between batches, and empty batches (record
// count 0, base offset and last offset delta kept), and partly emptied
// ones (fewer records than offsets). A read from an offset in a gap
// returns the next batch; producer state takes a batch's sequence range
// from its last offset delta, not its record count.
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
//	.txnindex   +---------+---------+---------+---------+---------+
//	            | ver i16 | pid i64 | first   | last    | lso i64 |
//	            |   (0)   |         | i64     | i64     |         |
//	            +---------+---------+---------+---------+---------+
//	            sealed segments only (Kafka's AbortedTxn layout, 34
//	            bytes): one entry per ABORT marker in the file, in
//	            offset order: the transaction's producer, first offset,
//	            the marker's offset, and the last stable offset once
//	            the marker was written. Written at roll; the active
//	            file's entries live in memory.
//	.snapshot   "TSKP" | version u16 (2) | count u32 |
//	            count × { producerID i64 | epoch i16 | lastTimestamp i64 |
//	                      txnFirstOffset i64 | coordinatorEpoch i32 |
//	                      n u8 | n × { firstSeq i32 | lastSeq i32 |
//	                                   firstOffset i64 | lastOffset i64 } } |
//	            CRC-32C u32 of everything before it
//	            (txnFirstOffset: the producer's open transaction, -1 none;
//	            coordinatorEpoch: its last marker's, -1 none; version 1,
//	            without both, still loads with -1s)
//	log-start-offset  "TSKL" | offset i64 | CRC-32C u32   (16 bytes)
//	truncate-to       "TSKT" | offset i64 | CRC-32C u32   (16 bytes)
//	high-watermark    "TSKH" | offset i64 | CRC-32C u32   (16 bytes)
//	clean-generation  "TSKG" | generation i32 | CRC-32C u32   (12 bytes)
//	clean-swap  "TSKW" | version u16 (1) | generation i32 | logStart i64 |
//	            nOld u32 | nOld × base i64 | nNew u32 | nNew × base i64 |
//	            CRC-32C u32
//	            (old: the files the rewrite replaces; new: the files it
//	            puts in place, named <base>.*.cleaned until renamed)
//	leader-epoch-checkpoint
//	            "TSKE" | version u16 (1) | end i64 | count u32 |
//	            count × { epoch i32 | startOffset i64 } | CRC-32C u32
//	            (entries in increasing epoch and start order; they
//	            describe the log below end, the active segment's base
//	            when written)
//
// All integers are big-endian.
//
// # Durability of files
//
// Under fsync=always the active segment's blocks are reserved ahead of
// its writes with fallocate (prealloc.go), so the file may be longer than
// its data; the segment records that length (stale, as for a recycled
// file), a roll and a clean close truncate the file to its data, and
// recovery cuts the zeros as a torn tail.
//
// Rolling a segment fdatasyncs the old .log, writes and fsyncs its .index,
// .timeindex, .txnindex and the .snapshot named after the new base, creates the new
// .log and fsyncs the directory, so sealed segments are always durable and
// indexed. log-start-offset is replaced atomically (write .tmp, fsync,
// rename, fsync directory) before any segment below it is deleted.
// high-watermark is written the same way when a replicated log closes
// cleanly; the next open starts its HW there (clamped to the log), as
// Kafka's HW checkpoint does. Without one a replicated log opens with the
// HW at its start. The recorded HW was committed, and TruncateTo never
// goes below the HW, so it stays true across later crashes.
//
// The leader-epoch-checkpoint is rewritten (write .tmp, fsync, rename) at
// every roll, before the new segment is created, and made durable by the
// roll's directory fsync. The epoch cache itself lives in memory: one
// entry per epoch (epoch, first offset stamped with it), added by Append
// (when its leaderEpoch exceeds the latest) and AppendReplica, cut by
// TruncateTo, trimmed below the log start by retention and DeleteRecords.
//
// TruncateTo is made crash-safe by a redo record: (1) write truncate-to
// (.tmp, fsync, rename, fsync directory), the commit point; (2) delete
// the later segments' files and the new active segment's index files; (3)
// cut the segment file, fdatasync it, fsync the directory; (4) remove
// truncate-to and fsync the directory, all under the log mutex, before any
// new append. A crash before (1) is durable leaves the old log; after it,
// recovery redoes the truncation. Producer state is rebuilt from the
// newest snapshot at or below the new active segment's base plus a replay.
// An I/O error in TruncateTo fences the log. A group commit that began
// before a truncation does not advance the durable offset afterwards.
//
// A rewrite (rewrite.go, docs/compaction.md) replaces the sealed files
// below an offset upTo by cleaned ones. BeginRewrite rolls the active
// file if upTo lies in it and pins the covered files (retention,
// DeleteRecords and recycling remove none of them until Commit or Abort;
// TruncateTo into them is refused). The output is written under
// *.cleaned names; Prepare copies the batches at and above upTo of a
// file straddling upTo into <upTo>.log.cleaned, writes every output's
// index files (the .txnindex from replaying the output from an empty
// producer state, as recovery would; the split part keeps its file's
// entries), fdatasyncs them and fsyncs the directory. Commit, under
// the log mutex: (1) writes clean-swap (.tmp, fsync, rename, fsync
// directory), the commit point; (2) raises log-start-offset to
// max(log start, from) if needed; (3) closes the old files (readers that
// pinned one finish first), renames each to a *.deleted name (removing
// its small files) and each *.cleaned file into place; (4) fsyncs the
// directory, writes clean-generation, removes clean-swap and fsyncs the
// directory; then hands the old files to the deleter, which waits for
// their open Sections. Each step of (2)-(4) is idempotent: a new file
// whose <base>.log.cleaned is gone is in place. A crash before (1) is
// durable leaves the old files (recovery removes the *.cleaned output);
// after it, recovery completes the swap. An I/O error after (1) fences
// the log. Output below the log start (DeleteRecords during the rewrite)
// goes afterwards like any segment below the log start.
//
// Segment data is never unlinked at once (a large unlink stalls every
// fdatasync on the file system behind the journal): retention,
// DeleteRecords, TruncateTo, recovery and DeleteLog remove a segment's
// small files, rename its .log (or the whole log directory) to a unique
// *.deleted name and fsync the directory; only then does the engine's
// deleter shrink the file from its end in paced ftruncate steps and
// unlink the rest, once no Section reads it (deleter.go). A crash leaves
// the segment whole under its name or a *.deleted file, never a
// shortened segment.
//
// # Recovery
//
// OpenLog of an existing directory loads log-start-offset, deletes segments
// wholly below it, and trusts each sealed segment's index files after a
// cheap check (entries in range and monotonic; the batches after the last
// index entry end exactly at the file's end and at the next segment's base);
// a missing or inconsistent index is rebuilt by scanning (CRC-32C, lengths,
// strictly increasing offsets, each batch's base at or above the offset
// after the previous one: gaps pass) and rewritten. A sealed segment that
// does not reach the next base truncates the log there.
// The last (active) segment is scanned batch header by batch header,
// verifying CRC-32C, lengths and increasing offsets (gaps allowed), and
// truncated at the first torn, corrupt or short batch, or at the first
// batch below the next offset: an active segment may be a recycled file
// (recycle.go) that still holds valid batches of an earlier segment of
// the same log past its new data, all below the log start offset, so they
// end the scan like a torn tail.
// Its indexes are rebuilt in memory. Producer state
// is the newest valid .snapshot at or below the active segment's base, plus
// a replay of the batch headers after it (and of each transaction
// marker's record). A sealed segment's .txnindex is trusted after a cheap
// check (version 0, markers inside the file in increasing order, first <=
// last < lso); a missing or inconsistent one is rebuilt by that replay,
// which then starts from the newest snapshot at or below the first such
// segment (or from the log's first batch), and rewritten.
//
// # Transactions
//
// (docs/transactions.md, "Partition side".) Producer state (package
// fencing) holds, per producer, the first offset of its open transaction
// and the coordinator epoch of its last marker. A transactional data
// batch with records opens its producer's transaction at its base offset
// if none is open; a control batch (COMMIT/ABORT marker, written by
// AppendMarker, Append or AppendReplica) closes it, and an ABORT adds
// {producer, first offset, marker offset, LSO after it} to the index of
// the file holding the marker. Appends, AppendReplica(Gap), recovery and
// TruncateTo apply the same rules to the same bytes, so every replica has
// the same state. A batch emptied by a cleaning opens nothing (cleanings
// stay below the first unstable offset) and an emptied marker closes
// nothing. The LSO is min(first open transaction's first offset, HW);
// ReadCommitted stops there, and AbortedTransactions reads the index of
// the file holding its start and of later files, until an entry's LSO
// reaches its end (Kafka's collectAbortedTxns). A rewrite keeps the
// entries of the files it replaces (the cleaner keeps markers).
//
// First of all, a clean-swap record is completed (the renames of
// Commit, repeated idempotently) and any *.cleaned file left is removed,
// before the *.deleted files go to the deleter; the generation is read
// from clean-generation (0 without one).
//
// A truncate-to record is applied next: segment files above its offset
// are deleted and the active segment's scan stops at it; the record is
// removed once that is durable. The epoch cache is the checkpoint's
// entries below both its end and the active segment's base, then a header
// scan of any sealed segments from there (all of them when the checkpoint
// is missing or corrupt, e.g. data written before it existed), then the
// active segment's scan.
package storage
