// Package rpc is the node-to-node protocol on the internal listener
// (internal.listen): its paths, request and response bodies, error kinds,
// the HTTP handler adapter the broker serves them with, and the one Client
// that every caller uses, the broker (heartbeats, forwarded metadata
// commands, failover probes) and `tusk cluster` alike. See
// docs/architecture.md, "Internal RPC".
//
// # Wire
//
// HTTP/1.1 with JSON bodies. A success is 200 with the endpoint's JSON
// answer. Every error is a JSON object {"kind": ..., "error": ...} with
// status 409 for the precondition kinds (topic_exists, topic_collision,
// unknown_topic, precondition, invalid, not_enough_brokers, not_member),
// 421 for not_leader (only the controller serves this; ask it), 403 for
// forbidden (with node TLS: the caller's node certificate does not match
// the node the call claims to come from, or /v1/apply of a command only
// the controller proposes) and 500 for internal. Client.Call maps a kind back to the metadata sentinel error
// (metadata.ErrNotLeader, ...), so a forwarded command fails with the same
// error as a local one, and a transport failure to metadata.ErrUnreachable;
// callers retry those two until their deadline.
//
//	POST /v1/apply        body: an encoded metadata command (metadata.EncodeCommand)
//	                      → IndexResponse; controller only. Placement-free proposals
//	                      (CreateTopic without assignments) are placed there.
//	POST /v1/heartbeat    metadata.Heartbeat → metadata.Lease; controller only
//	POST /v1/applied      → IndexResponse: the controller's applied index
//	                      (read-your-writes for admin requests); controller only
//	POST /v1/replica-leo  ReplicaLEORequest → ReplicaLEOResponse: the failover
//	                      probe, answered once the node applied the fence and
//	                      stopped fetching the partition
//	POST /v1/replica-leos ReplicaLEOsRequest → ReplicaLEOsResponse: the same for
//	                      many partitions at once (waits for the fence index
//	                      once); the controller's failover sends each
//	                      surviving replica one, with all its partitions
//	POST /v1/log-checksum LogChecksumRequest → LogChecksumResponse: CRC-32C and
//	                      length of this node's copy of [log start, end), which
//	                      tests compare across replicas (invariants I1, I4)
//	GET  /v1/status       → Status (what `tusk cluster status` prints)
//	GET  /v1/dump         → the canonical metadata dump (metadata.FSM.Dump)
//	POST /v1/snapshot     → OKResponse: forces a Raft snapshot on this node
//	POST /v1/add-node     AddNodeRequest → OKResponse: add a Raft voter;
//	                      forwarded to the controller
//	POST /v1/remove-node  RemoveNodeRequest → OKResponse: remove a node that
//	                      leads no partition; forwarded to the controller
//
// The JSON field names are a contract: the compat tests drive these
// endpoints through `tusk cluster` and call /v1/log-checksum directly.
//
// # Node TLS
//
// With tls.ca-file set the internal listener is mutual TLS and accepts
// only node certificates (docs/security.md, "Node to node"); the calls
// travel as the same HTTP/1.1 inside it. NewTLSHTTPClient dials that way.
//
// # Concurrency
//
// A Client is safe for concurrent use; it holds only an *http.Client.
package rpc
