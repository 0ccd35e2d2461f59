// Package groups is Tusk's classic (pre-KIP-848) consumer group coordinator,
// written as a protocol-level state machine with no network and no disk I/O.
//
// KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe)
// are ConsumerGroup (consumer.go, consumer_records.go) with the server-side
// assignors of package groups/assign, held by the Coordinator beside
// classic groups in one name → group map (a group has a GroupType;
// consumer_api.go; docs/groups-next.md, part A), with share groups the
// third type.
//
// # What it owns
//
// For the groups of one __consumer_offsets partition (the broker creates one
// Coordinator per partition it leads, and Closes it when leadership moves):
// membership, the Empty / PreparingRebalance / CompletingRebalance / Stable /
// Dead state machine, session, rebalance, pending-sync and initial-rebalance
// delays, static membership (KIP-345, FENCED_INSTANCE_ID, KIP-814
// SkipAssignment), MEMBER_ID_REQUIRED from JoinGroup v4 only (KIP-394),
// protocol selection by Kafka's vote, and committed offsets. Request
// handlers take and return kmsg types (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups,
// DeleteGroups, OffsetDelete), with Kafka's error codes and meanings. It is
// protocol-agnostic: assignor metadata and the leader's assignment bytes are
// passed through untouched (an empty assignment of protocol type "consumer"
// is answered as an encoded empty ConsumerMemberAssignment, never as zero
// bytes). Only for protocol type "consumer" does it decode subscriptions, as
// Kafka does, to know subscribed topics (OffsetDelete's
// GROUP_SUBSCRIBED_TO_TOPIC and offset expiration of Stable groups).
//
// The broker owns: routing (FindCoordinator, NOT_COORDINATOR for groups
// hashed to another partition), ACLs, request/response framing, OffsetCommit
// v10+/OffsetFetch v10+ topic ids, and the __consumer_offsets log itself.
//
// # Concurrency contract
//
// Each group has its own mutex; the coordinator-wide mutex guards only the
// name→group map and is never held while a group lock is taken or while
// anything waits (lock order: group → map). JoinGroup and SyncGroup park the
// caller on a per-request channel after releasing the group lock and return
// when the protocol answers them or ctx is done. A cancelled JoinGroup stops
// counting the member as rejoined; a cancelled SyncGroup is forgotten. All
// methods are safe for concurrent use.
//
// A group's lock is held across Persist, which may wait seconds (for the
// replicas of __consumer_offsets), so what walks every group never waits
// for one group's lock: Tick skips a busy group and its holder runs the
// skipped tick as it releases the lock; a tick that leaves a group Empty
// hands the locked group to a goroutine that persists the group metadata
// and then releases it; ListGroups reads each group's state as of its last
// unlock. Close cancels the ctx of every Persist in flight (their callers
// get NOT_COORDINATOR) before it takes each group's lock. ExpireOffsets,
// the broker's background retention pass, does wait for each group in turn.
//
// Time comes from Config.Now. Deadlines (member sessions, pending
// MEMBER_ID_REQUIRED members, the rebalance timeout, the initial rebalance
// delay and its extensions, the pending-sync timeout) are checked by Tick,
// which a goroutine runs every Config.TickInterval; tests disable it and
// call Tick after moving a fake clock, so nothing depends on sleeping.
// ExpireOffsets is not run automatically: the broker calls it every
// offsets.retention.check.interval.ms with a topic-existence callback.
//
// # Persistence and records
//
// Persister.Persist is called with the group's lock held, so one group's
// records are persisted in order, and the coordinator answers success only
// after it returns nil (a request that changed the group is answered after
// the change is persisted, including a group left Empty). Records use Kafka's __consumer_offsets schemas so
// Kafka tooling can read the log:
//
//   - offset commit: key OffsetCommitKey v1 (group, topic, partition); value
//     OffsetCommitValue v3 (offset, leader epoch, metadata, commit
//     timestamp), or v1 when OffsetCommit v2–v4 gave a retention time
//     (expire timestamp). Written on OffsetCommit.
//   - group metadata: key GroupMetadataKey v2 (group); value
//     GroupMetadataValue v3 (protocol type, generation, protocol, leader,
//     current state timestamp, members with their subscription for the
//     chosen protocol and assignment). Written when the leader's SyncGroup
//     completes a rebalance (before anyone gets an assignment), when a
//     rebalance leaves the group Empty, and when a static member replaces
//     its member id without a rebalance.
//   - transactional offset commits (TxnOffsetCommit, txn.go): the same
//     offset records in a transactional batch of the producer
//     (TxnPersister), pending in the group until the broker reports the
//     transaction's marker (CompleteTxn; ReplayTxn while loading).
//     OffsetFetch with RequireStable answers UNSTABLE_OFFSET_COMMIT for a
//     partition with one pending.
//   - tombstones (nil value) for offsets on OffsetDelete, DeleteGroups and
//     expiry, and for the group metadata on DeleteGroups and when an Empty
//     group has no offsets left.
//
// Persist errors: a *kerr.Error (possibly wrapped) is returned to the client
// as is; anything else becomes COORDINATOR_NOT_AVAILABLE. A failed commit
// changes nothing; a failed assignment store fails every SyncGroup of the
// generation and starts a new rebalance, as in Kafka.
//
// # Loading
//
// New returns a coordinator that is loading: Kafka's answers while loading
// apply (COORDINATOR_LOAD_IN_PROGRESS; SyncGroup says REBALANCE_IN_PROGRESS
// and Heartbeat says NONE, as Kafka does for old clients). The broker feeds
// every record of the partition, in log order, to Replay and then calls
// ReplayDone. Replay rebuilds committed offsets and each group's generation,
// protocol, leader and members; groups with members come back Stable (their
// sessions restart at ReplayDone, so members that are gone expire and the
// group rebalances), the rest Empty. KIP-848 consumer-group records (key
// types 3, 5-8, Kafka's formats, consumer_records.go) rebuild consumer
// groups; types 4 and 16 are skipped (docs/groups-next.md, part A).
package groups
