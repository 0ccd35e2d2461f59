// Command nullbroker is bench/compare.sh's "null broker": a Kafka listener
// that answers Produce without storing anything and does as little else as
// a broker can, so that what the benchmark client and loopback cost alone
// is measured beside the real brokers (issue 16's ceiling).
//
// It reads each connection's requests into one reused buffer, decodes them
// with kmsg and answers ApiVersions, Metadata, CreateTopics, InitProducerID,
// ListOffsets and Produce (every partition gets the next offsets of a
// per-partition counter, counted from the record batch headers). Any other
// request closes the connection. It takes tusk serve's flags so that
// compare.sh starts it like the other servers; only --kafka-listen,
// --http-listen, --ready-file and --topic-partitions mean anything.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
)

// served are the APIs answered, each at every version kmsg knows.
var served = []int16{int16(kmsg.Produce), int16(kmsg.ListOffsets), int16(kmsg.Metadata),
	int16(kmsg.ApiVersions), int16(kmsg.CreateTopics), int16(kmsg.InitProducerID)}

// broker is the state shared by all connections: topics and their
// partitions' next offsets.
type broker struct {
	host  string
	port  int32
	parts int32 // partitions of a topic created without a count

	mu     sync.Mutex
	topics map[string]*topic
	byID   map[[16]byte]*topic // Produce v13+ names topics by ID
	nextID int64
}

type topic struct {
	id   [16]byte
	next []int64 // per partition
}

func main() {
	fs := flag.NewFlagSet("nullbroker", flag.ContinueOnError)
	kafkaListen := fs.String("kafka-listen", "127.0.0.1:0", "Kafka listener")
	httpListen := fs.String("http-listen", "127.0.0.1:0", "HTTP listener (/healthz)")
	readyFile := fs.String("ready-file", "", "written with the bound addresses once serving")
	parts := fs.Int("topic-partitions", 1, "partitions of a topic created without a count")
	for _, ignored := range []string{"data-dir", "storage-fsync", "log-level"} {
		fs.String(ignored, "", "ignored")
	}
	fs.Bool("null-produce", true, "ignored (always)")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		os.Exit(2)
	}
	if err := run(*kafkaListen, *httpListen, *readyFile, int32(*parts)); err != nil {
		fmt.Fprintln(os.Stderr, "nullbroker:", err)
		os.Exit(1)
	}
}

func run(kafkaListen, httpListen, readyFile string, parts int32) error {
	kl, err := net.Listen("tcp", kafkaListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", kafkaListen, err)
	}
	hl, err := net.Listen("tcp", httpListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", httpListen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	go func() { _ = http.Serve(hl, mux) }()

	b := newBroker(kl, parts)
	if readyFile != "" {
		ready, _ := json.Marshal(map[string]any{"node_id": 0, "kafka": kl.Addr().String(), "http": hl.Addr().String()})
		if err := os.WriteFile(readyFile, ready, 0o644); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
	}
	return b.accept(kl)
}

func newBroker(kl net.Listener, parts int32) *broker {
	addr := kl.Addr().(*net.TCPAddr)
	return &broker{host: addr.IP.String(), port: int32(addr.Port), parts: parts, topics: map[string]*topic{}, byID: map[[16]byte]*topic{}}
}

// accept serves kl's connections until it is closed.
func (b *broker) accept(kl net.Listener) error {
	for {
		c, err := kl.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go b.serve(c)
	}
}

// serve answers one connection's requests in order until it closes or
// sends something not served.
func (b *broker) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	var buf, out []byte
	var size [4]byte
	for {
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(size[:]))
		if n < 8 || n > 200<<20 {
			fmt.Fprintf(os.Stderr, "nullbroker: %s: request of %d bytes\n", c.RemoteAddr(), n)
			return
		}
		if cap(buf) < n {
			// Grow to a power of two, as tusk's frame pool does, so
			// that a connection's requests, which grow as the
			// client's batches fill, reallocate only a few times.
			buf = make([]byte, 1<<bits.Len(uint(n-1)))
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		var err error
		out, err = b.handle(buf, out[:0])
		if err != nil {
			fmt.Fprintf(os.Stderr, "nullbroker: %s: %v\n", c.RemoteAddr(), err)
			return
		}
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return
			}
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// handle decodes one request frame (kafkaproto, as the broker does) and
// appends its size-prefixed response to out (nothing for acks=0 Produce).
func (b *broker) handle(frame, out []byte) ([]byte, error) {
	hdr, req, body, err := kafkaproto.ParseRequest(frame)
	if err != nil {
		return nil, err
	}
	key := hdr.APIKey
	if !isServed(key) {
		return nil, fmt.Errorf("api key %d not served", key)
	}
	if hdr.APIVersion > req.MaxVersion() {
		if key != int16(kmsg.ApiVersions) {
			return nil, fmt.Errorf("api %d version %d not served", key, hdr.APIVersion)
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		b.apiVersions(resp)
		return kafkaproto.AppendResponse(out, hdr.CorrelationID, false, resp), nil
	}
	if err := req.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", kmsg.NameForKey(key), hdr.APIVersion, err)
	}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		rr := r.ResponseKind().(*kmsg.ApiVersionsResponse)
		b.apiVersions(rr)
		resp = rr
	case *kmsg.MetadataRequest:
		resp = b.metadata(r)
	case *kmsg.CreateTopicsRequest:
		resp = b.createTopics(r)
	case *kmsg.InitProducerIDRequest:
		rr := r.ResponseKind().(*kmsg.InitProducerIDResponse)
		b.mu.Lock()
		b.nextID++
		rr.ProducerID = b.nextID
		b.mu.Unlock()
		resp = rr
	case *kmsg.ListOffsetsRequest:
		resp = b.listOffsets(r)
	case *kmsg.ProduceRequest:
		rr := b.produce(r)
		if r.Acks == 0 {
			return out, nil
		}
		resp = rr
	}
	return kafkaproto.AppendResponse(out, hdr.CorrelationID, kafkaproto.ResponseHeaderFlexible(key, hdr.Flexible), resp), nil
}

func isServed(key int16) bool {
	for _, k := range served {
		if k == key {
			return true
		}
	}
	return false
}

func (b *broker) apiVersions(resp *kmsg.ApiVersionsResponse) {
	for _, k := range served {
		v := kmsg.NewApiVersionsResponseApiKey()
		v.ApiKey = k
		v.MaxVersion = kmsg.RequestForKey(k).MaxVersion()
		resp.ApiKeys = append(resp.ApiKeys, v)
	}
}

// topicLocked returns name's topic, creating it with parts partitions
// (b.parts when parts ≤ 0) if it does not exist; b.mu is held.
func (b *broker) topicLocked(name string, parts int32) (*topic, bool) {
	if t, ok := b.topics[name]; ok {
		return t, false
	}
	if parts <= 0 {
		parts = b.parts
	}
	t := &topic{next: make([]int64, parts)}
	_, _ = rand.Read(t.id[:])
	b.topics[name] = t
	b.byID[t.id] = t
	return t, true
}

func (b *broker) metadata(req *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID, br.Host, br.Port = 0, b.host, b.port
	resp.Brokers = append(resp.Brokers, br)
	resp.ControllerID = 0
	cluster := "null"
	resp.ClusterID = &cluster
	b.mu.Lock()
	defer b.mu.Unlock()
	var names []string
	if req.Topics == nil {
		for name := range b.topics {
			names = append(names, name)
		}
	}
	for _, rt := range req.Topics {
		if rt.Topic != nil {
			names = append(names, *rt.Topic)
		}
	}
	for _, name := range names {
		t, _ := b.topicLocked(name, 0)
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = kmsg.StringPtr(name)
		mt.TopicID = t.id
		for p := range t.next {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = int32(p)
			mp.Leader = 0
			mp.Replicas = []int32{0}
			mp.ISR = []int32{0}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp
}

func (b *broker) createTopics(req *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range req.Topics {
		t, created := b.topicLocked(rt.Topic, rt.NumPartitions)
		ct := kmsg.NewCreateTopicsResponseTopic()
		ct.Topic = rt.Topic
		ct.TopicID = t.id
		ct.NumPartitions = int32(len(t.next))
		ct.ReplicationFactor = 1
		if !created {
			ct.ErrorCode = kerr.TopicAlreadyExists.Code
		}
		resp.Topics = append(resp.Topics, ct)
	}
	return resp
}

func (b *broker) listOffsets(req *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range req.Topics {
		lt := kmsg.NewListOffsetsResponseTopic()
		lt.Topic = rt.Topic
		t := b.topics[rt.Topic]
		for _, rp := range rt.Partitions {
			lp := kmsg.NewListOffsetsResponseTopicPartition()
			lp.Partition = rp.Partition
			switch {
			case t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.next):
				lp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.Timestamp == -2:
				lp.Offset = 0
			default:
				lp.Offset = t.next[rp.Partition]
			}
			lt.Partitions = append(lt.Partitions, lp)
		}
		resp.Topics = append(resp.Topics, lt)
	}
	return resp
}

func (b *broker) produce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range req.Topics {
		pt := kmsg.NewProduceResponseTopic()
		pt.Topic, pt.TopicID = rt.Topic, rt.TopicID
		t := b.topics[rt.Topic]
		if req.Version >= 13 {
			t = b.byID[rt.TopicID]
		}
		for _, rp := range rt.Partitions {
			pp := kmsg.NewProduceResponseTopicPartition()
			pp.Partition = rp.Partition
			pp.LogAppendTime = -1
			if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.next) {
				pp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				pp.BaseOffset = t.next[rp.Partition]
				t.next[rp.Partition] += countRecords(rp.Records)
			}
			pt.Partitions = append(pt.Partitions, pp)
		}
		resp.Topics = append(resp.Topics, pt)
	}
	return resp
}

// countRecords sums the record counts of the batch headers in b (magic 2:
// the count is the int32 at byte 57 of each batch).
func countRecords(b []byte) int64 {
	var n int64
	for len(b) >= 61 {
		total := 12 + int(binary.BigEndian.Uint32(b[8:12]))
		n += int64(binary.BigEndian.Uint32(b[57:61]))
		if total > len(b) || total < 61 {
			break
		}
		b = b[total:]
	}
	return n
}
