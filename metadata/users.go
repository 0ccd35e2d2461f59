package metadata

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// SASL/SCRAM users (docs/security.md): per user and mechanism the salt,
// StoredKey, ServerKey and iteration count of RFC 5802, never anything
// password-equivalent. The node that proposes a change computes the keys;
// the password never enters the log.

// SCRAM mechanisms a credential may be stored for (Kafka's names).
const (
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Limits of a stored SCRAM credential.
const (
	MinScramIterations = 4096
	MaxScramIterations = 16384
	maxScramSalt       = 1024
	maxUserName        = 1024
)

// scramKeySize is the StoredKey and ServerKey length of a mechanism (its
// hash's size), 0 for one Tusk does not store.
func scramKeySize(mech string) int {
	switch mech {
	case ScramSHA256:
		return 32
	case ScramSHA512:
		return 64
	}
	return 0
}

// ScramCredential is one user's credential for one mechanism.
type ScramCredential struct {
	Salt       []byte `json:"salt"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
	Iterations int    `json:"iterations"`
}

func (c ScramCredential) clone() ScramCredential {
	return ScramCredential{Salt: bytes.Clone(c.Salt), StoredKey: bytes.Clone(c.StoredKey), ServerKey: bytes.Clone(c.ServerKey), Iterations: c.Iterations}
}

// ValidateUserName checks a SASL user name: not empty, UTF-8, at most
// 1,024 bytes, without NUL (which PLAIN cannot carry) or other control
// characters.
func ValidateUserName(name string) error {
	if name == "" {
		return errors.New("user name is empty")
	}
	if len(name) > maxUserName {
		return fmt.Errorf("user name of %d bytes, above %d", len(name), maxUserName)
	}
	if !utf8.ValidString(name) {
		return errors.New("user name is not UTF-8")
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("user name %q contains a control character", name)
	}
	return nil
}

// ValidateScramCredential checks a credential of a mechanism: a known
// mechanism, iterations in [4096, 16384], a salt of 1 to 1,024 bytes and
// keys of the hash's size.
func ValidateScramCredential(mech string, c ScramCredential) error {
	n := scramKeySize(mech)
	switch {
	case n == 0:
		return fmt.Errorf("unknown SCRAM mechanism %q", mech)
	case c.Iterations < MinScramIterations || c.Iterations > MaxScramIterations:
		return fmt.Errorf("%s iterations %d not in [%d, %d]", mech, c.Iterations, MinScramIterations, MaxScramIterations)
	case len(c.Salt) == 0 || len(c.Salt) > maxScramSalt:
		return fmt.Errorf("%s salt of %d bytes, want 1 to %d", mech, len(c.Salt), maxScramSalt)
	case len(c.StoredKey) != n || len(c.ServerKey) != n:
		return fmt.Errorf("%s keys of %d and %d bytes, want %d", mech, len(c.StoredKey), len(c.ServerKey), n)
	}
	return nil
}

// ScramUpsert sets one user's credential for one mechanism.
type ScramUpsert struct {
	User       string          `json:"user"`
	Mechanism  string          `json:"mechanism"`
	Credential ScramCredential `json:"credential"`
}

// ScramDeletion removes one user's credential for one mechanism (nothing
// if there is none).
type ScramDeletion struct {
	User      string `json:"user"`
	Mechanism string `json:"mechanism"`
}

// AlterScramCredentials applies deletions, then upserts. A user left
// without credentials is gone.
type AlterScramCredentials struct {
	Upserts   []ScramUpsert   `json:"upserts,omitempty"`
	Deletions []ScramDeletion `json:"deletions,omitempty"`
}

func (AlterScramCredentials) kind() string { return "alter_scram_credentials" }

func (c AlterScramCredentials) validate() error {
	if len(c.Upserts) == 0 && len(c.Deletions) == 0 {
		return errors.New("no credential changes")
	}
	seen := map[[2]string]bool{}
	check := func(user, mech string) error {
		if err := ValidateUserName(user); err != nil {
			return err
		}
		if scramKeySize(mech) == 0 {
			return fmt.Errorf("unknown SCRAM mechanism %q", mech)
		}
		k := [2]string{user, mech}
		if seen[k] {
			return fmt.Errorf("user %q %s changed twice", user, mech)
		}
		seen[k] = true
		return nil
	}
	for _, d := range c.Deletions {
		if err := check(d.User, d.Mechanism); err != nil {
			return err
		}
	}
	for _, u := range c.Upserts {
		if err := check(u.User, u.Mechanism); err != nil {
			return err
		}
		if err := ValidateScramCredential(u.Mechanism, u.Credential); err != nil {
			return fmt.Errorf("user %q: %w", u.User, err)
		}
	}
	return nil
}

func (c AlterScramCredentials) apply(st *state) error {
	for _, d := range c.Deletions {
		st.deleteCredential(d.User, d.Mechanism)
	}
	for _, u := range c.Upserts {
		st.setCredential(u.User, u.Mechanism, u.Credential)
	}
	return nil
}

func (st *state) deleteCredential(user, mech string) {
	creds := st.Users[user]
	delete(creds, mech)
	if len(creds) == 0 {
		delete(st.Users, user)
	}
}

func (st *state) setCredential(user, mech string, c ScramCredential) {
	if st.Users == nil {
		st.Users = map[string]map[string]ScramCredential{}
	}
	if st.Users[user] == nil {
		st.Users[user] = map[string]ScramCredential{}
	}
	st.Users[user][mech] = c.clone()
}

// BootstrapUsers creates the bootstrap users file's credentials once: it
// applies only while the cluster never had them applied, and sets that
// flag forever, so a user an admin deleted later never returns. A
// credential an admin made before it is kept.
type BootstrapUsers struct {
	Users []ScramUpsert `json:"users"`
}

func (BootstrapUsers) kind() string { return "bootstrap_users" }

func (c BootstrapUsers) validate() error {
	if len(c.Users) == 0 {
		return nil // sets the flag alone
	}
	return AlterScramCredentials{Upserts: c.Users}.validate()
}

func (c BootstrapUsers) apply(st *state) error {
	if st.UsersBootstrapped {
		return fmt.Errorf("%w: bootstrap users were applied before", ErrPreconditionFailed)
	}
	for _, u := range c.Users {
		if _, ok := st.Users[u.User][u.Mechanism]; !ok {
			st.setCredential(u.User, u.Mechanism, u.Credential)
		}
	}
	st.UsersBootstrapped = true
	return nil
}

// ScramCredential returns a user's credential for a mechanism.
func (f *FSM) ScramCredential(user, mech string) (ScramCredential, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.st.Users[user][mech]
	if !ok {
		return ScramCredential{}, false
	}
	return c.clone(), true
}

// UserScram is what DescribeUserScramCredentials shows of a credential.
type UserScram struct {
	Mechanism  string
	Iterations int
}

// ScramUsers returns every user's mechanisms and iterations, users sorted
// by name and each user's mechanisms by name.
func (f *FSM) ScramUsers() map[string][]UserScram {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string][]UserScram, len(f.st.Users))
	for user, creds := range f.st.Users {
		list := make([]UserScram, 0, len(creds))
		for mech, c := range creds {
			list = append(list, UserScram{Mechanism: mech, Iterations: c.Iterations})
		}
		slices.SortFunc(list, func(a, b UserScram) int { return strings.Compare(a.Mechanism, b.Mechanism) })
		out[user] = list
	}
	return out
}

// UsersBootstrapped reports whether BootstrapUsers was applied.
func (f *FSM) UsersBootstrapped() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.UsersBootstrapped
}
