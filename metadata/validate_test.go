package metadata

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

func TestValidate(t *testing.T) {
	a := topicID(1)
	long := strings.Repeat("x", 250)
	var nilCreate *CreateTopic
	for _, c := range []struct {
		cmd Command
		err string // "" for valid
	}{
		{CreateTopic{Name: "t", ID: a, Partitions: 3}, ""},
		{&CreateTopic{Name: "t", ID: a, Partitions: 1, ReplicationFactor: AutoReplicationFactor, Configs: map[string]string{"retention.ms": "-1"}, Assignments: [][]int32{{1, 2}}}, ""},
		{nilCreate, "metadata: invalid command: nil *metadata.CreateTopic"},
		{nil, "metadata: invalid command: unknown command type <nil>"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Configs: map[string]string{"retention.ms": "abc"}},
			`metadata: invalid command: create_topic: topic t: topic configs: config retention.ms: "abc" is not a long`},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Configs: map[string]string{"segment.rotate": "maybe"}},
			`metadata: invalid command: create_topic: topic t: topic configs: config segment.rotate: "maybe" is not a boolean`},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compaction"}},
			`metadata: invalid command: create_topic: topic t: topic configs: config cleanup.policy: "compaction" in "compaction" is not a policy (want delete, compact or compact,delete)`},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact,delete"}}, ""},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Configs: map[string]string{"bogus": "1"}},
			`metadata: invalid command: create_topic: topic t: topic configs: unknown topic config "bogus"`},
		{CreateTopic{Name: "", ID: a, Partitions: 1}, "metadata: invalid command: create_topic: topic name is empty"},
		{CreateTopic{Name: long, ID: a, Partitions: 1}, "metadata: invalid command: create_topic: topic name is 250 characters, above 249"},
		{CreateTopic{Name: "..", ID: a, Partitions: 1}, `metadata: invalid command: create_topic: topic name ".." is not allowed`},
		{CreateTopic{Name: "a b", ID: a, Partitions: 1}, `metadata: invalid command: create_topic: topic name "a b" contains ' '; allowed are ASCII letters, digits, '.', '_' and '-'`},
		{CreateTopic{Name: "t", Partitions: 1}, "metadata: invalid command: create_topic: topic t: zero topic id"},
		{CreateTopic{Name: "t", ID: a, Partitions: 0}, "metadata: invalid command: create_topic: topic t: 0 partitions not in [1, 100000]"},
		{CreateTopic{Name: "t", ID: a, Partitions: 100001}, "metadata: invalid command: create_topic: topic t: 100001 partitions not in [1, 100000]"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, ReplicationFactor: -2}, "metadata: invalid command: create_topic: topic t: replication factor -2 not in [0, 256] (or -1 for automatic)"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, ReplicationFactor: 300}, "metadata: invalid command: create_topic: topic t: replication factor 300 not in [0, 256] (or -1 for automatic)"},
		{CreateTopic{Name: "t", ID: a, Partitions: 2, Assignments: [][]int32{{1}}}, "metadata: invalid command: create_topic: topic t: 1 assignments for 2 partitions"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Assignments: [][]int32{{}}}, "metadata: invalid command: create_topic: topic t: partition 0 has no replicas"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Assignments: [][]int32{{1, -1}}}, "metadata: invalid command: create_topic: topic t: replicas of partition 0: broker id -1"},
		{CreateTopic{Name: "t", ID: a, Partitions: 1, Assignments: [][]int32{{1, 1}}}, "metadata: invalid command: create_topic: topic t: replicas of partition 0: broker 1 listed twice"},
		{DeleteTopic{Name: "t", ID: a}, ""},
		{DeleteTopic{Name: "t"}, "metadata: invalid command: delete_topic: topic t: zero topic id"},
		{CreatePartitions{Name: "t", ID: a, Expected: 1, Count: 3}, ""},
		{CreatePartitions{Name: "t", ID: a, Expected: 3, Count: 3}, "metadata: invalid command: create_partitions: topic t: from 3 to 3 partitions (at most 100000)"},
		{CreatePartitions{Name: "t", ID: a, Expected: 0, Count: 3}, "metadata: invalid command: create_partitions: topic t: from 0 to 3 partitions (at most 100000)"},
		{CreatePartitions{Name: "t", ID: a, Expected: 1, Count: 3, Assignments: [][]int32{{1}}}, "metadata: invalid command: create_partitions: topic t: 1 assignments for 2 partitions"},
		{SetTopicConfigs{Name: "t", ID: a, Expected: map[string]string{"retention.ms": "abc"}, Configs: map[string]string{"retention.ms": "5"}}, ""},
		{SetTopicConfigs{Name: "t", ID: a, Configs: map[string]string{"retention.ms": "abc"}},
			`metadata: invalid command: set_topic_configs: topic t: topic configs: config retention.ms: "abc" is not a long`},
		{SetTopicConfigs{Name: "t", ID: a, Configs: map[string]string{"max.message.bytes": "99999999999"}},
			`metadata: invalid command: set_topic_configs: topic t: topic configs: config max.message.bytes: "99999999999" is not an int`},
		{AllocateProducerIDs{Expected: 0, Count: 1000}, ""},
		{AllocateProducerIDs{Expected: 0, Count: MaxProducerIDBlock + 1}, "metadata: invalid command: allocate_producer_ids: block of 1048577 producer ids not in [1, 1048576]"},
		{AllocateProducerIDs{Expected: -1, Count: 1}, "metadata: invalid command: allocate_producer_ids: producer ids from -1"},
		{AllocateProducerIDs{Expected: 1<<63 - 1, Count: 1}, "metadata: invalid command: allocate_producer_ids: producer ids from 9223372036854775807"},
		{InitCluster{}, "metadata: invalid command: init_cluster: empty cluster id"},
		{RegisterBroker{Broker: Broker{ID: -1, Kafka: "h:1"}}, "metadata: invalid command: register_broker: broker id -1"},
		{SetBrokerState{ID: 1, From: BrokerAlive, To: BrokerFenced}, ""},
		{SetBrokerState{ID: 1, From: "gone", To: BrokerFenced}, `metadata: invalid command: set_broker_state: broker state "gone"`},
		{UnregisterBroker{ID: -3}, "metadata: invalid command: unregister_broker: broker id -3"},
		{SetClusterConfigs{Configs: map[string]string{"": "x"}}, "metadata: invalid command: set_cluster_configs: cluster config with an empty name"},
		{RollSegment{Topic: "t", ID: a, ExpectedSegment: 1, ExpectedEpoch: 2, EndOffset: 9, NextLeader: -1, NextReplicas: []int32{2, 3}}, ""},
		{RollSegment{Topic: "t", ID: a, ExpectedSegment: 1, ExpectedEpoch: 2, EndOffset: -1, NextLeader: 2, NextReplicas: []int32{2}},
			"metadata: invalid command: roll_segment: end offset -1, bytes 0, joined from 0"},
		{RollSegment{Topic: "t", ID: a, ExpectedSegment: 1, ExpectedEpoch: 1<<31 - 1, NextLeader: 2, NextReplicas: []int32{2}},
			"metadata: invalid command: roll_segment: epoch 2147483647"},
		{RollSegment{Topic: "t", ID: a, Partition: -1, NextLeader: 2, NextReplicas: []int32{2}}, "metadata: invalid command: roll_segment: partition -1"},
		{RollSegment{Topic: "t", ID: a, NextLeader: 2}, "metadata: invalid command: roll_segment: no next replicas"},
		{RollSegment{Topic: "t", ID: a, NextLeader: 2, NextReplicas: []int32{2}, Joined: []int32{3, 3}}, "metadata: invalid command: roll_segment: joined: broker 3 listed twice"},
		{FenceSegment{Topic: "t", ID: a, ExpectedSegment: -1}, "metadata: invalid command: fence_segment: segment id -1"},
		{AssignLearners{Topic: "t", ID: a, Learners: []int32{4, -4}}, "metadata: invalid command: assign_learners: learners: broker id -4"},
	} {
		err := Validate(c.cmd)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%#v: %v", c.cmd, err)
		case c.err != "" && (err == nil || err.Error() != c.err || !errors.Is(err, ErrInvalidCommand)):
			t.Errorf("%#v:\n got %v\nwant %s", c.cmd, err, c.err)
		}
	}
}

// fuzzState is a state with something for every command to act on: four
// brokers (4 fenced), topic "a" whose partition 0 rolled twice, partition
// 1 has a learner and partition 2 is fenced, and topic "b".
func fuzzState(t testing.TB) []byte {
	f := NewFSM()
	must := func(c Command) {
		if err := f.Apply(c); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	must(InitCluster{ClusterID: "fuzz"})
	for i := int32(1); i <= 4; i++ {
		must(RegisterBroker{Broker: broker(i)})
	}
	must(CreateTopic{Name: "a", ID: topicID(1), Partitions: 3, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "10"},
		Assignments: [][]int32{{1, 2, 3}, {2, 3}, {3, 1, 2}}})
	must(CreateTopic{Name: "b", ID: topicID(2), Partitions: 1, Assignments: [][]int32{{1}}})
	must(RollSegment{Topic: "a", ID: topicID(1), ExpectedSegment: 0, ExpectedEpoch: 0, EndOffset: 10, NextLeader: 2, NextReplicas: []int32{1, 2, 3}})
	must(RollSegment{Topic: "a", ID: topicID(1), ExpectedSegment: 4, ExpectedEpoch: 1, EndOffset: 20, NextLeader: 1, NextReplicas: []int32{1, 2}, SealedReplicas: []int32{1, 2}})
	must(AssignLearners{Topic: "a", ID: topicID(1), Partition: 1, ExpectedSegment: 1, ExpectedEpoch: 0, Learners: []int32{1}})
	must(FenceSegment{Topic: "a", ID: topicID(1), Partition: 2, ExpectedSegment: 2, ExpectedEpoch: 0})
	must(SetBrokerState{ID: 4, From: BrokerAlive, To: BrokerFenced})
	must(SetClusterConfigs{Configs: map[string]string{"x": "1"}})
	must(AllocateProducerIDs{Expected: 0, Count: 100})
	b, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fuzzSeeds reach into fuzzState: most succeed, some fail validation.
func fuzzSeeds() []Command {
	a := topicID(1)
	return []Command{
		CreateTopic{Name: "c", ID: topicID(3), Partitions: 2, ReplicationFactor: 2, Configs: map[string]string{"segment.bytes": "2048"}, Assignments: [][]int32{{1, 2}, {2, 3}}},
		CreateTopic{Name: "c", ID: topicID(3), Partitions: 1, Configs: map[string]string{"retention.ms": "abc"}, Assignments: [][]int32{{1}}},
		DeleteTopic{Name: "b", ID: topicID(2)},
		AlterScramCredentials{Upserts: []ScramUpsert{{User: "u", Mechanism: ScramSHA256, Credential: ScramCredential{Salt: []byte("s"), StoredKey: make([]byte, 32), ServerKey: make([]byte, 32), Iterations: 4096}}},
			Deletions: []ScramDeletion{{User: "v", Mechanism: ScramSHA512}}},
		BootstrapUsers{Users: []ScramUpsert{{User: "w", Mechanism: ScramSHA512, Credential: ScramCredential{Salt: []byte("s"), StoredKey: make([]byte, 64), ServerKey: make([]byte, 64), Iterations: 8192}}}},
		CreatePartitions{Name: "a", ID: a, Expected: 3, Count: 5, ReplicationFactor: 3, Assignments: [][]int32{{1, 2, 3}, {3, 2, 1}}},
		SetTopicConfigs{Name: "a", ID: a, Expected: map[string]string{"retention.ms": "10"}, Configs: map[string]string{"retention.ms": "abc"}},
		SetTopicConfigs{Name: "a", ID: a, Expected: map[string]string{"retention.ms": "10"}, Configs: map[string]string{"min.insync.replicas": "2"}},
		AllocateProducerIDs{Expected: 100, Count: 1000},
		InitCluster{ClusterID: "again"},
		RegisterBroker{Broker: Broker{ID: 5, Kafka: "k5:9092", Rack: "r"}},
		SetBrokerState{ID: 4, From: BrokerFenced, To: BrokerAlive},
		UnregisterBroker{ID: 4},
		SetClusterConfigs{Expected: map[string]string{"x": "1"}, Configs: map[string]string{"x": "2"}},
		RollSegment{Topic: "a", ID: a, Partition: 0, ExpectedSegment: 5, ExpectedEpoch: 2, EndOffset: 30, NextLeader: 2, NextReplicas: []int32{1, 2, 3}, Joined: []int32{3}, JoinedFrom: 5, Checksum: 7, Bytes: 100},
		RollSegment{Topic: "a", ID: a, Partition: 1, ExpectedSegment: 1, ExpectedEpoch: 0, EndOffset: 0, NextLeader: 3, NextReplicas: []int32{3, 1}, SealedReplicas: []int32{3}, Joined: []int32{1}},
		RollSegment{Topic: "a", ID: a, Partition: 2, ExpectedSegment: 2, ExpectedEpoch: 0, EndOffset: 7, NextLeader: 1, NextReplicas: []int32{1, 2}},
		FenceSegment{Topic: "a", ID: a, Partition: 0, ExpectedSegment: 5, ExpectedEpoch: 2},
		AssignLearners{Topic: "a", ID: a, Partition: 0, ExpectedSegment: 5, ExpectedEpoch: 2, Learners: []int32{3, 4}},
	}
}

// FuzzApply feeds arbitrary bytes to the FSM as Raft log entries: decoding
// and applying never panic; a failed command changes nothing; the state
// stays readable and snapshots round-trip. It also applies every decodable
// command bypassing validation (as an entry an older version wrote), which
// must not panic either.
func FuzzApply(f *testing.F) {
	for _, c := range fuzzSeeds() {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `{"v":1}`, `{"v":1,"kind":"create_topic","body":null}`,
		`{"v":1,"kind":"roll_segment","body":{"topic":"a","partition":2147483647}}`,
		`{"v":1,"kind":"create_topic","body":{"name":"z","id":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"partitions":1,"assignments":[[]]}}`,
	} {
		f.Add([]byte(s))
	}
	base := fuzzState(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM()
		if err := fsm.Restore(base); err != nil {
			t.Fatal(err)
		}
		rs := &RaftStore{fsm: fsm, log: zerolog.Nop()}
		res := (*raftFSM)(rs).Apply(&raft.Log{Index: 100, Data: data})
		if err, _ := res.(error); err != nil && !bytes.Equal(snap(t, fsm), base) {
			t.Fatalf("failed entry (%v) changed the state", err)
		}
		if fsm.AppliedIndex() != 100 {
			t.Fatalf("applied index %d after entry 100", fsm.AppliedIndex())
		}
		readAll(t, fsm)

		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("decode error %v does not wrap ErrInvalidCommand", err)
			}
			return
		}
		raw := NewFSM()
		if err := raw.Restore(base); err != nil {
			t.Fatal(err)
		}
		raw.mu.Lock()
		err = c.apply(&raw.st)
		raw.mu.Unlock()
		if err != nil && !bytes.Equal(snap(t, raw), base) {
			t.Fatalf("failed unvalidated command (%v) changed the state", err)
		}
		readAll(t, raw)
	})
}

// readAll exercises every read of the FSM and a snapshot round trip.
func readAll(t *testing.T, f *FSM) {
	t.Helper()
	for _, tp := range f.Topics() {
		tp.ReplicationFactor()
		for p := int32(-1); p <= tp.Partitions; p++ {
			tp.Leader(p)
			f.PartitionLeader(tp.Name, p)
		}
		f.TopicByID(tp.ID)
		f.TopicConfigValue(tp.Name, "retention.ms")
	}
	f.Brokers()
	f.Loads()
	f.ClusterConfigs()
	f.Dump()
	b := snap(t, f)
	g := NewFSM()
	if err := g.Restore(b); err != nil {
		t.Fatalf("restore own snapshot: %v", err)
	}
	if !bytes.Equal(snap(t, g), b) {
		t.Fatal("snapshot does not round-trip")
	}
}
