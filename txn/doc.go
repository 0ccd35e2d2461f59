// Package txn is Tusk's transaction coordinator (exactly-once, KIP-98),
// written as a protocol-level state machine with no network and no disk
// I/O, like package groups. docs/transactions.md describes where it sits.
//
// # What it owns
//
// For the transactional ids of one __transaction_state partition (the
// broker creates one Coordinator per partition it leads, with that
// partition's leader epoch as the coordinator epoch, and Closes it when
// leadership moves): producer id and epoch per transactional id, the
// transaction states (Empty → Ongoing → PrepareCommit/PrepareAbort →
// CompleteCommit/CompleteAbort → Ongoing ...), the partitions of each
// transaction, timeouts and id expiration. Request handlers take and
// return kmsg types (InitProducerId with a transactional id,
// AddPartitionsToTxn v0-v3, AddOffsetsToTxn, EndTxn, DescribeTransactions,
// ListTransactions) with Kafka's error codes and meanings, including the
// version-dependent PRODUCER_FENCED / INVALID_PRODUCER_EPOCH; Verify
// answers a partition leader's KIP-890 part 1 check. The semantics are
// Kafka's TransactionCoordinator's (see each method).
//
// The broker owns: routing (FindCoordinator key type 1, NOT_COORDINATOR
// for ids of another partition), the idempotent (null transactional id)
// InitProducerId, ACLs, topic existence (through Config.PartitionExists),
// the producer id blocks (ProducerIDs), writing the records (Persister),
// and sending WriteTxnMarkers to partition leaders (Markers).
//
// # Concurrency contract
//
// Each transactional id has its own mutex, held across Persist (one id's
// records are persisted in order, and a transition is applied only after
// its record is committed, so a failed Persist changes nothing). The
// coordinator-wide mutex guards only the id→metadata map; it is never held
// while an id's lock is taken or while anything waits (lock order: id →
// map). Markers are written without the id's lock: EndTxn answers once
// Prepare* is persisted, and a goroutine writes the markers (retrying
// after Config.RetryBackoff) and then persists Complete* under the lock;
// meanwhile the id's requests are answered CONCURRENT_TRANSACTIONS.
// Tick never waits: an id whose lock is held is left for the next Tick,
// and the persists a tick starts (a timeout abort, an expiration
// tombstone) run in goroutines holding the id's lock. Verify,
// DescribeTransactions and ListTransactions read each id as of its last
// committed transition (an atomic view), so they never wait for a Persist
// either (a partition leader's produce is not held up by another request
// of the same producer). Close cancels the
// ctx of every Persist and marker write in flight (their callers get
// NOT_COORDINATOR) and waits for those goroutines. All methods are safe
// for concurrent use.
//
// Time comes from Config.Now; a goroutine calls Tick every
// Config.TickInterval (tests disable it and move a fake clock).
//
// # Records
//
// __transaction_state uses Kafka's schemas, so Kafka tooling reads it:
// key TxnMetadataKey v0 (transactional id), value TxnMetadataValue v0
// (producer id and epoch, timeout, state, partitions, last update and
// start timestamps). Every transition writes the id's whole state (the
// latest record wins; the topic is compacted); an expired id gets a
// tombstone. Empty, Complete* records carry no partitions. Dead and
// PrepareEpochFence are never written (a fence is written as PrepareAbort
// at the bumped epoch). The previous producer id and epoch that KIP-360
// retries are checked against are kept in memory only (as Kafka without
// transaction.version 2): after a failover a retry of a bump whose answer
// was lost is PRODUCER_FENCED.
//
// # Loading and failover
//
// New returns a coordinator that is loading (every request answered
// COORDINATOR_LOAD_IN_PROGRESS). The broker feeds the partition's records
// in log order to Replay, then calls ReplayDone, which starts serving and
// completes every transaction the log left in PrepareCommit/PrepareAbort
// by writing its markers again (with this coordinator's epoch; markers are
// idempotent at the partitions) and persisting Complete*. Ongoing
// transactions come back Ongoing and are aborted by Tick when they time
// out.
package txn
