package cleaner

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
)

// Key map sizing and spill file layout.
const (
	// DefaultMapBytes is the key map memory when Params.MapBytes is 0.
	DefaultMapBytes = 64 << 20
	// entryBytes bounds the memory of one in-memory key map entry: a
	// map[[16]byte]int64 measured 35 to 56 bytes per entry on Go 1.26
	// (control bytes, load factor, doubling growth), plus the 24 bytes per
	// entry a spill needs to sort them.
	entryBytes = 80
	// spillEntrySize is one (hash, offset) entry in a spill file: the
	// 16-byte hash then the offset as a big-endian int64. Files are sorted
	// by hash (bytewise), each hash at most once.
	spillEntrySize = hashSize + 8
	// indexEvery is the number of merged-file entries per block of the
	// in-memory sparse index (a 3 KiB read per look-up).
	indexEvery = 128
	// mergeFanIn bounds the files open at once while merging runs.
	mergeFanIn = 16
	// spillBufSize is the buffer of each spill file reader and writer.
	spillBufSize = 64 << 10
)

type keyHash = [hashSize]byte

// keyMap maps key hashes to the highest offset seen. It lives in memory
// until it would hold more than maxEntries; then each full map is written
// as a sorted run to a private directory inside dir, and finish merges the
// runs into one sorted file of (hash, highest offset), looked up through a
// sparse index and ReadAt. Look-ups give the same answers either way.
type keyMap struct {
	mem        map[keyHash]int64
	maxEntries int
	dir        string // Params.SpillDir
	createdDir bool   // dir did not exist: close removes it
	tmp        string // private directory inside dir, once spilled
	runs       []string
	nextRun    int

	// After finish, when spilled:
	merged  *os.File
	entries int64
	index   []keyHash // first hash of each block of indexEvery entries
	block   []byte    // the block last read
	blockAt int       // its index in index, -1 if none
}

func newKeyMap(mapBytes int64, dir string) *keyMap {
	if mapBytes <= 0 {
		mapBytes = DefaultMapBytes
	}
	return &keyMap{
		mem:        make(map[keyHash]int64),
		maxEntries: int(max(1, mapBytes/entryBytes)),
		dir:        dir,
		blockAt:    -1,
	}
}

func (k *keyMap) spilled() bool { return k.tmp != "" }

// put records off for h if it is above the offset recorded for h. Offsets
// arrive in increasing order but for a transaction's, which arrive with
// its COMMIT; runs are merged by the highest offset.
func (k *keyMap) put(h keyHash, off int64) error {
	if cur, ok := k.mem[h]; ok && cur >= off {
		return nil
	}
	k.mem[h] = off
	if len(k.mem) >= k.maxEntries {
		return k.spillRun()
	}
	return nil
}

// spillRun writes the in-memory map as a sorted run and empties it.
func (k *keyMap) spillRun() error {
	if len(k.mem) == 0 {
		return nil
	}
	if k.tmp == "" {
		if k.dir == "" {
			return fmt.Errorf("cleaner: key map exceeds %d entries and no spill directory is set", k.maxEntries)
		}
		if _, err := os.Stat(k.dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(k.dir, 0o755); err != nil {
				return fmt.Errorf("cleaner: create spill directory: %w", err)
			}
			k.createdDir = true
		} else if err != nil {
			return fmt.Errorf("cleaner: spill directory: %w", err)
		}
		tmp, err := os.MkdirTemp(k.dir, "cleaner-spill-")
		if err != nil {
			return fmt.Errorf("cleaner: create spill directory: %w", err)
		}
		k.tmp = tmp
	}
	type entry struct {
		h   keyHash
		off int64
	}
	ents := make([]entry, 0, len(k.mem))
	for h, off := range k.mem {
		ents = append(ents, entry{h, off})
	}
	slices.SortFunc(ents, func(a, b entry) int { return bytes.Compare(a.h[:], b.h[:]) })
	path := k.runPath()
	err := writeFile(path, func(w *bufio.Writer) error {
		var buf [spillEntrySize]byte
		for _, e := range ents {
			copy(buf[:], e.h[:])
			binary.BigEndian.PutUint64(buf[hashSize:], uint64(e.off))
			if _, err := w.Write(buf[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cleaner: spill run %s: %w", filepath.Base(path), err)
	}
	k.runs = append(k.runs, path)
	clear(k.mem)
	return nil
}

func (k *keyMap) runPath() string {
	k.nextRun++
	return filepath.Join(k.tmp, fmt.Sprintf("run-%06d", k.nextRun))
}

// writeFile creates path, lets fill write it through a buffer, and closes
// it, returning the first error.
func writeFile(path string, fill func(w *bufio.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, spillBufSize)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// finish ends pass 1. If the map spilled, it writes what is left in
// memory as a last run, merges all runs into one file and indexes it.
func (k *keyMap) finish() error {
	if !k.spilled() {
		return nil
	}
	if err := k.spillRun(); err != nil {
		return err
	}
	k.mem = nil
	for len(k.runs) > mergeFanIn {
		out := k.runPath()
		if _, err := mergeRuns(k.runs[:mergeFanIn], out, nil); err != nil {
			return err
		}
		k.runs = append(k.runs[mergeFanIn:], out)
	}
	out := k.runPath()
	n, err := mergeRuns(k.runs, out, &k.index)
	if err != nil {
		return err
	}
	k.runs = nil
	k.entries = n
	f, err := os.Open(out)
	if err != nil {
		return fmt.Errorf("cleaner: open merged key map: %w", err)
	}
	k.merged = f
	k.block = make([]byte, indexEvery*spillEntrySize)
	return nil
}

// runReader reads one sorted run.
type runReader struct {
	f    *os.File
	r    *bufio.Reader
	cur  [spillEntrySize]byte
	done bool
}

func (rr *runReader) next() error {
	_, err := io.ReadFull(rr.r, rr.cur[:])
	if err == io.EOF {
		rr.done = true
		return nil
	}
	return err
}

// mergeRuns merges the sorted runs ins into out, keeping for each hash the
// highest offset, and removes ins. If index is not nil it receives the
// first hash of every indexEvery entries of out. It returns out's entry
// count.
func mergeRuns(ins []string, out string, index *[]keyHash) (int64, error) {
	readers := make([]*runReader, 0, len(ins))
	defer func() {
		for _, rr := range readers {
			_ = rr.f.Close() // read-only; read errors are reported by next
		}
	}()
	for _, p := range ins {
		f, err := os.Open(p)
		if err != nil {
			return 0, fmt.Errorf("cleaner: merge key map runs: %w", err)
		}
		rr := &runReader{f: f, r: bufio.NewReaderSize(f, spillBufSize)}
		readers = append(readers, rr)
		if err := rr.next(); err != nil {
			return 0, fmt.Errorf("cleaner: merge key map runs: read %s: %w", filepath.Base(p), err)
		}
	}
	var n int64
	err := writeFile(out, func(w *bufio.Writer) error {
		var buf [spillEntrySize]byte
		for {
			var minH []byte
			for _, rr := range readers {
				if !rr.done && (minH == nil || bytes.Compare(rr.cur[:hashSize], minH) < 0) {
					minH = rr.cur[:hashSize]
				}
			}
			if minH == nil {
				return nil
			}
			copy(buf[:hashSize], minH)
			best := int64(-1)
			for _, rr := range readers {
				if rr.done || !bytes.Equal(rr.cur[:hashSize], buf[:hashSize]) {
					continue
				}
				best = max(best, int64(binary.BigEndian.Uint64(rr.cur[hashSize:])))
				if err := rr.next(); err != nil {
					return fmt.Errorf("read run: %w", err)
				}
			}
			binary.BigEndian.PutUint64(buf[hashSize:], uint64(best))
			if index != nil && n%indexEvery == 0 {
				*index = append(*index, keyHash(buf[:hashSize]))
			}
			if _, err := w.Write(buf[:]); err != nil {
				return err
			}
			n++
		}
	})
	if err != nil {
		return 0, fmt.Errorf("cleaner: merge key map runs into %s: %w", filepath.Base(out), err)
	}
	for _, p := range ins {
		if err := os.Remove(p); err != nil {
			return 0, fmt.Errorf("cleaner: merge key map runs: %w", err)
		}
	}
	return n, nil
}

// get returns the highest offset recorded for h.
func (k *keyMap) get(h keyHash) (int64, bool, error) {
	if k.merged == nil {
		off, ok := k.mem[h]
		return off, ok, nil
	}
	i := sort.Search(len(k.index), func(i int) bool { return bytes.Compare(k.index[i][:], h[:]) > 0 }) - 1
	if i < 0 {
		return 0, false, nil
	}
	if i != k.blockAt {
		start := int64(i) * indexEvery
		cnt := min(int64(indexEvery), k.entries-start)
		k.blockAt = -1
		k.block = k.block[:cnt*spillEntrySize]
		if _, err := k.merged.ReadAt(k.block, start*spillEntrySize); err != nil {
			return 0, false, fmt.Errorf("cleaner: read merged key map block %d: %w", i, err)
		}
		k.blockAt = i
	}
	cnt := len(k.block) / spillEntrySize
	j := sort.Search(cnt, func(j int) bool {
		return bytes.Compare(k.block[j*spillEntrySize:j*spillEntrySize+hashSize], h[:]) >= 0
	})
	if j == cnt || !bytes.Equal(k.block[j*spillEntrySize:j*spillEntrySize+hashSize], h[:]) {
		return 0, false, nil
	}
	return int64(binary.BigEndian.Uint64(k.block[j*spillEntrySize+hashSize:])), true, nil
}

// close releases the map and removes every spill file, the private
// directory, and dir itself if this map created it and it is empty.
func (k *keyMap) close() error {
	var err error
	if k.merged != nil {
		err = k.merged.Close()
		k.merged = nil
	}
	if k.tmp != "" {
		if rerr := os.RemoveAll(k.tmp); rerr != nil && err == nil {
			err = rerr
		}
		k.tmp = ""
	}
	if k.createdDir {
		// Another Clean sharing dir may have found it missing too, and
		// may still have its private directory in it (or have removed
		// dir already): then dir is left to the last one out.
		rerr := os.Remove(k.dir)
		if rerr != nil && !errors.Is(rerr, syscall.ENOTEMPTY) && !errors.Is(rerr, syscall.EEXIST) && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
		k.createdDir = false
	}
	if err != nil {
		return fmt.Errorf("cleaner: remove spill files: %w", err)
	}
	return nil
}
