package auth

import (
	"fmt"
	"strings"
)

// Principal is who a connection acts as: Kafka's KafkaPrincipal, a type
// and a name, written "User:alice".
type Principal struct {
	Type, Name string
}

// PrincipalUser is the type of every principal Tusk authenticates.
const PrincipalUser = "User"

// Anonymous is the principal of a connection that did not authenticate
// (a PLAINTEXT listener, or SSL without a client certificate).
var Anonymous = Principal{Type: PrincipalUser, Name: "ANONYMOUS"}

// User is the principal of a SASL user or a certificate subject.
func User(name string) Principal { return Principal{Type: PrincipalUser, Name: name} }

// String is Kafka's form, "User:alice".
func (p Principal) String() string { return p.Type + ":" + p.Name }

// ParsePrincipal parses "Type:name" (the name may contain colons, as a
// certificate's distinguished name does not, but Kafka allows).
func ParsePrincipal(s string) (Principal, error) {
	t, n, ok := strings.Cut(s, ":")
	if !ok || t == "" || n == "" {
		return Principal{}, fmt.Errorf("auth: principal %q is not Type:name", s)
	}
	return Principal{Type: t, Name: n}, nil
}

// ParsePrincipals parses a super.users list, "User:a;User:b".
func ParsePrincipals(s string) ([]Principal, error) {
	var out []Principal
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := ParsePrincipal(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
