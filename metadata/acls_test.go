package metadata

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tuskdb/tusk/auth"
)

func aclOf(principal string, rt auth.ResourceType, name string, pt auth.PatternType, op auth.Operation, perm auth.Permission) auth.ACL {
	return auth.ACL{Principal: principal, Host: "*", ResourceType: rt, ResourceName: name, PatternType: pt, Operation: op, Permission: perm}
}

// TestACLCommands: CreateACLs adds ACLs sorted and deduplicated,
// DeleteACLs removes what its filters match, a snapshot keeps the ACLs
// and their index, and bad ACLs or filters are invalid commands.
func TestACLCommands(t *testing.T) {
	f := NewFSM()
	apply := func(c Command) {
		t.Helper()
		if err := Validate(c); err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	readT := aclOf("User:alice", auth.ResourceTopic, "t", auth.PatternLiteral, auth.OpRead, auth.PermAllow)
	writeP := aclOf("User:alice", auth.ResourceTopic, "p-", auth.PatternPrefixed, auth.OpWrite, auth.PermAllow)
	denyG := aclOf("User:bob", auth.ResourceGroup, "g", auth.PatternLiteral, auth.OpAll, auth.PermDeny)
	if f.ACLSet() != nil || len(f.ACLs()) != 0 {
		t.Fatal("a new FSM has ACLs")
	}
	apply(CreateACLs{ACLs: []auth.ACL{denyG, writeP, readT, readT}})
	apply(CreateACLs{ACLs: []auth.ACL{writeP}})
	want := []auth.ACL{writeP, readT, denyG} // topic "p-" < "t", then group
	if got := f.ACLs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ACLs %v, want %v", got, want)
	}
	az := auth.NewAuthorizer(nil, false, f.ACLSet)
	if !az.Authorize(auth.User("alice"), "1.1.1.1", auth.OpWrite, auth.ResourceTopic, "p-x") || az.Authorize(auth.User("alice"), "1.1.1.1", auth.OpWrite, auth.ResourceTopic, "t") {
		t.Fatal("the FSM's ACL set does not authorize as its ACLs say")
	}

	// A snapshot restores the ACLs and the index.
	b, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"resource_type":"TOPIC"`) {
		t.Fatalf("snapshot does not name the resource type: %s", b)
	}
	g := NewFSM()
	if err := g.Restore(b); err != nil {
		t.Fatal(err)
	}
	if got := g.ACLs(); !reflect.DeepEqual(got, want) || g.ACLSet().Len() != 3 {
		t.Fatalf("restored ACLs %v (set of %d)", got, g.ACLSet().Len())
	}

	// Delete by a MATCH filter of topic p-x: the prefixed ACL only.
	name := "p-x"
	apply(DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceTopic, ResourceName: &name, PatternType: auth.PatternMatch, Operation: auth.OpAny, Permission: auth.PermAny}}})
	if got := f.ACLs(); !reflect.DeepEqual(got, []auth.ACL{readT, denyG}) {
		t.Fatalf("after delete: %v", got)
	}
	// A filter matching nothing changes nothing; ANY deletes the rest.
	principal := "User:nobody"
	apply(DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceAny, PatternType: auth.PatternAny, Principal: &principal, Operation: auth.OpAny, Permission: auth.PermAny}}})
	if len(f.ACLs()) != 2 {
		t.Fatalf("a filter matching nothing deleted: %v", f.ACLs())
	}
	apply(DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceAny, PatternType: auth.PatternAny, Operation: auth.OpAny, Permission: auth.PermAny}}})
	if len(f.ACLs()) != 0 || f.ACLSet().Len() != 0 {
		t.Fatalf("after deleting all: %v", f.ACLs())
	}

	for _, bad := range []Command{
		CreateACLs{},
		CreateACLs{ACLs: []auth.ACL{aclOf("User:a", auth.ResourceAny, "t", auth.PatternLiteral, auth.OpRead, auth.PermAllow)}},
		CreateACLs{ACLs: []auth.ACL{aclOf("User:a", auth.ResourceTopic, "t", auth.PatternMatch, auth.OpRead, auth.PermAllow)}},
		CreateACLs{ACLs: []auth.ACL{aclOf("User:a", auth.ResourceTopic, "t", auth.PatternLiteral, auth.OpAny, auth.PermAllow)}},
		CreateACLs{ACLs: []auth.ACL{aclOf("User:a", auth.ResourceTopic, "t", auth.PatternLiteral, auth.OpRead, auth.PermAny)}},
		CreateACLs{ACLs: []auth.ACL{aclOf("alice", auth.ResourceTopic, "t", auth.PatternLiteral, auth.OpRead, auth.PermAllow)}},
		CreateACLs{ACLs: []auth.ACL{aclOf("User:a", auth.ResourceCluster, "c", auth.PatternLiteral, auth.OpRead, auth.PermAllow)}},
		DeleteACLs{},
		DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceUnknown, PatternType: auth.PatternAny, Operation: auth.OpAny, Permission: auth.PermAny}}},
		DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceAny, PatternType: auth.PatternAny, Operation: 99, Permission: auth.PermAny}}},
	} {
		if err := Validate(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidCommand", bad, err)
		}
		if err := f.Apply(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Apply(%+v) = %v, want ErrInvalidCommand", bad, err)
		}
	}

	// Encoding round-trips; an unknown enum name in the log does not decode.
	c := CreateACLs{ACLs: []auth.ACL{readT}}
	raw, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeCommand(raw); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("decode: %+v %v", got, err)
	}
	forged := strings.Replace(string(raw), `"TOPIC"`, `"TABLE"`, 1)
	if _, err := DecodeCommand([]byte(forged)); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("decode of an unknown resource type: %v", err)
	}
	d := DeleteACLs{Filters: []auth.Filter{{ResourceType: auth.ResourceTopic, ResourceName: &name, PatternType: auth.PatternMatch, Operation: auth.OpAny, Permission: auth.PermAny}}}
	if raw, err = EncodeCommand(d); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeCommand(raw); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("decode: %+v %v", got, err)
	}
}
