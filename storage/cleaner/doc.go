// Package cleaner is Tusk's log cleaner for compacted topics
// (cleanup.policy=compact) as a pure function: Clean reads the batches of
// a sealed range twice through a Source and writes the cleaned batches,
// and its output depends only on the input bytes and Params, so every
// replica running the same cleaning command produces identical bytes.
// docs/compaction.md has the design and the protocol around it; this
// package is its "The cleaner" part and follows its "Rules".
//
// Transactions are decided from the range's bytes alone: a transactional
// data batch of producer P at offset o belongs to P's first COMMIT/ABORT
// marker after o in the range (txn.go). Its records are plain data if that
// marker is a COMMIT, are removed if it is an ABORT, and if P has no
// marker after o in the range (it is at or past UpTo: "undecided") the
// batch is kept byte for byte and its records supersede nothing, so a
// later abort cannot lose an older committed value; a later cleaning
// decides it.
//
// Pass 1 maps every keyed record of a plain or committed data batch to
// the highest offset of its key (keys are mapped by SHA-256 truncated to
// 16 bytes; a transaction's records enter the map when its COMMIT is
// read, aborted and undecided ones never), and notes each chain segment's
// last batch, each producer id's last data batch and every producer's
// markers. Pass 2 keeps a record of a plain or committed batch iff it has
// a key, it is its key's latest, and it is not a tombstone (null value)
// whose segment's horizon has passed (Segment.SealedAtMs +
// DeleteRetentionMs <= NowMs; never by record timestamps). Per batch:
//
//   - a marker is removed once its horizon (the tombstones') passed, no
//     batch of its transaction (kept or emptied) was written and it is
//     no chain segment's last batch; otherwise it is copied byte for
//     byte, so no transactional data is ever left without its marker;
//   - other control batches (no producer, no records, a record that is
//     no COMMIT/ABORT) pass through byte for byte and close nothing, as
//     storage's replay treats them;
//   - an undecided batch is copied byte for byte;
//   - an aborted batch is dropped, or emptied if it is the last batch of
//     a chain segment or its producer's last data batch (so aborted
//     records are never resurrected by those rules);
//   - a data batch keeping every record is copied byte for byte;
//   - a data batch keeping some is re-encoded: the same header fields
//     (base offset, last offset delta, leader epoch, attributes, base and
//     max timestamps, producer id, epoch and base sequence), the
//     survivors' record bytes unchanged (so their offset and timestamp
//     deltas and headers are), the same codec (see codec.go for the fixed
//     settings), the new record count and a fresh CRC-32C;
//   - a data batch keeping none is dropped, unless it is the last batch of
//     a chain segment within the range or its producer's last data batch
//     in the range: then it becomes an empty batch (its header with zero
//     records and an uncompressed, empty payload), as in Kafka, so a
//     segment's end and a producer's sequence state survive. An input
//     batch that is already empty is kept as it is under the same rule.
//
// The keyed records of transactions not yet decided in pass 1 are held in
// memory (24 bytes each) until their marker; they are bounded by the
// transactions open at once in the range. The key map holds MapBytes/80
// keys in memory; beyond that it
// spills sorted runs to a private directory inside SpillDir, merges them
// into one sorted file of (hash, highest offset) and, in pass 2, looks keys
// up through an in-memory sparse index and ReadAt. Spilling changes where
// the answers come from, never the output.
package cleaner
