package broker

import (
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/txn"
)

// ListTransactions 0-2: the transactions of the coordinators on this node
// (as Kafka, each broker lists its own; admin clients ask every broker),
// sorted by id, with the state, producer id, duration (v1) and id pattern
// (v2) filters. Unknown state names are echoed in UnknownStateFilters.
func apiListTransactions() api {
	return api{key: kmsg.ListTransactions, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ListTransactionsRequest)
		resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
		known := map[string]bool{}
		for s := txn.StateEmpty; s <= txn.StatePrepareEpochFence; s++ {
			known[s.String()] = true
		}
		for _, f := range req.StateFilters {
			if !known[f] && !slices.Contains(resp.UnknownStateFilters, f) {
				resp.UnknownStateFilters = append(resp.UnknownStateFilters, f)
			}
		}
		for _, c := range b.txnc.local() {
			r := c.ListTransactions(rc.ctx(), req)
			if r.ErrorCode != 0 {
				resp.ErrorCode = r.ErrorCode
				resp.TransactionStates = nil
				break
			}
			for _, s := range r.TransactionStates {
				if rc.allowed(auth.OpDescribe, auth.ResourceTransactionalID, s.TransactionalID) { // listed only if describable
					resp.TransactionStates = append(resp.TransactionStates, s)
				}
			}
		}
		sort.Slice(resp.TransactionStates, func(i, j int) bool {
			return resp.TransactionStates[i].TransactionalID < resp.TransactionStates[j].TransactionalID
		})
		return resp, nil
	}}
}
