package share

import (
	"reflect"
	"testing"
	"time"
)

// fuzzLog is a log for the fuzz test: batches of 1-5 records with a gap
// of two offsets after every fourth batch, every fifth batch one to skip
// (aborted), 80 offsets in all.
func fuzzLog() []BatchSpan {
	var out []BatchSpan
	sizes := []int64{3, 1, 4, 2, 5}
	o := int64(0)
	for i := 0; o < 80; i++ {
		b := BatchSpan{Base: o, Last: o + sizes[i%len(sizes)] - 1, Skip: i%5 == 2}
		out = append(out, b)
		o = b.Last + 1
		if i%4 == 3 {
			o += 2
		}
	}
	return out
}

// readLog returns up to n batches that hold offsets at or after from.
func readLog(log []BatchSpan, from int64, n int) []BatchSpan {
	var out []BatchSpan
	for _, b := range log {
		if b.Last >= from && len(out) < n {
			out = append(out, b)
		}
	}
	return out
}

// inLog reports whether offset o holds a record to deliver.
func inLog(log []BatchSpan, o int64) bool {
	for _, b := range log {
		if o >= b.Base && o <= b.Last {
			return !b.Skip
		}
	}
	return false
}

// durable drops what Restore assumes anyway (available, never delivered)
// so that snapshots compare by meaning.
func durable(s Snapshot) map[int64]StateBatch {
	m := map[int64]StateBatch{}
	for _, b := range s.Batches {
		if b.State == Available && b.DeliveryCount == 0 {
			continue
		}
		for o := max(b.First, s.StartOffset); o <= b.Last; o++ {
			m[o] = StateBatch{First: o, Last: o, State: b.State, DeliveryCount: b.DeliveryCount}
		}
	}
	return m
}

type fuzzRun struct {
	t      *testing.T
	p      *Partition
	log    []BatchSpan
	now    time.Time
	spso   int64
	model  Snapshot        // the Updates folded over the first snapshot
	final  map[int64]State // offsets ever acknowledged or archived
	counts map[int64]int16 // the highest delivery count handed out
}

func (r *fuzzRun) check(op string, u Update) {
	t, p := r.t, r.p
	t.Helper()
	if p.SPSO() < r.spso {
		t.Fatalf("%s: SPSO moved back from %d to %d", op, r.spso, p.SPSO())
	}
	r.spso = p.SPSO()
	if u.StartOffset >= 0 && u.StartOffset != p.SPSO() {
		t.Fatalf("%s: update start offset %d, SPSO %d", op, u.StartOffset, p.SPSO())
	}
	for i, b := range u.Batches {
		if b.First < p.SPSO() || b.First > b.Last || (i > 0 && b.First <= u.Batches[i-1].Last) || b.State == Acquired {
			t.Fatalf("%s: bad update batch %d %+v (SPSO %d)", op, i, b, p.SPSO())
		}
	}
	if n := p.SPEO() - p.SPSO(); n > int64(p.Config().MaxRecordLocks) {
		t.Fatalf("%s: %d offsets in flight, limit %d", op, n, p.Config().MaxRecordLocks)
	}
	for o := p.SPSO(); o < p.SPEO(); o++ {
		ri, _ := p.Record(o)
		if ri.DeliveryCount > p.Config().DeliveryCountLimit {
			t.Fatalf("%s: offset %d delivery count %d past the limit", op, o, ri.DeliveryCount)
		}
		if (ri.State == Acquired) != (ri.Member != "") || (ri.State == Acquired) == ri.Deadline.IsZero() {
			t.Fatalf("%s: offset %d: %+v", op, o, ri)
		}
		if ri.Gap && ri.State != Archived {
			t.Fatalf("%s: gap %d is %v", op, o, ri.State)
		}
		if st, ok := r.final[o]; ok && ri.State != st {
			t.Fatalf("%s: offset %d was %v, now %v", op, o, st, ri.State)
		}
		if ri.State == Acknowledged || ri.State == Archived {
			r.final[o] = ri.State
		}
	}
	r.model = r.model.Apply(u)
	if got, want := durable(r.model), durable(p.Snapshot()); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: updates folded: %+v\nsnapshot: %+v", op, r.model, p.Snapshot())
	}
}

func FuzzPartition(f *testing.F) {
	f.Add([]byte{0, 1, 7, 0, 2, 3, 1, 1, 0, 0, 3, 40, 0, 0, 9})
	f.Add([]byte{0, 0, 5, 0, 1, 5, 1, 0, 0, 2, 4, 0, 3, 255, 0, 2, 7, 1, 2, 0, 5, 3, 6, 9})
	f.Add([]byte{5, 1, 5, 2, 0, 0, 7, 0, 1, 7, 4, 0, 0, 3, 1, 0, 1, 2, 1, 3, 3, 100, 0, 2, 7})
	f.Fuzz(fuzzPartition)
}

func fuzzPartition(t *testing.T, data []byte) {
	{
		cfg := Config{AutoOffsetReset: ResetEarliest, DeliveryCountLimit: 3, MaxRecordLocks: 24, LockDuration: 10 * time.Second}
		r := &fuzzRun{t: t, p: New(cfg, 0, 80), log: fuzzLog(), now: t0, final: map[int64]State{}, counts: map[int64]int16{}}
		r.model = r.p.Snapshot()
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		members := []string{"m0", "m1", "m2"}
		for step := 0; len(data) > 0 && step < 300; step++ {
			p := r.p
			switch next() % 7 {
			case 0: // acquire
				m := members[next()%3]
				pre := map[int64]RecordInfo{}
				for o := p.SPSO(); o < p.SPEO(); o++ {
					pre[o], _ = p.Record(o)
				}
				from := p.FetchOffset()
				acq, strict := p.Acquire, false
				k := next()
				if k&8 != 0 {
					acq, strict = p.AcquireStrict, true
				}
				maxRecords := k%8 + 1
				got, u, err := acq(m, maxRecords, from, readLog(r.log, from, next()%4+1), r.now)
				if err != nil {
					t.Fatalf("acquire: %v", err)
				}
				n := 0
				for _, ar := range got {
					n += int(ar.Last - ar.First + 1)
				}
				if strict && n > maxRecords {
					t.Fatalf("strict acquire of %d took %d", maxRecords, n)
				}
				for _, ar := range got {
					for o := ar.First; o <= ar.Last; o++ {
						if ri, ok := pre[o]; ok && (ri.State != Available || ri.DeliveryCount+1 != ar.DeliveryCount) {
							t.Fatalf("acquire %s: offset %d was %+v, handed out with count %d", m, o, ri, ar.DeliveryCount)
						}
						if _, ok := pre[o]; !ok && ar.DeliveryCount != 1 {
							t.Fatalf("acquire %s: new offset %d count %d", m, o, ar.DeliveryCount)
						}
						if !inLog(r.log, o) {
							t.Fatalf("acquire %s: offset %d has no record", m, o)
						}
						if ri, _ := p.Record(o); ri.State != Acquired || ri.Member != m {
							t.Fatalf("acquire %s: offset %d now %+v", m, o, ri)
						}
					}
				}
				r.check("acquire", u)
			case 1: // acknowledge a range
				m := members[next()%3]
				first := p.SPSO() + int64(next()%30) - 2
				last := first + int64(next()%6)
				var types []AckType
				if k := next(); k%3 == 0 && last >= first {
					for o := first; o <= last; o++ {
						types = append(types, AckType(next()%5))
					}
				} else {
					types = []AckType{AckType(k % 5)}
				}
				before := p.InFlight()
				errs, u := p.Acknowledge(m, []AckBatch{{first, last, types}}, r.now)
				if errs[0] != 0 {
					if !u.Empty() || !reflect.DeepEqual(before, p.InFlight()) {
						t.Fatalf("refused ack changed state")
					}
				}
				r.check("ack", u)
			case 2:
				r.check("release member", p.ReleaseMember(members[next()%3]))
			case 3:
				r.now = r.now.Add(time.Duration(next()%16) * time.Second)
				r.check("expire", p.Expire(r.now))
			case 4: // a roll (handover) or a failover (restore)
				if next()%2 == 0 {
					q, err := FromHandover(cfg, p.Handover())
					if err != nil {
						t.Fatalf("handover: %v", err)
					}
					if !reflect.DeepEqual(q.Handover(), p.Handover()) {
						t.Fatalf("handover changed state: %+v != %+v", q.Handover(), p.Handover())
					}
					r.p = q
					r.check("handover", Update{StartOffset: -1})
					break
				}
				q, err := Restore(cfg, p.Snapshot())
				if err != nil {
					t.Fatalf("restore: %v", err)
				}
				if got, want := durable(q.Snapshot()), durable(p.Snapshot()); !reflect.DeepEqual(got, want) {
					t.Fatalf("restore changed state: %+v != %+v", q.Snapshot(), p.Snapshot())
				}
				r.p = q
				r.check("restore", Update{StartOffset: -1})
			case 5: // compaction removes a batch
				if len(r.log) > 1 {
					i := next() % len(r.log)
					r.log = append(r.log[:i:i], r.log[i+1:]...)
				}
			case 6: // retention moves the log start
				ls := p.SPSO() + int64(next()%8)
				for len(r.log) > 0 && r.log[0].Last < ls {
					r.log = r.log[1:]
				}
				r.check("log start", p.AdvanceLogStart(ls))
			}
		}
	}
}
