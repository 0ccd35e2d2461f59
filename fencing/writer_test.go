package fencing

import (
	"errors"
	"testing"
	"time"
)

func TestCheckAppend(t *testing.T) {
	t0 := time.Unix(5000, 0)
	live := NewLease(t0, time.Second)
	for _, c := range []struct {
		name          string
		lease         Lease
		active, epoch int32
		at            time.Duration
		want          error
	}{
		{"leader with a live lease", live, 4, 4, 500 * time.Millisecond, nil},
		{"not the writer", live, NoWriter, 4, 0, ErrNotWriter},
		{"not the writer, expired lease too", Lease{}, NoWriter, 4, 0, ErrNotWriter},
		{"lease expired", live, 4, 4, time.Second, ErrLeaseExpired},
		{"zero lease", Lease{}, 4, 4, 0, ErrLeaseExpired},
		{"stale epoch", live, 4, 3, 0, ErrStaleEpoch},
		{"newer epoch", live, 4, 5, 0, ErrUnknownEpoch},
		{"expiry beats the epoch check", live, 4, 3, 2 * time.Second, ErrLeaseExpired},
	} {
		err := CheckAppend(c.lease, c.active, c.epoch, t0.Add(c.at))
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCheckReplica(t *testing.T) {
	for _, c := range []struct {
		latest, epoch int32
		want          error
	}{{-1, 0, nil}, {3, 3, nil}, {3, 4, nil}, {3, 2, ErrStaleEpoch}} {
		if err := CheckReplica(c.latest, c.epoch); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("CheckReplica(%d, %d) = %v, want %v", c.latest, c.epoch, err, c.want)
		}
	}
}
