package metadata

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Store applies commands durably and exposes the resulting FSM for reads.
type Store interface {
	// Apply commits c; it returns once c is durable (or failed its
	// preconditions, changing nothing).
	Apply(ctx context.Context, c Command) error
	// FSM is the local replica of the state, for reads.
	FSM() *FSM
	Close() error
}

// LocalStore is the single-node Store: it applies commands to an FSM and
// durably rewrites the snapshot file before returning.
type LocalStore struct {
	path string
	fsm  *FSM

	mu     sync.Mutex // serializes Apply and guards closed
	closed bool
}

const snapshotFile = "metadata.json"

// OpenLocal opens (or creates) the store in dir.
func OpenLocal(dir string) (*LocalStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("metadata: create %s: %w", dir, err)
	}
	s := &LocalStore{path: filepath.Join(dir, snapshotFile), fsm: NewFSM()}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("metadata: read %s: %w", s.path, err)
	default:
		if err := s.fsm.Restore(b); err != nil {
			return nil, fmt.Errorf("metadata: load %s: %w", s.path, err)
		}
	}
	return s, nil
}

// FSM returns the state machine.
func (s *LocalStore) FSM() *FSM { return s.fsm }

// Apply applies c and persists the new state.
func (s *LocalStore) Apply(ctx context.Context, c Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("metadata: store closed")
	}
	before, err := s.fsm.Snapshot()
	if err != nil {
		return err
	}
	if err := s.fsm.Apply(c); err != nil {
		return err
	}
	after, err := s.fsm.Snapshot()
	if err == nil {
		err = writeFileAtomic(s.path, after)
	}
	if err != nil {
		// Not durable: roll the in-memory state back so readers never see
		// a change that a crash would undo.
		if rerr := s.fsm.Restore(before); rerr != nil {
			return fmt.Errorf("metadata: apply %s: %w (rollback: %v)", c.kind(), err, rerr)
		}
		return fmt.Errorf("metadata: apply %s: %w", c.kind(), err)
	}
	return nil
}

// Close stops accepting commands.
func (s *LocalStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// writeFileAtomic replaces path with b durably.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("open dir of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir of %s: %w", path, err)
	}
	return nil
}
