package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/kafkaproto"
)

func txnTestConfig(c *configs.Config) {
	c.Transactions.Partitions = 3
	c.Groups.OffsetsPartitions = 1
}

// request sends req to b's Kafka listener.
func txnRequest[R kmsg.Response](t *testing.T, ctx context.Context, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp.(R)
}

// describeTxn returns T's DescribeTransactions state.
func describeTxn(t *testing.T, ctx context.Context, cl *kgo.Client, T string) kmsg.DescribeTransactionsResponseTransactionState {
	t.Helper()
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{T}
	resp := txnRequest[*kmsg.DescribeTransactionsResponse](t, ctx, cl, req)
	if len(resp.TransactionStates) != 1 {
		t.Fatalf("describe %q: %d states", T, len(resp.TransactionStates))
	}
	return resp.TransactionStates[0]
}

// waitTxnState polls DescribeTransactions until T is in state.
func waitTxnState(t *testing.T, ctx context.Context, cl *kgo.Client, T, state string) kmsg.DescribeTransactionsResponseTransactionState {
	t.Helper()
	for {
		st := describeTxn(t, ctx, cl, T)
		if st.ErrorCode == 0 && st.State == state {
			return st
		}
		if ctx.Err() != nil {
			t.Fatalf("%q: state %q error %d, want %q", T, st.State, st.ErrorCode, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// markerAt decodes the control batch at offset off of partition p of
// topic: commit, producer id, epoch and coordinator epoch.
func markerAt(t *testing.T, b *Broker, topic string, p int32, off int64) (commit bool, pid int64, epoch int16, coordEpoch int32) {
	t.Helper()
	l, code := b.partitionLog(topic, p)
	if code != 0 {
		t.Fatalf("%s-%d: code %d", topic, p, code)
	}
	res, err := l.ReadUncommitted(off, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	err = kafkaproto.SplitBatches(res.Data, func(batch []byte, h kafkaproto.BatchHeader) error {
		if found || h.BaseOffset != off {
			return nil
		}
		found = true
		if !h.IsControl() || !h.IsTransactional() {
			return errors.New("not a transactional control batch")
		}
		var d kafkaproto.Decompressor
		defer d.Close()
		recs, err := d.Records(batch)
		if err != nil || len(recs) != 1 {
			return errors.New("marker records do not decode")
		}
		var k kmsg.ControlRecordKey
		var v kmsg.EndTxnMarker
		if err := k.ReadFrom(recs[0].Key); err != nil {
			return err
		}
		if err := v.ReadFrom(recs[0].Value); err != nil {
			return err
		}
		commit, pid, epoch, coordEpoch = k.Type == kmsg.ControlRecordKeyTypeCommit, h.ProducerID, h.ProducerEpoch, v.CoordinatorEpoch
		return nil
	})
	if err != nil || !found {
		t.Fatalf("%s-%d@%d: %v (found %v)", topic, p, off, err, found)
	}
	return
}

// TestTxnCoordinatorAPIs drives the coordinator APIs with raw requests:
// FindCoordinator key type 1 creates __transaction_state, InitProducerId
// with a transactional id, AddPartitionsToTxn, EndTxn writing COMMIT and
// ABORT markers at exact offsets, a zombie fenced by a second
// InitProducerId, WriteTxnMarkers refused from a client and served from a
// node, DescribeTransactions and ListTransactions, and the coordinator
// reloaded from its log after a restart.
func TestTxnCoordinatorAPIs(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const T = "txn-a"
	var pid int64
	func() {
		b := startBroker(t, dir, txnTestConfig)
		cl := newClient(t, b)
		adm := kadm.NewClient(cl)
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, "out"); err != nil {
			t.Fatal(err)
		}

		// ApiVersions: the coordinator APIs at their versions, and no
		// transaction.version feature at 2 or more (KIP-890 part 2).
		av := txnRequest[*kmsg.ApiVersionsResponse](t, ctx, cl, kmsg.NewPtrApiVersionsRequest())
		wantKeys := map[int16][2]int16{22: {0, 4}, 24: {0, 3}, 25: {0, 3}, 26: {0, 3}, 27: {0, 1}, 65: {0, 0}, 66: {0, 2}}
		for _, k := range av.ApiKeys {
			if w, ok := wantKeys[k.ApiKey]; ok {
				if k.MinVersion != w[0] || k.MaxVersion != w[1] {
					t.Fatalf("ApiVersions %s: %d-%d, want %d-%d", kmsg.NameForKey(k.ApiKey), k.MinVersion, k.MaxVersion, w[0], w[1])
				}
				delete(wantKeys, k.ApiKey)
			}
		}
		if len(wantKeys) != 0 {
			t.Fatalf("ApiVersions lacks %v", wantKeys)
		}
		for _, f := range av.SupportedFeatures {
			if f.Name == "transaction.version" && f.MaxVersion >= 2 {
				t.Fatalf("ApiVersions advertises transaction.version %d", f.MaxVersion)
			}
		}
		for _, f := range av.FinalizedFeatures {
			if f.Name == "transaction.version" && f.MaxVersionLevel >= 2 {
				t.Fatalf("ApiVersions finalizes transaction.version %d", f.MaxVersionLevel)
			}
		}

		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorType = 1
		fc.CoordinatorKey = T
		fcr := txnRequest[*kmsg.FindCoordinatorResponse](t, ctx, cl, fc)
		if fcr.ErrorCode != 0 || fcr.NodeID != 1 {
			t.Fatalf("FindCoordinator: error %d node %d", fcr.ErrorCode, fcr.NodeID)
		}
		tt, ok := b.store.FSM().Topic(txnTopic)
		if !ok || !tt.Internal || tt.Partitions != 3 || tt.Configs["cleanup.policy"] != "compact" || tt.Configs["segment.bytes"] != "16777216" {
			t.Fatalf("__transaction_state: %v %+v", ok, tt)
		}
		fc.CoordinatorType = 2
		if r := txnRequest[*kmsg.FindCoordinatorResponse](t, ctx, cl, fc); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("FindCoordinator key type 2: error %d", r.ErrorCode)
		}

		// A client may not write __transaction_state.
		pr := kmsg.NewPtrProduceRequest()
		pr.Acks = -1
		pr.TimeoutMillis = 5000
		ptt := kmsg.NewProduceRequestTopic()
		ptt.Topic = txnTopic
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Records = kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), []kafkaproto.KV{{Key: []byte("k"), Value: []byte("v")}})
		ptt.Partitions = append(ptt.Partitions, pp)
		pr.Topics = append(pr.Topics, ptt)
		if r := txnRequest[*kmsg.ProduceResponse](t, ctx, cl, pr); r.Topics[0].Partitions[0].ErrorCode != kerr.InvalidTopicException.Code {
			t.Fatalf("produce to __transaction_state: error %d", r.Topics[0].Partitions[0].ErrorCode)
		}

		init := func(id *string) *kmsg.InitProducerIDResponse {
			r := kmsg.NewPtrInitProducerIDRequest()
			r.Version = 4
			r.TransactionalID = id
			r.TransactionTimeoutMillis = 60000
			r.ProducerID, r.ProducerEpoch = -1, -1
			return txnRequest[*kmsg.InitProducerIDResponse](t, ctx, cl, r)
		}
		// (kgo would look up the coordinator of "" first: sent directly.)
		empty := kmsg.NewPtrInitProducerIDRequest()
		empty.TransactionalID = kmsg.StringPtr("")
		empty.TransactionTimeoutMillis = 60000
		if r, err := cl.Broker(1).Request(ctx, empty); err != nil || r.(*kmsg.InitProducerIDResponse).ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("InitProducerId with an empty id: %v %+v", err, r)
		}
		if r := init(nil); r.ErrorCode != 0 || r.ProducerEpoch != 0 {
			t.Fatalf("idempotent InitProducerId: error %d epoch %d", r.ErrorCode, r.ProducerEpoch)
		}
		ir := init(kmsg.StringPtr(T))
		if ir.ErrorCode != 0 || ir.ProducerEpoch != 0 {
			t.Fatalf("InitProducerId: error %d epoch %d", ir.ErrorCode, ir.ProducerEpoch)
		}
		pid = ir.ProducerID
		if st := describeTxn(t, ctx, cl, T); st.State != "Empty" || st.ProducerID != pid || st.ProducerEpoch != 0 || st.TimeoutMillis != 60000 {
			t.Fatalf("after InitProducerId: %+v", st)
		}

		addParts := func(epoch int16, parts ...int32) int16 {
			r := kmsg.NewPtrAddPartitionsToTxnRequest()
			r.Version = 3
			r.TransactionalID, r.ProducerID, r.ProducerEpoch = T, pid, epoch
			rt := kmsg.NewAddPartitionsToTxnRequestTopic()
			rt.Topic, rt.Partitions = "out", parts
			r.Topics = append(r.Topics, rt)
			resp := txnRequest[*kmsg.AddPartitionsToTxnResponse](t, ctx, cl, r)
			return resp.Topics[0].Partitions[0].ErrorCode
		}
		endTxn := func(epoch int16, commit bool) int16 {
			r := kmsg.NewPtrEndTxnRequest()
			r.Version = 3
			r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit = T, pid, epoch, commit
			return txnRequest[*kmsg.EndTxnResponse](t, ctx, cl, r).ErrorCode
		}

		// Commit: a COMMIT marker at offset 0 of both partitions.
		if code := addParts(0, 0, 1); code != 0 {
			t.Fatalf("AddPartitionsToTxn: error %d", code)
		}
		st := describeTxn(t, ctx, cl, T)
		if st.State != "Ongoing" || len(st.Topics) != 1 || st.Topics[0].Topic != "out" || len(st.Topics[0].Partitions) != 2 {
			t.Fatalf("after AddPartitionsToTxn: %+v", st)
		}
		if err := b.txnc.Verify(ctx, T, pid, 0, "out", 1); err != nil {
			t.Fatalf("Verify of an added partition: %v", err)
		}
		if err := b.txnc.Verify(ctx, T, pid, 1, "out", 1); !errors.Is(err, kerr.ProducerFenced) {
			t.Fatalf("Verify at another epoch: %v", err)
		}
		if code := endTxn(0, true); code != 0 {
			t.Fatalf("EndTxn commit: error %d", code)
		}
		waitTxnState(t, ctx, cl, T, "CompleteCommit")
		_, coordEpoch := tt.Leader(groupPartition(T, 3))
		for p := int32(0); p < 2; p++ {
			commit, mpid, mepoch, ce := markerAt(t, b, "out", p, 0)
			if !commit || mpid != pid || mepoch != 0 || ce != coordEpoch {
				t.Fatalf("out-%d@0: commit %v pid %d epoch %d coordinator epoch %d", p, commit, mpid, mepoch, ce)
			}
		}
		if code := endTxn(0, true); code != 0 {
			t.Fatalf("EndTxn commit retried: error %d", code)
		}

		// Abort: an ABORT marker at offset 1 of partition 1 only.
		if code := addParts(0, 1); code != 0 {
			t.Fatalf("AddPartitionsToTxn: error %d", code)
		}
		if code := endTxn(0, false); code != 0 {
			t.Fatalf("EndTxn abort: error %d", code)
		}
		waitTxnState(t, ctx, cl, T, "CompleteAbort")
		if commit, mpid, _, _ := markerAt(t, b, "out", 1, 1); commit || mpid != pid {
			t.Fatalf("out-1@1: commit %v pid %d", commit, mpid)
		}
		for p, want := range []int64{1, 2} {
			if l, _ := b.partitionLog("out", int32(p)); l.LogEndOffset() != want {
				t.Fatalf("out-%d: log end %d, want %d", p, l.LogEndOffset(), want)
			}
		}

		// A zombie: a second producer with the same id fences the first.
		ir2 := init(kmsg.StringPtr(T))
		if ir2.ErrorCode != 0 || ir2.ProducerID != pid || ir2.ProducerEpoch != 1 {
			t.Fatalf("second InitProducerId: error %d pid %d epoch %d", ir2.ErrorCode, ir2.ProducerID, ir2.ProducerEpoch)
		}
		if code := addParts(0, 0); code != kerr.ProducerFenced.Code {
			t.Fatalf("zombie AddPartitionsToTxn: error %d", code)
		}
		if code := endTxn(0, true); code != kerr.ProducerFenced.Code {
			t.Fatalf("zombie EndTxn: error %d", code)
		}

		// WriteTxnMarkers: refused from a client, served from a node (the
		// internal listener).
		wm := kmsg.NewPtrWriteTxnMarkersRequest()
		mk := kmsg.NewWriteTxnMarkersRequestMarker()
		mk.ProducerID, mk.ProducerEpoch, mk.Committed, mk.CoordinatorEpoch = pid, 1, false, coordEpoch
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = "out", []int32{0}
		mk.Topics = append(mk.Topics, mt)
		wm.Markers = append(wm.Markers, mk)
		if r := txnRequest[*kmsg.WriteTxnMarkersResponse](t, ctx, cl, wm); r.Markers[0].Topics[0].Partitions[0].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
			t.Fatalf("client WriteTxnMarkers: error %d", r.Markers[0].Topics[0].Partitions[0].ErrorCode)
		}
		if l, _ := b.partitionLog("out", 0); l.LogEndOffset() != 1 {
			t.Fatalf("a client's WriteTxnMarkers wrote: log end %d", l.LogEndOffset())
		}
		node := newClient(t, b, kgo.SeedBrokers(b.InternalAddr()))
		seeds := node.SeedBrokers()
		resp, err := seeds[0].Request(ctx, wm)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("node WriteTxnMarkers: error %d", code)
		}
		if commit, mpid, mepoch, _ := markerAt(t, b, "out", 0, 1); commit || mpid != pid || mepoch != 1 {
			t.Fatalf("out-0@1: commit %v pid %d epoch %d", commit, mpid, mepoch)
		}
		mk.CoordinatorEpoch = coordEpoch - 1
		wm.Markers[0] = mk
		resp, err = seeds[0].Request(ctx, wm)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode; code != kerr.TransactionCoordinatorFenced.Code {
			t.Fatalf("WriteTxnMarkers from an older coordinator epoch: error %d", code)
		}

		lt := kmsg.NewPtrListTransactionsRequest()
		lt.StateFilters = []string{"Empty", "Bogus"}
		lr := txnRequest[*kmsg.ListTransactionsResponse](t, ctx, cl, lt)
		if lr.ErrorCode != 0 || len(lr.TransactionStates) != 1 || lr.TransactionStates[0].TransactionalID != T ||
			lr.TransactionStates[0].ProducerID != pid || len(lr.UnknownStateFilters) != 1 || lr.UnknownStateFilters[0] != "Bogus" {
			t.Fatalf("ListTransactions: %+v", lr)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()

	// After a restart the coordinator is loaded from __transaction_state.
	b := startBroker(t, dir, txnTestConfig)
	cl := newClient(t, b)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType = 1
	fc.CoordinatorKey = T
	if r := txnRequest[*kmsg.FindCoordinatorResponse](t, ctx, cl, fc); r.ErrorCode != 0 {
		t.Fatalf("FindCoordinator after restart: error %d", r.ErrorCode)
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	st := waitTxnState(t, wctx, cl, T, "Empty")
	if st.ProducerID != pid || st.ProducerEpoch != 1 {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestTxnKgoProducer: a kgo transactional producer commits and aborts
// against an in-process broker; read_uncommitted sees every record,
// read_committed only the committed ones; a second producer with the
// same transactional id fences the first, whose commit then fails and
// whose records stay invisible to read_committed.
func TestTxnKgoProducer(t *testing.T) {
	b := startBroker(t, t.TempDir(), txnTestConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "tx"); err != nil {
		t.Fatal(err)
	}
	const T = "kgo-txn"
	newProducer := func() *kgo.Client {
		return newClient(t, b, kgo.TransactionalID(T), kgo.DefaultProduceTopic("tx"), kgo.TransactionTimeout(30*time.Second))
	}
	check := newClient(t, b)
	txn := func(cl *kgo.Client, commit bool, values ...string) error {
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		for _, v := range values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				return err
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			return err
		}
		return nil
	}
	p1 := newProducer()
	if err := txn(p1, true, "a0", "a1", "a2"); err != nil {
		t.Fatal(err)
	}
	if err := txn(p1, false, "b0", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := txn(p1, true, "c0"); err != nil {
		t.Fatal(err)
	}
	waitTxnState(t, ctx, check, T, "CompleteCommit")
	l, _ := b.partitionLog("tx", 0)
	if l.LogEndOffset() != 9 {
		t.Fatalf("log end %d, want 9 (6 records, 3 markers)", l.LogEndOffset())
	}
	for off, commit := range map[int64]bool{3: true, 6: false, 8: true} {
		if c, _, _, _ := markerAt(t, b, "tx", 0, off); c != commit {
			t.Fatalf("marker at %d: commit %v, want %v", off, c, commit)
		}
	}

	// A zombie: p1 has a transaction open when p2 starts with the same id.
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p1.ProduceSync(ctx, &kgo.Record{Value: []byte("d0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p2 := newProducer()
	if err := txn(p2, true, "z0"); err != nil {
		t.Fatal(err)
	}
	if err := p1.EndTransaction(ctx, kgo.TryCommit); !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("zombie commit: %v, want PRODUCER_FENCED", err)
	}
	waitTxnState(t, ctx, check, T, "CompleteCommit")

	read := func(level kgo.IsolationLevel, want []string) {
		t.Helper()
		cl := newClient(t, b, kgo.ConsumeTopics("tx"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(level))
		var got []string
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		defer rcancel()
		for rctx.Err() == nil && len(got) < len(want) {
			fs := cl.PollFetches(rctx)
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		// Nothing more arrives.
		qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer qcancel()
		cl.PollFetches(qctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		if len(got) != len(want) {
			t.Fatalf("read %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("read %v, want %v", got, want)
			}
		}
	}
	read(kgo.ReadUncommitted(), []string{"a0", "a1", "a2", "b0", "b1", "c0", "d0", "z0"})
	read(kgo.ReadCommitted(), []string{"a0", "a1", "a2", "c0", "z0"})
}

// TestTxnCoordinatorCompletesPrepared: a __transaction_state log whose
// last record of an id is PrepareCommit (a coordinator that died between
// EndTxn and its markers) is completed by the coordinator loaded from it
// after a restart: the COMMIT marker is written to the transaction's
// partition with the new coordinator epoch, and the id becomes
// CompleteCommit.
func TestTxnCoordinatorCompletesPrepared(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const T = "prepared"
	func() {
		b := startBroker(t, dir, txnTestConfig)
		cl := newClient(t, b)
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "out"); err != nil {
			t.Fatal(err)
		}
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorType = 1
		fc.CoordinatorKey = T
		if r := txnRequest[*kmsg.FindCoordinatorResponse](t, ctx, cl, fc); r.ErrorCode != 0 {
			t.Fatalf("FindCoordinator: error %d", r.ErrorCode)
		}
		// The record a coordinator persists at EndTxn(commit), written
		// straight to the log: no coordinator wrote its markers.
		k := kmsg.NewTxnMetadataKey()
		k.TransactionalID = T
		v := kmsg.NewTxnMetadataValue()
		v.ProducerID, v.ProducerEpoch, v.TimeoutMillis = 4242, 3, 60000
		v.State = kmsg.TransactionState(2) // PrepareCommit
		v.LastUpdateTimestamp, v.StartTimestamp = time.Now().UnixMilli(), time.Now().UnixMilli()
		vt := kmsg.NewTxnMetadataValueTopic()
		vt.Topic, vt.Partitions = "out", []int32{0}
		v.Topics = append(v.Topics, vt)
		l, code := b.partitionLog(txnTopic, groupPartition(T, 3))
		if code != 0 {
			t.Fatalf("__transaction_state partition: code %d", code)
		}
		batch := kafkaproto.AppendBatch(nil, time.Now().UnixMilli(), []kafkaproto.KV{{Key: k.AppendTo(nil), Value: v.AppendTo(nil)}})
		h, err := kafkaproto.ValidateBatch(batch)
		if err != nil {
			t.Fatal(err)
		}
		_, epoch, _ := b.store.FSM().PartitionLeader(txnTopic, groupPartition(T, 3))
		res, err := l.Append(batch, h, max(epoch, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WaitDurable(ctx, res.LastOffset); err != nil {
			t.Fatal(err)
		}
		if out, _ := b.partitionLog("out", 0); out.LogEndOffset() != 0 {
			t.Fatalf("out-0 log end %d before the restart", out.LogEndOffset())
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()

	b := startBroker(t, dir, txnTestConfig)
	cl := newClient(t, b)
	st := waitTxnState(t, ctx, cl, T, "CompleteCommit")
	if st.ProducerID != 4242 || st.ProducerEpoch != 3 || len(st.Topics) != 0 {
		t.Fatalf("completed: %+v", st)
	}
	tt, _ := b.store.FSM().Topic(txnTopic)
	_, coordEpoch := tt.Leader(groupPartition(T, 3))
	commit, pid, epoch, ce := markerAt(t, b, "out", 0, 0)
	if !commit || pid != 4242 || epoch != 3 || ce != coordEpoch {
		t.Fatalf("out-0@0: commit %v pid %d epoch %d coordinator epoch %d (want %d)", commit, pid, epoch, ce, coordEpoch)
	}
	if out, _ := b.partitionLog("out", 0); out.LogEndOffset() != 1 {
		t.Fatalf("out-0 log end %d, want 1", out.LogEndOffset())
	}
}

// TestTxnMarkersDeletedPartition: a transaction's partition whose topic
// was deleted before EndTxn counts as marked (Kafka drops it), so the
// transaction completes; the other partition gets its marker.
func TestTxnMarkersDeletedPartition(t *testing.T) {
	b := startBroker(t, t.TempDir(), txnTestConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)
	for _, topic := range []string{"kept", "gone"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	const T = "deleted-partition"
	ir := kmsg.NewPtrInitProducerIDRequest()
	ir.TransactionalID = kmsg.StringPtr(T)
	ir.TransactionTimeoutMillis = 60000
	init := txnRequest[*kmsg.InitProducerIDResponse](t, ctx, cl, ir)
	if init.ErrorCode != 0 {
		t.Fatalf("InitProducerId: error %d", init.ErrorCode)
	}
	ap := kmsg.NewPtrAddPartitionsToTxnRequest()
	ap.Version = 3
	ap.TransactionalID, ap.ProducerID, ap.ProducerEpoch = T, init.ProducerID, init.ProducerEpoch
	for _, topic := range []string{"kept", "gone"} {
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		ap.Topics = append(ap.Topics, rt)
	}
	for _, rt := range txnRequest[*kmsg.AddPartitionsToTxnResponse](t, ctx, cl, ap).Topics {
		if rt.Partitions[0].ErrorCode != 0 {
			t.Fatalf("AddPartitionsToTxn %s: error %d", rt.Topic, rt.Partitions[0].ErrorCode)
		}
	}
	if _, err := adm.DeleteTopics(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	et := kmsg.NewPtrEndTxnRequest()
	et.Version = 3
	et.TransactionalID, et.ProducerID, et.ProducerEpoch, et.Commit = T, init.ProducerID, init.ProducerEpoch, true
	if code := txnRequest[*kmsg.EndTxnResponse](t, ctx, cl, et).ErrorCode; code != 0 {
		t.Fatalf("EndTxn: error %d", code)
	}
	waitTxnState(t, ctx, cl, T, "CompleteCommit")
	if commit, pid, _, _ := markerAt(t, b, "kept", 0, 0); !commit || pid != init.ProducerID {
		t.Fatalf("kept-0@0: commit %v pid %d", commit, pid)
	}
}
