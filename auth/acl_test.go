package auth

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func allow(principal string, rt ResourceType, name string, pt PatternType, op Operation) ACL {
	return ACL{Principal: principal, Host: Wildcard, ResourceType: rt, ResourceName: name, PatternType: pt, Operation: op, Permission: PermAllow}
}

func deny(principal string, rt ResourceType, name string, pt PatternType, op Operation) ACL {
	a := allow(principal, rt, name, pt, op)
	a.Permission = PermDeny
	return a
}

func fixed(acls ...ACL) func() *ACLSet {
	s := NewACLSet(acls)
	return func() *ACLSet { return s }
}

func TestAuthorize(t *testing.T) {
	alice, bob := User("alice"), User("bob")
	const host, other = "10.0.0.1", "10.0.0.2"
	type check struct {
		p    Principal
		host string
		op   Operation
		rt   ResourceType
		name string
		want bool
	}
	for _, tc := range []struct {
		name     string
		acls     []ACL
		super    []Principal
		everyone bool
		checks   []check
	}{
		{
			name: "no ACLs denies by default",
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", false},
				{alice, host, OpDescribe, ResourceCluster, ClusterName, false},
			},
		},
		{
			name:     "no ACLs with allow.everyone.if.no.acl.found",
			everyone: true,
			checks:   []check{{alice, host, OpWrite, ResourceTopic, "t", true}},
		},
		{
			name:     "an ACL of another principal on the resource denies even with allow-everyone",
			acls:     []ACL{allow("User:bob", ResourceTopic, "t", PatternLiteral, OpRead)},
			everyone: true,
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", false},
				{bob, host, OpRead, ResourceTopic, "t", true},
				{alice, host, OpRead, ResourceTopic, "u", true}, // no ACL on u
				{alice, host, OpRead, ResourceGroup, "t", true}, // another type
			},
		},
		{
			name:  "super users pass even a DENY",
			acls:  []ACL{deny("User:alice", ResourceTopic, "*", PatternLiteral, OpAll)},
			super: []Principal{alice},
			checks: []check{
				{alice, host, OpWrite, ResourceTopic, "t", true},
				{alice, host, OpAlter, ResourceCluster, ClusterName, true},
				{bob, host, OpWrite, ResourceTopic, "t", false},
			},
		},
		{
			name: "literal matches its exact name only",
			acls: []ACL{allow("User:alice", ResourceTopic, "orders", PatternLiteral, OpRead)},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "orders", true},
				{alice, host, OpRead, ResourceTopic, "orders2", false},
				{alice, host, OpRead, ResourceTopic, "order", false},
				{alice, host, OpWrite, ResourceTopic, "orders", false},
				{alice, host, OpRead, ResourceGroup, "orders", false},
				{bob, host, OpRead, ResourceTopic, "orders", false},
			},
		},
		{
			name: "prefixed matches every name starting with it",
			acls: []ACL{allow("User:alice", ResourceTopic, "app-", PatternPrefixed, OpWrite)},
			checks: []check{
				{alice, host, OpWrite, ResourceTopic, "app-", true},
				{alice, host, OpWrite, ResourceTopic, "app-orders", true},
				{alice, host, OpWrite, ResourceTopic, "app", false},
				{alice, host, OpWrite, ResourceTopic, "bpp-orders", false},
				{alice, host, OpWrite, ResourceTopic, "ap", false},
			},
		},
		{
			name: "several prefixes, the shorter one matches",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "a", PatternPrefixed, OpRead),
				allow("User:bob", ResourceTopic, "ab", PatternPrefixed, OpRead),
				allow("User:bob", ResourceTopic, "abd", PatternPrefixed, OpRead),
			},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "abc", true},
				{bob, host, OpRead, ResourceTopic, "abc", true},
				{bob, host, OpRead, ResourceTopic, "ac", false},
			},
		},
		{
			name: "wildcard resource matches any name",
			acls: []ACL{allow("User:alice", ResourceGroup, "*", PatternLiteral, OpRead)},
			checks: []check{
				{alice, host, OpRead, ResourceGroup, "g1", true},
				{alice, host, OpRead, ResourceGroup, "anything", true},
				{alice, host, OpRead, ResourceTopic, "g1", false},
			},
		},
		{
			name: "a prefixed * is a prefix, not a wildcard",
			acls: []ACL{allow("User:alice", ResourceTopic, "*", PatternPrefixed, OpRead)},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", false},
				{alice, host, OpRead, ResourceTopic, "*t", true},
			},
		},
		{
			name: "wildcard principal matches everyone",
			acls: []ACL{allow(WildcardPrincipal, ResourceTopic, "t", PatternLiteral, OpRead)},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", true},
				{Anonymous, host, OpRead, ResourceTopic, "t", true},
				{Principal{"Group", "x"}, host, OpRead, ResourceTopic, "t", true},
			},
		},
		{
			name: "host must match unless *",
			acls: []ACL{{Principal: "User:alice", Host: host, ResourceType: ResourceTopic, ResourceName: "t", PatternType: PatternLiteral, Operation: OpRead, Permission: PermAllow}},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", true},
				{alice, other, OpRead, ResourceTopic, "t", false},
			},
		},
		{
			name: "DENY beats ALLOW",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "*", PatternLiteral, OpAll),
				deny("User:alice", ResourceTopic, "secret", PatternLiteral, OpRead),
			},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "secret", false},
				{alice, host, OpWrite, ResourceTopic, "secret", true},
				{alice, host, OpRead, ResourceTopic, "public", true},
			},
		},
		{
			name: "DENY by prefix, wildcard principal and host",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "priv-x", PatternLiteral, OpWrite),
				{Principal: WildcardPrincipal, Host: other, ResourceType: ResourceTopic, ResourceName: "priv-", PatternType: PatternPrefixed, Operation: OpWrite, Permission: PermDeny},
			},
			checks: []check{
				{alice, host, OpWrite, ResourceTopic, "priv-x", true},
				{alice, other, OpWrite, ResourceTopic, "priv-x", false},
			},
		},
		{
			name: "a DENY of ALL denies every operation",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "t", PatternLiteral, OpAll),
				deny("User:alice", ResourceTopic, "t", PatternLiteral, OpAll),
			},
			checks: []check{
				{alice, host, OpRead, ResourceTopic, "t", false},
				{alice, host, OpDescribe, ResourceTopic, "t", false},
			},
		},
		{
			name: "a DENY of READ does not deny DESCRIBE (only its exact operation)",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "t", PatternLiteral, OpDescribe),
				deny("User:alice", ResourceTopic, "t", PatternLiteral, OpRead),
			},
			checks: []check{
				{alice, host, OpDescribe, ResourceTopic, "t", true},
				{alice, host, OpRead, ResourceTopic, "t", false},
			},
		},
		{
			name: "implied operations: READ, WRITE, DELETE, ALTER imply DESCRIBE",
			acls: []ACL{
				allow("User:alice", ResourceTopic, "r", PatternLiteral, OpRead),
				allow("User:alice", ResourceTopic, "w", PatternLiteral, OpWrite),
				allow("User:alice", ResourceTopic, "d", PatternLiteral, OpDelete),
				allow("User:alice", ResourceTopic, "a", PatternLiteral, OpAlter),
				allow("User:alice", ResourceTopic, "c", PatternLiteral, OpCreate),
				allow("User:alice", ResourceTopic, "ac", PatternLiteral, OpAlterConfigs),
			},
			checks: []check{
				{alice, host, OpDescribe, ResourceTopic, "r", true},
				{alice, host, OpDescribe, ResourceTopic, "w", true},
				{alice, host, OpDescribe, ResourceTopic, "d", true},
				{alice, host, OpDescribe, ResourceTopic, "a", true},
				{alice, host, OpDescribe, ResourceTopic, "c", false},
				{alice, host, OpDescribe, ResourceTopic, "ac", false},
				{alice, host, OpDescribeConfigs, ResourceTopic, "ac", true},
				{alice, host, OpDescribeConfigs, ResourceTopic, "a", false},
				{alice, host, OpRead, ResourceTopic, "w", false},
				{alice, host, OpWrite, ResourceTopic, "r", false},
			},
		},
		{
			name: "WRITE on the cluster does not imply IDEMPOTENT_WRITE (KIP-679 is AuthorizeAny)",
			acls: []ACL{allow("User:alice", ResourceCluster, ClusterName, PatternLiteral, OpWrite)},
			checks: []check{
				{alice, host, OpIdempotentWrite, ResourceCluster, ClusterName, false},
			},
		},
		{
			name: "ALL allows every operation",
			acls: []ACL{allow("User:alice", ResourceCluster, ClusterName, PatternLiteral, OpAll)},
			checks: []check{
				{alice, host, OpClusterAction, ResourceCluster, ClusterName, true},
				{alice, host, OpIdempotentWrite, ResourceCluster, ClusterName, true},
				{alice, host, OpDescribeConfigs, ResourceCluster, ClusterName, true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthorizer(tc.super, tc.everyone, fixed(tc.acls...))
			for _, c := range tc.checks {
				if got := a.Authorize(c.p, c.host, c.op, c.rt, c.name); got != c.want {
					t.Errorf("Authorize(%s, %s, %s, %s:%s) = %v, want %v", c.p, c.host, c.op, c.rt, c.name, got, c.want)
				}
			}
		})
	}
}

func TestAuthorizeAny(t *testing.T) {
	alice := User("alice")
	const host = "10.0.0.1"
	for _, tc := range []struct {
		name     string
		acls     []ACL
		everyone bool
		want     bool
	}{
		{"no ACLs", nil, false, false},
		{"no ACLs, allow-everyone", nil, true, true},
		{"literal WRITE on one topic", []ACL{allow("User:alice", ResourceTopic, "t", PatternLiteral, OpWrite)}, false, true},
		{"prefixed WRITE", []ACL{allow("User:alice", ResourceTopic, "p-", PatternPrefixed, OpWrite)}, false, true},
		{"ALL on a topic", []ACL{allow("User:alice", ResourceTopic, "t", PatternLiteral, OpAll)}, false, true},
		{"READ is not WRITE", []ACL{allow("User:alice", ResourceTopic, "t", PatternLiteral, OpRead)}, false, false},
		{"another principal's WRITE", []ACL{allow("User:bob", ResourceTopic, "t", PatternLiteral, OpWrite)}, false, false},
		{"WRITE on a group", []ACL{allow("User:alice", ResourceGroup, "t", PatternLiteral, OpWrite)}, false, false},
		{"literal allow, literal deny of the same", []ACL{
			allow("User:alice", ResourceTopic, "t", PatternLiteral, OpWrite),
			deny("User:alice", ResourceTopic, "t", PatternLiteral, OpWrite),
		}, false, false},
		{"literal allow, prefix deny covering it", []ACL{
			allow("User:alice", ResourceTopic, "abc", PatternLiteral, OpWrite),
			deny("User:alice", ResourceTopic, "ab", PatternPrefixed, OpWrite),
		}, false, false},
		{"prefix allow, longer prefix deny does not cover it", []ACL{
			allow("User:alice", ResourceTopic, "ab", PatternPrefixed, OpWrite),
			deny("User:alice", ResourceTopic, "abc", PatternPrefixed, OpWrite),
		}, false, true},
		{"wildcard deny denies all", []ACL{
			allow("User:alice", ResourceTopic, "t", PatternLiteral, OpWrite),
			deny(WildcardPrincipal, ResourceTopic, "*", PatternLiteral, OpWrite),
		}, false, false},
		{"wildcard allow", []ACL{allow(WildcardPrincipal, ResourceTopic, "*", PatternLiteral, OpWrite)}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthorizer(nil, tc.everyone, fixed(tc.acls...))
			if got := a.AuthorizeAny(alice, host, OpWrite, ResourceTopic); got != tc.want {
				t.Fatalf("AuthorizeAny = %v, want %v", got, tc.want)
			}
		})
	}
	if !NewAuthorizer([]Principal{alice}, false, fixed()).AuthorizeAny(alice, host, OpWrite, ResourceTopic) {
		t.Fatal("a super user is refused by AuthorizeAny")
	}
}

func TestFilterMatches(t *testing.T) {
	str := func(s string) *string { return &s }
	acls := []ACL{
		allow("User:alice", ResourceTopic, "orders", PatternLiteral, OpRead),
		allow("User:alice", ResourceTopic, "*", PatternLiteral, OpRead),
		allow("User:bob", ResourceTopic, "ord", PatternPrefixed, OpWrite),
		deny("User:bob", ResourceTopic, "x", PatternPrefixed, OpWrite),
		allow("User:bob", ResourceGroup, "orders", PatternLiteral, OpRead),
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []int // indexes into acls
	}{
		{"any", Filter{ResourceType: ResourceAny, PatternType: PatternAny, Operation: OpAny, Permission: PermAny}, []int{0, 1, 2, 3, 4}},
		{"any topic", Filter{ResourceType: ResourceTopic, PatternType: PatternAny, Operation: OpAny, Permission: PermAny}, []int{0, 1, 2, 3}},
		{"ANY named orders: exact name, any pattern", Filter{ResourceType: ResourceTopic, ResourceName: str("orders"), PatternType: PatternAny, Operation: OpAny, Permission: PermAny}, []int{0}},
		{"MATCH orders: literal, wildcard, prefixes", Filter{ResourceType: ResourceTopic, ResourceName: str("orders"), PatternType: PatternMatch, Operation: OpAny, Permission: PermAny}, []int{0, 1, 2}},
		{"MATCH without a name matches all patterns", Filter{ResourceType: ResourceTopic, PatternType: PatternMatch, Operation: OpAny, Permission: PermAny}, []int{0, 1, 2, 3}},
		{"LITERAL orders", Filter{ResourceType: ResourceAny, ResourceName: str("orders"), PatternType: PatternLiteral, Operation: OpAny, Permission: PermAny}, []int{0, 4}},
		{"PREFIXED ord", Filter{ResourceType: ResourceTopic, ResourceName: str("ord"), PatternType: PatternPrefixed, Operation: OpAny, Permission: PermAny}, []int{2}},
		{"PREFIXED orders (not the pattern)", Filter{ResourceType: ResourceTopic, ResourceName: str("orders"), PatternType: PatternPrefixed, Operation: OpAny, Permission: PermAny}, nil},
		{"principal", Filter{ResourceType: ResourceAny, PatternType: PatternAny, Principal: str("User:bob"), Operation: OpAny, Permission: PermAny}, []int{2, 3, 4}},
		{"host", Filter{ResourceType: ResourceAny, PatternType: PatternAny, Host: str("1.2.3.4"), Operation: OpAny, Permission: PermAny}, nil},
		{"operation", Filter{ResourceType: ResourceAny, PatternType: PatternAny, Operation: OpWrite, Permission: PermAny}, []int{2, 3}},
		{"permission", Filter{ResourceType: ResourceAny, PatternType: PatternAny, Operation: OpAny, Permission: PermDeny}, []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for i, a := range acls {
				if tc.f.Matches(a) {
					got = append(got, i)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("matches %v, want %v", got, tc.want)
			}
		})
	}
}

func TestACLValidate(t *testing.T) {
	good := allow("User:alice", ResourceTopic, "t", PatternLiteral, OpRead)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*ACL)
	}{
		{"unknown resource type", func(a *ACL) { a.ResourceType = ResourceUnknown }},
		{"any resource type", func(a *ACL) { a.ResourceType = ResourceAny }},
		{"resource type out of range", func(a *ACL) { a.ResourceType = 42 }},
		{"negative resource type", func(a *ACL) { a.ResourceType = -1 }},
		{"pattern ANY", func(a *ACL) { a.PatternType = PatternAny }},
		{"pattern MATCH", func(a *ACL) { a.PatternType = PatternMatch }},
		{"pattern unknown", func(a *ACL) { a.PatternType = 9 }},
		{"operation ANY", func(a *ACL) { a.Operation = OpAny }},
		{"operation unknown", func(a *ACL) { a.Operation = OpUnknown }},
		{"operation out of range", func(a *ACL) { a.Operation = 15 }},
		{"permission ANY", func(a *ACL) { a.Permission = PermAny }},
		{"permission unknown", func(a *ACL) { a.Permission = 7 }},
		{"empty name", func(a *ACL) { a.ResourceName = "" }},
		{"cluster named otherwise", func(a *ACL) { a.ResourceType = ResourceCluster; a.ResourceName = "c" }},
		{"principal without type", func(a *ACL) { a.Principal = "alice" }},
		{"empty host", func(a *ACL) { a.Host = "" }},
	} {
		a := good
		tc.edit(&a)
		if err := a.Validate(); err == nil {
			t.Errorf("%s: %v validated", tc.name, a)
		}
	}
}

func TestACLJSONByName(t *testing.T) {
	a := allow("User:alice", ResourceTransactionalID, "tx", PatternPrefixed, OpDescribeConfigs)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"principal":"User:alice","host":"*","resource_type":"TRANSACTIONAL_ID","resource_name":"tx","pattern_type":"PREFIXED","operation":"DESCRIBE_CONFIGS","permission":"ALLOW"}`
	if string(b) != want {
		t.Fatalf("json %s, want %s", b, want)
	}
	var back ACL
	if err := json.Unmarshal(b, &back); err != nil || back != a {
		t.Fatalf("round trip %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"resource_type":"TABLE"}`), &back); err == nil {
		t.Fatal("an unknown resource type name decoded")
	}
}

func TestParseEnums(t *testing.T) {
	if v, err := ParseResourceType("transactional-id"); err != nil || v != ResourceTransactionalID {
		t.Fatal(v, err)
	}
	if v, err := ParseOperation("Describe_Configs"); err != nil || v != OpDescribeConfigs {
		t.Fatal(v, err)
	}
	if v, err := ParsePatternType("prefixed"); err != nil || v != PatternPrefixed {
		t.Fatal(v, err)
	}
	if v, err := ParsePermission("deny"); err != nil || v != PermDeny {
		t.Fatal(v, err)
	}
	if _, err := ParseOperation("unknown"); err == nil {
		t.Fatal("UNKNOWN parsed")
	}
}

func FuzzACLValidate(f *testing.F) {
	f.Add("User:a", "*", int8(2), "t", int8(3), int8(3), int8(3))
	f.Add("x", "", int8(-5), "", int8(2), int8(1), int8(0))
	f.Fuzz(func(t *testing.T, principal, host string, rt int8, name string, pt, op, perm int8) {
		a := ACL{Principal: principal, Host: host, ResourceType: ResourceType(rt), ResourceName: name, PatternType: PatternType(pt), Operation: Operation(op), Permission: Permission(perm)}
		err := a.Validate()
		_ = a.String()
		if err != nil {
			return
		}
		// A valid ACL round-trips through JSON and is usable by the
		// authorizer and by every filter.
		b, jerr := json.Marshal(a)
		if jerr != nil {
			t.Fatal(jerr)
		}
		var back ACL
		if jerr := json.Unmarshal(b, &back); jerr != nil || back != a {
			t.Fatalf("round trip of %v: %v, %v", a, back, jerr)
		}
		az := NewAuthorizer(nil, false, fixed(a))
		az.Authorize(User("u"), "1.2.3.4", a.Operation, a.ResourceType, name)
		az.AuthorizeAny(User("u"), "1.2.3.4", a.Operation, a.ResourceType)
		f := Filter{ResourceType: ResourceAny, PatternType: PatternMatch, ResourceName: &name, Operation: OpAny, Permission: PermAny}
		if !f.Matches(a) {
			t.Fatalf("MATCH of its own name does not select %v", a)
		}
	})
}

// FuzzFilter: any filter, valid or not, and any ACL: Validate and Matches
// never panic, and a valid filter's Select from a set equals Matches one
// by one.
func FuzzFilter(f *testing.F) {
	f.Add(int8(1), "t", true, int8(2), "User:a", true, int8(1), int8(1), int8(2), "t", int8(3), int8(3), int8(3))
	f.Add(int8(0), "", false, int8(9), "", false, int8(-1), int8(7), int8(4), "*", int8(4), int8(2), int8(2))
	f.Fuzz(func(t *testing.T, frt int8, fname string, hasName bool, fpt int8, fprincipal string, hasPrincipal bool, fop, fperm int8,
		rt int8, name string, pt, op, perm int8) {
		flt := Filter{ResourceType: ResourceType(frt), PatternType: PatternType(fpt), Operation: Operation(fop), Permission: Permission(fperm)}
		if hasName {
			flt.ResourceName = &fname
		}
		if hasPrincipal {
			flt.Principal = &fprincipal
		}
		a := ACL{Principal: "User:x", Host: "*", ResourceType: ResourceType(rt), ResourceName: name, PatternType: PatternType(pt), Operation: Operation(op), Permission: Permission(perm)}
		valid := flt.Validate() == nil
		m := flt.Matches(a)
		if !valid || a.Validate() != nil {
			return
		}
		got := NewACLSet([]ACL{a}).Select(flt)
		if (len(got) == 1) != m {
			t.Fatalf("Select %v, Matches %v for %+v and %v", got, m, flt, a)
		}
	})
}

// BenchmarkAuthorize: one check against 1,000 ACLs (literal per topic,
// a few prefixes and wildcards), as a Produce does per topic.
func BenchmarkAuthorize(b *testing.B) {
	var acls []ACL
	for i := range 1000 {
		acls = append(acls, allow(fmt.Sprintf("User:u%d", i%50), ResourceTopic, fmt.Sprintf("topic-%d", i), PatternLiteral, OpWrite))
	}
	for _, p := range []string{"a", "ab", "topic-", "topic-9"} {
		acls = append(acls, allow("User:u1", ResourceTopic, p, PatternPrefixed, OpRead))
	}
	acls = append(acls, deny(WildcardPrincipal, ResourceTopic, "*", PatternLiteral, OpDelete))
	az := NewAuthorizer(nil, false, fixed(acls...))
	p := User("u7")
	b.ReportAllocs()
	for b.Loop() {
		if !az.Authorize(p, "10.0.0.1", OpWrite, ResourceTopic, "topic-907") {
			b.Fatal("denied")
		}
	}
}
