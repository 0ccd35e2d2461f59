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
// Metadata lives in the Raft FSM (package metadata); every node answers
// Metadata, DescribeCluster and FindCoordinator from its local replica.
// Write-type admin requests (CreateTopics, DeleteTopics, CreatePartitions,
// AlterConfigs, IncrementalAlterConfigs, producer-id blocks) become Raft
// commands that a follower forwards to the controller; the request is
// answered once this node's FSM has applied the command, so a client reads
// its own write from the node it asked. Produce, Fetch and the other
// partition APIs are served by the partition's leader (the leader of its
// active segment); other nodes answer NOT_LEADER_OR_FOLLOWER.
//
// Two loops run beside the listeners (cluster.go):
//   - heartbeat: every lease.renew the node reports its id and addresses to
//     the controller. The controller registers the node (or updates its
//     addresses, or unfences it) through Raft when they differ from the
//     FSM, and grants a lease of lease.timeout counted from the send time.
//     The answer carries the controller's applied index; once the local
//     FSM reaches it the node has "caught up".
//   - reconcile: after every FSM change, open the logs of the partitions
//     this node leads (recording the topic ID in the log directory), push
//     topic configs, load group coordinators of local __consumer_offsets
//     partitions, and, only once caught up, delete logs whose topic is gone
//     or was recreated under another ID. A stale view never deletes data.
//
// # Internal protocol
//
// Node-to-node calls and `tusk cluster` use HTTP/1.1 with JSON bodies on
// the internal listener (internal.listen). Every error is a JSON object
// {"kind": ..., "error": ...} with 409 (precondition kinds: topic_exists,
// topic_collision, unknown_topic, precondition, invalid,
// not_enough_brokers, not_member), 421 (not_leader: ask the controller) or
// 500; callers map kinds back to the metadata sentinel errors and retry
// not_leader and transport failures until their deadline.
//
//	POST /v1/apply        body: an encoded metadata command (metadata.EncodeCommand)
//	                      → {"index": n}; controller only. Placement-free proposals
//	                      (CreateTopic without assignments) are placed there.
//	POST /v1/heartbeat    body: metadata.Heartbeat → metadata.Lease; controller only
//	GET  /v1/status       → {"node","leader","voters":[{id,raft,voter}],"brokers":[...]}
//	GET  /v1/dump         → the canonical metadata dump (metadata.FSM.Dump)
//	POST /v1/snapshot     forces a Raft snapshot on this node
//	POST /v1/add-node     {"id","raft"}: add a Raft voter; forwarded to the controller
//	POST /v1/remove-node  {"id"}: remove a node leading no partition; forwarded
//	POST /v1/applied      → {"index"}: the controller's applied index (read-your-writes)
//	POST /v1/replica-leo  {"topic","partition","segment","epoch","fence_index"} → {"leo"}:
//	                      failover probe; answered once the node applied the fence and
//	                      stopped fetching the partition
//	POST /v1/log-checksum {"topic","partition","end"} → CRC-32C and length of this
//	                      node's copy of [log start, end): replicas compare them (I1, I4)
//
// # Shutdown
//
// Close stops the listeners, stops reading new requests, waits for every
// pending response to be written (long polls end early), then closes the
// storage engine, which fsyncs and closes every segment.
package broker
