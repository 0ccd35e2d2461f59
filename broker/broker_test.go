package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// startBroker runs an in-process broker on loopback port 0 over dir.
func startBroker(t *testing.T, dir string, mutate ...func(*configs.Config)) *Broker {
	t.Helper()
	cfg := configs.Default()
	cfg.DataDir = dir
	cfg.Kafka.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	policy, err := storage.ParseFsyncPolicy(cfg.Storage.Fsync)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := storage.Open(storage.Options{Dir: filepath.Join(dir, "logs"), Fsync: policy, FsyncInterval: cfg.Storage.FsyncInterval, Logger: log,
		RetentionCheckInterval: cfg.Storage.RetentionCheckInterval})
	if err != nil {
		t.Fatal(err)
	}
	store, err := metadata.OpenRaft(metadata.RaftOptions{NodeID: cfg.NodeID, Dir: filepath.Join(dir, "raft"),
		LeaseTimeout: cfg.Lease.Timeout, LeaseRenew: cfg.Lease.Renew, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, log, store, engine)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

func newClient(t *testing.T, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.KafkaAddr()), kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "rt"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, b, kgo.DefaultProduceTopic("rt"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const n = 3000
	type pos struct {
		p   int32
		off int64
	}
	want := map[pos]string{}
	for i := 0; i < n; i++ {
		r := &kgo.Record{Partition: int32(i % 3), Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("value-%d", i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(i/3) {
			t.Fatalf("record %d: offset %d, want %d", i, r.Offset, i/3)
		}
		want[pos{r.Partition, r.Offset}] = string(r.Value)
	}
	cons := newClient(t, b, kgo.ConsumeTopics("rt"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) {
			w, ok := want[pos{r.Partition, r.Offset}]
			if !ok || w != string(r.Value) {
				t.Fatalf("unexpected record p%d@%d %q", r.Partition, r.Offset, r.Value)
			}
			delete(want, pos{r.Partition, r.Offset})
			got++
		})
	}
	if len(want) != 0 {
		t.Fatalf("%d records not consumed", len(want))
	}
}

func TestApiVersionsUnsupportedVersion(t *testing.T) {
	b := startBroker(t, t.TempDir())
	cl := newClient(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrApiVersionsRequest()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("error %d", resp.ErrorCode)
	}
	seen := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		seen[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	// Every registered API but Envelope, which node connections alone
	// are told of (TestEnvelopeNodeConnectionsOnly).
	n := 0
	for _, a := range registry() {
		if a.key == kmsg.Envelope {
			continue
		}
		n++
		if seen[int16(a.key)] != [2]int16{a.min, a.max} {
			t.Errorf("%s: advertised %v, registered %d-%d", a.key.Name(), seen[int16(a.key)], a.min, a.max)
		}
	}
	if len(seen) != n {
		t.Errorf("advertised %d apis, want %d", len(seen), n)
	}
}

func TestRestartKeepsTopicsAndData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var id [16]byte
	func() {
		b := startBroker(t, dir)
		adm := kadm.NewClient(newClient(t, b))
		res, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kmsg.StringPtr("3600000")}, "keep")
		if err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		id = res.ID
		cl := newClient(t, b, kgo.DefaultProduceTopic("keep"))
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("a")}, &kgo.Record{Value: []byte("b")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	b := startBroker(t, dir)
	adm := kadm.NewClient(newClient(t, b))
	td, err := adm.ListTopics(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	if td["keep"].ID != id || len(td["keep"].Partitions) != 2 {
		t.Fatalf("topic after restart: %+v", td["keep"])
	}
	rc, err := adm.DescribeTopicConfigs(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.On("keep", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range c.Configs {
		if kv.Key == "retention.ms" {
			found = kv.MaybeValue() == "3600000"
		}
	}
	if !found {
		t.Fatalf("retention.ms lost: %+v", c.Configs)
	}
	ends, err := adm.ListEndOffsets(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 2 {
		t.Fatalf("end offsets sum %d, want 2", total)
	}
}

func TestProduceErrors(t *testing.T) {
	b := startBroker(t, t.TempDir())
	cl := newClient(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "no-such-topic"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = []byte{1, 2, 3}
	rt.Partitions = append(rt.Partitions, rp)
	bad := kmsg.NewProduceRequestTopic()
	bad.Topic = "bad topic!"
	bad.Partitions = append(bad.Partitions, rp)
	req.Topics = append(req.Topics, rt, bad)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Topics[0].Partitions[0].ErrorCode; c != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("unknown topic: code %d", c)
	}
	if c := resp.Topics[1].Partitions[0].ErrorCode; c != kerr.InvalidTopicException.Code {
		t.Errorf("invalid name: code %d", c)
	}
}

func TestEpochEndOffset(t *testing.T) {
	p := metadata.Partition{Segments: []metadata.Segment{
		{BaseOffset: 0, Epoch: 2}, {BaseOffset: 100, Epoch: 3}, {BaseOffset: 250, Epoch: 7},
	}}
	for _, c := range []struct {
		req       int32
		epoch     int32
		endOffset int64
	}{
		{-1, -1, -1}, // undefined
		{0, 0, 0},    // older than every segment: the first segment's base
		{2, 2, 100},  // an old epoch ends where the next begins
		{5, 3, 250},  // between epochs: the floor epoch, the next base
		{7, 7, 300},  // current: the log end offset
		{8, -1, -1},  // newer than the current epoch
	} {
		e, off := epochEndOffset(p, c.req, 300)
		if e != c.epoch || off != c.endOffset {
			t.Errorf("epoch %d: got (%d, %d), want (%d, %d)", c.req, e, off, c.epoch, c.endOffset)
		}
		// The same chain after its two sealed segments were merged
		// (a compacted topic): the answers do not change.
		merged := metadata.Partition{Segments: []metadata.Segment{
			{BaseOffset: 0, EndOffset: 250, Epoch: 3, Epochs: []metadata.EpochStart{{Epoch: 2, Start: 0}, {Epoch: 3, Start: 100}}}, {BaseOffset: 250, Epoch: 7},
		}}
		e, off = epochEndOffset(merged, c.req, 300)
		if e != c.epoch || off != c.endOffset {
			t.Errorf("merged chain, epoch %d: got (%d, %d), want (%d, %d)", c.req, e, off, c.epoch, c.endOffset)
		}
	}
}

func TestOffsetForLeaderEpochAndFencing(t *testing.T) {
	b := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b, kgo.DefaultProduceTopic("ofle"))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "ofle"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(current, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "ofle"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = current, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	if p := ask(-1, 0); p.ErrorCode != 0 || p.LeaderEpoch != 0 || p.EndOffset != 5 {
		t.Fatalf("current epoch: %+v", p)
	}
	if p := ask(1, 0); p.ErrorCode != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("future current epoch: %+v", p)
	}
	if p := ask(-1, 3); p.ErrorCode != 0 || p.LeaderEpoch != -1 || p.EndOffset != -1 {
		t.Fatalf("unknown epoch: %+v", p)
	}
}
