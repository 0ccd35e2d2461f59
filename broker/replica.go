package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/replica"
	"github.com/tuskdb/tusk/storage"
)

// The broker's side of package replica (docs/architecture.md, "Segment
// chains"): it hands the replica.Manager the metadata view, this node's
// lease, the Fetch transport to other nodes' internal listeners, and its
// logs (replicaHost).

func (b *Broker) newReplicaManager() *replica.Manager {
	cfg := replica.DefaultConfig(b.cfg.NodeID)
	cfg.LagTimeMax = b.cfg.Replica.LagTimeMax
	cfg.FsyncAlways = b.cfg.Storage.Fsync == "always"
	cfg.LeaseWait = b.cfg.Lease.Timeout
	cfg.Cleaner = b.cleanerConfig(cfg.Cleaner)
	m := replica.New(cfg, replicaMetadata{b}, replicaLease{b}, replicaTransport{b}, replicaHost{b}, b.log)
	m.OnRoll = b.m.rolls.Inc
	return m
}

// replicaMetadata reads the local FSM and proposes through the store.
type replicaMetadata struct{ b *Broker }

func (r replicaMetadata) Broker(id int32) (metadata.Broker, bool) { return r.b.store.FSM().Broker(id) }
func (r replicaMetadata) Topic(name string) (metadata.Topic, bool) {
	return r.b.store.FSM().Topic(name)
}
func (r replicaMetadata) TopicConfigValue(name, key string) (string, bool, bool, bool) {
	return r.b.store.FSM().TopicConfigValue(name, key)
}
func (r replicaMetadata) Apply(ctx context.Context, c metadata.Command) error {
	return r.b.store.Apply(ctx, c)
}

// replicaLease is this node's lease from the controller.
type replicaLease struct{ b *Broker }

func (r replicaLease) Valid() bool { return r.b.leaseValid() }
func (r replicaLease) Wait(ctx context.Context, d time.Duration) bool {
	return r.b.waitLease(ctx, d)
}

// replicaTransport sends a follower's Fetch to the leader's internal
// listener, which serves Kafka requests from nodes beside the internal
// HTTP calls (internal_kafka.go): replica fetches are node traffic, never
// client traffic.
type replicaTransport struct{ b *Broker }

func (r replicaTransport) Fetch(ctx context.Context, leader int32, req *kmsg.FetchRequest) (*kmsg.FetchResponse, error) {
	br, ok := r.b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return nil, fmt.Errorf("broker: replica fetch: node %d has no internal address", leader)
	}
	cl, err := r.b.fwd.client(br.Internal)
	if err != nil {
		return nil, err
	}
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return nil, errors.New("broker: replica fetch: no connection to the leader")
	}
	resp, err := seeds[0].Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("broker: replica fetch from node %d: %w", leader, err)
	}
	return resp.(*kmsg.FetchResponse), nil
}

// replicaHost gives replication this node's logs.
type replicaHost struct{ b *Broker }

func (h replicaHost) Log(tp storage.TopicPartition) (*storage.Log, bool) { return h.b.engine.Log(tp) }

func (h replicaHost) EnsureLog(t metadata.Topic, p int32, replicated bool) (*storage.Log, error) {
	cfg := h.b.logConfig(t.Configs)
	cfg.Replicated = replicated
	tp := h.b.tp(t.Name, p)
	if l, ok := h.b.engine.Log(tp); ok {
		l.SetConfig(cfg)
		return l, nil
	}
	return h.b.openPartition(tp, t.ID, cfg, h.b.caughtUp.Load())
}

func (h replicaHost) LogTopicID(tp storage.TopicPartition) (metadata.TopicID, bool, error) {
	return h.b.engine.LogTopicID(tp)
}

func (h replicaHost) DeleteLog(tp storage.TopicPartition) error { return h.b.engine.DeleteLog(tp) }

func (h replicaHost) MinInsync(t metadata.Topic) int {
	return int(h.b.topicConfigInt(t.Configs, "min.insync.replicas"))
}

func (h replicaHost) CaughtUp() bool { return h.b.caughtUp.Load() }
func (h replicaHost) Compaction(topic string) (replica.CompactionConfig, bool) {
	return h.b.compaction(topic)
}
func (h replicaHost) Kick() { h.b.kickReconcile() }
func (h replicaHost) RestartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64) {
	h.b.restartLearner(tp, id, start)
}

// ReplicaLEO implements metadata.ReplicaProber: node's log end offset of
// a partition once it applied the fence (fenceIndex) and stopped fetching.
func (b *Broker) ReplicaLEO(ctx context.Context, node int32, topic string, partition int32, segment int64, epoch int32, fenceIndex uint64) (int64, error) {
	if node == b.cfg.NodeID {
		return b.localReplicaLEO(ctx, topic, partition, fenceIndex)
	}
	br, ok := b.store.FSM().Broker(node)
	if !ok || br.Internal == "" {
		return 0, fmt.Errorf("%w: node %d has no internal address", metadata.ErrUnreachable, node)
	}
	var out rpc.ReplicaLEOResponse
	in := rpc.ReplicaLEORequest{Topic: topic, Partition: partition, Segment: segment, Epoch: epoch, FenceIndex: fenceIndex}
	if err := b.internalClient.Call(ctx, br.Internal, http.MethodPost, rpc.PathReplicaLEO, in, &out); err != nil {
		return 0, err
	}
	return out.LEO, nil
}

// localReplicaLEO waits for the fence, stops fetching the partition and
// reports the log end offset.
func (b *Broker) localReplicaLEO(ctx context.Context, topic string, partition int32, fenceIndex uint64) (int64, error) {
	if err := b.store.FSM().WaitApplied(ctx, fenceIndex); err != nil {
		return 0, err
	}
	tp := b.tp(topic, partition)
	b.repl.Unfollow(tp)
	l, ok := b.engine.Log(tp)
	if !ok {
		return 0, fmt.Errorf("%w: no local log of %s", metadata.ErrUnknownTopic, tp)
	}
	return l.LogEndOffset(), nil
}
