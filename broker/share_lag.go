package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/metadata"
)

// DescribeShareGroupOffsets' lag needs each partition's high watermark,
// which only the partition's leader knows: the node answering asks the
// leaders over the internal listener (docs/groups-next.md, "Broker APIs").

// pathHighWatermarks is POST /v1/high-watermarks: the high watermarks of
// partitions the node leads.
const pathHighWatermarks = "/v1/high-watermarks"

type hwmPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

type hwmRequest struct {
	Partitions []hwmPartition `json:"partitions"`
}

// hwmResponse has one high watermark per requested partition, -1 where
// the node does not lead it (or has not opened its log yet).
type hwmResponse struct {
	HWMs []int64 `json:"hwms"`
}

func (b *Broker) shareLagRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathHighWatermarks, rpc.Handler(func(_ context.Context, body []byte) (any, error) {
		var req hwmRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: high-watermarks: %v", metadata.ErrInvalidCommand, err)
		}
		out := hwmResponse{HWMs: make([]int64, len(req.Partitions))}
		for i, p := range req.Partitions {
			out.HWMs[i] = b.localHighWatermark(p)
		}
		return out, nil
	}))
}

func (b *Broker) localHighWatermark(p hwmPartition) int64 {
	l, code, _ := b.partitionLogEpoch(p.Topic, p.Partition)
	if code != 0 {
		return -1
	}
	return l.HighWatermark()
}

// highWatermarks returns each partition's high watermark as its leader
// sees it, -1 where it cannot be had (no leader, the leader unreachable
// within 5 s): one call per leader.
func (b *Broker) highWatermarks(ctx context.Context, ps []hwmPartition) []int64 {
	out := make([]int64, len(ps))
	byLeader := map[int32][]int{}
	fsm := b.store.FSM()
	for i, p := range ps {
		out[i] = -1
		leader, _, ok := fsm.PartitionLeader(p.Topic, p.Partition)
		switch {
		case !ok:
		case leader == b.cfg.NodeID:
			out[i] = b.localHighWatermark(p)
		default:
			byLeader[leader] = append(byLeader[leader], i)
		}
	}
	for leader, idx := range byLeader {
		br, ok := fsm.Broker(leader)
		if !ok || br.Internal == "" {
			continue
		}
		req := hwmRequest{Partitions: make([]hwmPartition, len(idx))}
		for k, i := range idx {
			req.Partitions[k] = ps[i]
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ans hwmResponse
		err := b.internalClient.Call(cctx, br.Internal, http.MethodPost, pathHighWatermarks, req, &ans)
		cancel()
		if err != nil || len(ans.HWMs) != len(idx) {
			b.log.Debug().Err(err).Int32("leader", leader).Msg("high watermarks for share lag")
			continue
		}
		for k, i := range idx {
			out[i] = ans.HWMs[k]
		}
	}
	return out
}
