package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/broker/rpc"
	"github.com/tuskdb/tusk/fencing"
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
	m.OnRoll = func(reason string) { b.m.rolls.WithLabelValues(reason).Inc() }
	return m
}

// replicaMetadata reads the local FSM and proposes through the store.
type replicaMetadata struct{ b *Broker }

func (r replicaMetadata) Broker(id int32) (metadata.Broker, bool) { return r.b.store.FSM().Broker(id) }
func (r replicaMetadata) Topic(name string) (metadata.Topic, bool) {
	return r.b.store.FSM().Topic(name)
}
func (r replicaMetadata) Partition(topic string, p int32) (metadata.Topic, metadata.Partition, bool) {
	return r.b.store.FSM().Partition(topic, p)
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
// client traffic. They go on connections of their own that read answers
// into recycled buffers (replica_conn.go).
type replicaTransport struct{ b *Broker }

func (r replicaTransport) Fetch(ctx context.Context, leader int32, req *kmsg.FetchRequest) (*kmsg.FetchResponse, func(), error) {
	br, ok := r.b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return nil, nil, fmt.Errorf("broker: replica fetch: node %d has no internal address", leader)
	}
	return r.b.fwd.replica.Fetch(ctx, r.b.fwd.tls, leader, br.Internal, req)
}

// OpenTransactions asks the leader for tp's producers with an open
// transaction with a DescribeProducers over its internal listener (a
// learner restarting its copy at the leader's log start seeds its
// producer state with those opened below it, docs/transactions.md,
// "Learners").
func (r replicaTransport) OpenTransactions(ctx context.Context, leader int32, tp storage.TopicPartition) ([]fencing.ProducerEntry, error) {
	br, ok := r.b.store.FSM().Broker(leader)
	if !ok || br.Internal == "" {
		return nil, fmt.Errorf("broker: describe producers: node %d has no internal address", leader)
	}
	cl, err := r.b.fwd.client(leader, br.Internal)
	if err != nil {
		return nil, err
	}
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return nil, errors.New("broker: describe producers: no connection to the leader")
	}
	req := kmsg.NewPtrDescribeProducersRequest()
	rt := kmsg.NewDescribeProducersRequestTopic()
	rt.Topic, rt.Partitions = tp.Topic, []int32{tp.Partition}
	req.Topics = append(req.Topics, rt)
	resp, err := seeds[0].Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("broker: describe producers of %s on node %d: %w", tp, leader, err)
	}
	dr := resp.(*kmsg.DescribeProducersResponse)
	if len(dr.Topics) != 1 || len(dr.Topics[0].Partitions) != 1 {
		return nil, fmt.Errorf("broker: describe producers of %s on node %d: %d topics in the answer", tp, leader, len(dr.Topics))
	}
	p := dr.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return nil, fmt.Errorf("broker: describe producers of %s on node %d: %w", tp, leader, err)
	}
	var out []fencing.ProducerEntry
	for _, ap := range p.ActiveProducers {
		if ap.CurrentTxnStartOffset < 0 {
			continue
		}
		out = append(out, fencing.ProducerEntry{ProducerID: ap.ProducerID, Epoch: int16(ap.ProducerEpoch), LastTimestamp: ap.LastTimestamp,
			TxnFirstOffset: ap.CurrentTxnStartOffset, CoordinatorEpoch: ap.CoordinatorEpoch})
	}
	return out, nil
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
func (h replicaHost) RestartLearner(tp storage.TopicPartition, id metadata.TopicID, start int64, producers []fencing.ProducerEntry) {
	h.b.restartLearner(tp, id, start, producers)
}

// ReplicaLEOs implements metadata.ReplicaProber: node's log end offsets
// of the partitions probed, once it applied the fences (fenceIndex) and
// stopped fetching them; one call for all of them.
func (b *Broker) ReplicaLEOs(ctx context.Context, node int32, fenceIndex uint64, probes []metadata.LEOProbe) ([]metadata.LEOAnswer, error) {
	if node == b.cfg.NodeID {
		return b.localReplicaLEOs(ctx, fenceIndex, probes)
	}
	br, ok := b.store.FSM().Broker(node)
	if !ok || br.Internal == "" {
		return nil, fmt.Errorf("%w: node %d has no internal address", metadata.ErrUnreachable, node)
	}
	in := rpc.ReplicaLEOsRequest{FenceIndex: fenceIndex, Partitions: make([]rpc.ReplicaLEOPartition, len(probes))}
	for i, p := range probes {
		in.Partitions[i] = rpc.ReplicaLEOPartition{Topic: p.Topic, Partition: p.Partition, Segment: p.Segment, Epoch: p.Epoch}
	}
	var out rpc.ReplicaLEOsResponse
	if err := b.internalClient.Call(ctx, br.Internal, http.MethodPost, rpc.PathReplicaLEOs, in, &out); err != nil {
		return nil, err
	}
	if len(out.Partitions) != len(probes) {
		return nil, fmt.Errorf("broker: replica-leos: node %d answered %d of %d partitions", node, len(out.Partitions), len(probes))
	}
	answers := make([]metadata.LEOAnswer, len(probes))
	for i, a := range out.Partitions {
		answers[i].LEO = a.LEO
		if a.Error != "" {
			answers[i].Err = fmt.Errorf("broker: node %d: %s", node, a.Error)
		}
	}
	return answers, nil
}

// localReplicaLEOs waits for the fences, stops fetching the partitions and
// reports each one's log end offset (or why there is none).
func (b *Broker) localReplicaLEOs(ctx context.Context, fenceIndex uint64, probes []metadata.LEOProbe) ([]metadata.LEOAnswer, error) {
	if err := b.store.FSM().WaitApplied(ctx, fenceIndex); err != nil {
		return nil, err
	}
	out := make([]metadata.LEOAnswer, len(probes))
	for i, p := range probes {
		tp := b.tp(p.Topic, p.Partition)
		b.repl.Unfollow(tp)
		l, ok := b.engine.Log(tp)
		if !ok {
			out[i].Err = fmt.Errorf("%w: no local log of %s", metadata.ErrUnknownTopic, tp)
			continue
		}
		out[i].LEO = l.LogEndOffset()
	}
	return out, nil
}

// FailedOver counts a failover round this node ran as the controller
// (metadata.FailoverObserver).
func (b *Broker) FailedOver(partitions int, took time.Duration) {
	b.m.failovers.Add(float64(partitions))
	b.m.failoverTime.Observe(took.Seconds())
}
