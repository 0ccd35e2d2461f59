package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleFunc serves one decoded request. It runs on the connection's read
// goroutine, in request order. It returns either a response, or a deferred
// function that the connection runs on its own goroutine to build the
// response later, or neither when no response is sent (acks=0 produce).
type handleFunc func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response)

// api is one Kafka API as this broker serves it.
type api struct {
	key      kmsg.Key
	min, max int16
	handle   handleFunc
}

// registry lists every supported API. It drives dispatch and ApiVersions.
func registry() []api {
	return []api{
		apiProduce(),
		apiFetch(),
		apiListOffsets(),
		apiMetadata(),
		apiFindCoordinator(),
		apiApiVersions(),
		apiSASLHandshake(),
		apiSASLAuthenticate(),
		apiDescribeUserSCRAMCredentials(),
		apiAlterUserSCRAMCredentials(),
		apiCreateTopics(),
		apiDeleteTopics(),
		apiDeleteRecords(),
		apiInitProducerID(),
		apiAddPartitionsToTxn(),
		apiAddOffsetsToTxn(),
		apiEndTxn(),
		apiWriteTxnMarkers(),
		apiDescribeTransactions(),
		apiListTransactions(),
		apiDescribeACLs(),
		apiCreateACLs(),
		apiDeleteACLs(),
		apiDescribeConfigs(),
		apiDescribeLogDirs(),
		apiAlterConfigs(),
		apiCreatePartitions(),
		apiIncrementalAlterConfigs(),
		apiElectLeaders(),
		apiAlterPartitionReassignments(),
		apiListPartitionReassignments(),
		apiDescribeClientQuotas(),
		apiAlterClientQuotas(),
		apiDescribeCluster(),
		apiOffsetCommit(),
		apiOffsetFetch(),
		apiTxnOffsetCommit(),
		apiJoinGroup(),
		apiHeartbeat(),
		apiLeaveGroup(),
		apiSyncGroup(),
		apiDescribeGroups(),
		apiListGroups(),
		apiDeleteGroups(),
		apiConsumerGroupHeartbeat(),
		apiConsumerGroupDescribe(),
		apiShareGroupHeartbeat(),
		apiShareGroupDescribe(),
		apiDescribeShareGroupOffsets(),
		apiAlterShareGroupOffsets(),
		apiDeleteShareGroupOffsets(),
		apiOffsetDelete(),
		apiOffsetForLeaderEpoch(),
		apiDescribeProducers(),
		apiEnvelope(),
		apiShareFetch(),
		apiShareAcknowledge(),
	}
}

// apiTable indexes the registry by key.
type apiTable map[int16]api

func newAPITable() apiTable {
	t := apiTable{}
	for _, a := range registry() {
		if a.max > kmsg.RequestForKey(int16(a.key)).MaxVersion() {
			panic("broker: api " + a.key.Name() + " registered above what kmsg encodes")
		}
		t[int16(a.key)] = a
	}
	return t
}
