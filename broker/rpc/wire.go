package rpc

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tuskdb/tusk/metadata"
)

// Paths of the internal endpoints.
const (
	PathApply       = "/v1/apply"
	PathHeartbeat   = "/v1/heartbeat"
	PathApplied     = "/v1/applied"
	PathReplicaLEO  = "/v1/replica-leo"
	PathReplicaLEOs = "/v1/replica-leos"
	PathLogChecksum = "/v1/log-checksum"
	PathStatus      = "/v1/status"
	PathDump        = "/v1/dump"
	PathSnapshot    = "/v1/snapshot"
	PathAddNode     = "/v1/add-node"
	PathRemoveNode  = "/v1/remove-node"
)

// IndexResponse answers /v1/apply (the Raft index of the applied command)
// and /v1/applied (the controller's applied index).
type IndexResponse struct {
	Index uint64 `json:"index"`
}

// OKResponse answers /v1/snapshot, /v1/add-node and /v1/remove-node.
type OKResponse struct {
	OK bool `json:"ok"`
}

// ReplicaLEORequest is the controller's failover probe: the log end offset
// of the node's copy of a partition, once the node applied the Raft entry
// at FenceIndex (the FenceSegment) and stopped fetching.
type ReplicaLEORequest struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	Segment    int64  `json:"segment"`
	Epoch      int32  `json:"epoch"`
	FenceIndex uint64 `json:"fence_index"`
}

// ReplicaLEOResponse answers ReplicaLEORequest.
type ReplicaLEOResponse struct {
	LEO int64 `json:"leo"`
}

// ReplicaLEOsRequest is the controller's failover probe in bulk: the log
// end offsets of the node's copies of every partition of a failover it is
// a surviving replica of, once the node applied the Raft entry at
// FenceIndex (the last of the fences) and stopped fetching them.
type ReplicaLEOsRequest struct {
	FenceIndex uint64                `json:"fence_index"`
	Partitions []ReplicaLEOPartition `json:"partitions"`
}

// ReplicaLEOPartition is one partition of a ReplicaLEOsRequest: its fenced
// active segment and that segment's epoch.
type ReplicaLEOPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Segment   int64  `json:"segment"`
	Epoch     int32  `json:"epoch"`
}

// ReplicaLEOsResponse answers ReplicaLEOsRequest, one answer per
// partition in the request's order.
type ReplicaLEOsResponse struct {
	Partitions []ReplicaLEOAnswer `json:"partitions"`
}

// ReplicaLEOAnswer is one partition's log end offset, or the error why
// the node has none (then LEO is 0).
type ReplicaLEOAnswer struct {
	LEO   int64  `json:"leo"`
	Error string `json:"error,omitempty"`
}

// LogChecksumRequest asks for the checksum of the node's copy of a
// partition from its log start offset to End.
type LogChecksumRequest struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	End       int64  `json:"end"`
}

// LogChecksumResponse is the CRC-32C and byte length of the batches in
// [Start, End) of the node's log, with its log end offset and high
// watermark at the time.
type LogChecksumResponse struct {
	Start  int64 `json:"start"`
	End    int64 `json:"end"`
	CRC32C int64 `json:"crc32c"`
	Bytes  int64 `json:"bytes"`
	LEO    int64 `json:"leo"`
	HW     int64 `json:"hw"`
}

// AddNodeRequest adds node ID, reachable for Raft at Raft, as a voter.
type AddNodeRequest struct {
	ID   int32  `json:"id"`
	Raft string `json:"raft"`
}

// RemoveNodeRequest removes node ID from the cluster.
type RemoveNodeRequest struct {
	ID int32 `json:"id"`
}

// Status is what /v1/status answers and `tusk cluster status` prints.
type Status struct {
	Node    int32             `json:"node"`
	Leader  int32             `json:"leader"`
	Voters  []metadata.Member `json:"voters"`
	Brokers []metadata.Broker `json:"brokers"`
}

// ErrorBody is the body of every non-200 answer.
type ErrorBody struct {
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

// Error kinds that are not a precondition of a metadata command.
const (
	KindNotLeader = "not_leader"
	KindInternal  = "internal"
	// KindForbidden answers a call whose peer may not make it (node TLS:
	// a certificate of another node than the one the call claims to be).
	KindForbidden = "forbidden"
)

// ErrForbidden is the error of a call the peer may not make, answered 403
// with kind forbidden (docs/security.md, "Node to node").
var ErrForbidden = errors.New("rpc: forbidden")

// errorKinds maps metadata sentinels to wire kinds and back, so that a
// forwarded command fails with the same error as a local one. Every kind
// but not_leader, forbidden and internal is answered 409.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"topic_exists", metadata.ErrTopicExists},
	{"topic_collision", metadata.ErrTopicCollision},
	{"unknown_topic", metadata.ErrUnknownTopic},
	{"precondition", metadata.ErrPreconditionFailed},
	{"invalid", metadata.ErrInvalidCommand},
	{"not_enough_brokers", metadata.ErrNotEnoughBrokers},
	{KindNotLeader, metadata.ErrNotLeader},
	{"not_member", metadata.ErrNotMember},
	{KindForbidden, ErrForbidden},
}

// Kind is the wire kind of err: the first metadata sentinel it wraps, or
// "internal".
func Kind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return KindInternal
}

// StatusCode is the HTTP status an error of the given kind is answered with.
func StatusCode(kind string) int {
	switch kind {
	case KindNotLeader:
		return http.StatusMisdirectedRequest
	case KindInternal:
		return http.StatusInternalServerError
	case KindForbidden:
		return http.StatusForbidden
	}
	for _, k := range errorKinds {
		if k.kind == kind {
			return http.StatusConflict
		}
	}
	return http.StatusInternalServerError
}

// sentinel is the metadata error of a kind, nil for internal or unknown
// kinds.
func sentinel(kind string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return k.err
		}
	}
	return nil
}

// RemoteError is an error another node answered with. It wraps the
// metadata sentinel of its kind, so errors.Is(err, metadata.ErrNotLeader)
// holds for a not_leader answer.
type RemoteError struct {
	Addr    string // host:port called
	Path    string
	Status  int    // HTTP status
	Kind    string // wire kind
	Message string // the remote error text
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc: %s%s: %s (%s, %d)", e.Addr, e.Path, e.Message, e.Kind, e.Status)
}

// Unwrap is the metadata sentinel of e's kind (nil for internal).
func (e *RemoteError) Unwrap() error { return sentinel(e.Kind) }
