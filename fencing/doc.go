// Package fencing owns the pure decision logic that keeps a single writer
// per partition and exactly-once appends for idempotent producers: broker
// leases and their expiry (Lease) and idempotent-producer sequence windows
// (ProducerStates). It performs no I/O and reads no clock; every time is
// passed in by the caller.
//
// Concurrency: nothing here is safe for concurrent use on its own. A
// ProducerStates is guarded by the mutex of the log that owns it; a Lease by
// whoever holds it.
package fencing
