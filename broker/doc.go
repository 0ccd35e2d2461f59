// Package broker is Tusk's Kafka front end: the Kafka and HTTP listeners,
// connections, one file per Kafka API, and the glue between the wire
// protocol, metadata and storage.
//
// # APIs
//
// Every API lives in its own file named after its key (00_produce.go,
// 01_fetch.go, ...). The file's constructor returns an api value with the
// key, the supported version range and the handler; registry() lists them.
// That one list drives both request dispatch and the ApiVersions response,
// so the two cannot drift.
//
// # Connections
//
// Each connection has a read goroutine and a write goroutine. The read
// goroutine decodes requests and runs their handlers in arrival order, so
// appends from one connection (e.g. an idempotent producer's pipelined
// batches) reach the log in order. A handler may return a deferred
// completion (waiting for group commit, a fetch long poll); that runs in its
// own goroutine while the read goroutine moves on. The write goroutine sends
// responses strictly in request order. At most kafka.max-inflight responses
// may be pending per connection; beyond that reading pauses (backpressure).
//
// Malformed frames, frames above kafka.request-max-bytes, unknown API keys
// and unsupported versions (except ApiVersions, answered in v0 with
// UNSUPPORTED_VERSION) close the connection with a log line. Errors in a
// request's content are answered with Kafka error codes.
//
// # Cluster
//
// Metadata lives in the Raft FSM (package metadata, reached through the
// metadata.Store interface); every node answers Metadata, DescribeCluster
// and FindCoordinator from its local replica, and names itself as the
// controller (as KRaft brokers do: it forwards admin writes). Write-type
// admin requests (CreateTopics, DeleteTopics, CreatePartitions,
// AlterConfigs, IncrementalAlterConfigs, AlterClientQuotas, producer-id
// blocks) become Raft commands that a follower forwards to the
// controller; the request is answered once this node's FSM has applied
// the command, so a client reads its own write from the node it asked.
// Client quotas (producer_byte_rate, consumer_byte_rate) are enforced by
// each node for its own traffic with throttle_time_ms and a muted
// connection (quota.go). Produce is served by the
// partition's leader (the leader of its active segment); other nodes
// forward it (forward.go) or answer NOT_LEADER_OR_FOLLOWER with KIP-951
// hints. Fetch is served by the leader, and sealed ranges by any replica
// holding them (sealed_reads.go); clients and followers may use
// incremental fetch sessions (KIP-227, fetch_session.go), kept in memory
// per node up to kafka.fetch-session-cache-slots.
//
// This node's roles in the segment chains (leading, following, learning,
// rolls) are package replica's: broker hands a replica.Manager its
// metadata view, lease, Fetch transport and logs (replica.go), and the
// Produce and group-commit paths append through replica.Leadership.Begin
// and wait with WaitAcked (docs/architecture.md, "Segment chains", "Write
// path").
//
// Two loops run beside the listeners (cluster.go):
//   - heartbeat: every lease.renew the node reports its id and addresses to
//     the controller. The controller registers the node (or updates its
//     addresses, or unfences it) through Raft when they differ from the
//     FSM, and grants a lease of lease.timeout counted from the send time.
//     The answer carries the controller's applied index; once the local
//     FSM reaches it the node has "caught up".
//   - reconcile: after every FSM change, open the logs of the partitions
//     this node holds, let replica.Manager.Reconcile take each partition's
//     role, load or unload the group coordinators of __consumer_offsets
//     partitions with their leadership, and, only once caught up, delete
//     logs whose topic is gone or was recreated under another ID. A stale
//     view never deletes data.
//
// # Internal listener
//
// The internal listener (internal.listen) carries two protocols on one
// port, told apart by a connection's first byte (internal_kafka.go):
// HTTP/1.1 + JSON calls between nodes and from `tusk cluster`, whose
// endpoints, wire types and error kinds are in package broker/rpc; and
// Kafka requests from other nodes, above all replica and learner Fetches.
// A Fetch with ReplicaID >= 0 on a client listener is answered
// CLUSTER_AUTHORIZATION_FAILED and moves nothing. With tls.ca-file set
// the listener is mutual TLS for node certificates only, and the
// certificate's node id must be the one a call claims (internal_tls.go,
// docs/security.md "Node to node").
//
// # Web console
//
// The HTTP listener serves /healthz, /metrics, /debug/pprof and whatever
// MountHTTP added before Listen: tusk serve mounts package console there.
// /debug/pprof and the mounts sit behind adminGate (the admin token, or
// loopback without the authorizer).
// ConsoleSource (console.go) is the console's view of the node: this
// node's own status, the other nodes' over the internal endpoint
// /v1/console/node, and consumer groups with their lag through kadm on
// this node's Kafka listener (so a group coordinated elsewhere is found
// as any client would find it).
//
// # Shutdown
//
// Close stops the listeners, stops reading new requests, waits for every
// pending response to be written (long polls end early), then closes the
// storage engine, which fsyncs and closes every segment.
package broker
