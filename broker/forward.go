package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// Produce forwarding (docs/architecture.md, "Write path"): a Produce for a
// partition another node leads is sent on to that leader and its answer
// passed back, because most clients do not follow KIP-951 leader hints.
// The request goes to the leader's internal listener as node traffic
// (the receiving node authorized it; the leader's client listeners may
// need TLS and SASL). With produce.forward off, the partition is answered
// NOT_LEADER_OR_FOLLOWER, with the KIP-951 CurrentLeader and the leader's
// endpoint on Produce v10+. A forwarded request is never forwarded again
// (it carries forwardClientID), so stale metadata cannot make a loop.

// forwardClientID marks requests one node forwards to another.
const forwardClientID = "tusk-forwarder"

// forwarders holds one Kafka client per node's internal listener: the
// clients of forwarded Produce requests, replica fetches and transaction
// markers, all node traffic (internal_kafka.go).
type forwarders struct {
	// tls, set before serving, is the TLS configuration of the client to
	// a node (internal_tls.go); nil: plaintext.
	tls func(node int32) *tls.Config

	mu      sync.Mutex
	clients map[fwdKey]*kgo.Client
	closed  bool
}

// fwdKey names a client: a node at an internal address (a node that
// restarts elsewhere gets a new client).
type fwdKey struct {
	node int32
	addr string
}

// client is the Kafka client to node's internal listener at addr.
func (f *forwarders) client(node int32, addr string) (*kgo.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("broker: forwarders closed")
	}
	k := fwdKey{node, addr}
	if cl, ok := f.clients[k]; ok {
		return cl, nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID(forwardClientID)}
	if f.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(f.tls(node)))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: node client for node %d at %s: %w", node, addr, err)
	}
	if f.clients == nil {
		f.clients = map[fwdKey]*kgo.Client{}
	}
	f.clients[k] = cl
	return cl, nil
}

func (f *forwarders) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, cl := range f.clients {
		cl.Close()
	}
	f.clients = nil
}

// produceForward collects the partitions of one Produce request that
// other nodes lead, one sub-request per leader.
type produceForward struct {
	b     *Broker
	req   *kmsg.ProduceRequest
	resp  *kmsg.ProduceResponse // gets the leaders' KIP-951 endpoints
	conn  *conn                 // the client's, whose listener the endpoints are of
	byLdr map[int32]*forwardedProduce
}

type forwardedProduce struct {
	addr  string // the leader's internal listener
	req   *kmsg.ProduceRequest
	parts map[string]map[int32]*kmsg.ProduceResponseTopicPartition
}

// mayForward reports whether this request may be forwarded at all.
func (b *Broker) mayForward(rc *request) bool {
	return b.cfg.Produce.Forward && rc.hdr.ClientID != forwardClientID
}

// notLeader fills a NOT_LEADER_OR_FOLLOWER answer for a partition of t,
// with the KIP-951 hint on v10+ (and the leader's endpoint on c's
// listener in resp).
func (b *Broker) notLeader(c *conn, resp *kmsg.ProduceResponse, version int16, t metadata.Topic, p int32, sp *kmsg.ProduceResponseTopicPartition) {
	sp.ErrorCode = kerr.NotLeaderForPartition.Code
	if version < 10 {
		return
	}
	leader, epoch := t.Leader(p)
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.State != metadata.BrokerAlive {
		return
	}
	host, port, ok := b.endpoint(br, c)
	if !ok {
		return // the client could not reach the leader on its listener
	}
	sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = leader, epoch
	for _, e := range resp.Brokers {
		if e.NodeID == leader {
			return
		}
	}
	e := kmsg.NewProduceResponseBroker()
	e.NodeID = leader
	e.Host, e.Port = host, port
	if br.Rack != "" {
		e.Rack = kmsg.StringPtr(br.Rack)
	}
	resp.Brokers = append(resp.Brokers, e)
}

// add routes partition rp of topic to its leader, if that is another live
// node; it reports false when the partition cannot be forwarded.
func (f *produceForward) add(t metadata.Topic, rp *kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition) bool {
	leader, _ := t.Leader(rp.Partition)
	if leader < 0 || leader == f.b.cfg.NodeID {
		return false
	}
	br, ok := f.b.store.FSM().Broker(leader)
	if !ok || br.State != metadata.BrokerAlive || br.Internal == "" {
		return false
	}
	if f.byLdr == nil {
		f.byLdr = map[int32]*forwardedProduce{}
	}
	fp, ok := f.byLdr[leader]
	if !ok {
		r := kmsg.NewPtrProduceRequest()
		r.Version = f.req.Version
		r.Acks, r.TimeoutMillis, r.TransactionID = f.req.Acks, f.req.TimeoutMillis, f.req.TransactionID
		fp = &forwardedProduce{addr: br.Internal, req: r, parts: map[string]map[int32]*kmsg.ProduceResponseTopicPartition{}}
		f.byLdr[leader] = fp
	}
	var rt *kmsg.ProduceRequestTopic
	for i := range fp.req.Topics {
		if fp.req.Topics[i].Topic == t.Name {
			rt = &fp.req.Topics[i]
		}
	}
	if rt == nil {
		nt := kmsg.NewProduceRequestTopic()
		nt.Topic = t.Name
		nt.TopicID = t.ID
		fp.req.Topics = append(fp.req.Topics, nt)
		rt = &fp.req.Topics[len(fp.req.Topics)-1]
	}
	rt.Partitions = append(rt.Partitions, *rp)
	if fp.parts[t.Name] == nil {
		fp.parts[t.Name] = map[int32]*kmsg.ProduceResponseTopicPartition{}
	}
	fp.parts[t.Name][rp.Partition] = sp
	return true
}

// pending reports whether any partition was routed elsewhere.
func (f *produceForward) pending() bool { return len(f.byLdr) > 0 }

// send forwards every sub-request concurrently and copies the leaders'
// per-partition answers into the response. A leader that cannot be
// reached leaves its partitions NOT_LEADER_OR_FOLLOWER, which clients
// retry after refreshing their metadata.
func (f *produceForward) send(ctx context.Context) {
	var wg sync.WaitGroup
	var respMu sync.Mutex // guards f.resp.Brokers
	for leader, fp := range f.byLdr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(code int16, msg string) {
				f.b.log.Warn().Int32("leader", leader).Str("error", msg).Msg("forward produce failed")
				for _, ps := range fp.parts {
					for _, sp := range ps {
						sp.ErrorCode = code
						sp.ErrorMessage = kmsg.StringPtr(msg)
					}
				}
			}
			cl, err := f.b.fwd.client(leader, fp.addr)
			if err != nil {
				fail(kerr.NotLeaderForPartition.Code, err.Error())
				return
			}
			seeds := cl.SeedBrokers()
			if len(seeds) == 0 {
				fail(kerr.NotLeaderForPartition.Code, "no connection to the leader")
				return
			}
			kresp, err := seeds[0].Request(ctx, fp.req)
			if err != nil {
				fail(kerr.NotLeaderForPartition.Code, "forwarding to leader "+strconv.Itoa(int(leader))+" failed: "+err.Error())
				return
			}
			if fp.req.Acks == 0 {
				return
			}
			got := kresp.(*kmsg.ProduceResponse)
			if f.req.Version >= 10 && len(got.Brokers) > 0 {
				// The leader named endpoints of the listener this node
				// reached it on; the client gets those of its own.
				respMu.Lock()
				for _, e := range got.Brokers {
					br, ok := f.b.store.FSM().Broker(e.NodeID)
					if !ok || slices.ContainsFunc(f.resp.Brokers, func(x kmsg.ProduceResponseBroker) bool { return x.NodeID == e.NodeID }) {
						continue
					}
					if e.Host, e.Port, ok = f.b.endpoint(br, f.conn); ok {
						f.resp.Brokers = append(f.resp.Brokers, e)
					}
				}
				respMu.Unlock()
			}
			for _, rt := range got.Topics {
				for _, rp := range rt.Partitions {
					if sp := fp.parts[rt.Topic][rp.Partition]; sp != nil {
						*sp = rp
					}
				}
			}
		}()
	}
	wg.Wait()
}
