package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// AddPartitionsToTxn 0-3 (v4+, KIP-890's batched and verify-only form, is
// not offered: transaction.version 2 is never advertised). The
// transactional id's coordinator answers (docs/transactions.md);
// coordinator requests run in connection order (conn.go: inGroupOrder).
func apiAddPartitionsToTxn() api {
	return api{key: kmsg.AddPartitionsToTxn, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.AddPartitionsToTxnRequest)
		if resp := addPartitionsDenied(rc, req); resp != nil {
			return resp, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.txnc.coordinatorFor(req.TransactionalID).AddPartitionsToTxn(rc.ctx(), req)
		})
	}}
}

// addPartitionsDenied answers an AddPartitionsToTxn the principal may not
// send, as Kafka does: without WRITE on the transactional id every
// partition is TRANSACTIONAL_ID_AUTHORIZATION_FAILED; without WRITE on a
// topic its partitions are TOPIC_AUTHORIZATION_FAILED and the others
// OPERATION_NOT_ATTEMPTED. nil when everything is allowed.
func addPartitionsDenied(rc *request, req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	txnCode := rc.txnDenied(auth.OpWrite, req.TransactionalID)
	codes := make([]int16, len(req.Topics))
	fail := txnCode != 0
	for i, t := range req.Topics {
		codes[i] = txnCode
		if codes[i] == 0 {
			codes[i] = rc.topicDenied(auth.OpWrite, t.Topic)
			fail = fail || codes[i] != 0
		}
	}
	if !fail {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	for i, t := range req.Topics {
		code := codes[i]
		if code == 0 {
			code = kerr.OperationNotAttempted.Code
		}
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
