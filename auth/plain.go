package auth

import (
	"bytes"
	"context"
	"unicode/utf8"
)

// PlainMessage is a parsed SASL PLAIN message (RFC 4616).
type PlainMessage struct {
	AuthzID, User, Password string
}

// ParsePlain parses authzid NUL authcid NUL passwd. As Kafka's
// PlainSaslServer, the user and password must not be empty and the
// authorization id must be empty or equal to the user.
func ParsePlain(msg []byte) (PlainMessage, error) {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 {
		return PlainMessage{}, fail("PLAIN message has %d NUL-separated fields, want 3", len(parts))
	}
	for _, p := range parts {
		if !utf8.Valid(p) {
			return PlainMessage{}, fail("PLAIN message is not UTF-8")
		}
	}
	m := PlainMessage{AuthzID: string(parts[0]), User: string(parts[1]), Password: string(parts[2])}
	switch {
	case m.User == "":
		return PlainMessage{}, fail("PLAIN user name is empty")
	case m.Password == "":
		return PlainMessage{}, fail("PLAIN password is empty")
	case m.AuthzID != "" && m.AuthzID != m.User:
		return PlainMessage{}, fail("authorization id %q differs from user %q", m.AuthzID, m.User)
	}
	return m, nil
}

// CheckPlain authenticates a PLAIN message against the user's SCRAM
// credentials: the strongest mechanism the user has a credential for
// decides (no password-equivalent is stored for PLAIN). It returns the
// user name. The PBKDF2 it costs runs under gate (nil: unbounded),
// waiting for a turn until ctx ends; that error does not wrap
// ErrAuthentication.
func CheckPlain(ctx context.Context, msg []byte, lookup CredentialLookup, gate *HashGate) (string, error) {
	m, err := ParsePlain(msg)
	if err != nil {
		return "", err
	}
	for _, mech := range ScramMechanisms() {
		cred, ok := lookup(m.User, mech)
		if !ok {
			continue
		}
		var match bool
		if err := gate.Do(ctx, func() { match = cred.VerifyPassword(mech, m.Password) }); err != nil {
			return "", err
		}
		if !match {
			return "", fail("invalid credentials")
		}
		return m.User, nil
	}
	// An unknown user costs the same PBKDF2 as a wrong password, so
	// that the answer's timing does not tell which users exist.
	dummy := ScramCredential{Salt: []byte("tusk-unknown-user"), Iterations: MinScramIterations}
	if err := gate.Do(ctx, func() { dummy.VerifyPassword(MechanismScramSHA512, m.Password) }); err != nil {
		return "", err
	}
	return "", fail("invalid credentials")
}
