package broker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tuskdb/tusk/configs"
)

// TestUserSCRAMAdmin: kadm's AlterUserSCRAMs creates users whose
// passwords authenticate, DescribeUserSCRAMs lists mechanisms and
// iterations, deletions remove them; bad changes fail per user with
// Kafka's codes and change nothing for that user.
func TestUserSCRAMAdmin(t *testing.T) {
	b := startSASLBroker(t)
	addUser(t, b.Broker, "admin", "admin-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admCl := saslClient(t, b.addr, scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism())
	adm := kadm.NewClient(admCl)

	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha256, Iterations: 8192, Password: "a-pw"},
		{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "a-pw"},
		{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 16384, Password: "b-pw"},
	})
	if err != nil || res.Error() != nil {
		t.Fatalf("upsert: %v %v", err, res.Error())
	}
	for _, c := range []struct {
		auth scram.Auth
		sha  int
		ok   bool
	}{{scram.Auth{User: "alice", Pass: "a-pw"}, 256, true}, {scram.Auth{User: "alice", Pass: "a-pw"}, 512, true},
		{scram.Auth{User: "bob", Pass: "b-pw"}, 512, true}, {scram.Auth{User: "bob", Pass: "b-pw"}, 256, false}} {
		m := c.auth.AsSha512Mechanism()
		if c.sha == 256 {
			m = c.auth.AsSha256Mechanism()
		}
		err := saslClient(t, b.addr, m).Ping(ctx)
		if (err == nil) != c.ok {
			t.Fatalf("%s with %s: %v", c.auth.User, m.Name(), err)
		}
	}

	desc, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]kadm.CredInfo{
		"admin": {{Mechanism: kadm.ScramSha256, Iterations: 4096}, {Mechanism: kadm.ScramSha512, Iterations: 4096}},
		"alice": {{Mechanism: kadm.ScramSha256, Iterations: 8192}, {Mechanism: kadm.ScramSha512, Iterations: 4096}},
		"bob":   {{Mechanism: kadm.ScramSha512, Iterations: 16384}},
	}
	got := map[string][]kadm.CredInfo{}
	for u, d := range desc {
		if d.Err != nil {
			t.Fatalf("%s: %v", u, d.Err)
		}
		got[u] = d.CredInfos
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("described %+v, want %+v", got, want)
	}
	desc, err = adm.DescribeUserSCRAMs(ctx, "bob", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if desc["bob"].Err != nil || len(desc["bob"].CredInfos) != 1 || !errors.Is(desc["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("describe bob, nobody: %+v", desc)
	}

	// Raw requests: kadm refuses some of these itself.
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	up := func(name string, mech int8, iter int32, saltedLen int) {
		u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		u.Name, u.Mechanism, u.Iterations, u.Salt, u.SaltedPassword = name, mech, iter, []byte("salt"), make([]byte, saltedLen)
		req.Upsertions = append(req.Upsertions, u)
	}
	del := func(name string, mech int8) {
		d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
		d.Name, d.Mechanism = name, mech
		req.Deletions = append(req.Deletions, d)
	}
	del("bob", 2)            // valid: removes bob
	up("carol", 3, 4096, 64) // unknown mechanism
	up("dave", 2, 1000, 64)  // too few iterations
	up("erin", 2, 20000, 64) // too many
	up("frank", 1, 4096, 64) // salted password of the wrong size
	del("gina", 1)           // no such credential
	up("alice", 1, 4096, 32) // alice twice: duplicate, neither applies
	del("alice", 1)          //
	up("", 1, 4096, 32)      // empty name
	up("harry", 1, 4096, 32) // valid
	resp, err := req.RequestWith(ctx, admCl)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, r := range resp.Results {
		codes[r.User] = r.ErrorCode
	}
	wantCodes := map[string]int16{
		"bob": 0, "carol": kerr.UnsupportedSaslMechanism.Code, "dave": kerr.UnacceptableCredential.Code, "erin": kerr.UnacceptableCredential.Code,
		"frank": kerr.UnacceptableCredential.Code, "gina": kerr.ResourceNotFound.Code, "alice": kerr.DuplicateResource.Code,
		"": kerr.UnacceptableCredential.Code, "harry": 0,
	}
	if !reflect.DeepEqual(codes, wantCodes) {
		t.Fatalf("codes %v, want %v", codes, wantCodes)
	}
	desc, err = adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc) != 3 || desc["harry"].CredInfos[0].Mechanism != kadm.ScramSha256 || len(desc["alice"].CredInfos) != 2 {
		t.Fatalf("after the raw request: %+v", desc)
	}
	if err := saslClient(t, b.addr, scram.Auth{User: "bob", Pass: "b-pw"}.AsSha512Mechanism()).Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("deleted bob: %v", err)
	}
}

// TestBootstrapUsers: the bootstrap users file's users authenticate on a
// new cluster; a bootstrap user deleted by an admin stays deleted when
// the node restarts with the same file, and one added to the file later
// is not created.
func TestBootstrapUsers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(file, []byte("# bootstrap\nadmin:admin:pw\n\nalice:a-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	useFile := func(c *configs.Config) { c.SASL.BootstrapUsersFile = file }
	func() {
		b := startSASLBrokerIn(t, dir, useFile)
		for _, a := range []scram.Auth{{User: "admin", Pass: "admin:pw"}, {User: "alice", Pass: "a-pw"}} {
			if err := saslClient(t, b.addr, a.AsSha256Mechanism()).Ping(ctx); err != nil {
				t.Fatalf("%s: %v", a.User, err)
			}
		}
		adm := kadm.NewClient(saslClient(t, b.addr, scram.Auth{User: "admin", Pass: "admin:pw"}.AsSha512Mechanism()))
		res, err := adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "alice", Mechanism: kadm.ScramSha256}, {User: "alice", Mechanism: kadm.ScramSha512}}, nil)
		if err != nil || res.Error() != nil {
			t.Fatal(err, res.Error())
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	if err := os.WriteFile(file, []byte("admin:admin:pw\nalice:a-pw\nbob:b-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startSASLBrokerIn(t, dir, useFile)
	if err := saslClient(t, b.addr, scram.Auth{User: "admin", Pass: "admin:pw"}.AsSha512Mechanism()).Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range []scram.Auth{{User: "alice", Pass: "a-pw"}, {User: "bob", Pass: "b-pw"}} {
		if err := saslClient(t, b.addr, a.AsSha512Mechanism()).Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("%s after the restart: %v", a.User, err)
		}
	}
	if !b.store.FSM().UsersBootstrapped() {
		t.Fatal("flag not set")
	}
}

// TestBootstrapUsersFileErrors: a malformed file stops the node at start.
func TestBootstrapUsersFileErrors(t *testing.T) {
	for _, body := range []string{"nopassword\n", "alice:\n", ":pw\n", "a:1\na:2\n", "bad\x01name:pw\n"} {
		f := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readBootstrapUsers(f); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
	if _, err := readBootstrapUsers(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file accepted")
	}
}
