package metadata

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// countingForwarder forwards like testForwarder and counts its calls.
type countingForwarder struct {
	testForwarder
	mu    sync.Mutex
	calls int
}

func (f *countingForwarder) ForwardApply(ctx context.Context, leader int32, cmd []byte) (uint64, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return f.testForwarder.ForwardApply(ctx, leader, cmd)
}

// TestSetForwarderConcurrentWithApply replaces a follower's forwarder while
// the follower forwards commands; under -race an unsynchronised write of
// the forwarder is reported.
func TestSetForwarderConcurrentWithApply(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	f := c.followers(leader.id)[0]
	fwd := &countingForwarder{testForwarder: testForwarder{c: c, from: f.id}}
	ctx := ctxT(t, 20*time.Second)
	f.store.SetForwarder(fwd)

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			f.store.SetForwarder(fwd)
			runtime.Gosched()
		}
	}()
	const n = 20
	local := 0 // applies made while f was the leader (an election under load): not forwarded
	for i := 0; i < n; i++ {
		if f.store.IsLeader() {
			local++
		}
		if err := f.store.Apply(ctx, AllocateProducerIDs{Expected: int64(i), Count: 1}); err != nil {
			t.Fatalf("apply %d through the follower: %v", i, err)
		}
	}
	close(done)
	wg.Wait()
	// f's FSM: Apply returns once the local FSM applied the command (the
	// first leader may have lost leadership meanwhile and lag).
	if got := f.store.FSM().NextProducerID(); got != n {
		t.Fatalf("next producer id %d, want %d", got, n)
	}
	fwd.mu.Lock()
	defer fwd.mu.Unlock()
	if fwd.calls < n-local { // more after a leader change
		t.Fatalf("replaced forwarder called %d times, want at least %d (%d applies made as the leader)", fwd.calls, n-local, local)
	}
}

// lossyForwarder commits the first forwarded command and then reports it
// as lost (as when the leader is lost mid-commit, or the answer never
// comes back); later calls forward normally.
type lossyForwarder struct {
	testForwarder
	mu    sync.Mutex
	calls int
}

func (f *lossyForwarder) ForwardApply(ctx context.Context, leader int32, cmd []byte) (uint64, error) {
	f.mu.Lock()
	f.calls++
	first := f.calls == 1
	f.mu.Unlock()
	index, err := f.testForwarder.ForwardApply(ctx, leader, cmd)
	if first && err == nil {
		return 0, ErrUnreachable // committed, but the caller cannot know
	}
	return index, err
}

// TestApplyRetryAfterAmbiguousCommit: an Apply whose first attempt was
// committed but reported lost retries with the same request ID, and the
// FSM applies the command once: the retry succeeds (before, it failed its
// own precondition: "next producer id is 1, expected 0").
func TestApplyRetryAfterAmbiguousCommit(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	f := c.followers(leader.id)[0]
	fwd := &lossyForwarder{testForwarder: testForwarder{c: c, from: f.id}}
	f.store.SetForwarder(fwd)
	ctx := ctxT(t, 20*time.Second)
	if err := f.store.Apply(ctx, AllocateProducerIDs{Expected: 0, Count: 1}); err != nil {
		t.Fatalf("apply after an ambiguous first attempt: %v", err)
	}
	if fwd.calls < 2 {
		t.Fatalf("forwarded %d times, want a retry", fwd.calls)
	}
	if got := leader.store.FSM().NextProducerID(); got != 1 {
		t.Fatalf("next producer id %d, want 1 (applied once)", got)
	}
}
