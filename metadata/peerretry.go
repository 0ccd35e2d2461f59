package metadata

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// retryTransport wraps a node's Raft transport so that the leader's
// AppendEntries to a peer it cannot reach is retried here, every interval,
// instead of failing back into hashicorp/raft.
//
// raft's replication loop counts each failed AppendEntries to a peer and
// sleeps 10 ms·2^(failures−2), up to 10.24 s, before the next one; nothing
// cuts that sleep short when the peer comes back. A node restarted after a
// few seconds down (kill -9, a crash, a reboot) therefore heard from the
// leader only when the current sleep ran out, 4–10 s after its restart,
// and until then its metadata stayed where it was when it died: its broker
// registered with no controller and opened no partition. Retrying here,
// the loop sees no failure, and a returning peer gets its entries within
// one interval.
//
// A retry stops (and the error goes back to raft) as soon as this node no
// longer leads the request's term, the peer left the configuration, or the
// store is closing, so no goroutine outlives what raft would have done.
// Resending an AppendEntries request is safe: a follower applies it
// idempotently. InstallSnapshot is not retried (its body is a stream).
type retryTransport struct {
	raft.Transport
	interval time.Duration
	stop     <-chan struct{}
	node     atomic.Pointer[raft.Raft] // set once raft.NewRaft returned; nil: no retries
	// pipes guards the replication pipelines (raft_pipeline.go).
	pipes pipelines
}

// newRetryTransport wraps t. Raft probes its transport for pre-vote
// support, so a transport without it is wrapped by a type without it.
func newRetryTransport(t raft.Transport, interval, rpcTimeout time.Duration, stop <-chan struct{}) (raft.Transport, *retryTransport) {
	rt := &retryTransport{Transport: t, interval: interval, stop: stop, pipes: pipelines{timeout: rpcTimeout}}
	if pv, ok := t.(raft.WithPreVote); ok {
		return preVoteRetryTransport{rt, pv}, rt
	}
	return rt, rt
}

// AppendEntries sends the request, retrying a failed send while it may.
func (t *retryTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.Transport.AppendEntries(id, target, args, resp)
	if err == nil {
		return nil
	}
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for err != nil && t.mayRetry(id, args.Term) {
		select {
		case <-t.stop:
			return err
		case <-tick.C:
		}
		err = t.Transport.AppendEntries(id, target, args, resp)
	}
	return err
}

// AppendEntriesPipeline opens a pipeline that closes itself when a send
// stays stuck (raft_pipeline.go).
func (t *retryTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return t.pipes.wrap(p)
}

// mayRetry reports whether this node still leads term and id is still in
// the configuration.
func (t *retryTransport) mayRetry(id raft.ServerID, term uint64) bool {
	r := t.node.Load()
	if r == nil || r.State() != raft.Leader || r.CurrentTerm() != term {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return true
		}
	}
	return false
}

// Close closes the wrapped transport if it can be closed.
func (t *retryTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// preVoteRetryTransport is a retryTransport over a transport with pre-vote.
type preVoteRetryTransport struct {
	*retryTransport
	pv raft.WithPreVote
}

func (t preVoteRetryTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.pv.RequestPreVote(id, target, args, resp)
}
