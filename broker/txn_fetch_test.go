package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// testTxnBatch is a batch of values from producer pid at epoch starting
// at sequence seq (-1: none), transactional or not (pid -1: a plain
// batch).
func testTxnBatch(pid int64, epoch int16, seq int32, transactional bool, values ...string) []byte {
	kvs := make([]kafkaproto.KV, len(values))
	for i, v := range values {
		kvs[i] = kafkaproto.KV{Key: []byte("k"), Value: []byte(v)}
	}
	b := kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), kvs)
	if pid < 0 {
		return b
	}
	attrs := uint16(0)
	if transactional {
		attrs = kafkaproto.AttrTransactional
	}
	binary.BigEndian.PutUint16(b[21:], attrs)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// testLogAppend appends to topic/p's log on b as a Produce would (under
// the leadership when replicated) and, for a marker (batch nil), writes
// pid's COMMIT or ABORT marker with Log.AppendMarker. It waits until the
// high watermark covers what it appended and returns its first offset.
func testLogAppend(t *testing.T, b *Broker, topic string, p int32, batch []byte, pid int64, epoch int16, commit bool) int64 {
	t.Helper()
	l, code := b.partitionLog(topic, p)
	if code != 0 {
		t.Fatalf("partition %s-%d: error code %d", topic, p, code)
	}
	leaderEpoch := int32(0)
	release := func(int64) {}
	if l.Replicated() {
		lead := b.repl.Leader(b.tp(topic, p))
		if lead == nil {
			t.Fatalf("%s-%d: no leadership", topic, p)
		}
		var err error
		leaderEpoch, release, err = lead.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
	} else {
		_, e, _ := b.store.FSM().PartitionLeader(topic, p)
		leaderEpoch = max(e, 0)
	}
	var off int64
	if batch == nil {
		var err error
		off, err = l.AppendMarker(pid, epoch, 0, commit, leaderEpoch)
		release(1)
		if err != nil {
			t.Fatalf("marker: %v", err)
		}
	} else {
		h, err := kafkaproto.ValidateBatch(batch)
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Append(batch, h, leaderEpoch)
		release(int64(len(batch)))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		off = res.BaseOffset
	}
	waitFor(t, func() bool { return l.HighWatermark() == l.LogEndOffset() }, "high watermark at the log end")
	return off
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// batchLasts is the last offset of each batch in data.
func batchLasts(t *testing.T, data []byte) []int64 {
	t.Helper()
	var lasts []int64
	if err := kafkaproto.SplitBatches(data, func(_ []byte, h kafkaproto.BatchHeader) error {
		lasts = append(lasts, h.LastOffset())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return lasts
}

type offVal struct {
	Offset int64
	Value  string
}

// consumeN reads n records of topic from the start with cl's isolation.
func consumeN(t *testing.T, ctx context.Context, b *Broker, topic string, n int, opts ...kgo.Opt) []offVal {
	t.Helper()
	cl := newClient(t, b, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	var got []offVal
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %v, want %d records: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, offVal{r.Offset, string(r.Value)}) })
	}
	return got
}

// setupTxnLog writes, to a one-partition topic:
//
//	0 a0, 1 a1 (plain); 2 c0, 3 c1 (pid 100, committed at 6);
//	4 x0, 5 x1 (pid 200, aborted at 7); 8 a2 (plain);
//	9 o0 (pid 300, open); 10 a3 (plain)
//
// so the high watermark is 11 and the last stable offset 9.
func setupTxnLog(t *testing.T, ctx context.Context, b *Broker, topic string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		batch  []byte
		pid    int64
		commit bool
		want   int64
	}{
		{batch: testTxnBatch(-1, 0, 0, false, "a0", "a1"), want: 0},
		{batch: testTxnBatch(100, 0, 0, true, "c0", "c1"), want: 2},
		{batch: testTxnBatch(200, 0, 0, true, "x0", "x1"), want: 4},
		{pid: 100, commit: true, want: 6},
		{pid: 200, commit: false, want: 7},
		{batch: testTxnBatch(-1, 0, 0, false, "a2"), want: 8},
		{batch: testTxnBatch(300, 0, 0, true, "o0"), want: 9},
		{batch: testTxnBatch(-1, 0, 0, false, "a3"), want: 10},
	}
	for i, s := range steps {
		if off := testLogAppend(t, b, topic, 0, s.batch, s.pid, 0, s.commit); off != s.want {
			t.Fatalf("step %d: offset %d, want %d", i, off, s.want)
		}
	}
}

func TestFetchReadCommitted(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-fetch"
	setupTxnLog(t, ctx, b, topic)
	l, _ := b.partitionLog(topic, 0)
	if hw, lso := l.HighWatermark(), l.LastStableOffset(); hw != 11 || lso != 9 {
		t.Fatalf("HW %d LSO %d, want 11 and 9", hw, lso)
	}

	// The raw answer, copied and with sendfile: records end below the
	// LSO, and the aborted transaction is listed.
	cl := newClient(t, b)
	for _, sendfileOff := range []bool{true, false} {
		b.sendfileOff.Store(sendfileOff)
		for _, iso := range []int8{0, 1} {
			req := kmsg.NewPtrFetchRequest()
			req.Version = 11
			req.ReplicaID = -1
			req.MaxBytes = 1 << 20
			req.IsolationLevel = iso
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = topic
			md, _ := b.store.FSM().Topic(topic)
			rt.TopicID = md.ID
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 1 << 20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			sp := resp.Topics[0].Partitions[0]
			if sp.ErrorCode != 0 {
				t.Fatalf("isolation %d: error %d", iso, sp.ErrorCode)
			}
			lasts := batchLasts(t, sp.RecordBatches)
			var aborted []storage.AbortedTxn
			for _, a := range sp.AbortedTransactions {
				aborted = append(aborted, storage.AbortedTxn{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset})
			}
			wantLasts, wantLSO, wantAborted := []int64{1, 3, 5, 6, 7, 8, 9, 10}, int64(11), []storage.AbortedTxn(nil)
			if iso == 1 {
				wantLasts, wantLSO, wantAborted = []int64{1, 3, 5, 6, 7, 8}, 9, []storage.AbortedTxn{{ProducerID: 200, FirstOffset: 4}}
			}
			if sp.HighWatermark != 11 || sp.LastStableOffset != wantLSO || !slices.Equal(lasts, wantLasts) || !slices.Equal(aborted, wantAborted) {
				t.Fatalf("sendfile off %v isolation %d: HW %d LSO %d batches ending %v aborted %v; want HW 11 LSO %d batches ending %v aborted %v",
					sendfileOff, iso, sp.HighWatermark, sp.LastStableOffset, lasts, aborted, wantLSO, wantLasts, wantAborted)
			}
		}
	}

	// A sealed range served by a replica that does not lead the
	// partition (readFetch's sealed path, here over this log): read_committed
	// stops at the segment's recorded first unstable offset, its base when
	// unknown, and at the first transaction open in the replica's log.
	seg := func(end, fu int64) metadata.Segment {
		s := metadata.Segment{BaseOffset: 0, EndOffset: end, State: metadata.SegmentSealed}
		if fu >= 0 {
			s.FirstUnstable = &fu
		}
		return s
	}
	for _, c := range []struct{ end, fu, want int64 }{{5, 5, 5}, {11, 11, 9}, {11, 7, 7}, {11, -1, 0}, {5, 3, 3}} {
		if got := sealedCommittedEnd(l, seg(c.end, c.fu)); got != c.want {
			t.Fatalf("sealedCommittedEnd of [0, %d) first unstable %d: %d; want %d", c.end, c.fu, got, c.want)
		}
	}
	for _, c := range []struct {
		committed bool
		stable    int64
	}{{false, 11}, {true, 11}, {true, 7}} {
		committed := c.committed
		sp := kmsg.NewFetchResponseTopicPartition()
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes = 1 << 20
		parts := []fetchPart{{resp: &sp, log: l, tp: b.tp(topic, 0), offset: 0, max: 1 << 20, sealedEnd: 11, sealedStable: c.stable, committed: committed}}
		b.readFetch(req, parts, false)
		lasts := batchLasts(t, sp.RecordBatches)
		wantLasts, wantLSO, wantAborted := []int64{1, 3, 5, 6, 7, 8, 9, 10}, int64(11), 0
		if committed {
			wantLasts, wantLSO, wantAborted = []int64{1, 3, 5, 6, 7, 8}, 9, 1
		}
		if committed && c.stable == 7 {
			wantLasts, wantLSO = []int64{1, 3, 5, 6}, 7
		}
		if sp.ErrorCode != 0 || sp.LastStableOffset != wantLSO || !slices.Equal(lasts, wantLasts) || len(sp.AbortedTransactions) != wantAborted {
			t.Fatalf("sealed read, read_committed %v: code %d LSO %d batches ending %v aborted %+v; want LSO %d batches ending %v, %d aborted",
				committed, sp.ErrorCode, sp.LastStableOffset, lasts, sp.AbortedTransactions, wantLSO, wantLasts, wantAborted)
		}
	}

	// ListOffsets latest: the LSO under read_committed, the HW otherwise.
	listLatest := func(iso int8) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = 4
		req.IsolationLevel = iso
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		if sp.ErrorCode != 0 {
			t.Fatalf("ListOffsets isolation %d: error %d", iso, sp.ErrorCode)
		}
		return sp.Offset
	}
	if c, u := listLatest(1), listLatest(0); c != 9 || u != 11 {
		t.Fatalf("ListOffsets latest: read_committed %d read_uncommitted %d, want 9 and 11", c, u)
	}

	// kgo: read_uncommitted sees every data record, aborted ones too,
	// and no control record.
	all := consumeN(t, ctx, b, topic, 9)
	wantAll := []offVal{{0, "a0"}, {1, "a1"}, {2, "c0"}, {3, "c1"}, {4, "x0"}, {5, "x1"}, {8, "a2"}, {9, "o0"}, {10, "a3"}}
	if !slices.Equal(all, wantAll) {
		t.Fatalf("read_uncommitted: %v, want %v", all, wantAll)
	}
	// read_committed: the committed records, then nothing until pid
	// 300 commits: its record and the plain one after it come next (so
	// nothing at or past the LSO was returned before).
	rc := newClient(t, b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []offVal
	poll := func(n int) {
		t.Helper()
		for len(got) < n {
			fs := rc.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("read_committed consumed %v: %v", got, err)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
			fs.EachRecord(func(r *kgo.Record) { got = append(got, offVal{r.Offset, string(r.Value)}) })
		}
	}
	poll(5)
	if want := []offVal{{0, "a0"}, {1, "a1"}, {2, "c0"}, {3, "c1"}, {8, "a2"}}; !slices.Equal(got, want) {
		t.Fatalf("read_committed: %v, want %v", got, want)
	}
	if off := testLogAppend(t, b, topic, 0, nil, 300, 0, true); off != 11 {
		t.Fatalf("pid 300's COMMIT at %d, want 11", off)
	}
	poll(7)
	if want := []offVal{{0, "a0"}, {1, "a1"}, {2, "c0"}, {3, "c1"}, {8, "a2"}, {9, "o0"}, {10, "a3"}}; !slices.Equal(got, want) {
		t.Fatalf("read_committed after the commit: %v, want %v", got, want)
	}
	if c, u := listLatest(1), listLatest(0); c != 12 || u != 12 {
		t.Fatalf("ListOffsets latest after the commit: read_committed %d read_uncommitted %d, want 12 and 12", c, u)
	}
}

// fakeVerifier allows what is in allowed and answers err otherwise.
type fakeVerifier struct {
	mu      sync.Mutex
	allowed map[string]bool // "T/pid/epoch/topic/partition"
	err     error
	calls   int
}

func (f *fakeVerifier) Verify(_ context.Context, id string, pid int64, epoch int16, topic string, p int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.allowed[fmt.Sprintf("%s/%d/%d/%s/%d", id, pid, epoch, topic, p)] {
		return nil
	}
	return f.err
}

func (f *fakeVerifier) set(err error, allowed ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	f.allowed = map[string]bool{}
	for _, a := range allowed {
		f.allowed[a] = true
	}
}

func TestProduceTransactionalVerified(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-produce"
	cl := newClient(t, b)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(txnID *string, batch []byte) (int16, int64) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis, req.TransactionID = -1, 10000, txnID
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		return sp.ErrorCode, sp.BaseOffset
	}
	l, _ := b.partitionLog(topic, 0)
	id := kmsg.StringPtr("T")
	steps := []struct {
		name    string
		setup   func(f *fakeVerifier)
		txnID   *string
		batch   []byte
		code    int16
		base    int64
		leo     int64
		lso     int64
		calls   int
		install bool
	}{
		{name: "no coordinators hosted", txnID: id, batch: testTxnBatch(500, 0, 0, true, "v0"), code: kerr.TransactionalIDAuthorizationFailed.Code, base: -1, calls: 0},
		{name: "not added", install: true, setup: func(f *fakeVerifier) { f.set(kerr.InvalidTxnState) }, txnID: id, batch: testTxnBatch(500, 0, 0, true, "v0"), code: kerr.InvalidTxnState.Code, base: -1, calls: 1},
		{name: "coordinator moving", setup: func(f *fakeVerifier) { f.set(kerr.NotCoordinator) }, txnID: id, batch: testTxnBatch(500, 0, 0, true, "v0"), code: kerr.NotEnoughReplicas.Code, base: -1, calls: 2},
		{name: "no transactional id", txnID: nil, batch: testTxnBatch(500, 0, 0, true, "v0"), code: kerr.InvalidRecord.Code, base: -1, calls: 2},
		{name: "plain batch", txnID: id, batch: testTxnBatch(-1, 0, 0, false, "c"), code: 0, base: 0, leo: 1, lso: 1, calls: 2},
		{name: "added", setup: func(f *fakeVerifier) { f.set(kerr.InvalidTxnState, "T/500/0/"+topic+"/0") }, txnID: id, batch: testTxnBatch(500, 0, 0, true, "v0"), code: 0, base: 1, leo: 2, lso: 1, calls: 3},
		{name: "open here: not asked again", setup: func(f *fakeVerifier) { f.set(kerr.InvalidTxnState) }, txnID: id, batch: testTxnBatch(500, 0, 1, true, "v1"), code: 0, base: 2, leo: 3, lso: 1, calls: 3},
		{name: "another producer", txnID: id, batch: testTxnBatch(501, 0, 0, true, "w0"), code: kerr.InvalidTxnState.Code, base: -1, leo: 3, lso: 1, calls: 4},
		// A zombie's batch: the coordinator's PRODUCER_FENCED reaches the
		// client as INVALID_PRODUCER_EPOCH, as Kafka's
		// AddPartitionsToTxnManager answers Produce.
		{name: "fenced epoch", setup: func(f *fakeVerifier) { f.set(kerr.ProducerFenced) }, txnID: id, batch: testTxnBatch(502, 0, 0, true, "z0"), code: kerr.InvalidProducerEpoch.Code, base: -1, leo: 3, lso: 1, calls: 5},
	}
	f := new(fakeVerifier)
	// The broker installs the hosted coordinators (b.txnc) as its verifier;
	// the first step is a broker without one.
	b.txnVerify.Store(nil)
	for _, s := range steps {
		if s.install {
			var v txnVerifier = f
			b.txnVerify.Store(&v)
		}
		if s.setup != nil {
			s.setup(f)
		}
		if s.leo == 0 {
			s.leo, s.lso = l.LogEndOffset(), l.LastStableOffset()
		}
		code, base := produce(s.txnID, s.batch)
		f.mu.Lock()
		calls := f.calls
		f.mu.Unlock()
		if code != s.code || base != s.base || calls != s.calls || l.LogEndOffset() != s.leo || l.LastStableOffset() != s.lso {
			t.Fatalf("%s: code %d base %d, %d verifications, LEO %d LSO %d; want code %d base %d, %d verifications, LEO %d LSO %d",
				s.name, code, base, calls, l.LogEndOffset(), l.LastStableOffset(), s.code, s.base, s.calls, s.leo, s.lso)
		}
	}
	// A client's control batch is refused.
	marker := testTxnBatch(500, 0, -1, true, "m")
	binary.BigEndian.PutUint16(marker[21:], kafkaproto.AttrTransactional|kafkaproto.AttrControl)
	binary.BigEndian.PutUint32(marker[17:], crc32.Checksum(marker[21:], crc32.MakeTable(crc32.Castagnoli)))
	if code, _ := produce(id, marker); code != kerr.InvalidRecord.Code {
		t.Fatalf("client control batch: code %d, want INVALID_RECORD", code)
	}
	// After the COMMIT, the producer's next transaction is verified
	// again.
	testLogAppend(t, b, topic, 0, nil, 500, 0, true)
	f.set(kerr.InvalidTxnState)
	if code, _ := produce(id, testTxnBatch(500, 0, 2, true, "v2")); code != kerr.InvalidTxnState.Code || l.LastStableOffset() != 4 {
		t.Fatalf("after the commit, not added: code %d LSO %d, want INVALID_TXN_STATE and 4", code, l.LastStableOffset())
	}
}

func TestDescribeProducers(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-producers"
	start := time.Now().UnixMilli()
	setupTxnLog(t, ctx, b, topic)
	req := kmsg.NewPtrDescribeProducersRequest()
	rt := kmsg.NewDescribeProducersRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{0}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, newClient(t, b))
	if err != nil {
		t.Fatal(err)
	}
	parts := resp.Topics[0].Partitions
	if len(parts) != 1 || parts[0].ErrorCode != 0 {
		t.Fatalf("partitions %+v, want 0 without error", parts)
	}
	type prod struct {
		pid                        int64
		epoch, lastSeq, coordEpoch int32
		txnStart                   int64
	}
	var got []prod
	for _, ap := range parts[0].ActiveProducers {
		if ap.LastTimestamp < start || ap.LastTimestamp > time.Now().UnixMilli() {
			t.Fatalf("producer %d: last timestamp %d outside [%d, now]", ap.ProducerID, ap.LastTimestamp, start)
		}
		got = append(got, prod{ap.ProducerID, ap.ProducerEpoch, ap.LastSequence, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset})
	}
	want := []prod{{100, 0, 1, 0, -1}, {200, 0, 1, 0, -1}, {300, 0, 0, -1, 9}}
	if !slices.Equal(got, want) {
		t.Fatalf("active producers %+v, want %+v", got, want)
	}
}

func TestTxnOffsetCommit(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const group = "txn-group"
	var b *Broker
	var cl *kgo.Client
	start := func() {
		b = startBroker(t, dir)
		cl = newClient(t, b)
		// Creates __consumer_offsets and waits for the coordinator.
		if _, err := kadm.NewClient(cl).FetchOffsets(ctx, group); err != nil {
			t.Fatal(err)
		}
	}
	start()
	partition := func() int32 {
		t.Helper()
		md, _ := b.store.FSM().Topic(offsetsTopic)
		return groupPartition(group, md.Partitions)
	}
	txnCommit := func(pid int64, member string, generation int32, offset int64) int16 {
		t.Helper()
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = "T", group, pid, 0
		req.Generation, req.MemberID = generation, member
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "in"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	fetch := func(requireStable bool) (int16, int64) {
		t.Helper()
		req := kmsg.NewPtrOffsetFetchRequest()
		req.RequireStable = requireStable
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic, rt.Partitions = "in", []int32{0}
		rg.Topics = append(rg.Topics, rt)
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
			t.Fatalf("OffsetFetch: %+v", resp.Groups)
		}
		p := resp.Groups[0].Topics[0].Partitions[0]
		return p.ErrorCode, p.Offset
	}
	marker := func(pid int64, commit bool) {
		t.Helper()
		p := partition()
		testLogAppend(t, b, offsetsTopic, p, nil, pid, 0, commit)
		b.offsetsMarkerCommitted(p, pid, commit)
	}
	check := func(step string, wantStableCode int16, wantStable, wantPlain int64) {
		t.Helper()
		code, off := fetch(true)
		pcode, poff := fetch(false)
		if code != wantStableCode || off != wantStable || pcode != 0 || poff != wantPlain {
			t.Fatalf("%s: RequireStable code %d offset %d, plain code %d offset %d; want %d %d, 0 %d", step, code, off, pcode, poff, wantStableCode, wantStable, wantPlain)
		}
	}
	unstable := kerr.UnstableOffsetCommit.Code

	if code := txnCommit(700, "", -1, 42); code != 0 {
		t.Fatalf("TxnOffsetCommit: code %d", code)
	}
	check("pending", unstable, -1, -1)
	marker(700, true)
	check("committed", 0, 42, 42)
	if code := txnCommit(700, "", -1, 50); code != 0 {
		t.Fatalf("TxnOffsetCommit: code %d", code)
	}
	check("second pending", unstable, -1, 42)
	marker(700, false)
	check("aborted", 0, 42, 42)
	// KIP-447 checks against the (Empty, generation 0) group.
	if code := txnCommit(701, "no-such-member", -1, 55); code != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: code %d, want UNKNOWN_MEMBER_ID", code)
	}
	if code := txnCommit(701, "", 5, 55); code != kerr.IllegalGeneration.Code {
		t.Fatalf("generation 5: code %d, want ILLEGAL_GENERATION", code)
	}
	if code := txnCommit(701, "", -1, 60); code != 0 {
		t.Fatalf("TxnOffsetCommit: code %d", code)
	}
	check("third pending", unstable, -1, 42)

	// A coordinator loaded from the log: the commit, the abort and the
	// pending transaction come back.
	restart := func() {
		t.Helper()
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		start()
	}
	restart()
	check("pending after a restart", unstable, -1, 42)
	marker(701, true)
	check("committed after a restart", 0, 60, 60)
	restart()
	check("after a second restart", 0, 60, 60)

	// A marker appended while the coordinator was loading (nobody told
	// it): replayMarkersSince, which load runs from where the replay
	// ended, applies it.
	if code := txnCommit(702, "", -1, 70); code != 0 {
		t.Fatalf("TxnOffsetCommit: code %d", code)
	}
	l, _ := b.partitionLog(offsetsTopic, partition())
	from := l.LogEndOffset()
	testLogAppend(t, b, offsetsTopic, partition(), nil, 702, 0, true)
	check("a marker nobody was told of", unstable, -1, 60)
	if err := replayMarkersSince(l, b.coordinatorFor(group), from); err != nil {
		t.Fatal(err)
	}
	check("after replayMarkersSince", 0, 70, 70)
}

// withTimestamp stamps every record of batch (testTxnBatch's, whose
// records have timestamp delta 0) with ts.
func withTimestamp(batch []byte, ts int64) []byte {
	binary.BigEndian.PutUint64(batch[27:], uint64(ts))
	binary.BigEndian.PutUint64(batch[35:], uint64(ts))
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crc32.MakeTable(crc32.Castagnoli)))
	return batch
}

// TestListOffsetsByTimestampReadCommitted: a timestamp lookup under
// read_committed finds nothing at or past the last stable offset.
func TestListOffsetsByTimestampReadCommitted(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "txn-times"
	cl := newClient(t, b)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	testLogAppend(t, b, topic, 0, withTimestamp(testTxnBatch(-1, 0, 0, false, "p"), 1000), 0, 0, false)
	testLogAppend(t, b, topic, 0, withTimestamp(testTxnBatch(400, 0, 0, true, "o"), 2000), 0, 0, false)
	lookup := func(iso int8, ts int64) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = iso
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			t.Fatalf("ListOffsets %d isolation %d: error %d", ts, iso, p.ErrorCode)
		}
		return p.Offset
	}
	for _, c := range []struct {
		ts        int64
		iso       int8
		want      int64
		situation string
	}{
		{500, 1, 0, "before both"},
		{1500, 0, 1, "the open record, read_uncommitted"},
		{1500, 1, -1, "the open record, read_committed"},
		{-3, 0, 1, "max timestamp, read_uncommitted"},
		{-3, 1, -1, "max timestamp, read_committed"},
	} {
		if got := lookup(c.iso, c.ts); got != c.want {
			t.Fatalf("%s: offset %d, want %d", c.situation, got, c.want)
		}
	}
}
