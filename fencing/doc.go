// Package fencing owns the pure decision logic that keeps a single writer
// per partition and exactly-once appends for idempotent producers: broker
// leases and their expiry (Lease), the append checks a replicated log runs
// before every write (CheckAppend: live lease and active epoch on the
// leader; CheckReplica: no stale epoch on a follower) and
// idempotent-producer sequence windows (ProducerStates). It performs no I/O and reads no clock; every time is
// passed in by the caller.
//
// Concurrency: nothing here is safe for concurrent use on its own. A
// ProducerStates is guarded by the mutex of the log that owns it; a Lease by
// whoever holds it.
package fencing
