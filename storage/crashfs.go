package storage

import (
	"bytes"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// CrashFS is an in-memory FS that remembers what a power loss would keep.
// For every file it holds the current content and the content as of the
// last Sync; for every directory the current entries and the durable ones
// (an entry created, renamed or removed becomes durable only when its parent
// directory is synced with SyncDir). Crash returns a new CrashFS holding only
// what was durable. Paths are slash-separated and cleaned; the root "/" is
// always durable.
//
// CrashFS is safe for concurrent use. It lives in a non-test file so that
// other packages' tests can use it.
type CrashFS struct {
	mu   sync.Mutex
	root *memNode
}

// memNode is a file or a directory (an inode). All fields are guarded by the
// owning CrashFS's mu.
type memNode struct {
	dir     bool
	data    []byte // current content
	synced  []byte // content as of the last Sync
	kids    map[string]*memNode
	durable map[string]*memNode // entries as of the last SyncDir
	modTime time.Time
}

func newDirNode() *memNode {
	return &memNode{dir: true, kids: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// NewCrashFS returns an empty CrashFS.
func NewCrashFS() *CrashFS { return &CrashFS{root: newDirNode()} }

// Crash simulates a power loss: it returns a new CrashFS holding exactly the
// durable state — synced file content reachable through durable directory
// entries. Unsynced writes are dropped. The receiver stays usable (and
// unchanged), so a still-running engine can be closed afterwards.
func (c *CrashFS) Crash() *CrashFS { return c.crash(nil) }

// CrashTorn is Crash, except that for every file whose current content
// extends its synced content it keeps a random prefix of the unsynced tail,
// as a torn write would. The choice is deterministic for a seed.
func (c *CrashFS) CrashTorn(seed int64) *CrashFS { return c.crash(rand.New(rand.NewSource(seed))) }

func (c *CrashFS) crash(rng *rand.Rand) *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[*memNode]*memNode{}
	var clone func(n *memNode) *memNode
	clone = func(n *memNode) *memNode {
		if m, ok := seen[n]; ok {
			return m
		}
		if n.dir {
			m := newDirNode()
			seen[n] = m
			names := make([]string, 0, len(n.durable))
			for name := range n.durable {
				names = append(names, name)
			}
			sort.Strings(names) // deterministic rng use
			for _, name := range names {
				k := clone(n.durable[name])
				m.kids[name] = k
				m.durable[name] = k
			}
			return m
		}
		content := append([]byte(nil), n.synced...)
		if rng != nil && len(n.data) > len(n.synced) && bytes.Equal(n.data[:len(n.synced)], n.synced) {
			tail := n.data[len(n.synced):]
			content = append(content, tail[:rng.Intn(len(tail)+1)]...)
		}
		m := &memNode{data: content, synced: append([]byte(nil), content...), modTime: n.modTime}
		seen[n] = m
		return m
	}
	return &CrashFS{root: clone(c.root)}
}

func splitPath(name string) []string {
	name = path.Clean("/" + name)
	if name == "/" {
		return nil
	}
	return strings.Split(name[1:], "/")
}

// lookup resolves name; c.mu must be held.
func (c *CrashFS) lookup(name string) (*memNode, error) {
	n := c.root
	for _, p := range splitPath(name) {
		if !n.dir {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		k, ok := n.kids[p]
		if !ok {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = k
	}
	return n, nil
}

// parent resolves the directory holding name and name's base; c.mu held.
func (c *CrashFS) parent(op, name string) (*memNode, string, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	d, err := c.lookup("/" + strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if !d.dir {
		return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return d, parts[len(parts)-1], nil
}

// OpenFile implements FS. It honours O_CREATE, O_EXCL and O_TRUNC.
func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.parent("open", name)
	if err != nil {
		return nil, err
	}
	n, ok := d.kids[base]
	switch {
	case ok && n.dir:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &memNode{modTime: time.Now()}
		d.kids[base] = n
	}
	if flag&os.O_TRUNC != 0 {
		n.data = n.data[:0]
	}
	return &memFile{fs: c, n: n, name: name, readOnly: flag&(os.O_WRONLY|os.O_RDWR) == 0}, nil
}

// Remove implements FS.
func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.parent("remove", name)
	if err != nil {
		return err
	}
	n, ok := d.kids[base]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && len(n.kids) > 0 {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrExist}
	}
	delete(d.kids, base)
	return nil
}

// RemoveAll implements FS.
func (c *CrashFS) RemoveAll(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.parent("removeall", name)
	if err != nil {
		return nil
	}
	delete(d.kids, base)
	return nil
}

// Rename implements FS.
func (c *CrashFS) Rename(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	od, ob, err := c.parent("rename", oldname)
	if err != nil {
		return err
	}
	n, ok := od.kids[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	nd, nb, err := c.parent("rename", newname)
	if err != nil {
		return err
	}
	if t, ok := nd.kids[nb]; ok && t.dir && len(t.kids) > 0 {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrExist}
	}
	delete(od.kids, ob)
	nd.kids[nb] = n
	return nil
}

// MkdirAll implements FS.
func (c *CrashFS) MkdirAll(name string, perm os.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.root
	for _, p := range splitPath(name) {
		k, ok := n.kids[p]
		if !ok {
			k = newDirNode()
			k.modTime = time.Now()
			n.kids[p] = k
		} else if !k.dir {
			return &os.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
		}
		n = k
	}
	return nil
}

// ReadDir implements FS.
func (c *CrashFS) ReadDir(name string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &os.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	names := make([]string, 0, len(n.kids))
	for k := range n.kids {
		names = append(names, k)
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS: the directory's current entries become durable.
func (c *CrashFS) SyncDir(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return err
	}
	if !n.dir {
		return &os.PathError{Op: "syncdir", Path: name, Err: fs.ErrInvalid}
	}
	n.durable = make(map[string]*memNode, len(n.kids))
	for k, v := range n.kids {
		n.durable[k] = v
	}
	return nil
}

// SyncAll makes everything durable: every file's content and every
// directory's entries (syncfs(2) on the whole file system).
func (c *CrashFS) SyncAll(string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var walk func(n *memNode)
	walk = func(n *memNode) {
		if !n.dir {
			n.synced = append(n.synced[:0], n.data...)
			return
		}
		n.durable = make(map[string]*memNode, len(n.kids))
		for k, v := range n.kids {
			n.durable[k] = v
			walk(v)
		}
	}
	walk(c.root)
	return nil
}

// Stat implements FS.
func (c *CrashFS) Stat(name string) (os.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(path.Clean("/" + name)), size: int64(len(n.data)), dir: n.dir, mod: n.modTime}, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
	mod  time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}

// memFile is an open handle on a memNode; like a POSIX descriptor it keeps
// working after the name is removed.
type memFile struct {
	fs       *CrashFS
	n        *memNode
	name     string
	readOnly bool
	mu       sync.Mutex
	closed   bool // guarded by mu
}

func (f *memFile) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if f.readOnly {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	end := off + int64(len(p))
	if end > int64(len(f.n.data)) {
		if end > int64(cap(f.n.data)) {
			grown := make([]byte, end, end*2)
			copy(grown, f.n.data)
			f.n.data = grown
		} else {
			old := len(f.n.data)
			f.n.data = f.n.data[:end]
			clear(f.n.data[old:])
		}
	}
	copy(f.n.data[off:], p)
	f.n.modTime = time.Now()
	return len(p), nil
}

// Allocate grows the file with zeros to off+n, as fallocate(2) does; like
// a write, the growth survives a crash only once synced.
func (f *memFile) Allocate(off, n int64) error {
	if err := f.check("fallocate"); err != nil {
		return err
	}
	if f.readOnly {
		return &os.PathError{Op: "fallocate", Path: f.name, Err: fs.ErrPermission}
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if end := off + n; end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *memFile) Sync() error {
	if err := f.check("sync"); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.n.synced = append(f.n.synced[:0], f.n.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	if err := f.check("truncate"); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size]
		return nil
	}
	f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	return nil
}

func (f *memFile) Size() (int64, error) {
	if err := f.check("stat"); err != nil {
		return 0, err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.n.data)), nil
}

func (f *memFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}
