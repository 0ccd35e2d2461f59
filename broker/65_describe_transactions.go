package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// DescribeTransactions 0: each id is described by its coordinator when
// this node is it, else answered NOT_COORDINATOR (clients send each id to
// its coordinator, found with FindCoordinator key type 1). The state is
// the id's last committed one; it never waits for a Persist.
func apiDescribeTransactions() api {
	return api{key: kmsg.DescribeTransactions, min: 0, max: 0, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.DescribeTransactionsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
		for _, id := range req.TransactionalIDs {
			// DESCRIBE on the id, else TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
			// only the partitions of topics the principal may describe
			// are listed.
			if code := rc.txnDenied(auth.OpDescribe, id); code != 0 {
				s := kmsg.NewDescribeTransactionsResponseTransactionState()
				s.TransactionalID, s.ErrorCode = id, code
				s.ProducerID, s.ProducerEpoch = -1, -1
				resp.TransactionStates = append(resp.TransactionStates, s)
				continue
			}
			one := *req
			one.TransactionalIDs = []string{id}
			states := b.txnc.coordinatorFor(id).DescribeTransactions(rc.ctx(), &one).TransactionStates
			for i := range states {
				states[i].Topics = slices.DeleteFunc(states[i].Topics, func(t kmsg.DescribeTransactionsResponseTransactionStateTopic) bool {
					return !rc.allowed(auth.OpDescribe, auth.ResourceTopic, t.Topic)
				})
			}
			resp.TransactionStates = append(resp.TransactionStates, states...)
		}
		return resp, nil
	}}
}
