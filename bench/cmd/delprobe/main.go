// Command delprobe measures what deleting a large file does to fdatasync
// latency on the same file system, to choose storage.delete-rate and the
// deleter's step (issue 18, docs/io-and-scale.md section 2):
//
//	delprobe -dir DIR [-mb 3072] [-files 3] [-step 16] [-rate 128] [-secs 20]
//
// It writes files of mb MiB in all (fdatasync'ed), then, while one
// goroutine appends 4 KiB + fdatasync to another file in a loop (the
// group commit's pattern), deletes them: -rate 0 unlinks each at once;
// otherwise it shrinks each from its end with ftruncate in -step MiB
// steps at -rate MiB/s, as the deleter does. It prints fdatasync
// p50/p99/p99.9/max before (quiet) and during the delete, and how long the
// delete took, on one line.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", ".", "directory on the file system to probe")
	mb := flag.Int("mb", 3072, "MiB to delete in all")
	files := flag.Int("files", 3, "files the MiB are split into")
	step := flag.Int("step", 16, "MiB per ftruncate step")
	rate := flag.Float64("rate", 128, "MiB/s to delete at; 0: unlink at once")
	secs := flag.Float64("secs", 5, "seconds of fdatasync measured quiet, before the delete starts")
	flag.Parse()
	if err := run(*dir, *mb, *files, *step, *rate, *secs); err != nil {
		fmt.Fprintln(os.Stderr, "delprobe:", err)
		os.Exit(1)
	}
}

func run(dir string, mb, files, step int, rate, secs float64) error {
	var names []string
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := 0; i < files; i++ {
		name := filepath.Join(dir, fmt.Sprintf("delprobe-%d.dat", i))
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		for j := 0; j < mb/files; j++ {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			f.Close()
			return err
		}
		f.Close()
		names = append(names, name)
	}
	defer func() {
		for _, n := range names {
			os.Remove(n)
		}
	}()
	if err := syncDir(dir); err != nil {
		return err
	}
	wal, err := os.Create(filepath.Join(dir, "delprobe-wal.dat"))
	if err != nil {
		return err
	}
	defer os.Remove(wal.Name())
	defer wal.Close()

	var deleting atomic.Bool
	var stop atomic.Bool
	var lats, quiet []time.Duration
	done := make(chan error, 1)
	go func() {
		page := make([]byte, 4096)
		for !stop.Load() {
			t0 := time.Now()
			if _, err := wal.Write(page); err != nil {
				done <- err
				return
			}
			if err := unix.Fdatasync(int(wal.Fd())); err != nil {
				done <- err
				return
			}
			if deleting.Load() {
				lats = append(lats, time.Since(t0))
			} else {
				quiet = append(quiet, time.Since(t0))
			}
		}
		done <- nil
	}()
	time.Sleep(time.Duration(secs * float64(time.Second)))
	deleting.Store(true)
	start := time.Now()
	if rate <= 0 {
		for _, n := range names {
			if err := os.Remove(n); err != nil {
				return err
			}
		}
	} else {
		stepB := int64(step) << 20
		per := time.Duration(float64(stepB) / (rate * (1 << 20)) * float64(time.Second))
		next := time.Now()
		for _, n := range names {
			f, err := os.OpenFile(n, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			for size := fi.Size(); size > stepB; size -= stepB {
				next = next.Add(per)
				time.Sleep(time.Until(next))
				if err := f.Truncate(size - stepB); err != nil {
					return err
				}
			}
			f.Close()
			next = next.Add(per)
			time.Sleep(time.Until(next))
			if err := os.Remove(n); err != nil {
				return err
			}
		}
	}
	took := time.Since(start)
	// Keep measuring a little past the last unlink: the journal may
	// commit the last frees after it returns.
	time.Sleep(time.Second)
	stop.Store(true)
	if err := <-done; err != nil {
		return err
	}
	names = nil
	fmt.Printf("rate_mibps=%g step_mib=%d mb=%d delete_s=%.1f quiet: %s during: %s\n", rate, step, mb, took.Seconds(), quantiles(quiet), quantiles(lats))
	return nil
}

func quantiles(lats []time.Duration) string {
	if len(lats) == 0 {
		return "fsyncs=0"
	}
	slices.Sort(lats)
	q := func(p float64) int64 { return lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds() }
	return fmt.Sprintf("fsyncs=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d", len(lats), q(0.5), q(0.99), q(0.999), lats[len(lats)-1].Microseconds())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
