package broker

import (
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// ConsumerGroupDescribe 0-1 (KIP-848), each group asked of its own
// coordinator: DESCRIBE on the group, else GROUP_AUTHORIZATION_FAILED for
// it; a group whose members are assigned (or subscribe to) a topic the
// principal may not DESCRIBE is answered TOPIC_AUTHORIZATION_FAILED
// without its members, as Kafka does; the authorized operations when
// asked.
func apiConsumerGroupDescribe() api {
	return api{key: kmsg.ConsumerGroupDescribe, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		req := rc.req.(*kmsg.ConsumerGroupDescribeRequest)
		resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
		for _, g := range req.Groups {
			if code := rc.groupDenied(auth.OpDescribe, g); code != 0 {
				rg := kmsg.NewConsumerGroupDescribeResponseGroup()
				rg.Group, rg.ErrorCode = g, code
				resp.Groups = append(resp.Groups, rg)
				continue
			}
			sub := *req
			sub.Groups = []string{g}
			r := b.coordinatorFor(g).ConsumerGroupDescribe(rc.groupCtx(), &sub)
			for i := range r.Groups {
				hideUndescribable(rc, &r.Groups[i])
			}
			if req.IncludeAuthorizedOperations {
				for i := range r.Groups {
					r.Groups[i].AuthorizedOperations = rc.authorizedOps(auth.ResourceGroup, g)
				}
			}
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return resp, nil
	}}
}

// hideUndescribable answers g TOPIC_AUTHORIZATION_FAILED, without its
// members, when one of them subscribes to or is assigned a topic the
// principal may not DESCRIBE.
func hideUndescribable(rc *request, g *kmsg.ConsumerGroupDescribeResponseGroup) {
	if g.ErrorCode != 0 {
		return
	}
	denied := map[string]bool{}
	check := func(topic string) {
		if topic != "" && !denied[topic] && rc.topicDenied(auth.OpDescribe, topic) != 0 {
			denied[topic] = true
		}
	}
	for _, m := range g.Members {
		for _, t := range m.SubscribedTopics {
			check(t)
		}
		for _, a := range []kmsg.Assignment{m.Assignment, m.TargetAssignment} {
			for _, tp := range a.TopicPartitions {
				check(tp.Topic)
			}
		}
	}
	if len(denied) == 0 {
		return
	}
	names := make([]string, 0, len(denied))
	for t := range denied {
		names = append(names, t)
	}
	sort.Strings(names)
	*g = kmsg.ConsumerGroupDescribeResponseGroup{
		Group:                g.Group,
		ErrorCode:            kerr.TopicAuthorizationFailed.Code,
		ErrorMessage:         kmsg.StringPtr("The group has described topic(s) that the client is not authorized to describe: " + strings.Join(names, ", ")),
		AuthorizedOperations: g.AuthorizedOperations,
	}
}
