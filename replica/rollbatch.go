package replica

import (
	"context"
	"sync"
	"time"

	"github.com/tuskdb/tusk/metadata"
)

// Rolls committed together (docs/io-and-scale.md, "Scale"): when a node
// dies, every leader it followed rolls it out of thousands of segments at
// the same moment (laggard rolls). Each roll committing its own
// RollSegment made thousands of Raft entries and forwarded requests to the
// controller at once, on a machine already busy with the failover. Rolls
// that name their next leader (all but rotations, whose next leader the
// controller picks) are gathered instead: the first waiting roll starts a
// committer, which proposes everything queued meanwhile as one
// SealSegments (each entry its own compare-and-set, as a lone RollSegment
// would be), hands each roll its entry's outcome, and goes on with what
// queued while that batch committed.

// rollBatchMax bounds the entries of one SealSegments a committer proposes.
const rollBatchMax = 1000

// rollBatch is the queue of rolls waiting to commit.
type rollBatch struct {
	mu      sync.Mutex
	queue   []*rollReq
	running bool // a committer is draining the queue
}

// rollReq is one roll's RollSegment and where its outcome goes.
type rollReq struct {
	cmd  metadata.RollSegment
	done chan error // buffered: the committer never blocks on it
}

// applyRoll commits cmd, batched with the other rolls committing now when
// it names its next leader. Its error is the entry's own: nil when it
// applied, a precondition failure when its compare-and-set failed, or
// the batch's error (ambiguous: it may have committed).
func (m *Manager) applyRoll(ctx context.Context, cmd metadata.RollSegment) error {
	if cmd.NextLeader < 0 {
		return m.md.Apply(ctx, cmd) // the controller places it
	}
	r := &rollReq{cmd: cmd, done: make(chan error, 1)}
	b := &m.rolls
	b.mu.Lock()
	b.queue = append(b.queue, r)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		m.goTracked(m.commitRolls)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitRolls proposes the queued rolls, a batch at a time, until the
// queue is empty.
func (m *Manager) commitRolls() {
	b := &m.rolls
	for {
		b.mu.Lock()
		n := min(len(b.queue), rollBatchMax)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()

		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		if len(batch) == 1 {
			batch[0].done <- m.md.Apply(ctx, batch[0].cmd)
			cancel()
			continue
		}
		cmd := metadata.SealSegments{Entries: make([]metadata.RollSegment, len(batch))}
		for i, r := range batch {
			cmd.Entries[i] = r.cmd
		}
		errs := metadata.BatchEntryErrors(m.md.Apply(ctx, cmd), len(batch))
		cancel()
		for i, r := range batch {
			r.done <- errs[i]
		}
	}
}
