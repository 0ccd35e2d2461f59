package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// RFC 7677 §3: user "user", password "pencil".
const (
	rfcSalt        = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func rfcLookup(t *testing.T) CredentialLookup {
	t.Helper()
	salt, err := base64.StdEncoding.DecodeString(rfcSalt)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := NewScramCredential(MechanismScramSHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	return func(user, mech string) (ScramCredential, bool) {
		return cred, user == "user" && mech == MechanismScramSHA256
	}
}

func TestScramRFC7677(t *testing.T) {
	s, err := NewScramServer(MechanismScramSHA256, rfcLookup(t), rfcServerNonce)
	if err != nil {
		t.Fatal(err)
	}
	resp, done, err := s.Step([]byte(rfcClientFirst))
	if err != nil || done {
		t.Fatalf("client-first: done %v, %v", done, err)
	}
	if string(resp) != rfcServerFirst {
		t.Fatalf("server-first = %q, want %q", resp, rfcServerFirst)
	}
	resp, done, err = s.Step([]byte(rfcClientFinal))
	if err != nil || !done {
		t.Fatalf("client-final: done %v, %v", done, err)
	}
	if string(resp) != rfcServerFinal {
		t.Fatalf("server-final = %q, want %q", resp, rfcServerFinal)
	}
	if s.User() != "user" || !s.Done() {
		t.Fatalf("user %q done %v", s.User(), s.Done())
	}
	if _, _, err := s.Step([]byte(rfcClientFinal)); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a third step: %v", err)
	}
}

func TestScramRejects(t *testing.T) {
	badProof := strings.Replace(rfcClientFinal, "p=dHzb", "p=dHzc", 1)
	for _, tc := range []struct {
		name         string
		first, final string
	}{
		{"wrong nonce", rfcClientFirst, strings.Replace(rfcClientFinal, "r=rOpr", "r=xOpr", 1)},
		{"client nonce only", rfcClientFirst, "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
		{"bad proof", rfcClientFirst, badProof},
		{"short proof", rfcClientFirst, strings.Replace(rfcClientFinal, "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "p=dHzb", 1)},
		{"no proof", rfcClientFirst, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"},
		{"channel binding differs", rfcClientFirst, strings.Replace(rfcClientFinal, "c=biws", "c=eSws", 1)},
		{"unknown user", "n,,n=bob,r=rOprNGfwEbeRWgbNEkqO", rfcClientFinal},
		{"other authzid", "n,a=bob,n=user,r=rOprNGfwEbeRWgbNEkqO", ""},
		{"channel binding", "p=tls-unique,,n=user,r=rOprNGfwEbeRWgbNEkqO", ""},
		{"token auth", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO,tokenauth=true", ""},
		{"mandatory extension", "n,,m=x,n=user,r=abc", ""},
		{"no nonce", "n,,n=user", ""},
		{"empty user", "n,,n=,r=abc", ""},
		{"bad escape", "n,,n=us=2Der,r=abc", ""},
		{"truncated", "n,", ""},
		{"empty", "", ""},
		{"not utf-8", "n,,n=\xff,r=abc", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewScramServer(MechanismScramSHA256, rfcLookup(t), rfcServerNonce)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Step([]byte(tc.first))
			if tc.final == "" {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("client-first %q: %v", tc.first, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("client-first %q: %v", tc.first, err)
			}
			if _, done, err := s.Step([]byte(tc.final)); !errors.Is(err, ErrAuthentication) || done {
				t.Fatalf("client-final %q: done %v, %v", tc.final, done, err)
			}
			if s.Done() {
				t.Fatal("done after a failure")
			}
		})
	}
}

// clientFinal computes a client-final message for password over the
// exchange so far, with the nonce given (a client's side, for tests).
func clientFinal(t *testing.T, mech, password, clientFirstBare, serverFirst, nonce string) string {
	t.Helper()
	h, err := scramHash(mech)
	if err != nil {
		t.Fatal(err)
	}
	var salt []byte
	iter := 0
	for _, a := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(a, "s="):
			if salt, err = base64.StdEncoding.DecodeString(a[2:]); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(a, "i="):
			fmt.Sscan(a[2:], &iter)
		}
	}
	salted, err := SaltPassword(mech, password, salt, iter)
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	sh := h()
	sh.Write(clientKey)
	withoutProof := "c=biws,r=" + nonce
	sig := hmacSum(h, sh.Sum(nil), []byte(clientFirstBare+","+serverFirst+","+withoutProof))
	proof := make([]byte, len(sig))
	subtle.XORBytes(proof, clientKey, sig)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

// TestScramLibrdkafkaNonce: librdkafka's client-final repeats the client
// nonce in front of the full nonce; Kafka accepts a nonce that ends with
// the full one, and so does Tusk. A nonce that only starts with it, or
// misses the server's part, fails.
func TestScramLibrdkafkaNonce(t *testing.T) {
	for _, tc := range []struct {
		nonce func(full string) string
		ok    bool
	}{
		{func(full string) string { return full }, true},
		{func(full string) string { return "rOprNGfwEbeRWgbNEkqO" + full }, true},
		{func(full string) string { return full + "x" }, false},
		{func(full string) string { return "rOprNGfwEbeRWgbNEkqO" }, false},
	} {
		s, err := NewScramServer(MechanismScramSHA256, rfcLookup(t), rfcServerNonce)
		if err != nil {
			t.Fatal(err)
		}
		sf, _, err := s.Step([]byte(rfcClientFirst))
		if err != nil {
			t.Fatal(err)
		}
		nonce := tc.nonce("rOprNGfwEbeRWgbNEkqO" + rfcServerNonce)
		_, done, err := s.Step([]byte(clientFinal(t, MechanismScramSHA256, "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO", string(sf), nonce)))
		if (err == nil && done) != tc.ok {
			t.Errorf("nonce %q: done %v, %v", nonce, done, err)
		}
	}
}

// TestScramUnknownUserLooksReal: an unknown user gets a plausible
// server-first (a salt and iterations), and fails only at the proof.
func TestScramUnknownUserLooksReal(t *testing.T) {
	s, err := NewScramServer(MechanismScramSHA512, func(string, string) (ScramCredential, bool) { return ScramCredential{}, false }, "srv")
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := s.Step([]byte("n,,n=ghost,r=abc"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(resp), "r=abcsrv,s=") || !strings.HasSuffix(string(resp), ",i=4096") {
		t.Fatalf("server-first %q", resp)
	}
}

func TestScramNames(t *testing.T) {
	cf, err := ParseClientFirst([]byte("y,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=xyz,ext=1"))
	if err != nil {
		t.Fatal(err)
	}
	if cf.User != "a,b=c" || cf.AuthzID != "a,b=c" || cf.GS2Header != "y,a=a=2Cb=3Dc," || cf.Nonce != "xyz" || cf.Bare != "n=a=2Cb=3Dc,r=xyz,ext=1" || cf.Extensions["ext"] != "1" {
		t.Fatalf("%+v", cf)
	}
}

// clientExchange runs a franz-go SASL client against a server mechanism
// and reports the server's error, if any.
func clientExchange(t *testing.T, m sasl.Mechanism, step func([]byte) ([]byte, bool, error)) error {
	t.Helper()
	sess, msg, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		resp, srvDone, err := step(msg)
		if err != nil {
			return err
		}
		done, next, err := sess.Challenge(resp)
		if err != nil {
			t.Fatalf("client refused the server's message %q: %v", resp, err)
		}
		if done != srvDone {
			t.Fatalf("client done %v, server done %v", done, srvDone)
		}
		if done {
			return nil
		}
		msg = next
	}
	t.Fatal("exchange did not end")
	return nil
}

// TestScramAgainstFranzGo cross-checks both mechanisms and PLAIN against
// franz-go's client implementations (sasl/scram, sasl/plain), with names
// that need escaping.
func TestScramAgainstFranzGo(t *testing.T) {
	users := map[string]map[string]ScramCredential{}
	add := func(user, pass string) {
		users[user] = map[string]ScramCredential{}
		for i, mech := range ScramMechanisms() {
			cred, err := NewScramCredential(mech, pass, []byte("salt-"+user+string(rune('0'+i))), 4096+i)
			if err != nil {
				t.Fatal(err)
			}
			users[user][mech] = cred
		}
	}
	add("alice", "s3cret")
	add("b,o=b", "p,w=d")
	lookup := func(user, mech string) (ScramCredential, bool) {
		c, ok := users[user][mech]
		return c, ok
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "s3cret", true}, {"b,o=b", "p,w=d", true}, {"alice", "wrong", false}, {"nobody", "s3cret", false}} {
		a := scram.Auth{User: tc.user, Pass: tc.pass}
		for _, m := range []sasl.Mechanism{a.AsSha256Mechanism(), a.AsSha512Mechanism()} {
			s, err := NewScramServer(m.Name(), lookup, "c2VydmVyLW5vbmNl")
			if err != nil {
				t.Fatal(err)
			}
			err = clientExchange(t, m, s.Step)
			if (err == nil) != tc.ok {
				t.Errorf("%s %s/%s: %v", m.Name(), tc.user, tc.pass, err)
			}
			if err == nil && s.User() != tc.user {
				t.Errorf("%s: user %q", m.Name(), s.User())
			}
		}
		pm := plain.Auth{User: tc.user, Pass: tc.pass}.AsMechanism()
		err := clientExchange(t, pm, func(msg []byte) ([]byte, bool, error) {
			_, err := CheckPlain(context.Background(), msg, lookup, nil)
			return nil, true, err
		})
		if (err == nil) != tc.ok {
			t.Errorf("PLAIN %s/%s: %v", tc.user, tc.pass, err)
		}
	}
}

func TestPlain(t *testing.T) {
	cred, err := NewScramCredential(MechanismScramSHA256, "pw", []byte("salt"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(user, mech string) (ScramCredential, bool) {
		return cred, user == "u" && mech == MechanismScramSHA256
	}
	for _, tc := range []struct {
		msg  string
		user string
	}{
		{"\x00u\x00pw", "u"},
		{"u\x00u\x00pw", "u"},
		{"v\x00u\x00pw", ""},
		{"\x00u\x00pW", ""},
		{"\x00u\x00", ""},
		{"\x00\x00pw", ""},
		{"\x00u\x00pw\x00", ""},
		{"u\x00pw", ""},
		{"\x00x\x00pw", ""},
		{"", ""},
	} {
		user, err := CheckPlain(context.Background(), []byte(tc.msg), lookup, nil)
		if user != tc.user || (err == nil) != (tc.user != "") {
			t.Errorf("%q: user %q, %v", tc.msg, user, err)
		}
		if err != nil && !errors.Is(err, ErrAuthentication) {
			t.Errorf("%q: %v does not wrap ErrAuthentication", tc.msg, err)
		}
	}
}

// TestCredentialFromSalted: the credential a client's salted password
// (AlterUserScramCredentials) makes equals the one from the password.
func TestCredentialFromSalted(t *testing.T) {
	for _, mech := range ScramMechanisms() {
		salted, err := SaltPassword(mech, "pw", []byte("salt"), 8192)
		if err != nil {
			t.Fatal(err)
		}
		a, err := CredentialFromSalted(mech, salted, []byte("salt"), 8192)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewScramCredential(mech, "pw", []byte("salt"), 8192)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.StoredKey) != string(b.StoredKey) || string(a.ServerKey) != string(b.ServerKey) || len(a.StoredKey) != ScramKeySize(mech) {
			t.Fatalf("%s: %x/%x vs %x/%x", mech, a.StoredKey, a.ServerKey, b.StoredKey, b.ServerKey)
		}
		if !a.VerifyPassword(mech, "pw") || a.VerifyPassword(mech, "pW") {
			t.Fatalf("%s: VerifyPassword", mech)
		}
		if _, err := CredentialFromSalted(mech, salted[1:], []byte("salt"), 8192); err == nil {
			t.Fatalf("%s: a short salted password passed", mech)
		}
	}
}

func FuzzParseClientFirst(f *testing.F) {
	for _, s := range []string{rfcClientFirst, "y,a=x,n=x,r=abc,e=1", "p=x,,n=u,r=a", "n,,n=a=2Cb,r=abc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		cf, err := ParseClientFirst(msg)
		if err != nil {
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("%v does not wrap ErrAuthentication", err)
			}
			return
		}
		if cf.User == "" || !validNonce(cf.Nonce) || !strings.HasSuffix(string(msg), cf.Bare) {
			t.Fatalf("%q parsed to %+v", msg, cf)
		}
		s, err := NewScramServer(MechanismScramSHA256, rfcLookup(t), rfcServerNonce)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Step(msg); err == nil {
			if _, done, err := s.Step([]byte(rfcClientFinal)); err == nil && !done {
				t.Fatal("final step neither failed nor finished")
			}
		}
	})
}

func FuzzParseClientFinal(f *testing.F) {
	for _, s := range []string{rfcClientFinal, "c=biws,r=a,x=1,p=AAAA", "c=,r=a,p="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := NewScramServer(MechanismScramSHA256, rfcLookup(t), rfcServerNonce)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Step([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		resp, done, err := s.Step(msg)
		if err != nil {
			if !errors.Is(err, ErrAuthentication) || done || s.Done() {
				t.Fatalf("%q: done %v, %v", msg, done, err)
			}
			return
		}
		// Only the RFC's proof verifies.
		if string(resp) != rfcServerFinal {
			t.Fatalf("%q accepted with %q", msg, resp)
		}
	})
}

func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{"\x00u\x00pw", "u\x00u\x00pw", "\x00\x00", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := ParsePlain(msg)
		if err != nil {
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("%v does not wrap ErrAuthentication", err)
			}
			return
		}
		if m.User == "" || m.Password == "" || (m.AuthzID != "" && m.AuthzID != m.User) {
			t.Fatalf("%q parsed to %+v", msg, m)
		}
		if m.AuthzID+"\x00"+m.User+"\x00"+m.Password != string(msg) {
			t.Fatalf("%q does not round-trip: %+v", msg, m)
		}
	})
}
