package groups

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/tuskdb/tusk/kafkaproto"
)

// Kafka's ShareGroupStatePartitionMetadata record (type 15; KIP-932):
// which topic-partitions of a share group have share state. Key: the
// group; value (version 0, flexible): InitializingTopics and
// InitializedTopics ([]{TopicId uuid, TopicName string, Partitions
// []int32}), DeletingTopics ([]{TopicId uuid, TopicName string}).
//
// In Tusk the partition leader creates share state on first use (there is
// no InitializeShareGroupState round from the coordinator), so the group
// records as initialized every partition it has put in a target, and
// those AlterShareGroupOffsets set; InitializingTopics and DeletingTopics
// are always written empty (and read). DescribeShareGroupOffsets of every
// topic and DeleteGroups use the initialized partitions.

// ShareRecordStatePartitionMetadata is the record type of
// ShareGroupStatePartitionMetadata.
const ShareRecordStatePartitionMetadata ShareRecordType = 15

// ShareStateTopic is one topic of ShareGroupStatePartitionMetadata.
type ShareStateTopic struct {
	ID         [16]byte
	Name       string
	Partitions []int32 // sorted; unused for a deleting topic
}

// ShareStatePartitions is ShareGroupStatePartitionMetadataValue.
type ShareStatePartitions struct {
	Initializing, Initialized, Deleting []ShareStateTopic
}

var (
	shareStateTopicFields = []kafkaproto.Field{
		{Name: "TopicId", Kind: kafkaproto.UUID},
		{Name: "TopicName", Kind: kafkaproto.String},
		{Name: "Partitions", Kind: kafkaproto.Int32Array},
	}
	shareStatePartitionValue = &kafkaproto.Schema{Name: "ShareGroupStatePartitionMetadataValue", Flexible: true, Fields: []kafkaproto.Field{
		{Name: "InitializingTopics", Kind: kafkaproto.StructArray, Fields: shareStateTopicFields},
		{Name: "InitializedTopics", Kind: kafkaproto.StructArray, Fields: shareStateTopicFields},
		{Name: "DeletingTopics", Kind: kafkaproto.StructArray, Fields: shareStateTopicFields[:2]},
	}}
)

func sortStateTopics(ts []ShareStateTopic) []ShareStateTopic {
	out := slices.Clone(ts)
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	return out
}

func encodeStateTopics(ts []ShareStateTopic, withParts bool) [][]any {
	out := make([][]any, 0, len(ts))
	for _, t := range sortStateTopics(ts) {
		e := []any{t.ID, t.Name}
		if withParts {
			parts := slices.Clone(t.Partitions)
			slices.Sort(parts)
			if parts == nil {
				parts = []int32{}
			}
			e = append(e, parts)
		}
		out = append(out, e)
	}
	return out
}

func decodeStateTopics(v any) ([]ShareStateTopic, error) {
	es, _ := v.([][]any)
	out := make([]ShareStateTopic, 0, len(es))
	seen := make(map[[16]byte]bool, len(es))
	for _, e := range es {
		t := ShareStateTopic{ID: e[0].([16]byte), Name: e[1].(string)}
		if seen[t.ID] {
			return nil, fmt.Errorf("topic %x twice", t.ID)
		}
		seen[t.ID] = true
		if len(e) > 2 {
			parts, _ := e[2].([]int32)
			t.Partitions = append([]int32{}, parts...)
			slices.Sort(t.Partitions)
		}
		out = append(out, t)
	}
	return out, nil
}

// shareStatePartitionFields is p as shareStatePartitionValue's fields.
func shareStatePartitionFields(p *ShareStatePartitions) ([]any, error) {
	if p == nil {
		return nil, fmt.Errorf("no state partitions")
	}
	return []any{
		encodeStateTopics(p.Initializing, true),
		encodeStateTopics(p.Initialized, true),
		encodeStateTopics(p.Deleting, false),
	}, nil
}

// shareStatePartitionsOf is shareStatePartitionValue's decoded fields v.
func shareStatePartitionsOf(v []any) (*ShareStatePartitions, error) {
	p := &ShareStatePartitions{}
	for i, dst := range []*[]ShareStateTopic{&p.Initializing, &p.Initialized, &p.Deleting} {
		var err error
		if *dst, err = decodeStateTopics(v[i]); err != nil {
			return nil, err
		}
	}
	return p, nil
}
