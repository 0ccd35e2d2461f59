package broker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// TestAuthzConsumerGroupHeartbeat: ConsumerGroupHeartbeat needs READ on
// the group and DESCRIBE on every subscribed topic name; a regex resolves
// only to the topics the principal may DESCRIBE, internal topics left out.
func TestAuthzConsumerGroupHeartbeat(t *testing.T) {
	b := startAuthzBroker(t)
	acls := []auth.ACL{
		allowAnon(auth.ResourceGroup, "g", auth.OpRead),
		allowAnon(auth.ResourceTopic, "ra-1", auth.OpDescribe),
		allowAnon(auth.ResourceTopic, "__consumer_offsets", auth.OpDescribe),
	}
	createTopicsAs(t, b, acls, 2, "ra-1", "ra-2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	if r, err := fc.RequestWith(ctx, cl); err != nil || r.ErrorCode != 0 {
		t.Fatalf("FindCoordinator: %v %v", r, err)
	}
	ra1, _ := b.store.FSM().Topic("ra-1")

	hb := func(group string, names []string, regex *string) *kmsg.ConsumerGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.RebalanceTimeoutMillis = group, "member-1", 30000
		req.SubscribedTopicNames, req.SubscribedTopicRegex = names, regex
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		var resp *kmsg.ConsumerGroupHeartbeatResponse
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := req.RequestWith(ctx, cl)
			var ke *kerr.Error
			if errors.As(err, &ke) { // kgo's FindCoordinator for the group
				r, err = req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse), nil
				r.ErrorCode = ke.Code
			}
			if err != nil {
				t.Fatal(err)
			}
			resp = r
			if r.ErrorCode != kerr.CoordinatorLoadInProgress.Code && r.ErrorCode != kerr.NotCoordinator.Code || time.Now().After(deadline) {
				return resp
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := hb("other", []string{"ra-1"}, nil); r.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("no READ on the group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := hb("g", []string{"ra-1", "ra-2"}, nil); r.ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("subscribing to a topic it may not describe: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	r := hb("g", nil, kmsg.StringPtr(".*"))
	if r.ErrorCode != 0 || r.Assignment == nil {
		t.Fatalf("regex join: %v %+v", kerr.ErrorForCode(r.ErrorCode), r)
	}
	// Kafka's rule: every topic the principal may DESCRIBE, internal ones
	// included (here __consumer_offsets), never ra-2.
	co, _ := b.store.FSM().Topic("__consumer_offsets")
	got := map[[16]byte]int{}
	for _, at := range r.Assignment.Topics {
		got[at.TopicID] = len(at.Partitions)
	}
	if len(got) != 2 || got[ra1.ID] != 2 || got[co.ID] != int(co.Partitions) {
		t.Fatalf("regex .* assigned %+v, want both partitions of ra-1 and the %d of __consumer_offsets", r.Assignment.Topics, co.Partitions)
	}

	// ConsumerGroupDescribe: the group with its member while ra-1 may be
	// described; TOPIC_AUTHORIZATION_FAILED without members once not.
	describe := func() kmsg.ConsumerGroupDescribeResponseGroup {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups = []string{"g"}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Groups) != 1 {
			t.Fatalf("ConsumerGroupDescribe: %v %v", resp, err)
		}
		return resp.Groups[0]
	}
	if d := describe(); d.ErrorCode != 0 || len(d.Members) != 1 || !slices.ContainsFunc(d.Members[0].Assignment.TopicPartitions, func(tp kmsg.AssignmentTopicPartition) bool {
		return tp.Topic == "ra-1" && len(tp.Partitions) == 2
	}) {
		t.Fatalf("describe: %v %+v", kerr.ErrorForCode(d.ErrorCode), d)
	}
	setACLs(t, b, acls[0], acls[2])
	if d := describe(); d.ErrorCode != kerr.TopicAuthorizationFailed.Code || len(d.Members) != 0 {
		t.Fatalf("describe without DESCRIBE on ra-1: %v, %d members", kerr.ErrorForCode(d.ErrorCode), len(d.Members))
	}
}
