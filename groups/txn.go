package groups

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactional offset commits (docs/transactions.md): TxnOffsetCommit
// writes the offsets as transactional records of the producer's
// transaction and holds them pending in the group; the transaction's
// COMMIT marker on the group's __consumer_offsets partition makes them
// the committed offsets (unless a plain commit of the partition was
// written after them), its ABORT marker drops them (CompleteTxn, which
// the broker calls for a marker it appended and for each marker it
// replays). OffsetFetch with RequireStable answers UNSTABLE_OFFSET_COMMIT
// for a partition with a pending transactional commit.

// TxnPersister is implemented by a Persister that also writes the
// transactional records of TxnOffsetCommit: records of producer
// producerID's transaction at producerEpoch, returning once they are
// durable as Persist does (same errors).
type TxnPersister interface {
	PersistTxn(ctx context.Context, producerID int64, producerEpoch int16, records []Record) error
}

// txnPending reports whether k has a transactional commit pending. g.mu
// held.
func (g *group) txnPending(k tp) bool {
	for _, offs := range g.pendingTxn {
		if _, ok := offs[k]; ok {
			return true
		}
	}
	return false
}

// addPendingTxn holds o for k in pid's transaction. g.mu held.
func (g *group) addPendingTxn(pid int64, k tp, o offsetValue) {
	if g.pendingTxn == nil {
		g.pendingTxn = make(map[int64]map[tp]offsetValue)
	}
	offs := g.pendingTxn[pid]
	if offs == nil {
		offs = make(map[tp]offsetValue)
		g.pendingTxn[pid] = offs
	}
	offs[k] = o
}

// TxnOffsetCommit handles TxnOffsetCommit v0–v3 (KIP-447 member id,
// generation and instance id from v3). As Kafka's doTxnCommitOffsets: a
// group that does not exist is created (Empty); a Dead group answers
// COORDINATOR_NOT_AVAILABLE; a fenced instance id FENCED_INSTANCE_ID; a
// member id that is not a member UNKNOWN_MEMBER_ID; a generation other
// than the group's (when not -1) ILLEGAL_GENERATION. The offsets are
// persisted as records of the producer's transaction and stay pending
// until CompleteTxn; a Persist error fails every partition and changes
// nothing.
func (c *Coordinator) TxnOffsetCommit(ctx context.Context, req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	fill := func(code int16) *kmsg.TxnOffsetCommitResponse {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].ErrorCode == 0 {
					resp.Topics[i].Partitions[j].ErrorCode = code
				}
			}
		}
		return resp
	}
	if code := c.preCheck(req.Group); code != 0 {
		return fill(code)
	}
	txp, ok := c.p.(TxnPersister)
	if !ok {
		return fill(kerr.CoordinatorNotAvailable.Code)
	}
	g, _ := c.lockLive(req.Group, true)
	if g == nil {
		return fill(kerr.CoordinatorNotAvailable.Code)
	}
	defer g.unlock()
	if c.closed.Load() {
		return fill(kerr.NotCoordinator.Code)
	}
	memberID, generation := "", int32(-1)
	var instanceID *string
	if req.Version >= 3 {
		memberID, generation, instanceID = req.MemberID, req.Generation, req.InstanceID
	}
	if g.typ == GroupShare {
		return fill(kerr.GroupIDNotFound.Code)
	}
	if g.typ == GroupConsumer {
		// The generation is the member epoch.
		if code := g.consumer.validateOffsetCommit(memberID, generation, req.Version, true); code != 0 {
			return fill(code)
		}
	} else {
		if instanceID != nil {
			if id, ok := g.static[*instanceID]; ok && id != memberID {
				return fill(kerr.FencedInstanceID.Code)
			}
		}
		if memberID != "" && g.members[memberID] == nil {
			return fill(kerr.UnknownMemberID.Code)
		}
		if generation >= 0 && generation != g.generation {
			return fill(kerr.IllegalGeneration.Code)
		}
	}

	now := g.now().UnixMilli()
	type pendingCommit struct {
		k  tp
		ov offsetValue
	}
	var (
		recs    []Record
		commits []pendingCommit
	)
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			md := ""
			if p.Metadata != nil {
				md = *p.Metadata
			}
			if len(md) > c.cfg.MaxMetadataSize {
				resp.Topics[i].Partitions[j].ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			epoch := int32(-1)
			if req.Version >= 2 {
				epoch = p.LeaderEpoch
			}
			ov := offsetValue{offset: p.Offset, leaderEpoch: epoch, metadata: md, commitTs: now, expireTs: -1}
			commits = append(commits, pendingCommit{tp{t.Topic, p.Partition}, ov})
			recs = append(recs, Record{Key: offsetKey(g.name, t.Topic, p.Partition), Value: offsetRecordValue(ov)})
		}
	}
	if len(recs) > 0 {
		g.flush()
		if code := c.persistTxn(ctx, txp, req.ProducerID, req.ProducerEpoch, recs); code != 0 {
			return fill(code)
		}
	}
	for _, pc := range commits {
		pc.ov.order = g.nextOrder()
		g.addPendingTxn(req.ProducerID, pc.k, pc.ov)
	}
	return resp
}

// persistTxn is persist for transactional records.
func (c *Coordinator) persistTxn(ctx context.Context, p TxnPersister, pid int64, epoch int16, recs []Record) int16 {
	return c.persistWith(ctx, len(recs), func(ctx context.Context) error { return p.PersistTxn(ctx, pid, epoch, recs) })
}

// CompleteTxn applies the COMMIT (commit) or ABORT marker of producer
// pid's transaction written to this coordinator's __consumer_offsets
// partition: the producer's pending transactional offsets of every group
// become committed offsets, or are dropped. The broker calls it for every
// marker it replays (while loading) and, once a marker it appended is
// committed, after loading. It waits for each group's lock that holds
// offsets of pid.
func (c *Coordinator) CompleteTxn(pid int64, commit bool) {
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if offs, ok := g.pendingTxn[pid]; ok {
			delete(g.pendingTxn, pid)
			if commit {
				for k, o := range offs {
					// A plain commit written after the
					// transactional one wins, as in Kafka.
					if cur, ok := g.offsets[k]; !ok || cur.order < o.order {
						g.offsets[k] = o
					}
				}
			}
		}
		g.unlock()
	}
}

// ReplayTxn is Replay for a record of producer pid's transaction (a
// transactional batch of __consumer_offsets): an offset commit is held
// pending until the CompleteTxn of its marker; other records are
// replayed as Replay does.
func (c *Coordinator) ReplayTxn(pid int64, r Record) error {
	if !c.loading.Load() {
		return ErrNotLoading
	}
	if len(r.Key) < 2 || r.Value == nil {
		return c.Replay(r)
	}
	var k kmsg.OffsetCommitKey
	if err := k.ReadFrom(r.Key); err != nil || k.Version > 1 {
		return c.Replay(r)
	}
	var v kmsg.OffsetCommitValue
	if err := v.ReadFrom(r.Value); err != nil {
		return fmt.Errorf("groups: decoding transactional offset commit value of %s/%s/%d: %w", k.Group, k.Topic, k.Partition, err)
	}
	ov := offsetValue{offset: v.Offset, leaderEpoch: -1, metadata: v.Metadata, commitTs: v.CommitTimestamp, expireTs: -1}
	if v.Version >= 3 {
		ov.leaderEpoch = v.LeaderEpoch
	}
	g := c.getOrCreate(k.Group)
	g.mu.Lock()
	defer g.unlock()
	ov.order = g.nextOrder()
	g.addPendingTxn(pid, tp{k.Topic, k.Partition}, ov)
	return nil
}
