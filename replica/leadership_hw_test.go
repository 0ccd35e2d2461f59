package replica

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/storage"
)

// TestHighWatermarkKnownAfterUncleanRestart: a leader restarted without a
// clean close (no high-watermark checkpoint, as after kill -9) still leads
// its segment, but its log's high watermark starts from the log start,
// below the 5 records acknowledged before: the leadership reports it not
// known until the followers fetched again, and known once it is back at 5.
// (ListOffsets answered 0 in that window before it checked.)
func TestHighWatermarkKnownAfterUncleanRestart(t *testing.T) {
	c := newCluster(t, 3, []int32{1, 2, 3})
	for i := range 5 {
		c.produce(1, i)
	}
	c.eventually("HW 5 everywhere", func() bool {
		return c.log(1).HighWatermark() == 5 && c.log(2).HighWatermark() == 5 && c.log(3).HighWatermark() == 5
	})
	if !c.nodes[1].m.Leader(tp0).HighWatermarkKnown() {
		t.Fatal("the leader's HW 5 is not known")
	}
	// Restart node 1 with its followers cut off, dropping the checkpoint
	// a clean close writes.
	c.tr.Disconnect(2)
	c.tr.Disconnect(3)
	n := c.nodes[1]
	n.m.Close()
	if err := n.eng.Close(); err != nil {
		t.Fatal(err)
	}
	removed := 0
	err := filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "high-watermark" {
			removed++
			return os.Remove(path)
		}
		return err
	})
	if err != nil || removed != 1 {
		t.Fatalf("remove the high-watermark checkpoint: %d removed, %v", removed, err)
	}
	eng, err := storage.Open(storage.Options{Dir: n.dir, Fsync: storage.FsyncNever, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	n.eng = eng
	n.m = New(testConfig(1, c.clock), c.meta, n.lease, c.tr, n, zerolog.Nop())
	c.tr.Connect(1, n.m)
	if r := n.reconcile("t")[0]; r != RoleLeader {
		t.Fatalf("restarted node 1 is %v, want the leader", r)
	}
	lp := n.m.Leader(tp0)
	if hw, leo := c.log(1).HighWatermark(), c.log(1).LogEndOffset(); hw != 0 || leo != 5 {
		t.Fatalf("after the restart: HW %d, LEO %d; want 0 and 5", hw, leo)
	}
	if lp.HighWatermarkKnown() {
		t.Fatal("HW 0 below 5 acknowledged records reported known")
	}
	c.tr.Reconnect(2)
	c.tr.Reconnect(3)
	c.eventually("HW 5 known again", func() bool { return lp.HighWatermarkKnown() && c.log(1).HighWatermark() == 5 })
}
