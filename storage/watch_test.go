package storage

import "testing"

// A Watch is called on every notification (an append, a moved log start,
// the close) until cancelled, and stays registered meanwhile; AddWaiter
// is woken by a moved log start too.
func TestWatch(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncNever, nil)
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	calls := 0
	cancel := l.Watch(func() { calls++ })
	appendSpec(t, l, plain(1, 10, 1, 1))
	appendSpec(t, l, plain(1, 10, 1, 1))
	if calls != 2 {
		t.Fatalf("%d calls after two appends, want 2", calls)
	}
	if n := l.waiterCount(); n != 1 {
		t.Fatalf("%d registrations, want the watch's 1", n)
	}
	wake := make(chan struct{}, 1)
	stopWait := l.AddWaiter(wake)
	defer stopWait()
	if _, err := l.DeleteRecordsBefore(1); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("%d calls after the log start moved, want 3", calls)
	}
	select {
	case <-wake:
	default:
		t.Fatal("AddWaiter not woken by a moved log start")
	}
	cancel()
	cancel()
	appendSpec(t, l, plain(1, 10, 1, 1))
	if calls != 3 || l.waiterCount() != 0 {
		t.Fatalf("after cancel: %d calls (want 3), %d registrations (want 0)", calls, l.waiterCount())
	}
	after := 0
	l.Watch(func() { after++ })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if after != 1 {
		t.Fatalf("a watch was called %d times by the close, want 1", after)
	}
	l.Watch(func() { after++ })
	if after != 2 {
		t.Fatalf("a watch on a closed log was called %d times at once, want 1", after-1)
	}
}
