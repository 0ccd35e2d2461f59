package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// benchModes are the backends the benchmarks compare.
func benchModes(b *testing.B) []IOMode {
	if _, _, err := newBackend(IOUring, nil); err != nil {
		b.Logf("io_uring unavailable: %v", err)
		return []IOMode{IOSyscall}
	}
	return []IOMode{IOSyscall, IOUring, IOAuto}
}

func benchEngine(b *testing.B, dir string, mode IOMode, p FsyncPolicy) *Engine {
	b.Helper()
	e, err := Open(Options{Dir: dir, Fsync: p, FsyncInterval: 10 * time.Millisecond, IO: mode, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkAppend appends ~1 KiB batches from 24 goroutines to 6 partitions
// and waits for each per the policy (fsync=always: the group commit). It
// reports fsyncs/s and how many appended batches shared each fsync.
func BenchmarkAppend(b *testing.B) {
	const partitions, writers = 6, 24
	for _, mode := range benchModes(b) {
		for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
			b.Run(fmt.Sprintf("io=%s/fsync=%s", mode, p), func(b *testing.B) {
				e := benchEngine(b, b.TempDir(), mode, p)
				defer e.Close()
				logs := make([]*Log, partitions)
				for i := range logs {
					l, err := e.OpenLog(TopicPartition{Topic: "bench", Partition: int32(i)}, LogConfig{SegmentBytes: 256 << 20, RetentionBytes: -1, RetentionMs: -1})
					if err != nil {
						b.Fatal(err)
					}
					logs[i] = l
				}
				proto := makeBatch(plain(1, 1000, 1, 1))
				b.SetBytes(int64(len(proto)))
				before := e.SyncStats()
				start := time.Now()
				var wg sync.WaitGroup
				var mu sync.Mutex
				left := b.N
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						l := logs[w%partitions]
						buf := append([]byte(nil), proto...)
						h, _ := validate(buf)
						for {
							mu.Lock()
							if left == 0 {
								mu.Unlock()
								return
							}
							left--
							mu.Unlock()
							res, err := l.Append(buf, h, 1)
							if err != nil {
								b.Error(err)
								return
							}
							if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				el := time.Since(start).Seconds()
				st := e.SyncStats()
				fsyncs := st.Fsyncs - before.Fsyncs
				b.ReportMetric(float64(fsyncs)/el, "fsyncs/s")
				if fsyncs > 0 {
					b.ReportMetric(float64(st.Appends-before.Appends)/float64(fsyncs), "batches/fsync")
					b.ReportMetric(float64(fsyncs)/float64(st.Commits-before.Commits), "fsyncs/commit")
				}
			})
		}
	}
}

// BenchmarkGroupCommitSync measures one group commit over n dirty files
// (a 4 KiB write each, then the backend's batched fdatasync): the syscall
// backend runs up to 4 fdatasyncs in parallel goroutines, uring submits all
// n in one io_uring_enter (io=uring also writes through the ring; io=auto
// writes with pwrite).
func BenchmarkGroupCommitSync(b *testing.B) {
	for _, mode := range benchModes(b) {
		for _, n := range []int{1, 6, 64} {
			b.Run(fmt.Sprintf("io=%s/files=%d", mode, n), func(b *testing.B) {
				be, _, err := newBackend(mode, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer be.close()
				dir := b.TempDir()
				files := make([]File, n)
				for i := range files {
					f, err := OSFS().OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_RDWR|os.O_CREATE, 0o644)
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					files[i] = be.wrap(f)
				}
				page := make([]byte, 4096)
				errs := make([]error, n)
				for i := 0; b.Loop(); i++ {
					for _, f := range files {
						if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
							b.Fatal(err)
						}
					}
					be.syncFiles(files, errs)
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "fsyncs/s")
			})
		}
	}
}

// BenchmarkRead reads 64 KiB from random offsets of a 64 MiB log in the
// page cache.
func BenchmarkRead(b *testing.B) {
	for _, mode := range benchModes(b) {
		b.Run("io="+mode.String(), func(b *testing.B) {
			e := benchEngine(b, b.TempDir(), mode, FsyncNever)
			defer e.Close()
			l, err := e.OpenLog(tp0, LogConfig{RetentionBytes: -1, RetentionMs: -1})
			if err != nil {
				b.Fatal(err)
			}
			proto := makeBatch(plain(4, 1000, 1, 1))
			h, _ := validate(proto)
			var n int64
			for l.Size() < 64<<20 {
				res, err := l.Append(proto, h, 1)
				if err != nil {
					b.Fatal(err)
				}
				n = res.LastOffset + 1
			}
			b.SetBytes(64 << 10)
			for i := 0; b.Loop(); i++ {
				off := int64(i*7919) % n
				if r, err := l.Read(off, 64<<10, true); err != nil || len(r.Data) == 0 {
					b.Fatal(err, len(r.Data))
				}
			}
		})
	}
}

// BenchmarkRecovery writes 256 MiB across 8 partitions (16 MiB segments),
// closes the engine and measures reopening every log (recovery scans and
// CRC-checks each active segment, and checks sealed segments' indexes).
func BenchmarkRecovery(b *testing.B) {
	const partitions, total = 8, 256 << 20
	for _, mode := range benchModes(b) {
		b.Run("io="+mode.String(), func(b *testing.B) {
			dir := b.TempDir()
			cfg := LogConfig{SegmentBytes: 16 << 20, RetentionBytes: -1, RetentionMs: -1}
			e := benchEngine(b, dir, mode, FsyncNever)
			proto := makeBatch(plain(16, 1000, 1, 1))
			h, _ := validate(proto)
			for p := 0; p < partitions; p++ {
				l, err := e.OpenLog(TopicPartition{Topic: "r", Partition: int32(p)}, cfg)
				if err != nil {
					b.Fatal(err)
				}
				for l.Size() < total/partitions {
					if _, err := l.Append(proto, h, 1); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(total)
			for b.Loop() {
				e := benchEngine(b, dir, mode, FsyncNever)
				tps, err := e.ListLogDirs()
				if err != nil || len(tps) != partitions {
					b.Fatal(err, len(tps))
				}
				for _, tp := range tps {
					if _, err := e.OpenLog(tp, cfg); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/(float64(total)/(1<<30)), "s/GB")
		})
	}
}
