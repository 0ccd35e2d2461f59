package auth

import (
	"context"
	"fmt"
	"sync/atomic"
)

// HashGate bounds how many PBKDF2 computations a node runs at once
// (sasl.max-concurrent-hashes, docs/security.md). Each PLAIN login
// against a SCRAM credential, and each bootstrap user's credential, costs
// one PBKDF2 of up to MaxScramIterations; without a bound, a flood of
// logins (even failing ones: the failure delay comes after the hash)
// would keep every core busy. A SCRAM login costs the server no PBKDF2
// (the client salts the password), nor does AlterUserScramCredentials
// (the client sends the salted password).
type HashGate struct {
	slots chan struct{}
	// running is the number of hashes running now, peak the most that
	// ever ran at once (tests and the gauge read them).
	running atomic.Int32
	peak    atomic.Int32
}

// NewHashGate allows n hashes at once (at least 1).
func NewHashGate(n int) *HashGate {
	return &HashGate{slots: make(chan struct{}, max(n, 1))}
}

// Do runs fn, which computes a hash, once fewer than the gate's limit
// run; it returns ctx's error, without running fn, if ctx ends first. A
// nil gate runs fn at once.
func (g *HashGate) Do(ctx context.Context, fn func()) error {
	if g == nil {
		fn()
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: waiting to hash a password: %w", context.Cause(ctx))
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("auth: waiting to hash a password: %w", context.Cause(ctx))
	}
	defer func() { <-g.slots }()
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	fn()
	return nil
}

// Running is the number of hashes running now.
func (g *HashGate) Running() int { return int(g.running.Load()) }

// Peak is the most hashes that ever ran at once.
func (g *HashGate) Peak() int { return int(g.peak.Load()) }
