package broker

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/kafkaproto"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
)

// metrics are the broker's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	badRequests   prometheus.Counter
	authFailures  prometheus.Counter
	connections   prometheus.Gauge
	producedBytes prometheus.Counter
	producedRecs  prometheus.Counter
	fetchedBytes  prometheus.Counter
	rolls         *prometheus.CounterVec
	rebalances    prometheus.Counter
	failovers     prometheus.Counter
	failoverTime  prometheus.Histogram
	sendfileBytes prometheus.Counter
	// tlsHandshakeFailures counts connections closed by a failed TLS
	// handshake on an SSL or SASL_SSL listener (listeners.go).
	tlsHandshakeFailures prometheus.Counter

	// Per topic, and per partition with metrics.per-partition (nil
	// otherwise): what Kafka calls BytesInPerSec, MessagesInPerSec and
	// BytesOutPerSec (consumers' fetches only, not followers').
	topicInBytes, topicInRecs, topicOutBytes, topicOutRecs *prometheus.CounterVec
	partInBytes, partInRecs, partOutBytes, partOutRecs     *prometheus.CounterVec
	// counted holds the topics those series have values for (keys only),
	// so that a scrape drops the series of deleted topics.
	counted sync.Map
}

func newMetrics(perPartition bool) *metrics {
	m := &metrics{
		topicInBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_topic_produced_bytes_total", Help: "Record batch bytes appended by producers, by topic (duplicates excluded).",
		}, []string{"topic"}),
		topicInRecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_topic_produced_records_total", Help: "Records appended by producers, by topic (duplicates excluded).",
		}, []string{"topic"}),
		topicOutBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_topic_fetched_bytes_total", Help: "Record batch bytes returned to consumers' Fetch requests (not followers'), by topic.",
		}, []string{"topic"}),
		topicOutRecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_topic_fetched_records_total", Help: "Records returned to consumers' Fetch requests (not followers'), by topic: the offsets from each fetch offset to the end of the batches returned.",
		}, []string{"topic"}),
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_requests_total", Help: "Kafka requests served, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tusk_request_duration_seconds", Help: "Time from receiving a request to its response being ready.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"api"}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_bad_requests_total", Help: "Requests that closed their connection (malformed, oversized, unsupported).",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_sasl_authentication_failures_total", Help: "SASL authentications that failed (bad credentials or a malformed exchange).",
		}),
		tlsHandshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_tls_handshake_failures_total", Help: "Connections to SSL and SASL_SSL listeners closed by a failed TLS handshake.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tusk_connections", Help: "Open Kafka connections.",
		}),
		producedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_produced_bytes_total", Help: "Record batch bytes appended.",
		}),
		producedRecs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_produced_records_total", Help: "Records appended.",
		}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_fetched_bytes_total", Help: "Record batch bytes returned by Fetch.",
		}),
		rolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_segment_rolls_total", Help: "Active segments this node sealed and handed on (planned rolls), by reason: size, time, laggard, rejoin, reassign, elect.",
		}, []string{"reason"}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_group_rebalances_total", Help: "Completed join phases (new generations) of the consumer groups this node coordinates.",
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_failover_partitions_total", Help: "Partitions this node, as the controller, failed over (fenced, sealed at the survivors' smallest end, next segment opened).",
		}),
		failoverTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tusk_failover_duration_seconds", Help: "Time this node, as the controller, took per failover round, from fencing the dead leader's segments to the next segments committed (the lease timeout before it comes on top).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		sendfileBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_fetch_sendfile_bytes_total", Help: "Record batch bytes Fetch sent straight from segment files (sendfile), not copied.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.badRequests, m.connections, m.producedBytes, m.producedRecs, m.fetchedBytes, m.sendfileBytes, m.rolls, m.rebalances, m.failovers, m.failoverTime,
		m.topicInBytes, m.topicInRecs, m.topicOutBytes, m.topicOutRecs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.authFailures)
	m.reg.MustRegister(m.tlsHandshakeFailures)
	if perPartition {
		tp := []string{"topic", "partition"}
		m.partInBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_partition_produced_bytes_total", Help: "Record batch bytes appended by producers, by partition (metrics.per-partition).",
		}, tp)
		m.partInRecs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_partition_produced_records_total", Help: "Records appended by producers, by partition (metrics.per-partition).",
		}, tp)
		m.partOutBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_partition_fetched_bytes_total", Help: "Record batch bytes returned to consumers' Fetch requests, by partition (metrics.per-partition).",
		}, tp)
		m.partOutRecs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusk_partition_fetched_records_total", Help: "Records returned to consumers' Fetch requests, by partition (metrics.per-partition).",
		}, tp)
		m.reg.MustRegister(m.partInBytes, m.partInRecs, m.partOutBytes, m.partOutRecs)
	}
	return m
}

// produced counts a producer's batch appended to tp.
func (m *metrics) produced(tp storage.TopicPartition, bytes, records int) {
	m.countTopic(tp.Topic)
	m.producedBytes.Add(float64(bytes))
	m.producedRecs.Add(float64(records))
	m.topicInBytes.WithLabelValues(tp.Topic).Add(float64(bytes))
	m.topicInRecs.WithLabelValues(tp.Topic).Add(float64(records))
	if m.partInBytes != nil {
		p := strconv.Itoa(int(tp.Partition))
		m.partInBytes.WithLabelValues(tp.Topic, p).Add(float64(bytes))
		m.partInRecs.WithLabelValues(tp.Topic, p).Add(float64(records))
	}
}

// fetchedBy counts the record bytes a consumer's Fetch returned from tp,
// and the records: the offsets from the fetch offset to the end of the
// batches returned (a first batch's records below the fetch offset, which
// the consumer skips, are not counted; offsets a compaction removed, or
// an aborted transaction's records that a read_committed consumer drops,
// are). Counting them from the offsets keeps sendfile's batches unparsed.
func (m *metrics) fetchedBy(tp storage.TopicPartition, bytes int, records int64) {
	if bytes == 0 {
		return
	}
	m.countTopic(tp.Topic)
	m.topicOutBytes.WithLabelValues(tp.Topic).Add(float64(bytes))
	m.topicOutRecs.WithLabelValues(tp.Topic).Add(float64(records))
	if m.partOutBytes != nil {
		p := strconv.Itoa(int(tp.Partition))
		m.partOutBytes.WithLabelValues(tp.Topic, p).Add(float64(bytes))
		m.partOutRecs.WithLabelValues(tp.Topic, p).Add(float64(records))
	}
}

func (m *metrics) countTopic(topic string) {
	if _, ok := m.counted.Load(topic); !ok {
		m.counted.Store(topic, struct{}{})
	}
}

// forgetDeleted drops the per-topic and per-partition series of topics
// that no longer exist (exists reports those that do).
func (m *metrics) forgetDeleted(exists func(topic string) bool) {
	m.counted.Range(func(k, _ any) bool {
		if topic := k.(string); !exists(topic) {
			m.counted.Delete(topic)
			m.forgetTopic(topic)
		}
		return true
	})
}

// forgetTopic drops a topic's per-topic and per-partition series.
func (m *metrics) forgetTopic(topic string) {
	for _, v := range []*prometheus.CounterVec{m.topicInBytes, m.topicInRecs, m.topicOutBytes, m.topicOutRecs, m.partInBytes, m.partInRecs, m.partOutBytes, m.partOutRecs} {
		if v != nil {
			v.DeletePartialMatch(prometheus.Labels{"topic": topic})
		}
	}
}

// addStorage exports the storage engine's counters.
func (m *metrics) addStorage(e *storage.Engine) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_fsyncs_total", Help: "Syncs of segment files that made appended batches durable (group commits, interval syncs, rolls): each file's fdatasync, or its share of a syncfs.",
		}, func() float64 { return float64(e.Stats().Fsyncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_syncfs_total", Help: "Group commits of several segment files made durable by one syncfs of the data directory's file system (storage.commit-sync=auto).",
		}, func() float64 { return float64(e.Stats().Syncfs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_fsync_batches_total", Help: "Appended batches made durable by those fsyncs; divide by tusk_storage_fsyncs_total for batches per fsync.",
		}, func() float64 { return float64(e.Stats().FsyncBatches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_segments_recycled_total", Help: "New segments that overwrote the file of a segment retention dropped instead of creating one (storage.recycle-segments).",
		}, func() float64 { return float64(e.Stats().SegmentsRecycled) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_deleted_bytes_total", Help: "Bytes of deleted segment data the paced deleter has freed (storage.delete-rate).",
		}, func() float64 { return float64(e.BackgroundStats().BytesDeleted) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tusk_storage_pending_deletion_bytes", Help: "Bytes of deleted segment data queued for the deleter and not freed yet.",
		}, func() float64 { return float64(e.BackgroundStats().BytesPendingDeletion) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_background_throttled_seconds_total", Help: "Time background I/O (the deleter, learner copies) waited for its rate budget.",
		}, func() float64 { return e.BackgroundStats().Throttled.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_background_io_bytes_total", Help: "Bytes learner copies wrote under the background I/O budget (storage.background-io-rate).",
		}, func() float64 { return float64(e.BackgroundStats().BackgroundIOBytes) }),
		commitCollector{e: e, desc: prometheus.NewDesc("tusk_storage_group_commit_seconds",
			"Time of each group commit's fdatasync batch (storage.fsync=always) or interval sync, from submission to the last completion.", nil, nil)},
	)
}

// commitCollector exports the storage engine's group-commit latency
// histogram (kept by storage without prometheus).
type commitCollector struct {
	e    *storage.Engine
	desc *prometheus.Desc
}

func (c commitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c commitCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.e.CommitLatency()
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum, total uint64
	for i, n := range h.Counts {
		total += uint64(n)
		if i < len(h.Bounds) {
			cum += uint64(n)
			buckets[h.Bounds[i].Seconds()] = cum
		}
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, total, h.Sum.Seconds(), buckets)
}

func (m *metrics) observe(key kmsg.Key, start time.Time) {
	name := key.Name()
	m.requests.WithLabelValues(name).Inc()
	m.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// stateCollector exports, at each scrape, figures read from the metadata,
// the logs, the lease and the group coordinators of this node.
type stateCollector struct {
	b *Broker

	leaderParts, underReplicated, offline *prometheus.Desc
	leaseValid, leaseRemaining            *prometheus.Desc
	groupLag, groupPartLag                *prometheus.Desc
	hw, leo, size                         *prometheus.Desc
	// Transactions (docs/transactions.md): partitions this node leads,
	// per topic and (metrics.per-partition) per partition; and the
	// transaction coordinators it hosts.
	topicOpenTxns, topicOldestTxn, topicLSOLag *prometheus.Desc
	partOpenTxns, partOldestTxn, partLSOLag    *prometheus.Desc
	txnStates                                  *prometheus.Desc
	// Followers of the segments this node leads: per topic the largest
	// lag, and (metrics.per-partition) per partition and replica.
	followerLagRecs, followerLagSecs         *prometheus.Desc
	partFollowerLagRecs, partFollowerLagSecs *prometheus.Desc
}

func newStateCollector(b *Broker) *stateCollector {
	tp := []string{"topic", "partition"}
	return &stateCollector{
		b:                   b,
		leaderParts:         prometheus.NewDesc("tusk_leader_partitions", "Partitions whose active segment this node leads (Kafka's LeaderCount).", nil, nil),
		underReplicated:     prometheus.NewDesc("tusk_under_replicated_partitions", "Partitions this node leads whose active segment has fewer replicas than the topic's replication factor, or a replica that is not alive (Kafka's UnderReplicatedPartitions); sum over nodes for the cluster.", nil, nil),
		offline:             prometheus.NewDesc("tusk_offline_partitions", "Partitions of the cluster without an alive leader (active segment fenced, failing over, or led by a node that is not alive), in this node's metadata view (Kafka's OfflinePartitionsCount); the same on every node: take max.", nil, nil),
		leaseValid:          prometheus.NewDesc("tusk_lease_valid", "1 while this node holds an unexpired lease from the controller (it may lead and append), else 0.", nil, nil),
		leaseRemaining:      prometheus.NewDesc("tusk_lease_remaining_seconds", "Seconds until this node's lease expires (negative: expired that long ago); lease.timeout minus this is the lease's age since its last renewal.", nil, nil),
		groupLag:            prometheus.NewDesc("tusk_consumer_group_lag", "Records between a group's committed offsets and the high watermark, summed over a topic's partitions, for the groups this node coordinates and the partitions it holds.", []string{"group", "topic"}, nil),
		groupPartLag:        prometheus.NewDesc("tusk_consumer_group_partition_lag", "Records between a group's committed offset and the partition's high watermark (metrics.per-partition).", []string{"group", "topic", "partition"}, nil),
		hw:                  prometheus.NewDesc("tusk_partition_high_watermark", "High watermark of each partition log this node holds (metrics.per-partition).", tp, nil),
		leo:                 prometheus.NewDesc("tusk_partition_log_end_offset", "Log end offset of each partition log this node holds (metrics.per-partition).", tp, nil),
		size:                prometheus.NewDesc("tusk_partition_size_bytes", "Bytes of each partition log this node holds (metrics.per-partition).", tp, nil),
		topicOpenTxns:       prometheus.NewDesc("tusk_topic_open_transactions", "Open transactions in the partitions of a topic this node leads (one per producer with a transaction open in a partition).", []string{"topic"}, nil),
		topicOldestTxn:      prometheus.NewDesc("tusk_topic_oldest_open_transaction_seconds", "Age of the oldest open transaction in the partitions of a topic this node leads (from its first batch's timestamp; 0 when none is open).", []string{"topic"}, nil),
		topicLSOLag:         prometheus.NewDesc("tusk_topic_lso_lag", "Largest high watermark minus last stable offset over the partitions of a topic this node leads: records read_committed consumers cannot see yet.", []string{"topic"}, nil),
		partOpenTxns:        prometheus.NewDesc("tusk_partition_open_transactions", "Open transactions in each partition this node leads (metrics.per-partition).", tp, nil),
		partOldestTxn:       prometheus.NewDesc("tusk_partition_oldest_open_transaction_seconds", "Age of the oldest open transaction in each partition this node leads (metrics.per-partition; 0 when none is open).", tp, nil),
		partLSOLag:          prometheus.NewDesc("tusk_partition_lso_lag", "High watermark minus last stable offset of each partition this node leads (Kafka's LastStableOffsetLag; metrics.per-partition).", tp, nil),
		followerLagRecs:     prometheus.NewDesc("tusk_follower_lag_records", "Largest number of records a follower of a topic's partitions this node leads has yet to fetch (leader's log end minus the follower's fetch offset).", []string{"topic"}, nil),
		followerLagSecs:     prometheus.NewDesc("tusk_follower_lag_seconds", "Longest time since a follower of a topic's partitions this node leads last fetched (replica.lag-time-max drops it at a roll).", []string{"topic"}, nil),
		partFollowerLagRecs: prometheus.NewDesc("tusk_partition_follower_lag_records", "Records each follower of each partition this node leads has yet to fetch (metrics.per-partition).", []string{"topic", "partition", "replica"}, nil),
		partFollowerLagSecs: prometheus.NewDesc("tusk_partition_follower_lag_seconds", "Time since each follower of each partition this node leads last fetched (metrics.per-partition).", []string{"topic", "partition", "replica"}, nil),
		txnStates:           prometheus.NewDesc("tusk_transactions", "Transactional ids by the state of their transaction, on the transaction coordinators this node hosts.", []string{"state"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leaderParts, c.underReplicated, c.offline, c.leaseValid, c.leaseRemaining, c.groupLag, c.groupPartLag, c.hw, c.leo, c.size,
		c.topicOpenTxns, c.topicOldestTxn, c.topicLSOLag, c.partOpenTxns, c.partOldestTxn, c.partLSOLag, c.txnStates,
		c.followerLagRecs, c.followerLagSecs, c.partFollowerLagRecs, c.partFollowerLagSecs} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	now := time.Now()
	lease := b.currentLease()
	valid := 0.0
	if lease.Valid(now) {
		valid = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leaseValid, prometheus.GaugeValue, valid)
	remaining := 0.0
	if !lease.Expiry().IsZero() {
		remaining = lease.Expiry().Sub(now).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.leaseRemaining, prometheus.GaugeValue, remaining)

	fsm := b.store.FSM()
	b.m.forgetDeleted(fsm.HasTopic)
	alive := map[int32]bool{}
	for _, br := range fsm.Brokers() {
		alive[br.ID] = br.State == metadata.BrokerAlive
	}
	me := b.cfg.NodeID
	per := b.cfg.Metrics.PerPartition
	var led, under, offline int
	hws := map[storage.TopicPartition]int64{}
	for _, t := range fsm.Topics() {
		rf := t.ReplicationFactor()
		var txns topicTxns
		for p := int32(0); p < t.Partitions; p++ {
			a := t.Parts[p].Active()
			if a.State != metadata.SegmentActive || !alive[a.Leader] {
				offline++
			} else if a.Leader == me {
				led++
				short := len(a.Replicas) < rf
				for _, r := range a.Replicas {
					short = short || !alive[r]
				}
				if short {
					under++
				}
			}
			tp := storage.TopicPartition{Topic: t.Name, Partition: p}
			l, ok := b.engine.Log(tp)
			if !ok {
				continue
			}
			hw := l.HighWatermark()
			hws[tp] = hw
			if per {
				ps := strconv.Itoa(int(p))
				ch <- prometheus.MustNewConstMetric(c.hw, prometheus.GaugeValue, float64(hw), t.Name, ps)
				ch <- prometheus.MustNewConstMetric(c.leo, prometheus.GaugeValue, float64(l.LogEndOffset()), t.Name, ps)
				ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(l.Size()), t.Name, ps)
			}
			if a.Leader == me && a.State == metadata.SegmentActive {
				pt := partitionTxns(l, hw, now)
				txns.add(pt)
				if per {
					ps := strconv.Itoa(int(p))
					ch <- prometheus.MustNewConstMetric(c.partOpenTxns, prometheus.GaugeValue, float64(pt.open), t.Name, ps)
					ch <- prometheus.MustNewConstMetric(c.partOldestTxn, prometheus.GaugeValue, pt.oldest, t.Name, ps)
					ch <- prometheus.MustNewConstMetric(c.partLSOLag, prometheus.GaugeValue, float64(pt.lag), t.Name, ps)
				}
			}
		}
		if txns.led {
			ch <- prometheus.MustNewConstMetric(c.topicOpenTxns, prometheus.GaugeValue, float64(txns.open), t.Name)
			ch <- prometheus.MustNewConstMetric(c.topicOldestTxn, prometheus.GaugeValue, txns.oldest, t.Name)
			ch <- prometheus.MustNewConstMetric(c.topicLSOLag, prometheus.GaugeValue, float64(txns.lag), t.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.leaderParts, prometheus.GaugeValue, float64(led))
	ch <- prometheus.MustNewConstMetric(c.underReplicated, prometheus.GaugeValue, float64(under))
	ch <- prometheus.MustNewConstMetric(c.offline, prometheus.GaugeValue, float64(offline))
	c.collectGroupLag(ch, hws, per)
	c.collectTxnStates(ch)
	c.collectFollowerLag(ch, per)
}

// collectFollowerLag exports the lag of the followers of the segments
// this node leads.
func (c *stateCollector) collectFollowerLag(ch chan<- prometheus.Metric, per bool) {
	type worst struct {
		recs int64
		secs float64
	}
	byTopic := map[string]worst{}
	for _, f := range c.b.repl.FollowerLags() {
		w := byTopic[f.TP.Topic]
		w.recs = max(w.recs, f.Records)
		w.secs = max(w.secs, f.Since.Seconds())
		byTopic[f.TP.Topic] = w
		if per {
			p, r := strconv.Itoa(int(f.TP.Partition)), strconv.Itoa(int(f.Replica))
			ch <- prometheus.MustNewConstMetric(c.partFollowerLagRecs, prometheus.GaugeValue, float64(f.Records), f.TP.Topic, p, r)
			ch <- prometheus.MustNewConstMetric(c.partFollowerLagSecs, prometheus.GaugeValue, f.Since.Seconds(), f.TP.Topic, p, r)
		}
	}
	for topic, w := range byTopic {
		ch <- prometheus.MustNewConstMetric(c.followerLagRecs, prometheus.GaugeValue, float64(w.recs), topic)
		ch <- prometheus.MustNewConstMetric(c.followerLagSecs, prometheus.GaugeValue, w.secs, topic)
	}
}

// topicTxns sums the transaction figures of a topic's partitions this
// node leads (open transactions add up; the oldest age and the LSO lag
// are the largest).
type topicTxns struct {
	led    bool
	open   int
	oldest float64
	lag    int64
}

func (t *topicTxns) add(p topicTxns) {
	t.led = true
	t.open += p.open
	t.oldest = max(t.oldest, p.oldest)
	t.lag = max(t.lag, p.lag)
}

// partitionTxns is the transaction figures of a partition log this node
// leads, whose high watermark is hw: its open transactions, the age at
// now of the oldest (from the timestamp of its first batch: the append
// time for LogAppendTime batches, else the first record's; 0 when that
// batch is gone or unreadable) and the LSO lag, hw − LSO.
func partitionTxns(l *storage.Log, hw int64, now time.Time) topicTxns {
	open := l.OpenTransactions()
	out := topicTxns{led: true, open: len(open), lag: max(hw-l.LastStableOffset(), 0)}
	if len(open) == 0 {
		return out
	}
	res, err := l.ReadUncommitted(open[0].FirstOffset, 1, true)
	if err != nil || len(res.Data) == 0 {
		return out
	}
	h, err := kafkaproto.ParseBatchHeader(res.Data)
	if err != nil {
		return out
	}
	ts := h.FirstTimestamp
	if h.Attributes&kafkaproto.AttrTimestampType != 0 {
		ts = h.MaxTimestamp
	}
	out.oldest = max(now.Sub(time.UnixMilli(ts)).Seconds(), 0)
	return out
}

// txnStateNames are the states a transactional id is stored in.
var txnStateNames = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"}

// collectTxnStates exports, when this node hosts a transaction
// coordinator, how many transactional ids are in each state.
func (c *stateCollector) collectTxnStates(ch chan<- prometheus.Metric) {
	local := c.b.txnc.local()
	if len(local) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.b.bgCtx, 2*time.Second)
	defer cancel()
	counts := map[string]int{}
	for _, co := range local {
		req := kmsg.NewPtrListTransactionsRequest()
		resp := co.ListTransactions(ctx, req)
		if resp.ErrorCode != 0 {
			continue // loading, or closed meanwhile
		}
		for _, ts := range resp.TransactionStates {
			counts[ts.TransactionState]++
		}
	}
	for _, s := range txnStateNames {
		ch <- prometheus.MustNewConstMetric(c.txnStates, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// collectGroupLag exports the lag of every group the coordinators on this
// node hold, for the partitions whose log (and so high watermark) is here.
func (c *stateCollector) collectGroupLag(ch chan<- prometheus.Metric, hws map[storage.TopicPartition]int64, per bool) {
	ctx, cancel := context.WithTimeout(c.b.bgCtx, 2*time.Second)
	defer cancel()
	for _, co := range c.b.gc.local() {
		lreq := kmsg.NewPtrListGroupsRequest()
		lreq.Version = 4
		lresp := co.ListGroups(ctx, lreq)
		if lresp.ErrorCode != 0 || len(lresp.Groups) == 0 {
			continue
		}
		freq := kmsg.NewPtrOffsetFetchRequest()
		freq.Version = 8
		for _, g := range lresp.Groups {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g.Group // Topics nil: every committed offset
			freq.Groups = append(freq.Groups, rg)
		}
		for _, g := range co.OffsetFetch(ctx, freq).Groups {
			if g.ErrorCode != 0 {
				continue
			}
			for _, t := range g.Topics {
				sum, any := int64(0), false
				for _, p := range t.Partitions {
					hw, ok := hws[storage.TopicPartition{Topic: t.Topic, Partition: p.Partition}]
					if !ok || p.ErrorCode != 0 || p.Offset < 0 {
						continue
					}
					lag := max(hw-p.Offset, 0)
					sum, any = sum+lag, true
					if per {
						ch <- prometheus.MustNewConstMetric(c.groupPartLag, prometheus.GaugeValue, float64(lag), g.Group, t.Topic, strconv.Itoa(int(p.Partition)))
					}
				}
				if any {
					ch <- prometheus.MustNewConstMetric(c.groupLag, prometheus.GaugeValue, float64(sum), g.Group, t.Topic)
				}
			}
		}
	}
}
