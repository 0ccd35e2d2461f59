package metadata

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// blockedPipeline is a pipeline whose sends block until it is closed, as
// a hashicorp/raft netPipeline whose answer queue nobody drains.
type blockedPipeline struct {
	once   sync.Once
	closed chan struct{}
	sends  chan struct{}
}

func newBlockedPipeline() *blockedPipeline {
	return &blockedPipeline{closed: make(chan struct{}), sends: make(chan struct{}, 16)}
}

func (p *blockedPipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.sends <- struct{}{}
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}
func (p *blockedPipeline) Consumer() <-chan raft.AppendFuture { return nil }
func (p *blockedPipeline) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// TestPipelineGuardClosesStuckSend: a send that stays blocked past the
// guard's timeout closes its pipeline and fails with errPipelineStuck
// (without the guard it blocked for good).
func TestPipelineGuardClosesStuckSend(t *testing.T) {
	ps := &pipelines{timeout: 50 * time.Millisecond}
	inner := newBlockedPipeline()
	p, err := ps.wrap(inner)
	if err != nil {
		t.Fatal(err)
	}
	if n := ps.count(); n != 1 {
		t.Fatalf("%d open pipelines, want 1", n)
	}
	_, err = p.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
	if !errors.Is(err, errPipelineStuck) {
		t.Fatalf("stuck send: %v, want %v", err, errPipelineStuck)
	}
	select {
	case <-inner.closed:
	default:
		t.Fatal("the stuck pipeline is still open")
	}
	if n := ps.count(); n != 0 {
		t.Fatalf("%d open pipelines after the guard closed the only one, want 0", n)
	}
}

// TestPipelinesCloseAll: closeAll ends a send blocked in an open pipeline
// at once, long before the guard's timeout, and refuses new pipelines.
func TestPipelinesCloseAll(t *testing.T) {
	ps := &pipelines{timeout: time.Hour}
	inner := newBlockedPipeline()
	p, err := ps.wrap(inner)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
		done <- err
	}()
	<-inner.sends
	ps.closeAll()
	if err := <-done; !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("send ended with %v, want %v", err, raft.ErrPipelineShutdown)
	}
	later := newBlockedPipeline()
	if _, err := ps.wrap(later); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("pipeline after closeAll: %v, want %v", err, raft.ErrTransportShutdown)
	}
	select {
	case <-later.closed:
	default:
		t.Fatal("a pipeline refused after closeAll was left open")
	}
}
