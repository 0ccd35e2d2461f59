package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// MB is the unit of Config.Rate and the MB/s figures in Result: 2^20 bytes,
// as in kafka-producer-perf-test.
const MB = 1 << 20

// DefaultTimeout is Config.Timeout when zero.
const DefaultTimeout = 30 * time.Second

// Config describes one benchmark run. DefaultConfig returns the values the
// `tusk bench` flags default to.
type Config struct {
	Brokers    []string // seed brokers, host:port
	Topic      string
	Partitions int32 // partitions when creating the topic; an existing topic keeps its own
	Records    int64 // records to produce in total
	RecordSize int   // value size in bytes
	// KeySpace, if positive, gives every record a key: record i of the
	// run (counting each producer's share in turn) gets key number
	// i mod KeySpace, written as "key-" and that number in fixed-width
	// decimal, so each key is written about Records/KeySpace times (what
	// a compacted topic's cleaner removes). 0: records have no key.
	KeySpace  int64
	Producers int // producer clients; Records is split evenly over them
	Acks      string
	// Acks is "all", "1" or "0".
	Compression string // "none", "gzip", "snappy", "lz4" or "zstd"
	Rate        float64
	// Rate is the total produce target in MB/s; 0 means unlimited.
	Consume bool // also consume everything produced, measuring end-to-end latency
	// ConsumeOnly skips producing: it reads the topic's existing records,
	// from each partition's log start to its end offset, and reports
	// consume throughput (end-to-end latency is then meaningless).
	ConsumeOnly   bool
	Linger        time.Duration // kgo ProducerLinger (0 = send as soon as possible)
	BatchMaxBytes int32         // kgo ProducerBatchMaxBytes; 0 keeps kgo's default (1 MB)
	// Idempotent enables idempotent producing. It requires acks=all; with
	// other acks it is switched off (and Run says so on its log).
	Idempotent bool
	// Sequential makes each producer wait for a record's acknowledgement
	// before sending the next: latency is then the bare round trip
	// (produce, append, group commit, answer), with no record queued
	// behind another's request.
	Sequential bool
	// TxnRecords, if positive, makes every producer transactional
	// (transactional id "tusk-bench-<topic>-<i>", idempotent, acks=all):
	// it begins a transaction, produces TxnRecords records of its share
	// (the last transaction holds what is left), flushes and commits, and
	// repeats. Produce latency is still per record (to its
	// acknowledgement); the commit latency (flush and EndTxn) goes into
	// Result.Commit*. 0: no transactions.
	TxnRecords int64
	// Timeout bounds how long any phase may go without progress (topic
	// creation, no produce acknowledgement, no consumed record after
	// producing ended); it is also kgo's record delivery timeout. 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Progress is the interval of progress lines on the log; 0 means one
	// second, negative disables them.
	Progress time.Duration
	// TLS, if set, is the client TLS configuration of every connection
	// (an SSL listener).
	TLS *tls.Config
}

// dialOpts are the connection options of every client of a run.
func (cfg Config) dialOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.DialTimeout(min(cfg.Timeout, 10*time.Second))}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	return opts
}

// DefaultConfig returns the defaults of `tusk bench`.
func DefaultConfig() Config {
	return Config{
		Brokers:       []string{"127.0.0.1:9092"},
		Topic:         "tusk-bench",
		Partitions:    6,
		Records:       1_000_000,
		RecordSize:    1024,
		Producers:     4,
		Acks:          "all",
		Compression:   "none",
		Consume:       true,
		BatchMaxBytes: 1 << 20,
		Idempotent:    true,
	}
}

// Result is what a run measured. Throughputs count record values only.
type Result struct {
	Produced             int64 // records acknowledged
	ProduceMBps          float64
	ProduceRecordsPerSec float64
	// P50, P99 and P999 are produce latencies: promise callback minus send.
	P50, P99, P999 time.Duration

	Consumed             int64 // records consumed (0 if Consume was off)
	ConsumeMBps          float64
	ConsumeRecordsPerSec float64
	// E2EP50, E2EP99 and E2EP999 are end-to-end latencies: consume time
	// minus the record timestamp the producer set at send time.
	E2EP50, E2EP99, E2EP999 time.Duration

	// Transactions is how many transactions committed (Config.TxnRecords);
	// CommitP50 and CommitP99 are their commit latencies: from the last
	// record sent to EndTxn answered (the flush, then EndTxn).
	Transactions         int64
	CommitP50, CommitP99 time.Duration

	Elapsed        time.Duration // first send to last acknowledgement (and commit)
	ConsumeElapsed time.Duration // consumer start (just before the first send) to last record needed
	Errors         int64         // records whose produce failed
}

// String renders r as a small table.
func (r Result) String() string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-13s\trecords\trecords/s\tMB/s\tp50\tp99\tp99.9\telapsed\t\n", "")
	if r.Produced > 0 || r.Errors > 0 || r.Consumed == 0 {
		fmt.Fprintf(tw, "%-13s\t%d\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t\n",
			"produce", r.Produced, r.ProduceRecordsPerSec, r.ProduceMBps, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.P999), fmtDur(r.Elapsed))
	}
	if r.Consumed > 0 || r.ConsumeElapsed > 0 {
		fmt.Fprintf(tw, "%-13s\t%d\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t\n",
			"consume (e2e)", r.Consumed, r.ConsumeRecordsPerSec, r.ConsumeMBps, fmtDur(r.E2EP50), fmtDur(r.E2EP99), fmtDur(r.E2EP999), fmtDur(r.ConsumeElapsed))
	}
	_ = tw.Flush()
	if r.Transactions > 0 {
		fmt.Fprintf(&sb, "transactions: %d committed, commit p50 %s p99 %s\n", r.Transactions, fmtDur(r.CommitP50), fmtDur(r.CommitP99))
	}
	fmt.Fprintf(&sb, "errors: %d\n", r.Errors)
	return sb.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func (cfg *Config) normalize() error {
	if cfg.Acks == "" {
		cfg.Acks = "all"
	}
	if cfg.Compression == "" {
		cfg.Compression = "none"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Progress == 0 {
		cfg.Progress = time.Second
	}
	switch {
	case len(cfg.Brokers) == 0:
		return errors.New("bench: no brokers")
	case cfg.Topic == "":
		return errors.New("bench: no topic")
	case cfg.Partitions < 1:
		return fmt.Errorf("bench: partitions %d < 1", cfg.Partitions)
	case cfg.Records < 1:
		return fmt.Errorf("bench: records %d < 1", cfg.Records)
	case cfg.RecordSize < 0:
		return fmt.Errorf("bench: record size %d < 0", cfg.RecordSize)
	case cfg.Producers < 1:
		return fmt.Errorf("bench: producers %d < 1", cfg.Producers)
	case cfg.TxnRecords < 0:
		return fmt.Errorf("bench: txn records %d < 0", cfg.TxnRecords)
	case cfg.TxnRecords > 0 && cfg.Acks != "all" && cfg.Acks != "-1":
		return fmt.Errorf("bench: transactions need acks=all, not %s", cfg.Acks)
	case cfg.KeySpace < 0 || cfg.KeySpace > maxKeySpace:
		return fmt.Errorf("bench: key space %d not in [0, %d]", cfg.KeySpace, maxKeySpace)
	case cfg.Rate < 0:
		return fmt.Errorf("bench: rate %v < 0", cfg.Rate)
	case cfg.Linger < 0:
		return fmt.Errorf("bench: linger %v < 0", cfg.Linger)
	case cfg.BatchMaxBytes < 0:
		return fmt.Errorf("bench: batch max bytes %d < 0", cfg.BatchMaxBytes)
	case cfg.BatchMaxBytes > 0 && int64(cfg.RecordSize) >= int64(cfg.BatchMaxBytes):
		return fmt.Errorf("bench: record size %d does not fit batch max bytes %d", cfg.RecordSize, cfg.BatchMaxBytes)
	}
	if _, err := acksOpt(cfg.Acks); err != nil {
		return err
	}
	if _, err := codecOpt(cfg.Compression); err != nil {
		return err
	}
	if int64(cfg.Producers) > cfg.Records {
		cfg.Producers = int(cfg.Records)
	}
	if cfg.TxnRecords > 0 {
		cfg.Idempotent = true // a transactional producer is idempotent
	}
	return nil
}

func acksOpt(acks string) (kgo.Acks, error) {
	switch acks {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "0":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("bench: acks %q: want all, 1 or 0", acks)
}

func codecOpt(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("bench: compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// syncWriter serialises log lines from the run's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format+"\n", args...)
}

// Run executes the benchmark described by cfg, writing progress to log (nil
// discards it). The Result is filled in as far as the run got even when an
// error is returned; produce failures are counted in Result.Errors and also
// reported as an error once the run has finished.
func Run(ctx context.Context, cfg Config, log io.Writer) (Result, error) {
	var res Result
	if err := cfg.normalize(); err != nil {
		return res, err
	}
	if log == nil {
		log = io.Discard
	}
	lw := &syncWriter{w: log}
	if cfg.Idempotent && cfg.Acks != "all" && cfg.Acks != "-1" {
		lw.printf("bench: idempotent producing needs acks=all; disabling it for acks=%s", cfg.Acks)
		cfg.Idempotent = false
	}

	admin, err := kgo.NewClient(cfg.dialOpts()...)
	if err != nil {
		return res, fmt.Errorf("bench: admin client: %w", err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	if err := ensureTopic(ctx, adm, cfg, lw); err != nil {
		return res, err
	}
	starts, err := endOffsets(ctx, adm, cfg)
	if err != nil {
		return res, err
	}
	lw.printf("bench: topic %q, %d partitions; producing %d records of %d bytes with %d producers (acks=%s, compression=%s, idempotent=%v, records per transaction %d)",
		cfg.Topic, len(starts), cfg.Records, cfg.RecordSize, cfg.Producers, cfg.Acks, cfg.Compression, cfg.Idempotent, cfg.TxnRecords)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.ConsumeOnly {
		return consumeOnly(runCtx, cfg, adm, starts, lw)
	}

	var cons *consumer
	if cfg.Consume {
		cons, err = newConsumer(cfg, starts)
		if err != nil {
			return res, err
		}
		defer cons.cl.Close()
	}
	prod, err := newProducers(cfg)
	if err != nil {
		return res, err
	}
	defer prod.close()

	stopProgress := startProgress(cfg, lw, prod, cons)
	consDone := make(chan error, 1)
	if cons != nil {
		go func() { consDone <- cons.run(runCtx, cfg) }()
	}
	perr := prod.run(runCtx, cfg)
	if cons != nil {
		cons.produceDone(prod.acked.Load())
	}

	res.Produced = prod.acked.Load()
	res.Errors = prod.failed.Load()
	res.Elapsed = prod.elapsed
	if secs := res.Elapsed.Seconds(); secs > 0 {
		res.ProduceRecordsPerSec = float64(res.Produced) / secs
		res.ProduceMBps = float64(res.Produced) * float64(cfg.RecordSize) / MB / secs
	}
	lat := prod.latency()
	res.P50, res.P99, res.P999 = lat.Quantile(0.5), lat.Quantile(0.99), lat.Quantile(0.999)
	res.Transactions = prod.txns.Load()
	commits := prod.commitLatency()
	res.CommitP50, res.CommitP99 = commits.Quantile(0.5), commits.Quantile(0.99)

	var cerr error
	if cons != nil {
		if perr != nil && res.Produced == 0 {
			cancel() // nothing to wait for
		}
		cerr = <-consDone
		res.Consumed = cons.count
		res.ConsumeElapsed = cons.elapsed
		if secs := res.ConsumeElapsed.Seconds(); secs > 0 {
			res.ConsumeRecordsPerSec = float64(res.Consumed) / secs
			res.ConsumeMBps = float64(cons.bytes) / MB / secs
		}
		res.E2EP50, res.E2EP99, res.E2EP999 = cons.lat.Quantile(0.5), cons.lat.Quantile(0.99), cons.lat.Quantile(0.999)
	}
	stopProgress()

	switch {
	case perr != nil:
		return res, perr
	case cerr != nil:
		return res, cerr
	case res.Errors > 0:
		return res, fmt.Errorf("bench: produce: %d of %d records failed, first error: %w", res.Errors, cfg.Records, prod.firstErr())
	case prod.txnFailed.Load() > 0:
		return res, fmt.Errorf("bench: %d transactions failed, first error: %w", prod.txnFailed.Load(), prod.firstErr())
	}
	return res, ctx.Err()
}

// consumeOnly reads every record between each partition's log start and
// its end offset ends.
func consumeOnly(ctx context.Context, cfg Config, adm *kadm.Client, ends map[int32]int64, lw *syncWriter) (Result, error) {
	var res Result
	listed, err := adm.ListStartOffsets(ctx, cfg.Topic)
	if err != nil {
		return res, fmt.Errorf("bench: list start offsets of %q: %w", cfg.Topic, err)
	}
	starts := map[int32]int64{}
	var total int64
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && err == nil {
			err = fmt.Errorf("bench: start offset of partition %d: %w", o.Partition, o.Err)
		}
		starts[o.Partition] = o.Offset
		total += ends[o.Partition] - o.Offset
	})
	if err != nil {
		return res, err
	}
	if total <= 0 {
		return res, fmt.Errorf("bench: consume: topic %q holds no records", cfg.Topic)
	}
	lw.printf("bench: consuming the %d records of %q", total, cfg.Topic)
	cons, err := newConsumer(cfg, starts)
	if err != nil {
		return res, err
	}
	defer cons.cl.Close()
	cons.produceDone(total)
	err = cons.run(ctx, cfg)
	res.Consumed = cons.count
	res.ConsumeElapsed = cons.elapsed
	if secs := res.ConsumeElapsed.Seconds(); secs > 0 {
		res.ConsumeRecordsPerSec = float64(res.Consumed) / secs
		res.ConsumeMBps = float64(cons.bytes) / MB / secs
	}
	return res, err
}

// ensureTopic creates cfg.Topic unless it exists, first with replication
// factor -1 (broker default, KIP-464), then 1 for brokers that refuse -1.
func ensureTopic(ctx context.Context, adm *kadm.Client, cfg Config, lw *syncWriter) error {
	tctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var err error
	for _, rf := range []int16{-1, 1} {
		_, err = adm.CreateTopic(tctx, cfg.Partitions, rf, nil, cfg.Topic)
		switch {
		case err == nil:
			lw.printf("bench: created topic %q with %d partitions", cfg.Topic, cfg.Partitions)
			return nil
		case errors.Is(err, kerr.TopicAlreadyExists):
			lw.printf("bench: topic %q exists; using it as is", cfg.Topic)
			return nil
		case rf == -1 && (errors.Is(err, kerr.InvalidReplicationFactor) || errors.Is(err, kerr.InvalidRequest)):
			continue
		}
		break
	}
	return fmt.Errorf("bench: create topic %q: %w", cfg.Topic, err)
}

// endOffsets returns each partition's current end offset, retrying while a
// freshly created topic's partitions are not yet served.
func endOffsets(ctx context.Context, adm *kadm.Client, cfg Config) (map[int32]int64, error) {
	deadline := time.Now().Add(cfg.Timeout)
	var last error
	for {
		lctx, cancel := context.WithDeadline(ctx, deadline)
		listed, err := adm.ListEndOffsets(lctx, cfg.Topic)
		cancel()
		if err == nil {
			offs := make(map[int32]int64)
			listed.Each(func(o kadm.ListedOffset) {
				if o.Err != nil {
					err = fmt.Errorf("partition %d: %w", o.Partition, o.Err)
					return
				}
				offs[o.Partition] = o.Offset
			})
			if err == nil && len(offs) > 0 {
				return offs, nil
			}
			if err == nil {
				err = errors.New("no partitions listed")
			}
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("bench: list end offsets: %w", ctx.Err())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: list end offsets of %q: timed out after %v: %w", cfg.Topic, cfg.Timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// payload returns n random uppercase letters from a fixed seed.
func payload(n int) []byte {
	rng := rand.New(rand.NewPCG(0x7475736b, 0x62656e63))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'A' + byte(rng.IntN(26))
	}
	return b
}

// maxKeySpace bounds Config.KeySpace: keys are precomputed in one buffer
// (about 14 bytes each at this bound).
const maxKeySpace = 10_000_000

// keySet is the precomputed keys of Config.KeySpace, fixed width, in one
// buffer, so keyed records cost no allocation of their own.
type keySet struct {
	buf   []byte
	width int
	n     int64
}

func newKeySet(n int64) *keySet {
	if n <= 0 {
		return nil
	}
	digits := len(strconv.FormatInt(n-1, 10))
	ks := &keySet{width: 4 + digits, n: n}
	ks.buf = make([]byte, 0, int64(ks.width)*n)
	for i := int64(0); i < n; i++ {
		ks.buf = append(ks.buf, "key-"...)
		d := strconv.FormatInt(i, 10)
		for k := len(d); k < digits; k++ {
			ks.buf = append(ks.buf, '0')
		}
		ks.buf = append(ks.buf, d...)
	}
	return ks
}

// key returns the key of record number i of the run (nil for a nil set).
// The slice shares the set's buffer and must not be modified.
func (ks *keySet) key(i int64) []byte {
	if ks == nil {
		return nil
	}
	k := i % ks.n
	off := k * int64(ks.width)
	return ks.buf[off : off+int64(ks.width) : off+int64(ks.width)]
}

// producers is the produce side of a run.
type producers struct {
	clients    []*kgo.Client
	hists      []*histogram
	shares     []int64
	firsts     []int64 // the run-wide number of each producer's first record
	keys       *keySet // nil: records have no key
	sequential bool    // Config.Sequential
	txnRecords int64   // Config.TxnRecords
	txnTimeout time.Duration
	commits    []*histogram // per producer: commit latencies

	txns, txnFailed atomic.Int64 // transactions committed, failed

	sent, acked, failed atomic.Int64
	// lastProgress is the UnixNano of the latest promise, or of a send
	// made while nothing was outstanding.
	lastProgress atomic.Int64
	mu           sync.Mutex
	first        error
	elapsed      time.Duration
}

func (p *producers) fail(n int64, err error) {
	p.failed.Add(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == nil {
		p.first = err
	}
}

func (p *producers) outstanding() int64 {
	return p.sent.Load() - p.acked.Load() - p.failed.Load()
}

func newProducers(cfg Config) (*producers, error) {
	acks, _ := acksOpt(cfg.Acks)
	codec, _ := codecOpt(cfg.Compression)
	opts := append(cfg.dialOpts(),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.MaxBufferedBytes(max(64*MB, 4*cfg.RecordSize)),
	)
	if cfg.BatchMaxBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(cfg.BatchMaxBytes))
	}
	if !cfg.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	p := &producers{sequential: cfg.Sequential, keys: newKeySet(cfg.KeySpace), txnRecords: cfg.TxnRecords, txnTimeout: cfg.Timeout}
	per, extra := cfg.Records/int64(cfg.Producers), cfg.Records%int64(cfg.Producers)
	first := int64(0)
	for i := 0; i < cfg.Producers; i++ {
		copts := append(opts, kgo.ClientID(fmt.Sprintf("tusk-bench-%d", i)))
		if cfg.TxnRecords > 0 {
			copts = append(copts, kgo.TransactionalID(fmt.Sprintf("tusk-bench-%s-%d", cfg.Topic, i)))
		}
		cl, err := kgo.NewClient(copts...)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("bench: producer client: %w", err)
		}
		share := per
		if int64(i) < extra {
			share++
		}
		p.clients = append(p.clients, cl)
		p.hists = append(p.hists, new(histogram))
		p.commits = append(p.commits, new(histogram))
		p.shares = append(p.shares, share)
		p.firsts = append(p.firsts, first)
		first += share
	}
	return p, nil
}

func (p *producers) close() {
	for _, cl := range p.clients {
		cl.Close()
	}
}

func (p *producers) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == nil {
		return errors.New("unknown")
	}
	return p.first
}

func (p *producers) latency() *histogram {
	var all histogram
	for _, h := range p.hists {
		all.Merge(h)
	}
	return &all
}

// commitLatency merges the producers' commit latencies.
func (p *producers) commitLatency() *histogram {
	var all histogram
	for _, h := range p.commits {
		all.Merge(h)
	}
	return &all
}

// commit flushes cl's transaction and commits it, recording the latency
// in h; false (the error noted) if it failed.
func (p *producers) commit(ctx context.Context, cl *kgo.Client, h *histogram) bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.txnTimeout)
	defer cancel()
	err := cl.Flush(ctx)
	if err == nil {
		err = cl.EndTransaction(ctx, kgo.TryCommit)
	}
	if err != nil {
		p.txnFailed.Add(1)
		p.fail(0, fmt.Errorf("commit: %w", err))
		return false
	}
	h.Record(time.Since(start))
	p.txns.Add(1)
	p.lastProgress.Store(time.Now().UnixNano())
	return true
}

// run produces every share concurrently, flushes, and returns once all
// promises have completed, or with an error if acknowledgements stop for
// cfg.Timeout or ctx ends.
func (p *producers) run(ctx context.Context, cfg Config) error {
	value := payload(cfg.RecordSize)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	p.lastProgress.Store(start.UnixNano())
	var stalled atomic.Bool
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() { // watchdog: cancel producing if acknowledgements stop
		t := time.NewTicker(max(min(cfg.Timeout/4, 250*time.Millisecond), time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-watchDone:
				return
			case <-pctx.Done():
				return
			case now := <-t.C:
				if p.outstanding() > 0 && now.Sub(time.Unix(0, p.lastProgress.Load())) > cfg.Timeout {
					stalled.Store(true)
					cancel()
					return
				}
			}
		}
	}()

	var bytesPerSec float64
	if cfg.Rate > 0 {
		bytesPerSec = cfg.Rate * MB / float64(cfg.Producers)
	}
	var wg sync.WaitGroup
	for i, cl := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.produce(pctx, cl, p.hists[i], p.commits[i], p.firsts[i], p.shares[i], value, bytesPerSec)
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(start)

	switch {
	case stalled.Load():
		return fmt.Errorf("bench: produce: no acknowledgement for %v (%d of %d records acknowledged, %d failed)",
			cfg.Timeout, p.acked.Load(), cfg.Records, p.failed.Load())
	case ctx.Err() != nil:
		return fmt.Errorf("bench: produce: %w", ctx.Err())
	}
	return nil
}

// produce sends n records on cl (the run's records first to first+n-1,
// which choose their keys), pacing to bytesPerSec if positive, then
// flushes; with transactions, every txnRecords records (and the rest at
// the end) are one transaction, committed with their commit latency in
// ch. The promise is one closure per producer; a record's latency is
// measured from the send time its context carries (newTimedRecord).
func (p *producers) produce(ctx context.Context, cl *kgo.Client, h, ch *histogram, first, n int64, value []byte, bytesPerSec float64) {
	promise := func(r *kgo.Record, err error) {
		p.lastProgress.Store(time.Now().UnixNano())
		if err != nil {
			p.fail(1, err)
			return
		}
		if s, ok := r.Context.(*sentAt); ok {
			h.Record(time.Since(s.at))
		}
		p.acked.Add(1)
	}
	pace := time.NewTimer(time.Hour) // reused: no allocation per paced record
	pace.Stop()
	defer pace.Stop()
	start := time.Now()
	for i := int64(0); i < n; i++ {
		if bytesPerSec > 0 {
			due := start.Add(time.Duration(float64(i) * float64(len(value)) / bytesPerSec * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				pace.Reset(wait) // Go 1.23+ timers: Reset needs no drain
				select {
				case <-ctx.Done():
				case <-pace.C:
				}
			}
		}
		if ctx.Err() != nil {
			// Count what will never be sent, so totals add up.
			p.sent.Add(n - i)
			p.fail(n-i, ctx.Err())
			break
		}
		if p.txnRecords > 0 && i%p.txnRecords == 0 {
			if err := cl.BeginTransaction(); err != nil {
				p.sent.Add(n - i)
				p.fail(n-i, fmt.Errorf("begin transaction: %w", err))
				break
			}
		}
		if p.outstanding() == 0 {
			p.lastProgress.Store(time.Now().UnixNano())
		}
		p.sent.Add(1)
		r := newTimedRecord(ctx, p.keys.key(first+i), value)
		if p.sequential {
			promise(r, cl.ProduceSync(ctx, r).FirstErr())
		} else {
			cl.Produce(ctx, r, promise)
		}
		if p.txnRecords > 0 && ((i+1)%p.txnRecords == 0 || i+1 == n) && !p.commit(ctx, cl, ch) {
			p.sent.Add(n - i - 1)
			p.fail(n-i-1, errors.New("not sent: a transaction failed"))
			break
		}
	}
	// Flush returns early only if ctx ends; records still buffered then are
	// failed by Close, whose promises still count them.
	_ = cl.Flush(ctx)
}

// sentAt is a record's context carrying its exact send time. The record's
// Timestamp cannot carry it: kgo truncates Timestamp to the millisecond
// (the wire's resolution) before sending, which added 0-1 ms (0.5 ms on
// average) to every latency measured from it.
type sentAt struct {
	context.Context
	at time.Time
}

// timedRecord allocates a record and its sentAt together: the bench's only
// per-record allocation stays one.
type timedRecord struct {
	r kgo.Record
	s sentAt
}

// newTimedRecord returns a record whose Context (derived from ctx) carries
// the send time, now, with a monotonic reading; Timestamp is the same time.
func newTimedRecord(ctx context.Context, key, value []byte) *kgo.Record {
	now := time.Now()
	t := &timedRecord{r: kgo.Record{Key: key, Value: value, Timestamp: now}, s: sentAt{Context: ctx, at: now}}
	t.r.Context = &t.s
	return &t.r
}
