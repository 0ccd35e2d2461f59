package metadata

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tuskdb/tusk/auth"
)

// ACLs (Kafka's CreateAcls/DeleteAcls) live in the state, sorted and
// deduplicated (auth.SortACLs), so every node authorizes alike
// (docs/security.md). The slice is replaced, never changed in place, and
// the FSM keeps an index of it (auth.ACLSet) for the authorizer.

// maxACLsPerCommand bounds one CreateACLs or DeleteACLs command.
const maxACLsPerCommand = 10000

// CreateACLs adds ACLs; one already present is not added twice.
type CreateACLs struct {
	ACLs []auth.ACL `json:"acls"`
}

func (CreateACLs) kind() string { return "create_acls" }

func (c CreateACLs) validate() error {
	if len(c.ACLs) == 0 {
		return errors.New("no ACLs to create")
	}
	if len(c.ACLs) > maxACLsPerCommand {
		return fmt.Errorf("%d ACLs in one command, above %d", len(c.ACLs), maxACLsPerCommand)
	}
	for _, a := range c.ACLs {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("acl %v: %w", a, err)
		}
	}
	return nil
}

func (c CreateACLs) apply(st *state) error {
	next := make([]auth.ACL, 0, len(st.ACLs)+len(c.ACLs))
	next = append(append(next, st.ACLs...), c.ACLs...)
	st.setACLs(auth.SortACLs(next))
	return nil
}

// DeleteACLs deletes every ACL that one of the filters matches.
type DeleteACLs struct {
	Filters []auth.Filter `json:"filters"`
}

func (DeleteACLs) kind() string { return "delete_acls" }

func (c DeleteACLs) validate() error {
	if len(c.Filters) == 0 {
		return errors.New("no ACL filters")
	}
	if len(c.Filters) > maxACLsPerCommand {
		return fmt.Errorf("%d ACL filters in one command, above %d", len(c.Filters), maxACLsPerCommand)
	}
	for i, f := range c.Filters {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("filter %d: %w", i, err)
		}
	}
	return nil
}

func (c DeleteACLs) apply(st *state) error {
	next := slices.DeleteFunc(slices.Clone(st.ACLs), func(a auth.ACL) bool {
		return slices.ContainsFunc(c.Filters, func(f auth.Filter) bool { return f.Matches(a) })
	})
	if len(next) != len(st.ACLs) {
		st.setACLs(next)
	}
	return nil
}

// setACLs replaces the ACLs (sorted and deduplicated) and their index.
func (st *state) setACLs(acls []auth.ACL) {
	if len(acls) == 0 {
		acls = nil
	}
	st.ACLs = acls
	st.aclSet = auth.NewACLSet(acls)
}

// ACLs returns every ACL, sorted (auth.CompareACLs).
func (f *FSM) ACLs() []auth.ACL {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.st.ACLs)
}

// ACLSet returns the current ACLs indexed for authorization; it is
// immutable, and a later change makes a new one.
func (f *FSM) ACLSet() *auth.ACLSet {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.aclSet
}
