package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
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

// offsetsLog is one __consumer_offsets partition as the coordinator's
// Persister. It appends records and waits until they are durable per the
// fsync policy, and it bounds the log by checkpointing: it tracks the latest
// value of every live key, and once the bytes appended since the last
// checkpoint exceed checkpointBytes and twice the live set, it appends the
// whole live set again and deletes every record before it. Replay of the
// remaining log gives the same state, because each key's latest value is at
// or after the checkpoint's first offset.
type offsetsLog struct {
	log             *storage.Log
	now             func() time.Time
	checkpointBytes int64

	mu              sync.Mutex // orders appends with checkpoints; guards the fields below
	live            map[string][]byte
	liveBytes       int64
	sinceCheckpoint int64
	checkpointing   bool
}

func newOffsetsLog(l *storage.Log, checkpointBytes int64) *offsetsLog {
	return &offsetsLog{log: l, now: time.Now, checkpointBytes: checkpointBytes, live: map[string][]byte{}}
}

// track records the latest value of a key (nil: deleted). p.mu held.
func (p *offsetsLog) track(key, value []byte) {
	if old, ok := p.live[string(key)]; ok {
		p.liveBytes -= int64(len(key) + len(old))
		delete(p.live, string(key))
	}
	if value != nil {
		p.live[string(key)] = value
		p.liveBytes += int64(len(key) + len(value))
	}
}

// appendLocked encodes kvs as one batch and appends it. p.mu held.
func (p *offsetsLog) appendLocked(kvs []kafkaproto.KV) (storage.AppendResult, error) {
	batch := kafkaproto.AppendBatch(nil, p.now().UnixMilli(), kvs)
	h, err := kafkaproto.ValidateBatch(batch)
	if err != nil {
		return storage.AppendResult{}, fmt.Errorf("broker: encode group records: %w", err)
	}
	res, err := p.log.Append(batch, h, leaderEpoch)
	if err != nil {
		return res, fmt.Errorf("broker: persist group records: %w", err)
	}
	p.sinceCheckpoint += int64(len(batch))
	return res, nil
}

// Persist implements groups.Persister.
func (p *offsetsLog) Persist(ctx context.Context, recs []groups.Record) error {
	kvs := make([]kafkaproto.KV, len(recs))
	for i, r := range recs {
		kvs[i] = kafkaproto.KV{Key: r.Key, Value: r.Value}
	}
	p.mu.Lock()
	res, err := p.appendLocked(kvs)
	if err == nil {
		for _, r := range recs {
			p.track(r.Key, r.Value)
		}
	}
	due := err == nil && !p.checkpointing && p.sinceCheckpoint > p.checkpointBytes && p.sinceCheckpoint > 2*p.liveBytes
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := p.log.WaitDurable(ctx, res.LastOffset); err != nil {
		return fmt.Errorf("broker: persist group records: %w", err)
	}
	if due {
		// The commit is durable whatever happens here; a failed
		// checkpoint only leaves the log longer.
		_ = p.checkpoint(ctx)
	}
	return nil
}

// checkpoint appends the live set and deletes everything before it.
func (p *offsetsLog) checkpoint(ctx context.Context) error {
	p.mu.Lock()
	p.checkpointing = true
	defer func() {
		p.mu.Lock()
		p.checkpointing = false
		p.mu.Unlock()
	}()
	keys := make([]string, 0, len(p.live))
	for k := range p.live {
		keys = append(keys, k)
	}
	// Group metadata (key version 2) before offsets, then by key, so the
	// checkpoint replays like the original log.
	slices.SortFunc(keys, func(a, b string) int {
		ga, gb := len(a) >= 2 && a[1] == 2, len(b) >= 2 && b[1] == 2
		if ga != gb {
			if ga {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	first, last := int64(-1), int64(-1)
	var kvs []kafkaproto.KV
	size := 0
	flush := func() error {
		if len(kvs) == 0 {
			return nil
		}
		res, err := p.appendLocked(kvs)
		if err != nil {
			return err
		}
		if first < 0 {
			first = res.BaseOffset
		}
		last = res.LastOffset
		kvs, size = kvs[:0], 0
		return nil
	}
	var err error
	for _, k := range keys {
		v := p.live[k]
		kvs = append(kvs, kafkaproto.KV{Key: []byte(k), Value: v})
		if size += len(k) + len(v); size >= 1<<20 {
			if err = flush(); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = flush()
	}
	p.sinceCheckpoint = 0
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if first < 0 { // nothing live: everything before the end can go
		first = p.log.LogEndOffset()
	} else if err := p.log.WaitDurable(ctx, last); err != nil {
		return fmt.Errorf("broker: checkpoint group records: %w", err)
	}
	if _, err := p.log.DeleteRecordsBefore(first); err != nil {
		return fmt.Errorf("broker: checkpoint group records: %w", err)
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
		// Time and size retention are off: the log is bounded by the
		// coordinators' checkpoints instead (offsetsLog).
		// Segments no larger than a checkpoint interval, so that the
		// records a checkpoint supersedes are in segments it can delete.
		segBytes := min(16<<20, max(4096, b.cfg.Groups.OffsetsCheckpointBytes))
		cmd := metadata.CreateTopic{Name: offsetsTopic, ID: id, Partitions: b.cfg.Groups.OffsetsPartitions, Internal: true,
			Configs: map[string]string{"retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": strconv.FormatInt(segBytes, 10)}}
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
		ol := newOffsetsLog(l, b.cfg.Groups.OffsetsCheckpointBytes)
		c := groups.New(cfg, ol)
		n, err := replayOffsets(l, c, ol)
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

// replayOffsets feeds every record of l, in order, to c and ol.
func replayOffsets(l *storage.Log, c *groups.Coordinator, ol *offsetsLog) (int, error) {
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
				ol.mu.Lock()
				ol.track(bytes.Clone(r.Key), bytes.Clone(r.Value))
				ol.mu.Unlock()
				n++
			}
			ol.mu.Lock()
			ol.sinceCheckpoint += int64(len(batch))
			ol.mu.Unlock()
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
