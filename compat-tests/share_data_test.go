package compat

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share groups' data path (KIP-932, docs/groups-next.md part B): ShareFetch
// and ShareAcknowledge sent raw, so every acquired range, delivery count
// and error code is checked exactly.

// shareRange is an acquired range as ShareFetch answers it.
type shareRange struct {
	First, Last int64
	Count       int16
}

// shareAck is one acknowledgement batch of one type.
type shareAck struct {
	First, Last int64
	Type        int8
}

// shareClient is one share-group member's raw connection to one node.
type shareClient struct {
	t       *testing.T
	rc      *rawClient
	group   string
	member  string
	topicID [16]byte
	epoch   int32
}

func newShareClient(t *testing.T, addr, group, member string, topicID [16]byte) *shareClient {
	return &shareClient{t: t, rc: newRawClient(t, addr), group: group, member: member, topicID: topicID}
}

// fetchOpts are a ShareFetch's limits.
type fetchOpts struct {
	maxRecords int32
	strict     bool // ShareAcquireMode 1 (v2)
	maxWait    time.Duration
}

// fetch sends a ShareFetch for partition 0 at the session's epoch with
// acks piggybacked; the epoch moves on when the answer has no top-level
// error.
func (c *shareClient) fetch(o fetchOpts, acks ...shareAck) *kmsg.ShareFetchResponse {
	c.t.Helper()
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = kmsg.StringPtr(c.group), kmsg.StringPtr(c.member)
	req.ShareSessionEpoch = c.epoch
	req.MaxWaitMillis = int32(o.maxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.MaxRecords = o.maxRecords
	if o.strict {
		req.ShareAcquireMode = 1
	}
	rt := kmsg.NewShareFetchRequestTopic()
	rt.TopicID = c.topicID
	rp := kmsg.NewShareFetchRequestTopicPartition()
	rp.Partition = 0
	rp.PartitionMaxBytes = 1 << 20
	for _, a := range acks {
		ab := kmsg.NewShareFetchRequestTopicPartitionAcknowledgementBatch()
		ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes = a.First, a.Last, []int8{a.Type}
		rp.AcknowledgementBatches = append(rp.AcknowledgementBatches, ab)
	}
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.rc.do(req, 2, o.maxWait+10*time.Second)
	if err != nil {
		c.t.Fatalf("%s: ShareFetch epoch %d: %v", c.member, c.epoch, err)
	}
	r := resp.(*kmsg.ShareFetchResponse)
	if r.ErrorCode == 0 && c.epoch >= 0 {
		c.epoch++
	}
	return r
}

// open opens a share session naming no partitions (so that the member
// can acknowledge on this node without acquiring anything).
func (c *shareClient) open() int16 {
	c.t.Helper()
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = kmsg.StringPtr(c.group), kmsg.StringPtr(c.member)
	req.MaxBytes = 1 << 20
	resp, err := c.rc.do(req, 2, 10*time.Second)
	if err != nil {
		c.t.Fatalf("%s: ShareFetch open: %v", c.member, err)
	}
	r := resp.(*kmsg.ShareFetchResponse)
	if r.ErrorCode == 0 {
		c.epoch = 1
	}
	return r.ErrorCode
}

// ack sends a ShareAcknowledge for partition 0 and returns the
// partition's error code (or the top-level one).
func (c *shareClient) ack(epoch int32, acks ...shareAck) int16 {
	c.t.Helper()
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.GroupID, req.MemberID = kmsg.StringPtr(c.group), kmsg.StringPtr(c.member)
	req.ShareSessionEpoch = epoch
	rt := kmsg.NewShareAcknowledgeRequestTopic()
	rt.TopicID = c.topicID
	rp := kmsg.NewShareAcknowledgeRequestTopicPartition()
	for _, a := range acks {
		ab := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
		ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes = a.First, a.Last, []int8{a.Type}
		rp.AcknowledgementBatches = append(rp.AcknowledgementBatches, ab)
	}
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.rc.do(req, 2, 10*time.Second)
	if err != nil {
		c.t.Fatalf("%s: ShareAcknowledge epoch %d: %v", c.member, epoch, err)
	}
	r := resp.(*kmsg.ShareAcknowledgeResponse)
	if r.ErrorCode != 0 {
		return r.ErrorCode
	}
	if epoch > 0 {
		c.epoch = epoch + 1
	}
	if len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 1 {
		c.t.Fatalf("%s: ShareAcknowledge answered %d topics, want 1 with 1 partition", c.member, len(r.Topics))
	}
	return r.Topics[0].Partitions[0].ErrorCode
}

// sharePartition returns the answer's entry for partition 0 (nil: none).
func sharePartition(r *kmsg.ShareFetchResponse) *kmsg.ShareFetchResponseTopicPartition {
	for i := range r.Topics {
		for j := range r.Topics[i].Partitions {
			if r.Topics[i].Partitions[j].Partition == 0 {
				return &r.Topics[i].Partitions[j]
			}
		}
	}
	return nil
}

// acquiredOf checks a ShareFetch answer: no errors, and a record with
// value v<offset> for every acquired offset; it returns the ranges.
func acquiredOf(t *testing.T, what string, r *kmsg.ShareFetchResponse) []shareRange {
	t.Helper()
	if r.ErrorCode != 0 {
		t.Fatalf("%s: ShareFetch error %s", what, errName(r.ErrorCode))
	}
	p := sharePartition(r)
	if p == nil {
		return nil
	}
	if p.ErrorCode != 0 || p.AcknowledgeErrorCode != 0 {
		t.Fatalf("%s: partition error %s, acknowledge error %s", what, errName(p.ErrorCode), errName(p.AcknowledgeErrorCode))
	}
	fp := kmsg.NewFetchResponseTopicPartition()
	fp.RecordBatches = p.Records
	got, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "t"}, &fp, kgo.DefaultDecompressor(), nil)
	vals := map[int64]string{}
	for _, rec := range got.Records {
		vals[rec.Offset] = strings.TrimRight(string(rec.Value), ".") // padded values
	}
	var out []shareRange
	for _, a := range p.AcquiredRecords {
		out = append(out, shareRange{a.FirstOffset, a.LastOffset, a.DeliveryCount})
		for o := a.FirstOffset; o <= a.LastOffset; o++ {
			if want := fmt.Sprintf("v%d", o); vals[o] != want {
				t.Fatalf("%s: acquired offset %d has value %q in the answer, want %q", what, o, vals[o], want)
			}
		}
	}
	return out
}

func wantRanges(t *testing.T, what string, got []shareRange, want ...shareRange) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: acquired %v, want %v", what, got, want)
	}
}

// produceValues produces v<offset> records one batch each to partition 0
// and checks they land at offsets from..from+n-1.
func produceValues(t *testing.T, cl *kgo.Client, topic string, from int64, n int) {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	for i := int64(0); i < int64(n); i++ {
		r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprintf("v%d", from+i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce v%d: %v", from+i, err)
		}
		if r.Offset != from+i {
			t.Fatalf("v%d landed at offset %d", from+i, r.Offset)
		}
	}
}

func topicIDOf(t *testing.T, adm *kadm.Client, topic string) [16]byte {
	t.Helper()
	td, err := adm.ListTopics(ctxTimeout(t, 10*time.Second), topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("list %s: %v %v", topic, err, td[topic].Err)
	}
	return td[topic].ID
}

// startShareNode starts one node with share.auto-offset-reset earliest
// (and opts), creates topic with one partition holding records values
// (produceValues) and returns the node, its clients and the topic's ID.
func startShareNode(t *testing.T, topic string, records int, opts ...startOpt) (*node, *kadm.Client, *kgo.Client, [16]byte) {
	t.Helper()
	n := startTusk(t, append([]startOpt{withFlag("share-auto-offset-reset", "earliest")}, opts...)...)
	adm, cl := newAdm(t, n)
	createTopic(t, adm, topic, 1, nil)
	produceValues(t, cl, topic, 0, records)
	return n, adm, cl, topicIDOf(t, adm, topic)
}

// TestShareFetchAcknowledge: one node, one partition of ten records (one
// batch each), share.auto-offset-reset earliest, a 3 s lock and a
// delivery limit of 3. Members acquire disjoint records; ACCEPT, RELEASE
// and REJECT; a released record comes back with a higher delivery count
// and is archived when released at the limit; a member's late acknowledgement of
// records whose lock expired is INVALID_RECORD_STATE and they go to
// another member with a higher count; session epochs are checked; a
// closed session releases what it held.
func TestShareFetchAcknowledge(t *testing.T) {
	const topic, group = "share-acks", "sg"
	n, adm, cl, id := startShareNode(t, topic, 10, withFlag("share-record-lock-duration", "3s"), withFlag("share-delivery-count-limit", "3"))
	// The group, for DescribeShareGroupOffsets: made empty at offset 0.
	var at kadm.Offsets
	at.AddOffset(topic, 0, 0, -1)
	if r, err := adm.AlterShareGroupOffsets(ctxTimeout(t, 15*time.Second), group, at); err != nil || !r.Ok() {
		t.Fatalf("alter: %v %v", err, r.Error())
	}
	a := newShareClient(t, n.Kafka, group, "member-a", id)
	b := newShareClient(t, n.Kafka, group, "member-b", id)
	strict3 := fetchOpts{maxRecords: 3, strict: true}

	wantRanges(t, "a opens", acquiredOf(t, "a opens", a.fetch(strict3)), shareRange{0, 2, 1})
	lockedB := time.Now()
	wantRanges(t, "b opens", acquiredOf(t, "b opens", b.fetch(strict3)), shareRange{3, 5, 1})
	// ACCEPT 0, RELEASE 1, REJECT 2: 1 comes back (count 2), 2 never.
	r := a.fetch(strict3, shareAck{0, 0, 1}, shareAck{1, 1, 2}, shareAck{2, 2, 3})
	wantRanges(t, "a acks and fetches", acquiredOf(t, "a acks and fetches", r), shareRange{1, 1, 2}, shareRange{6, 7, 1})

	// Epochs: a replayed epoch, an unknown session, epoch 0 on
	// ShareAcknowledge.
	a.epoch--
	if r := a.fetch(strict3); r.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("replayed epoch: %s, want INVALID_SHARE_SESSION_EPOCH", errName(r.ErrorCode))
	}
	a.epoch++
	stranger := newShareClient(t, n.Kafka, group, "member-x", id)
	stranger.epoch = 4
	if r := stranger.fetch(strict3); r.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("no session: %s, want SHARE_SESSION_NOT_FOUND", errName(r.ErrorCode))
	}
	if code := a.ack(0, shareAck{6, 6, 1}); code != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("ShareAcknowledge epoch 0: %s, want INVALID_SHARE_SESSION_EPOCH", errName(code))
	}
	// A record another member holds.
	if code := a.ack(a.epoch, shareAck{3, 3, 1}); code != kerr.InvalidRecordState.Code {
		t.Fatalf("a acks b's offset 3: %s, want INVALID_RECORD_STATE", errName(code))
	}
	if code := a.ack(a.epoch, shareAck{1, 1, 2}, shareAck{6, 7, 1}); code != 0 {
		t.Fatalf("a releases 1, accepts 6-7: %s", errName(code))
	}
	// 0 accepted moved the start offset to 1; above it 2 (rejected) and
	// 6-7 (accepted) are done; 1 (released), 3-5 (b's) and 8-9 are not:
	// a lag of 10 - 1 - 3.
	if got := shareLags(t, adm, group); !reflect.DeepEqual(got, map[string]int64{topic + "/0": 6}) {
		t.Fatalf("lag: %v, want 6", got)
	}
	c := newShareClient(t, n.Kafka, group, "member-c", id)
	wantRanges(t, "c opens", acquiredOf(t, "c opens", c.fetch(fetchOpts{maxRecords: 100})), shareRange{1, 1, 3}, shareRange{8, 9, 1})
	// c releases 1 at the delivery limit (3): archived. c's session
	// closes with it and releases 9.
	c.epoch = -1
	r = c.fetch(fetchOpts{}, shareAck{1, 1, 2}, shareAck{8, 8, 1})
	if r.ErrorCode != 0 || sharePartition(r) == nil || sharePartition(r).AcknowledgeErrorCode != 0 {
		t.Fatalf("c closes with acks: error %s, partition %+v", errName(r.ErrorCode), sharePartition(r))
	}
	d := newShareClient(t, n.Kafka, group, "member-d", id)
	wantRanges(t, "d opens", acquiredOf(t, "d opens", d.fetch(fetchOpts{maxRecords: 100})), shareRange{9, 9, 2})
	// Nothing is available until b's lock on 3-5 runs out.
	r = d.fetch(fetchOpts{maxRecords: 100, maxWait: 15 * time.Second}, shareAck{9, 9, 1})
	expired := time.Now()
	wantRanges(t, "d waits for b's lock", acquiredOf(t, "d waits for b's lock", r), shareRange{3, 5, 2})
	if held := expired.Sub(lockedB); held < 3*time.Second {
		t.Fatalf("b's records were handed to d %v after b acquired them, before the 3 s lock ran out", held)
	}
	if code := b.ack(b.epoch, shareAck{3, 5, 1}); code != kerr.InvalidRecordState.Code {
		t.Fatalf("b acks after its lock expired: %s, want INVALID_RECORD_STATE", errName(code))
	}
	// d accepts 3 and closes its session: 4-5 (count 2) come back.
	if code := d.ack(-1, shareAck{3, 3, 1}); code != 0 {
		t.Fatalf("d closes with an ack: %s", errName(code))
	}
	e := newShareClient(t, n.Kafka, group, "member-e", id)
	wantRanges(t, "e opens", acquiredOf(t, "e opens", e.fetch(fetchOpts{maxRecords: 100, maxWait: 5 * time.Second})), shareRange{4, 5, 3})
	// Everything is finished or e's: a short poll acquires nothing.
	wantRanges(t, "e acks all", acquiredOf(t, "e acks all", e.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond}, shareAck{4, 4, 3}, shareAck{5, 5, 1})))
	// New records go to whoever asks.
	produceValues(t, cl, topic, 10, 2)
	wantRanges(t, "e after produce", acquiredOf(t, "e after produce", e.fetch(fetchOpts{maxRecords: 100, maxWait: 5 * time.Second})), shareRange{10, 11, 1})
}

// TestShareGroupConfigInUse: group configs altered while a share-partition
// is in use apply to it at once. One node, share.auto-offset-reset
// earliest, ten records. a acquires 0-4 under the default 30 s lock; the
// group's lock duration is set to 1 s and its delivery limit to 2: b's
// acquisition of 5-9 is answered with the 1 s lock and expires after it
// (c gets 5-9 with count 2, a's 0-4 stay a's), and c's release at count
// 2 archives them: nothing is left to acquire.
func TestShareGroupConfigInUse(t *testing.T) {
	const topic, group = "share-cfg", "sg-cfg"
	n, _, cl, id := startShareNode(t, topic, 10)
	a := newShareClient(t, n.Kafka, group, "member-a", id)
	b := newShareClient(t, n.Kafka, group, "member-b", id)
	c := newShareClient(t, n.Kafka, group, "member-c", id)
	five := fetchOpts{maxRecords: 5, strict: true}
	r := a.fetch(five)
	wantRanges(t, "a opens", acquiredOf(t, "a opens", r), shareRange{0, 4, 1})
	if r.AcquisitionLockTimeoutMillis != 30000 {
		t.Fatalf("a's lock: %d ms, want 30000", r.AcquisitionLockTimeoutMillis)
	}
	for _, kv := range [][2]string{{"share.record.lock.duration.ms", "1000"}, {"share.delivery.count.limit", "2"}} {
		if code := alterGroupConfig(t, cl, group, kmsg.IncrementalAlterConfigOpSet, kv[0], kv[1]); code != 0 {
			t.Fatalf("set %s=%s: %v", kv[0], kv[1], kerr.ErrorForCode(code))
		}
	}
	r = b.fetch(five)
	locked := time.Now()
	wantRanges(t, "b opens", acquiredOf(t, "b opens", r), shareRange{5, 9, 1})
	if r.AcquisitionLockTimeoutMillis != 1000 {
		t.Fatalf("b's lock: %d ms, want 1000", r.AcquisitionLockTimeoutMillis)
	}
	r = c.fetch(fetchOpts{maxRecords: 100, maxWait: 10 * time.Second})
	wantRanges(t, "c after b's lock", acquiredOf(t, "c after b's lock", r), shareRange{5, 9, 2})
	if held := time.Since(locked); held > 9*time.Second {
		t.Fatalf("b's 1 s lock held %v", held)
	}
	// Released at the new limit (2): archived. a's 0-4 are still a's.
	r = c.fetch(fetchOpts{maxRecords: 100, maxWait: 500 * time.Millisecond}, shareAck{5, 9, 2})
	wantRanges(t, "c releases at the limit", acquiredOf(t, "c releases at the limit", r))
	if code := a.ack(a.epoch, shareAck{0, 4, 1}); code != 0 {
		t.Fatalf("a accepts 0-4 under its 30 s lock: %s", errName(code))
	}
	wantRanges(t, "nothing left", acquiredOf(t, "nothing left", c.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond})))
}

// TestShareStateSurvivesRestart: the share-partition state is in
// __share_group_state before an answer reports it. One node: a member
// acquires 0-5 and accepts 0-2, rejects 3; the node is killed (SIGKILL)
// and restarted; another member gets exactly 4-5, with delivery count 2
// (acquired when the node died: available again, the count kept), and
// nothing acknowledged or rejected comes back.
func TestShareStateSurvivesRestart(t *testing.T) {
	const topic, group = "share-restart", "sg"
	n, _, cl, id := startShareNode(t, topic, 6)
	a := newShareClient(t, n.Kafka, group, "member-a", id)
	wantRanges(t, "a opens", acquiredOf(t, "a opens", a.fetch(fetchOpts{maxRecords: 100})), shareRange{0, 5, 1})
	if code := a.ack(a.epoch, shareAck{0, 2, 1}, shareAck{3, 3, 3}); code != 0 {
		t.Fatalf("a acks: %s", errName(code))
	}
	cl.Close()
	n.Kill9(t)
	n = n.Restart(t)
	b := newShareClient(t, n.Kafka, group, "member-b", id)
	// The first fetches may find the partition's log or coordinator
	// still loading (a retriable error): poll.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := b.fetch(fetchOpts{maxRecords: 100, maxWait: time.Second})
		p := sharePartition(r)
		if r.ErrorCode == 0 && p != nil && p.ErrorCode != 0 && kerr.IsRetriable(kerr.ErrorForCode(p.ErrorCode)) && time.Now().Before(deadline) {
			continue
		}
		if got := acquiredOf(t, "b after the restart", r); len(got) > 0 || time.Now().After(deadline) {
			wantRanges(t, "b after the restart", got, shareRange{4, 5, 2})
			break
		}
	}
	wantRanges(t, "b again", acquiredOf(t, "b again", b.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond})))
}

// produceShareValues produces n records from offset from to partition 0
// of topic, each "v<offset>" padded with dots to 1 KiB, acks=all.
func produceShareValues(t *testing.T, cl *kgo.Client, topic string, from int64, n int) {
	t.Helper()
	ctx := ctxTimeout(t, 60*time.Second)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Sprintf("v%d", from+int64(i))
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v + strings.Repeat(".", 1024-len(v)))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce from %d: %v", from, err)
	}
	for i, r := range recs {
		if r.Offset != from+int64(i) {
			t.Fatalf("v%d landed at offset %d", from+int64(i), r.Offset)
		}
	}
}

// activeLeader is the leader of topic's partition 0's active segment as
// node via sees it, once that segment is active and not led by a node in
// not (-1 until then).
func (c *cluster) activeShareLeader(t *testing.T, via int32, topic string, not ...int32) (leader int32, segments int) {
	segs := c.segmentsVia(t, via, topic, 0)
	if len(segs) == 0 {
		return -1, 0
	}
	a := segs[len(segs)-1]
	if a.State != "active" || slices.Contains(not, a.Leader) {
		return -1, len(segs)
	}
	return a.Leader, len(segs)
}

// TestClusterShareRollAndFailover: 3 nodes, a partition of RF 3 with
// 256 KiB segments, share.auto-offset-reset earliest and 60 s locks.
// Member a acquires 0-4 on the segment leader; records are produced until
// a roll moves the leadership; a accepts 0-2 on the previous leader (which
// forwards them) and 3-4 on the new leader (the handover kept its locks:
// without it they would be available there and the acknowledgement
// INVALID_RECORD_STATE), and b gets 5-9 with delivery count 1 (nothing
// redelivered). b accepts 5-7, keeps 8-9, and the
// segment leader is killed (SIGKILL): on the leader the failover picks, c
// gets exactly 8-9 with count 2, then every later record once with count
// 1; no acknowledged record comes back.
func TestClusterShareRollAndFailover(t *testing.T) {
	skipClusterInKfakeMode(t)
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("share-auto-offset-reset", "earliest"), withFlag("share-record-lock-duration", "60s")}
	})
	const topic, group = "share-roll", "sg"
	seeds := c.kafkaAddrs(c.ids()...)
	adm := createRollingTopic(t, c, topic)
	id := topicIDOf(t, adm, topic)
	prod := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produceShareValues(t, prod, topic, 0, 10)
	first, segs := c.activeShareLeader(t, c.ids()[0], topic)
	if first < 0 {
		t.Fatalf("no active leader of %s", topic)
	}
	a := newShareClient(t, c.node(first).Kafka, group, "member-a", id)
	wantRanges(t, "a on the first leader", acquiredOf(t, "a on the first leader", a.fetch(fetchOpts{maxRecords: 5, strict: true})), shareRange{0, 4, 1})

	// Roll: produce until the leadership moves (a rotation goes to
	// another replica).
	next := int64(10)
	second := int32(-1)
	for deadline := time.Now().Add(60 * time.Second); second < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no roll moved the leadership off node %d after %d records: %+v", first, next, c.segmentsVia(t, first, topic, 0))
		}
		produceShareValues(t, prod, topic, next, 64)
		next += 64
		l, n := c.activeShareLeader(t, first, topic, first)
		if l >= 0 && n > segs {
			second = l
		}
	}
	t.Logf("rolled from node %d to node %d after %d records: %+v", first, second, next, c.segmentsVia(t, second, topic, 0))
	// a acknowledges 0-2 on the node it fetched from, which forwards
	// them to the new leader, and 3-4 on the new leader.
	for deadline := time.Now().Add(20 * time.Second); ; {
		code := a.ack(a.epoch, shareAck{0, 2, 1})
		if code == 0 {
			break
		}
		if !kerr.IsRetriable(kerr.ErrorForCode(code)) || time.Now().After(deadline) {
			t.Fatalf("a accepts 0-2 on the previous leader %d: %s", first, errName(code))
		}
	}
	a2 := newShareClient(t, c.node(second).Kafka, group, "member-a", id)
	ackDeadline := time.Now().Add(20 * time.Second)
	for {
		code := a2.open()
		if code == 0 {
			code = a2.ack(a2.epoch, shareAck{3, 4, 1})
		}
		if code == 0 {
			break
		}
		if !kerr.IsRetriable(kerr.ErrorForCode(code)) || time.Now().After(ackDeadline) {
			t.Fatalf("a accepts 3-4 on the new leader %d: %s", second, errName(code))
		}
		time.Sleep(50 * time.Millisecond) // a retriable answer: the new leader is taking over
	}
	b := newShareClient(t, c.node(second).Kafka, group, "member-b", id)
	wantRanges(t, "b on the new leader", acquiredOf(t, "b on the new leader", b.fetch(fetchOpts{maxRecords: 5, strict: true})), shareRange{5, 9, 1})
	if code := b.ack(b.epoch, shareAck{5, 7, 1}); code != 0 {
		t.Fatalf("b accepts 5-7: %s", errName(code))
	}

	c.node(second).Kill9(t)
	survivor := c.ids()[0]
	if survivor == second {
		survivor = c.ids()[1]
	}
	third := int32(-1)
	for deadline := time.Now().Add(60 * time.Second); third < 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failover of %s after node %d was killed", topic, second)
		}
		third, _ = c.activeShareLeader(t, survivor, topic, second)
	}
	t.Logf("killed node %d; node %d leads now", second, third)
	cc := newShareClient(t, c.node(third).Kafka, group, "member-c", id)
	var got []shareRange
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cc.epoch > 0 {
			cc.epoch = -1
			cc.fetch(fetchOpts{}) // close: the next try opens again
			cc.epoch = 0
		}
		r := cc.fetch(fetchOpts{maxRecords: 2, strict: true, maxWait: time.Second})
		if p := sharePartition(r); r.ErrorCode == 0 && p != nil && p.ErrorCode != 0 && kerr.IsRetriable(kerr.ErrorForCode(p.ErrorCode)) && time.Now().Before(deadline) {
			continue
		}
		if got = acquiredOf(t, "c after the failover", r); len(got) > 0 || time.Now().After(deadline) {
			break
		}
	}
	wantRanges(t, "c after the failover", got, shareRange{8, 9, 2})
	// The rest, each once with count 1.
	seen := map[int64]bool{}
	acks := []shareAck{{8, 9, 1}}
	for o := int64(10); o < next; {
		r := cc.fetch(fetchOpts{maxRecords: 500, maxWait: 5 * time.Second}, acks...)
		acks = nil
		rs := acquiredOf(t, "c reads on", r)
		if len(rs) == 0 {
			t.Fatalf("c got nothing at offset %d of %d", o, next)
		}
		for _, x := range rs {
			if x.First != o || x.Count != 1 {
				t.Fatalf("c acquired %+v, want from %d with count 1", x, o)
			}
			for k := x.First; k <= x.Last; k++ {
				seen[k] = true
			}
			o = x.Last + 1
			acks = append(acks, shareAck{x.First, x.Last, 1})
		}
	}
	if len(seen) != int(next-10) {
		t.Fatalf("c acquired %d distinct records of %d", len(seen), next-10)
	}
	wantRanges(t, "c at the end", acquiredOf(t, "c at the end", cc.fetch(fetchOpts{maxRecords: 500, maxWait: 300 * time.Millisecond}, acks...)))
}

// TestClusterShareKgoFailover: four kgo share consumers (kgo.ShareGroup)
// read one partition of RF 3 with 256 KiB segments on 3 nodes while 3,000
// records (1 KiB, uncompressed) are produced, so the leadership rotates
// about a dozen times; half way the partition's segment leader is killed
// (SIGKILL). Each consumer accepts what it polls and flushes; a flush with
// no acknowledgement error confirms those records. Every record is
// delivered; none is delivered again after a confirmed acknowledgement; a
// redelivery carries a higher delivery count; and the share-partition's
// start offset reaches the end (every record acknowledged or archived).
func TestClusterShareKgoFailover(t *testing.T) {
	skipClusterInKfakeMode(t)
	t.Setenv("TUSK_LEASE_TIMEOUT", scaled(t, time.Second).String())
	t.Setenv("TUSK_LEASE_RENEW", scaled(t, 200*time.Millisecond).String())
	c := startClusterWith(t, 3, func(int32) []startOpt {
		return []startOpt{withFlag("share-auto-offset-reset", "earliest"), withFlag("share-record-lock-duration", "5s")}
	})
	const topic, group, total = "share-kgo", "sg-kgo", 3000
	seeds := c.kafkaAddrs(c.ids()...)
	createRollingTopic(t, c, topic)

	type delivery struct {
		count int32
	}
	var (
		mu         sync.Mutex
		deliveries = map[int64][]delivery{}
		confirmed  = map[int64]bool{}
		problems   []string
		ackErrLog  []string
	)
	pollCtx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	var wg sync.WaitGroup
	newClient := func(opts ...kgo.Opt) *kgo.Client { return newClusterClient(t, seeds, opts...) }
	for i := 0; i < 4; i++ {
		pollShare(pollCtx, &wg, newClient, group, topic, sharePoll{
			record: func(r *kgo.Record) kgo.AckStatus {
				mu.Lock()
				defer mu.Unlock()
				if confirmed[r.Offset] {
					problems = append(problems, fmt.Sprintf("offset %d delivered again (count %d) after a confirmed acknowledgement", r.Offset, r.DeliveryCount()))
				}
				if ds := deliveries[r.Offset]; len(ds) > 0 && ds[len(ds)-1].count >= r.DeliveryCount() {
					problems = append(problems, fmt.Sprintf("offset %d redelivered with count %d after count %d", r.Offset, r.DeliveryCount(), ds[len(ds)-1].count))
				}
				if want := fmt.Sprintf("v%d", r.Offset); strings.TrimRight(string(r.Value), ".") != want {
					problems = append(problems, fmt.Sprintf("offset %d value %.10q, want %s", r.Offset, r.Value, want))
				}
				deliveries[r.Offset] = append(deliveries[r.Offset], delivery{count: r.DeliveryCount()})
				return kgo.AckAccept
			},
			ackErr: func(r kgo.ShareAckResult) {
				mu.Lock()
				ackErrLog = append(ackErrLog, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), r.Err))
				mu.Unlock()
			},
			flushed: func(offs []int64, err error, ok bool) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ackErrLog = append(ackErrLog, fmt.Sprintf("%s flush: %v", time.Now().Format("15:04:05.000"), err))
				}
				for _, o := range offs {
					if ok {
						confirmed[o] = true
					}
				}
			},
		})
	}

	prod := newClusterClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	killed := int32(-1)
	for next := int64(0); next < total; next += 100 {
		produceShareValues(t, prod, topic, next, 100)
		if next+100 == total/2 {
			waitFor(t, 60*time.Second, "half the records delivered", func() (bool, string) {
				mu.Lock()
				defer mu.Unlock()
				return len(deliveries) >= total/2-100, fmt.Sprintf("%d delivered", len(deliveries))
			})
			segs := c.segmentsVia(t, c.ids()[0], topic, 0)
			killed = segs[len(segs)-1].Leader
			c.node(killed).Kill9(t)
			t.Logf("killed node %d, the segment leader, after %d records (%d segments)", killed, next+100, len(segs))
		}
	}
	waitFor(t, 60*time.Second, "every record delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var missing []int64
		for o := int64(0); o < total && len(missing) < 20; o++ {
			if len(deliveries[o]) == 0 {
				missing = append(missing, o)
			}
		}
		return len(deliveries) == total, fmt.Sprintf("%d of %d delivered; missing %v; %d acknowledgement errors", len(deliveries), total, missing, len(ackErrLog))
	})
	var survivor int32
	for _, id := range c.ids() {
		if id != killed {
			survivor = id
		}
	}
	sadm := kadm.NewClient(newClusterClient(t, c.kafkaAddrs(survivor)))
	waitFor(t, 30*time.Second, "the start offset at the end", func() (bool, string) {
		got, err := shareOffsets(t, sadm, group)
		return err == nil && got[topic+"/0"] == total, fmt.Sprint(got, err)
	})
	stopPolling()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	redelivered := 0
	for o := int64(0); o < total; o++ {
		if len(deliveries[o]) > 1 {
			redelivered++
		}
	}
	kinds := map[string]int{}
	for _, e := range ackErrLog {
		_, k, _ := strings.Cut(e, " ")
		k, _, _ = strings.Cut(k, ":")
		kinds[k]++
	}
	t.Logf("%d records, %d delivered more than once, %d segments; acknowledgement errors %v", total, redelivered, len(c.segmentsVia(t, survivor, topic, 0)), kinds)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestShareReadCommitted: share.isolation-level read_committed on one
// node. A transactional producer aborts v0-v2 (offsets 0-2, ABORT marker
// at 3), commits v4-v5 (4-5, COMMIT at 6) and leaves v7 open (7): a share
// consumer is handed exactly 4-5; the aborted records and the markers are
// archived, never delivered; nothing at or past the open transaction is
// acquired until it commits, and then 7 (marker at 8) is.
func TestShareReadCommitted(t *testing.T) {
	n := startTusk(t, withFlag("share-auto-offset-reset", "earliest"), withFlag("share-isolation-level", "read_committed"))
	adm, _ := newAdm(t, n)
	const topic, group = "share-rc", "sg"
	createTopic(t, adm, topic, 1, nil)
	id := topicIDOf(t, adm, topic)
	prod := newKgo(t, n, kgo.TransactionalID("share-rc-producer"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	ctx := ctxTimeout(t, 30*time.Second)
	txn := func(from, n int, end kgo.TransactionEndTry) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			r := &kgo.Record{Partition: 0, Value: []byte(fmt.Sprintf("v%d", i))}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce v%d: %v", i, err)
			}
			if r.Offset != int64(i) {
				t.Fatalf("v%d landed at %d", i, r.Offset)
			}
		}
		if err := prod.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	txn(0, 3, kgo.TryAbort)
	txn(4, 2, kgo.TryCommit)
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("v7")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := newShareClient(t, n.Kafka, group, "member-c", id)
	wantRanges(t, "c below the open transaction", acquiredOf(t, "c below the open transaction", c.fetch(fetchOpts{maxRecords: 100, maxWait: time.Second})), shareRange{4, 5, 1})
	wantRanges(t, "c while it is open", acquiredOf(t, "c while it is open", c.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond}, shareAck{4, 5, 1})))
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	wantRanges(t, "c after the commit", acquiredOf(t, "c after the commit", c.fetch(fetchOpts{maxRecords: 100, maxWait: 5 * time.Second})), shareRange{7, 7, 1})
	wantRanges(t, "c at the end", acquiredOf(t, "c at the end", c.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond}, shareAck{7, 7, 1})))
	// A new member finds nothing either: 0-3 and 6 were archived, 8 too.
	d := newShareClient(t, n.Kafka, group, "member-d", id)
	wantRanges(t, "d at the end", acquiredOf(t, "d at the end", d.fetch(fetchOpts{maxRecords: 100, maxWait: 300 * time.Millisecond})))
}
