package broker

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func apiApiVersions() api {
	return api{key: kmsg.ApiVersions, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		return b.apiVersionsResponse(rc.hdr.APIVersion, rc.conn.node), nil
	}}
}

// apiVersionsResponse lists the registry's version ranges; Envelope only
// to node connections (58_envelope.go).
func (b *Broker) apiVersionsResponse(version int16, node bool) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	keys := make([]int, 0, len(b.apis))
	for k := range b.apis {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	for _, k := range keys {
		a := b.apis[int16(k)]
		if a.key == kmsg.Envelope && !node {
			continue
		}
		v := kmsg.NewApiVersionsResponseApiKey()
		v.ApiKey = int16(k)
		v.MinVersion = a.min
		v.MaxVersion = a.max
		resp.ApiKeys = append(resp.ApiKeys, v)
	}
	return resp
}
