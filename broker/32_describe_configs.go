package broker

import (
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
)

// Config sources as reported by DescribeConfigs v1+.
const (
	sourceDynamicTopic = 1
	sourceStaticBroker = 4
	sourceDefault      = 5
)

func apiDescribeConfigs() api {
	return api{key: kmsg.DescribeConfigs, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleDescribeConfigs(rc, rc.req.(*kmsg.DescribeConfigsRequest)), nil
	}}
}

func (b *Broker) handleDescribeConfigs(rc *request, req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := kmsg.NewPtrDescribeConfigsResponse()
	for _, r := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType = r.ResourceType
		rr.ResourceName = r.ResourceName
		// DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
		denied := rc.configDenied(auth.OpDescribeConfigs, r.ResourceType, r.ResourceName)
		switch {
		case denied != 0:
			rr.ErrorCode = denied
		case r.ResourceType == kmsg.ConfigResourceTypeTopic:
			t, ok := b.topicSynced(rc.ctx(), r.ResourceName)
			if !ok {
				rr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				break
			}
			rr.Configs = b.describeTopicConfigs(t.Configs, r.ConfigNames, req.IncludeSynonyms, req.IncludeDocumentation)
		case r.ResourceType == kmsg.ConfigResourceTypeBroker:
			if r.ResourceName != "" && r.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				rr.ErrorCode = kerr.InvalidRequest.Code
				rr.ErrorMessage = kmsg.StringPtr("unknown broker " + r.ResourceName)
				break
			}
			rr.Configs = b.describeBrokerConfigs(r.ConfigNames)
		case r.ResourceType == kmsg.ConfigResourceTypeGroupConfig:
			// groupconfig.go: share-group configs.
			rr.Configs = b.describeGroupConfigs(r.ResourceName, r.ConfigNames, req.IncludeSynonyms, req.IncludeDocumentation)
		default:
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = kmsg.StringPtr("unsupported resource type")
		}
		if req.Version == 0 {
			for i := range rr.Configs {
				rr.Configs[i].IsDefault = rr.Configs[i].Source == sourceDefault
			}
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

func wanted(names []string, name string) bool {
	if names == nil {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// describeTopicConfigs lists a topic's effective configs as Kafka does
// (ConfigHelper.createTopicConfigEntry): a list's value normalized (items
// trimmed, joined by commas); the source is the topic override's, else
// the broker default's. The synonyms (v1+) are the topic override
// (DYNAMIC_TOPIC_CONFIG), if set, then the broker config the default
// stands for (log.cleanup.policy for cleanup.policy): STATIC_BROKER_CONFIG
// when this node's configuration changed it, else DEFAULT_CONFIG.
func (b *Broker) describeTopicConfigs(overrides map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	builtin := b.builtin.get()
	for _, d := range topicConfigDefs() {
		if !wanted(names, d.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = d.name
		val, override := b.topicConfigValue(overrides, d.name)
		brokerVal := d.def(b.cfg)
		if d.typ == ctList {
			val, brokerVal = configs.NormalizeList(val), configs.NormalizeList(brokerVal)
		}
		brokerSource := int8(sourceDefault)
		if d.synonym != "" && d.def(b.cfg) != d.def(builtin) {
			brokerSource = sourceStaticBroker
		}
		c.Value = kmsg.StringPtr(val)
		c.Source = kmsg.ConfigSource(brokerSource)
		if override {
			c.Source = sourceDynamicTopic
		}
		c.ConfigType = kmsg.ConfigType(d.typ)
		if docs {
			c.Documentation = kmsg.StringPtr(d.doc)
		}
		if synonyms {
			if override {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = d.name, kmsg.StringPtr(val), sourceDynamicTopic
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
			}
			if d.synonym != "" {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = d.synonym, kmsg.StringPtr(brokerVal), kmsg.ConfigSource(brokerSource)
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
			}
		}
		out = append(out, c)
	}
	return out
}

// The Kafka version this node reports in DescribeConfigs, which UIs (kafbat
// UI) read to tell what a cluster supports. Tusk's newest API versions are
// Kafka 3.7's (Produce v11 with KIP-951 leader hints, OffsetCommit v9,
// DescribeLogDirs v4), so it reports 3.7's last metadata version,
// 3.7-IV4, the inter.broker.protocol.version a Kafka 3.7 broker reports by
// default. log.message.format.version is what such a broker reports too:
// its default 3.0-IV1, ignored by Kafka since 3.0 (record batches are v2).
const (
	interBrokerProtocolVersion = "3.7-IV4"
	logMessageFormatVersion    = "3.0-IV1"
)

// describeBrokerConfigs lists the node's static configuration (read-only).
func (b *Broker) describeBrokerConfigs(names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	add := func(name, value string, typ topicConfigType) {
		if !wanted(names, name) {
			return
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly, c.Source, c.ConfigType = name, kmsg.StringPtr(value), true, sourceStaticBroker, kmsg.ConfigType(typ)
		out = append(out, c)
	}
	c := b.cfg
	add("broker.id", strconv.Itoa(int(c.NodeID)), ctInt)
	add("num.partitions", strconv.Itoa(int(c.Topic.Partitions)), ctInt)
	add("auto.create.topics.enable", strconv.FormatBool(c.Topic.AutoCreate), ctBoolean)
	add("message.max.bytes", strconv.Itoa(int(c.Kafka.MessageMaxBytes)), ctInt)
	add("socket.request.max.bytes", strconv.Itoa(int(c.Kafka.RequestMaxBytes)), ctInt)
	add("log.segment.bytes", strconv.FormatInt(c.Topic.SegmentBytes, 10), ctInt)
	add("log.roll.ms", strconv.FormatInt(c.Topic.SegmentMs, 10), ctLong)
	add("log.retention.ms", strconv.FormatInt(c.Topic.RetentionMs, 10), ctLong)
	add("log.retention.bytes", strconv.FormatInt(c.Topic.RetentionBytes, 10), ctLong)
	add("log.dirs", b.logsDir(), ctString)
	add("inter.broker.protocol.version", interBrokerProtocolVersion, ctString)
	add("log.message.format.version", logMessageFormatVersion, ctString)
	add("tusk.storage.fsync", c.Storage.Fsync, ctString)
	add("default.replication.factor", strconv.Itoa(b.reportedDefaultRF()), ctInt)
	ioRate := strconv.FormatInt(c.Cleaner.IORate, 10)
	if c.Cleaner.IORate == 0 {
		ioRate = "1.7976931348623157E308" // Kafka's unlimited (Double.MAX_VALUE)
	}
	add("log.cleaner.enable", strconv.FormatBool(c.Cleaner.Enable), ctBoolean)
	add("log.cleaner.threads", strconv.Itoa(c.Cleaner.Threads), ctInt)
	add("log.cleaner.io.max.bytes.per.second", ioRate, configs.TopicConfigDouble)
	add("log.cleaner.dedupe.buffer.size", strconv.FormatInt(c.Cleaner.MapBytes, 10), ctLong)
	add("log.cleaner.backoff.ms", strconv.FormatInt(c.Cleaner.Backoff.Milliseconds(), 10), ctLong)
	// The broker defaults of the remaining topic configs, under the names
	// DescribeConfigs gives them as topic config synonyms.
	for _, d := range topicConfigDefs() {
		if d.synonym != "" && !slices.ContainsFunc(out, func(e kmsg.DescribeConfigsResponseResourceConfig) bool { return e.Name == d.synonym }) {
			v := d.def(c)
			if d.typ == ctList {
				v = configs.NormalizeList(v)
			}
			add(d.synonym, v, d.typ)
		}
	}
	return out
}

// reportedDefaultRF is default.replication.factor as DescribeConfigs
// reports it: topic.replication-factor, or with 0 there min(3, live
// brokers), what the controller gives a topic created with -1 (defaultRF,
// metadata.AutoReplicationFactor).
func (b *Broker) reportedDefaultRF() int {
	if rf := b.cfg.Topic.ReplicationFactor; rf > 0 {
		return int(rf)
	}
	live := 0
	for _, br := range b.store.FSM().Brokers() {
		if br.State == metadata.BrokerAlive {
			live++
		}
	}
	return max(1, min(3, live))
}
