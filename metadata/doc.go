// Package metadata owns cluster metadata: topics (with topic IDs and
// configs), their partitions, producer-ID blocks, and the commands that
// change them.
//
// The state is a deterministic state machine (FSM): every change is an
// explicit, versioned Command with compare-and-set preconditions, applied in
// one order, and the FSM never consults clocks or node-local counters. This
// is the shape the Raft FSM takes once the cluster issue lands; today a
// single node persists it with LocalStore, which applies a command and then
// durably rewrites a snapshot (write temporary file, fsync, rename, fsync
// directory) before the command is acknowledged.
//
// Concurrency: FSM reads (Topic, Topics, ...) are safe from any goroutine and
// return copies. Apply is serialized by the store.
package metadata
