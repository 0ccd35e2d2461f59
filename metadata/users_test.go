package metadata

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func testCred(mech string, iter int, fill byte) ScramCredential {
	n := scramKeySize(mech)
	return ScramCredential{Salt: []byte("salt"), StoredKey: bytes.Repeat([]byte{fill}, n), ServerKey: bytes.Repeat([]byte{fill + 1}, n), Iterations: iter}
}

// TestScramUsers: AlterScramCredentials upserts and deletes (a user left
// without credentials is gone), BootstrapUsers applies once and keeps an
// earlier credential, snapshots keep users and the flag, encoding round
// trips and bad credentials are invalid commands.
func TestScramUsers(t *testing.T) {
	f := NewFSM()
	apply := func(c Command) error {
		t.Helper()
		if err := Validate(c); err != nil {
			t.Fatal(err)
		}
		raw, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := DecodeCommand(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dec, c) {
			t.Fatalf("decoded %+v, want %+v", dec, c)
		}
		return f.Apply(dec)
	}
	alice256 := testCred(ScramSHA256, 4096, 1)
	if err := apply(AlterScramCredentials{Upserts: []ScramUpsert{{User: "alice", Mechanism: ScramSHA256, Credential: alice256}}}); err != nil {
		t.Fatal(err)
	}
	boot := BootstrapUsers{Users: []ScramUpsert{
		{User: "alice", Mechanism: ScramSHA256, Credential: testCred(ScramSHA256, 8192, 9)},
		{User: "alice", Mechanism: ScramSHA512, Credential: testCred(ScramSHA512, 8192, 3)},
		{User: "admin", Mechanism: ScramSHA512, Credential: testCred(ScramSHA512, 4096, 5)},
	}}
	if err := apply(boot); err != nil {
		t.Fatal(err)
	}
	if c, ok := f.ScramCredential("alice", ScramSHA256); !ok || !reflect.DeepEqual(c, alice256) {
		t.Fatalf("bootstrap replaced alice's SCRAM-SHA-256: %+v", c)
	}
	if c, ok := f.ScramCredential("admin", ScramSHA512); !ok || c.Iterations != 4096 || c.StoredKey[0] != 5 {
		t.Fatalf("admin: %+v %v", c, ok)
	}
	if !f.UsersBootstrapped() {
		t.Fatal("flag not set")
	}
	if err := apply(AlterScramCredentials{Deletions: []ScramDeletion{{User: "admin", Mechanism: ScramSHA512}}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(boot); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("second bootstrap: %v", err)
	}
	if _, ok := f.ScramCredential("admin", ScramSHA512); ok {
		t.Fatal("a deleted bootstrap user came back")
	}
	want := map[string][]UserScram{"alice": {{ScramSHA256, 4096}, {ScramSHA512, 8192}}}
	if got := f.ScramUsers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("users %+v, want %+v", got, want)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !g.UsersBootstrapped() || !reflect.DeepEqual(g.ScramUsers(), want) {
		t.Fatalf("after restore: %v %+v", g.UsersBootstrapped(), g.ScramUsers())
	}
	if c, _ := g.ScramCredential("alice", ScramSHA256); !reflect.DeepEqual(c, alice256) {
		t.Fatalf("restored credential %+v", c)
	}

	good := testCred(ScramSHA512, 4096, 1)
	for name, bad := range map[string]Command{
		"empty":              AlterScramCredentials{},
		"empty user":         AlterScramCredentials{Upserts: []ScramUpsert{{User: "", Mechanism: ScramSHA512, Credential: good}}},
		"NUL in user":        AlterScramCredentials{Deletions: []ScramDeletion{{User: "a\x00b", Mechanism: ScramSHA512}}},
		"unknown mechanism":  AlterScramCredentials{Deletions: []ScramDeletion{{User: "a", Mechanism: "SCRAM-SHA-1"}}},
		"too few iterations": AlterScramCredentials{Upserts: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: testCred(ScramSHA512, 4095, 1)}}},
		"too many":           AlterScramCredentials{Upserts: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: testCred(ScramSHA512, 16385, 1)}}},
		"short key":          AlterScramCredentials{Upserts: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: testCred(ScramSHA256, 4096, 1)}}},
		"no salt":            AlterScramCredentials{Upserts: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: ScramCredential{StoredKey: good.StoredKey, ServerKey: good.ServerKey, Iterations: 4096}}}},
		"twice":              AlterScramCredentials{Upserts: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: good}}, Deletions: []ScramDeletion{{User: "a", Mechanism: ScramSHA512}}},
		"bootstrap bad":      BootstrapUsers{Users: []ScramUpsert{{User: "a", Mechanism: ScramSHA512, Credential: testCred(ScramSHA512, 1, 1)}}},
		"nil":                (*BootstrapUsers)(nil),
	} {
		if err := Validate(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: Validate = %v", name, err)
		}
		if err := f.Apply(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: Apply = %v", name, err)
		}
	}
	if !reflect.DeepEqual(f.ScramUsers(), want) {
		t.Fatalf("invalid commands changed users: %+v", f.ScramUsers())
	}
}
