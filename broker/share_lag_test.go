package broker

import (
	"testing"

	"github.com/tuskdb/tusk/share"
)

func TestDeliveryComplete(t *testing.T) {
	batches := []share.StateBatch{
		{First: 0, Last: 4, State: share.Acknowledged}, // 3-4 at or above the start
		{First: 5, Last: 5, State: share.Available, DeliveryCount: 2},
		{First: 6, Last: 8, State: share.Archived},
		{First: 9, Last: 9, State: share.Acquired, DeliveryCount: 1},
		{First: 10, Last: 11, State: share.Acknowledged},
	}
	for _, c := range []struct {
		start, want int64
	}{{0, 10}, {3, 7}, {5, 5}, {7, 4}, {12, 0}} {
		if got := deliveryComplete(c.start, batches); got != c.want {
			t.Errorf("deliveryComplete(start %d) = %d, want %d", c.start, got, c.want)
		}
	}
}
