package txn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memPersister keeps every persisted record; fail makes Persist fail;
// stall makes Persist wait until released or its ctx is done.
type memPersister struct {
	mu      sync.Mutex
	recs    []Record
	fail    error
	stall   chan struct{}
	stalled chan struct{} // gets a value each time a Persist starts waiting
}

func (p *memPersister) Persist(ctx context.Context, recs []Record) error {
	p.mu.Lock()
	stall, stalled := p.stall, p.stalled
	p.mu.Unlock()
	if stall != nil {
		stalled <- struct{}{}
		select {
		case <-stall:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	for _, r := range recs {
		c := Record{Key: append([]byte(nil), r.Key...)}
		if r.Value != nil {
			c.Value = append([]byte(nil), r.Value...)
		}
		p.recs = append(p.recs, c)
	}
	return nil
}

func (p *memPersister) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

// stallAll makes later Persists wait; release lets them go on.
func (p *memPersister) stallAll() (stalled chan struct{}, release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	p.stall, p.stalled = ch, make(chan struct{}, 16)
	var once sync.Once
	return p.stalled, func() {
		once.Do(func() {
			p.mu.Lock()
			p.stall = nil
			p.mu.Unlock()
			close(ch)
		})
	}
}

func (p *memPersister) records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.recs...)
}

// fakeMarkers records every Write; failures makes the next Writes fail;
// block makes Writes wait for release (or ctx).
type fakeMarkers struct {
	mu       sync.Mutex
	reqs     []MarkerRequest
	calls    int
	failures int
	failWith error
	block    chan struct{}
}

func (f *fakeMarkers) Write(ctx context.Context, m MarkerRequest) error {
	f.mu.Lock()
	f.calls++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		if f.failWith != nil {
			return f.failWith
		}
		return errors.New("partition leader unreachable")
	}
	f.reqs = append(f.reqs, m)
	return nil
}

func (f *fakeMarkers) blockAll() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.block = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.block = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

func (f *fakeMarkers) written() []MarkerRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]MarkerRequest(nil), f.reqs...)
}

func (f *fakeMarkers) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type fakeIDs struct {
	mu   sync.Mutex
	next int64
	fail error
}

func (f *fakeIDs) Next(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	f.next++
	return f.next, nil
}

type harness struct {
	t       *testing.T
	clock   *fakeClock
	p       *memPersister
	markers *fakeMarkers
	ids     *fakeIDs
	c       *Coordinator
	cfg     Config
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testConfig(clock *fakeClock) Config {
	return Config{
		Now:          clock.Now,
		TickInterval: -1,
		RetryBackoff: time.Millisecond,
		OffsetsPartition: func(group string) (string, int32) {
			return "__consumer_offsets", int32(len(group))
		},
	}
}

// newHarness returns a loaded coordinator (coordinator epoch 7) with
// producer ids allocated from 1000.
func newHarness(t *testing.T) *harness {
	t.Helper()
	clock := &fakeClock{t: t0}
	h := &harness{t: t, clock: clock, p: &memPersister{}, markers: &fakeMarkers{}, ids: &fakeIDs{next: 999}}
	h.cfg = testConfig(clock)
	h.c = New(h.cfg, 7, h.p, h.markers, h.ids)
	t.Cleanup(h.c.Close)
	h.c.ReplayDone(context.Background())
	return h
}

func strp(s string) *string { return &s }

func (h *harness) init(id string, timeoutMs int32) *kmsg.InitProducerIDResponse {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.TransactionalID = strp(id)
	req.TransactionTimeoutMillis = timeoutMs
	return h.c.InitProducerID(context.Background(), req)
}

func (h *harness) initExpect(version int16, id string, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = version
	req.TransactionalID = strp(id)
	req.TransactionTimeoutMillis = 60000
	req.ProducerID, req.ProducerEpoch = pid, epoch
	return h.c.InitProducerID(context.Background(), req)
}

// mustInit initializes id and returns its producer id and epoch.
func (h *harness) mustInit(id string) (int64, int16) {
	h.t.Helper()
	r := h.init(id, 60000)
	if r.ErrorCode != 0 {
		h.t.Fatalf("InitProducerID(%s): %v", id, kerr.ErrorForCode(r.ErrorCode))
	}
	return r.ProducerID, r.ProducerEpoch
}

// add sends AddPartitionsToTxn v3 and returns the codes by "topic/p".
func (h *harness) addV(version int16, id string, pid int64, epoch int16, topic string, parts ...int32) map[tp]int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, parts
	req.Topics = append(req.Topics, rt)
	resp := h.c.AddPartitionsToTxn(context.Background(), req)
	out := map[tp]int16{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[tp{t.Topic, p.Partition}] = p.ErrorCode
		}
	}
	if len(out) != len(parts) {
		h.t.Fatalf("AddPartitionsToTxn answered %d partitions for %d", len(out), len(parts))
	}
	return out
}

// add adds partitions with v3 and returns their common code (fails the
// test if the partitions got different codes).
func (h *harness) add(id string, pid int64, epoch int16, topic string, parts ...int32) int16 {
	h.t.Helper()
	codes := h.addV(3, id, pid, epoch, topic, parts...)
	code := int16(-2)
	for _, c := range codes {
		if code != -2 && c != code {
			h.t.Fatalf("partitions answered differently: %v", codes)
		}
		code = c
	}
	return code
}

func (h *harness) end(version int16, id string, pid int64, epoch int16, commit bool) int16 {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
	return h.c.EndTxn(context.Background(), req).ErrorCode
}

func (h *harness) addOffsets(version int16, id string, pid int64, epoch int16, group string) int16 {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = id, pid, epoch, group
	return h.c.AddOffsetsToTxn(context.Background(), req).ErrorCode
}

func (h *harness) describe(id string) kmsg.DescribeTransactionsResponseTransactionState {
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{id}
	resp := h.c.DescribeTransactions(context.Background(), req)
	if len(resp.TransactionStates) != 1 {
		h.t.Fatalf("DescribeTransactions answered %d states", len(resp.TransactionStates))
	}
	return resp.TransactionStates[0]
}

// waitState polls until id is in state (and epoch), failing after 5s.
func (h *harness) waitState(id string, state State, epoch int16) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := h.describe(id)
		if d.ErrorCode == 0 && d.State == state.String() && d.ProducerEpoch == epoch {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: state %s epoch %d error %d, want %s epoch %d", id, d.State, d.ProducerEpoch, d.ErrorCode, state, epoch)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor polls cond until true, failing after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// decoded is a persisted record in readable form.
type decoded struct {
	id        string
	tombstone bool
	pid       int64
	epoch     int16
	timeoutMs int32
	state     State
	parts     map[string][]int32
	startMs   int64
	updateMs  int64
}

func decode(t *testing.T, r Record) decoded {
	t.Helper()
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(r.Key); err != nil || k.Version != 0 {
		t.Fatalf("key %x: version %d, %v", r.Key, k.Version, err)
	}
	d := decoded{id: k.TransactionalID}
	if r.Value == nil {
		d.tombstone = true
		return d
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(r.Value); err != nil || v.Version != 0 {
		t.Fatalf("value %x: version %d, %v", r.Value, v.Version, err)
	}
	d.pid, d.epoch, d.timeoutMs, d.state = v.ProducerID, v.ProducerEpoch, v.TimeoutMillis, State(v.State)
	d.startMs, d.updateMs = v.StartTimestamp, v.LastUpdateTimestamp
	d.parts = map[string][]int32{}
	for _, tt := range v.Topics {
		d.parts[tt.Topic] = tt.Partitions
	}
	return d
}

func (h *harness) decodedRecords() []decoded {
	var out []decoded
	for _, r := range h.p.records() {
		out = append(out, decode(h.t, r))
	}
	return out
}
