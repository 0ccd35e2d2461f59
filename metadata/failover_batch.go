package metadata

import (
	"errors"
	"fmt"
)

// Failover in bulk (docs/architecture.md, "Rotation and failover";
// docs/io-and-scale.md, "Scale"): when a node dies, the controller fences,
// and later seals, the active segments of all the partitions it led with a
// few Raft entries instead of one per partition. A batch is a list of the
// single-partition commands, applied one after the other in one entry;
// each entry is its own compare-and-set with its own outcome.

// MaxBatchEntries bounds the entries of one batched command (Validate);
// the controller proposes failoverChunk at a time.
const MaxBatchEntries = 10000

// FenceSegments fences many partitions' active segments in one Raft
// entry: each entry applies as a FenceSegment would on its own. An entry
// whose compare-and-set fails changes nothing and does not stop the
// others; the command's error is then a *BatchError naming it.
type FenceSegments struct {
	Entries []FenceSegment `json:"entries"`
}

func (FenceSegments) kind() string { return "fence_segments" }

func (c FenceSegments) apply(st *state) error {
	errs := make([]error, len(c.Entries))
	for i, e := range c.Entries {
		errs[i] = e.apply(st)
	}
	return batchOutcome(errs)
}

func (c FenceSegments) validate() error {
	if err := batchSize(len(c.Entries)); err != nil {
		return err
	}
	for i, e := range c.Entries {
		if err := e.validate(); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

// SealSegments seals many partitions' active segments and opens their
// next ones in one Raft entry: each entry applies as a RollSegment would
// on its own (failover seals: SealedAtMs set by the proposer, Checksum
// 0). An entry whose compare-and-set fails changes nothing and does not
// stop the others; the command's error is then a *BatchError naming it.
// Unlike a lone RollSegment, every entry must name its NextLeader: the
// controller does not place batched entries.
type SealSegments struct {
	Entries []RollSegment `json:"entries"`
}

func (SealSegments) kind() string { return "seal_segments" }

func (c SealSegments) apply(st *state) error {
	errs := make([]error, len(c.Entries))
	for i, e := range c.Entries {
		errs[i] = e.apply(st)
	}
	return batchOutcome(errs)
}

func (c SealSegments) validate() error {
	if err := batchSize(len(c.Entries)); err != nil {
		return err
	}
	for i, e := range c.Entries {
		if err := e.validate(); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if e.NextLeader < 0 {
			return fmt.Errorf("entry %d: next leader %d (a batched seal names it)", i, e.NextLeader)
		}
	}
	return nil
}

func batchSize(n int) error {
	if n < 1 || n > MaxBatchEntries {
		return fmt.Errorf("%d entries not in [1, %d]", n, MaxBatchEntries)
	}
	return nil
}

// BatchError is the outcome of a batched command (FenceSegments,
// SealSegments) some of whose entries failed: Errs[i] is entry i's error,
// nil for an entry that applied. The entries that applied stay applied,
// unlike any other command's error, which means nothing changed.
type BatchError struct {
	Errs []error
}

// Failed counts the entries that did not apply.
func (e *BatchError) Failed() int {
	n := 0
	for _, err := range e.Errs {
		if err != nil {
			n++
		}
	}
	return n
}

// Applied reports whether entry i applied.
func (e *BatchError) Applied(i int) bool { return i >= 0 && i < len(e.Errs) && e.Errs[i] == nil }

func (e *BatchError) Error() string {
	var first error
	for _, err := range e.Errs {
		if err != nil {
			first = err
			break
		}
	}
	return fmt.Sprintf("metadata: %d of %d batch entries failed (first: %v)", e.Failed(), len(e.Errs), first)
}

// batchOutcome is nil when every entry applied, else a *BatchError.
func batchOutcome(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// BatchEntryErrors returns, for a batched command of n entries that
// returned err, each entry's outcome: all nil when err is nil, the
// *BatchError's when err is one, and err for every entry otherwise (the
// whole command failed or its commit is unknown).
func BatchEntryErrors(err error, n int) []error {
	out := make([]error, n)
	var be *BatchError
	switch {
	case err == nil:
	case errors.As(err, &be) && len(be.Errs) == n:
		copy(out, be.Errs)
	default:
		for i := range out {
			out[i] = err
		}
	}
	return out
}

// batchRefs are the partitions of the batch's entries that applied (be
// nil: all did).
func batchRefs(c Command, be *BatchError) []PartitionRef {
	var refs []PartitionRef
	add := func(i int, topic string, id TopicID, p int32) {
		if be == nil || be.Applied(i) {
			refs = append(refs, PartitionRef{Topic: topic, ID: id, Partition: p})
		}
	}
	switch v := c.(type) {
	case FenceSegments:
		for i, e := range v.Entries {
			add(i, e.Topic, e.ID, e.Partition)
		}
	case SealSegments:
		for i, e := range v.Entries {
			add(i, e.Topic, e.ID, e.Partition)
		}
	}
	return refs
}
