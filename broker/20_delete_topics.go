package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

func apiDeleteTopics() api {
	return api{key: kmsg.DeleteTopics, min: 1, max: 6, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleDeleteTopics(rc, rc.req.(*kmsg.DeleteTopicsRequest)), nil
	}}
}

func (b *Broker) handleDeleteTopics(rc *request, req *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := kmsg.NewPtrDeleteTopicsResponse()
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			targets = append(targets, target{kmsg.StringPtr(n), [16]byte{}})
		}
	}
	resp.Topics = make([]kmsg.DeleteTopicsResponseTopic, len(targets))
	parallel(len(targets), 64, func(i int) {
		tg := targets[i]
		st := &resp.Topics[i]
		*st = kmsg.NewDeleteTopicsResponseTopic()
		st.Topic = tg.name
		st.TopicID = tg.id
		var t metadata.Topic
		var ok bool
		if tg.name != nil {
			t, ok = b.topicSynced(rc.ctx(), *tg.name)
		} else {
			if t, ok = b.store.FSM().TopicByID(metadata.TopicID(tg.id)); !ok && b.syncWithController(rc.ctx()) == nil {
				t, ok = b.store.FSM().TopicByID(metadata.TopicID(tg.id))
			}
		}
		// DELETE on the topic (checked by name before whether it
		// exists; a topic named by ID needs DESCRIBE to be told apart
		// from an unknown one).
		var denied int16
		switch {
		case tg.name != nil:
			denied = rc.topicDenied(auth.OpDelete, *tg.name)
		case ok:
			if denied = rc.topicDenied(auth.OpDescribe, t.Name); denied == 0 {
				denied = rc.topicDenied(auth.OpDelete, t.Name)
			}
		}
		switch {
		case denied != 0:
			st.ErrorCode = denied
		case !ok && tg.name == nil:
			st.ErrorCode = kerr.UnknownTopicID.Code
		case !ok:
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
		case t.Internal:
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			st.ErrorMessage = kmsg.StringPtr("internal topics cannot be deleted")
		default:
			st.Topic = kmsg.StringPtr(t.Name)
			st.TopicID = t.ID
			code, msg := b.deleteTopic(rc.ctx(), t)
			st.ErrorCode = code
			if msg != "" {
				st.ErrorMessage = kmsg.StringPtr(msg)
			}
		}
	})
	return resp
}
