package compat

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestRequestPercentageQuota: with request_percentage 0.1 on client id
// "busy" (a thousandth of a thread's time), a client sending Metadata
// requests back to back gets a response with throttle_time_ms > 0 within
// a few dozen requests, and the request after it waits at least that
// long (the node mutes the connection, and kgo waits too); a client with
// another id sending as many requests is never throttled; ApiVersions is
// exempt (its responses carry no throttle).
func TestRequestPercentageQuota(t *testing.T) {
	card(t, "franz-go kgo + kadm", "request_percentage quota throttles a busy client id only")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	ctx := ctxTimeout(t, 60*time.Second)
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("busy")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "request_percentage", Value: 0.1}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %v", err, res)
	}
	var busyHook, freeHook throttleHook
	busy := newKgo(t, n, kgo.ClientID("busy"), kgo.WithHooks(&busyHook))
	free := newKgo(t, n, kgo.ClientID("free"), kgo.WithHooks(&freeHook))
	metadata := func(cl *kgo.Client) int32 {
		t.Helper()
		r, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		return r.(*kmsg.MetadataResponse).ThrottleMillis
	}
	sent, throttle := 0, int32(0)
	for throttle == 0 && sent < 2000 {
		throttle = metadata(busy)
		sent++
	}
	if throttle == 0 {
		t.Fatalf("busy: %d Metadata requests, none throttled", sent)
	}
	t.Logf("busy: throttled %d ms after %d requests", throttle, sent)
	began := time.Now()
	metadata(busy)
	if waited := time.Since(began); waited < time.Duration(throttle)*time.Millisecond*9/10 {
		t.Errorf("the request after a %d ms throttle was answered after %v", throttle, waited)
	}
	for i := 0; i < sent; i++ {
		if th := metadata(free); th != 0 {
			t.Fatalf("free: request %d throttled %d ms", i, th)
		}
	}
	if freeHook.n.Load() != 0 {
		t.Errorf("free client saw %d throttles", freeHook.n.Load())
	}
	if busyHook.n.Load() == 0 {
		t.Errorf("busy client's kgo saw no throttle")
	}
}

// TestProducerQuotaMutesConnection: Kafka's muting (KIP-219) with a
// client that ignores throttle_time_ms. With producer_byte_rate 20,000
// on the raw connection's client id, a 60 KB Produce is answered at once
// with a throttle of about 2 s (60 KB less the 1 s burst, at 20 KB/s),
// and a second Produce sent on the same connection right after it is
// answered only once that time has passed; meanwhile a client with
// another client id is answered at once.
func TestProducerQuotaMutesConnection(t *testing.T) {
	card(t, "raw kmsg + franz-go kgo", "producer_byte_rate: a client ignoring the throttle is muted")
	n := startTusk(t)
	adm, _ := newAdm(t, n)
	createTopic(t, adm, "mute", 1, nil)
	ctx := ctxTimeout(t, 60*time.Second)
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("tusk-compat-raw")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 20000}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %v", err, res)
	}
	rc := dialRaw(t, n.Kafka)
	v := pickVersion(t, apiVersions(t, n.Kafka), kmsg.Produce, 3, 9)
	produce := func(value []byte) (*kmsg.ProduceResponse, time.Duration) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = v, -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "mute"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = buildBatch([][]byte{value}, time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		began := time.Now()
		resp, err := rc.roundTrip(req)
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		pr := resp.(*kmsg.ProduceResponse)
		if code := pr.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce: %s", errName(code))
		}
		return pr, time.Since(began)
	}
	start := time.Now()
	first, took := produce(make([]byte, 60000))
	if first.ThrottleMillis < 1500 || first.ThrottleMillis > 2100 || took > time.Second {
		t.Fatalf("60 KB produce: throttle %d ms, answered in %v; want about 2000 ms, answered at once", first.ThrottleMillis, took)
	}
	// Another client id meanwhile: not muted.
	other := newKgo(t, n, kgo.ClientID("unlimited"), kgo.DefaultProduceTopic("mute"))
	began := time.Now()
	if err := other.ProduceSync(ctx, &kgo.Record{Value: make([]byte, 60000)}).FirstErr(); err != nil {
		t.Fatalf("unlimited produce: %v", err)
	}
	otherTook := time.Since(began)
	produce([]byte("small"))
	elapsed := time.Since(start)
	t.Logf("throttle %d ms; the next request on the connection answered %v after the first was sent; another client id answered in %v", first.ThrottleMillis, elapsed, otherTook)
	if elapsed < time.Duration(first.ThrottleMillis)*time.Millisecond*9/10 {
		t.Errorf("the request after a %d ms throttle was answered %v after the first was sent, want at least 90%% of the throttle", first.ThrottleMillis, elapsed)
	}
	if otherTook > time.Second {
		t.Errorf("another client id took %v while the limited connection was muted", otherTook)
	}
}
