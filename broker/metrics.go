package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/storage"
)

// metrics are the broker's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	badRequests   prometheus.Counter
	connections   prometheus.Gauge
	producedBytes prometheus.Counter
	producedRecs  prometheus.Counter
	fetchedBytes  prometheus.Counter
	rolls         prometheus.Counter
	sendfileBytes prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
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
		rolls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_segment_rolls_total", Help: "Active segments this node sealed and handed on (planned rolls).",
		}),
		sendfileBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusk_fetch_sendfile_bytes_total", Help: "Record batch bytes Fetch sent straight from segment files (sendfile), not copied.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.badRequests, m.connections, m.producedBytes, m.producedRecs, m.fetchedBytes, m.sendfileBytes, m.rolls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// addStorage exports the storage engine's counters.
func (m *metrics) addStorage(e *storage.Engine) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tusk_storage_fsyncs_total", Help: "fdatasyncs of segment files that made appended batches durable (group commits, interval syncs, rolls).",
		}, func() float64 { return float64(e.Stats().Fsyncs) }),
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
	)
}

func (m *metrics) observe(key kmsg.Key, start time.Time) {
	name := key.Name()
	m.requests.WithLabelValues(name).Inc()
	m.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
}
