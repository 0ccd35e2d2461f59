package broker

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t, ok := b.topicSynced(rc.ctx(), r.ResourceName)
			if !ok {
				rr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				break
			}
			rr.Configs = b.describeTopicConfigs(t.Configs, r.ConfigNames, req.IncludeSynonyms, req.IncludeDocumentation)
		case kmsg.ConfigResourceTypeBroker:
			if r.ResourceName != "" && r.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				rr.ErrorCode = kerr.InvalidRequest.Code
				rr.ErrorMessage = kmsg.StringPtr("unknown broker " + r.ResourceName)
				break
			}
			rr.Configs = b.describeBrokerConfigs(r.ConfigNames)
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

// describeTopicConfigs lists a topic's effective configs.
func (b *Broker) describeTopicConfigs(overrides map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, d := range topicConfigDefs() {
		if !wanted(names, d.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = d.name
		val, override := b.topicConfigValue(overrides, d.name)
		c.Value = kmsg.StringPtr(val)
		c.Source = sourceDefault
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
			s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			s.Name, s.Value, s.Source = d.name, kmsg.StringPtr(d.def(b.cfg)), sourceDefault
			c.ConfigSynonyms = append(c.ConfigSynonyms, s)
		}
		out = append(out, c)
	}
	return out
}

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
	add("log.dirs", c.DataDir, ctString)
	add("tusk.storage.fsync", c.Storage.Fsync, ctString)
	add("default.replication.factor", "1", ctInt)
	return out
}
