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
	for i := 0; i < n; i++ {
		if err := f.store.Apply(ctx, AllocateProducerIDs{Expected: int64(i), Count: 1}); err != nil {
			t.Fatalf("apply %d through the follower: %v", i, err)
		}
	}
	close(done)
	wg.Wait()
	if got := leader.store.FSM().NextProducerID(); got != n {
		t.Fatalf("next producer id %d, want %d", got, n)
	}
	fwd.mu.Lock()
	defer fwd.mu.Unlock()
	if fwd.calls < n { // more after a leader change
		t.Fatalf("replaced forwarder called %d times, want at least %d", fwd.calls, n)
	}
}
