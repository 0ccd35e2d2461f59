package txn

import (
	"context"
	"testing"
)

// FuzzReplay: Replay never panics on arbitrary record bytes, and a
// coordinator loaded from whatever it accepted serves requests.
func FuzzReplay(f *testing.F) {
	s := txnState{pid: 5, epoch: 2, timeoutMs: 100, state: StatePrepareCommit, parts: map[tp]struct{}{{"t", 1}: {}, {"u", 0}: {}}, startMs: 1, updateMs: 2}
	r := record("a", s)
	f.Add(r.Key, r.Value, false)
	f.Add(r.Key, []byte(nil), true)
	f.Add([]byte{0, 1}, []byte{0, 1, 0, 0}, false)
	f.Add(keyBytes("b"), r.Value[:7], false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		clock := &fakeClock{t: t0}
		c := New(testConfig(clock), 1, &memPersister{}, &fakeMarkers{}, &fakeIDs{})
		defer c.Close()
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		_ = c.Replay(Record{Key: key, Value: value})
		_ = c.Replay(Record{Key: value, Value: key})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.ReplayDone(ctx)
		c.Tick()
		h := &harness{t: t, clock: clock, c: c}
		for _, m := range c.snapshot() {
			h.describe(m.id)
		}
	})
}
