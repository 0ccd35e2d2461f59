package storage

import "testing"

// TestTimedOutPollsLeaveNoWaiters is the Fetch long poll on an idle
// partition, as broker/01_fetch.go runs it: register, wait until the
// deadline, give up. Each poll that gives up must unregister, or an idle
// partition collects one waiter per poll until its high watermark moves.
func TestTimedOutPollsLeaveNoWaiters(t *testing.T) {
	for _, replicated := range []bool{false, true} {
		e := openEngine(t, NewCrashFS(), FsyncInterval, nil)
		l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1, Replicated: replicated})
		expired := make(chan struct{})
		close(expired) // every poll's deadline has passed
		wake := make(chan struct{}, 1)
		for i := 0; i < 10_000; i++ {
			cancel := l.AddWaiter(wake)
			select {
			case <-wake:
				t.Fatalf("replicated=%v poll %d: woken on an idle partition", replicated, i)
			case <-expired:
			}
			cancel()
		}
		if n := l.waiterCount(); n != 0 {
			t.Fatalf("replicated=%v: %d waiters registered after 10000 timed-out polls, want 0", replicated, n)
		}
		// A registration that is still live is signalled by the next
		// advance, and its cancel afterwards is harmless.
		cancel := l.AddWaiter(wake)
		if n := l.waiterCount(); n != 1 {
			t.Fatalf("replicated=%v: %d waiters registered, want 1", replicated, n)
		}
		// Unreplicated, the append moves the HW; replicated, it wakes
		// replica fetchers (the LEO grew).
		appendSpec(t, l, plain(1, 10, 1, 1))
		select {
		case <-wake:
		default:
			t.Fatalf("replicated=%v: waiter not signalled by an append", replicated)
		}
		cancel()
		cancel()
		if n := l.waiterCount(); n != 0 {
			t.Fatalf("replicated=%v: %d waiters after the wake, want 0", replicated, n)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAddWaiterSameChannelManyLogs: one channel registered on several logs
// (a Fetch of several partitions) is unregistered from each on its own.
func TestAddWaiterSameChannelManyLogs(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncInterval, nil)
	defer e.Close()
	var logs []*Log
	for p := int32(0); p < 3; p++ {
		l, err := e.OpenLog(TopicPartition{Topic: "t", Partition: p}, LogConfig{RetentionBytes: -1, RetentionMs: -1})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	wake := make(chan struct{}, 1)
	var cancels []func()
	for _, l := range logs {
		cancels = append(cancels, l.AddWaiter(wake))
	}
	appendSpec(t, logs[1], plain(1, 10, 1, 1))
	select {
	case <-wake:
	default:
		t.Fatal("not woken by partition 1")
	}
	for i, l := range logs {
		want := 1
		if i == 1 {
			want = 0
		}
		if n := l.waiterCount(); n != want {
			t.Fatalf("partition %d: %d waiters, want %d", i, n, want)
		}
	}
	for _, c := range cancels {
		c()
	}
	for i, l := range logs {
		if n := l.waiterCount(); n != 0 {
			t.Fatalf("partition %d: %d waiters after cancel, want 0", i, n)
		}
	}
}
