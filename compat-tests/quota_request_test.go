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
