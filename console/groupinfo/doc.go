// Package groupinfo lists and describes groups of every type (classic,
// KIP-848 consumer, KIP-932 share) over the Kafka protocol with kadm, as
// any admin tool would, for the web console (broker/console.go) and the
// admin CLI (`tusk group`). It returns the console's types
// (console.GroupSummary, console.Group).
//
// Listing asks ListGroups (v5) once per group type, since kadm's listing
// drops the type. Describing tries the types in turn: DescribeGroups
// reports a consumer or share group as Dead (as Kafka does), so a Dead
// answer moves on to ConsumerGroupDescribe, then ShareGroupDescribe.
// Lag per partition:
//
//   - classic: kadm's Lag (committed offset to the high watermark);
//   - consumer: the same, from the committed offsets (OffsetFetch) of the
//     partitions assigned or committed to, with the log start standing in
//     for a missing commit;
//   - share: DescribeShareGroupOffsets' (API 90 v1) lag, the high
//     watermark less the share-partition start offset and the records
//     above it already acknowledged or archived; from a broker that
//     answers none, from the start offset to the high watermark. The
//     start offset is reported as the partition's "committed" offset.
//
// Functions hold no state; they are safe for concurrent use as far as the
// kadm client is.
package groupinfo
