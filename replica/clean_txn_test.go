package replica

import (
	"context"
	"slices"
	"testing"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/storage"
)

// dataRecords decodes the records of node id's data batches (control
// batches left out) and counts its control batches.
func (c *cluster) dataRecords(id int32) (recs []kv, markers int) {
	c.t.Helper()
	var d kafkaproto.Decompressor
	defer d.Close()
	err := kafkaproto.SplitBatches(c.bytesOf(id), func(batch []byte, h kafkaproto.BatchHeader) error {
		if h.IsControl() {
			markers++
			return nil
		}
		rs, err := d.Records(batch)
		for _, r := range rs {
			recs = append(recs, kv{r.Offset, string(r.Key), string(r.Value)})
		}
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return recs, markers
}

// waitGeneration waits until every replica swapped in generation gen.
func (c *cluster) waitGeneration(gen int32) {
	c.t.Helper()
	c.eventually("the generation swapped in on every replica", func() bool {
		c.reconcileAll()
		for id := range c.nodes {
			if c.log(id).CleanGeneration() != gen {
				return false
			}
		}
		return true
	})
}

// TestCleaningAbortedTransactionOnEveryReplica: an open transaction
// bounds the first cleaning at its first offset; once it is aborted the
// next cleaning passes it on every participant: the aborted record is
// gone (its batch kept empty, its producer's last), its ABORT marker
// stays, an older committed value of its key survives, every replica
// holds the same bytes and no replica has a transaction open.
func TestCleaningAbortedTransactionOnEveryReplica(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	c.compactTopic()
	for v := range 2 {
		for k := range 5 {
			c.produceKV(1, "k"+string(rune('0'+k)), []byte("v"+string(rune('0'+v))))
		}
		c.rollOn(1)
	}
	lp := c.nodes[1].m.Leader(tp0)
	b := txnBatch(42, "k0", "aborted")
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	epoch, release, err := lp.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.log.Append(b, h, epoch); err != nil {
		t.Fatal(err)
	}
	release(int64(len(b)))
	c.produceKV(1, "k1", []byte("v9"))
	c.rollOn(1)
	c.nodes[1].m.maybeClean(tp0, c.log(1))
	if cl := c.partition().Clean; cl == nil || cl.UpTo != 10 {
		t.Fatalf("first cleaning %+v, want one up to the open transaction at 10", cl)
	}
	c.waitGeneration(1)

	lp = c.nodes[1].m.Leader(tp0)
	epoch, release, err = lp.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	off, err := lp.log.AppendMarker(42, 0, 0, false, epoch)
	release(1)
	if err != nil || off != 12 {
		t.Fatalf("ABORT at %d, %v; want 12", off, err)
	}
	for _, k := range []string{"k2", "k3", "k4", "k1"} { // 13..16
		c.produceKV(1, k, []byte("v9"))
	}
	c.rollOn(1)
	// The first check may merge the cleaned segments instead.
	c.eventually("the second cleaning proposed", func() bool {
		c.reconcileAll()
		c.nodes[1].m.maybeClean(tp0, c.log(1))
		return c.partition().Clean != nil
	})
	if cl := c.partition().Clean; cl == nil || cl.UpTo != 17 || cl.Generation != 2 {
		t.Fatalf("second cleaning %+v, want generation 2 up to 17", cl)
	}
	c.waitGeneration(2)
	want := []kv{{5, "k0", "v1"}, {13, "k2", "v9"}, {14, "k3", "v9"}, {15, "k4", "v9"}, {16, "k1", "v9"}}
	for id := range c.nodes {
		got, markers := c.dataRecords(id)
		if !slices.Equal(got, want) || markers != 1 {
			t.Fatalf("node %d: records %v and %d markers; want %v and 1", id, got, markers, want)
		}
		l := c.log(id)
		if open := l.OpenTransactions(); len(open) != 0 {
			t.Fatalf("node %d: open transactions %v", id, open)
		}
		if ab, err := l.AbortedTransactions(0, 17); err != nil || !slices.Equal(ab, []storage.AbortedTxn{{ProducerID: 42, FirstOffset: 12}}) {
			t.Fatalf("node %d: aborted transactions %v, %v", id, ab, err)
		}
	}
	if !c.sameBytes(1, 2) || !c.sameBytes(1, 3) {
		t.Fatal("replicas differ after the cleaning")
	}
	if lso, hw := c.log(1).LastStableOffset(), c.log(1).HighWatermark(); lso != hw {
		t.Fatalf("leader LSO %d, HW %d", lso, hw)
	}
}
