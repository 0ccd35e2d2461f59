// Package metadata owns cluster metadata and the controller: brokers,
// topics (with topic IDs and configs), partitions as chains of segments,
// producer-ID blocks and cluster configs; the commands that change them;
// the Raft node that replicates them; and the controller logic that runs
// on the Raft leader.
//
// # State machine
//
// The state is a deterministic state machine (FSM): every change is an
// explicit, versioned Command with compare-and-set preconditions, applied in
// log order, and the FSM never consults clocks or node-local counters. A
// command that fails validation or its preconditions changes nothing (but
// still counts as applied). Snapshots are the JSON state prefixed by the applied index.
//
// # Raft
//
// RaftStore runs hashicorp/raft with raft-boltdb/v2 as log and stable store
// and file snapshots under <data-dir>/raft. Every node of the initial
// cluster is started with the same voter list and bootstraps with exactly
// that list when it has no Raft state, so no node is special; a node not in
// the list waits to be added (AddNode). With no voters a node is a cluster
// of one; without a Raft listener it uses an in-memory transport. Three
// wrappers sit around raft's network transport (docs/architecture.md,
// "Internal RPC"): peerretry.go retries AppendEntries to an unreachable
// peer, raft_pipeline.go closes a replication pipeline whose send is
// stuck, and raft_stream.go tracks the connections this node dials, so
// that Close, right after asking raft to shut down, closes every
// pipeline and dialled connection and no RPC in flight holds it up.
//
// Apply commits a command through the controller: on the leader directly,
// on a follower through the Forwarder (the broker's internal listener). It
// returns once the local FSM has applied the command; the leader pushes
// each commit to the followers at once with a barrier entry
// (pushCommits; docs/io-and-scale.md, "Scale"), so a follower's Apply
// does not wait for raft's next CommitTimeout tick. It retries while
// there is no reachable leader; since a leader lost mid-commit leaves the
// attempt's fate unknown, every attempt of one call carries the same
// random request ID, and the FSM applies an ID once (it remembers the
// last 4,096, in its snapshots too) and answers a repeat with the first
// outcome.
//
// # Controller
//
// The Raft leader is the controller. Brokers heartbeat it (not Raft
// entries); a heartbeat registers the broker or updates its addresses when
// they differ from the FSM, and grants a lease. The controller fences a
// broker (a Raft entry) whose heartbeats stopped for lease.timeout plus a
// margin of two renewals, and a fenced broker's next heartbeat unfences it.
// A new controller counts its own election as everyone's last heartbeat, so
// it honours the leases its predecessor granted. New partitions are placed
// on live brokers (alive and heard within a lease): leaders on the least
// loaded, further replicas rack-aware (Place); AutoReplicationFactor asks
// for min(3, live brokers).
//
// The controller also keeps segment chains healthy: it fails over a
// replicated partition whose active segment leader was fenced
// (FenceSegment, a probe of the surviving replicas' log end offsets, then
// RollSegment sealing at the smallest), picks the next leader of a roll
// a leader proposes (by load; internal topics keep theirs), and names
// learners (AssignLearners) for a partition whose active segment has had
// fewer replicas than its replication factor for ReplicaRestore; a later
// roll takes them in (RollSegment.Joined), which makes them replicas of
// the sealed segments they copied too. A reassignment (ReassignPartition,
// Partition.Target) reuses that: the controller names the target's
// missing nodes learners, and the leader's last roll drops the others
// (RollSegment.DropSealed); a preferred-leader election (ElectLeader,
// Partition.Elect) asks the leader to roll to the elected replica
// (docs/replication.md).
//
// # Store
//
// Store is the interface package broker uses (exactly the RaftStore
// methods it calls): FSM for reads, Apply and ApplyLocal for commands,
// IsLeader and Leader, Heartbeat, the membership operations, Snapshot,
// Close, and SetForwarder and SetProber for the broker's side of
// forwarding and failover probes. RaftStore implements it; tests may
// provide their own.
//
// # Validation
//
// Every command is checked on its own (Validate: known kind, sane names,
// ids and counts, topic configs against configs.TopicConfigs) before it
// enters the Raft log, in RaftStore.Apply and in ApplyLocal, the entry
// point of commands from other nodes. The FSM validates again when it
// applies an entry, so an invalid entry an older version logged fails
// (ErrInvalidCommand) alike on every node; applying is total (no entry
// panics it, see FuzzApply).
//
// # Concurrency
//
// FSM reads (Topic, Topics, Brokers, ...) are safe from any
// goroutine and return copies (Partition copies one partition of a topic,
// for per-partition passes); Changed and WaitApplied let readers follow
// the state. RaftStore methods are safe for concurrent use.
package metadata
