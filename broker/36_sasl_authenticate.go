package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// SaslAuthenticate carries the exchange of the mechanism SaslHandshake
// chose (docs/security.md): PLAIN in one message, SCRAM in two. Success
// makes the connection act as User:<name>; with sasl.max-reauth set, v1+
// answers the session lifetime (KIP-368) and a connection that does not
// re-authenticate within it is closed at its next request. A failure
// answers SASL_AUTHENTICATION_FAILED after sasl.failed-auth-delay (longer
// for repeated failures from the address) and closes the connection.
func apiSASLAuthenticate() api {
	return api{key: kmsg.SASLAuthenticate, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleSASLAuthenticate(rc)
	}}
}

// saslConn is one connection's SASL state; only its read goroutine
// touches it.
type saslConn struct {
	// mech is the mechanism of the exchange in progress ("" when no
	// SaslHandshake is pending).
	mech string
	// scram is the SCRAM exchange after its first message.
	scram *auth.ScramServer
	// user and userMech are the authenticated session's (a
	// re-authentication must keep them).
	user, userMech string
	// expiry ends the session (KIP-368); zero: never.
	expiry time.Time
}

// begin starts an exchange with mech (after SaslHandshake).
func (s *saslConn) begin(mech string) {
	s.mech, s.scram = mech, nil
}

// expired reports whether the authenticated session's lifetime ran out.
func (s *saslConn) expired(now time.Time) bool {
	return !s.expiry.IsZero() && now.After(s.expiry)
}

func (b *Broker) handleSASLAuthenticate(rc *request) (kmsg.Response, func() kmsg.Response) {
	req := rc.req.(*kmsg.SASLAuthenticateRequest)
	c := rc.conn
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	if !c.listener.sasl() || c.sasl.mech == "" {
		// Kafka closes a connection that authenticates out of turn.
		c.log.Warn().Msg("closing connection: SaslAuthenticate without a SaslHandshake")
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate needs a SaslHandshake first")
		c.closeAfter = true
		return resp, nil
	}
	lookup := b.credentialLookup()
	var user string
	var err error
	switch mech := c.sasl.mech; mech {
	case auth.MechanismPlain:
		user, err = auth.CheckPlain(req.SASLAuthBytes, lookup)
	default:
		if c.sasl.scram == nil {
			var s *auth.ScramServer
			if s, err = auth.NewScramServer(mech, lookup, newScramNonce()); err == nil {
				c.sasl.scram = s
				var out []byte
				if out, _, err = s.Step(req.SASLAuthBytes); err == nil {
					resp.SASLAuthBytes = out
					return resp, nil
				}
			}
			break
		}
		var out []byte
		if out, _, err = c.sasl.scram.Step(req.SASLAuthBytes); err == nil {
			resp.SASLAuthBytes = out
			user = c.sasl.scram.User()
		}
	}
	mech := c.sasl.mech
	c.sasl.mech, c.sasl.scram = "", nil
	if err == nil && c.sasl.user != "" && (user != c.sasl.user || mech != c.sasl.userMech) {
		err = errReauthChanged
	}
	if err != nil {
		return b.saslFailed(c, mech, user, err)
	}
	now := time.Now()
	c.sasl.user, c.sasl.userMech = user, mech
	c.sasl.expiry = time.Time{}
	if d := b.cfg.SASL.MaxReauth; d > 0 {
		c.sasl.expiry = now.Add(d)
		resp.SessionLifetimeMillis = d.Milliseconds()
	}
	p := auth.User(user)
	c.setPrincipal(p)
	if !c.authed.Swap(true) {
		c.log.Debug().Str("principal", p.String()).Str("mechanism", mech).Msg("authenticated")
	}
	return resp, nil
}

// errReauthChanged: a re-authentication named another user or mechanism.
var errReauthChanged = fmt.Errorf("%w: a re-authentication must keep the user and mechanism", auth.ErrAuthentication)

// saslFailed answers a failed authentication after the failure delay and
// closes the connection.
func (b *Broker) saslFailed(c *conn, mech, user string, err error) (kmsg.Response, func() kmsg.Response) {
	host := c.host()
	delay := b.authFailures.record(host, b.cfg.SASL.FailedAuthDelay, time.Now())
	c.log.Info().Err(err).Str("mechanism", mech).Str("user", user).Dur("delay", delay).Msg("closing connection: SASL authentication failed")
	b.m.authFailures.Inc()
	c.closeAfter = true
	msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + mech
	return nil, func() kmsg.Response {
		resp := kmsg.NewPtrSASLAuthenticateResponse()
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = &msg
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.shutdown:
		}
		return resp
	}
}

// credentialLookup reads SCRAM credentials from the metadata.
func (b *Broker) credentialLookup() auth.CredentialLookup {
	fsm := b.store.FSM()
	return func(user, mech string) (auth.ScramCredential, bool) {
		c, ok := fsm.ScramCredential(user, mech)
		if !ok {
			return auth.ScramCredential{}, false
		}
		return auth.ScramCredential(c), true
	}
}

// newScramNonce is the server's part of a SCRAM nonce: 18 random bytes in
// base64 (printable, no ',').
func newScramNonce() string {
	var raw [18]byte
	rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// Failed-authentication backoff: the delay doubles per failure from the
// same address within authFailureWindow of the previous one, up to
// maxAuthFailureDelay.
const (
	maxAuthFailureDelay = 5 * time.Second
	authFailureWindow   = time.Minute
	maxAuthFailureHosts = 10000
)

// authFailures counts recent failed authentications per remote address.
type authFailures struct {
	mu    sync.Mutex
	hosts map[string]authFailure
}

type authFailure struct {
	n    int // failures in the current run
	last time.Time
}

// record counts a failure from host at now and returns how long to delay
// its answer: base for the first, doubled for each recent one before it.
func (f *authFailures) record(host string, base time.Duration, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hosts == nil {
		f.hosts = map[string]authFailure{}
	}
	e, known := f.hosts[host]
	if now.Sub(e.last) > authFailureWindow {
		e.n = 0
	}
	d := base
	for i := 0; i < e.n && d < maxAuthFailureDelay; i++ {
		d *= 2
	}
	e.n++
	e.last = now
	if !known && len(f.hosts) >= maxAuthFailureHosts {
		for h, old := range f.hosts {
			if now.Sub(old.last) > authFailureWindow {
				delete(f.hosts, h)
			}
		}
	}
	// Past the bound (failures from very many addresses at once) a new
	// address is not remembered and waits the base delay.
	if known || len(f.hosts) < maxAuthFailureHosts {
		f.hosts[host] = e
	}
	return min(d, maxAuthFailureDelay)
}
