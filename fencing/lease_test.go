package fencing

import (
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var zero Lease
	if zero.Valid(t0) {
		t.Fatal("zero lease valid")
	}
	l := NewLease(t0, 2*time.Second)
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {1999 * time.Millisecond, true}, {2 * time.Second, false}, {3 * time.Second, false}} {
		if got := l.Valid(t0.Add(c.at)); got != c.want {
			t.Fatalf("Valid(+%v) = %v, want %v", c.at, got, c.want)
		}
	}
	l.Renew(t0.Add(time.Second), 2*time.Second)
	if !l.Valid(t0.Add(2500*time.Millisecond)) || l.Valid(t0.Add(3*time.Second)) {
		t.Fatalf("renewed expiry = %v", l.Expiry())
	}
	// A late answer to an older heartbeat does not shorten the lease.
	l.Renew(t0.Add(500*time.Millisecond), 2*time.Second)
	if !l.Expiry().Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("expiry shortened to %v", l.Expiry())
	}
}
