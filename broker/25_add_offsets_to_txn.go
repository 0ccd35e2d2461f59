package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// AddOffsetsToTxn 0-3: the group's __consumer_offsets partition joins the
// transaction (its TxnOffsetCommit follows). The transactional id's
// coordinator answers; coordinator requests run in connection order
// (conn.go: inGroupOrder).
func apiAddOffsetsToTxn() api {
	return api{key: kmsg.AddOffsetsToTxn, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.AddOffsetsToTxnRequest)
		// WRITE on the transactional id, READ on the group.
		denied := rc.txnDenied(auth.OpWrite, req.TransactionalID)
		if denied == 0 {
			denied = rc.groupDenied(auth.OpRead, req.Group)
		}
		if denied != 0 {
			resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
			resp.ErrorCode = denied
			return resp, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.txnc.coordinatorFor(req.TransactionalID).AddOffsetsToTxn(rc.ctx(), req)
		})
	}}
}
