package broker

import (
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/groups"
	"github.com/tuskdb/tusk/metadata"
)

// ConsumerGroupHeartbeat 0-1 (KIP-848; docs/groups-next.md, part A): the
// group's coordinator computes assignments (groups.ConsumerGroup).
// Authorization (Kafka's): READ on the group, else
// GROUP_AUTHORIZATION_FAILED; DESCRIBE on every subscribed topic name,
// else TOPIC_AUTHORIZATION_FAILED; a regex resolves only to the topics
// the principal may DESCRIBE, internal ones included as in Kafka
// (topicImage). heartbeatDenied checks both.
// Group requests run in connection order (conn.go: inGroupOrder).
func apiConsumerGroupHeartbeat() api {
	return api{key: kmsg.ConsumerGroupHeartbeat, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ConsumerGroupHeartbeatRequest)
		if code, msg := rc.heartbeatDenied(req.Group, req.SubscribedTopicNames); code != 0 {
			r := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
			r.ErrorCode, r.ErrorMessage = code, msg
			return r, nil
		}
		img := b.topicImage(rc)
		return nil, rc.inGroupOrder(func() kmsg.Response {
			return b.coordinatorFor(req.Group).ConsumerGroupHeartbeat(rc.groupCtx(), req, img)
		})
	}}
}

// heartbeatDenied is the authorization of a ConsumerGroupHeartbeat or a
// ShareGroupHeartbeat (Kafka's): READ on the group, else
// GROUP_AUTHORIZATION_FAILED; DESCRIBE on every subscribed topic name,
// else TOPIC_AUTHORIZATION_FAILED and a message naming them (sorted). It
// is 0 and nil when the heartbeat is allowed.
func (rc *request) heartbeatDenied(group string, topics []string) (int16, *string) {
	if code := rc.groupDenied(auth.OpRead, group); code != 0 {
		return code, nil
	}
	var denied []string
	for _, t := range topics {
		if rc.topicDenied(auth.OpDescribe, t) != 0 {
			denied = append(denied, t)
		}
	}
	if len(denied) == 0 {
		return 0, nil
	}
	sort.Strings(denied)
	return kerr.TopicAuthorizationFailed.Code, kmsg.StringPtr("The following topics are not authorized: " + strings.Join(denied, ", "))
}

// topicImage is groups.TopicImage over the metadata FSM: Topic answers
// any topic; Names (what regex subscriptions resolve on) lists the
// topics the principal of rc may DESCRIBE (every topic when rc is nil: a
// coordinator loading its groups). Internal topics are among them, as
// Kafka resolves regexes against every topic and filters by DESCRIBE
// alone (franz-go's Test848RegexBrokerResolves expects an internal topic
// a regex names to be assigned).
type topicImage struct {
	b  *Broker
	rc *request
}

func (b *Broker) topicImage(rc *request) groups.TopicImage {
	return topicImage{b: b, rc: rc}
}

func (im topicImage) fsm() *metadata.FSM { return im.b.store.FSM() }

func (im topicImage) Topic(name string) ([16]byte, int32, bool) {
	// Partition copies one partition's chain, not the topic's.
	t, _, ok := im.fsm().Partition(name, 0)
	if !ok {
		return [16]byte{}, 0, false
	}
	return t.ID, t.Partitions, true
}

func (im topicImage) Names() []string {
	var out []string
	for _, t := range im.fsm().Topics() {
		if im.rc != nil && !im.rc.allowed(auth.OpDescribe, auth.ResourceTopic, t.Name) {
			continue
		}
		out = append(out, t.Name)
	}
	return out
}
