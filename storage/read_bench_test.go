package storage

import (
	"io"
	"net"
	"testing"

	"github.com/rs/zerolog"
)

// benchLog fills a log on the real file system with ~64 MiB of 16 KiB
// batches (16 records of 1 KiB) and returns it with its end offset.
func benchLog(b *testing.B) (*Log, int64) {
	b.Helper()
	e, err := Open(Options{Dir: b.TempDir(), Fsync: FsyncNever, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := e.Close(); err != nil {
			b.Error(err)
		}
	})
	l, err := e.OpenLog(tp0, LogConfig{SegmentBytes: 32 << 20, RetentionBytes: -1, RetentionMs: -1})
	if err != nil {
		b.Fatal(err)
	}
	for l.Size() < 64<<20 {
		appendSpec(b, l, plain(16, 1024, 1, 'a'))
	}
	return l, l.LogEndOffset()
}

// benchReads reads the log sequentially in fetch-sized (1 MiB) steps,
// wrapping around, with read returning the bytes it got and the next
// offset.
func benchReads(b *testing.B, leo int64, read func(off int64) (int64, int64)) {
	b.SetBytes(1 << 20)
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		n, next := read(off)
		if n == 0 {
			b.Fatalf("no data at %d", off)
		}
		off = next
		if off >= leo {
			off = 0
		}
	}
}

// BenchmarkReadSequential compares the copying read (pread into a new
// buffer) with the zero-copy read (locate and open a file section), and
// with sending that section over loopback TCP (sendfile).
func BenchmarkReadSequential(b *testing.B) {
	const batchRecords = 16
	b.Run("copy", func(b *testing.B) {
		l, leo := benchLog(b)
		benchReads(b, leo, func(off int64) (int64, int64) {
			r, err := l.Read(off, 1<<20, true)
			if err != nil {
				b.Fatal(err)
			}
			return int64(len(r.Data)), off + int64(len(r.Data)/(61+batchRecords*1034))*batchRecords
		})
	})
	b.Run("section", func(b *testing.B) {
		l, leo := benchLog(b)
		benchReads(b, leo, func(off int64) (int64, int64) {
			r, err := l.ReadSection(off, 1<<20, true)
			if err != nil || r.Section == nil {
				b.Fatal(err)
			}
			n := r.Section.Len()
			if err := r.Section.Close(); err != nil {
				b.Fatal(err)
			}
			return n, off + n/(61+batchRecords*1034)*batchRecords
		})
	})
	b.Run("sendfile", func(b *testing.B) {
		l, leo := benchLog(b)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(io.Discard, c) //nolint:errcheck // the drain ends when the sender closes
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchReads(b, leo, func(off int64) (int64, int64) {
			r, err := l.ReadSection(off, 1<<20, true)
			if err != nil || r.Section == nil {
				b.Fatal(err)
			}
			n, err := r.Section.WriteTo(c)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Section.Close(); err != nil {
				b.Fatal(err)
			}
			return n, off + n/(61+batchRecords*1034)*batchRecords
		})
	})
}
