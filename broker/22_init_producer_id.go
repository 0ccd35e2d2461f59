package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// InitProducerId 0-4 for idempotent producers. Transactional ids are
// refused: transactions are not implemented.
func apiInitProducerID() api {
	return api{key: kmsg.InitProducerID, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleInitProducerID(rc, rc.req.(*kmsg.InitProducerIDRequest)), nil
	}}
}

func (b *Broker) handleInitProducerID(rc *request, req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := kmsg.NewPtrInitProducerIDResponse()
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp
	}
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
