package replica

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A follower's durable offset, apart from its fetch position
// (docs/replication.md, "Durable offsets"). Under fsync=always a
// follower's fetch offset used to be its claim of durability, so it
// waited for the group commit of what it appended before fetching on:
// its fsync and its next fetch were in series. A follower now fetches
// from its log end at once and reports, in a tagged field of each
// partition of its Fetch (flexible versions, v12+), the offset below
// which its copy is durable; the leader counts the smaller of the two
// for the high watermark, rolls and learners. A leader that honours the
// field says so with a tagged field of its answer; without it (an older
// leader, or a Fetch version without tagged fields) the follower waits
// for durability before its next fetch, as before, so a mixed cluster
// never counts bytes a follower has not synced.
const (
	// durableTag is the partition's tagged field carrying the durable
	// offset (8 bytes, big-endian), and the answer's tagged field (no
	// value) saying the leader honoured it. Far above Kafka's own tags.
	durableTag uint32 = 0x54534b01
)

// SetDurableOffset puts the follower's durable offset into a partition
// of its Fetch request.
func SetDurableOffset(rp *kmsg.FetchRequestTopicPartition, durable int64) {
	rp.UnknownTags.Set(durableTag, binary.BigEndian.AppendUint64(nil, uint64(durable)))
}

// AckOffset is what a follower's fetch of rp acknowledges: the fetch
// offset, or the durable offset the follower reported if that is lower
// (a malformed or negative one counts as nothing synced beyond 0).
func AckOffset(rp *kmsg.FetchRequestTopicPartition) int64 {
	off := rp.FetchOffset
	if rp.UnknownTags.Len() == 0 {
		return off
	}
	rp.UnknownTags.Each(func(key uint32, val []byte) {
		if key != durableTag {
			return
		}
		d := int64(0)
		if len(val) == 8 {
			d = max(int64(binary.BigEndian.Uint64(val)), 0)
		}
		off = min(off, d)
	})
	return off
}

// MarkDurableAware tells a follower that this answer's leader counted
// the durable offsets of its request (AckOffset).
func MarkDurableAware(resp *kmsg.FetchResponse) {
	resp.UnknownTags.Set(durableTag, nil)
}

// durableAware reports whether the leader counted the durable offsets.
func durableAware(resp *kmsg.FetchResponse) bool {
	aware := false
	if resp.UnknownTags.Len() > 0 {
		resp.UnknownTags.Each(func(key uint32, _ []byte) { aware = aware || key == durableTag })
	}
	return aware
}
