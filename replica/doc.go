// Package replica is one node's roles in the partitions' segment chains
// (docs/architecture.md, "Segment chains", "Write path", "Rotation and
// failover"; docs/replication.md):
//
//   - leader state of the active segments this node leads ([Leadership]):
//     the high watermark over the followers' fetches, acks=all waits, the
//     lease and epoch checks an append must pass ([Leadership.Begin]), and
//     deposing when the leadership ends;
//   - follower and learner fetchers, one per leader node, that pull the
//     leader's batches through a [Transport] (the Kafka Fetch path on the
//     internal listener in production, [InmemTransport] in tests) and
//     append them unchanged; under fsync=always each fetch reports the
//     follower's durable offset beside its fetch offset, so a follower
//     fetches on while its sync runs and the leader counts only what is
//     durable (durable.go; docs/replication.md, "Durable offsets");
//     each fetcher keeps an incremental fetch
//     session (KIP-227) with its leader when the leader offers one, and a
//     leader ends its followers' long polls when it starts leading a new
//     segment ([Manager.LeadershipStarted]);
//   - planned rolls: sealing the active segment at its log end offset once
//     every replica holds it, by a compare-and-set RollSegment command;
//   - reconcile of the metadata's chain into these roles ([Manager.Reconcile]).
//
// The package does no Kafka request handling and opens no files of its
// own: the broker hands it a [Metadata] view, a [Lease], a [Transport] and
// a [Host] for the node's logs.
//
// Concurrency. Manager.leadMu guards the leaderships (read on every
// append, never held across I/O) and Manager.fetchMu the fetchers; each [Leadership] has
// ackMu for the followers' progress and rollMu ordering appends with a
// roll (appends hold it shared between Begin and the returned release; a
// roll and deposing take it exclusively, briefly, never across I/O). A
// fetcher's mu orders its appends with a drop: once Unfollow returns no
// fetcher appends to the partition.
package replica
