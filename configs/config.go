package configs

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the complete configuration of one Tusk node.
type Config struct {
	NodeID    int32         `mapstructure:"node-id"`
	DataDir   string        `mapstructure:"data-dir"`
	ReadyFile string        `mapstructure:"ready-file"`
	Kafka     KafkaConfig   `mapstructure:"kafka"`
	HTTP      HTTPConfig    `mapstructure:"http"`
	Log       LogConfig     `mapstructure:"log"`
	Storage   StorageConfig `mapstructure:"storage"`
	Topic     TopicDefaults `mapstructure:"topic"`
	Groups    GroupsConfig  `mapstructure:"groups"`
	// Transactions is the transaction coordinator (docs/transactions.md).
	Transactions TransactionsConfig `mapstructure:"transactions"`
	// Share is the share-partition state of share groups (KIP-932,
	// docs/groups-next.md part B) and its __share_group_state topic.
	Share    ShareConfig   `mapstructure:"share"`
	Shutdown time.Duration `mapstructure:"shutdown-timeout"`
	// Voters lists the initial Raft voters as "id=host:port,...";
	// empty makes this node a cluster of one.
	Voters   string         `mapstructure:"voters"`
	Rack     string         `mapstructure:"rack"`
	Raft     RaftConfig     `mapstructure:"raft"`
	Internal InternalConfig `mapstructure:"internal"`
	Lease    LeaseConfig    `mapstructure:"lease"`
	Produce  ProduceConfig  `mapstructure:"produce"`
	Replica  ReplicaConfig  `mapstructure:"replica"`
	Cleaner  CleanerConfig  `mapstructure:"cleaner"`
	Metrics  MetricsConfig  `mapstructure:"metrics"`
	// TLS, SASL and the authorizer (docs/security.md).
	TLS  TLSConfig  `mapstructure:"tls"`
	SASL SASLConfig `mapstructure:"sasl"`
	// Authorizer enforces ACLs on every request (Kafka's
	// authorizer.class.name set).
	Authorizer bool `mapstructure:"authorizer"`
	// SuperUsers are principals every ACL check allows, as
	// "User:admin;User:ops" (super.users).
	SuperUsers string `mapstructure:"super-users"`
	// AllowEveryoneIfNoACLFound allows a resource no ACL matches
	// (allow.everyone.if.no.acl.found).
	AllowEveryoneIfNoACLFound bool `mapstructure:"allow-everyone-if-no-acl-found"`
}

// TLSConfig holds the PEM files of this node's certificate, its key and
// the CA that client and node certificates are checked against
// (docs/security.md).
type TLSConfig struct {
	CertFile string `mapstructure:"cert-file"`
	KeyFile  string `mapstructure:"key-file"`
	CAFile   string `mapstructure:"ca-file"`
	// ClientAuth is none, requested or required (ssl.client.auth) on
	// the SSL and SASL_SSL client listeners.
	ClientAuth string `mapstructure:"client-auth"`
	// ReloadCheck is how often the files are checked for changes (a
	// SIGHUP reloads them at once).
	ReloadCheck time.Duration `mapstructure:"reload-check"`
}

// SASLConfig is SASL authentication on the SASL_* listeners.
type SASLConfig struct {
	// Mechanisms enabled, comma separated (sasl.enabled.mechanisms).
	Mechanisms string `mapstructure:"mechanisms"`
	// BootstrapUsersFile holds "name:password" lines applied once to an
	// empty cluster (docs/security.md).
	BootstrapUsersFile string `mapstructure:"bootstrap-users-file"`
	// FailedAuthDelay delays the answer to a failed authentication
	// (connection.failed.authentication.delay.ms).
	FailedAuthDelay time.Duration `mapstructure:"failed-auth-delay"`
	// MaxReauth is the session lifetime of an authenticated connection
	// (connections.max.reauth.ms, KIP-368); 0: unlimited.
	MaxReauth time.Duration `mapstructure:"max-reauth"`
	// MaxConcurrentHashes bounds the PBKDF2 hashes running at once
	// (HashConcurrency); 0: GOMAXPROCS.
	MaxConcurrentHashes int `mapstructure:"max-concurrent-hashes"`
}

// MetricsConfig shapes /metrics.
type MetricsConfig struct {
	// PerPartition adds series labelled by partition (bytes and records
	// in, bytes out, high watermark, log end, size, consumer-group lag),
	// whose count grows with the partitions; off, series are per topic
	// (and per group) only.
	PerPartition bool `mapstructure:"per-partition"`
}

// CleanerConfig is the log cleaner of compacted topics
// (docs/compaction.md).
type CleanerConfig struct {
	// Enable runs the cleaner (log.cleaner.enable); off, compacted topics
	// grow without bound.
	Enable bool `mapstructure:"enable"`
	// Threads is how many partitions this node cleans at once
	// (log.cleaner.threads).
	Threads int `mapstructure:"threads"`
	// IORate budgets the cleaner's reads plus writes in bytes/s
	// (log.cleaner.io.max.bytes.per.second); 0 is unlimited.
	IORate int64 `mapstructure:"io-rate"`
	// MapBytes is the key map memory of one cleaning before it spills to
	// disk (log.cleaner.dedupe.buffer.size).
	MapBytes int64 `mapstructure:"map-bytes"`
	// Backoff is the pause between checks for cleanable partitions
	// (log.cleaner.backoff.ms).
	Backoff time.Duration `mapstructure:"backoff"`
}

// ReplicaConfig tunes replication of the active segment.
type ReplicaConfig struct {
	// LagTimeMax: a follower that has not fetched for this long makes the
	// leader roll to a segment without it (replica.lag.time.max.ms).
	LagTimeMax time.Duration `mapstructure:"lag-time-max"`
	// Restore: a partition whose active segment has had fewer replicas
	// than its replication factor for this long is copied to other live
	// nodes (0 disables it).
	Restore time.Duration `mapstructure:"restore"`
}

// ProduceConfig is how Produce requests for other nodes' partitions are
// handled.
type ProduceConfig struct {
	// Forward sends them on to the partition's leader; off, they are
	// answered NOT_LEADER_OR_FOLLOWER with KIP-951 leader hints.
	Forward bool `mapstructure:"forward"`
}

// RaftConfig is the metadata Raft group.
type RaftConfig struct {
	// Listen is the Raft TCP address; empty runs a single node on an
	// in-memory transport.
	Listen            string        `mapstructure:"listen"`
	HeartbeatTimeout  time.Duration `mapstructure:"heartbeat-timeout"`
	ElectionTimeout   time.Duration `mapstructure:"election-timeout"`
	SnapshotThreshold int           `mapstructure:"snapshot-threshold"`
	SnapshotInterval  time.Duration `mapstructure:"snapshot-interval"`
}

// InternalConfig is the node-to-node listener (forwarding, heartbeats,
// cluster admin).
type InternalConfig struct {
	Listen string `mapstructure:"listen"`
}

// LeaseConfig times broker heartbeats and the leases they earn.
type LeaseConfig struct {
	Timeout time.Duration `mapstructure:"timeout"`
	Renew   time.Duration `mapstructure:"renew"`
}

// KafkaConfig is the Kafka listener.
type KafkaConfig struct {
	Listen string `mapstructure:"listen"`
	// Advertised is the host:port given to clients in Metadata; empty
	// means the bound listener address.
	Advertised string `mapstructure:"advertised"`
	// Listeners, AdvertisedListeners and ListenerProtocols are the
	// named listeners (listeners.go, KafkaListeners); Listeners set
	// replaces Listen and Advertised.
	Listeners           string `mapstructure:"listeners"`
	AdvertisedListeners string `mapstructure:"advertised-listeners"`
	ListenerProtocols   string `mapstructure:"listener-protocols"`
	RequestMaxBytes     int32  `mapstructure:"request-max-bytes"`
	MessageMaxBytes     int32  `mapstructure:"message-max-bytes"`
	// MaxInflight bounds pipelined requests per connection.
	MaxInflight int `mapstructure:"max-inflight"`
	// FetchSessionCacheSlots bounds the incremental fetch sessions
	// (KIP-227) a node keeps; 0 turns them off.
	FetchSessionCacheSlots int `mapstructure:"fetch-session-cache-slots"`
}

// HTTPConfig is the HTTP listener for /healthz, /metrics and the console.
type HTTPConfig struct {
	Listen string `mapstructure:"listen"`
	// AdminToken guards /debug/pprof, the console (/ui) and /api/v1/:
	// required with the authorizer on, otherwise it lets non-loopback
	// clients in (docs/security.md).
	AdminToken string `mapstructure:"admin-token"`
}

// LogConfig selects zerolog's level and output format.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// StorageConfig is the storage engine.
type StorageConfig struct {
	Fsync         string        `mapstructure:"fsync"`
	FsyncInterval time.Duration `mapstructure:"fsync-interval"`
	IO            string        `mapstructure:"io"`
	// CommitSync is how a group commit of several segment files is made
	// durable (storage.Options.SyncMethod).
	CommitSync             string        `mapstructure:"commit-sync"`
	RetentionCheckInterval time.Duration `mapstructure:"retention-check-interval"`
	// DeleteRate paces the deletion of segment data (bytes/s freed).
	DeleteRate int64 `mapstructure:"delete-rate"`
	// BackgroundIORate budgets learner copies (bytes/s written).
	BackgroundIORate int64 `mapstructure:"background-io-rate"`
	// RecycleSegments lets a roll overwrite the file of a segment
	// retention dropped (storage.Options.RecycleSegments).
	RecycleSegments bool `mapstructure:"recycle-segments"`
	// DropBehind is the page-cache budget of durable appended bytes
	// kept behind the logs' ends (storage.Options.DropBehind); 0: off.
	DropBehind int64 `mapstructure:"drop-behind"`
	// MaxOpenFiles bounds the segment files holding a descriptor
	// (storage.Options.MaxOpenFiles); 0: from the open-file limit.
	MaxOpenFiles int `mapstructure:"max-open-files"`
	// OpenFileIdle closes a segment file unused this long
	// (storage.Options.OpenFileIdle); 0: never for idleness.
	OpenFileIdle time.Duration `mapstructure:"open-file-idle"`
}

// TopicDefaults apply to topics that do not override them.
type TopicDefaults struct {
	Partitions        int32 `mapstructure:"partitions"`
	ReplicationFactor int32 `mapstructure:"replication-factor"`
	AutoCreate        bool  `mapstructure:"auto-create"`
	SegmentBytes      int64 `mapstructure:"segment-bytes"`
	SegmentMs         int64 `mapstructure:"segment-ms"`
	RetentionMs       int64 `mapstructure:"retention-ms"`
	RetentionBytes    int64 `mapstructure:"retention-bytes"`
}

// GroupsConfig is the consumer-group coordinator.
type GroupsConfig struct {
	OffsetsPartitions     int32         `mapstructure:"offsets-partitions"`
	OffsetsRF             int32         `mapstructure:"offsets-replication-factor"`
	InitialRebalanceDelay time.Duration `mapstructure:"initial-rebalance-delay"`
	MinSessionTimeout     time.Duration `mapstructure:"min-session-timeout"`
	MaxSessionTimeout     time.Duration `mapstructure:"max-session-timeout"`
	OffsetsRetention      time.Duration `mapstructure:"offsets-retention"`
	OffsetsExpireInterval time.Duration `mapstructure:"offsets-expire-interval"`
	// OffsetsSegmentBytes is __consumer_offsets' segment.bytes (Kafka's
	// offsets.topic.segment.bytes): the compacted topic rolls there, so
	// the cleaner has sealed ranges to clean (docs/compaction.md).
	OffsetsSegmentBytes int64 `mapstructure:"offsets-segment-bytes"`
	// Consumer* configure KIP-848 consumer groups (ConsumerGroupHeartbeat;
	// docs/groups-next.md): Kafka's group.consumer.session.timeout.ms,
	// .heartbeat.interval.ms and .max.size (0: no limit).
	ConsumerSessionTimeout    time.Duration `mapstructure:"consumer-session-timeout"`
	ConsumerHeartbeatInterval time.Duration `mapstructure:"consumer-heartbeat-interval"`
	ConsumerMaxSize           int           `mapstructure:"consumer-max-size"`
	// Share* configure KIP-932 share-group membership
	// (ShareGroupHeartbeat; docs/groups-next.md part B): Kafka's
	// group.share.session.timeout.ms, .heartbeat.interval.ms and
	// .max.size.
	ShareSessionTimeout    time.Duration `mapstructure:"share-session-timeout"`
	ShareHeartbeatInterval time.Duration `mapstructure:"share-heartbeat-interval"`
	ShareMaxSize           int           `mapstructure:"share-max-size"`
}

// ShareConfig holds the broker defaults of share groups' share-partition
// state (KIP-932) and the shape of __share_group_state.
type ShareConfig struct {
	// RecordLockDuration is group.share.record.lock.duration.ms: how
	// long a member holds an acquired record.
	RecordLockDuration time.Duration `mapstructure:"record-lock-duration"`
	// DeliveryCountLimit is group.share.delivery.count.limit: a record
	// delivered this often is archived instead of made available again.
	DeliveryCountLimit int `mapstructure:"delivery-count-limit"`
	// PartitionMaxRecordLocks is group.share.partition.max.record.locks.
	PartitionMaxRecordLocks int `mapstructure:"partition-max-record-locks"`
	// AutoOffsetReset is share.auto.offset.reset: latest or earliest.
	AutoOffsetReset string `mapstructure:"auto-offset-reset"`
	// IsolationLevel is share.isolation.level: read_uncommitted or
	// read_committed (aborted records are archived, never delivered).
	IsolationLevel string `mapstructure:"isolation-level"`
	// MaxSessions bounds the share sessions a node keeps
	// (group.share.max.share.sessions).
	MaxSessions int `mapstructure:"max-sessions"`
	// StatePartitions, StateRF and StateSegmentBytes shape
	// __share_group_state when it is first created
	// (share.coordinator.state.topic.num.partitions, .replication.factor,
	// .segment.bytes); RF 0 is min(3, live brokers).
	StatePartitions   int32 `mapstructure:"state-partitions"`
	StateRF           int32 `mapstructure:"state-replication-factor"`
	StateSegmentBytes int64 `mapstructure:"state-segment-bytes"`
}

// TransactionsConfig is the transaction coordinator and its
// __transaction_state topic (docs/transactions.md).
type TransactionsConfig struct {
	// Partitions and RF shape __transaction_state when it is first
	// created (transaction.state.log.num.partitions and
	// .replication.factor); RF 0 is min(3, live brokers).
	Partitions int32 `mapstructure:"partitions"`
	RF         int32 `mapstructure:"replication-factor"`
	// SegmentBytes is __transaction_state's segment.bytes (the topic is
	// compacted; transaction.state.log.segment.bytes).
	SegmentBytes int64 `mapstructure:"segment-bytes"`
	// MaxTimeout bounds a producer's transaction.timeout.ms
	// (transaction.max.timeout.ms).
	MaxTimeout time.Duration `mapstructure:"max-timeout"`
	// IDExpiration removes a transactional id idle this long
	// (transactional.id.expiration.ms).
	IDExpiration time.Duration `mapstructure:"id-expiration"`
	// TestMarkerDelay makes a coordinator wait this long after a
	// transaction's Prepare* record is committed (EndTxn answered, or a
	// loaded coordinator completing it) before it writes the markers: a
	// fault test's window to kill the coordinator between EndTxn and the
	// markers (docs/transactions.md). 0 (the default) in production.
	TestMarkerDelay time.Duration `mapstructure:"test-marker-delay"`
}

// Option documents one configuration key. The flag name is the key with
// dots replaced by dashes; the environment variable is TUSK_ + the key in
// upper case with dots and dashes replaced by underscores.
type Option struct {
	Key     string
	Default any
	Usage   string
}

// Flag is the command-line flag name of the option.
func (o Option) Flag() string { return strings.ReplaceAll(o.Key, ".", "-") }

// Env is the environment variable of the option.
func (o Option) Env() string { return "TUSK_" + envReplacer().Replace(strings.ToUpper(o.Key)) }

func envReplacer() *strings.Replacer { return strings.NewReplacer(".", "_", "-", "_") }

// Options lists every option with its default. It is the single place
// defaults are defined.
func Options() []Option {
	return []Option{
		{"node-id", int32(1), "broker id of this node"},
		{"data-dir", "./tusk-data", "directory holding logs and metadata"},
		{"ready-file", "", "once serving, write a JSON object with the bound addresses here"},
		{"shutdown-timeout", 30 * time.Second, "how long SIGTERM waits for in-flight requests"},
		{"kafka.listen", "127.0.0.1:9092", "Kafka listener address (port 0 picks one)"},
		{"kafka.advertised", "", "host:port advertised to clients (default: the bound listener)"},
		{"kafka.listeners", "", "named Kafka listeners NAME://host:port,... over PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (listeners); replaces kafka.listen when set"},
		{"kafka.advertised-listeners", "", "addresses given to clients per listener, NAME://host:port,... (advertised.listeners; default: each listener's bound address)"},
		{"kafka.listener-protocols", "", "security protocol of listener names that are not protocol names, NAME:PROTOCOL,... (listener.security.protocol.map)"},
		{"kafka.request-max-bytes", int32(100 << 20), "largest request frame accepted (socket.request.max.bytes)"},
		{"kafka.message-max-bytes", int32(1048588), "largest record batch accepted (message.max.bytes)"},
		{"kafka.max-inflight", 64, "pipelined requests per connection before reading pauses"},
		{"kafka.fetch-session-cache-slots", 1000, "incremental fetch sessions (KIP-227) kept for clients and followers, least recently used evicted first (max.incremental.fetch.session.cache.slots); 0: sessionless fetches only"},
		{"http.listen", "127.0.0.1:9644", "HTTP listener for /healthz, /metrics and the web console /ui (empty disables)"},
		{"http.admin-token", "", "token (Authorization: Bearer, or /ui/?token=) for /debug/pprof, the console and its /api/v1/: required with the authorizer on, else what lets non-loopback clients in; empty: loopback clients only, none with the authorizer"},
		{"log.level", "info", "log level: debug, info, warn, error"},
		{"log.format", "console", "log format: console or json"},
		{"storage.fsync", "always", "fsync policy: always (group commit before ack), interval, never"},
		{"storage.fsync-interval", 100 * time.Millisecond, "sync period for storage.fsync=interval"},
		{"storage.io", "auto", "segment I/O backend: auto (io_uring for group commits of several files if available; syscalls for one-file commits, writes and reads), uring, syscall"},
		{"storage.commit-sync", "auto", "how a group commit of several segment files is made durable: auto (one syncfs of the data directory's file system: one journal commit and one device flush for them all; fdatasync for a commit of one file, and on kernels before 5.8, whose syncfs does not report write errors) or fdatasync (one per file). syncfs also writes back other dirty files of that file system, so a commit falls back to fdatasync per file while the machine has more than 32 MiB of dirty page cache; a data directory on its own file system avoids the question"},
		{"storage.retention-check-interval", 30 * time.Second, "how often retention runs"},
		{"storage.delete-rate", int64(128 << 20), "bytes per second at which deleted segment data (retention, DeleteRecords, DeleteTopics, truncation) is freed, in 16 MiB ftruncate steps, so the unlinks do not stall group-commit fsyncs; 0: unpaced"},
		{"storage.recycle-segments", true, "when retention drops a log's oldest segment, keep its file for that log's next roll to overwrite instead of deleting it and creating a new one (cheaper writes, no unlink); an unused spare is deleted after a retention interval"},
		{"storage.drop-behind", int64(0), "off by default (0); else the page-cache budget, in bytes across all partitions, of durable produced data kept cached behind the log ends: older durable bytes are dropped from the page cache after each group commit or interval sync (FADV_DONTNEED), so writes reuse freed pages instead of new ones (see docs/io-and-scale.md); consumers further behind read from disk (e.g. 268435456 for 256 MiB)"},
		{"storage.max-open-files", 0, "segment files holding a descriptor at once; past it the least recently used is closed and reopened when next used; 0: the soft open-file limit less a quarter of it (at least 1,024) for connections, which also caps a larger value"},
		{"storage.open-file-idle", 60 * time.Second, "close a segment file's descriptor once it has not been appended to, synced or read for this long, so idle partition replicas hold none; 0: only storage.max-open-files closes files"},
		{"storage.background-io-rate", int64(32 << 20), "bytes per second a learner (a node copying a partition to join its replicas, or catching up to rejoin) may write; 0: unlimited"},
		{"topic.partitions", int32(1), "partitions of auto-created topics (num.partitions)"},
		{"topic.replication-factor", int32(0), "replicas of new topics' partitions when a request leaves it to the broker (default.replication.factor); 0: min(3, live brokers)"},
		{"topic.auto-create", true, "create unknown topics on Metadata and Produce (auto.create.topics.enable)"},
		{"topic.segment-bytes", int64(1 << 30), "default segment.bytes"},
		{"topic.segment-ms", int64(7 * 24 * time.Hour / time.Millisecond), "default segment.ms"},
		{"topic.retention-ms", int64(7 * 24 * time.Hour / time.Millisecond), "default retention.ms (-1 unlimited)"},
		{"topic.retention-bytes", int64(-1), "default retention.bytes (-1 unlimited)"},
		{"groups.offsets-partitions", int32(8), "partitions of __consumer_offsets, fixed when it is first created (offsets.topic.num.partitions)"},
		{"groups.offsets-replication-factor", int32(0), "replicas of __consumer_offsets partitions, fixed when it is first created (offsets.topic.replication.factor); 0: min(3, live brokers)"},
		{"groups.initial-rebalance-delay", 3 * time.Second, "wait for more members before a new group's first rebalance (group.initial.rebalance.delay.ms; 0 disables)"},
		{"groups.min-session-timeout", 6 * time.Second, "smallest session timeout a member may ask for (group.min.session.timeout.ms)"},
		{"groups.max-session-timeout", 30 * time.Minute, "largest session timeout a member may ask for (group.max.session.timeout.ms)"},
		{"groups.offsets-retention", 7 * 24 * time.Hour, "committed offsets of empty groups and deleted topics expire after this (offsets.retention.minutes)"},
		{"groups.offsets-expire-interval", 10 * time.Minute, "how often offset expiry runs (offsets.retention.check.interval.ms)"},
		{"groups.consumer-session-timeout", 45 * time.Second, "a KIP-848 consumer group member that sends no heartbeat for this long is removed (group.consumer.session.timeout.ms)"},
		{"groups.consumer-heartbeat-interval", 5 * time.Second, "how often KIP-848 consumer group members are told to heartbeat (group.consumer.heartbeat.interval.ms)"},
		{"groups.consumer-max-size", 0, "most members of a KIP-848 consumer group; 0: no limit (group.consumer.max.size)"},
		{"groups.share-session-timeout", 45 * time.Second, "a share group member that sends no heartbeat for this long is removed and its records released (group.share.session.timeout.ms)"},
		{"groups.share-heartbeat-interval", 5 * time.Second, "how often share group members are told to heartbeat (group.share.heartbeat.interval.ms)"},
		{"groups.share-max-size", 200, "most members of a share group (group.share.max.size)"},
		{"groups.offsets-segment-bytes", int64(16 << 20), "segment.bytes of the compacted __consumer_offsets topic when it is created (Kafka's offsets.topic.segment.bytes)"},
		{"transactions.partitions", int32(50), "partitions of __transaction_state, fixed when it is first created (transaction.state.log.num.partitions)"},
		{"transactions.replication-factor", int32(0), "replicas of __transaction_state partitions, fixed when it is first created (transaction.state.log.replication.factor); 0: min(3, live brokers)"},
		{"transactions.segment-bytes", int64(16 << 20), "segment.bytes of the compacted __transaction_state topic when it is created (transaction.state.log.segment.bytes)"},
		{"transactions.max-timeout", 15 * time.Minute, "largest transaction.timeout.ms a transactional producer may ask for (transaction.max.timeout.ms)"},
		{"transactions.id-expiration", 7 * 24 * time.Hour, "a transactional id with no transaction in progress and no update for this long is removed (transactional.id.expiration.ms)"},
		{"transactions.test-marker-delay", time.Duration(0), "tests only: wait this long before writing a transaction's markers after its prepare record is committed (a window to kill the coordinator between EndTxn and the markers); 0 in production"},
		{"share.record-lock-duration", 30 * time.Second, "how long a share-group member holds the records a ShareFetch acquired before they are delivered again (group.share.record.lock.duration.ms)"},
		{"share.delivery-count-limit", 5, "deliveries of a record to share-group members after which it is archived instead of made available again (group.share.delivery.count.limit)"},
		{"share.partition-max-record-locks", 2000, "records of one share-partition in flight (acquired or awaiting earlier acknowledgements) at most (group.share.partition.max.record.locks)"},
		{"share.auto-offset-reset", "latest", "where a share group with no state starts reading a partition: latest or earliest (share.auto.offset.reset)"},
		{"share.isolation-level", "read_uncommitted", "what share groups read: read_uncommitted (below the high watermark) or read_committed (below the last stable offset; aborted records are archived, never delivered) (share.isolation.level)"},
		{"share.max-sessions", 2000, "share sessions (one per share-group member and node) a node keeps; a new one beyond it gets SHARE_SESSION_LIMIT_REACHED (group.share.max.share.sessions)"},
		{"share.state-partitions", int32(50), "partitions of __share_group_state, fixed when it is first created (share.coordinator.state.topic.num.partitions)"},
		{"share.state-replication-factor", int32(0), "replicas of __share_group_state partitions, fixed when it is first created (share.coordinator.state.topic.replication.factor); 0: min(3, live brokers)"},
		{"share.state-segment-bytes", int64(16 << 20), "segment.bytes of the compacted __share_group_state topic when it is created (share.coordinator.state.topic.segment.bytes)"},
		{"voters", "", "initial Raft voters as id=host:port,... (the same list on every initial node); empty: a cluster of one"},
		{"rack", "", "rack of this node, for rack-aware placement (broker.rack)"},
		{"raft.listen", "", "Raft TCP address (must match this node's entry in voters); empty: in-memory, single node"},
		{"raft.heartbeat-timeout", 500 * time.Millisecond, "Raft heartbeat timeout"},
		{"raft.election-timeout", 500 * time.Millisecond, "Raft election timeout"},
		{"raft.snapshot-threshold", 8192, "Raft log entries between snapshots"},
		{"raft.snapshot-interval", 2 * time.Minute, "how often Raft checks whether to snapshot"},
		{"internal.listen", "127.0.0.1:0", "node-to-node listener: forwarding, heartbeats, cluster admin (port 0 picks one)"},
		{"lease.timeout", 2 * time.Second, "a broker counts as alive this long after a heartbeat; must exceed the election timeout plus two renewals"},
		{"lease.renew", 250 * time.Millisecond, "heartbeat interval of brokers to the controller"},
		{"replica.lag-time-max", 10 * time.Second, "a follower that has not fetched for this long is dropped by a roll to a segment without it (replica.lag.time.max.ms)"},
		{"replica.restore", 30 * time.Second, "a partition short of replicas for this long is copied to other live nodes, which a roll then takes into the replica set (0: never)"},
		{"cleaner.enable", true, "run the log cleaner of compacted topics (log.cleaner.enable); off, they grow without bound"},
		{"cleaner.threads", 1, "partitions this node cleans at once (log.cleaner.threads)"},
		{"cleaner.io-rate", int64(32 << 20), "bytes per second the log cleaner may read plus write, so cleaning does not harm produce latency (log.cleaner.io.max.bytes.per.second); 0: unlimited"},
		{"cleaner.map-bytes", int64(64 << 20), "key map memory of one cleaning before it spills to disk (log.cleaner.dedupe.buffer.size)"},
		{"cleaner.backoff", 15 * time.Second, "pause between the log cleaner's checks for cleanable partitions (log.cleaner.backoff.ms)"},
		{"metrics.per-partition", false, "add per-partition series to /metrics (bytes and records in and out, high watermark, log end offset, size, consumer-group lag); off: per topic and per group only, so the series count does not grow with partitions"},
		{"tls.cert-file", "", "PEM certificate of this node for SSL/SASL_SSL listeners and, with tls.ca-file, node-to-node mutual TLS (reloaded on SIGHUP and when the file changes)"},
		{"tls.key-file", "", "PEM private key of tls.cert-file"},
		{"tls.ca-file", "", "PEM CA that client certificates and other nodes' certificates are checked against; set, the internal and Raft listeners use mutual TLS"},
		{"tls.client-auth", "none", "client certificates on SSL/SASL_SSL listeners: none, requested or required (ssl.client.auth)"},
		{"tls.reload-check", 10 * time.Second, "how often the TLS files are checked for changes; changed, new connections use the new certificate (SIGHUP reloads at once)"},
		{"sasl.mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN", "SASL mechanisms the SASL_* listeners offer (sasl.enabled.mechanisms)"},
		{"sasl.bootstrap-users-file", "", "file of name:password lines whose SCRAM credentials are created once, when the cluster has never had them applied"},
		{"sasl.failed-auth-delay", 100 * time.Millisecond, "delay before answering a failed authentication (connection.failed.authentication.delay.ms); repeated failures from one address wait longer"},
		{"sasl.max-reauth", time.Duration(0), "session lifetime of a SASL-authenticated connection, after which the client must re-authenticate (connections.max.reauth.ms, KIP-368); 0: unlimited"},
		{"sasl.max-concurrent-hashes", 0, "PBKDF2 password hashes (PLAIN logins against SCRAM credentials, bootstrap users) this node runs at once; more wait, within the connection's authentication deadline; 0: GOMAXPROCS"},
		{"authorizer", false, "enforce ACLs on every request (authorizer.class.name); requires TLS unless the internal and Raft listeners bind loopback"},
		{"super-users", "", "principals allowed everything, e.g. 'User:admin;User:ops' (super.users)"},
		{"allow-everyone-if-no-acl-found", false, "allow access to a resource no ACL matches (allow.everyone.if.no.acl.found)"},
		{"produce.forward", true, "forward a Produce for a partition another node leads to that leader (off: NOT_LEADER_OR_FOLLOWER with KIP-951 hints on v10+)"},
	}
}

// Default returns the configuration with every default applied.
func Default() Config {
	v := viper.New()
	for _, o := range Options() {
		v.SetDefault(o.Key, o.Default)
	}
	c, err := fromViper(v)
	if err != nil {
		panic(fmt.Sprintf("configs: defaults do not decode: %v", err)) // programming error
	}
	return c
}

// BindFlags registers one flag per option on fs and binds it into v.
func BindFlags(fs *pflag.FlagSet, v *viper.Viper) error {
	for _, o := range Options() {
		switch d := o.Default.(type) {
		case string:
			fs.String(o.Flag(), d, o.Usage)
		case int:
			fs.Int(o.Flag(), d, o.Usage)
		case int32:
			fs.Int32(o.Flag(), d, o.Usage)
		case int64:
			fs.Int64(o.Flag(), d, o.Usage)
		case bool:
			fs.Bool(o.Flag(), d, o.Usage)
		case time.Duration:
			fs.Duration(o.Flag(), d, o.Usage)
		default:
			return fmt.Errorf("configs: option %s has unsupported type %T", o.Key, d)
		}
		if err := v.BindPFlag(o.Key, fs.Lookup(o.Flag())); err != nil {
			return fmt.Errorf("configs: bind flag %s: %w", o.Flag(), err)
		}
	}
	return nil
}

// Load builds the configuration from v: defaults, then the YAML file named
// by file (if any), then TUSK_* variables, then flags bound with BindFlags.
func Load(v *viper.Viper, file string) (Config, error) {
	for _, o := range Options() {
		v.SetDefault(o.Key, o.Default)
	}
	v.SetEnvPrefix("TUSK")
	v.SetEnvKeyReplacer(envReplacer())
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("configs: read %s: %w", file, err)
		}
	}
	c, err := fromViper(v)
	if err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

func fromViper(v *viper.Viper) (Config, error) {
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		return Config{}, fmt.Errorf("configs: decode: %w", err)
	}
	return c, nil
}

// Validate checks the configuration for values the broker cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID < 0 {
		errs = append(errs, fmt.Errorf("node-id %d is negative", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir is empty"))
	}
	errs = append(errs, c.validateListeners()...)
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen %q: %w", c.HTTP.Listen, err))
		}
	}
	errs = append(errs, c.validateSASL()...)
	if c.Kafka.RequestMaxBytes < 1024 {
		errs = append(errs, fmt.Errorf("kafka.request-max-bytes %d is below 1024", c.Kafka.RequestMaxBytes))
	}
	if c.Kafka.MessageMaxBytes < 128 || c.Kafka.MessageMaxBytes > c.Kafka.RequestMaxBytes {
		errs = append(errs, fmt.Errorf("kafka.message-max-bytes %d must be within [128, request-max-bytes]", c.Kafka.MessageMaxBytes))
	}
	if c.Kafka.FetchSessionCacheSlots < 0 {
		errs = append(errs, fmt.Errorf("kafka.fetch-session-cache-slots %d must not be negative", c.Kafka.FetchSessionCacheSlots))
	}
	if c.Kafka.MaxInflight < 1 {
		errs = append(errs, fmt.Errorf("kafka.max-inflight %d must be positive", c.Kafka.MaxInflight))
	}
	switch c.Storage.Fsync {
	case "always", "interval", "never":
	default:
		errs = append(errs, fmt.Errorf("storage.fsync %q: want always, interval or never", c.Storage.Fsync))
	}
	switch c.Storage.IO {
	case "auto", "uring", "syscall":
	default:
		errs = append(errs, fmt.Errorf("storage.io %q: want auto, uring or syscall", c.Storage.IO))
	}
	switch c.Storage.CommitSync {
	case "auto", "fdatasync":
	default:
		errs = append(errs, fmt.Errorf("storage.commit-sync %q: want auto or fdatasync", c.Storage.CommitSync))
	}
	if c.Storage.DropBehind < 0 {
		errs = append(errs, fmt.Errorf("storage.drop-behind %d must not be negative", c.Storage.DropBehind))
	}
	if c.Storage.DeleteRate < 0 || c.Storage.BackgroundIORate < 0 {
		errs = append(errs, fmt.Errorf("storage.delete-rate %d and storage.background-io-rate %d must not be negative", c.Storage.DeleteRate, c.Storage.BackgroundIORate))
	}
	if c.Storage.Fsync == "interval" && c.Storage.FsyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("storage.fsync-interval %v must be positive", c.Storage.FsyncInterval))
	}
	if c.Storage.MaxOpenFiles < 0 || c.Storage.OpenFileIdle < 0 {
		errs = append(errs, fmt.Errorf("storage.max-open-files %d and storage.open-file-idle %v must not be negative", c.Storage.MaxOpenFiles, c.Storage.OpenFileIdle))
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want console or json", c.Log.Format))
	}
	if c.Internal.Listen == "" {
		errs = append(errs, errors.New("internal.listen is empty"))
	} else if _, _, err := net.SplitHostPort(c.Internal.Listen); err != nil {
		errs = append(errs, fmt.Errorf("internal.listen %q: %w", c.Internal.Listen, err))
	}
	if c.Raft.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Raft.Listen); err != nil {
			errs = append(errs, fmt.Errorf("raft.listen %q: %w", c.Raft.Listen, err))
		}
	}
	if c.Voters != "" && c.Raft.Listen == "" {
		errs = append(errs, errors.New("voters are set but raft.listen is empty"))
	}
	if c.Lease.Renew <= 0 || c.Lease.Timeout <= c.Raft.ElectionTimeout+2*c.Lease.Renew {
		errs = append(errs, fmt.Errorf("lease.timeout %v must exceed raft.election-timeout %v plus two lease.renew (%v)", c.Lease.Timeout, c.Raft.ElectionTimeout, c.Lease.Renew))
	}
	if c.Topic.Partitions < 1 {
		errs = append(errs, fmt.Errorf("topic.partitions %d must be positive", c.Topic.Partitions))
	}
	if c.Topic.ReplicationFactor < 0 || c.Topic.ReplicationFactor > 16 {
		errs = append(errs, fmt.Errorf("topic.replication-factor %d must be in [0, 16] (0: min(3, live brokers))", c.Topic.ReplicationFactor))
	}
	if c.Replica.Restore < 0 {
		errs = append(errs, fmt.Errorf("replica.restore %v is negative", c.Replica.Restore))
	}
	if c.Topic.SegmentBytes < 1024 {
		errs = append(errs, fmt.Errorf("topic.segment-bytes %d is below 1024", c.Topic.SegmentBytes))
	}
	if c.Groups.OffsetsRF < 0 || c.Groups.OffsetsRF > 16 {
		errs = append(errs, fmt.Errorf("groups.offsets-replication-factor %d must be in [0, 16] (0: min(3, live brokers))", c.Groups.OffsetsRF))
	}
	if c.Groups.OffsetsPartitions < 1 || c.Groups.OffsetsPartitions > 1000 {
		errs = append(errs, fmt.Errorf("groups.offsets-partitions %d must be in [1, 1000]", c.Groups.OffsetsPartitions))
	}
	if c.Groups.MinSessionTimeout <= 0 || c.Groups.MaxSessionTimeout < c.Groups.MinSessionTimeout {
		errs = append(errs, fmt.Errorf("groups session timeouts [%v, %v] are invalid", c.Groups.MinSessionTimeout, c.Groups.MaxSessionTimeout))
	}
	if c.Groups.ConsumerSessionTimeout <= 0 || c.Groups.ConsumerHeartbeatInterval <= 0 || c.Groups.ConsumerHeartbeatInterval >= c.Groups.ConsumerSessionTimeout || c.Groups.ConsumerMaxSize < 0 {
		errs = append(errs, fmt.Errorf("groups.consumer-heartbeat-interval %v must be positive and below groups.consumer-session-timeout %v, groups.consumer-max-size %d not negative", c.Groups.ConsumerHeartbeatInterval, c.Groups.ConsumerSessionTimeout, c.Groups.ConsumerMaxSize))
	}
	if c.Groups.ShareSessionTimeout <= 0 || c.Groups.ShareHeartbeatInterval <= 0 || c.Groups.ShareHeartbeatInterval >= c.Groups.ShareSessionTimeout || c.Groups.ShareMaxSize < 1 {
		errs = append(errs, fmt.Errorf("groups.share-heartbeat-interval %v must be positive and below groups.share-session-timeout %v, groups.share-max-size %d positive", c.Groups.ShareHeartbeatInterval, c.Groups.ShareSessionTimeout, c.Groups.ShareMaxSize))
	}
	if c.Groups.OffsetsSegmentBytes < 1024 {
		errs = append(errs, fmt.Errorf("groups.offsets-segment-bytes %d is below 1024", c.Groups.OffsetsSegmentBytes))
	}
	if c.Share.RecordLockDuration < time.Millisecond || c.Share.DeliveryCountLimit < 2 || c.Share.DeliveryCountLimit > 10 || c.Share.PartitionMaxRecordLocks < 100 || c.Share.PartitionMaxRecordLocks > 10000 {
		errs = append(errs, fmt.Errorf("share: record-lock-duration %v (at least 1ms), delivery-count-limit %d (in [2, 10]) or partition-max-record-locks %d (in [100, 10000]) out of range", c.Share.RecordLockDuration, c.Share.DeliveryCountLimit, c.Share.PartitionMaxRecordLocks))
	}
	if c.Share.AutoOffsetReset != "latest" && c.Share.AutoOffsetReset != "earliest" {
		errs = append(errs, fmt.Errorf("share.auto-offset-reset %q must be latest or earliest", c.Share.AutoOffsetReset))
	}
	if c.Share.IsolationLevel != "read_uncommitted" && c.Share.IsolationLevel != "read_committed" {
		errs = append(errs, fmt.Errorf("share.isolation-level %q must be read_uncommitted or read_committed", c.Share.IsolationLevel))
	}
	if c.Share.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("share.max-sessions %d is negative", c.Share.MaxSessions))
	}
	if c.Share.StateRF < 0 || c.Share.StateRF > 16 || c.Share.StatePartitions < 1 || c.Share.StatePartitions > 1000 || c.Share.StateSegmentBytes < 1024 {
		errs = append(errs, fmt.Errorf("share: state-partitions %d (in [1, 1000]), state-replication-factor %d (in [0, 16]) or state-segment-bytes %d (at least 1024) out of range", c.Share.StatePartitions, c.Share.StateRF, c.Share.StateSegmentBytes))
	}
	if c.Transactions.RF < 0 || c.Transactions.RF > 16 {
		errs = append(errs, fmt.Errorf("transactions.replication-factor %d must be in [0, 16] (0: min(3, live brokers))", c.Transactions.RF))
	}
	if c.Transactions.Partitions < 1 || c.Transactions.Partitions > 1000 {
		errs = append(errs, fmt.Errorf("transactions.partitions %d must be in [1, 1000]", c.Transactions.Partitions))
	}
	if c.Transactions.SegmentBytes < 1024 {
		errs = append(errs, fmt.Errorf("transactions.segment-bytes %d is below 1024", c.Transactions.SegmentBytes))
	}
	if c.Transactions.MaxTimeout <= 0 || c.Transactions.IDExpiration <= 0 {
		errs = append(errs, errors.New("transactions.max-timeout and transactions.id-expiration must be positive"))
	}
	if c.Transactions.TestMarkerDelay < 0 {
		errs = append(errs, fmt.Errorf("transactions.test-marker-delay %v is negative", c.Transactions.TestMarkerDelay))
	}
	if c.Groups.OffsetsRetention <= 0 || c.Groups.OffsetsExpireInterval <= 0 {
		errs = append(errs, errors.New("groups.offsets-retention and groups.offsets-expire-interval must be positive"))
	}
	if c.Cleaner.Threads < 1 || c.Cleaner.Threads > 64 {
		errs = append(errs, fmt.Errorf("cleaner.threads %d must be in [1, 64]", c.Cleaner.Threads))
	}
	if c.Cleaner.IORate < 0 {
		errs = append(errs, fmt.Errorf("cleaner.io-rate %d must not be negative (0: unlimited)", c.Cleaner.IORate))
	}
	if c.Cleaner.MapBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("cleaner.map-bytes %d is below 1 MiB", c.Cleaner.MapBytes))
	}
	if c.Cleaner.Backoff <= 0 {
		errs = append(errs, fmt.Errorf("cleaner.backoff %v must be positive", c.Cleaner.Backoff))
	}
	if len(errs) > 0 {
		return fmt.Errorf("configs: invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}
