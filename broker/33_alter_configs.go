package broker

import (
	"context"
	"errors"
	"maps"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// AlterConfigs 0-2 replaces a topic's whole set of overrides. Broker
// configs are static and refused.
func apiAlterConfigs() api {
	return api{key: kmsg.AlterConfigs, min: 0, max: 2, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleAlterConfigs(rc, rc.req.(*kmsg.AlterConfigsRequest)), nil
	}}
}

func (b *Broker) handleAlterConfigs(rc *request, req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := kmsg.NewPtrAlterConfigsResponse()
	for _, r := range req.Resources {
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		if code := rc.configDenied(auth.OpAlterConfigs, r.ResourceType, r.ResourceName); code != 0 { // ALTER_CONFIGS
			rr.ErrorCode = code
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		code, msg := b.alterTopicConfigs(rc.ctx(), r.ResourceType, r.ResourceName, req.ValidateOnly, func(map[string]string) (map[string]string, int16, string) {
			next := map[string]string{}
			for _, c := range r.Configs {
				if c.Value != nil {
					next[c.Name] = *c.Value
				}
			}
			return next, 0, ""
		})
		rr.ErrorCode = code
		if msg != "" {
			rr.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// alterTopicConfigs computes new overrides from the current ones with
// change, validates them, and commits them with a compare-and-set, retrying
// when another change raced in. Open logs pick up the new values.
func (b *Broker) alterTopicConfigs(ctx context.Context, typ kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(cur map[string]string) (map[string]string, int16, string)) (int16, string) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return kerr.InvalidRequest.Code, "broker configs are static; set them in the config file, flags or TUSK_* variables"
	default:
		return kerr.InvalidRequest.Code, "unsupported resource type"
	}
	for attempt := 0; attempt < 10; attempt++ {
		t, ok := b.topicSynced(ctx, name)
		if !ok {
			return kerr.UnknownTopicOrPartition.Code, ""
		}
		next, code, msg := change(maps.Clone(t.Configs))
		if code != 0 {
			return code, msg
		}
		if err := validateTopicConfigs(next); err != nil {
			return kerr.InvalidConfig.Code, err.Error()
		}
		if validateOnly {
			return 0, ""
		}
		if len(next) == 0 {
			next = nil
		}
		err := b.store.Apply(ctx, metadata.SetTopicConfigs{Name: name, ID: t.ID, Expected: t.Configs, Configs: next})
		if errors.Is(err, metadata.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return applyErrorCode(err), err.Error()
		}
		b.reconcileTopic(name) // pushes the new configs to this node's logs
		return 0, ""
	}
	return kerr.ConcurrentTransactions.Code, "configs changed concurrently; retry"
}
