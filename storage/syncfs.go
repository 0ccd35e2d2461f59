package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// SyncMethod selects how a group commit of several segment files makes
// them durable (config storage.commit-sync; docs/io-and-scale.md, "One
// flush per group commit").
type SyncMethod int

const (
	// SyncAuto makes a group commit of two or more segment files durable
	// with one syncfs(2) of the data directory's file system: one
	// journal commit and one device cache flush, where an fdatasync per
	// file costs a flush each. A commit of one file, files on another
	// file system, and kernels whose syncfs does not report writeback
	// errors (before Linux 5.8) use fdatasync per file.
	SyncAuto SyncMethod = iota
	// SyncFdatasync always fdatasyncs each file.
	SyncFdatasync
)

// ParseSyncMethod parses "auto" or "fdatasync".
func ParseSyncMethod(s string) (SyncMethod, error) {
	switch s {
	case "auto":
		return SyncAuto, nil
	case "fdatasync":
		return SyncFdatasync, nil
	}
	return 0, fmt.Errorf("storage: commit sync %q: want auto or fdatasync", s)
}

func (m SyncMethod) String() string {
	switch m {
	case SyncAuto:
		return "auto"
	case SyncFdatasync:
		return "fdatasync"
	}
	return "SyncMethod(" + strconv.Itoa(int(m)) + ")"
}

// syncfsBackend is an ioBackend whose group commits of several OS files
// on the data directory's file system are one syncfs of that file system.
//
// Durability: syncfs writes back every dirty page and inode of the file
// system, waits for them, commits the journal and flushes the device's
// cache, as fdatasync does for one file; what it covers is a superset.
// Errors: since Linux 5.8 syncfs reports a writeback error that hit any
// file of the file system since the last syncfs on the same descriptor.
// It cannot say which file: on an error every file of the commit is
// fdatasynced on its own (each reports its own error), and if none does,
// every file of the commit fails with the syncfs error. An error
// elsewhere on the file system thus fences the commit's logs: nothing
// proves their bytes durable.
type syncfsBackend struct {
	ioBackend
	dir *os.File // the data directory: syncfs's descriptor
	dev uint64   // its file system
	// syncfs is unix.Syncfs (tests replace it to inject errors).
	syncfs func(fd int) error
	calls  *atomic.Int64 // syncfs calls (engine stats)
	// dirty reports the machine's dirty page-cache bytes (/proc/meminfo
	// Dirty; ok false: unknown). Above syncfsMaxDirty a commit is
	// fdatasync per file: syncfs would also write back that much of
	// other files (another writer on the same file system, or on any:
	// Dirty is machine-wide). Syncer goroutine only.
	dirty   func() (int64, bool)
	meminfo *os.File   // /proc/meminfo, for readDirty
	buf     [4096]byte // readDirty's buffer (Dirty is in the first lines)
}

var dirtyKey = []byte("\nDirty:")

// syncfsMaxDirty bounds the dirty page cache under which a group commit
// uses syncfs (see syncfsBackend.dirty): under fsync=always this node's
// own unsynced appends are what arrived during one commit (well under a
// MiB at 100 MB/s here), so more dirty data belongs to someone else or
// to an interval sync, whose commit is not on an acknowledgement's path.
const syncfsMaxDirty = 32 << 20

// withSyncfs wraps be for method on the file system of dir, or returns be
// and the reason syncfs is not used.
func withSyncfs(be ioBackend, method SyncMethod, fs FS, dir string, calls *atomic.Int64) (ioBackend, string) {
	if method != SyncAuto {
		return be, ""
	}
	if _, ok := fs.(osFS); !ok {
		return be, "" // a test file system: its files sync themselves
	}
	if !syncfsReportsErrors() {
		return be, "the kernel's syncfs does not report writeback errors (before Linux 5.8): fdatasync per file"
	}
	d, err := os.Open(dir)
	if err != nil {
		return be, fmt.Sprintf("open %s for syncfs: %v: fdatasync per file", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		_ = d.Close()
		return be, fmt.Sprintf("stat %s for syncfs: %v: fdatasync per file", dir, err)
	}
	// Without /proc/meminfo the guard is off: syncfs for every commit of
	// several files.
	b := &syncfsBackend{ioBackend: be, dir: d, dev: st.Dev, syncfs: unix.Syncfs, calls: calls, dirty: func() (int64, bool) { return 0, true }}
	if mi, err := os.Open("/proc/meminfo"); err == nil {
		b.meminfo = mi
		b.dirty = b.readDirty
	}
	return b, ""
}

// readDirty reads Dirty from /proc/meminfo (kept open, read from offset
// 0 each time).
func (b *syncfsBackend) readDirty() (int64, bool) {
	n, err := b.meminfo.ReadAt(b.buf[:], 0)
	if n == 0 && err != nil {
		return 0, false
	}
	return parseDirty(b.buf[:n])
}

// parseDirty finds "Dirty: N kB" in meminfo text (without allocating:
// it runs on every group commit of several files).
func parseDirty(mi []byte) (int64, bool) {
	i := bytes.Index(mi, dirtyKey)
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(mi[i+len(dirtyKey):], " ")
	n := 0
	var kb int64
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9' && n < 18; n++ {
		kb = kb*10 + int64(rest[n]-'0')
	}
	if n == 0 {
		return 0, false
	}
	return kb << 10, true
}

// syncfsReportsErrors reports whether this kernel's syncfs returns
// writeback errors (Linux 5.8, errseq on the superblock).
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
}

// releaseAtLeast reports whether a kernel release string ("6.18.44-fc")
// is at least major.minor.
func releaseAtLeast(rel string, wantMajor, wantMinor int) bool {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1][:digits(parts[1])])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > wantMajor || major == wantMajor && minor >= wantMinor
}

// digits is the length of s's leading run of decimal digits.
func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func (b *syncfsBackend) close() error {
	err := b.ioBackend.close()
	if cerr := b.dir.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("storage: close data directory: %w", cerr)
	}
	if b.meminfo != nil {
		_ = b.meminfo.Close() // read-only
	}
	return err
}

// onDev reports whether f is an OS file on the data directory's file
// system.
func (b *syncfsBackend) onDev(f File) bool {
	of, ok := f.(osFiler)
	if !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(of.osHandle().Fd()), &st); err != nil {
		return false
	}
	return st.Dev == b.dev
}

func (b *syncfsBackend) syncFiles(files []File, errs []error) {
	if len(files) < 2 {
		b.ioBackend.syncFiles(files, errs)
		return
	}
	var on, other []int
	for i, f := range files {
		if b.onDev(f) {
			on = append(on, i)
		} else {
			other = append(other, i)
		}
	}
	if dirty, ok := b.dirty(); len(on) < 2 || !ok || dirty > syncfsMaxDirty {
		b.ioBackend.syncFiles(files, errs)
		return
	}
	if len(other) > 0 {
		sub := make([]File, len(other))
		out := make([]error, len(other))
		for k, i := range other {
			sub[k] = files[i]
		}
		b.ioBackend.syncFiles(sub, out)
		for k, i := range other {
			errs[i] = out[k]
		}
	}
	b.calls.Add(1)
	err := b.syncfs(int(b.dir.Fd()))
	if err == nil {
		for _, i := range on {
			errs[i] = nil
		}
		return
	}
	err = fmt.Errorf("storage: syncfs %s: %w", b.dir.Name(), err)
	// Which file? Each one's own fdatasync reports its error.
	sub := make([]File, len(on))
	out := make([]error, len(on))
	for k, i := range on {
		sub[k] = files[i]
	}
	b.ioBackend.syncFiles(sub, out)
	found := false
	for k, i := range on {
		errs[i] = out[k]
		found = found || out[k] != nil
	}
	if !found {
		for _, i := range on {
			errs[i] = errors.Join(err, errNoFileReported)
		}
	}
}

// errNoFileReported: a syncfs failed and no file's own fdatasync said why.
var errNoFileReported = errors.New("no segment file's fdatasync reported the error, so none is known durable")
