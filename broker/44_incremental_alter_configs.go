package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// IncrementalAlterConfigs 0-1 for topic configs: SET, DELETE, APPEND and
// SUBTRACT (the last two for list-typed configs).
func apiIncrementalAlterConfigs() api {
	return api{key: kmsg.IncrementalAlterConfigs, min: 0, max: 1, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.handleIncrementalAlterConfigs(rc, rc.req.(*kmsg.IncrementalAlterConfigsRequest)), nil
	}}
}

func (b *Broker) handleIncrementalAlterConfigs(rc *request, req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := kmsg.NewPtrIncrementalAlterConfigsResponse()
	for _, r := range req.Resources {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		if code := rc.configDenied(auth.OpAlterConfigs, r.ResourceType, r.ResourceName); code != 0 { // ALTER_CONFIGS
			rr.ErrorCode = code
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		if r.ResourceType == kmsg.ConfigResourceTypeGroupConfig {
			// groupconfig.go: share-group configs.
			code, msg := b.alterGroupConfigs(rc.ctx(), r.ResourceName, r.Configs, req.ValidateOnly)
			rr.ErrorCode = code
			if msg != "" {
				rr.ErrorMessage = kmsg.StringPtr(msg)
			}
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		code, msg := b.alterTopicConfigs(rc.ctx(), r.ResourceType, r.ResourceName, req.ValidateOnly, func(cur map[string]string) (map[string]string, int16, string) {
			if cur == nil {
				cur = map[string]string{}
			}
			for _, c := range r.Configs {
				d, ok := findTopicConfig(c.Name)
				if !ok {
					return nil, kerr.InvalidConfig.Code, fmt.Sprintf("unknown topic config %q", c.Name)
				}
				val := ""
				if c.Value != nil {
					val = *c.Value
				}
				switch c.Op {
				case kmsg.IncrementalAlterConfigOpSet:
					cur[c.Name] = val
				case kmsg.IncrementalAlterConfigOpDelete:
					delete(cur, c.Name)
				case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
					if d.typ != ctList {
						return nil, kerr.InvalidConfig.Code, fmt.Sprintf("%s is not a list config", c.Name)
					}
					base, _ := b.topicConfigValue(cur, c.Name)
					items := splitList(base)
					for _, v := range splitList(val) {
						i := slices.Index(items, v)
						if c.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0 {
							items = append(items, v)
						} else if c.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0 {
							items = slices.Delete(items, i, i+1)
						}
					}
					cur[c.Name] = strings.Join(items, ",")
				default:
					return nil, kerr.InvalidRequest.Code, fmt.Sprintf("unknown config operation %d", c.Op)
				}
			}
			return cur, 0, ""
		})
		rr.ErrorCode = code
		if msg != "" {
			rr.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
