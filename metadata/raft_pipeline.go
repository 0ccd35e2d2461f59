package metadata

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A Raft pipeline that stops moving is closed (docs/architecture.md,
// "Internal RPC"). In hashicorp/raft's pipelined replication, one goroutine
// sends AppendEntries into the pipeline and another (pipelineDecode)
// consumes the answers; the decoder stops at the first failed or stale
// answer, after which nothing drains the pipeline's answer queue. A send
// that finds both of its queues full then blocks until the pipeline is
// closed, and raft closes it only after that send returns. This happened
// after a network partition healed: the isolated leader's replication
// goroutines hung for good, and so did the node's shutdown, which waits
// for them.
//
// Every pipeline the transport opens is wrapped: a send that does not
// return within the transport's RPC timeout (its own write has that
// deadline, so only the queues can hold it longer) closes the pipeline,
// and the send fails; raft then falls back to plain AppendEntries, as on
// any pipeline error. Close also closes every open pipeline at once.

// pipelines tracks the open pipelines of a transport.
type pipelines struct {
	timeout time.Duration
	mu      sync.Mutex
	open    map[*guardedPipeline]struct{}
	closed  bool
}

// errPipelineStuck is the error of a send the guard gave up on.
var errPipelineStuck = errors.New("metadata: raft pipeline stuck, closed")

func (ps *pipelines) wrap(p raft.AppendPipeline) (raft.AppendPipeline, error) {
	g := &guardedPipeline{AppendPipeline: p, ps: ps}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		p.Close()
		return nil, raft.ErrTransportShutdown
	}
	if ps.open == nil {
		ps.open = map[*guardedPipeline]struct{}{}
	}
	ps.open[g] = struct{}{}
	return g, nil
}

// closeAll closes every open pipeline; later ones are refused.
func (ps *pipelines) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	open := ps.open
	ps.open = nil
	ps.mu.Unlock()
	for g := range open {
		g.AppendPipeline.Close()
	}
}

// count reports how many pipelines are open (tests).
func (ps *pipelines) count() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.open)
}

type guardedPipeline struct {
	raft.AppendPipeline
	ps *pipelines
}

func (g *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	t := time.AfterFunc(g.ps.timeout, func() { g.Close() })
	f, err := g.AppendPipeline.AppendEntries(args, resp)
	if !t.Stop() && err != nil {
		err = fmt.Errorf("%w: %v", errPipelineStuck, err)
	}
	return f, err
}

func (g *guardedPipeline) Close() error {
	g.ps.mu.Lock()
	delete(g.ps.open, g)
	g.ps.mu.Unlock()
	return g.AppendPipeline.Close()
}
