package fencing

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the write checks; test with errors.Is.
var (
	// ErrNotWriter: this node does not lead the partition's active
	// segment (it was never told to, or its leadership ended).
	ErrNotWriter = errors.New("fencing: not the partition's writer")
	// ErrLeaseExpired: the node's lease ran out; it may not append until
	// the controller renews it.
	ErrLeaseExpired = errors.New("fencing: lease expired")
	// ErrStaleEpoch: a batch carries a leader epoch older than the one
	// the partition is written at (a deposed leader's data).
	ErrStaleEpoch = errors.New("fencing: stale leader epoch")
	// ErrUnknownEpoch: a batch carries a leader epoch newer than the
	// partition's (this node's metadata is behind).
	ErrUnknownEpoch = errors.New("fencing: unknown leader epoch")
)

// NoWriter is the active epoch of a partition this node does not lead.
const NoWriter int32 = -1

// CheckAppend decides whether a leader may append a batch stamped with
// epoch to a replicated partition (docs/architecture.md, "Write path",
// step 3): the node must lead the active segment, whose epoch is active
// (NoWriter when it does not), hold a lease that is live at now, and stamp
// the active epoch.
func CheckAppend(lease Lease, active, epoch int32, now time.Time) error {
	switch {
	case active < 0:
		return ErrNotWriter
	case !lease.Valid(now):
		return fmt.Errorf("%w at %s (expired %s)", ErrLeaseExpired, now.Format(time.RFC3339Nano), lease.Expiry().Format(time.RFC3339Nano))
	case epoch < active:
		return fmt.Errorf("%w: batch epoch %d, partition at %d", ErrStaleEpoch, epoch, active)
	case epoch > active:
		return fmt.Errorf("%w: batch epoch %d, partition at %d", ErrUnknownEpoch, epoch, active)
	}
	return nil
}

// CheckReplica decides whether a follower may append a batch copied from
// its leader: a batch stamped with an epoch older than the newest its log
// holds (latest) is a deposed leader's and is refused (write path step 5).
func CheckReplica(latest, epoch int32) error {
	if epoch < latest {
		return fmt.Errorf("%w: batch epoch %d below the log's %d", ErrStaleEpoch, epoch, latest)
	}
	return nil
}
