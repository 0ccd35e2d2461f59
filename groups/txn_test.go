package groups

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PersistTxn makes memPersister a TxnPersister: it stores the records as
// Persist does.
func (p *memPersister) PersistTxn(ctx context.Context, _ int64, _ int16, recs []Record) error {
	return p.Persist(ctx, recs)
}

func (h *harness) txnCommit(version int16, pid int64, memberID string, gen int32, part int32, off int64) int16 {
	h.t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = version
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = "T", h.group, pid, 0
	req.MemberID, req.Generation = memberID, gen
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = part, off, 2
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return h.c.TxnOffsetCommit(context.Background(), req).Topics[0].Partitions[0].ErrorCode
}

// stableFetch is OffsetFetch v7 with RequireStable of t/part: the
// partition's error code and offset.
func stableFetch(c *Coordinator, group string, part int32) (int16, int64) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group = group
	req.RequireStable = true
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = "t", []int32{part}
	req.Topics = append(req.Topics, rt)
	p := c.OffsetFetch(context.Background(), req).Topics[0].Partitions[0]
	return p.ErrorCode, p.Offset
}

func TestTxnOffsetCommit(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stable(2)
	unstable := kerr.UnstableOffsetCommit.Code
	steps := []struct {
		name             string
		version          int16
		pid              int64
		member           string
		gen              int32
		part             int32
		off              int64
		want             int16
		complete         func()
		stable0, stable1 int16
		plain0, plain1   int64
	}{
		{name: "member at its generation", version: 3, pid: 5, member: ids[0], gen: gen, part: 0, off: 10, stable0: unstable, plain0: -1, plain1: -1},
		{name: "old generation", version: 3, pid: 5, member: ids[0], gen: gen - 1, part: 1, off: 11, want: kerr.IllegalGeneration.Code, stable0: unstable, plain0: -1, plain1: -1},
		{name: "unknown member", version: 3, pid: 5, member: "nobody", gen: gen, part: 1, off: 11, want: kerr.UnknownMemberID.Code, stable0: unstable, plain0: -1, plain1: -1},
		{name: "v2: no member checks", version: 2, pid: 6, member: "ignored", gen: 99, part: 1, off: 20, stable0: unstable, stable1: unstable, plain0: -1, plain1: -1},
		{name: "pid 5 commits", pid: -1, complete: func() { h.c.CompleteTxn(5, true) }, stable1: unstable, plain0: 10, plain1: -1},
		{name: "pid 6 aborts", pid: -1, complete: func() { h.c.CompleteTxn(6, false) }, plain0: 10, plain1: -1},
	}
	for _, s := range steps {
		if s.complete != nil {
			s.complete()
		} else if code := h.txnCommit(s.version, s.pid, s.member, s.gen, s.part, s.off); code != s.want {
			t.Fatalf("%s: code %d, want %d", s.name, code, s.want)
		}
		c0, _ := stableFetch(h.c, h.group, 0)
		c1, _ := stableFetch(h.c, h.group, 1)
		if c0 != s.stable0 || c1 != s.stable1 || h.fetched("t", 0) != s.plain0 || h.fetched("t", 1) != s.plain1 {
			t.Fatalf("%s: RequireStable codes %d %d, offsets %d %d; want %d %d, %d %d", s.name, c0, c1, h.fetched("t", 0), h.fetched("t", 1),
				s.stable0, s.stable1, s.plain0, s.plain1)
		}
	}
	// A failed persist leaves nothing pending.
	h.p.setFail(kerr.NotCoordinator)
	if code := h.txnCommit(3, 7, ids[1], gen, 1, 30); code != kerr.NotCoordinator.Code {
		t.Fatalf("failed persist: code %d, want NOT_COORDINATOR", code)
	}
	if code, _ := stableFetch(h.c, h.group, 1); code != 0 {
		t.Fatalf("after a failed persist: RequireStable code %d, want 0", code)
	}
	h.p.setFail(nil)

	// Loading: a transactional record stays pending until its marker.
	c := New(Config{TickInterval: -1, Now: h.clk.Now, Logger: zerolog.Nop()}, h.p)
	t.Cleanup(c.Close)
	for _, r := range h.p.records() {
		if err := c.Replay(r); err != nil {
			t.Fatal(err)
		}
	}
	v := offsetRecordValue(offsetValue{offset: 40, leaderEpoch: 2, commitTs: 1, expireTs: -1})
	if err := c.ReplayTxn(9, Record{Key: offsetKey(h.group, "t", 1), Value: v}); err != nil {
		t.Fatal(err)
	}
	c.ReplayDone()
	if code, _ := stableFetch(c, h.group, 1); code != unstable {
		t.Fatalf("replayed pending commit: RequireStable code %d, want UNSTABLE_OFFSET_COMMIT", code)
	}
	c.CompleteTxn(9, true)
	if code, off := stableFetch(c, h.group, 1); code != 0 || off != 40 {
		t.Fatalf("replayed commit after its marker: code %d offset %d, want 0 and 40", code, off)
	}
}

// TestTxnCommitKeepsLaterPlainCommit: a plain OffsetCommit written after a
// transactional one of the same partition stays when the transaction
// commits (Kafka compares the records' log offsets); an earlier one is
// replaced.
func TestTxnCommitKeepsLaterPlainCommit(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stable(1)
	if code := h.commit(ids[0], gen, "t", 1, 5); code != 0 {
		t.Fatalf("plain commit: %d", code)
	}
	if code := h.txnCommit(3, 5, ids[0], gen, 0, 10); code != 0 {
		t.Fatalf("txn commit: %d", code)
	}
	if code := h.txnCommit(3, 5, ids[0], gen, 1, 11); code != 0 {
		t.Fatalf("txn commit: %d", code)
	}
	if code := h.commit(ids[0], gen, "t", 0, 15); code != 0 {
		t.Fatalf("plain commit: %d", code)
	}
	h.c.CompleteTxn(5, true)
	if o0, o1 := h.fetched("t", 0), h.fetched("t", 1); o0 != 15 || o1 != 11 {
		t.Fatalf("after the COMMIT: t/0 %d, t/1 %d; want 15 (the later plain commit) and 11", o0, o1)
	}
}
