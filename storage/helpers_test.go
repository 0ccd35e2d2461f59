package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/kafkaproto"
)

// batchSpec describes a test batch.
type batchSpec struct {
	records   int
	valueSize int
	ts        int64 // every record gets this timestamp
	pid       int64 // -1: not idempotent
	epoch     int16
	seq       int32
	fill      byte
}

// makeBatch hand-encodes a valid uncompressed v2 record batch.
func makeBatch(s batchSpec) []byte {
	if s.records == 0 {
		s.records = 1
	}
	var recs []byte
	for i := 0; i < s.records; i++ {
		var body []byte
		body = append(body, 0)                               // attributes
		body = binary.AppendVarint(body, 0)                  // timestamp delta
		body = binary.AppendVarint(body, int64(i))           // offset delta
		body = binary.AppendVarint(body, -1)                 // key: null
		body = binary.AppendVarint(body, int64(s.valueSize)) // value length
		for j := 0; j < s.valueSize; j++ {
			body = append(body, s.fill+byte(i*7+j))
		}
		body = binary.AppendVarint(body, 0) // headers
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	b := make([]byte, kafkaproto.BatchHeaderSize, kafkaproto.BatchHeaderSize+len(recs))
	binary.BigEndian.PutUint64(b[0:], 0)
	binary.BigEndian.PutUint32(b[8:], uint32(kafkaproto.BatchHeaderSize-12+len(recs)))
	binary.BigEndian.PutUint32(b[12:], 0xffffffff)
	b[16] = 2
	binary.BigEndian.PutUint16(b[21:], 0)
	binary.BigEndian.PutUint32(b[23:], uint32(s.records-1))
	binary.BigEndian.PutUint64(b[27:], uint64(s.ts))
	binary.BigEndian.PutUint64(b[35:], uint64(s.ts))
	binary.BigEndian.PutUint64(b[43:], uint64(s.pid))
	binary.BigEndian.PutUint16(b[51:], uint16(s.epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(s.seq))
	binary.BigEndian.PutUint32(b[57:], uint32(s.records))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// plain is a non-idempotent batch spec.
func plain(records, valueSize int, ts int64, fill byte) batchSpec {
	return batchSpec{records: records, valueSize: valueSize, ts: ts, pid: -1, epoch: -1, seq: -1, fill: fill}
}

// appendSpec validates and appends a batch; it returns the stored bytes.
func appendSpec(t testing.TB, l *Log, s batchSpec) (AppendResult, []byte) {
	t.Helper()
	b := makeBatch(s)
	h, err := kafkaproto.ValidateBatch(b)
	if err != nil {
		t.Fatalf("invalid test batch: %v", err)
	}
	res, err := l.Append(b, h, 7)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res, b
}

const testDir = "/data"

func openEngine(t testing.TB, fsys FS, policy FsyncPolicy, now func() time.Time) *Engine {
	t.Helper()
	mode, fault := ioOptsOf(fsys)
	e, err := Open(Options{Dir: testDir, Fsync: policy, FS: fsys, Logger: zerolog.Nop(), Now: now, RetentionCheckInterval: time.Hour, FsyncInterval: time.Millisecond,
		IO: mode, ioFault: fault})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

var tp0 = TopicPartition{Topic: "my-topic.x", Partition: 3}

func openLog(t testing.TB, e *Engine, cfg LogConfig) *Log {
	t.Helper()
	l, err := e.OpenLog(tp0, cfg)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	return l
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gateFS wraps an FS: Sync on .log files blocks while the gate is closed,
// and syncs are counted.
type gateFS struct {
	FS
	mu      sync.Mutex
	cond    *sync.Cond
	blocked bool // guarded by mu
	syncs   int  // guarded by mu
	waiting int  // guarded by mu: syncs blocked right now
	// only, if set before use, limits the gate to files named *only.
	only string
}

func newGateFS(inner FS) *gateFS {
	g := &gateFS{FS: inner}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gateFS) setBlocked(b bool) {
	g.mu.Lock()
	g.blocked = b
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *gateFS) counts() (syncs, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.syncs, g.waiting
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || len(name) < 4 || name[len(name)-4:] != ".log" || (g.only != "" && !strings.HasSuffix(name, g.only)) {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

type gateFile struct {
	File
	g *gateFS
}

func (f *gateFile) Sync() error {
	g := f.g
	g.mu.Lock()
	g.waiting++
	for g.blocked {
		g.cond.Wait()
	}
	g.waiting--
	g.syncs++
	g.mu.Unlock()
	return f.File.Sync()
}

// splitCheck verifies read data: whole valid batches, the first containing
// off, contiguous after it.
func splitCheck(data []byte, off int64, last *int64) error {
	first := true
	return kafkaproto.SplitBatches(data, func(b []byte, h kafkaproto.BatchHeader) error {
		if first && (h.BaseOffset > off || h.LastOffset() < off) {
			return fmt.Errorf("first batch %d-%d does not hold %d", h.BaseOffset, h.LastOffset(), off)
		}
		if !first && h.BaseOffset != *last+1 {
			return fmt.Errorf("batch at %d after %d", h.BaseOffset, *last)
		}
		first = false
		*last = h.LastOffset()
		return kafkaproto.VerifyCRC(b, &h)
	})
}

func validate(b []byte) (kafkaproto.BatchHeader, error) { return kafkaproto.ValidateBatch(b) }
