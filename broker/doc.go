// Package broker is Tusk's Kafka front end: the Kafka and HTTP listeners,
// connections, one file per Kafka API, and the glue between the wire
// protocol, metadata and storage.
//
// # APIs
//
// Every API lives in its own file named after its key (00_produce.go,
// 01_fetch.go, ...). The file's constructor returns an api value with the
// key, the supported version range and the handler; registry() lists them.
// That one list drives both request dispatch and the ApiVersions response,
// so the two cannot drift.
//
// # Connections
//
// Each connection has a read goroutine and a write goroutine. The read
// goroutine decodes requests and runs their handlers in arrival order, so
// appends from one connection (e.g. an idempotent producer's pipelined
// batches) reach the log in order. A handler may return a deferred
// completion (waiting for group commit, a fetch long poll); that runs in its
// own goroutine while the read goroutine moves on. The write goroutine sends
// responses strictly in request order. At most kafka.max-inflight responses
// may be pending per connection; beyond that reading pauses (backpressure).
//
// Malformed frames, frames above kafka.request-max-bytes, unknown API keys
// and unsupported versions (except ApiVersions, answered in v0 with
// UNSUPPORTED_VERSION) close the connection with a log line. Errors in a
// request's content are answered with Kafka error codes.
//
// # Shutdown
//
// Close stops the listeners, stops reading new requests, waits for every
// pending response to be written (long polls end early), then closes the
// storage engine, which fsyncs and closes every segment.
package broker
