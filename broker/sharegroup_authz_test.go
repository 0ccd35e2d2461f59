package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// TestAuthzShareGroup: Kafka's ACLs for share-group membership and
// offsets: READ on the group and DESCRIBE on each subscribed topic to
// heartbeat; ShareGroupDescribe answers TOPIC_AUTHORIZATION_FAILED alone
// for a group assigned a topic the principal may not DESCRIBE; the offsets
// APIs check the topics per partition (90, 91) or per topic (92) and
// DELETE on the group for 92.
func TestAuthzShareGroup(t *testing.T) {
	b := startAuthzBroker(t)
	acls := []auth.ACL{
		allowAnon(auth.ResourceGroup, "g", auth.OpRead),
		allowAnon(auth.ResourceGroup, "h", auth.OpRead),
		allowAnon(auth.ResourceTopic, "sa-1", auth.OpDescribe),
		allowAnon(auth.ResourceTopic, "__consumer_offsets", auth.OpDescribe),
	}
	createTopicsAs(t, b, acls, 2, "sa-1", "sa-2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b)
	sa1, _ := b.store.FSM().Topic("sa-1")

	// kgo answers a failed FindCoordinator as an error: retry while the
	// coordinator loads.
	retry := func(do func() (int16, error)) int16 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, err := do()
			var ke *kerr.Error
			if errors.As(err, &ke) {
				code, err = ke.Code, nil
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != kerr.CoordinatorLoadInProgress.Code && code != kerr.NotCoordinator.Code || time.Now().After(deadline) {
				return code
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hb := func(group string, topics ...string) *kmsg.ShareGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.GroupID, req.MemberID, req.SubscribedTopicNames = group, "member-1", topics
		resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
		resp.ErrorCode = retry(func() (int16, error) {
			r, err := req.RequestWith(ctx, cl)
			if err == nil {
				resp = r
				return r.ErrorCode, nil
			}
			return 0, err
		})
		return resp
	}
	if r := hb("other", "sa-1"); r.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("no READ on the group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := hb("g", "sa-1", "sa-2"); r.ErrorCode != kerr.TopicAuthorizationFailed.Code || r.ErrorMessage == nil || *r.ErrorMessage != "The following topics are not authorized: sa-2" {
		t.Fatalf("subscribing to a topic it may not describe: %v %v", kerr.ErrorForCode(r.ErrorCode), r.ErrorMessage)
	}
	r := hb("g", "sa-1")
	if r.ErrorCode != 0 || r.MemberEpoch != 1 || r.Assignment == nil || len(r.Assignment.TopicPartitions) != 1 ||
		r.Assignment.TopicPartitions[0].TopicID != sa1.ID || len(r.Assignment.TopicPartitions[0].Partitions) != 2 {
		t.Fatalf("join: %v %+v", kerr.ErrorForCode(r.ErrorCode), r)
	}

	describe := func() kmsg.ShareGroupDescribeResponseGroup {
		t.Helper()
		req := kmsg.NewPtrShareGroupDescribeRequest()
		req.GroupIDs = []string{"g"}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Groups) != 1 {
			t.Fatalf("ShareGroupDescribe: %v %v", resp, err)
		}
		return resp.Groups[0]
	}
	if d := describe(); d.ErrorCode != 0 || len(d.Members) != 1 || d.Members[0].Assignment.TopicPartitions[0].Topic != "sa-1" {
		t.Fatalf("describe: %v %+v", kerr.ErrorForCode(d.ErrorCode), d)
	}

	// Offsets: topic checks per partition (90, 91) and per topic (92).
	dreq := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	dreq.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: "g", Topics: []kmsg.DescribeShareGroupOffsetsRequestGroupTopic{{Topic: "sa-2", Partitions: []int32{0}}}}}
	if resp, err := dreq.RequestWith(ctx, cl); err != nil || resp.Groups[0].ErrorCode != 0 || resp.Groups[0].Topics[0].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("describe offsets of sa-2: %v %+v", err, resp)
	}
	areq := kmsg.NewPtrAlterShareGroupOffsetsRequest()
	areq.GroupID = "h"
	areq.Topics = []kmsg.AlterShareGroupOffsetsRequestTopic{{Topic: "sa-2", Partitions: []kmsg.AlterShareGroupOffsetsRequestTopicPartition{{Partition: 0}}}}
	if resp, err := areq.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("alter offsets of sa-2: %v %+v", err, resp)
	}
	xreq := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
	xreq.GroupID = "h"
	xreq.Topics = []kmsg.DeleteShareGroupOffsetsRequestTopic{{Topic: "sa-2"}}
	if resp, err := xreq.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("delete offsets without DELETE on h: %v %+v", err, resp)
	}
	setACLs(t, b, append(acls, allowAnon(auth.ResourceGroup, "h", auth.OpDelete))...)
	if resp, err := xreq.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 || resp.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("delete offsets of sa-2: %v %+v", err, resp)
	}

	// Without DESCRIBE on sa-1 the group is answered alone.
	setACLs(t, b, acls[0], acls[3])
	if d := describe(); d.ErrorCode != kerr.TopicAuthorizationFailed.Code || len(d.Members) != 0 || d.GroupState != "" {
		t.Fatalf("describe without DESCRIBE on sa-1: %v %+v", kerr.ErrorForCode(d.ErrorCode), d)
	}
}
