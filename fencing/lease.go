package fencing

import "time"

// Lease is a grant to act (e.g. to append as a partition leader) until an
// expiry. The holder times it from when it sent the request that earned it,
// so the holder's view always expires no later than the grantor's. Lease
// reads no clock: every time comes from the caller. The zero Lease is
// expired.
type Lease struct {
	expiry time.Time
}

// NewLease returns a lease granted for a request sent at sentAt, valid for d.
func NewLease(sentAt time.Time, d time.Duration) Lease {
	return Lease{expiry: sentAt.Add(d)}
}

// Valid reports whether the lease is still held at now.
func (l Lease) Valid(now time.Time) bool { return now.Before(l.expiry) }

// Expiry is the instant the lease ends.
func (l Lease) Expiry() time.Time { return l.expiry }

// Renew extends the lease after a grant for a request sent at sentAt, valid
// for d. A late answer to an older request never shortens the lease.
func (l *Lease) Renew(sentAt time.Time, d time.Duration) {
	if e := sentAt.Add(d); e.After(l.expiry) {
		l.expiry = e
	}
}
