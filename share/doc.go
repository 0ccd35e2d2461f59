// Package share is the KIP-932 share-partition state machine: the record
// bookkeeping a share group keeps for one topic-partition, written with no
// network and no disk I/O, like the classic coordinator in package groups.
//
// # What it owns
//
// A Partition is the state of one (share group, topic-partition) on the
// partition's active segment leader (see docs/groups-next.md, part B1):
//
//   - the share-partition start offset (SPSO): every offset below it is
//     finished (acknowledged, archived, or below the log start);
//   - the share-partition end offset (SPEO): one past the last offset the
//     partition has tracked; offsets at or above it have never been
//     acquired;
//   - for each offset in [SPSO, SPEO): its state (Available, Acquired,
//     Acknowledged, Archived), its delivery count, and while Acquired the
//     acquiring member and the lock deadline. Offsets the log has no record
//     for (gaps left by compaction, seen between the batches the caller
//     passes to Acquire) are tracked as Archived and never delivered.
//
// Operations: Acquire (whole log batches where possible, within the
// request's MaxRecords, which like Kafka's batch-optimized mode is a soft
// limit rounded up to the batch, and strictly within MaxRecordLocks
// in-flight offsets), Acknowledge (ACCEPT, RELEASE, REJECT, GAP and the v2
// RENEW, all or nothing per request, with Kafka's INVALID_REQUEST and
// INVALID_RECORD_STATE), ReleaseMember (a member left or its share session
// closed), Unacquire (an acquisition whose answer was never sent, taken
// back with its delivery count), Expire (acquisition locks past their
// deadline), AdvanceLogStart (retention moved the log start past the
// SPSO), SetConfig (group configs altered while in use). A record released or
// expired at the delivery count limit is archived instead of made
// available, and a record is never acquired again once archived or
// acknowledged. The SPSO moves forward over the finished prefix after every
// operation and never moves back.
//
// What the caller owns: reading the log (the batch boundaries it passes to
// Acquire, read from the offset FetchOffset returns), the records' bytes,
// share sessions and their epochs, membership, the clock, and persisting
// the Updates.
//
// # Persistence
//
// Every mutating operation returns an Update in the form Kafka's
// ShareUpdate record (and WriteShareGroupState) carries: the new start
// offset (-1 when unchanged) and the changed offset ranges with their
// persisted state and delivery count. The persisted form has no Acquired
// state: an acquired record is written as Available with its delivery
// count, so after a failover it is redelivered, and its count (which
// Acquire already incremented) keeps the delivery limit across the
// failover. That is why Acquire returns an Update too: KIP-932 writes
// nothing at acquisition and may lose one in-flight delivery on a leader
// crash; Tusk persists the count before the ShareFetch answer so the limit
// holds. Acknowledged records are written as Acknowledged (2), archived
// ones and gaps as Archived (4); ranges below the new start offset are
// left out (the start offset covers them). Renewing a lock changes nothing
// durable and returns an empty Update. The caller writes a non-empty
// Update before it answers the request that caused it.
//
// Snapshot returns the whole state in the form of Kafka's ShareSnapshot;
// Restore builds a Partition from one (or from a snapshot with updates
// applied by Snapshot.Apply), for failover: acquired records come back
// Available with their delivery count kept, nothing acknowledged is
// redelivered. Handover and FromHandover carry the in-memory state,
// acquisition locks included, to the next leader at a segment roll, so a
// roll redelivers nothing and extends no lock.
//
// # Concurrency contract
//
// A Partition is not safe for concurrent use: its owner serializes every
// call (one mutex per Partition, held across FetchOffset, the log read and
// Acquire, and while the Update is persisted, so Updates are written in the
// order they were made). Time is passed in by the caller (now); nothing
// here reads a clock, sleeps or starts a goroutine. Expire is driven by
// the caller, which can use NextDeadline to schedule it.
package share
