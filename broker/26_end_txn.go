package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// EndTxn 0-3 (v4+ belong to transaction.version 2, never advertised). The
// transactional id's coordinator answers once PrepareCommit/PrepareAbort
// is replicated; it then writes the markers (WriteTxnMarkers to each
// partition's leader) and Complete* in the background. Coordinator
// requests run in connection order (conn.go: inGroupOrder).
func apiEndTxn() api {
	return api{key: kmsg.EndTxn, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.EndTxnRequest)
		if code := rc.txnDenied(auth.OpWrite, req.TransactionalID); code != 0 { // WRITE on the transactional id
			resp := req.ResponseKind().(*kmsg.EndTxnResponse)
			resp.ErrorCode = code
			return resp, nil
		}
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.txnc.coordinatorFor(req.TransactionalID).EndTxn(rc.ctx(), req)
		})
	}}
}
