package auth

import (
	"context"
	"errors"
	"testing"
)

// TestHashGate: a nil gate runs at once; a full gate makes Do wait, and
// return the context's error without running fn when it ends; a freed
// turn goes to the next caller; Peak and Running count what ran.
func TestHashGate(t *testing.T) {
	ran := false
	if err := (*HashGate)(nil).Do(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("nil gate: %v, ran %v", err, ran)
	}

	g := NewHashGate(0) // at least 1
	hold, held := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() { first <- g.Do(context.Background(), func() { close(held); <-hold }) }()
	<-held
	if got := g.Running(); got != 1 {
		t.Fatalf("running %d, want 1", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := g.Do(ctx, func() { t.Error("ran without a turn") })
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrAuthentication) {
		t.Fatalf("full gate, ended context: %v, want context.Canceled (not ErrAuthentication)", err)
	}
	second := make(chan error, 1)
	ran = false
	go func() { second <- g.Do(context.Background(), func() { ran = true }) }()
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil || !ran {
		t.Fatalf("after the turn was freed: %v, ran %v", err, ran)
	}
	if g.Peak() != 1 || g.Running() != 0 {
		t.Fatalf("peak %d, running %d; want 1, 0", g.Peak(), g.Running())
	}
}
