package metadata

import (
	"fmt"
	"testing"
	"time"
)

// TestRaftFollowerBackCatchesUpAtOnce: a follower cut off for 3 s, as a
// node killed and restarted, gets the entries it missed within a second of
// coming back. Without retryTransport the leader's replication to it had
// backed off to a 5.12 s sleep by then, so it waited about 2 s (up to
// 10.24 s after longer outages).
func TestRaftFollowerBackCatchesUpAtOnce(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader()
	f := c.followers(leader.id)[0]
	c.partition(f.id)
	cut := time.Now()
	if err := leader.store.Apply(ctxT(t, 10*time.Second), InitCluster{ClusterID: "back"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cut.Add(3 * time.Second))) // the outage's length, not a synchronization
	c.heal(f.id)
	healed := time.Now()
	eventually(t, 15*time.Second, fmt.Sprintf("follower %d learns the cluster id", f.id), func() error {
		if id := f.store.FSM().ClusterID(); id != "back" {
			return fmt.Errorf("cluster id %q", id)
		}
		return nil
	})
	if d := time.Since(healed); d > time.Second {
		t.Fatalf("follower %d caught up %v after it came back, want ≤ 1s", f.id, d.Round(time.Millisecond))
	} else {
		t.Logf("follower %d caught up %v after it came back", f.id, d.Round(time.Millisecond))
	}
}
