package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslHandshake names the mechanism of the exchange that follows
// (docs/security.md): SaslAuthenticate requests after v1, raw
// size-prefixed SASL tokens after v0 (kafka-python uses v0; librdkafka
// uses v1 but only once the advertised range includes v0). A mechanism
// not in sasl.mechanisms answers UNSUPPORTED_SASL_MECHANISM with the
// enabled list and closes the connection; a handshake on a listener without SASL, or one that does not
// follow the connection's state (twice in a row, or after authentication
// without a session lifetime to renew), answers ILLEGAL_SASL_STATE.
func apiSASLHandshake() api {
	return api{key: kmsg.SASLHandshake, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleSASLHandshake(rc), nil
	}}
}

func (b *Broker) handleSASLHandshake(rc *request) kmsg.Response {
	req := rc.req.(*kmsg.SASLHandshakeRequest)
	c := rc.conn
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.SupportedMechanisms = b.saslMechs
	switch {
	case !c.listener.sasl():
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp
	case c.sasl.mech != "":
		c.log.Warn().Msg("closing connection: SaslHandshake while a SASL exchange is pending")
		resp.ErrorCode = kerr.IllegalSaslState.Code
		c.closeAfter = true
		return resp
	case c.authed.Load() && (b.cfg.SASL.MaxReauth <= 0 || req.Version == 0):
		// Re-authentication (KIP-368) is for sessions that expire, and
		// over SaslAuthenticate.
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp
	case !slices.Contains(b.saslMechs, req.Mechanism):
		c.log.Info().Str("mechanism", req.Mechanism).Msg("closing connection: SASL mechanism not enabled")
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.closeAfter = true
		return resp
	}
	c.sasl.begin(req.Mechanism, req.Version == 0)
	return resp
}
