package compat

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnBatch is buildBatch's batch made transactional: producer id pid,
// epoch and base sequence seq.
func txnBatch(pid int64, epoch int16, seq int32, values ...string) []byte {
	var vs [][]byte
	for _, v := range values {
		vs = append(vs, []byte(v))
	}
	b := buildBatch(vs, time.Now().UnixMilli())
	binary.BigEndian.PutUint16(b[21:], 0x10) // transactional
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:21], crc32.Checksum(b[21:], crc32c))
	return b
}

// TestTxnBadInput: the transactional requests a broken or fenced client
// sends each get Kafka's error code and change nothing else, against one
// node with a live consumer group:
//
//   - an empty transactional id in InitProducerId, AddPartitionsToTxn,
//     AddOffsetsToTxn and EndTxn: INVALID_REQUEST, no such id listed;
//   - a client Produce to __transaction_state: INVALID_TOPIC_EXCEPTION, its
//     end offsets unchanged;
//   - a transactional Produce to a partition not added to the transaction
//     (KIP-890 part 1): INVALID_TXN_STATE, the partition's log unchanged;
//   - TxnOffsetCommit with a generation the group is not at:
//     ILLEGAL_GENERATION; with an unknown member id: UNKNOWN_MEMBER_ID;
//     nothing pending after either (OffsetFetch RequireStable answers the
//     old offset);
//   - EndTxn, AddPartitionsToTxn and AddOffsetsToTxn from an epoch a new
//     instance fenced: PRODUCER_FENCED (v2+), INVALID_PRODUCER_EPOCH
//     (v0-1); its transactional Produce is refused; the new instance's
//     transaction stays Ongoing and no log changes.
//
// Between them the valid transactions commit and abort as usual: exact
// log end offsets, read_committed contents and committed offsets after.
func TestTxnBadInput(t *testing.T) {
	done := cardSetup(t, "raw kmsg (transactions)")
	n := startTusk(t, withFlag("groups-initial-rebalance-delay", "100ms"))
	adm, cl := newAdm(t, n)
	ctx := ctxTimeout(t, 90*time.Second)
	const topic, input, group, T = "txbad", "txbad-in", "txbad-grp", "txbad-T"
	createTopic(t, adm, topic, 2, nil)
	createTopic(t, adm, input, 1, nil)
	produceInput(t, n, input, 1, 10)
	// The group's offset before any transaction: 3.
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: input, Partition: 0, At: 3, LeaderEpoch: -1})
	if r, err := adm.CommitOffsets(ctx, group, offs); err != nil || r.Error() != nil {
		t.Fatalf("commit offset 3: %v %v", err, r.Error())
	}
	// A live member: the group is Stable at a generation.
	member := newKgo(t, n, kgo.ConsumerGroup(group), kgo.ConsumeTopics(input), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond))
	go func() {
		for {
			if fs := member.PollFetches(ctx); fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
		}
	}()
	var memberID string
	var generation int32
	waitFor(t, 30*time.Second, "the group Stable with one member", func() (bool, string) {
		ds, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return false, err.Error()
		}
		d := ds[group]
		if d.State != "Stable" || len(d.Members) != 1 {
			return false, fmt.Sprintf("%s, %d members", d.State, len(d.Members))
		}
		memberID, generation = member.GroupMetadata()
		return memberID != "" && generation > 0, fmt.Sprintf("member %q generation %d", memberID, generation)
	})
	node := cl.Broker(int(n.NodeID))
	raw := dialRaw(t, n.Kafka)
	done()

	direct := func(req kmsg.Request) kmsg.Response {
		t.Helper()
		resp, err := node.Request(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
		}
		return resp
	}
	initPID := func(id string) *kmsg.InitProducerIDResponse {
		t.Helper()
		r := kmsg.NewPtrInitProducerIDRequest()
		r.TransactionalID = kmsg.StringPtr(id)
		r.TransactionTimeoutMillis = 60000
		r.ProducerID, r.ProducerEpoch = -1, -1
		for {
			resp := direct(r).(*kmsg.InitProducerIDResponse)
			// CONCURRENT_TRANSACTIONS while a previous transaction
			// completes: the client retries.
			if resp.ErrorCode != kerr.ConcurrentTransactions.Code || ctx.Err() != nil {
				return resp
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	addParts := func(id string, pid int64, epoch int16, parts ...int32) int16 {
		t.Helper()
		r := kmsg.NewPtrAddPartitionsToTxnRequest()
		r.TransactionalID, r.ProducerID, r.ProducerEpoch = id, pid, epoch
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = topic, parts
		r.Topics = append(r.Topics, rt)
		for {
			resp := direct(r).(*kmsg.AddPartitionsToTxnResponse)
			code := resp.ErrorCode
			if len(resp.Topics) > 0 && len(resp.Topics[0].Partitions) > 0 {
				code = resp.Topics[0].Partitions[0].ErrorCode
			}
			if code != kerr.ConcurrentTransactions.Code || ctx.Err() != nil {
				return code
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	addOffsets := func(id string, pid int64, epoch int16) int16 {
		t.Helper()
		r := kmsg.NewPtrAddOffsetsToTxnRequest()
		r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group = id, pid, epoch, group
		return direct(r).(*kmsg.AddOffsetsToTxnResponse).ErrorCode
	}
	endTxn := func(version int16, id string, pid int64, epoch int16, commit bool) int16 {
		t.Helper()
		r := kmsg.NewPtrEndTxnRequest()
		r.Version = version
		r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit = id, pid, epoch, commit
		// A raw connection: kgo would send its highest version.
		resp, err := raw.roundTrip(r)
		if err != nil {
			t.Fatalf("EndTxn v%d: %v", version, err)
		}
		return resp.(*kmsg.EndTxnResponse).ErrorCode
	}
	produce := func(txnID string, p int32, batch []byte) (int16, int64) {
		t.Helper()
		r := kmsg.NewPtrProduceRequest()
		r.Acks, r.TimeoutMillis, r.TransactionID = -1, 10000, kmsg.StringPtr(txnID)
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, batch
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
		sp := direct(r).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		return sp.ErrorCode, sp.BaseOffset
	}
	txnOffsetCommit := func(pid int64, epoch int16, member string, gen int32, offset int64) int16 {
		t.Helper()
		r := kmsg.NewPtrTxnOffsetCommitRequest()
		r.TransactionalID, r.Group, r.ProducerID, r.ProducerEpoch = T, group, pid, epoch
		r.Generation, r.MemberID = gen, member
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = input
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
		return direct(r).(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	stableOffset := func() (int16, int64) {
		t.Helper()
		r := kmsg.NewPtrOffsetFetchRequest()
		r.RequireStable = true
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic, rt.Partitions = input, []int32{0}
		rg.Topics = append(rg.Topics, rt)
		r.Groups = append(r.Groups, rg)
		resp := direct(r).(*kmsg.OffsetFetchResponse)
		if len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
			t.Fatalf("OffsetFetch: %+v", resp.Groups)
		}
		p := resp.Groups[0].Topics[0].Partitions[0]
		return p.ErrorCode, p.Offset
	}
	describe := func() kmsg.DescribeTransactionsResponseTransactionState {
		t.Helper()
		r := kmsg.NewPtrDescribeTransactionsRequest()
		r.TransactionalIDs = []string{T}
		return direct(r).(*kmsg.DescribeTransactionsResponse).TransactionStates[0]
	}
	waitState := func(state string) {
		t.Helper()
		waitFor(t, 15*time.Second, T+" "+state, func() (bool, string) {
			st := describe()
			return st.ErrorCode == 0 && st.State == state, fmt.Sprintf("%s (error %d)", st.State, st.ErrorCode)
		})
	}
	txnParts := func(st kmsg.DescribeTransactionsResponseTransactionState) []string {
		var out []string
		for _, tt := range st.Topics {
			for _, p := range tt.Partitions {
				out = append(out, fmt.Sprintf("%s-%d", tt.Topic, p))
			}
		}
		slices.Sort(out)
		return out
	}
	logEnds := func(tp string) map[int32]int64 {
		t.Helper()
		return endOffsets(t, adm, tp)
	}

	findCoordinator := func(t *testing.T, id string) {
		t.Helper()
		waitFor(t, 15*time.Second, "FindCoordinator key type 1 for "+id, func() (bool, string) {
			r := kmsg.NewPtrFindCoordinatorRequest()
			r.CoordinatorType, r.CoordinatorKey, r.CoordinatorKeys = 1, id, []string{id}
			resp := direct(r).(*kmsg.FindCoordinatorResponse)
			code, node := resp.ErrorCode, resp.NodeID
			if len(resp.Coordinators) == 1 { // v4+
				code, node = resp.Coordinators[0].ErrorCode, resp.Coordinators[0].NodeID
			}
			return code == 0 && node == n.NodeID, fmt.Sprintf("%s node %d", errName(code), node)
		})
	}

	t.Run("empty transactional id", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "empty transactional id → INVALID_REQUEST")
		check := func(when string) {
			t.Helper()
			if r := initPID(""); r.ErrorCode != kerr.InvalidRequest.Code {
				t.Errorf("%s: InitProducerId \"\": %s, want INVALID_REQUEST(42)", when, errName(r.ErrorCode))
			}
			if code := addParts("", 1, 0, 0); code != kerr.InvalidRequest.Code {
				t.Errorf("%s: AddPartitionsToTxn \"\": %s, want INVALID_REQUEST(42)", when, errName(code))
			}
			if code := addOffsets("", 1, 0); code != kerr.InvalidRequest.Code {
				t.Errorf("%s: AddOffsetsToTxn \"\": %s, want INVALID_REQUEST(42)", when, errName(code))
			}
			if code := endTxn(3, "", 1, 0, true); code != kerr.InvalidRequest.Code {
				t.Errorf("%s: EndTxn \"\": %s, want INVALID_REQUEST(42)", when, errName(code))
			}
		}
		// Before __transaction_state exists (no coordinator here), then
		// from the coordinator of the partition "" hashes to.
		check("before __transaction_state")
		findCoordinator(t, T)
		check("with __transaction_state")
		lt := direct(kmsg.NewPtrListTransactionsRequest()).(*kmsg.ListTransactionsResponse)
		if lt.ErrorCode != 0 || len(lt.TransactionStates) != 0 {
			t.Errorf("ListTransactions after the empty ids: error %d, %+v, want none", lt.ErrorCode, lt.TransactionStates)
		}
	})

	// The producer's first instance.
	findCoordinator(t, T)
	ir := initPID(T)
	if ir.ErrorCode != 0 || ir.ProducerEpoch != 0 {
		t.Fatalf("InitProducerId %s: %s epoch %d", T, errName(ir.ErrorCode), ir.ProducerEpoch)
	}
	pid := ir.ProducerID

	t.Run("produce to __transaction_state", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "client Produce to __transaction_state → INVALID_TOPIC_EXCEPTION")
		before := logEnds("__transaction_state")
		r := kmsg.NewPtrProduceRequest()
		r.Acks, r.TimeoutMillis = -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "__transaction_state"
		for p := range int32(len(before)) {
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = p, buildBatch([][]byte{[]byte("not a TxnMetadataValue")}, time.Now().UnixMilli())
			rt.Partitions = append(rt.Partitions, rp)
		}
		r.Topics = append(r.Topics, rt)
		for _, sp := range direct(r).(*kmsg.ProduceResponse).Topics[0].Partitions {
			if sp.ErrorCode != kerr.InvalidTopicException.Code {
				t.Errorf("Produce to __transaction_state-%d: %s, want INVALID_TOPIC_EXCEPTION(17)", sp.Partition, errName(sp.ErrorCode))
			}
		}
		if after := logEnds("__transaction_state"); len(before) == 0 || !mapsEqualInt(before, after) {
			t.Errorf("__transaction_state end offsets %v, before %v", after, before)
		}
		if st := describe(); st.ErrorCode != 0 || st.State != "Empty" || st.ProducerID != pid || st.ProducerEpoch != 0 {
			t.Errorf("%s after the produce: %+v", T, st)
		}
	})

	t.Run("produce to a partition not added", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "transactional Produce to a partition not added (KIP-890 part 1) → INVALID_TXN_STATE")
		if code := addParts(T, pid, 0, 0); code != 0 {
			t.Fatalf("AddPartitionsToTxn %s-0: %s", topic, errName(code))
		}
		if code, _ := produce(T, 1, txnBatch(pid, 0, 0, "not-added")); code != kerr.InvalidTxnState.Code {
			t.Errorf("transactional Produce to %s-1 (not added): %s, want INVALID_TXN_STATE(48)", topic, errName(code))
		}
		if code, off := produce(T, 0, txnBatch(pid, 0, 0, "t1-p0")); code != 0 || off != 0 {
			t.Fatalf("transactional Produce to %s-0 (added): %s at %d, want offset 0", topic, errName(code), off)
		}
		if ends := logEnds(topic); ends[0] != 1 || ends[1] != 0 {
			t.Errorf("end offsets %v, want 0:1 1:0", ends)
		}
		if st := describe(); st.State != "Ongoing" || !slices.Equal(txnParts(st), []string{topic + "-0"}) {
			t.Errorf("transaction after the refused produce: %s %v, want Ongoing [%s-0]", st.State, txnParts(st), topic)
		}
	})

	t.Run("TxnOffsetCommit generation and member", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "TxnOffsetCommit unknown generation / member → ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID")
		if code := addOffsets(T, pid, 0); code != 0 {
			t.Fatalf("AddOffsetsToTxn: %s", errName(code))
		}
		if code := txnOffsetCommit(pid, 0, memberID, generation+1, 9); code != kerr.IllegalGeneration.Code {
			t.Errorf("TxnOffsetCommit at generation %d (group at %d): %s, want ILLEGAL_GENERATION(22)", generation+1, generation, errName(code))
		}
		if code := txnOffsetCommit(pid, 0, "no-such-member", generation, 9); code != kerr.UnknownMemberID.Code {
			t.Errorf("TxnOffsetCommit from an unknown member: %s, want UNKNOWN_MEMBER_ID(25)", errName(code))
		}
		if code, off := stableOffset(); code != 0 || off != 3 {
			t.Errorf("OffsetFetch RequireStable after the refused commits: %s offset %d, want offset 3 with nothing pending", errName(code), off)
		}
		if code := txnOffsetCommit(pid, 0, memberID, generation, 7); code != 0 {
			t.Fatalf("TxnOffsetCommit from the member at generation %d: %s", generation, errName(code))
		}
		if code, _ := stableOffset(); code != kerr.UnstableOffsetCommit.Code {
			t.Errorf("OffsetFetch RequireStable while the commit is pending: %s, want UNSTABLE_OFFSET_COMMIT(88)", errName(code))
		}
		if code := endTxn(3, T, pid, 0, true); code != 0 {
			t.Fatalf("EndTxn commit: %s", errName(code))
		}
		waitState("CompleteCommit")
		waitFor(t, 15*time.Second, "the transactional offset committed", func() (bool, string) {
			code, off := stableOffset()
			return code == 0 && off == 7, fmt.Sprintf("%s offset %d", errName(code), off)
		})
	})

	t.Run("EndTxn from a fenced epoch", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "EndTxn from a fenced epoch → PRODUCER_FENCED / INVALID_PRODUCER_EPOCH")
		// A new instance fences epoch 0 and opens a transaction on
		// partition 1.
		ir := initPID(T)
		if ir.ErrorCode != 0 || ir.ProducerID != pid || ir.ProducerEpoch != 1 {
			t.Fatalf("second InitProducerId: %s pid %d epoch %d, want pid %d epoch 1", errName(ir.ErrorCode), ir.ProducerID, ir.ProducerEpoch, pid)
		}
		if code := addParts(T, pid, 1, 1); code != 0 {
			t.Fatalf("AddPartitionsToTxn at epoch 1: %s", errName(code))
		}
		if code, off := produce(T, 1, txnBatch(pid, 1, 0, "t2-p1")); code != 0 || off != 0 {
			t.Fatalf("Produce at epoch 1: %s at %d, want offset 0", errName(code), off)
		}
		for _, c := range []struct {
			version int16
			want    *kerr.Error
		}{{3, kerr.ProducerFenced}, {2, kerr.ProducerFenced}, {1, kerr.InvalidProducerEpoch}, {0, kerr.InvalidProducerEpoch}} {
			for _, commit := range []bool{true, false} {
				if code := endTxn(c.version, T, pid, 0, commit); code != c.want.Code {
					t.Errorf("EndTxn v%d (commit %v) from epoch 0: %s, want %s(%d)", c.version, commit, errName(code), c.want.Message, c.want.Code)
				}
			}
			// The zombie's AddPartitionsToTxn and AddOffsetsToTxn at the
			// same version (KIP-588: PRODUCER_FENCED from v2).
			ap := kmsg.NewPtrAddPartitionsToTxnRequest()
			ap.Version = c.version
			ap.TransactionalID, ap.ProducerID, ap.ProducerEpoch = T, pid, 0
			apt := kmsg.NewAddPartitionsToTxnRequestTopic()
			apt.Topic, apt.Partitions = topic, []int32{0}
			ap.Topics = append(ap.Topics, apt)
			if resp, err := raw.roundTrip(ap); err != nil {
				t.Fatalf("AddPartitionsToTxn v%d: %v", c.version, err)
			} else if code := resp.(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode; code != c.want.Code {
				t.Errorf("AddPartitionsToTxn v%d from epoch 0: %s, want %s(%d)", c.version, errName(code), c.want.Message, c.want.Code)
			}
			ao := kmsg.NewPtrAddOffsetsToTxnRequest()
			ao.Version = c.version
			ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = T, pid, 0, group
			if resp, err := raw.roundTrip(ao); err != nil {
				t.Fatalf("AddOffsetsToTxn v%d: %v", c.version, err)
			} else if code := resp.(*kmsg.AddOffsetsToTxnResponse).ErrorCode; code != c.want.Code {
				t.Errorf("AddOffsetsToTxn v%d from epoch 0: %s, want %s(%d)", c.version, errName(code), c.want.Message, c.want.Code)
			}
		}
		// The zombie's transactional Produce to partition 0 (which the new
		// epoch has not written): INVALID_PRODUCER_EPOCH, what Kafka's
		// partition leaders answer Produce for a fenced epoch; the log
		// unchanged (checked below).
		if code, _ := produce(T, 0, txnBatch(pid, 0, 1, "zombie")); code != kerr.InvalidProducerEpoch.Code {
			t.Errorf("zombie transactional Produce at epoch 0: %s, want INVALID_PRODUCER_EPOCH(47)", errName(code))
		}
		if st := describe(); st.State != "Ongoing" || st.ProducerEpoch != 1 || !slices.Equal(txnParts(st), []string{topic + "-1"}) {
			t.Errorf("after the fenced EndTxns: %s epoch %d %v, want Ongoing at epoch 1 with [%s-1]", st.State, st.ProducerEpoch, txnParts(st), topic)
		}
		if ends := logEnds(topic); ends[0] != 2 || ends[1] != 1 {
			t.Errorf("end offsets %v after the fenced EndTxns, want 0:2 (record, COMMIT) 1:1 (the open record)", ends)
		}
		// The new instance aborts its transaction, then commits one.
		if code := endTxn(3, T, pid, 1, false); code != 0 {
			t.Fatalf("EndTxn abort at epoch 1: %s", errName(code))
		}
		waitState("CompleteAbort")
		if code := addParts(T, pid, 1, 1); code != 0 {
			t.Fatalf("AddPartitionsToTxn at epoch 1: %s", errName(code))
		}
		if code, off := produce(T, 1, txnBatch(pid, 1, 1, "t3-p1")); code != 0 || off != 2 {
			t.Fatalf("Produce at epoch 1: %s at %d, want offset 2", errName(code), off)
		}
		if code := endTxn(3, T, pid, 1, true); code != 0 {
			t.Fatalf("EndTxn commit at epoch 1: %s", errName(code))
		}
		waitState("CompleteCommit")
	})

	t.Run("state after", func(t *testing.T) {
		card(t, "raw kmsg (transactions)", "state after the bad transactional requests")
		// p0: t1-p0, COMMIT; p1: t2-p1, ABORT, t3-p1, COMMIT.
		if ends := logEnds(topic); ends[0] != 2 || ends[1] != 4 {
			t.Errorf("end offsets %v, want 0:2 1:4", ends)
		}
		want := map[int32][]string{0: {"t1-p0"}, 1: {"t3-p1"}}
		if got := readIsolated(t, n, topic, true, map[int32]int{0: 1, 1: 1}); !mapsEqualSlices(got, want) {
			t.Errorf("read_committed %v, want %v", got, want)
		}
		want[1] = []string{"t2-p1", "t3-p1"}
		if got := readIsolated(t, n, topic, false, map[int32]int{0: 1, 1: 2}); !mapsEqualSlices(got, want) {
			t.Errorf("read_uncommitted %v, want %v", got, want)
		}
		if com := committedOffsets(t, adm, group, input); len(com) != 1 || com[0] != 7 {
			t.Errorf("group %s committed %v, want 0:7", group, com)
		}
		if st := describe(); st.ProducerID != pid || st.ProducerEpoch != 1 {
			t.Errorf("%s: %+v, want pid %d epoch 1", T, st, pid)
		}
		if n.exited() {
			t.Fatalf("broker exited: %v", n.waitErr)
		}
	})
}

func mapsEqualInt(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
