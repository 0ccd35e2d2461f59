package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/metadata"
)

// Bootstrap users (sasl.bootstrap-users-file, docs/security.md): a file
// of name:password lines whose SCRAM-SHA-256 and SCRAM-SHA-512
// credentials are created once per cluster. The command is a
// compare-and-set on a flag that stays set, so a bootstrap user an admin
// deleted never comes back, whichever node restarts with the file.

// bootstrapIterations is the iteration count of bootstrap credentials
// (Kafka's default).
const bootstrapIterations = 4096

// bootstrapUser is one line of the bootstrap users file.
type bootstrapUser struct{ name, password string }

// readBootstrapUsers parses a bootstrap users file: name:password lines
// (the password is everything after the first ':'), blank lines and
// lines starting with '#' skipped.
func readBootstrapUsers(path string) ([]bootstrapUser, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("broker: sasl.bootstrap-users-file: %w", err)
	}
	var out []bootstrapUser
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, pass, ok := strings.Cut(line, ":")
		if !ok || pass == "" {
			return nil, fmt.Errorf("broker: sasl.bootstrap-users-file %s line %d: want name:password", path, n)
		}
		if err := metadata.ValidateUserName(name); err != nil {
			return nil, fmt.Errorf("broker: sasl.bootstrap-users-file %s line %d: %w", path, n, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("broker: sasl.bootstrap-users-file %s line %d: user %q listed twice", path, n, name)
		}
		seen[name] = true
		out = append(out, bootstrapUser{name, pass})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("broker: sasl.bootstrap-users-file %s: %w", path, err)
	}
	return out, nil
}

// bootstrapCommand computes the users' credentials with fresh salts, each
// PBKDF2 under gate (sasl.max-concurrent-hashes) until ctx ends.
func bootstrapCommand(ctx context.Context, users []bootstrapUser, gate *auth.HashGate) (metadata.BootstrapUsers, error) {
	var cmd metadata.BootstrapUsers
	for _, u := range users {
		for _, mech := range auth.ScramMechanisms() {
			salt := make([]byte, 32)
			if _, err := rand.Read(salt); err != nil {
				return cmd, fmt.Errorf("broker: bootstrap users: salt: %w", err)
			}
			var (
				c   auth.ScramCredential
				err error
			)
			if werr := gate.Do(ctx, func() { c, err = auth.NewScramCredential(mech, u.password, salt, bootstrapIterations) }); werr != nil {
				return cmd, fmt.Errorf("broker: bootstrap users: %w", werr)
			}
			if err != nil {
				return cmd, fmt.Errorf("broker: bootstrap users: %w", err)
			}
			cmd.Users = append(cmd.Users, metadata.ScramUpsert{User: u.name, Mechanism: mech, Credential: metadata.ScramCredential(c)})
		}
	}
	return cmd, nil
}

// applyBootstrapUsers proposes the bootstrap users once this node caught
// up with the metadata, unless the cluster applied them before. It
// retries until it succeeds, the flag is found set, or ctx ends.
func (b *Broker) applyBootstrapUsers(ctx context.Context, users []bootstrapUser) error {
	backoff := 50 * time.Millisecond
	for {
		if b.caughtUp.Load() {
			if b.store.FSM().UsersBootstrapped() {
				b.log.Info().Msg("bootstrap users: the cluster applied them before; the file is ignored")
				return nil
			}
			cmd, err := bootstrapCommand(ctx, users, b.hashes)
			if err != nil {
				return err
			}
			err = b.store.Apply(ctx, cmd)
			switch {
			case err == nil:
				b.log.Info().Int("users", len(users)).Msg("bootstrap users applied")
				return b.waitUsersApplied(ctx)
			case errors.Is(err, metadata.ErrPreconditionFailed):
				b.log.Info().Msg("bootstrap users: the cluster applied them before; the file is ignored")
				return b.waitUsersApplied(ctx)
			case errors.Is(err, metadata.ErrInvalidCommand):
				return fmt.Errorf("broker: bootstrap users: %w", err)
			}
			b.log.Warn().Err(err).Msg("bootstrap users: apply failed; retrying")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: bootstrap users: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// waitUsersApplied waits until this node's own metadata holds the
// bootstrap users: a commit (or the compare-and-set that found another
// node's) can come before this node applies that entry, and until then its
// SASL logins would fail for users the cluster has (the ready file waits
// for this).
func (b *Broker) waitUsersApplied(ctx context.Context) error {
	for !b.store.FSM().UsersBootstrapped() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: bootstrap users: wait for the local metadata: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// startBootstrapUsers applies the bootstrap users file, if configured:
// before serving on a single node (whose clients may authenticate as
// soon as it is ready), in the background on a cluster node, which may
// have to wait for the others to form the cluster. The returned wait
// blocks until that background apply ended, for at most
// bootstrapReadyWait (Serve calls it before writing the ready file, so a
// new cluster reports ready once its first users exist).
func (b *Broker) startBootstrapUsers() (wait func(), err error) {
	noWait := func() {}
	users := b.bootUsers
	b.bootUsers = nil // the passwords need not stay in memory
	if len(users) == 0 {
		return noWait, nil
	}
	if b.single() {
		ctx, cancel := context.WithTimeout(b.bgCtx, 30*time.Second)
		defer cancel()
		return noWait, b.applyBootstrapUsers(ctx, users)
	}
	done := make(chan struct{})
	b.bgWG.Add(1)
	go func() {
		defer b.bgWG.Done()
		defer close(done)
		if err := b.applyBootstrapUsers(b.bgCtx, users); err != nil && b.bgCtx.Err() == nil {
			b.log.Error().Err(err).Msg("bootstrap users not applied")
		}
	}()
	return func() {
		t := time.NewTimer(bootstrapReadyWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			b.log.Warn().Dur("waited", bootstrapReadyWait).Msg("bootstrap users not applied yet (the cluster has not formed?); reporting ready, still trying")
		case <-b.shutdown:
		}
	}, nil
}

// bootstrapReadyWait bounds how long a cluster node delays its ready
// file for the bootstrap users.
const bootstrapReadyWait = 30 * time.Second
