package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
)

// Group configs: Kafka's GROUP config resources (DescribeConfigs,
// IncrementalAlterConfigs) for share groups (KIP-932; docs/groups-next.md
// part B). A group's overrides live in the Raft metadata
// (metadata.SetGroupConfigs), so every node reads the same ones; a group
// need not exist to have them. The broker defaults (share.* in configs)
// apply where a group sets none. shareConfig reads them when a
// share-partition is loaded (first use, a new leader), so a change applies
// to share-partitions loaded after it; share.isolation.level applies at
// the next ShareFetch, share.session.timeout.ms and
// share.heartbeat.interval.ms at the group's next heartbeat.

type groupConfigDef struct {
	name    string
	typ     topicConfigType
	def     func(c configs.Config) string
	check   func(v string) error
	synonym string // the broker config whose value is the default
	doc     string
}

func groupConfigDefs() []groupConfigDef {
	oneOf := func(vals ...string) func(string) error {
		return func(v string) error {
			for _, ok := range vals {
				if v == ok {
					return nil
				}
			}
			return fmt.Errorf("must be one of %v", vals)
		}
	}
	intIn := func(lo, hi int64) func(string) error {
		return func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("must be an integer in [%d, %d]", lo, hi)
			}
			return nil
		}
	}
	return []groupConfigDef{
		{name: "share.auto.offset.reset", typ: ctString, synonym: "share.auto.offset.reset",
			def:   func(c configs.Config) string { return c.Share.AutoOffsetReset },
			check: oneOf("latest", "earliest"),
			doc:   "where a share group starts reading a partition it has no state for: latest or earliest"},
		{name: "share.isolation.level", typ: ctString, synonym: "share.isolation.level",
			def:   func(c configs.Config) string { return c.Share.IsolationLevel },
			check: oneOf("read_uncommitted", "read_committed"),
			doc:   "what a share group reads: read_uncommitted or read_committed (aborted records archived)"},
		{name: "share.record.lock.duration.ms", typ: ctInt, synonym: "group.share.record.lock.duration.ms",
			def:   func(c configs.Config) string { return strconv.FormatInt(c.Share.RecordLockDuration.Milliseconds(), 10) },
			check: intIn(1000, 3600000),
			doc:   "how long a member holds acquired records before they are delivered again"},
		{name: "share.session.timeout.ms", typ: ctInt, synonym: "group.share.session.timeout.ms",
			def: func(c configs.Config) string {
				return strconv.FormatInt(c.Groups.ShareSessionTimeout.Milliseconds(), 10)
			},
			check: intIn(1000, 3600000),
			doc:   "a member that sends no heartbeat for this long is removed and its records released"},
		{name: "share.heartbeat.interval.ms", typ: ctInt, synonym: "group.share.heartbeat.interval.ms",
			def: func(c configs.Config) string {
				return strconv.FormatInt(c.Groups.ShareHeartbeatInterval.Milliseconds(), 10)
			},
			check: intIn(100, 3600000),
			doc:   "how often members are told to heartbeat; below the session timeout"},
		{name: "share.delivery.count.limit", typ: ctInt, synonym: "group.share.delivery.count.limit",
			def:   func(c configs.Config) string { return strconv.Itoa(c.Share.DeliveryCountLimit) },
			check: intIn(2, 10),
			doc:   "deliveries after which a record is archived instead of delivered again"},
	}
}

func findGroupConfig(name string) (groupConfigDef, bool) {
	for _, d := range groupConfigDefs() {
		if d.name == name {
			return d, true
		}
	}
	return groupConfigDef{}, false
}

// groupConfig is group's value of a group config: its override, else the
// broker default.
func (b *Broker) groupConfig(group, name string) string {
	if v, ok := b.store.FSM().GroupConfigs(group)[name]; ok {
		return v
	}
	d, _ := findGroupConfig(name)
	return d.def(b.cfg)
}

// shareGroupTimeouts are a share group's session timeout and heartbeat
// interval overrides (zero: none), for groups.ShareConfig.Overrides.
func (b *Broker) shareGroupTimeouts(group string) (session, heartbeat time.Duration) {
	o := b.store.FSM().GroupConfigs(group)
	get := func(name string) time.Duration {
		n, err := strconv.ParseInt(o[name], 10, 64)
		if err != nil {
			return 0
		}
		return time.Duration(n) * time.Millisecond
	}
	return get("share.session.timeout.ms"), get("share.heartbeat.interval.ms")
}

// describeGroupConfigs lists a group's configs for DescribeConfigs:
// overrides as GROUP_CONFIG, the rest the broker default's.
func (b *Broker) describeGroupConfigs(group string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	overrides := b.store.FSM().GroupConfigs(group)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, d := range groupConfigDefs() {
		if !wanted(names, d.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = d.name
		def := d.def(b.cfg)
		val, override := overrides[d.name]
		c.Source = sourceDefault
		if override {
			c.Source = kmsg.ConfigSourceGroupConfig
		} else {
			val = def
		}
		c.Value = kmsg.StringPtr(val)
		c.ConfigType = kmsg.ConfigType(d.typ)
		if docs {
			c.Documentation = kmsg.StringPtr(d.doc)
		}
		if synonyms {
			if override {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = d.name, kmsg.StringPtr(val), kmsg.ConfigSourceGroupConfig
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
			}
			s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			s.Name, s.Value, s.Source = d.synonym, kmsg.StringPtr(def), sourceDefault
			c.ConfigSynonyms = append(c.ConfigSynonyms, s)
		}
		out = append(out, c)
	}
	return out
}

// alterGroupConfigs applies IncrementalAlterConfigs operations to a
// group's overrides (SET and DELETE; the group configs are no lists):
// INVALID_CONFIG for an unknown name or a bad value, INVALID_REQUEST for
// an empty group id or another operation.
func (b *Broker) alterGroupConfigs(ctx context.Context, group string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig, validateOnly bool) (int16, string) {
	if group == "" {
		return kerr.InvalidRequest.Code, "empty group id"
	}
	for attempt := 0; attempt < 10; attempt++ {
		cur := b.store.FSM().GroupConfigs(group)
		next := maps.Clone(cur)
		if next == nil {
			next = map[string]string{}
		}
		for _, op := range ops {
			d, ok := findGroupConfig(op.Name)
			if !ok {
				return kerr.InvalidConfig.Code, fmt.Sprintf("unknown group config %q", op.Name)
			}
			switch op.Op {
			case kmsg.IncrementalAlterConfigOpSet:
				v := ""
				if op.Value != nil {
					v = *op.Value
				}
				if err := d.check(v); err != nil {
					return kerr.InvalidConfig.Code, fmt.Sprintf("%s=%q: %v", op.Name, v, err)
				}
				next[op.Name] = v
			case kmsg.IncrementalAlterConfigOpDelete:
				delete(next, op.Name)
			default:
				return kerr.InvalidConfig.Code, fmt.Sprintf("%s is not a list config", op.Name)
			}
		}
		ms := func(name string) int64 {
			v, ok := next[name]
			if !ok {
				d, _ := findGroupConfig(name)
				v = d.def(b.cfg)
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		if hb, st := ms("share.heartbeat.interval.ms"), ms("share.session.timeout.ms"); hb >= st {
			return kerr.InvalidConfig.Code, fmt.Sprintf("share.heartbeat.interval.ms %d must be below share.session.timeout.ms %d", hb, st)
		}
		if validateOnly {
			return 0, ""
		}
		if len(next) == 0 {
			next = nil
		}
		err := b.store.Apply(ctx, metadata.SetGroupConfigs{Group: group, Expected: cur, Configs: next})
		if errors.Is(err, metadata.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return applyErrorCode(err), err.Error()
		}
		return 0, ""
	}
	return kerr.ConcurrentTransactions.Code, "configs changed concurrently; retry"
}
