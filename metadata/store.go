package metadata

import "context"

// Store is the metadata store as package broker uses it: the replicated
// state to read (FSM), commands to commit, the controller's heartbeat and
// membership operations, and the hooks the broker implements. RaftStore
// implements it; a broker depends on this interface rather than on Raft.
type Store interface {
	// FSM is this node's replica of the state.
	FSM() *FSM
	// Apply commits a command through the controller and returns once
	// the local FSM applied it.
	Apply(ctx context.Context, c Command) error
	// ApplyLocal commits an encoded command on the controller (the
	// internal /v1/apply endpoint) and returns its log index.
	ApplyLocal(ctx context.Context, data []byte) (uint64, error)
	// IsLeader reports whether this node is the controller; Leader is the
	// controller's node id, or -1.
	IsLeader() bool
	Leader() int32
	// RaftAddr is this node's Raft address.
	RaftAddr() string
	// Heartbeat registers a broker's heartbeat on the controller.
	Heartbeat(ctx context.Context, hb Heartbeat) (Lease, error)
	// Members, AddNode and RemoveNode read and change the Raft
	// configuration (the latter two on the controller only).
	Members() ([]Member, error)
	AddNode(id int32, addr string) error
	RemoveNode(ctx context.Context, id int32) error
	// Snapshot forces a Raft snapshot on this node.
	Snapshot() error
	// SetForwarder and SetProber install the broker's implementations.
	SetForwarder(f Forwarder)
	SetProber(p ReplicaProber)
	// Close stops the controller and Raft.
	Close() error
}

var _ Store = (*RaftStore)(nil)
