// Package bench is an end-to-end load generator for any Kafka-compatible
// cluster (Tusk or Kafka), driven through franz-go's kgo. It backs the
// `tusk bench` subcommand.
//
// Run creates the topic if it is missing (kadm, replication factor -1 so the
// broker picks its default, falling back to 1), notes each partition's end
// offset, and then:
//
//   - starts Producers kgo clients, each producing its share of Records
//     records of RecordSize bytes. Every record reuses one precomputed
//     random payload (uppercase letters, like kafka-producer-perf-test, so
//     compression has something to do); the only per-record allocation is
//     kgo's Record. With KeySpace (--key-space) records carry keys cycling
//     over that many precomputed fixed-width keys, for compacted topics. A record's context carries its send time (its
//     Timestamp is the same instant, but kgo truncates that to the
//     millisecond). Produce latency is promise callback time minus send time. Rate (MB/s, MB = 2^20
//     bytes) is split evenly over the producers, each pacing itself.
//   - if Consume is set, runs one consumer concurrently from the end offsets
//     noted before producing, so data already in the topic is skipped. It
//     reads until it has seen every acknowledged record; end-to-end latency
//     is receive time minus the record's timestamp (millisecond resolution,
//     as stored in the batch).
//
// Latencies go into log-linear histograms (values below 128 ns exact,
// otherwise within 0.78%; percentiles report the bucket's upper bound, so
// they never understate), recorded lock-free without allocation.
//
// Nothing hangs: a phase that makes no progress for Config.Timeout ends the
// run with an error naming what was missing, and kgo's record delivery
// timeout is set to the same value.
//
// Concurrency: Run is safe to call concurrently with different topics; it
// owns every client it creates and closes them before returning.
package bench
