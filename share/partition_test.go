package share

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustAcquire(t *testing.T, p *Partition, member string, max int, batches []BatchSpan, now time.Time) ([]AcquiredRange, Update) {
	t.Helper()
	got, u, err := p.Acquire(member, max, p.FetchOffset(), batches, now)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", member, err)
	}
	return got, u
}

func mustAck(t *testing.T, p *Partition, member string, batches []AckBatch, now time.Time) Update {
	t.Helper()
	errs, u := p.Acknowledge(member, batches, now)
	for i, e := range errs {
		if e != 0 {
			t.Fatalf("Acknowledge(%s) batch %d: error %d", member, i, e)
		}
	}
	return u
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

var log15 = []BatchSpan{{0, 4, false}, {5, 9, false}, {10, 14, false}}

func TestNewAutoOffsetReset(t *testing.T) {
	eq(t, "latest", New(Config{}, 10, 50).SPSO(), int64(50))
	eq(t, "earliest", New(Config{AutoOffsetReset: ResetEarliest}, 10, 50).SPSO(), int64(10))
	c := New(Config{}, 0, 0).Config()
	eq(t, "defaults", c, Config{LockDuration: 30 * time.Second, DeliveryCountLimit: 5, MaxRecordLocks: 2000})
}

func TestAcquireAckReleaseReject(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)

	// A soft limit of 7 takes the first two batches whole.
	got, u := mustAcquire(t, p, "m1", 7, log15, t0)
	eq(t, "m1 acquired", got, []AcquiredRange{{0, 9, 1}})
	eq(t, "m1 update", u, Update{StartOffset: -1, Batches: []StateBatch{{0, 9, Available, 1}}})

	got, _ = mustAcquire(t, p, "m2", 5, log15[2:], t0)
	eq(t, "m2 acquired", got, []AcquiredRange{{10, 14, 1}})
	eq(t, "SPEO", p.SPEO(), int64(15))

	// Nothing left to acquire.
	got, u = mustAcquire(t, p, "m3", 5, nil, t0)
	eq(t, "m3 acquired", len(got), 0)
	eq(t, "m3 update empty", u.Empty(), true)

	u = mustAck(t, p, "m1", []AckBatch{
		{0, 4, []AckType{AckAccept}},
		{5, 6, []AckType{AckRelease}},
		{7, 9, []AckType{AckReject, AckAccept, AckGap}},
	}, t0.Add(time.Second))
	eq(t, "ack update", u, Update{StartOffset: 5, Batches: []StateBatch{
		{5, 6, Available, 1}, {7, 7, Archived, 1}, {8, 8, Acknowledged, 1}, {9, 9, Archived, 1},
	}})
	eq(t, "SPSO", p.SPSO(), int64(5))
	eq(t, "fetch offset", p.FetchOffset(), int64(5))

	// The released records are redelivered with a higher delivery count.
	got, u = mustAcquire(t, p, "m2", 5, []BatchSpan{{5, 9, false}, {10, 14, false}}, t0.Add(2*time.Second))
	eq(t, "redelivery", got, []AcquiredRange{{5, 6, 2}})
	eq(t, "redelivery update", u, Update{StartOffset: -1, Batches: []StateBatch{{5, 6, Available, 2}}})
	r, _ := p.Record(5)
	eq(t, "record 5", r, RecordInfo{State: Acquired, DeliveryCount: 2, Member: "m2", Deadline: t0.Add(32 * time.Second)})

	u = mustAck(t, p, "m2", []AckBatch{{5, 6, []AckType{AckAccept}}, {10, 14, []AckType{AckAccept}}}, t0.Add(3*time.Second))
	eq(t, "final update", u, Update{StartOffset: 15})
	eq(t, "in flight", len(p.InFlight()), 0)
}

func TestLockExpiryRedelivers(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	mustAcquire(t, p, "m1", 5, log15[:1], t0)
	if d, ok := p.NextDeadline(); !ok || !d.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("NextDeadline = %v, %v", d, ok)
	}
	eq(t, "early expire", p.Expire(t0.Add(30*time.Second-1)).Empty(), true)
	u := p.Expire(t0.Add(30 * time.Second))
	eq(t, "expire update", u, Update{StartOffset: -1, Batches: []StateBatch{{0, 4, Available, 1}}})
	if _, ok := p.NextDeadline(); ok {
		t.Fatal("NextDeadline after expiry: still a deadline")
	}
	// The member whose lock expired can no longer acknowledge.
	errs, u := p.Acknowledge("m1", []AckBatch{{0, 4, []AckType{AckAccept}}}, t0.Add(31*time.Second))
	eq(t, "late ack", errs, []int16{kerr.InvalidRecordState.Code})
	eq(t, "late ack update", u.Empty(), true)

	got, _ := mustAcquire(t, p, "m2", 5, log15[:1], t0.Add(31*time.Second))
	eq(t, "redelivered", got, []AcquiredRange{{0, 4, 2}})
}

func TestRenewExtendsLock(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	mustAcquire(t, p, "m1", 5, log15[:1], t0)
	u := mustAck(t, p, "m1", []AckBatch{{0, 4, []AckType{AckRenew}}}, t0.Add(20*time.Second))
	eq(t, "renew update empty", u.Empty(), true)
	eq(t, "expire at old deadline", p.Expire(t0.Add(30*time.Second)).Empty(), true)
	u = p.Expire(t0.Add(50 * time.Second))
	eq(t, "expire at new deadline", u.Batches, []StateBatch{{0, 4, Available, 1}})
}

func TestDeliveryLimitArchives(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest, DeliveryCountLimit: 2}, 0, 10)
	b := []BatchSpan{{0, 4, false}, {5, 9, false}}
	got, _ := mustAcquire(t, p, "m1", 1, b, t0)
	eq(t, "first", got, []AcquiredRange{{0, 4, 1}})
	mustAck(t, p, "m1", []AckBatch{{0, 4, []AckType{AckRelease}}}, t0)
	got, _ = mustAcquire(t, p, "m2", 1, b, t0)
	eq(t, "second", got, []AcquiredRange{{0, 4, 2}})
	// Released at the limit: archived, and the SPSO moves past it.
	u := mustAck(t, p, "m2", []AckBatch{{0, 1, []AckType{AckRelease}}}, t0)
	eq(t, "archive update", u, Update{StartOffset: 2})
	// Expiry at the limit archives too.
	u = p.Expire(t0.Add(time.Minute))
	eq(t, "expire update", u, Update{StartOffset: 5})
	got, _ = mustAcquire(t, p, "m3", 100, b, t0.Add(time.Minute))
	eq(t, "never again", got, []AcquiredRange{{5, 9, 1}})
	for o := int64(0); o < 5; o++ {
		if _, ok := p.Record(o); ok {
			t.Fatalf("offset %d still in flight", o)
		}
	}
}

func TestAckValidation(t *testing.T) {
	setup := func() *Partition {
		p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
		mustAcquire(t, p, "m1", 5, log15[:1], t0)
		mustAcquire(t, p, "m2", 5, log15[1:2], t0)
		return p
	}
	irs, ir := kerr.InvalidRecordState.Code, kerr.InvalidRequest.Code
	for _, tc := range []struct {
		name    string
		member  string
		batches []AckBatch
		want    []int16
	}{
		{"other member's records", "m2", []AckBatch{{0, 1, []AckType{AckAccept}}}, []int16{irs}},
		{"unknown member", "m9", []AckBatch{{5, 5, []AckType{AckAccept}}}, []int16{irs}},
		{"straddles two members", "m1", []AckBatch{{3, 6, []AckType{AckAccept}}}, []int16{irs}},
		{"beyond SPEO", "m2", []AckBatch{{8, 12, []AckType{AckAccept}}}, []int16{ir}},
		{"first after last", "m1", []AckBatch{{3, 2, []AckType{AckAccept}}}, []int16{ir}},
		{"not ascending", "m1", []AckBatch{{2, 3, []AckType{AckAccept}}, {3, 4, []AckType{AckAccept}}}, []int16{0, ir}},
		{"no types", "m1", []AckBatch{{0, 1, nil}}, []int16{ir}},
		{"type count", "m1", []AckBatch{{0, 2, []AckType{AckAccept, AckAccept}}}, []int16{ir}},
		{"unknown type", "m1", []AckBatch{{0, 0, []AckType{5}}}, []int16{ir}},
		{"one good one bad", "m1", []AckBatch{{0, 1, []AckType{AckAccept}}, {5, 5, []AckType{AckAccept}}}, []int16{0, irs}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setup()
			before := p.InFlight()
			errs, u := p.Acknowledge(tc.member, tc.batches, t0)
			eq(t, "errors", errs, tc.want)
			eq(t, "update empty", u.Empty(), true)
			eq(t, "state unchanged", p.InFlight(), before)
		})
	}
	// Below the SPSO: finished records cannot be acknowledged again.
	p := setup()
	mustAck(t, p, "m1", []AckBatch{{0, 4, []AckType{AckAccept}}}, t0)
	errs, _ := p.Acknowledge("m1", []AckBatch{{0, 0, []AckType{AckAccept}}}, t0)
	eq(t, "below SPSO", errs, []int16{irs})
}

func TestMaxRecordLocks(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest, MaxRecordLocks: 8}, 0, 15)
	got, _ := mustAcquire(t, p, "m1", 100, log15, t0)
	eq(t, "clipped at the lock limit", got, []AcquiredRange{{0, 7, 1}})
	eq(t, "SPEO", p.SPEO(), int64(8))
	got, _ = mustAcquire(t, p, "m2", 100, []BatchSpan{{5, 9, false}, {10, 14, false}}, t0)
	eq(t, "full", len(got), 0)
	// Releasing inside the window makes records acquirable again without growing it.
	mustAck(t, p, "m1", []AckBatch{{6, 7, []AckType{AckRelease}}}, t0)
	got, _ = mustAcquire(t, p, "m2", 100, []BatchSpan{{5, 9, false}, {10, 14, false}}, t0)
	eq(t, "within window", got, []AcquiredRange{{6, 7, 2}})
	mustAck(t, p, "m1", []AckBatch{{0, 1, []AckType{AckAccept}}}, t0)
	got, _ = mustAcquire(t, p, "m2", 100, []BatchSpan{{5, 9, false}, {10, 14, false}}, t0)
	eq(t, "two more", got, []AcquiredRange{{8, 9, 1}})
	eq(t, "window", p.SPEO()-p.SPSO(), int64(8))
}

func TestGaps(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 20)
	// A gap at the start with nothing in flight moves the SPSO.
	got, u, err := p.Acquire("m1", 100, 0, []BatchSpan{{3, 4, false}, {7, 8, false}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "acquired", got, []AcquiredRange{{3, 4, 1}, {7, 8, 1}})
	eq(t, "update", u, Update{StartOffset: 3, Batches: []StateBatch{{3, 4, Available, 1}, {5, 6, Archived, 0}, {7, 8, Available, 1}}})
	r, _ := p.Record(5)
	eq(t, "gap", r, RecordInfo{State: Archived, Gap: true})
	u = mustAck(t, p, "m1", []AckBatch{{3, 4, []AckType{AckAccept}}, {7, 8, []AckType{AckAccept}}}, t0)
	eq(t, "SPSO over gap", u, Update{StartOffset: 9})

	// A released record the log no longer has (compacted) is archived when read again.
	got, _, _ = p.Acquire("m1", 100, 9, []BatchSpan{{9, 12, false}}, t0)
	eq(t, "9-12", got, []AcquiredRange{{9, 12, 1}})
	mustAck(t, p, "m1", []AckBatch{{9, 12, []AckType{AckRelease}}}, t0)
	got, u, _ = p.Acquire("m1", 100, 9, []BatchSpan{{11, 12, false}}, t0)
	eq(t, "after compaction", got, []AcquiredRange{{11, 12, 2}})
	eq(t, "compaction update", u, Update{StartOffset: 11, Batches: []StateBatch{{11, 12, Available, 2}}})

	if _, _, err := p.Acquire("m1", 1, 0, []BatchSpan{{5, 6, false}, {6, 7, false}}, t0); err == nil {
		t.Fatal("overlapping batches accepted")
	}
}

func TestReleaseMember(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	mustAcquire(t, p, "m1", 5, log15[:1], t0)
	mustAcquire(t, p, "m2", 5, log15[1:2], t0)
	u := p.ReleaseMember("m1")
	eq(t, "release m1", u, Update{StartOffset: -1, Batches: []StateBatch{{0, 4, Available, 1}}})
	r, _ := p.Record(7)
	eq(t, "m2 keeps its records", r.Member, "m2")
	eq(t, "release unknown", p.ReleaseMember("m9").Empty(), true)
}

func TestAdvanceLogStart(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	mustAcquire(t, p, "m1", 10, log15[:2], t0)
	eq(t, "advance", p.AdvanceLogStart(7), Update{StartOffset: 7})
	eq(t, "in flight", p.InFlight(), []StateBatch{{7, 9, Acquired, 1}})
	eq(t, "past SPEO", p.AdvanceLogStart(20), Update{StartOffset: 20})
	eq(t, "backwards", p.AdvanceLogStart(3).Empty(), true)
}

func TestSnapshotRestore(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	mustAcquire(t, p, "m1", 10, log15[:2], t0)
	mustAcquire(t, p, "m2", 5, log15[2:], t0)
	mustAck(t, p, "m1", []AckBatch{{0, 1, []AckType{AckAccept}}, {3, 4, []AckType{AckAccept}}, {5, 6, []AckType{AckReject}}, {7, 7, []AckType{AckRelease}}}, t0)
	s := p.Snapshot()
	want := Snapshot{StartOffset: 2, Batches: []StateBatch{
		{2, 2, Available, 1}, // acquired by m1: persisted available, count kept
		{3, 4, Acknowledged, 1},
		{5, 6, Archived, 1},
		{7, 7, Available, 1},
		{8, 14, Available, 1},
	}}
	// 7 (released) and 8-14 (acquired) persist alike and merge.
	want.Batches = []StateBatch{{2, 2, Available, 1}, {3, 4, Acknowledged, 1}, {5, 6, Archived, 1}, {7, 14, Available, 1}}
	eq(t, "snapshot", s, want)

	q, err := Restore(Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "round trip", q.Snapshot(), s)
	eq(t, "SPSO", q.SPSO(), int64(2))
	eq(t, "SPEO", q.SPEO(), int64(15))
	got, _ := mustAcquire(t, q, "m3", 100, log15, t0)
	eq(t, "redelivered after failover", got, []AcquiredRange{{2, 2, 2}, {7, 14, 2}})

	if _, err := Restore(Config{}, Snapshot{StartOffset: 0, Batches: []StateBatch{{0, 1, Acquired, 1}}}); err == nil {
		t.Fatal("Restore accepted a persisted Acquired state")
	}
	if _, err := Restore(Config{}, Snapshot{StartOffset: 0, Batches: []StateBatch{{3, 4, Available, 1}, {4, 5, Available, 1}}}); err == nil {
		t.Fatal("Restore accepted overlapping batches")
	}
	// Uncovered offsets come back available with count 0; a finished prefix moves the SPSO.
	q, _ = Restore(Config{}, Snapshot{StartOffset: 0, Batches: []StateBatch{{0, 1, Archived, 5}, {4, 4, Acknowledged, 1}}})
	eq(t, "restored", q.InFlight(), []StateBatch{{2, 3, Available, 0}, {4, 4, Acknowledged, 1}})
}

func TestSnapshotApply(t *testing.T) {
	s := Snapshot{StartOffset: 0, Batches: []StateBatch{{0, 4, Available, 1}, {5, 9, Archived, 1}}}
	s = s.Apply(Update{StartOffset: -1, Batches: []StateBatch{{2, 6, Acknowledged, 1}}})
	eq(t, "apply", s, Snapshot{StartOffset: 0, Batches: []StateBatch{{0, 1, Available, 1}, {2, 6, Acknowledged, 1}, {7, 9, Archived, 1}}})
	s = s.Apply(Update{StartOffset: 7})
	eq(t, "apply start", s, Snapshot{StartOffset: 7, Batches: []StateBatch{{7, 9, Archived, 1}}})
}

func TestHandoverKeepsLocks(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 20)
	if _, _, err := p.Acquire("m1", 10, 0, []BatchSpan{{0, 4, false}, {7, 9, false}}, t0); err != nil {
		t.Fatal(err)
	}
	mustAck(t, p, "m1", []AckBatch{{1, 1, []AckType{AckAccept}}, {3, 3, []AckType{AckRelease}}}, t0)
	h := p.Handover()
	eq(t, "handover", h, Handover{StartOffset: 0, Batches: []HandoverBatch{
		{First: 0, Last: 0, State: Acquired, DeliveryCount: 1, Member: "m1", Deadline: t0.Add(30 * time.Second)},
		{First: 1, Last: 1, State: Acknowledged, DeliveryCount: 1},
		{First: 2, Last: 2, State: Acquired, DeliveryCount: 1, Member: "m1", Deadline: t0.Add(30 * time.Second)},
		{First: 3, Last: 3, State: Available, DeliveryCount: 1},
		{First: 4, Last: 4, State: Acquired, DeliveryCount: 1, Member: "m1", Deadline: t0.Add(30 * time.Second)},
		{First: 5, Last: 6, State: Archived, Gap: true},
		{First: 7, Last: 9, State: Acquired, DeliveryCount: 1, Member: "m1", Deadline: t0.Add(30 * time.Second)},
	}})
	q, err := FromHandover(Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "same state", q.Handover(), h)
	// The holder acknowledges on the new leader; the lock expires when it would have.
	mustAck(t, q, "m1", []AckBatch{{0, 0, []AckType{AckAccept}}}, t0.Add(time.Second))
	eq(t, "SPSO", q.SPSO(), int64(2))
	eq(t, "no early expiry", q.Expire(t0.Add(30*time.Second-1)).Empty(), true)
	u := q.Expire(t0.Add(30 * time.Second))
	eq(t, "expiry", u.Batches, []StateBatch{{2, 2, Available, 1}, {4, 4, Available, 1}, {7, 9, Available, 1}})

	bad := Handover{StartOffset: 0, Batches: []HandoverBatch{{First: 1, Last: 2, State: Available}}}
	if _, err := FromHandover(Config{}, bad); err == nil {
		t.Fatal("FromHandover accepted a hole")
	}
	bad = Handover{StartOffset: 0, Batches: []HandoverBatch{{First: 0, Last: 2, State: Acquired, DeliveryCount: 1}}}
	if _, err := FromHandover(Config{}, bad); err == nil {
		t.Fatal("FromHandover accepted an acquisition without a member")
	}
}

func TestSkipBatches(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 20)
	got, u, err := p.Acquire("m1", 100, 0, []BatchSpan{{0, 2, false}, {3, 4, true}, {5, 6, false}, {7, 9, true}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "acquired", got, []AcquiredRange{{0, 2, 1}, {5, 6, 1}})
	eq(t, "update", u, Update{StartOffset: -1, Batches: []StateBatch{{0, 2, Available, 1}, {3, 4, Archived, 0}, {5, 6, Available, 1}, {7, 9, Archived, 0}}})
	u = mustAck(t, p, "m1", []AckBatch{{0, 2, []AckType{AckAccept}}, {5, 6, []AckType{AckAccept}}}, t0)
	eq(t, "SPSO past the skipped batches", u, Update{StartOffset: 10})
	// A skipped batch first in line with nothing in flight moves the SPSO.
	got, u, _ = p.Acquire("m1", 100, 10, []BatchSpan{{10, 12, true}, {13, 14, false}}, t0)
	eq(t, "after skip", got, []AcquiredRange{{13, 14, 1}})
	eq(t, "after skip update", u, Update{StartOffset: 13, Batches: []StateBatch{{13, 14, Available, 1}}})
}

func TestAcquireStrict(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	got, u, err := p.AcquireStrict("m1", 7, 0, log15, t0)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "cut batch", got, []AcquiredRange{{0, 6, 1}})
	eq(t, "update", u, Update{StartOffset: -1, Batches: []StateBatch{{0, 6, Available, 1}}})
	eq(t, "SPEO", p.SPEO(), int64(7))
	// The rest of the cut batch goes to the next acquisition.
	got, _, _ = p.AcquireStrict("m2", 4, p.FetchOffset(), log15[1:], t0)
	eq(t, "rest", got, []AcquiredRange{{7, 10, 1}})
}

// TestSetConfig: a lock duration changed in use applies to the next
// acquisition (locks held keep their deadline); a lowered delivery limit
// archives a record released at or over it; the start stays.
func TestSetConfig(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 10)
	b := []BatchSpan{{0, 4, false}, {5, 9, false}}
	mustAcquire(t, p, "m1", 1, b, t0)
	p.SetConfig(Config{LockDuration: 5 * time.Second, DeliveryCountLimit: 1})
	eq(t, "config", p.Config(), Config{AutoOffsetReset: ResetEarliest, LockDuration: 5 * time.Second, DeliveryCountLimit: 1, MaxRecordLocks: 2000})
	mustAcquire(t, p, "m2", 1, b, t0)
	// m2's lock (5 s) expires first; m1's (30 s) stays.
	u := p.Expire(t0.Add(5 * time.Second))
	eq(t, "expire at the new duration", u, Update{StartOffset: -1, Batches: []StateBatch{{5, 9, Archived, 1}}})
	// m1 releases at count 1, the new limit: archived.
	u = mustAck(t, p, "m1", []AckBatch{{0, 4, []AckType{AckRelease}}}, t0.Add(6*time.Second))
	eq(t, "release at the new limit", u, Update{StartOffset: 10})
}

// TestUnacquire: an acquisition whose answer was never sent is taken
// back with its delivery count; what the member no longer holds at that
// count is left alone.
func TestUnacquire(t *testing.T) {
	p := New(Config{AutoOffsetReset: ResetEarliest}, 0, 15)
	got, _ := mustAcquire(t, p, "m1", 10, log15[:2], t0)
	eq(t, "acquired", got, []AcquiredRange{{0, 9, 1}})
	// m1 accepted 0 meanwhile (another request); 1-9 go back.
	mustAck(t, p, "m1", []AckBatch{{0, 0, []AckType{AckAccept}}}, t0)
	u := p.Unacquire("m1", got)
	eq(t, "update", u, Update{StartOffset: -1, Batches: []StateBatch{{1, 9, Available, 0}}})
	eq(t, "in flight", p.InFlight(), []StateBatch{{1, 9, Available, 0}})
	got, _ = mustAcquire(t, p, "m2", 10, log15, t0)
	eq(t, "again at count 1", got, []AcquiredRange{{1, 14, 1}})
	// Another member's records, or m2's at another count: untouched.
	eq(t, "other member", p.Unacquire("m1", got).Empty(), true)
	eq(t, "other count", p.Unacquire("m2", []AcquiredRange{{1, 14, 2}}).Empty(), true)
}
