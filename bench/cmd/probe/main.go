// Command probe measures this machine's limits for bench/compare.sh:
//
//	probe fsync -dir DIR [-n 500] [-size 4096] [-ahead BYTES]
//	    appends size-byte writes to a file in DIR, each followed by
//	    fdatasync, and prints p50/p99/max latency, syncs/s and CPU per
//	    operation; -ahead reserves blocks that far ahead with fallocate,
//	    as a segment under fsync=always does (storage/prealloc.go);
//	probe tcp [-secs 3] [-size 1048576]
//	    streams size-byte writes over one loopback TCP connection and
//	    prints MB/s (2^20 bytes);
//	probe pagecache -dir DIR [-mb 512] [-size 262144]
//	    CPU-seconds per GiB of buffered writes (pwrite) into a new file,
//	    whose pages the kernel must allocate, and then of rewriting the
//	    same, still cached pages. On a virtual machine whose free memory
//	    is handed back to the host (virtio-balloon free page reporting)
//	    the first is several times the second: every newly allocated
//	    page is a host page fault. That cost bounds any broker that
//	    writes through the page cache, Tusk and kfake alike.
//
// Output is one line of key=value pairs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe fsync|tcp [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fsync":
		err = fsyncProbe(os.Args[2:])
	case "tcp":
		err = tcpProbe(os.Args[2:])
	case "pagecache":
		err = pagecacheProbe(os.Args[2:])
	default:
		err = fmt.Errorf("unknown probe %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func fsyncProbe(args []string) error {
	fs := flag.NewFlagSet("fsync", flag.ExitOnError)
	dir := fs.String("dir", ".", "directory on the disk to probe")
	n := fs.Int("n", 500, "write+fdatasync operations")
	size := fs.Int("size", 4096, "bytes per write")
	ahead := fs.Int64("ahead", 0, "reserve blocks this far ahead of the writes with fallocate(2), as a Tusk segment under fsync=always does (0: plain appends)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name := filepath.Join(*dir, "fsyncprobe.dat")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(name)
	defer f.Close()
	buf := make([]byte, *size)
	for i := range buf {
		buf[i] = byte(i)
	}
	lat := make([]time.Duration, 0, *n)
	var reserved int64
	cpu0, err := cpuSeconds()
	if err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		t := time.Now()
		off := int64(i) * int64(*size)
		if end := off + int64(*size); *ahead > 0 && end > reserved {
			if err := unix.Fallocate(int(f.Fd()), 0, reserved, end-reserved+*ahead); err != nil {
				return fmt.Errorf("fsync probe: fallocate: %w", err)
			}
			reserved = end + *ahead
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return fmt.Errorf("fsync probe: write: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("fsync probe: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	total := time.Since(start)
	cpu1, err := cpuSeconds()
	if err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	fmt.Printf("ops=%d size=%d ahead=%d p50_us=%.0f p99_us=%.0f max_us=%.0f syncs_per_s=%.0f cpu_us_per_op=%.0f\n",
		*n, *size, *ahead, q(0.5), q(0.99), q(1), float64(*n)/total.Seconds(), (cpu1-cpu0)*1e6/float64(*n))
	return nil
}

func pagecacheProbe(args []string) error {
	fs := flag.NewFlagSet("pagecache", flag.ExitOnError)
	dir := fs.String("dir", ".", "directory on the disk to probe")
	mb := fs.Int("mb", 512, "MiB to write")
	size := fs.Int("size", 256<<10, "bytes per write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name := filepath.Join(*dir, "pagecacheprobe.dat")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("pagecache probe: %w", err)
	}
	defer os.Remove(name)
	defer f.Close()
	buf := make([]byte, *size)
	for i := range buf {
		buf[i] = byte(i)
	}
	total := int64(*mb) << 20
	pass := func() (float64, error) {
		c0, err := cpuSeconds()
		if err != nil {
			return 0, err
		}
		for off := int64(0); off < total; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				return 0, fmt.Errorf("pagecache probe: write: %w", err)
			}
		}
		c1, err := cpuSeconds()
		return (c1 - c0) / (float64(total) / (1 << 30)), err
	}
	fresh, err := pass()
	if err != nil {
		return err
	}
	cached, err := pass()
	if err != nil {
		return err
	}
	fmt.Printf("mb=%d size=%d fresh_cpu_s_per_gb=%.2f cached_cpu_s_per_gb=%.2f\n", *mb, *size, fresh, cached)
	return nil
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() (float64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
			return nil
		}
	}
}

func tcpProbe(args []string) error {
	fs := flag.NewFlagSet("tcp", flag.ExitOnError)
	secs := fs.Float64("secs", 3, "seconds to stream")
	size := fs.Int("size", 1<<20, "bytes per write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("tcp probe: %w", err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	var received int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		received, err = io.Copy(io.Discard, c)
		got <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("tcp probe: %w", err)
	}
	buf := make([]byte, *size)
	start := time.Now()
	deadline := start.Add(time.Duration(*secs * float64(time.Second)))
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return fmt.Errorf("tcp probe: write: %w", err)
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("tcp probe: close: %w", err)
	}
	if err := <-got; err != nil {
		return fmt.Errorf("tcp probe: read: %w", err)
	}
	el := time.Since(start)
	fmt.Printf("bytes=%d secs=%.2f mbps=%.1f\n", received, el.Seconds(), float64(received)/(1<<20)/el.Seconds())
	return nil
}
