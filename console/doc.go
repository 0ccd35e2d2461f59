// Package console is Tusk's web console for operators: a small JSON API
// under /api/v1/ and static pages under /ui/, both served on a node's HTTP
// port (the same listener as /metrics and /healthz).
//
// # What it shows
//
// The pages are a single-page app (console/ui, embedded with embed, with no
// external fonts, scripts or CDNs) that reads only the JSON API:
//
//   - cluster: nodes, racks, liveness, the controller, each node's lease,
//     version and disk use;
//   - topics: partitions, replication factor, configs, bytes on disk;
//   - a partition's segment chain as a timeline: offset ranges on one axis,
//     each segment coloured by its leader node, with epoch, replica set,
//     state and size, so rotation and failovers are visible
//     (docs/architecture.md, "Segment chains");
//   - groups of every type (classic, KIP-848 consumer, KIP-932 share):
//     members, member epochs, assignments and lag per partition
//     (package groupinfo).
//
// Every page refreshes itself. Names (topics, groups, members, hosts) are
// only ever put into the page as text nodes, never as markup, so a name
// such as "<script>" renders as text.
//
// # Where the data comes from
//
// Topics, partitions, segment chains and brokers come from this node's
// replica of the Raft metadata (metadata.FSM). Everything only the broker
// knows goes through the Broker interface, which package broker implements
// (broker/console.go): the controller's id, each node's lease, version and
// local logs (asked over the internal listener), and groups with their lag
// (asked over the Kafka protocol through package groupinfo, as any admin
// tool would).
//
// # Access
//
// The console and its API answer requests from loopback addresses, and
// from elsewhere only with the admin token (Options.AdminToken, the
// http.admin-token setting) as "Authorization: Bearer TOKEN" or the
// tusk_admin_token cookie that /ui/?token=TOKEN sets. With no token
// configured, only loopback clients get in.
//
// # Concurrency
//
// A Console holds no mutable state of its own; handlers run concurrently
// and read the metadata through the FSM's own locking.
package console
