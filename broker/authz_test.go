package broker

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/metadata"
)

// startAuthzBroker starts a broker with the authorizer on. Its clients
// connect over PLAINTEXT and are User:ANONYMOUS.
func startAuthzBroker(t *testing.T, mutate ...func(*configs.Config)) *Broker {
	t.Helper()
	return startBroker(t, t.TempDir(), append([]func(*configs.Config){func(c *configs.Config) { c.Authorizer = true }}, mutate...)...)
}

const anon = "User:ANONYMOUS"

func acl(rt auth.ResourceType, name string, pt auth.PatternType, op auth.Operation, perm auth.Permission) auth.ACL {
	return auth.ACL{Principal: anon, Host: "*", ResourceType: rt, ResourceName: name, PatternType: pt, Operation: op, Permission: perm}
}

func allowAnon(rt auth.ResourceType, name string, op auth.Operation) auth.ACL {
	return acl(rt, name, auth.PatternLiteral, op, auth.PermAllow)
}

// setACLs replaces the broker's ACLs (through the metadata, as a super
// user's CreateAcls would).
func setACLs(t *testing.T, b *Broker, acls ...auth.ACL) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := auth.Filter{ResourceType: auth.ResourceAny, PatternType: auth.PatternAny, Operation: auth.OpAny, Permission: auth.PermAny}
	if err := b.store.Apply(ctx, metadata.DeleteACLs{Filters: []auth.Filter{all}}); err != nil {
		t.Fatal(err)
	}
	if len(acls) > 0 {
		if err := b.store.Apply(ctx, metadata.CreateACLs{ACLs: acls}); err != nil {
			t.Fatal(err)
		}
	}
}

// createTopicsAs creates topics with a temporary CREATE grant on the
// cluster, then restores acls.
func createTopicsAs(t *testing.T, b *Broker, acls []auth.ACL, partitions int32, topics ...string) {
	t.Helper()
	setACLs(t, b, allowAnon(auth.ResourceCluster, auth.ClusterName, auth.OpCreate))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b))
	resps, err := adm.CreateTopics(ctx, partitions, 1, nil, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resps {
		if r.Err != nil {
			t.Fatalf("create %s: %v", r.Topic, r.Err)
		}
	}
	setACLs(t, b, acls...)
}

// TestAuthzProduceConsume: a principal with READ but not WRITE on a topic
// gets TOPIC_AUTHORIZATION_FAILED on produce and still reads it; a
// default (idempotent) kgo producer works with WRITE on its topic alone
// (KIP-679: no IDEMPOTENT_WRITE on the cluster); a prefixed ACL grants a
// family of topics; a DENY beats an ALLOW of ALL; a consumer group needs
// READ on the group.
func TestAuthzProduceConsume(t *testing.T) {
	b := startAuthzBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []auth.ACL{
		allowAnon(auth.ResourceTopic, "rw", auth.OpWrite),
		allowAnon(auth.ResourceTopic, "rw", auth.OpRead),
		allowAnon(auth.ResourceTopic, "ro", auth.OpRead),
		acl(auth.ResourceTopic, "app-", auth.PatternPrefixed, auth.OpAll, auth.PermAllow),
		acl(auth.ResourceTopic, "app-secret", auth.PatternLiteral, auth.OpWrite, auth.PermDeny),
		allowAnon(auth.ResourceGroup, "g", auth.OpRead),
	}
	// ro gets its records while WRITE is granted on it.
	createTopicsAs(t, b, append(slices.Clone(base), allowAnon(auth.ResourceTopic, "ro", auth.OpWrite)), 1, "rw", "ro", "app-a", "app-b", "app-secret", "other")
	seed := newClient(t, b)
	for i := range 3 {
		if err := seed.ProduceSync(ctx, &kgo.Record{Topic: "ro", Value: []byte{byte('a' + i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	setACLs(t, b, base...)

	// The default producer is idempotent: InitProducerId passes with
	// WRITE on some topic alone.
	p := newClient(t, b, kgo.RecordRetries(2), kgo.ProduceRequestTimeout(5*time.Second))
	for _, topic := range []string{"rw", "app-a", "app-b"} {
		r := &kgo.Record{Topic: topic, Value: []byte("v-" + topic)}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		if r.Offset != 0 || r.ProducerID < 0 {
			t.Fatalf("produce to %s: offset %d, producer id %d", topic, r.Offset, r.ProducerID)
		}
	}
	for _, topic := range []string{"ro", "app-secret", "other"} {
		err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("produce to %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
	}

	// ro is still readable, as a group member of g.
	c := newClient(t, b, kgo.ConsumeTopics("ro"), kgo.ConsumerGroup("g"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 3 {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %v: %v", got, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if strings.Join(got, "") != "abc" {
		t.Fatalf("consumed %q", got)
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	adm := kadm.NewClient(newClient(t, b))
	offs, err := adm.FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("ro", 0); !ok || o.At != 3 || o.Err != nil {
		t.Fatalf("committed offset of ro/0: %+v %v", o, ok)
	}

	// A group without READ is refused.
	c2 := newClient(t, b, kgo.ConsumeTopics("ro"), kgo.ConsumerGroup("other-group"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := c2.PollFetches(ctx)
	var groupErr error
	fs.EachError(func(_ string, _ int32, err error) { groupErr = err })
	if !errors.Is(groupErr, kerr.GroupAuthorizationFailed) {
		t.Fatalf("consumer of a group without READ: %v, want GROUP_AUTHORIZATION_FAILED", groupErr)
	}
}

// TestAuthzMetadata: Metadata for all topics lists only the topics the
// principal may describe; naming one it may not answers
// TOPIC_AUTHORIZATION_FAILED without saying whether it exists; topic
// authorized operations are reported when asked.
func TestAuthzMetadata(t *testing.T) {
	b := startAuthzBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acls := []auth.ACL{
		allowAnon(auth.ResourceTopic, "seen-r", auth.OpRead),
		acl(auth.ResourceTopic, "seen-", auth.PatternPrefixed, auth.OpDescribe, auth.PermAllow),
		acl(auth.ResourceTopic, "seen-hidden", auth.PatternLiteral, auth.OpDescribe, auth.PermDeny),
	}
	createTopicsAs(t, b, acls, 1, "seen-r", "seen-d", "seen-hidden", "hidden")
	cl := newClient(t, b)
	br := cl.SeedBrokers()[0]

	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	resp, err := br.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ops := map[string]int32{}
	for _, mt := range resp.(*kmsg.MetadataResponse).Topics {
		names = append(names, *mt.Topic)
		ops[*mt.Topic] = mt.AuthorizedOperations
		if mt.ErrorCode != 0 {
			t.Errorf("topic %s: error %d", *mt.Topic, mt.ErrorCode)
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "seen-d,seen-r" {
		t.Fatalf("all-topics metadata lists %v, want seen-d, seen-r", names)
	}
	if want := int32(1<<auth.OpRead | 1<<auth.OpDescribe); ops["seen-r"] != want {
		t.Errorf("seen-r authorized operations %b, want %b", ops["seen-r"], want)
	}

	req = kmsg.NewPtrMetadataRequest()
	for _, n := range []string{"seen-r", "hidden", "seen-hidden", "no-such"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, rt)
	}
	resp, err = br.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, mt := range resp.(*kmsg.MetadataResponse).Topics {
		codes[*mt.Topic] = mt.ErrorCode
		if mt.ErrorCode == kerr.TopicAuthorizationFailed.Code && (len(mt.Partitions) != 0 || mt.TopicID != [16]byte{}) {
			t.Errorf("%s: an unauthorized topic's partitions or ID shown", *mt.Topic)
		}
	}
	want := map[string]int16{"seen-r": 0, "hidden": kerr.TopicAuthorizationFailed.Code, "seen-hidden": kerr.TopicAuthorizationFailed.Code, "no-such": kerr.TopicAuthorizationFailed.Code}
	for n, c := range want {
		if codes[n] != c {
			t.Errorf("metadata of %s: error %d, want %d", n, codes[n], c)
		}
	}

	// Auto-creation needs CREATE: DESCRIBE on the new name is not enough.
	setACLs(t, b, append(acls, acl(auth.ResourceTopic, "auto-", auth.PatternPrefixed, auth.OpDescribe, auth.PermAllow))...)
	req = kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("auto-x")
	req.Topics = append(req.Topics, rt)
	resp, err = br.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if mt := resp.(*kmsg.MetadataResponse).Topics; len(mt) != 1 || mt[0].ErrorCode != kerr.TopicAuthorizationFailed.Code || b.store.FSM().HasTopic("auto-x") {
		t.Fatalf("auto-create without CREATE: %+v", mt)
	}
}

// TestAuthzEveryAPI sends every registered API (but ApiVersions and SASL) as a
// principal without any ACL and checks Kafka's authorization error, so an
// API added to the registry without its check fails here.
func TestAuthzEveryAPI(t *testing.T) {
	b := startAuthzBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createTopicsAs(t, b, nil, 1, "t")
	br := newClient(t, b).SeedBrokers()[0]
	const (
		taf  = 29 // TOPIC_AUTHORIZATION_FAILED
		gaf  = 30 // GROUP_AUTHORIZATION_FAILED
		caf  = 31 // CLUSTER_AUTHORIZATION_FAILED
		tiaf = 53 // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
	)
	str := kmsg.StringPtr
	type tc struct {
		req   kmsg.Request
		codes func(kmsg.Response) []int16 // the codes the answer carries where a check fails
		want  int16                       // each of them; 0 with check for answers without one
		check func(kmsg.Response) error
	}
	cases := []tc{
		{req: func() kmsg.Request {
			r := kmsg.NewPtrProduceRequest()
			r.Acks, r.TimeoutMillis = -1, 5000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "t"
			rt.Partitions = []kmsg.ProduceRequestTopicPartition{{Partition: 0}}
			r.Topics = append(r.Topics, rt)
			return r
		}(), codes: func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode}
		}, want: taf},
		{req: func() kmsg.Request {
			r := kmsg.NewPtrFetchRequest()
			r.ReplicaID, r.MaxWaitMillis, r.MaxBytes, r.SessionEpoch = -1, 0, 1<<20, -1
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = "t"
			tt, _ := b.store.FSM().Topic("t")
			rt.TopicID = tt.ID // v13 names topics by ID
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 1 << 20
			rt.Partitions = append(rt.Partitions, rp)
			r.Topics = append(r.Topics, rt)
			return r
		}(), codes: func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode}
		}, want: taf},
		{req: func() kmsg.Request {
			r := kmsg.NewPtrListOffsetsRequest()
			r.ReplicaID = -1
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = "t"
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Timestamp = -1
			rt.Partitions = append(rt.Partitions, rp)
			r.Topics = append(r.Topics, rt)
			return r
		}(), codes: func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode}
		}, want: taf},
		{req: func() kmsg.Request {
			r := kmsg.NewPtrMetadataRequest()
			r.Topics = []kmsg.MetadataRequestTopic{{Topic: str("t")}}
			return r
		}(), codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.MetadataResponse).Topics[0].ErrorCode} }, want: taf},
		{req: &kmsg.OffsetCommitRequest{Group: "g", Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: gaf},
		{req: &kmsg.OffsetFetchRequest{Groups: []kmsg.OffsetFetchRequestGroup{{Group: "g"}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.OffsetFetchResponse).Groups[0].ErrorCode} }, want: gaf},
		{req: &kmsg.FindCoordinatorRequest{Version: 4, CoordinatorType: 0, CoordinatorKeys: []string{"g"}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode}
			}, want: gaf},
		{req: &kmsg.FindCoordinatorRequest{Version: 4, CoordinatorType: 1, CoordinatorKeys: []string{"tx"}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode}
			}, want: tiaf},
		{req: &kmsg.JoinGroupRequest{Group: "g", SessionTimeoutMillis: 10000, RebalanceTimeoutMillis: 10000, ProtocolType: "consumer", Protocols: []kmsg.JoinGroupRequestProtocol{{Name: "range"}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.JoinGroupResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.HeartbeatRequest{Group: "g", MemberID: "m"},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.HeartbeatResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.LeaveGroupRequest{Group: "g", MemberID: "m"},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.LeaveGroupResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.SyncGroupRequest{Group: "g", MemberID: "m"},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.SyncGroupResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.ShareFetchRequest{Version: 1, GroupID: str("g"), MemberID: str("m"), Topics: []kmsg.ShareFetchRequestTopic{{Partitions: []kmsg.ShareFetchRequestTopicPartition{{Partition: 0}}}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.ShareFetchResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.ShareAcknowledgeRequest{Version: 1, GroupID: str("g"), MemberID: str("m"), ShareSessionEpoch: 1},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.ShareAcknowledgeResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.ConsumerGroupHeartbeatRequest{Group: "g", MemberID: "m", RebalanceTimeoutMillis: 1000, SubscribedTopicNames: []string{"t"}, Topics: []kmsg.ConsumerGroupHeartbeatRequestTopic{}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.ConsumerGroupDescribeRequest{Groups: []string{"g"}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.ConsumerGroupDescribeResponse).Groups[0].ErrorCode}
			}, want: gaf},
		{req: &kmsg.ShareGroupHeartbeatRequest{GroupID: "g", MemberID: "m", SubscribedTopicNames: []string{"t"}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.ShareGroupHeartbeatResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.ShareGroupDescribeRequest{GroupIDs: []string{"g"}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.ShareGroupDescribeResponse).Groups[0].ErrorCode}
			}, want: gaf},
		{req: &kmsg.DescribeShareGroupOffsetsRequest{Groups: []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: "g", Topics: []kmsg.DescribeShareGroupOffsetsRequestGroupTopic{{Topic: "t", Partitions: []int32{0}}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.DescribeShareGroupOffsetsResponse).Groups[0].ErrorCode}
			}, want: gaf},
		{req: &kmsg.AlterShareGroupOffsetsRequest{GroupID: "g", Topics: []kmsg.AlterShareGroupOffsetsRequestTopic{{Topic: "t", Partitions: []kmsg.AlterShareGroupOffsetsRequestTopicPartition{{Partition: 0}}}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.AlterShareGroupOffsetsResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.DeleteShareGroupOffsetsRequest{GroupID: "g", Topics: []kmsg.DeleteShareGroupOffsetsRequestTopic{{Topic: "t"}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DeleteShareGroupOffsetsResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.DescribeGroupsRequest{Groups: []string{"g"}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DescribeGroupsResponse).Groups[0].ErrorCode} }, want: gaf},
		{req: kmsg.NewPtrListGroupsRequest(), check: func(r kmsg.Response) error {
			if lr := r.(*kmsg.ListGroupsResponse); lr.ErrorCode != 0 || len(lr.Groups) != 0 {
				return errors.New("groups listed")
			}
			return nil
		}},
		{req: &kmsg.CreateTopicsRequest{TimeoutMillis: 5000, Topics: []kmsg.CreateTopicsRequestTopic{{Topic: "new", NumPartitions: 1, ReplicationFactor: 1}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode} }, want: taf},
		{req: &kmsg.DeleteTopicsRequest{TimeoutMillis: 5000, TopicNames: []string{"t"}, Topics: []kmsg.DeleteTopicsRequestTopic{{Topic: str("t")}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode} }, want: taf},
		{req: &kmsg.DeleteRecordsRequest{TimeoutMillis: 5000, Topics: []kmsg.DeleteRecordsRequestTopic{{Topic: "t", Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Partition: 0, Offset: 0}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: taf},
		{req: &kmsg.InitProducerIDRequest{TransactionTimeoutMillis: 10000, ProducerID: -1, ProducerEpoch: -1},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.InitProducerIDResponse).ErrorCode} }, want: caf},
		{req: &kmsg.InitProducerIDRequest{TransactionalID: str("tx"), TransactionTimeoutMillis: 10000, ProducerID: -1, ProducerEpoch: -1},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.InitProducerIDResponse).ErrorCode} }, want: tiaf},
		{req: &kmsg.AddPartitionsToTxnRequest{TransactionalID: "tx", ProducerID: 1, Topics: []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "t", Partitions: []int32{0}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: tiaf},
		{req: &kmsg.AddOffsetsToTxnRequest{TransactionalID: "tx", ProducerID: 1, Group: "g"},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode} }, want: tiaf},
		{req: &kmsg.EndTxnRequest{TransactionalID: "tx", ProducerID: 1, Commit: true},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.EndTxnResponse).ErrorCode} }, want: tiaf},
		{req: &kmsg.WriteTxnMarkersRequest{Markers: []kmsg.WriteTxnMarkersRequestMarker{{ProducerID: 1, Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "t", Partitions: []int32{0}}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode}
			}, want: caf},
		{req: &kmsg.TxnOffsetCommitRequest{TransactionalID: "tx", Group: "g", ProducerID: 1, Topics: []kmsg.TxnOffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: tiaf},
		{req: &kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"tx"}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.DescribeTransactionsResponse).TransactionStates[0].ErrorCode}
			}, want: tiaf},
		{req: kmsg.NewPtrListTransactionsRequest(), check: func(r kmsg.Response) error {
			if lr := r.(*kmsg.ListTransactionsResponse); lr.ErrorCode != 0 || len(lr.TransactionStates) != 0 {
				return errors.New("transactions listed")
			}
			return nil
		}},
		{req: &kmsg.DescribeConfigsRequest{Resources: []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}, {ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: ""}}},
			codes: func(r kmsg.Response) []int16 {
				rs := r.(*kmsg.DescribeConfigsResponse).Resources
				return []int16{rs[0].ErrorCode, rs[1].ErrorCode - (caf - taf)} // the broker's is CLUSTER_
			}, want: taf},
		{req: &kmsg.DescribeLogDirsRequest{},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DescribeLogDirsResponse).ErrorCode} }, want: caf},
		{req: &kmsg.AlterConfigsRequest{Resources: []kmsg.AlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode} }, want: taf},
		{req: &kmsg.CreatePartitionsRequest{TimeoutMillis: 5000, Topics: []kmsg.CreatePartitionsRequestTopic{{Topic: "t", Count: 2}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode} }, want: taf},
		{req: &kmsg.IncrementalAlterConfigsRequest{Resources: []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode}
			}, want: taf},
		{req: &kmsg.ElectLeadersRequest{TimeoutMillis: 5000, Topics: []kmsg.ElectLeadersRequestTopic{{Topic: "t", Partitions: []int32{0}}}},
			codes: func(r kmsg.Response) []int16 {
				er := r.(*kmsg.ElectLeadersResponse)
				return []int16{er.ErrorCode, er.Topics[0].Partitions[0].ErrorCode}
			}, want: caf},
		{req: &kmsg.AlterPartitionAssignmentsRequest{TimeoutMillis: 5000, Topics: []kmsg.AlterPartitionAssignmentsRequestTopic{{Topic: "t", Partitions: []kmsg.AlterPartitionAssignmentsRequestTopicPartition{{Partition: 0, Replicas: []int32{1}}}}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.AlterPartitionAssignmentsResponse).ErrorCode} }, want: caf},
		{req: &kmsg.ListPartitionReassignmentsRequest{TimeoutMillis: 5000},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.ListPartitionReassignmentsResponse).ErrorCode} }, want: caf},
		{req: &kmsg.DescribeClientQuotasRequest{},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DescribeClientQuotasResponse).ErrorCode} }, want: caf},
		{req: &kmsg.AlterClientQuotasRequest{Entries: []kmsg.AlterClientQuotasRequestEntry{{Entity: []kmsg.AlterClientQuotasRequestEntryEntity{{Type: "client-id", Name: str("c")}}, Ops: []kmsg.AlterClientQuotasRequestEntryOp{{Key: "producer_byte_rate", Value: 1}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.AlterClientQuotasResponse).Entries[0].ErrorCode}
			}, want: caf},
		{req: &kmsg.DescribeUserSCRAMCredentialsRequest{},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.DescribeUserSCRAMCredentialsResponse).ErrorCode}
			}, want: caf},
		{req: &kmsg.AlterUserSCRAMCredentialsRequest{Deletions: []kmsg.AlterUserSCRAMCredentialsRequestDeletion{{Name: "u", Mechanism: 1}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.AlterUserSCRAMCredentialsResponse).Results[0].ErrorCode}
			}, want: caf},
		{req: &kmsg.DescribeClusterRequest{IncludeClusterAuthorizedOperations: true}, check: func(r kmsg.Response) error {
			if dr := r.(*kmsg.DescribeClusterResponse); dr.ErrorCode != 0 || dr.ClusterAuthorizedOperations != 0 || len(dr.Brokers) != 1 {
				return errors.New("unexpected answer")
			}
			return nil
		}},
		{req: &kmsg.DeleteGroupsRequest{Groups: []string{"g"}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode} }, want: gaf},
		{req: &kmsg.OffsetDeleteRequest{Group: "g", Topics: []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.OffsetDeleteResponse).ErrorCode} }, want: gaf},
		{req: &kmsg.OffsetForLeaderEpochRequest{ReplicaID: -1, Topics: []kmsg.OffsetForLeaderEpochRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetForLeaderEpochRequestTopicPartition{{Partition: 0, CurrentLeaderEpoch: -1, LeaderEpoch: 0}}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: taf},
		{req: &kmsg.DescribeProducersRequest{Topics: []kmsg.DescribeProducersRequestTopic{{Topic: "t", Partitions: []int32{0}}}},
			codes: func(r kmsg.Response) []int16 {
				return []int16{r.(*kmsg.DescribeProducersResponse).Topics[0].Partitions[0].ErrorCode}
			}, want: taf},
		{req: &kmsg.DescribeACLsRequest{ResourceType: kmsg.ACLResourceTypeAny, ResourcePatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, PermissionType: kmsg.ACLPermissionTypeAny},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DescribeACLsResponse).ErrorCode} }, want: caf},
		{req: &kmsg.CreateACLsRequest{Creations: []kmsg.CreateACLsRequestCreation{{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "t", ResourcePatternType: kmsg.ACLResourcePatternTypeLiteral, Principal: anon, Host: "*", Operation: kmsg.ACLOperationAll, PermissionType: kmsg.ACLPermissionTypeAllow}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.CreateACLsResponse).Results[0].ErrorCode} }, want: caf},
		{req: &kmsg.DeleteACLsRequest{Filters: []kmsg.DeleteACLsRequestFilter{{ResourceType: kmsg.ACLResourceTypeAny, ResourcePatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, PermissionType: kmsg.ACLPermissionTypeAny}}},
			codes: func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.DeleteACLsResponse).Results[0].ErrorCode} }, want: caf},
	}
	// ApiVersions and the SASL exchange come before a principal exists:
	// no ACL applies to them, as in Kafka. An Envelope closes a client
	// connection whatever the ACLs (TestEnvelopeNodeConnectionsOnly).
	covered := map[kmsg.Key]bool{kmsg.ApiVersions: true, kmsg.SASLHandshake: true, kmsg.SASLAuthenticate: true, kmsg.Envelope: true}
	for _, c := range cases {
		key := kmsg.Key(c.req.Key())
		covered[key] = true
		t.Run(key.Name(), func(t *testing.T) {
			resp, err := br.Request(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				if err := c.check(resp); err != nil {
					t.Fatalf("%v: %+v", err, resp)
				}
				return
			}
			for i, code := range c.codes(resp) {
				if code != c.want {
					t.Errorf("code %d: %d, want %d (%s)", i, code, c.want, kerr.ErrorForCode(c.want))
				}
			}
		})
	}
	for _, a := range registry() {
		if !covered[a.key] {
			t.Errorf("API %s is registered but not checked here", a.key.Name())
		}
	}
	// Nothing changed: no topic created or deleted, no ACL added.
	if !b.store.FSM().HasTopic("t") || b.store.FSM().HasTopic("new") || len(b.store.FSM().ACLs()) != 0 {
		t.Fatal("a refused request changed the metadata")
	}
}

// TestACLAPIs: CreateAcls, DescribeAcls and DeleteAcls through kadm as a
// super user (ANY/MATCH filters, LITERAL and PREFIXED), per-entry
// INVALID_REQUEST for an unknown resource type, pattern, operation or
// permission (raw codes kadm cannot send), SECURITY_DISABLED without the
// authorizer, and the created ACLs in force at once.
func TestACLAPIs(t *testing.T) {
	b := startAuthzBroker(t, func(c *configs.Config) { c.SuperUsers = "User:admin; " + anon })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)

	alice := kadm.NewACLs().Allow("User:alice").AllowHosts().Topics("orders").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead, kadm.OpDescribe)
	bob := kadm.NewACLs().Deny("User:bob").DenyHosts("10.0.0.1").Topics("ord").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpWrite)
	for _, a := range []*kadm.ACLBuilder{alice, bob} {
		res, err := adm.CreateACLs(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("create %+v: %v", r, r.Err)
			}
		}
	}
	if n := len(b.store.FSM().ACLs()); n != 3 {
		t.Fatalf("%d ACLs stored, want 3", n)
	}

	// MATCH for topic orders: alice's literal and bob's prefix.
	desc, err := adm.DescribeACLs(ctx, kadm.NewACLs().Topics("orders").ResourcePatternType(kadm.ACLPatternMatch).Operations(kadm.OpAny).
		Allow().AllowHosts().Deny().DenyHosts())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range desc {
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		for _, a := range d.Described {
			got = append(got, a.Principal+" "+a.Type.String()+":"+a.Name+":"+a.Pattern.String()+" "+a.Operation.String()+" "+a.Permission.String()+" "+a.Host)
		}
	}
	sort.Strings(got)
	want := []string{
		"User:alice TOPIC:orders:LITERAL DESCRIBE ALLOW *",
		"User:alice TOPIC:orders:LITERAL READ ALLOW *",
		"User:bob TOPIC:ord:PREFIXED WRITE DENY 10.0.0.1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("described:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The ACLs are in force: a non-super principal would be checked
	// against them.
	if !b.authz.Authorize(auth.User("alice"), "1.2.3.4", auth.OpRead, auth.ResourceTopic, "orders") ||
		b.authz.Authorize(auth.User("bob"), "10.0.0.1", auth.OpWrite, auth.ResourceTopic, "orders") {
		t.Fatal("created ACLs are not in force")
	}

	// Delete alice's READ only.
	del, err := adm.DeleteACLs(ctx, kadm.NewACLs().Allow("User:alice").AllowHosts().Topics("orders").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead))
	if err != nil {
		t.Fatal(err)
	}
	if len(del) != 1 || del[0].Err != nil || len(del[0].Deleted) != 1 || del[0].Deleted[0].Operation != kadm.OpRead {
		t.Fatalf("delete: %+v", del)
	}
	if n := len(b.store.FSM().ACLs()); n != 2 {
		t.Fatalf("%d ACLs after the delete, want 2", n)
	}

	// Unknown fields, per entry.
	br := cl.SeedBrokers()[0]
	good := kmsg.CreateACLsRequestCreation{ResourceType: kmsg.ACLResourceTypeGroup, ResourceName: "g", ResourcePatternType: kmsg.ACLResourcePatternTypeLiteral, Principal: "User:carol", Host: "*", Operation: kmsg.ACLOperationRead, PermissionType: kmsg.ACLPermissionTypeAllow}
	bad := func(edit func(*kmsg.CreateACLsRequestCreation)) kmsg.CreateACLsRequestCreation {
		c := good
		edit(&c)
		return c
	}
	creq := &kmsg.CreateACLsRequest{Creations: []kmsg.CreateACLsRequestCreation{
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.ResourceType = 99 }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.ResourceType = kmsg.ACLResourceTypeAny }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.ResourcePatternType = kmsg.ACLResourcePatternTypeMatch }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.ResourcePatternType = 42 }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.Operation = kmsg.ACLOperationAny }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.Operation = -3 }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.PermissionType = kmsg.ACLPermissionTypeUnknown }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.Principal = "carol" }),
		bad(func(c *kmsg.CreateACLsRequestCreation) { c.ResourceName = "" }),
		bad(func(c *kmsg.CreateACLsRequestCreation) {
			c.ResourceType = kmsg.ACLResourceTypeCluster
			c.ResourceName = "my-cluster"
		}),
		good,
	}}
	r, err := br.Request(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	results := r.(*kmsg.CreateACLsResponse).Results
	if len(results) != len(creq.Creations) {
		t.Fatalf("%d results for %d creations", len(results), len(creq.Creations))
	}
	for i, res := range results[:len(results)-1] {
		if res.ErrorCode != kerr.InvalidRequest.Code || res.ErrorMessage == nil {
			t.Errorf("creation %d: error %d %v, want INVALID_REQUEST with a message", i, res.ErrorCode, res.ErrorMessage)
		}
	}
	if last := results[len(results)-1]; last.ErrorCode != 0 {
		t.Errorf("the valid creation: error %d", last.ErrorCode)
	}
	if n := len(b.store.FSM().ACLs()); n != 3 {
		t.Fatalf("%d ACLs after the mixed creation, want 3", n)
	}
	dreq := &kmsg.DeleteACLsRequest{Filters: []kmsg.DeleteACLsRequestFilter{
		{ResourceType: kmsg.ACLResourceTypeUnknown, ResourcePatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, PermissionType: kmsg.ACLPermissionTypeAny},
		{ResourceType: kmsg.ACLResourceTypeAny, ResourcePatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, PermissionType: 17},
	}}
	r, err = br.Request(ctx, dreq)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range r.(*kmsg.DeleteACLsResponse).Results {
		if res.ErrorCode != kerr.InvalidRequest.Code || len(res.MatchingACLs) != 0 {
			t.Errorf("filter %d: error %d, %d matches", i, res.ErrorCode, len(res.MatchingACLs))
		}
	}
	r, err = br.Request(ctx, &kmsg.DescribeACLsRequest{ResourceType: kmsg.ACLResourceTypeAny, ResourcePatternType: kmsg.ACLResourcePatternTypeUnknown, Operation: kmsg.ACLOperationAny, PermissionType: kmsg.ACLPermissionTypeAny})
	if err != nil {
		t.Fatal(err)
	}
	if code := r.(*kmsg.DescribeACLsResponse).ErrorCode; code != kerr.InvalidRequest.Code {
		t.Errorf("describe with an unknown pattern type: error %d", code)
	}
	if n := len(b.store.FSM().ACLs()); n != 3 {
		t.Fatalf("%d ACLs after invalid filters, want 3", n)
	}

	// Without the authorizer the ACL APIs answer SECURITY_DISABLED.
	plain := startBroker(t, t.TempDir())
	padm := kadm.NewClient(newClient(t, plain))
	res, err := padm.CreateACLs(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !errors.Is(r.Err, kerr.SecurityDisabled) {
			t.Fatalf("create without the authorizer: %v, want SECURITY_DISABLED", r.Err)
		}
	}
	desc, err = padm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny).Allow().AllowHosts())
	if err != nil || len(desc) != 1 || !errors.Is(desc[0].Err, kerr.SecurityDisabled) {
		t.Fatalf("describe without the authorizer: %+v %v, want SECURITY_DISABLED", desc, err)
	}
}

// TestAuthzSASLUsers: SASL users (User:<name>) against ACLs a super user
// made with kadm over SASL: alice writes and reads a prefixed family with
// the default idempotent producer; bob, with READ on one topic and a
// group, reads alice's records and is refused produce (his idempotent
// producer gets no producer id: KIP-679); Metadata for all
// topics shows each only what it may describe; a DENY for alice then
// beats her prefixed ALLOW; an unauthenticated PLAINTEXT client
// (User:ANONYMOUS) has no ACL and sees nothing.
func TestAuthzSASLUsers(t *testing.T) {
	b := startSASLBroker(t, func(c *configs.Config) {
		c.Authorizer = true
		c.SuperUsers = "User:admin"
	})
	for _, u := range []string{"admin", "alice", "bob"} {
		addUser(t, b.Broker, u, u+"-secret")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user := func(name string, opts ...kgo.Opt) *kgo.Client {
		return saslClient(t, b.addr, scram.Auth{User: name, Pass: name + "-secret"}.AsSha512Mechanism(), opts...)
	}
	admin := user("admin")
	adm := kadm.NewClient(admin)
	for _, topic := range []string{"a-data", "b-data"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("admin creates %s: %v", topic, err)
		}
	}
	create := func(builders ...*kadm.ACLBuilder) {
		t.Helper()
		for _, bl := range builders {
			res, err := adm.CreateACLs(ctx, bl)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil {
					t.Fatalf("create ACL %+v: %v", r, r.Err)
				}
			}
		}
	}
	create(
		kadm.NewACLs().Allow("User:alice").Topics("a-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpWrite, kadm.OpRead),
		kadm.NewACLs().Allow("User:bob").Topics("a-data").Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:bob").Groups("bob-g").Operations(kadm.OpRead),
	)

	alice := user("alice")
	for i := range 3 {
		r := &kgo.Record{Topic: "a-data", Value: []byte(fmt.Sprint(i))}
		if err := alice.ProduceSync(ctx, r).FirstErr(); err != nil || r.Offset != int64(i) {
			t.Fatalf("alice produces to a-data: offset %d, %v", r.Offset, err)
		}
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "b-data", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice produces to b-data: %v", err)
	}

	bob := user("bob", kgo.ConsumeTopics("a-data"), kgo.ConsumerGroup("bob-g"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	// Without WRITE on any topic bob's idempotent producer gets no
	// producer id (KIP-679); a plain one is refused per topic.
	if err := bob.ProduceSync(ctx, &kgo.Record{Topic: "a-data", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob's idempotent producer: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if err := user("bob", kgo.DisableIdempotentWrite()).ProduceSync(ctx, &kgo.Record{Topic: "a-data", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob produces to a-data: %v", err)
	}
	var got []string
	for len(got) < 3 {
		fs := bob.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("bob consumed %v: %v", got, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("bob fetches %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Value)) })
	}
	if strings.Join(got, ",") != "0:0,1:1,2:2" {
		t.Fatalf("bob read %v", got)
	}

	listed := func(cl *kgo.Client) string {
		t.Helper()
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mt := range resp.Topics {
			names = append(names, *mt.Topic)
		}
		sort.Strings(names)
		return strings.Join(names, ",")
	}
	if l := listed(bob); l != "a-data" {
		t.Errorf("bob's all-topics metadata: %q, want a-data", l)
	}
	if l := listed(alice); l != "a-data" {
		t.Errorf("alice's all-topics metadata: %q, want a-data", l)
	}
	if l := listed(admin); !strings.Contains(l, "a-data,b-data") {
		t.Errorf("the super user's all-topics metadata: %q", l)
	}
	anon := newClient(t, b.Broker)
	resp, err := anon.SeedBrokers()[0].Request(ctx, kmsg.NewPtrMetadataRequest())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.(*kmsg.MetadataResponse).Topics); n != 0 {
		t.Errorf("User:ANONYMOUS on PLAINTEXT sees %d topics", n)
	}

	// DENY beats ALLOW: alice may no longer read a-data, still write it.
	create(kadm.NewACLs().Deny("User:alice").Topics("a-data").Operations(kadm.OpRead))
	c := user("alice", kgo.ConsumeTopics("a-data"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var fetchErr error
	for fetchErr == nil && ctx.Err() == nil {
		c.PollFetches(ctx).EachError(func(_ string, _ int32, err error) { fetchErr = err })
	}
	if !errors.Is(fetchErr, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice reads a-data after the DENY: %v", fetchErr)
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "a-data", Value: []byte("3")}).FirstErr(); err != nil {
		t.Fatalf("alice writes a-data after a DENY of READ: %v", err)
	}
}

// TestACLAPIVersions: CreateAcls, DescribeAcls and DeleteAcls at every
// version 0-3 over a raw connection. v0 has no pattern type: its creation
// is LITERAL, its filters LITERAL, and a v0 describe lists no PREFIXED
// ACL (which it could not represent).
func TestACLAPIVersions(t *testing.T) {
	b := startAuthzBroker(t, func(c *configs.Config) { c.SuperUsers = anon })
	r := dialRaw(t, b.KafkaAddr())
	for v := int16(0); v <= 3; v++ {
		creq := kmsg.NewPtrCreateACLsRequest()
		creq.Version = v
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName = kmsg.ACLResourceTypeTopic, fmt.Sprintf("v%d-", v)
		c.ResourcePatternType = kmsg.ACLResourcePatternTypePrefixed // ignored at v0
		c.Principal, c.Host = "User:u", "*"
		c.Operation, c.PermissionType = kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
		creq.Creations = append(creq.Creations, c)
		cresp := kmsg.NewPtrCreateACLsResponse()
		r.roundTrip(creq, cresp)
		if len(cresp.Results) != 1 || cresp.Results[0].ErrorCode != 0 {
			t.Fatalf("CreateAcls v%d: %+v", v, cresp.Results)
		}
	}
	want := map[string]auth.PatternType{"v0-": auth.PatternLiteral, "v1-": auth.PatternPrefixed, "v2-": auth.PatternPrefixed, "v3-": auth.PatternPrefixed}
	for _, a := range b.store.FSM().ACLs() {
		if want[a.ResourceName] != a.PatternType {
			t.Errorf("%s stored %s, want %s", a.ResourceName, a.PatternType, want[a.ResourceName])
		}
		delete(want, a.ResourceName)
	}
	if len(want) != 0 {
		t.Fatalf("not stored: %v", want)
	}
	for v := int16(0); v <= 3; v++ {
		dreq := kmsg.NewPtrDescribeACLsRequest()
		dreq.Version = v
		dreq.ResourceType, dreq.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
		dreq.Operation, dreq.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		dresp := kmsg.NewPtrDescribeACLsResponse()
		r.roundTrip(dreq, dresp)
		var names []string
		for _, res := range dresp.Resources {
			names = append(names, res.ResourceName)
		}
		wantNames := "v0-,v1-,v2-,v3-"
		if v == 0 {
			wantNames = "v0-"
		}
		if dresp.ErrorCode != 0 || strings.Join(names, ",") != wantNames {
			t.Errorf("DescribeAcls v%d: error %d, resources %v, want %s", v, dresp.ErrorCode, names, wantNames)
		}
	}
	for v := int16(3); v >= 0; v-- {
		name := fmt.Sprintf("v%d-", v)
		dreq := kmsg.NewPtrDeleteACLsRequest()
		dreq.Version = v
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourceName = kmsg.ACLResourceTypeTopic, &name
		f.ResourcePatternType = kmsg.ACLResourcePatternTypeAny // LITERAL at v0
		f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		dreq.Filters = append(dreq.Filters, f)
		dresp := kmsg.NewPtrDeleteACLsResponse()
		r.roundTrip(dreq, dresp)
		if len(dresp.Results) != 1 || dresp.Results[0].ErrorCode != 0 || len(dresp.Results[0].MatchingACLs) != 1 || dresp.Results[0].MatchingACLs[0].ResourceName != name {
			t.Fatalf("DeleteAcls v%d: %+v", v, dresp.Results)
		}
	}
	if n := len(b.store.FSM().ACLs()); n != 0 {
		t.Fatalf("%d ACLs left", n)
	}
}

// TestAuthzTransactions: a consume-transform-produce session (kgo
// GroupTransactSession) runs with exactly Kafka's grants: WRITE on its
// transactional id, WRITE on the output topic, READ on the input topic
// and the group (InitProducerId, FindCoordinator, AddPartitionsToTxn,
// AddOffsetsToTxn, TxnOffsetCommit, EndTxn, the transactional Produce
// and the group's requests all pass); the output is committed exactly
// once. A transactional producer of another id is refused
// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
func TestAuthzTransactions(t *testing.T) {
	b := startAuthzBroker(t, func(c *configs.Config) { c.Groups.InitialRebalanceDelay = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	grants := []auth.ACL{
		allowAnon(auth.ResourceTransactionalID, "tx", auth.OpWrite),
		allowAnon(auth.ResourceTopic, "in", auth.OpRead),
		allowAnon(auth.ResourceTopic, "out", auth.OpWrite),
		allowAnon(auth.ResourceTopic, "out", auth.OpRead), // the check below reads it
		allowAnon(auth.ResourceGroup, "g", auth.OpRead),
	}
	createTopicsAs(t, b, append(slices.Clone(grants), allowAnon(auth.ResourceTopic, "in", auth.OpWrite)), 1, "in", "out")
	seed := newClient(t, b)
	for i := range 10 {
		if err := seed.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	setACLs(t, b, grants...)

	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b.KafkaAddr()), kgo.TransactionalID("tx"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	copied := 0
	for copied < 10 {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("copied %d: %v", copied, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, &kgo.Record{Topic: "out", Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		})
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil || !committed {
			t.Fatalf("end: committed %v, %v", committed, err)
		}
		copied += fs.NumRecords()
	}
	got := consumeN(t, ctx, b, "out", 10, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var vals []string
	for _, r := range got {
		vals = append(vals, string(r.Value))
	}
	if strings.Join(vals, ",") != "0,1,2,3,4,5,6,7,8,9" {
		t.Fatalf("out holds %v", vals)
	}
	offs, err := kadm.NewClient(newClient(t, b)).FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("in", 0); !ok || o.At != 10 {
		t.Fatalf("group g's offset of in/0: %+v", o)
	}

	other, err := kgo.NewClient(kgo.SeedBrokers(b.KafkaAddr()), kgo.TransactionalID("other"), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// kgo asks for its producer id at BeginTransaction (or else at the
	// first produce).
	if err = other.BeginTransaction(); err == nil {
		err = other.ProduceSync(ctx, &kgo.Record{Topic: "out", Value: []byte("x")}).FirstErr()
	}
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Fatalf("producer of transactional id other: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err)
	}
}

// TestAuthzSSLPrincipal: on an SSL listener with client certificates the
// principal is User:<subject in RFC 2253 form>; an ACL naming it applies
// (carol writes her topic), another certificate's subject does not (dave
// is refused), and TLS without a client certificate is User:ANONYMOUS.
func TestAuthzSSLPrincipal(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, t.TempDir(), func(c *configs.Config) {
		c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"
		c.TLS.ClientAuth = "requested"
		c.Authorizer = true
		pki.configure(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	carolSubject := "User:CN=carol,OU=eng"
	createTopicsAs(t, b, []auth.ACL{
		{Principal: carolSubject, Host: "*", ResourceType: auth.ResourceTopic, ResourceName: "carol-t", PatternType: auth.PatternLiteral, Operation: auth.OpWrite, Permission: auth.PermAllow},
		allowAnon(auth.ResourceTopic, "anon-t", auth.OpWrite),
	}, 1, "carol-t", "anon-t")
	ssl := b.ListenerAddr("SSL")
	client := func(subject *pkix.Name) *kgo.Client {
		return newClient(t, b, kgo.SeedBrokers(ssl), kgo.DialTLSConfig(pki.clientTLS(t, subject)), kgo.RecordRetries(2))
	}
	carol := client(&pkix.Name{CommonName: "carol", OrganizationalUnit: []string{"eng"}})
	if err := carol.ProduceSync(ctx, &kgo.Record{Topic: "carol-t", Value: []byte("c")}).FirstErr(); err != nil {
		t.Fatalf("carol produces to carol-t: %v", err)
	}
	if err := carol.ProduceSync(ctx, &kgo.Record{Topic: "anon-t", Value: []byte("c")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("carol produces to anon-t: %v", err)
	}
	dave := client(&pkix.Name{CommonName: "dave", OrganizationalUnit: []string{"eng"}})
	// dave may not even describe carol-t: its metadata is refused.
	if err := dave.ProduceSync(ctx, &kgo.Record{Topic: "carol-t", Value: []byte("d")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("dave produces to carol-t: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	anon := client(nil)
	if err := anon.ProduceSync(ctx, &kgo.Record{Topic: "anon-t", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatalf("a client without a certificate (ANONYMOUS) produces to anon-t: %v", err)
	}
}
