package replica

import (
	"testing"
	"time"

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
	if n := f.count(); n != 2 {
		t.Fatalf("fetcher holds %d partitions, want 2", n)
	}
}

// TestFetcherAddCancelsIdlePoll: an idle long poll (after an answer with
// nothing new) is cancelled by a partition new to the fetcher too, so the
// partition is not held back by the longer wait.
func TestFetcherAddCancelsIdlePoll(t *testing.T) {
	f := newFetcher(nil, 2)
	cancels := 0
	f.inflight, f.inflightIdle = func() { cancels++ }, true
	f.add(storage.TopicPartition{Topic: "t", Partition: 0}, &followed{epoch: 1})
	if cancels != 1 {
		t.Fatalf("a new partition cancelled an idle poll %d times, want 1", cancels)
	}
}

// TestIdleFetchWait: four fetch waits, at most a quarter of LagTimeMax,
// never below the fetch wait.
func TestIdleFetchWait(t *testing.T) {
	for _, c := range []struct{ wait, lag, want time.Duration }{
		{500 * time.Millisecond, 10 * time.Second, 2 * time.Second},
		{500 * time.Millisecond, 4 * time.Second, time.Second},
		{500 * time.Millisecond, time.Second, 500 * time.Millisecond},
		{20 * time.Millisecond, 10 * time.Second, 80 * time.Millisecond},
	} {
		cfg := Config{FetchMaxWait: c.wait, LagTimeMax: c.lag}
		if got := cfg.idleFetchWait(); got != c.want {
			t.Errorf("fetch wait %v, lag time max %v: idle fetch wait %v, want %v", c.wait, c.lag, got, c.want)
		}
	}
}

// TestFetcherNoIdlePollRightAfterAdd: within the idle fetch wait after a
// partition new to the fetcher was added, the fetcher does not go to an
// idle long poll (which the next new partition would cancel, closing the
// connection); a partition that was only changed does not count.
func TestFetcherNoIdlePollRightAfterAdd(t *testing.T) {
	f := newFetcher(nil, 2)
	idle := 2 * time.Second
	now := time.Now()
	if f.addedWithin(now, idle) {
		t.Fatal("a fetcher that was never added to reports a recent add")
	}
	tp := storage.TopicPartition{Topic: "t", Partition: 0}
	f.add(tp, &followed{epoch: 1})
	if !f.addedWithin(time.Now(), idle) {
		t.Fatal("no recent add right after adding a partition")
	}
	if f.addedWithin(time.Now().Add(idle), idle) {
		t.Fatal("a recent add reported an idle fetch wait after it")
	}
	f.mu.Lock()
	f.added = time.Time{}
	f.mu.Unlock()
	f.add(tp, &followed{epoch: 2}) // a new epoch, not a new partition
	if f.addedWithin(time.Now(), idle) {
		t.Fatal("a changed partition counted as an added one")
	}
}
