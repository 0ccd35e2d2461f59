package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	// raw: the exchange was begun by SaslHandshake v0, so its tokens come
	// as raw size-prefixed frames, not SaslAuthenticate requests.
	raw bool
	// scram is the SCRAM exchange after its first message.
	scram *auth.ScramServer
	// user and userMech are the authenticated session's (a
	// re-authentication must keep them).
	user, userMech string
	// expiry ends the session (KIP-368); zero: never.
	expiry time.Time
}

// begin starts an exchange with mech (after SaslHandshake); raw for
// SaslHandshake v0.
func (s *saslConn) begin(mech string, raw bool) {
	s.mech, s.scram, s.raw = mech, nil, raw
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
	mech := c.sasl.mech
	out, done, user, err := b.saslExchange(c, req.SASLAuthBytes)
	if errors.Is(err, errHashWait) {
		c.log.Info().Err(err).Str("mechanism", mech).Str("user", user).Msg("closing connection: no turn to hash the password before the authentication deadline")
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("Authentication timed out waiting to verify the password")
		c.closeAfter = true
		return resp, nil
	}
	if err != nil {
		return b.saslFailed(c, mech, user, err)
	}
	resp.SASLAuthBytes = out
	if done && b.cfg.SASL.MaxReauth > 0 {
		resp.SessionLifetimeMillis = b.cfg.SASL.MaxReauth.Milliseconds()
	}
	return resp, nil
}

// saslExchange feeds one client message to the exchange the last
// SaslHandshake began and returns the server's answer; done when the
// client authenticated. On an error the exchange is over and the caller
// answers the failure.
func (b *Broker) saslExchange(c *conn, msg []byte) (out []byte, done bool, user string, err error) {
	mech := c.sasl.mech
	lookup := b.credentialLookup()
	if mech == auth.MechanismPlain {
		ctx, cancel := c.hashContext()
		user, err = auth.CheckPlain(ctx, msg, lookup, b.hashes)
		cancel()
		if err != nil && !errors.Is(err, auth.ErrAuthentication) {
			// No turn to hash before the deadline: not the client's
			// failure, so it is not counted against its address.
			c.sasl.mech, c.sasl.scram, c.sasl.raw = "", nil, false
			return nil, false, "", fmt.Errorf("%w: %w", errHashWait, err)
		}
	} else {
		if c.sasl.scram == nil {
			s, err := auth.NewScramServer(mech, lookup, newScramNonce())
			if err != nil {
				return nil, false, "", err
			}
			c.sasl.scram = s
		}
		out, done, err = c.sasl.scram.Step(msg)
		user = c.sasl.scram.User()
		if err == nil && !done {
			return out, false, user, nil
		}
	}
	c.sasl.mech, c.sasl.scram, c.sasl.raw = "", nil, false
	if err == nil && c.sasl.user != "" && (user != c.sasl.user || mech != c.sasl.userMech) {
		err = errReauthChanged
	}
	if err != nil {
		return nil, false, user, err
	}
	c.sasl.user, c.sasl.userMech = user, mech
	c.sasl.expiry = time.Time{}
	if d := b.cfg.SASL.MaxReauth; d > 0 {
		c.sasl.expiry = time.Now().Add(d)
	}
	p := auth.User(user)
	c.setPrincipal(p)
	if !c.authed.Swap(true) {
		c.log.Debug().Str("principal", p.String()).Str("mechanism", mech).Msg("authenticated")
	}
	return out, true, user, nil
}

// errHashWait: the login's password hash did not get a turn
// (sasl.max-concurrent-hashes) before the connection's authentication
// deadline or the broker's shutdown.
var errHashWait = errors.New("broker: waiting to hash the password")

// hashContext bounds how long a login of this connection waits for a
// turn to hash its password: until its authentication deadline (see
// authDeadline; saslAuthTimeout from now for a re-authentication), or
// until the broker shuts down. Read goroutine only.
func (c *conn) hashContext() (context.Context, context.CancelFunc) {
	deadline := c.authBy
	if c.authed.Load() || deadline.IsZero() {
		deadline = time.Now().Add(c.b.authTimeout())
	}
	ctx, cancel := context.WithDeadline(c.b.ctx, deadline)
	go func() {
		select {
		case <-c.b.shutdown:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// errReauthChanged: a re-authentication named another user or mechanism.
var errReauthChanged = fmt.Errorf("%w: a re-authentication must keep the user and mechanism", auth.ErrAuthentication)

// saslFailed answers a failed authentication after the failure delay and
// closes the connection.
func (b *Broker) saslFailed(c *conn, mech, user string, err error) (kmsg.Response, func() kmsg.Response) {
	delay := b.saslFailure(c, mech, user, err)
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

// saslFailure logs and counts a failed authentication and returns how
// long to delay its answer.
func (b *Broker) saslFailure(c *conn, mech, user string, err error) time.Duration {
	delay := b.authFailures.record(c.host(), b.cfg.SASL.FailedAuthDelay, time.Now())
	c.log.Info().Err(err).Str("mechanism", mech).Str("user", user).Dur("delay", delay).Msg("closing connection: SASL authentication failed")
	b.m.authFailures.Inc()
	return delay
}

// readRawSASL serves one raw SASL token, the framing SaslHandshake v0
// sets up (kafka-python uses it): a 4-byte size and the token, answered
// the same way (an empty token when PLAIN succeeded). A failure closes
// the connection after the failure delay without an answer, as Kafka
// does. It returns false when the connection must close.
func (c *conn) readRawSASL(br *bufio.Reader) bool {
	var sz [4]byte
	if _, err := io.ReadFull(br, sz[:]); err != nil {
		return false
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 || n > preAuthMaxFrame {
		c.log.Warn().Int32("size", n).Msg("closing connection: bad raw SASL token size")
		c.b.m.badRequests.Inc()
		return false
	}
	tok := make([]byte, n)
	if _, err := io.ReadFull(br, tok); err != nil {
		return false
	}
	start := time.Now()
	mech := c.sasl.mech
	out, _, user, err := c.b.saslExchange(c, tok)
	if errors.Is(err, errHashWait) {
		c.log.Info().Err(err).Str("mechanism", mech).Str("user", user).Msg("closing connection: no turn to hash the password before the authentication deadline")
		return false
	}
	if err != nil {
		t := time.NewTimer(c.b.saslFailure(c, mech, user, err))
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.b.shutdown:
		}
		return false
	}
	s := &slot{done: make(chan struct{}), api: kmsg.SASLAuthenticate, start: start}
	s.frame = binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(out)), uint32(len(out)))
	s.frame = append(s.frame, out...)
	close(s.done)
	c.out <- s
	return true
}

// saslAuthTimeout is how long a SASL_* connection may take to
// authenticate before it is closed (an unauthenticated connection holds
// resources for nothing).
const saslAuthTimeout = 30 * time.Second

// authDeadline closes the connection if it has not authenticated within
// the broker's SASL authentication timeout; it returns the function that
// cancels the timer (nil when the listener has no SASL).
func (c *conn) authDeadline() func() {
	if !c.listener.sasl() {
		return nil
	}
	d := c.b.authTimeout()
	c.authBy = time.Now().Add(d)
	t := time.AfterFunc(d, func() {
		if !c.authed.Load() {
			c.log.Info().Dur("timeout", d).Msg("closing connection: not authenticated in time")
			c.nc.Close()
		}
	})
	return func() { t.Stop() }
}

// authTimeout is how long a SASL connection has to authenticate.
func (b *Broker) authTimeout() time.Duration {
	if v := b.saslAuthTimeout.Load(); v > 0 {
		return time.Duration(v)
	}
	return saslAuthTimeout
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
