package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/metadata"
)

// Produce forwarding (docs/architecture.md, "Write path"): a Produce for a
// partition another node leads is sent on to that leader and its answer
// passed back, because most clients do not follow KIP-951 leader hints.
// The request goes to the leader's internal listener in an Envelope
// (58_envelope.go) carrying the client's principal, IP address and
// listener: the leader meters the client's quotas (the throttle time comes
// back in its answer, and this node mutes the client's connection for it),
// logs and answers KIP-951 hints as for that client. Authorization stays
// here, on the node that received the request (the leader's client
// listeners may need TLS and SASL; the internal listener is node traffic).
// The inner request is encoded once, before the handler returns, from the
// records in the request's frame (no decoding, no other copy). With
// produce.forward off, the partition is answered NOT_LEADER_OR_FOLLOWER,
// with the KIP-951 CurrentLeader and the leader's endpoint on Produce
// v10+. A forwarded request is never forwarded again (it arrives in an
// Envelope), so stale metadata cannot make a loop.

// forwardClientID is the client id of a node's own requests to another
// (the Envelope's outer header; the inner one keeps the client's).
const forwardClientID = "tusk-forwarder"

// forwarders holds one Kafka client per node's internal listener: the
// clients of forwarded Produce requests, replica fetches and transaction
// markers, all node traffic (internal_kafka.go).
type forwarders struct {
	// tls, set before serving, is the TLS configuration of the client to
	// a node (internal_tls.go); nil: plaintext.
	tls func(node int32) *tls.Config

	// replica carries replica fetches on connections of their own
	// (replica_conn.go).
	replica replicaConns

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
	f.replica.close()
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
	resp  *kmsg.ProduceResponse // gets the leaders' KIP-951 endpoints and throttle times
	conn  *conn                 // the client's, muted for the leaders' throttle times
	byLdr map[int32]*forwardedProduce
	// bytes is the record bytes routed to other leaders (which meter
	// them against the client's producer_byte_rate, not this node).
	bytes int
}

type forwardedProduce struct {
	addr string // the leader's internal listener
	// req collects the partitions until seal encodes it into env; its
	// records are slices of the client's frame, valid only until the
	// handler returns.
	req   *kmsg.ProduceRequest
	env   *kmsg.EnvelopeRequest
	parts map[string]map[int32]*kmsg.ProduceResponseTopicPartition
}

// mayForward reports whether this request may be forwarded at all: not
// one forwarded already (in an Envelope, or as a bare Produce by a node of
// an older version).
func (b *Broker) mayForward(rc *request) bool {
	return b.cfg.Produce.Forward && rc.client == nil && !(rc.conn.node && rc.hdr.ClientID == forwardClientID)
}

// clientEndpoint is endpoint for the client rc comes from: a forwarded
// request's client gets the addresses of its own listener.
func (b *Broker) clientEndpoint(br metadata.Broker, rc *request) (host string, port int32, ok bool) {
	if rc.client == nil {
		return b.endpoint(br, rc.conn)
	}
	addr, ok := br.Endpoint(rc.client.listener)
	if !ok {
		return "", -1, false
	}
	host, port = hostPort(addr)
	return host, port, port >= 0
}

// notLeader fills a NOT_LEADER_OR_FOLLOWER answer for a partition of t,
// with the KIP-951 hint on v10+ (and the leader's endpoint on the
// client's listener in resp).
func (b *Broker) notLeader(rc *request, resp *kmsg.ProduceResponse, version int16, t metadata.Topic, p int32, sp *kmsg.ProduceResponseTopicPartition) {
	sp.ErrorCode = kerr.NotLeaderForPartition.Code
	if version < 10 {
		return
	}
	leader, epoch := t.Leader(p)
	br, ok := b.store.FSM().Broker(leader)
	if !ok || br.State != metadata.BrokerAlive {
		return
	}
	host, port, ok := b.clientEndpoint(br, rc)
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
	f.bytes += len(rp.Records)
	if fp.parts[t.Name] == nil {
		fp.parts[t.Name] = map[int32]*kmsg.ProduceResponseTopicPartition{}
	}
	fp.parts[t.Name][rp.Partition] = sp
	return true
}

// pending reports whether any partition was routed elsewhere.
func (f *produceForward) pending() bool { return len(f.byLdr) > 0 }

// seal encodes each leader's sub-request into an Envelope for the client
// of rc. It runs before the handler returns: the records are copied once,
// from the client's frame into the inner request's bytes, a buffer of
// the frame pool (framepool.go).
func (f *produceForward) seal(rc *request) {
	if len(f.byLdr) == 0 {
		return
	}
	princ := encodeEnvelopePrincipal(rc.principal(), rc.listenerName())
	host := envelopeHost(rc.host())
	for _, fp := range f.byLdr {
		n := 256
		for _, t := range fp.req.Topics {
			n += 64 + len(t.Topic)
			for _, p := range t.Partitions {
				n += 32 + len(p.Records)
			}
		}
		buf := f.b.frames.get(n) // back in the pool once the leader answered (send)
		if buf == nil {
			buf = make([]byte, 0, n)
		}
		env := kmsg.NewPtrEnvelopeRequest()
		env.RequestData = appendRequestData(buf, rc.hdr.CorrelationID, rc.hdr.ClientID, fp.req)
		env.RequestPrincipal, env.ClientHostAddress = princ, host
		fp.env = env
		fp.req.Topics = nil // the frame's records are not to be read after this
	}
}

// send forwards every sub-request concurrently and copies the leaders'
// per-partition answers into the response. A leader that cannot be
// reached leaves its partitions NOT_LEADER_OR_FOLLOWER, which clients
// retry after refreshing their metadata.
func (f *produceForward) send(ctx context.Context) {
	var wg sync.WaitGroup
	var respMu sync.Mutex // guards f.resp.Brokers and f.resp.ThrottleMillis
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
			kresp, err := seeds[0].Request(ctx, fp.env)
			if err != nil {
				// The client may still write the request (a canceled
				// wait): its buffer is left to the garbage collector.
				fail(kerr.NotLeaderForPartition.Code, "forwarding to leader "+strconv.Itoa(int(leader))+" failed: "+err.Error())
				return
			}
			// Answered: the request was written and its buffer is free.
			f.b.frames.put(fp.env.RequestData)
			fp.env.RequestData = nil
			if fp.req.Acks == 0 {
				return
			}
			er := kresp.(*kmsg.EnvelopeResponse)
			if er.ErrorCode != 0 {
				fail(kerr.NotLeaderForPartition.Code, "leader "+strconv.Itoa(int(leader))+" refused the forwarded request: "+kerr.ErrorForCode(er.ErrorCode).Error())
				return
			}
			got := kmsg.NewPtrProduceResponse()
			got.SetVersion(f.req.Version)
			if err := readResponseData(er.ResponseData, int16(kmsg.Produce), f.req.IsFlexible(), got); err != nil {
				fail(kerr.NotLeaderForPartition.Code, "leader "+strconv.Itoa(int(leader))+": "+err.Error())
				return
			}
			respMu.Lock()
			// The leader metered the client's quota: its throttle time
			// holds the client back here.
			if got.ThrottleMillis > f.resp.ThrottleMillis {
				f.resp.ThrottleMillis = got.ThrottleMillis
			}
			f.conn.mute(time.Duration(got.ThrottleMillis) * time.Millisecond)
			// KIP-951 endpoints, which the leader gave for the client's
			// listener.
			for _, e := range got.Brokers {
				if !slices.ContainsFunc(f.resp.Brokers, func(x kmsg.ProduceResponseBroker) bool { return x.NodeID == e.NodeID }) {
					f.resp.Brokers = append(f.resp.Brokers, e)
				}
			}
			respMu.Unlock()
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
