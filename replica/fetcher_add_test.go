package replica

import (
	"testing"

	"github.com/tuskdb/tusk/storage"
)

// TestFetcherAddCancelsOnlyChanges: a partition new to a fetcher waits
// for the fetch in flight to end (cancelling it would close the
// connection and restart the fetch session with a full fetch); a
// partition whose epoch changed cancels it, so the fetcher re-fetches at
// once; an unchanged one does nothing.
func TestFetcherAddCancelsOnlyChanges(t *testing.T) {
	f := newFetcher(nil, 2)
	cancels := 0
	f.inflight = func() { cancels++ }
	tp0 := storage.TopicPartition{Topic: "t", Partition: 0}
	tp1 := storage.TopicPartition{Topic: "t", Partition: 1}
	steps := []struct {
		name    string
		tp      storage.TopicPartition
		epoch   int32
		cancels int
	}{
		{"new partition 0", tp0, 1, 0},
		{"new partition 1", tp1, 1, 0},
		{"partition 0 unchanged", tp0, 1, 0},
		{"partition 0 at a new epoch", tp0, 2, 1},
		{"partition 1 at a new epoch", tp1, 3, 2},
	}
	for _, s := range steps {
		f.add(s.tp, &followed{epoch: s.epoch})
		if cancels != s.cancels {
			t.Fatalf("%s: %d cancels of the fetch in flight, want %d", s.name, cancels, s.cancels)
		}
		if !f.has(s.tp) {
			t.Fatalf("%s: fetcher does not have %s", s.name, s.tp)
		}
	}
	if n := len(f.snapshot()); n != 2 {
		t.Fatalf("fetcher holds %d partitions, want 2", n)
	}
}
