package auth

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Kafka's ACL model (AclBinding, AclBindingFilter) and its authorizer's
// matching rules (StandardAuthorizer). The enums carry Kafka's wire codes
// and names; docs/security.md has the rules in prose.

// ResourceType is what an ACL protects (Kafka's ResourceType).
type ResourceType int8

// Resource types with Kafka's codes. Unknown and Any appear only in
// filters, never in an ACL.
const (
	ResourceUnknown         ResourceType = 0
	ResourceAny             ResourceType = 1
	ResourceTopic           ResourceType = 2
	ResourceGroup           ResourceType = 3
	ResourceCluster         ResourceType = 4
	ResourceTransactionalID ResourceType = 5
	ResourceDelegationToken ResourceType = 6
	ResourceUser            ResourceType = 7
)

// ClusterName is the only name of the CLUSTER resource.
const ClusterName = "kafka-cluster"

// Wildcard is the resource name, host and principal name matching any.
const Wildcard = "*"

// WildcardPrincipal matches every principal.
const WildcardPrincipal = "User:*"

// PatternType says how an ACL's resource name matches (Kafka's
// PatternType). Any and Match appear only in filters.
type PatternType int8

// Pattern types with Kafka's codes.
const (
	PatternUnknown  PatternType = 0
	PatternAny      PatternType = 1
	PatternMatch    PatternType = 2
	PatternLiteral  PatternType = 3
	PatternPrefixed PatternType = 4
)

// Operation is what an ACL allows or denies (Kafka's AclOperation).
type Operation int8

// Operations with Kafka's codes. Unknown and Any appear only in filters.
const (
	OpUnknown         Operation = 0
	OpAny             Operation = 1
	OpAll             Operation = 2
	OpRead            Operation = 3
	OpWrite           Operation = 4
	OpCreate          Operation = 5
	OpDelete          Operation = 6
	OpAlter           Operation = 7
	OpDescribe        Operation = 8
	OpClusterAction   Operation = 9
	OpDescribeConfigs Operation = 10
	OpAlterConfigs    Operation = 11
	OpIdempotentWrite Operation = 12
	OpCreateTokens    Operation = 13
	OpDescribeTokens  Operation = 14
)

// Permission is ALLOW or DENY (Kafka's AclPermissionType). Unknown and
// Any appear only in filters.
type Permission int8

// Permissions with Kafka's codes.
const (
	PermUnknown Permission = 0
	PermAny     Permission = 1
	PermDeny    Permission = 2
	PermAllow   Permission = 3
)

var (
	resourceNames   = []string{"UNKNOWN", "ANY", "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN", "USER"}
	patternNames    = []string{"UNKNOWN", "ANY", "MATCH", "LITERAL", "PREFIXED"}
	operationNames  = []string{"UNKNOWN", "ANY", "ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "CREATE_TOKENS", "DESCRIBE_TOKENS"}
	permissionNames = []string{"UNKNOWN", "ANY", "DENY", "ALLOW"}
)

func enumName(names []string, v int8) string {
	if v < 0 || int(v) >= len(names) {
		return fmt.Sprintf("UNKNOWN(%d)", v)
	}
	return names[v]
}

// parseEnum parses a name case-insensitively, with '-' read as '_'
// ("transactional-id", "Describe_Configs").
func parseEnum(names []string, what, s string) (int8, error) {
	u := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	for i, n := range names {
		if n == u && n != "UNKNOWN" {
			return int8(i), nil
		}
	}
	return 0, fmt.Errorf("auth: unknown %s %q (one of %s)", what, s, strings.Join(names[1:], ", "))
}

func (r ResourceType) String() string { return enumName(resourceNames, int8(r)) }
func (p PatternType) String() string  { return enumName(patternNames, int8(p)) }
func (o Operation) String() string    { return enumName(operationNames, int8(o)) }
func (p Permission) String() string   { return enumName(permissionNames, int8(p)) }

// ParseResourceType parses a resource type name ("topic", "TRANSACTIONAL_ID").
func ParseResourceType(s string) (ResourceType, error) {
	v, err := parseEnum(resourceNames, "resource type", s)
	return ResourceType(v), err
}

// ParsePatternType parses a pattern type name ("literal", "PREFIXED").
func ParsePatternType(s string) (PatternType, error) {
	v, err := parseEnum(patternNames, "pattern type", s)
	return PatternType(v), err
}

// ParseOperation parses an operation name ("read", "DESCRIBE_CONFIGS").
func ParseOperation(s string) (Operation, error) {
	v, err := parseEnum(operationNames, "operation", s)
	return Operation(v), err
}

// ParsePermission parses "allow" or "deny" (or "any" for filters).
func ParsePermission(s string) (Permission, error) {
	v, err := parseEnum(permissionNames, "permission", s)
	return Permission(v), err
}

// MarshalText and UnmarshalText store the enums by name (the Raft log and
// snapshots hold "TOPIC", not 2).

func (r ResourceType) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
func (p PatternType) MarshalText() ([]byte, error)  { return []byte(p.String()), nil }
func (o Operation) MarshalText() ([]byte, error)    { return []byte(o.String()), nil }
func (p Permission) MarshalText() ([]byte, error)   { return []byte(p.String()), nil }

func (r *ResourceType) UnmarshalText(b []byte) error {
	v, err := parseEnumExact(resourceNames, "resource type", string(b))
	*r = ResourceType(v)
	return err
}

func (p *PatternType) UnmarshalText(b []byte) error {
	v, err := parseEnumExact(patternNames, "pattern type", string(b))
	*p = PatternType(v)
	return err
}

func (o *Operation) UnmarshalText(b []byte) error {
	v, err := parseEnumExact(operationNames, "operation", string(b))
	*o = Operation(v)
	return err
}

func (p *Permission) UnmarshalText(b []byte) error {
	v, err := parseEnumExact(permissionNames, "permission", string(b))
	*p = Permission(v)
	return err
}

// parseEnumExact is the stored form's parser: exactly a name, UNKNOWN
// included (validation refuses it later, decoding does not guess).
func parseEnumExact(names []string, what, s string) (int8, error) {
	for i, n := range names {
		if n == s {
			return int8(i), nil
		}
	}
	return 0, fmt.Errorf("auth: unknown %s %q", what, s)
}

// ACL is one access control entry bound to a resource pattern (Kafka's
// AclBinding): Principal ("User:alice", or WildcardPrincipal) may (ALLOW)
// or may not (DENY) perform Operation on the resources of ResourceType
// named ResourceName (LITERAL: that name, or every name when it is
// Wildcard; PREFIXED: every name starting with it) from Host (an IP
// address, or Wildcard).
type ACL struct {
	Principal    string       `json:"principal"`
	Host         string       `json:"host"`
	ResourceType ResourceType `json:"resource_type"`
	ResourceName string       `json:"resource_name"`
	PatternType  PatternType  `json:"pattern_type"`
	Operation    Operation    `json:"operation"`
	Permission   Permission   `json:"permission"`
}

// String is a readable form of the binding.
func (a ACL) String() string {
	return fmt.Sprintf("%s %s %s on %s:%s:%s from %s", a.Principal, a.Permission, a.Operation, a.ResourceType, a.PatternType, a.ResourceName, a.Host)
}

// Validate checks an ACL as Kafka checks one it is asked to create: a
// concrete resource type, pattern type (LITERAL or PREFIXED), operation
// and permission, a non-empty resource name (kafka-cluster for CLUSTER),
// a Type:name principal and a non-empty host, all in UTF-8.
func (a ACL) Validate() error {
	switch {
	case a.ResourceType <= ResourceAny || a.ResourceType > ResourceUser:
		return fmt.Errorf("invalid resource type %s", a.ResourceType)
	case a.PatternType != PatternLiteral && a.PatternType != PatternPrefixed:
		return fmt.Errorf("invalid pattern type %s", a.PatternType)
	case a.Operation <= OpAny || a.Operation > OpDescribeTokens:
		return fmt.Errorf("invalid operation %s", a.Operation)
	case a.Permission != PermAllow && a.Permission != PermDeny:
		return fmt.Errorf("invalid permission type %s", a.Permission)
	case a.ResourceName == "":
		return errors.New("resource name should not be empty")
	case a.ResourceType == ResourceCluster && a.ResourceName != ClusterName:
		return fmt.Errorf("the only valid name for the CLUSTER resource is %s", ClusterName)
	case a.Host == "":
		return errors.New("host should not be empty (use * for any host)")
	case !utf8.ValidString(a.Principal) || !utf8.ValidString(a.Host) || !utf8.ValidString(a.ResourceName):
		return errors.New("principal, host and resource name must be UTF-8")
	}
	if _, err := ParsePrincipal(a.Principal); err != nil {
		return fmt.Errorf("invalid principal %q: not Type:name", a.Principal)
	}
	return nil
}

// CompareACLs orders ACLs by resource type, resource name, pattern type,
// principal, host, operation and permission: the order state keeps them
// in.
func CompareACLs(a, b ACL) int {
	return cmp.Or(
		cmp.Compare(a.ResourceType, b.ResourceType),
		strings.Compare(a.ResourceName, b.ResourceName),
		cmp.Compare(a.PatternType, b.PatternType),
		strings.Compare(a.Principal, b.Principal),
		strings.Compare(a.Host, b.Host),
		cmp.Compare(a.Operation, b.Operation),
		cmp.Compare(a.Permission, b.Permission),
	)
}

// SortACLs sorts acls (CompareACLs) and drops duplicates.
func SortACLs(acls []ACL) []ACL {
	slices.SortFunc(acls, CompareACLs)
	return slices.Compact(acls)
}

// Filter selects ACLs (Kafka's AclBindingFilter): ResourceAny,
// PatternAny, OpAny, PermAny and a nil string match anything. PatternAny
// with a name matches ACLs of exactly that name; PatternMatch with a name
// matches the ACLs that apply to a resource of that name (its LITERAL
// ACL, the Wildcard LITERAL ACL and the PREFIXED ACLs whose prefix it
// starts with); LITERAL or PREFIXED with a name match that pattern alone.
type Filter struct {
	ResourceType ResourceType `json:"resource_type"`
	ResourceName *string      `json:"resource_name,omitempty"`
	PatternType  PatternType  `json:"pattern_type"`
	Principal    *string      `json:"principal,omitempty"`
	Host         *string      `json:"host,omitempty"`
	Operation    Operation    `json:"operation"`
	Permission   Permission   `json:"permission"`
}

// Validate refuses a filter with an unknown (or out of range) field, as
// Kafka does (INVALID_REQUEST).
func (f Filter) Validate() error {
	switch {
	case f.ResourceType <= ResourceUnknown || f.ResourceType > ResourceUser:
		return fmt.Errorf("invalid resource type %s in filter", f.ResourceType)
	case f.PatternType <= PatternUnknown || f.PatternType > PatternPrefixed:
		return fmt.Errorf("invalid pattern type %s in filter", f.PatternType)
	case f.Operation <= OpUnknown || f.Operation > OpDescribeTokens:
		return fmt.Errorf("invalid operation %s in filter", f.Operation)
	case f.Permission <= PermUnknown || f.Permission > PermAllow:
		return fmt.Errorf("invalid permission type %s in filter", f.Permission)
	}
	return nil
}

// Matches reports whether the filter selects a.
func (f Filter) Matches(a ACL) bool {
	if f.ResourceType != ResourceAny && f.ResourceType != a.ResourceType {
		return false
	}
	if f.PatternType != PatternAny && f.PatternType != PatternMatch && f.PatternType != a.PatternType {
		return false
	}
	if f.ResourceName != nil {
		name := *f.ResourceName
		switch {
		case f.PatternType == PatternAny || f.PatternType == a.PatternType:
			if name != a.ResourceName {
				return false
			}
		case a.PatternType == PatternLiteral: // MATCH
			if name != a.ResourceName && a.ResourceName != Wildcard {
				return false
			}
		case a.PatternType == PatternPrefixed: // MATCH
			if !strings.HasPrefix(name, a.ResourceName) {
				return false
			}
		default:
			return false
		}
	}
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil && *f.Host != a.Host {
		return false
	}
	if f.Operation != OpAny && f.Operation != a.Operation {
		return false
	}
	return f.Permission == PermAny || f.Permission == a.Permission
}

// ACLSet is an immutable, indexed set of ACLs for authorization checks:
// per resource type, the LITERAL ACLs by name (Wildcard included) and the
// PREFIXED ACLs. Build it with NewACLSet; share it freely.
type ACLSet struct {
	acls []ACL
	by   map[ResourceType]*resourceACLs
}

type resourceACLs struct {
	literal  map[string][]ACL
	prefixed []ACL // sorted by name
}

// NewACLSet indexes acls (sorted and deduplicated by SortACLs; the set
// keeps its own copy).
func NewACLSet(acls []ACL) *ACLSet {
	s := &ACLSet{acls: SortACLs(slices.Clone(acls)), by: map[ResourceType]*resourceACLs{}}
	for _, a := range s.acls {
		r := s.by[a.ResourceType]
		if r == nil {
			r = &resourceACLs{literal: map[string][]ACL{}}
			s.by[a.ResourceType] = r
		}
		if a.PatternType == PatternPrefixed {
			r.prefixed = append(r.prefixed, a)
		} else {
			r.literal[a.ResourceName] = append(r.literal[a.ResourceName], a)
		}
	}
	return s
}

// ACLs returns the set's ACLs in CompareACLs order (a copy).
func (s *ACLSet) ACLs() []ACL {
	if s == nil {
		return nil
	}
	return slices.Clone(s.acls)
}

// Len is the number of ACLs in the set.
func (s *ACLSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.acls)
}

// Select returns the ACLs the filter matches, in CompareACLs order.
func (s *ACLSet) Select(f Filter) []ACL {
	if s == nil {
		return nil
	}
	var out []ACL
	for _, a := range s.acls {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out
}

// Authorizer decides requests as Kafka's StandardAuthorizer does. It is
// immutable; ACLs returns the current ACL set on every check (nil: none).
type Authorizer struct {
	superUsers           map[string]bool
	allowEveryoneIfNoACL bool
	acls                 func() *ACLSet
}

// NewAuthorizer makes an authorizer: superUsers pass every check,
// allowEveryoneIfNoACL allows a resource no ACL applies to
// (allow.everyone.if.no.acl.found), and acls supplies the ACLs.
func NewAuthorizer(superUsers []Principal, allowEveryoneIfNoACL bool, acls func() *ACLSet) *Authorizer {
	a := &Authorizer{superUsers: map[string]bool{}, allowEveryoneIfNoACL: allowEveryoneIfNoACL, acls: acls}
	for _, p := range superUsers {
		a.superUsers[p.String()] = true
	}
	return a
}

// IsSuperUser reports whether p is one of the super users.
func (a *Authorizer) IsSuperUser(p Principal) bool { return a.superUsers[p.String()] }

// Authorize reports whether principal p, connected from host (an IP
// address), may perform op on the resource of type rt named name.
// Kafka's rules: a super user passes; a DENY ACL applying to the resource
// (its LITERAL name, the Wildcard, or a PREFIXED pattern it starts with),
// to p or WildcardPrincipal, to host or Wildcard, and to op exactly or
// OpAll denies; otherwise an ALLOW ACL applying the same way to op, OpAll
// or an operation implying op allows (DESCRIBE is implied by READ, WRITE,
// DELETE and ALTER; DESCRIBE_CONFIGS by ALTER_CONFIGS); otherwise a
// resource with any ACL at all (of any principal) is denied, and one
// without is allowed only with allow.everyone.if.no.acl.found.
func (a *Authorizer) Authorize(p Principal, host string, op Operation, rt ResourceType, name string) bool {
	if a.superUsers[p.String()] {
		return true
	}
	var set *ACLSet
	if a.acls != nil {
		set = a.acls()
	}
	var r *resourceACLs
	if set != nil {
		r = set.by[rt]
	}
	if r == nil {
		return a.allowEveryoneIfNoACL
	}
	principal := p.String()
	var found, allowed bool
	check := func(acls []ACL) (denied bool) {
		for _, acl := range acls {
			found = true
			switch aclResult(acl, principal, host, op) {
			case PermDeny:
				return true
			case PermAllow:
				allowed = true
			}
		}
		return false
	}
	if check(r.literal[name]) {
		return false
	}
	if name != Wildcard && check(r.literal[Wildcard]) {
		return false
	}
	for _, acl := range r.prefixed {
		if acl.ResourceName > name {
			break // sorted: no later prefix can be a prefix of name
		}
		if strings.HasPrefix(name, acl.ResourceName) && check([]ACL{acl}) {
			return false
		}
	}
	if allowed {
		return true
	}
	if found {
		return false
	}
	return a.allowEveryoneIfNoACL
}

// aclResult is what acl says about principal doing op from host: PermDeny,
// PermAllow, or PermUnknown when it does not apply.
func aclResult(acl ACL, principal, host string, op Operation) Permission {
	if acl.Principal != principal && acl.Principal != WildcardPrincipal {
		return PermUnknown
	}
	if acl.Host != Wildcard && acl.Host != host {
		return PermUnknown
	}
	if acl.Operation != OpAll {
		if acl.Permission == PermAllow {
			if !implies(acl.Operation, op) {
				return PermUnknown
			}
		} else if acl.Operation != op {
			return PermUnknown
		}
	}
	return acl.Permission
}

// implies reports whether an ALLOW of granted allows op.
func implies(granted, op Operation) bool {
	if granted == op {
		return true
	}
	switch op {
	case OpDescribe:
		return granted == OpRead || granted == OpWrite || granted == OpDelete || granted == OpAlter
	case OpDescribeConfigs:
		return granted == OpAlterConfigs
	}
	return false
}

// AuthorizeAny reports whether p may perform op on at least one resource
// of type rt (Kafka's authorizeByResourceType, KIP-679: InitProducerId
// without a transactional id needs WRITE on any topic): a super user, or
// an op the Authorize rules allow on a resource no ACL names, or an
// ALLOW of op (or OpAll; no implied operations) on the Wildcard, or on a
// LITERAL name or PREFIXED pattern not covered by a DENY of the same
// principal (a LITERAL DENY of the same name, or a PREFIXED DENY of a
// prefix of it); a LITERAL DENY of the Wildcard denies everything.
func (a *Authorizer) AuthorizeAny(p Principal, host string, op Operation, rt ResourceType) bool {
	// Kafka checks a made-up name first, which lets a super user and
	// allow.everyone.if.no.acl.found (when no ACL applies) through.
	if a.Authorize(p, host, op, rt, "hardcode") {
		return true
	}
	var set *ACLSet
	if a.acls != nil {
		set = a.acls()
	}
	if set == nil || set.by[rt] == nil {
		return false
	}
	principal := p.String()
	denyLiteral, denyPrefix := map[string]bool{}, map[string]bool{}
	var allowLiteral, allowPrefix []string
	wildcardAllow := false
	for _, acl := range set.acls {
		if acl.ResourceType != rt {
			continue
		}
		if acl.Host != Wildcard && acl.Host != host {
			continue
		}
		if acl.Principal != principal && acl.Principal != WildcardPrincipal {
			continue
		}
		if acl.Operation != op && acl.Operation != OpAll {
			continue
		}
		literal := acl.PatternType == PatternLiteral
		if acl.Permission == PermDeny {
			if literal && acl.ResourceName == Wildcard {
				return false
			}
			if literal {
				denyLiteral[acl.ResourceName] = true
			} else {
				denyPrefix[acl.ResourceName] = true
			}
			continue
		}
		switch {
		case literal && acl.ResourceName == Wildcard:
			wildcardAllow = true
		case literal:
			allowLiteral = append(allowLiteral, acl.ResourceName)
		default:
			allowPrefix = append(allowPrefix, acl.ResourceName)
		}
	}
	if wildcardAllow {
		return true
	}
	dominated := func(name string) bool {
		for i := 1; i <= len(name); i++ {
			if denyPrefix[name[:i]] {
				return true
			}
		}
		return false
	}
	for _, n := range allowLiteral {
		if !denyLiteral[n] && !dominated(n) {
			return true
		}
	}
	for _, n := range allowPrefix {
		if !dominated(n) {
			return true
		}
	}
	return false
}
