package groups

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// staged is a KIP-848 or KIP-932 group's state and what one request does
// to it (docs/groups-next.md): the state before the request's first
// change, put back when the request fails or its records do not persist,
// and the records the request emitted, persisted together before the
// answer. ConsumerGroup and ShareGroup embed it; their mu guards it.
type staged[S comparable, R any] struct {
	s    S
	undo S // the state before the request's first change; zero while nothing changed
	out  []R
	// clone is a deep copy of a state; persist stores a request's records
	// (the group's persister).
	clone   func(S) S
	persist func(context.Context, []R) error
}

// touch is called before every change of s within a request.
func (st *staged[S, R]) touch() {
	var none S
	if st.undo == none {
		st.undo = st.clone(st.s)
	}
}

// finish ends a request that answers code: a failed one's changes are
// dropped, a successful one is committed. It returns the code to answer.
func (st *staged[S, R]) finish(ctx context.Context, code int16) int16 {
	if code == 0 {
		return st.commit(ctx)
	}
	var none S
	if st.undo != none {
		st.s = st.undo
	}
	st.out, st.undo = nil, none
	return code
}

// commit persists the request's records; on failure it restores the
// state from before the request. It returns the error code to answer:
// the persister's (a *kerr.Error) or COORDINATOR_NOT_AVAILABLE.
func (st *staged[S, R]) commit(ctx context.Context) int16 {
	var none S
	recs, undo := st.out, st.undo
	st.out, st.undo = nil, none
	if len(recs) == 0 {
		return 0
	}
	if err := st.persist(ctx, recs); err != nil {
		if undo != none {
			st.s = undo
		}
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return ke.Code
		}
		return kerr.CoordinatorNotAvailable.Code
	}
	return 0
}

// sortedKeys is m's keys in order (a group's member ids).
func sortedKeys[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
