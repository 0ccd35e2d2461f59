package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// InitProducerId 0-4. Without a transactional id (idempotent producers)
// the id comes from this node's blocks. With one, the id's transaction
// coordinator answers (txn.Coordinator.InitProducerID: epoch bumps fence
// the previous producer, KIP-360 recovery); this node must lead the id's
// __transaction_state partition (else NOT_COORDINATOR), and an empty id is
// INVALID_REQUEST. Coordinator requests run in connection order (conn.go:
// inGroupOrder), since they wait for their records to be replicated.
func apiInitProducerID() api {
	return api{key: kmsg.InitProducerID, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.InitProducerIDRequest)
		// WRITE on the transactional id; without one (KIP-679),
		// IDEMPOTENT_WRITE on the cluster or WRITE on any topic.
		var denied int16
		switch {
		case req.TransactionalID != nil:
			denied = rc.txnDenied(auth.OpWrite, *req.TransactionalID)
		case !rc.allowedCluster(auth.OpIdempotentWrite) && !rc.allowedAny(auth.OpWrite, auth.ResourceTopic):
			denied = kerr.ClusterAuthorizationFailed.Code
		}
		if denied != 0 {
			resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
			resp.ProducerID, resp.ProducerEpoch, resp.ErrorCode = -1, -1, denied
			return resp, nil
		}
		if req.TransactionalID == nil {
			return b.handleInitProducerID(rc, req), nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			if *req.TransactionalID == "" {
				resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
				resp.ProducerID, resp.ProducerEpoch = -1, -1
				resp.ErrorCode = kerr.InvalidRequest.Code
				return resp
			}
			return b.txnc.coordinatorFor(*req.TransactionalID).InitProducerID(rc.ctx(), req)
		})
	}}
}

// handleInitProducerID answers an idempotent producer's InitProducerId.
func (b *Broker) handleInitProducerID(rc *request, req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := kmsg.NewPtrInitProducerIDResponse()
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	id, err := b.pids.next(rc.ctx())
	if err != nil {
		b.log.Error().Err(err).Msg("allocate producer id")
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}

// producerIDBlock is how many ids one metadata command reserves.
const producerIDBlock = 1000

// producerIDs hands out producer ids from blocks reserved in metadata, so
// an id is never reused across restarts.
type producerIDs struct {
	b *Broker

	mu        sync.Mutex
	nextID    int64
	blockEnd  int64
	haveBlock bool
}

func (p *producerIDs) next(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.haveBlock || p.nextID >= p.blockEnd {
		for attempt := 0; ; attempt++ {
			start := p.b.store.FSM().NextProducerID()
			err := p.b.store.Apply(ctx, metadata.AllocateProducerIDs{Expected: start, Count: producerIDBlock})
			if err == nil {
				p.nextID, p.blockEnd, p.haveBlock = start, start+producerIDBlock, true
				break
			}
			if !errors.Is(err, metadata.ErrPreconditionFailed) || attempt > 10 {
				return 0, fmt.Errorf("broker: reserve producer ids: %w", err)
			}
		}
	}
	id := p.nextID
	p.nextID++
	return id, nil
}
