package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// Authorization (docs/security.md, "ACLs"): with the authorizer on, every
// handler asks rc.allowed for the operations Kafka's table of operations
// per API names, on the node that received the client's request.
// Connections of the internal listener are node traffic and allowed
// everything: what a node forwards (in an Envelope, 58_envelope.go) was
// authorized where it was received.

// newAuthorizer builds the authorizer from the configuration, or nil when
// it is off (everything is allowed).
func (b *Broker) newAuthorizer() (*auth.Authorizer, error) {
	if !b.cfg.Authorizer {
		return nil, nil
	}
	supers, err := auth.ParsePrincipals(b.cfg.SuperUsers)
	if err != nil {
		return nil, fmt.Errorf("broker: super-users: %w", err)
	}
	return auth.NewAuthorizer(supers, b.cfg.AllowEveryoneIfNoACLFound, func() *auth.ACLSet { return b.store.FSM().ACLSet() }), nil
}

// allowed reports whether the request's principal may perform op on the
// resource of type rt named name.
func (rc *request) allowed(op auth.Operation, rt auth.ResourceType, name string) bool {
	c := rc.conn
	if c.b.authz == nil || c.node {
		return true
	}
	return c.b.authz.Authorize(rc.principal(), rc.host(), op, rt, name)
}

// allowedCluster is allowed on the CLUSTER resource.
func (rc *request) allowedCluster(op auth.Operation) bool {
	return rc.allowed(op, auth.ResourceCluster, auth.ClusterName)
}

// allowedAny reports whether the principal may perform op on some
// resource of type rt (Kafka's authorizeByResourceType, KIP-679).
func (rc *request) allowedAny(op auth.Operation, rt auth.ResourceType) bool {
	c := rc.conn
	if c.b.authz == nil || c.node {
		return true
	}
	return c.b.authz.AuthorizeAny(rc.principal(), rc.host(), op, rt)
}

// supportedOps are the operations Kafka reports in authorized-operations
// fields per resource type (AclEntry.supportedOperations).
var supportedOps = map[auth.ResourceType][]auth.Operation{
	auth.ResourceTopic:           {auth.OpRead, auth.OpWrite, auth.OpCreate, auth.OpDescribe, auth.OpDelete, auth.OpAlter, auth.OpDescribeConfigs, auth.OpAlterConfigs},
	auth.ResourceGroup:           {auth.OpRead, auth.OpDescribe, auth.OpDelete, auth.OpDescribeConfigs, auth.OpAlterConfigs},
	auth.ResourceCluster:         {auth.OpCreate, auth.OpClusterAction, auth.OpDescribeConfigs, auth.OpAlterConfigs, auth.OpIdempotentWrite, auth.OpAlter, auth.OpDescribe},
	auth.ResourceTransactionalID: {auth.OpDescribe, auth.OpWrite},
}

// authorizedOps is the bit field of the operations the principal may
// perform on a resource (bit n for the operation of code n), as Metadata,
// DescribeGroups and DescribeCluster answer when asked.
func (rc *request) authorizedOps(rt auth.ResourceType, name string) int32 {
	var bits int32
	for _, op := range supportedOps[rt] {
		if rc.allowed(op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}

// topicDenied is the error code for a topic the principal may not
// perform op on, or 0.
func (rc *request) topicDenied(op auth.Operation, topic string) int16 {
	if rc.allowed(op, auth.ResourceTopic, topic) {
		return 0
	}
	return kerr.TopicAuthorizationFailed.Code
}

// groupDenied is the error code for a group the principal may not
// perform op on, or 0.
func (rc *request) groupDenied(op auth.Operation, group string) int16 {
	if rc.allowed(op, auth.ResourceGroup, group) {
		return 0
	}
	return kerr.GroupAuthorizationFailed.Code
}

// txnDenied is the error code for a transactional id the principal may
// not perform op on, or 0.
func (rc *request) txnDenied(op auth.Operation, id string) int16 {
	if rc.allowed(op, auth.ResourceTransactionalID, id) {
		return 0
	}
	return kerr.TransactionalIDAuthorizationFailed.Code
}

// clusterDenied is the error code when the principal may not perform op
// on the cluster, or 0.
func (rc *request) clusterDenied(op auth.Operation) int16 {
	if rc.allowedCluster(op) {
		return 0
	}
	return kerr.ClusterAuthorizationFailed.Code
}

// configDenied is the error code when the principal may not perform op
// (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config resource, or 0: a
// topic's needs it on the topic, a broker's (and a broker logger's) on
// the cluster, a group's on the group, as Kafka checks them.
func (rc *request) configDenied(op auth.Operation, typ kmsg.ConfigResourceType, name string) int16 {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		return rc.topicDenied(op, name)
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger, kmsg.ConfigResourceTypeClientMetrics:
		return rc.clusterDenied(op)
	case kmsg.ConfigResourceTypeGroupConfig:
		return rc.groupDenied(op, name)
	}
	return 0
}

// aclAPIRefusal is the answer of the ACL APIs to a request they refuse
// whole: SECURITY_DISABLED without the authorizer (as Kafka), or the
// code of op on the cluster denied; (0, nil) when it may go on.
func (rc *request) aclAPIRefusal(op auth.Operation) (int16, *string) {
	if rc.conn.b.authz == nil {
		return kerr.SecurityDisabled.Code, kmsg.StringPtr("no authorizer is configured on the broker")
	}
	return rc.clusterDenied(op), nil
}
