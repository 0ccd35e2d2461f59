package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// FindCoordinator 0-4 (DESCRIBE on the group or transactional id). A group's coordinator (key type 0) is the leader of
// its __consumer_offsets partition, a transactional id's (key type 1, v1+)
// the leader of its __transaction_state partition (docs/transactions.md);
// the first lookup of each kind creates its topic, as Kafka does. It is
// advertised from v0 because librdkafka 2.0.2 enables LZ4 only when it sees
// FindCoordinator v0 (docs/architecture.md, "Kafka compatibility").
// A lookup whose coordinator's partition is failing over is answered once
// the failover is done (waitCoordinatorFailovers), off the connection's
// read goroutine.
func apiFindCoordinator() api {
	return api{key: kmsg.FindCoordinator, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.FindCoordinatorRequest)
		if !b.coordinatorFailingOver(req) {
			return b.handleFindCoordinator(rc, req), nil
		}
		return nil, func() kmsg.Response {
			b.waitCoordinatorFailovers(rc.ctx(), req)
			return b.handleFindCoordinator(rc, req)
		}
	}}
}

// coordinatorFailingOver reports whether the partition holding the
// coordinator of one of req's keys is led by a fenced node and has a live
// replica, so the controller's failover is about to open its next segment
// on a live node (docs/architecture.md, "Rotation and failover").
func (b *Broker) coordinatorFailingOver(req *kmsg.FindCoordinatorRequest) bool {
	var name string
	switch req.CoordinatorType {
	case 0:
		name = offsetsTopic
	case 1:
		name = txnTopic
	default:
		return false
	}
	fsm := b.store.FSM()
	t, ok := fsm.Topic(name)
	if !ok || t.Partitions < 1 || int(t.Partitions) > len(t.Parts) {
		return false
	}
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		seg := t.Parts[groupPartition(key, t.Partitions)].Active()
		if br, ok := fsm.Broker(seg.Leader); !ok || br.State != metadata.BrokerFenced {
			continue
		}
		for _, r := range seg.Replicas {
			if br, ok := fsm.Broker(r); ok && r != seg.Leader && br.State == metadata.BrokerAlive {
				return true
			}
		}
	}
	return false
}

// waitCoordinatorFailovers waits, at most twice lease.timeout (the budget
// of each failover phase), until no key of req has its coordinator's
// partition failing over. Kafka moves a partition's leadership in the step
// that fences its leader, so clients never see COORDINATOR_NOT_AVAILABLE
// for a partition with a live replica, and not all of them retry it: kgo
// fails a transaction's produce when the coordinator lookup of its
// AddPartitionsToTxn gets it (docs/transactions.md, "Coordinator
// hosting"). A failover normally ends well within the bound; past it the
// lookup is answered as things stand. The wait also ends when Close
// begins: a request in flight holds the shutdown until it is answered,
// and a failover needs this node's peers, which may be stopping too.
func (b *Broker) waitCoordinatorFailovers(ctx context.Context, req *kmsg.FindCoordinatorRequest) {
	ctx, cancel := context.WithTimeout(ctx, 2*b.cfg.Lease.Timeout)
	defer cancel()
	for {
		changed := b.store.FSM().Changed()
		if !b.coordinatorFailingOver(req) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-b.shutdown:
			return
		}
	}
}

func (b *Broker) handleFindCoordinator(rc *request, req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	// answer finds the node leading the key's __consumer_offsets or
	// __transaction_state partition, creating the topic on first use.
	answer := func(key string) (code int16, msg *string, node int32, host string, port int32) {
		var ensure func(context.Context) (metadata.Topic, error)
		var denied int16
		switch {
		case req.CoordinatorType == 0:
			ensure = b.ensureOffsetsTopic
			denied = rc.groupDenied(auth.OpDescribe, key)
		case req.CoordinatorType == 1:
			ensure = b.ensureTxnTopic
			denied = rc.txnDenied(auth.OpDescribe, key)
		default:
			return kerr.InvalidRequest.Code, kmsg.StringPtr("unknown coordinator key type"), -1, "", -1
		}
		if denied != 0 {
			return denied, nil, -1, "", -1
		}
		if key == "" {
			return kerr.InvalidRequest.Code, kmsg.StringPtr("empty coordinator key"), -1, "", -1
		}
		t, err := ensure(rc.ctx())
		if err != nil {
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr(err.Error()), -1, "", -1
		}
		leader, _ := t.Leader(groupPartition(key, t.Partitions))
		br, ok := b.store.FSM().Broker(leader)
		if !ok || br.State != metadata.BrokerAlive {
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("the coordinator is not available"), -1, "", -1
		}
		var reachable bool
		if host, port, reachable = b.endpoint(br, rc.conn); !reachable {
			return kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("the coordinator has no listener " + rc.conn.listener.name), -1, "", -1
		}
		return 0, nil, leader, host, port
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.ErrorCode, c.ErrorMessage, c.NodeID, c.Host, c.Port = answer(key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = answer(req.CoordinatorKey)
	return resp
}
