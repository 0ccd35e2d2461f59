package storage

import (
	"errors"
	"syscall"
	"testing"
)

// TestAutoOneFileSyncSkipsRing: under storage.io=auto a group commit of
// one file calls fdatasync itself (the ring would add its reaper's
// wake-up and batch nothing); a commit of several goes through the ring.
// Shown by closing the ring first: the one-file commit still succeeds,
// the two-file commit fails with the ring's error. An injected fault
// still reaches the one-file commit.
func TestAutoOneFileSyncSkipsRing(t *testing.T) {
	skipWithoutUring(t)
	var inject syscall.Errno
	be, _, err := newBackend(IOAuto, func(op, path string, size int) (int, syscall.Errno) { return size, inject })
	if err != nil {
		t.Fatal(err)
	}
	b := be.(*uringBackend)
	dir := t.TempDir()
	open := func(name string) File { return b.wrap(openOSFile(t, dir, name)) }
	a, c := open("a"), open("c")
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 1)
	b.syncFiles([]File{a}, errs)
	if errs[0] != nil {
		t.Fatalf("one-file commit after the ring closed: %v, want nil (no ring)", errs[0])
	}
	errs = make([]error, 2)
	b.syncFiles([]File{a, c}, errs)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("two-file commit, file %d: nil after the ring closed, want the ring's error", i)
		}
	}
	inject = syscall.EIO
	errs = make([]error, 1)
	b.syncFiles([]File{a}, errs)
	if !errors.Is(errs[0], syscall.EIO) {
		t.Fatalf("one-file commit with an injected EIO: %v", errs[0])
	}
}
