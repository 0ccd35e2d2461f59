package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeTransactions 0: each id is described by its coordinator when
// this node is it, else answered NOT_COORDINATOR (clients send each id to
// its coordinator, found with FindCoordinator key type 1). The state is
// the id's last committed one; it never waits for a Persist.
func apiDescribeTransactions() api {
	return api{key: kmsg.DescribeTransactions, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeTransactionsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
		for _, id := range req.TransactionalIDs {
			one := *req
			one.TransactionalIDs = []string{id}
			resp.TransactionStates = append(resp.TransactionStates, b.txnc.coordinatorFor(id).DescribeTransactions(rc.ctx(), &one).TransactionStates...)
		}
		return resp, nil
	}}
}
