package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SASL mechanism names (sasl.enabled.mechanisms).
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// Bounds of a SCRAM credential's iteration count (Kafka's: 4096 is its
// minimum, 16384 the most AlterUserScramCredentials accepts).
const (
	MinScramIterations = 4096
	MaxScramIterations = 16384
)

// ErrAuthentication is wrapped by every failed exchange: a bad proof, an
// unknown user, a malformed message. Its text is safe to send to the
// client (Kafka's SaslAuthenticate error message).
var ErrAuthentication = errors.New("authentication failed")

// ScramMechanisms lists the SCRAM mechanisms Tusk implements, strongest
// first (PLAIN checks passwords against the first one a user has).
func ScramMechanisms() []string { return []string{MechanismScramSHA512, MechanismScramSHA256} }

// IsScram reports whether mech is a SCRAM mechanism Tusk implements.
func IsScram(mech string) bool { return mech == MechanismScramSHA256 || mech == MechanismScramSHA512 }

// scramHash is the hash of a SCRAM mechanism.
func scramHash(mech string) (func() hash.Hash, error) {
	switch mech {
	case MechanismScramSHA256:
		return sha256.New, nil
	case MechanismScramSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("auth: unknown SCRAM mechanism %q", mech)
}

// ScramKeySize is the length of StoredKey and ServerKey for mech (the
// hash's size), 0 for an unknown mechanism.
func ScramKeySize(mech string) int {
	h, err := scramHash(mech)
	if err != nil {
		return 0
	}
	return h().Size()
}

// ScramCredential is what the server keeps of a password (RFC 5802 §3):
// nothing from which the password or a client proof could be made
// directly.
type ScramCredential struct {
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
	Iterations int
}

// PBKDF2 (RFC 5802's Hi) comes from the standard library's crypto/pbkdf2
// (Go 1.24+); golang.org/x/crypto/pbkdf2 is now a frozen wrapper of it,
// so Tusk needs no module for it.

// SaltPassword is RFC 5802's SaltedPassword, Hi(password, salt, i): what
// a client sends in AlterUserScramCredentials.
func SaltPassword(mech, password string, salt []byte, iterations int) ([]byte, error) {
	h, err := scramHash(mech)
	if err != nil {
		return nil, err
	}
	if iterations < 1 {
		return nil, fmt.Errorf("auth: %d iterations", iterations)
	}
	k, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return nil, fmt.Errorf("auth: salt password: %w", err)
	}
	return k, nil
}

// CredentialFromSalted derives the stored credential from a salted
// password (AlterUserScramCredentials' upsertion carries only that).
func CredentialFromSalted(mech string, salted, salt []byte, iterations int) (ScramCredential, error) {
	h, err := scramHash(mech)
	if err != nil {
		return ScramCredential{}, err
	}
	if len(salted) != h().Size() {
		return ScramCredential{}, fmt.Errorf("auth: %s salted password of %d bytes, want %d", mech, len(salted), h().Size())
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	stored := h()
	stored.Write(clientKey)
	return ScramCredential{
		Salt:       bytes.Clone(salt),
		StoredKey:  stored.Sum(nil),
		ServerKey:  hmacSum(h, salted, []byte("Server Key")),
		Iterations: iterations,
	}, nil
}

// NewScramCredential computes the credential of a password.
func NewScramCredential(mech, password string, salt []byte, iterations int) (ScramCredential, error) {
	salted, err := SaltPassword(mech, password, salt, iterations)
	if err != nil {
		return ScramCredential{}, err
	}
	return CredentialFromSalted(mech, salted, salt, iterations)
}

// VerifyPassword reports whether password matches the credential (PLAIN
// over stored SCRAM credentials). It costs one PBKDF2 of the credential's
// iterations.
func (c ScramCredential) VerifyPassword(mech, password string) bool {
	got, err := NewScramCredential(mech, password, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got.StoredKey, c.StoredKey) == 1
}

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// CredentialLookup finds a user's credential for a mechanism.
type CredentialLookup func(user, mech string) (ScramCredential, bool)

// ScramServer is the server side of one SCRAM exchange (RFC 5802, RFC
// 7677, with Kafka's rules: no channel binding, an authorization id only
// equal to the user, the tokenauth extension refused as delegation tokens
// are not implemented, and a client-final nonce that ends with the full
// nonce accepted, as librdkafka repeats its client nonce in front). It is
// pure: the caller supplies the credential lookup and the server nonce,
// and carries the messages.
type ScramServer struct {
	mech   string
	h      func() hash.Hash
	lookup CredentialLookup
	nonce  string // the server's part of the nonce

	step            int // 0: expects client-first, 1: client-final, 2: done
	user            string
	cred            ScramCredential
	known           bool
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	fullNonce       string
}

// NewScramServer starts an exchange. serverNonce must be printable ASCII
// without ',' (base64 of 18 or more random bytes, say).
func NewScramServer(mech string, lookup CredentialLookup, serverNonce string) (*ScramServer, error) {
	h, err := scramHash(mech)
	if err != nil {
		return nil, err
	}
	if !validNonce(serverNonce) {
		return nil, fmt.Errorf("auth: server nonce %q is not printable without ','", serverNonce)
	}
	return &ScramServer{mech: mech, h: h, lookup: lookup, nonce: serverNonce}, nil
}

// User is the user named in the client-first message ("" before it).
func (s *ScramServer) User() string { return s.user }

// Done reports whether the exchange completed successfully.
func (s *ScramServer) Done() bool { return s.step == 2 }

// Step consumes the client's next message and returns the server's
// answer: server-first after client-first, server-final after
// client-final (and done). Any error wraps ErrAuthentication and ends the
// exchange.
func (s *ScramServer) Step(msg []byte) (resp []byte, done bool, err error) {
	switch s.step {
	case 0:
		resp, err = s.clientFirst(msg)
		if err != nil {
			s.step = 3
			return nil, false, err
		}
		s.step = 1
		return resp, false, nil
	case 1:
		resp, err = s.clientFinal(msg)
		if err != nil {
			s.step = 3
			return nil, false, err
		}
		s.step = 2
		return resp, true, nil
	}
	return nil, false, fmt.Errorf("%w: the SCRAM exchange is over", ErrAuthentication)
}

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrAuthentication}, args...)...)
}

// ClientFirst is a parsed client-first-message.
type ClientFirst struct {
	// GS2Header is "n,," or "y,," with the authzid if any ("n,a=bob,").
	GS2Header string
	AuthzID   string
	User      string
	Nonce     string
	// Bare is client-first-message-bare (what the AuthMessage includes).
	Bare string
	// Extensions are the attributes after the nonce (Kafka's SCRAM
	// extensions, like tokenauth=true).
	Extensions map[string]string
}

// ParseClientFirst parses a client-first-message:
// gs2-cbind-flag "," [ "a=" authzid ] "," "n=" saslname "," "r=" nonce
// ["," extensions].
func ParseClientFirst(msg []byte) (ClientFirst, error) {
	if !utf8.Valid(msg) {
		return ClientFirst{}, fail("client-first is not UTF-8")
	}
	m := string(msg)
	flag, rest, ok := strings.Cut(m, ",")
	if !ok {
		return ClientFirst{}, fail("client-first without a GS2 header")
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return ClientFirst{}, fail("channel binding is not supported")
	default:
		return ClientFirst{}, fail("client-first has GS2 flag %q", flag)
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return ClientFirst{}, fail("client-first without an authorization field")
	}
	cf := ClientFirst{GS2Header: flag + "," + authz + ",", Bare: bare}
	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return ClientFirst{}, fail("client-first authorization field %q", authz)
		}
		name, err := unescapeSaslName(v)
		if err != nil {
			return ClientFirst{}, err
		}
		cf.AuthzID = name
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 {
		return ClientFirst{}, fail("client-first needs a user and a nonce")
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return ClientFirst{}, fail("mandatory extension m= is not supported")
	}
	v, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return ClientFirst{}, fail("client-first without n=")
	}
	name, err := unescapeSaslName(v)
	if err != nil {
		return ClientFirst{}, err
	}
	if name == "" {
		return ClientFirst{}, fail("empty user name")
	}
	cf.User = name
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || !validNonce(nonce) {
		return ClientFirst{}, fail("client-first nonce %q", attrs[1])
	}
	cf.Nonce = nonce
	for _, a := range attrs[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return ClientFirst{}, fail("client-first extension %q", a)
		}
		if cf.Extensions == nil {
			cf.Extensions = map[string]string{}
		}
		cf.Extensions[k] = v
	}
	return cf, nil
}

// unescapeSaslName undoes RFC 5802's "=2C" (',') and "=3D" ('=').
func unescapeSaslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fail("bad escape in name %q", s)
		}
		i += 2
	}
	return b.String(), nil
}

// validNonce: printable ASCII except ',' (RFC 5802), not empty.
func validNonce(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x21 || n[i] > 0x7e || n[i] == ',' {
			return false
		}
	}
	return true
}

func (s *ScramServer) clientFirst(msg []byte) ([]byte, error) {
	cf, err := ParseClientFirst(msg)
	if err != nil {
		return nil, err
	}
	if cf.AuthzID != "" && cf.AuthzID != cf.User {
		return nil, fail("authorization id %q differs from user %q", cf.AuthzID, cf.User)
	}
	if cf.Extensions["tokenauth"] == "true" {
		return nil, fail("delegation tokens are not supported")
	}
	s.user = cf.User
	s.cred, s.known = s.lookup(cf.User, s.mech)
	if !s.known || len(s.cred.StoredKey) != s.h().Size() || len(s.cred.ServerKey) != s.h().Size() {
		// Go on with a made-up credential so that an unknown user
		// fails at the proof, like a wrong password (RFC 5802 §9).
		s.known = false
		s.cred = ScramCredential{
			Salt:       hmacSum(s.h, []byte(s.nonce), []byte("salt:"+cf.User))[:16],
			StoredKey:  make([]byte, s.h().Size()),
			ServerKey:  make([]byte, s.h().Size()),
			Iterations: MinScramIterations,
		}
	}
	s.gs2Header = cf.GS2Header
	s.clientFirstBare = cf.Bare
	s.fullNonce = cf.Nonce + s.nonce
	s.serverFirst = "r=" + s.fullNonce + ",s=" + base64.StdEncoding.EncodeToString(s.cred.Salt) + ",i=" + strconv.Itoa(s.cred.Iterations)
	return []byte(s.serverFirst), nil
}

// ClientFinal is a parsed client-final-message.
type ClientFinal struct {
	ChannelBinding []byte // decoded c=
	Nonce          string
	Proof          []byte
	// WithoutProof is client-final-message-without-proof.
	WithoutProof string
}

// ParseClientFinal parses "c=" cbind "," "r=" nonce ["," extensions] ","
// "p=" proof.
func ParseClientFinal(msg []byte) (ClientFinal, error) {
	if !utf8.Valid(msg) {
		return ClientFinal{}, fail("client-final is not UTF-8")
	}
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return ClientFinal{}, fail("client-final without a proof")
	}
	cf := ClientFinal{WithoutProof: m[:i]}
	proof, err := base64.StdEncoding.Strict().DecodeString(m[i+3:])
	if err != nil || len(proof) == 0 {
		return ClientFinal{}, fail("client-final proof is not base64")
	}
	cf.Proof = proof
	attrs := strings.Split(cf.WithoutProof, ",")
	if len(attrs) < 2 {
		return ClientFinal{}, fail("client-final needs channel binding and nonce")
	}
	c, ok := strings.CutPrefix(attrs[0], "c=")
	if !ok {
		return ClientFinal{}, fail("client-final without c=")
	}
	cb, err := base64.StdEncoding.Strict().DecodeString(c)
	if err != nil {
		return ClientFinal{}, fail("client-final channel binding is not base64")
	}
	cf.ChannelBinding = cb
	r, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || !validNonce(r) {
		return ClientFinal{}, fail("client-final nonce %q", attrs[1])
	}
	cf.Nonce = r
	for _, a := range attrs[2:] {
		if k, _, ok := strings.Cut(a, "="); !ok || k == "" {
			return ClientFinal{}, fail("client-final extension %q", a)
		}
	}
	return cf, nil
}

func (s *ScramServer) clientFinal(msg []byte) ([]byte, error) {
	cf, err := ParseClientFinal(msg)
	if err != nil {
		return nil, err
	}
	if string(cf.ChannelBinding) != s.gs2Header {
		return nil, fail("channel binding does not match the GS2 header")
	}
	// Kafka accepts a nonce that ends with the full one: librdkafka
	// sends its client nonce again in front of it.
	if !strings.HasSuffix(cf.Nonce, s.fullNonce) {
		return nil, fail("nonce does not match")
	}
	if len(cf.Proof) != s.h().Size() {
		return nil, fail("proof of %d bytes", len(cf.Proof))
	}
	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + cf.WithoutProof)
	clientSig := hmacSum(s.h, s.cred.StoredKey, authMessage)
	clientKey := make([]byte, len(clientSig))
	subtle.XORBytes(clientKey, cf.Proof, clientSig)
	h := s.h()
	h.Write(clientKey)
	if subtle.ConstantTimeCompare(h.Sum(nil), s.cred.StoredKey) != 1 || !s.known {
		return nil, fail("invalid credentials")
	}
	serverSig := hmacSum(s.h, s.cred.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}
