package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// AddPartitionsToTxn 0-3 (v4+, KIP-890's batched and verify-only form, is
// not offered: transaction.version 2 is never advertised). The
// transactional id's coordinator answers (docs/transactions.md);
// coordinator requests run in connection order (conn.go: inGroupOrder).
func apiAddPartitionsToTxn() api {
	return api{key: kmsg.AddPartitionsToTxn, min: 0, max: 3, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.AddPartitionsToTxnRequest)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.txnc.coordinatorFor(req.TransactionalID).AddPartitionsToTxn(rc.ctx(), req)
		})
	}}
}
