package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// offsetsTopic holds group metadata and committed offsets as records in
// Kafka's own __consumer_offsets schemas.
const offsetsTopic = "__consumer_offsets"

// groupCoordinators is one groups.Coordinator per __consumer_offsets
// partition; a group lives on partition abs(javaHash(group)) % N, as in
// Kafka. On a single node this node leads every partition.
type groupCoordinators struct {
	parts []*groups.Coordinator
	stop  chan struct{}
	wg    sync.WaitGroup
}

// offsetsPersister appends coordinator records to one partition's log and
// waits until they are durable per the fsync policy.
type offsetsPersister struct {
	log *storage.Log
	now func() time.Time
}

func (p offsetsPersister) Persist(ctx context.Context, recs []groups.Record) error {
	kvs := make([]kafkaproto.KV, len(recs))
	for i, r := range recs {
		kvs[i] = kafkaproto.KV{Key: r.Key, Value: r.Value}
	}
	batch := kafkaproto.AppendBatch(nil, p.now().UnixMilli(), kvs)
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		return fmt.Errorf("broker: encode group records: %w", err)
	}
	res, err := p.log.Append(batch, h, leaderEpoch)
	if err != nil {
		return fmt.Errorf("broker: persist group records: %w", err)
	}
	if err := p.log.WaitDurable(ctx, res.LastOffset); err != nil {
		return fmt.Errorf("broker: persist group records: %w", err)
	}
	return nil
}

// startGroups creates __consumer_offsets when missing, rebuilds every
// coordinator from its partition and starts offset expiry.
func (b *Broker) startGroups() error {
	t, ok := b.store.FSM().Topic(offsetsTopic)
	if !ok {
		id, err := newTopicID()
		if err != nil {
			return err
		}
		// Not compacted yet: retention is disabled so no offset is ever
		// lost, and the log grows with commits (see README).
		cmd := metadata.CreateTopic{Name: offsetsTopic, ID: id, Partitions: b.cfg.Groups.OffsetsPartitions, Internal: true,
			Configs: map[string]string{"retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": "104857600"}}
		if err := b.store.Apply(b.ctx, cmd); err != nil && !errors.Is(err, metadata.ErrTopicExists) {
			return fmt.Errorf("broker: create %s: %w", offsetsTopic, err)
		}
		t, _ = b.store.FSM().Topic(offsetsTopic)
		if err := b.openTopicLogs(t); err != nil {
			return err
		}
	}
	gc := &groupCoordinators{stop: make(chan struct{})}
	cfg := groups.Config{
		MinSessionTimeout:     b.cfg.Groups.MinSessionTimeout,
		MaxSessionTimeout:     b.cfg.Groups.MaxSessionTimeout,
		InitialRebalanceDelay: b.cfg.Groups.InitialRebalanceDelay,
		OffsetsRetention:      b.cfg.Groups.OffsetsRetention,
		Logger:                b.log.With().Str("component", "groups").Logger(),
	}
	if cfg.InitialRebalanceDelay == 0 {
		cfg.InitialRebalanceDelay = -1 // groups: negative disables, zero means Kafka's 3s
	}
	started := time.Now()
	records := 0
	for p := int32(0); p < t.Partitions; p++ {
		l, code := b.partitionLog(offsetsTopic, p)
		if code != 0 {
			gc.close()
			return fmt.Errorf("broker: %s-%d has no log", offsetsTopic, p)
		}
		c := groups.New(cfg, offsetsPersister{log: l, now: time.Now})
		n, err := replayOffsets(l, c)
		if err != nil {
			c.Close()
			gc.close()
			return fmt.Errorf("broker: replay %s-%d: %w", offsetsTopic, p, err)
		}
		records += n
		c.ReplayDone()
		gc.parts = append(gc.parts, c)
	}
	b.log.Info().Int("records", records).Dur("took", time.Since(started)).Msg("group coordinators loaded")
	gc.wg.Add(1)
	go func() {
		defer gc.wg.Done()
		t := time.NewTicker(b.cfg.Groups.OffsetsExpireInterval)
		defer t.Stop()
		for {
			select {
			case <-gc.stop:
				return
			case <-t.C:
				exists := func(topic string) bool { _, ok := b.store.FSM().Topic(topic); return ok }
				for _, c := range gc.parts {
					c.ExpireOffsets(exists)
				}
			}
		}
	}()
	b.gc = gc
	return nil
}

// replayOffsets feeds every record of l, in order, to c.
func replayOffsets(l *storage.Log, c *groups.Coordinator) (int, error) {
	var d kafkaproto.Decompressor
	defer d.Close()
	n := 0
	for off := l.LogStartOffset(); off < l.HighWatermark(); {
		res, err := l.Read(off, 1<<20, true)
		if err != nil {
			return n, err
		}
		if len(res.Data) == 0 {
			break
		}
		err = kafkaproto.SplitBatches(res.Data, func(batch []byte, h kafkaproto.BatchHeader) error {
			recs, err := d.Records(batch)
			if err != nil {
				return fmt.Errorf("batch at %d: %w", h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Offset < off {
					continue
				}
				if err := c.Replay(groups.Record{Key: r.Key, Value: r.Value}); err != nil {
					return fmt.Errorf("record %d: %w", r.Offset, err)
				}
				n++
			}
			off = h.LastOffset() + 1
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (gc *groupCoordinators) close() {
	select {
	case <-gc.stop:
		return
	default:
	}
	close(gc.stop)
	gc.wg.Wait()
	for _, c := range gc.parts {
		c.Close()
	}
}

// javaStringHash is Java's String.hashCode, which Kafka uses to place a
// group on a __consumer_offsets partition.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 { // UTF-16 surrogate pair
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// coordinatorFor returns the coordinator of a group.
func (b *Broker) coordinatorFor(group string) *groups.Coordinator {
	h := javaStringHash(group)
	if h < 0 {
		h = -h
		if h < 0 { // math.MinInt32: Kafka's Utils.abs maps it to 0
			h = 0
		}
	}
	return b.gc.parts[int(h)%len(b.gc.parts)]
}

// groupCtx is the context group calls run under: it carries the client's
// id and host for member ids and DescribeGroups.
func (rc *request) groupCtx() context.Context {
	host := rc.conn.nc.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return groups.WithClientInfo(rc.ctx(), groups.ClientInfo{ClientID: rc.hdr.ClientID, Host: "/" + host})
}
