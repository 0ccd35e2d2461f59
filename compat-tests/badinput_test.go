package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka error codes asserted below.
const (
	codeCorruptMessage     = 2
	codeUnknownTopicOrPart = 3
	codeMessageTooLarge    = 10
	codeInvalidTopic       = 17
	codeUnsupportedVersion = 35
)

// TestBadInput sends malformed and invalid requests on raw connections while
// a healthy kgo client keeps producing and consuming on its own
// connections; the healthy client must see no error, and the broker must
// stay up.
func TestBadInput(t *testing.T) {
	setupDone := cardSetup(t, "raw kmsg")
	n := startTusk(t,
		withFlag("kafka-request-max-bytes", "1048576"),
		withFlag("kafka-message-max-bytes", "10000"),
	)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, "healthy", 1, nil)
	createTopic(t, adm, "bad-one", 1, nil)

	// Healthy traffic on separate connections for the whole test.
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		healthyErrs []error
		produced    [][]byte
	)
	noteErr := func(err error) {
		mu.Lock()
		healthyErrs = append(healthyErrs, err)
		mu.Unlock()
	}
	prod := newKgo(t, n, kgo.DefaultProduceTopic("healthy"), kgo.RequiredAcks(kgo.AllISRAcks()))
	cons := newKgo(t, n, kgo.ConsumeTopics("healthy"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			v := fmt.Appendf(nil, "healthy-%06d", i)
			r := &kgo.Record{Value: v}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				if ctx.Err() == nil {
					noteErr(fmt.Errorf("healthy produce %d: %w", i, err))
				}
				return
			}
			if r.Offset != int64(i) {
				noteErr(fmt.Errorf("healthy record %d acknowledged at offset %d", i, r.Offset))
			}
			mu.Lock()
			produced = append(produced, v)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	consumed := 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) {
					noteErr(fmt.Errorf("healthy consume: %w", err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset != int64(consumed) || string(r.Value) != fmt.Sprintf("healthy-%06d", consumed) {
					noteErr(fmt.Errorf("healthy consume: got %d=%q, want offset %d", r.Offset, r.Value, consumed))
				}
				consumed++
			})
		}
	}()

	av := apiVersions(t, n.Kafka)
	produceV := pickVersion(t, av, kmsg.Produce, 3, 8) // non-flexible, v2 batches, topic names
	setupDone()

	t.Run("malformed frames", func(t *testing.T) {
		card(t, "raw kmsg", "malformed frames")
		// Length field pointing past a short body, then half-close.
		rc := dialRaw(t, n.Kafka)
		b := binary.BigEndian.AppendUint32(nil, 100)
		b = append(b, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0)
		if err := rc.write(b); err != nil {
			t.Fatal(err)
		}
		_ = rc.c.(interface{ CloseWrite() error }).CloseWrite()
		if got, _ := rc.expectClosed(5 * time.Second); got != "closed" {
			t.Errorf("short body then EOF: broker answered instead of closing")
		}
		// A Metadata v4 header followed by a topic array claiming 2^31-1
		// entries and no data.
		rc = dialRaw(t, n.Kafka)
		p := appendRequestHeader(nil, kmsg.Metadata.Int16(), 4, 7, "bad", false)
		p = binary.BigEndian.AppendUint32(p, 0x7fffffff)
		if err := rc.write(frame(p)); err != nil {
			t.Fatal(err)
		}
		if got, body := rc.expectClosed(5 * time.Second); got == "response" {
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 7 {
				t.Errorf("garbage Metadata: response with wrong correlation id")
			}
			t.Logf("garbage Metadata body answered (%d bytes) instead of closing", len(body))
		}
		// Pure random bytes, several times.
		for i := range 5 {
			rc = dialRaw(t, n.Kafka)
			junk := make([]byte, 64+mrand.IntN(4096))
			_, _ = rand.Read(junk)
			if i == 0 {
				binary.BigEndian.PutUint32(junk, uint32(len(junk)-4)) // a complete frame of junk
			}
			if err := rc.write(junk); err != nil {
				continue // already closed: fine
			}
			_ = rc.c.(interface{ CloseWrite() error }).CloseWrite()
			rc.expectClosed(5 * time.Second)
		}
	})

	t.Run("frame over request max", func(t *testing.T) {
		card(t, "raw kmsg", "frame over socket.request.max.bytes")
		for _, size := range []uint32{2 << 20, 0xffffffff, 0x80000000} {
			rc := dialRaw(t, n.Kafka)
			b := binary.BigEndian.AppendUint32(nil, size)
			b = append(b, bytes.Repeat([]byte{0}, 1024)...)
			if err := rc.write(b); err != nil {
				continue
			}
			// We keep the connection open and send nothing more: the broker
			// must close it on its own rather than wait for the rest.
			if got, _ := rc.expectClosed(5 * time.Second); got != "closed" {
				t.Errorf("frame size %d: broker answered instead of closing", size)
			}
		}
	})

	t.Run("unknown api and versions", func(t *testing.T) {
		card(t, "raw kmsg", "unknown API key / unsupported versions")
		// Unknown API key 9999.
		rc := dialRaw(t, n.Kafka)
		p := appendRequestHeader(nil, 9999, 0, 11, "bad", false)
		if err := rc.write(frame(p)); err != nil {
			t.Fatal(err)
		}
		if got, body := rc.expectClosed(5 * time.Second); got == "response" {
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 11 {
				t.Errorf("unknown API key: response with wrong correlation id")
			}
		}

		// ApiVersions v99: a v0-format response with UNSUPPORTED_VERSION.
		rc = dialRaw(t, n.Kafka)
		p = appendRequestHeader(nil, kmsg.ApiVersions.Int16(), 99, 12, "bad", true)
		p = append(p, 0) // empty tagged fields of a would-be flexible body
		if err := rc.write(frame(p)); err != nil {
			t.Fatal(err)
		}
		body, err := rc.readFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("ApiVersions v99: no response: %v", err)
		}
		if len(body) < 6 || binary.BigEndian.Uint32(body) != 12 {
			t.Fatalf("ApiVersions v99: bad response header % x", body[:min(len(body), 8)])
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		if err := resp.ReadFrom(body[4:]); err != nil {
			t.Fatalf("ApiVersions v99: response is not a v0 body: %v (% x)", err, body)
		}
		if resp.ErrorCode != codeUnsupportedVersion {
			t.Errorf("ApiVersions v99: error %s, want UNSUPPORTED_VERSION(35)", errName(resp.ErrorCode))
		}
		found := false
		for _, k := range resp.ApiKeys {
			if k.ApiKey == kmsg.ApiVersions.Int16() {
				found = true
			}
		}
		if !found {
			t.Errorf("ApiVersions v99 response does not list ApiVersions' own supported range (%d keys)", len(resp.ApiKeys))
		}
		// The connection stays usable: a v0 request on it works.
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 0
		if r, err := rc.roundTrip(req); err != nil {
			t.Errorf("ApiVersions v0 after v99 on the same connection: %v", err)
		} else if ec := r.(*kmsg.ApiVersionsResponse).ErrorCode; ec != 0 {
			t.Errorf("ApiVersions v0 after v99: %s", errName(ec))
		}

		// Unsupported version of another API (Metadata v99).
		rc = dialRaw(t, n.Kafka)
		p = appendRequestHeader(nil, kmsg.Metadata.Int16(), 99, 13, "bad", true)
		p = append(p, 0, 0) // something body-ish
		if err := rc.write(frame(p)); err != nil {
			t.Fatal(err)
		}
		if got, body := rc.expectClosed(5 * time.Second); got == "response" {
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 13 {
				t.Errorf("Metadata v99: response with wrong correlation id")
			}
		}
	})

	t.Run("corrupt crc", func(t *testing.T) {
		card(t, "raw kmsg", "produce with bad CRC → CORRUPT_MESSAGE")
		rc := dialRaw(t, n.Kafka)
		good := buildBatch([][]byte{[]byte("crc-ok")}, time.Now().UnixMilli())
		if ec, off := produceRaw(t, rc, produceV, "bad-one", 0, good); ec != 0 {
			t.Fatalf("control: valid hand-built batch rejected: %s", errName(ec))
		} else if off != 0 {
			t.Fatalf("control batch at offset %d, want 0", off)
		}
		bad := buildBatch([][]byte{[]byte("crc-bad")}, time.Now().UnixMilli())
		bad[len(bad)-2] ^= 0xff // flip a byte in the record body; CRC now wrong
		if ec, _ := produceRaw(t, rc, produceV, "bad-one", 0, bad); ec != codeCorruptMessage {
			t.Errorf("bad CRC: %s, want CORRUPT_MESSAGE(2)", errName(ec))
		}
		if e := endOffsets(t, adm, "bad-one")[0]; e != 1 {
			t.Errorf("end offset after corrupt batch: %d, want 1", e)
		}
	})

	t.Run("message too large", func(t *testing.T) {
		card(t, "raw kmsg", "batch over message.max.bytes → MESSAGE_TOO_LARGE")
		rc := dialRaw(t, n.Kafka)
		start := endOffsets(t, adm, "bad-one")[0]
		small := buildBatch([][]byte{bytes.Repeat([]byte("s"), 5000)}, time.Now().UnixMilli())
		if ec, off := produceRaw(t, rc, produceV, "bad-one", 0, small); ec != 0 || off != start {
			t.Fatalf("5000-byte batch: %s at %d, want success at %d", errName(ec), off, start)
		}
		big := buildBatch([][]byte{bytes.Repeat([]byte("b"), 20000)}, time.Now().UnixMilli())
		if ec, _ := produceRaw(t, rc, produceV, "bad-one", 0, big); ec != codeMessageTooLarge {
			t.Errorf("20000-byte batch with message.max.bytes 10000: %s, want MESSAGE_TOO_LARGE(10)", errName(ec))
		}
		if e := endOffsets(t, adm, "bad-one")[0]; e != start+1 {
			t.Errorf("end offset after oversize batch: %d, want %d", e, start+1)
		}
	})

	t.Run("invalid topic names", func(t *testing.T) {
		card(t, "raw kmsg", "invalid topic name → INVALID_TOPIC_EXCEPTION")
		names := []string{"bad topic!", "..", ".", "", string(bytes.Repeat([]byte("x"), 250))}
		rc := dialRaw(t, n.Kafka)
		ct := kmsg.NewPtrCreateTopicsRequest()
		ct.Version = pickVersion(t, av, kmsg.CreateTopics, 0, 4) // non-flexible
		ct.TimeoutMillis = 10000
		for _, name := range names {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic = name
			rt.NumPartitions = 1
			rt.ReplicationFactor = -1
			if ct.Version < 4 {
				rt.ReplicationFactor = 1
			}
			ct.Topics = append(ct.Topics, rt)
		}
		resp, err := rc.roundTrip(ct)
		if err != nil {
			t.Fatalf("CreateTopics: %v", err)
		}
		got := map[string]int16{}
		for _, rt := range resp.(*kmsg.CreateTopicsResponse).Topics {
			got[rt.Topic] = rt.ErrorCode
		}
		for _, name := range names {
			if ec, ok := got[name]; !ok || ec != codeInvalidTopic {
				t.Errorf("CreateTopics %q: present=%v %s, want INVALID_TOPIC_EXCEPTION(17)", name, ok, errName(ec))
			}
		}
		for _, name := range []string{"bad topic!", ".."} {
			if ec, _ := produceRaw(t, rc, produceV, name, 0, buildBatch([][]byte{[]byte("x")}, time.Now().UnixMilli())); ec != codeInvalidTopic {
				t.Errorf("Produce to %q: %s, want INVALID_TOPIC_EXCEPTION(17)", name, errName(ec))
			}
		}
		// Metadata (auto-create on) must not create them either.
		md := kmsg.NewPtrMetadataRequest()
		md.Version = pickVersion(t, av, kmsg.Metadata, 4, 8)
		md.AllowAutoTopicCreation = true
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("bad topic!")
		md.Topics = append(md.Topics, rt)
		if r, err := rc.roundTrip(md); err != nil {
			t.Errorf("Metadata for invalid topic: %v", err)
		} else if mr := r.(*kmsg.MetadataResponse); len(mr.Topics) != 1 || mr.Topics[0].ErrorCode != codeInvalidTopic {
			t.Errorf("Metadata for %q: %+v, want INVALID_TOPIC_EXCEPTION(17)", "bad topic!", mr.Topics)
		}
		tds, err := adm.ListTopics(context.Background())
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		for _, name := range names {
			if tds.Has(name) {
				t.Errorf("invalid topic %q exists after the attempts", name)
			}
		}
	})

	t.Run("unknown partition and magic 1", func(t *testing.T) {
		card(t, "raw kmsg", "partition 99 / magic-1 message set rejected")
		rc := dialRaw(t, n.Kafka)
		if ec, _ := produceRaw(t, rc, produceV, "bad-one", 99, buildBatch([][]byte{[]byte("p99")}, time.Now().UnixMilli())); ec != codeUnknownTopicOrPart {
			t.Errorf("produce to partition 99: %s, want UNKNOWN_TOPIC_OR_PARTITION(3)", errName(ec))
		}
		start := endOffsets(t, adm, "bad-one")[0]
		ec, _ := produceRaw(t, rc, produceV, "bad-one", 0, buildMagic1([]byte("k"), []byte("magic-one"), time.Now().UnixMilli()))
		if ec == 0 {
			t.Errorf("magic-1 message set in Produce v%d accepted", produceV)
		} else {
			t.Logf("magic-1 message set in Produce v%d: %s", produceV, errName(ec))
		}
		if e := endOffsets(t, adm, "bad-one")[0]; e != start {
			t.Errorf("end offset after magic-1 attempt: %d, want %d", e, start)
		}
	})

	// Let healthy traffic run a little past the last bad request.
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Run("healthy traffic", func(t *testing.T) {
		card(t, "franz-go kgo", "healthy traffic during bad input")
		checkHealthy(t, n, &mu, healthyErrs, &produced)
	})
}

func checkHealthy(t *testing.T, n *node, mu *sync.Mutex, healthyErrs []error, producedp *[][]byte) {
	adm, _ := newAdm(t, n)
	mu.Lock()
	for _, err := range healthyErrs {
		t.Errorf("healthy client: %v", err)
	}
	want := append([][]byte(nil), (*producedp)...)
	mu.Unlock()
	if len(want) < 10 {
		t.Errorf("healthy producer only got %d records through", len(want))
	}
	ends := endOffsets(t, adm, "healthy")
	if ends[0] != int64(len(want)) {
		t.Errorf("healthy end offset %d, acknowledged %d", ends[0], len(want))
	}
	got := consumeAll(t, n, "healthy", ends, 30*time.Second)
	for i, r := range got[0] {
		if i >= len(want) || !bytes.Equal(r.Value, want[i]) || r.Offset != int64(i) {
			t.Fatalf("healthy record #%d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
	if code := n.healthz(t); code != 200 {
		t.Errorf("/healthz = %d after bad input, want 200", code)
	}
	if n.exited() {
		t.Fatalf("broker exited during bad input: %v", n.waitErr)
	}
}
