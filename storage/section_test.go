package storage

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/kafkaproto"
)

// sectionModel is what was appended: each batch with its segment.
type sectionModel struct {
	batches [][]byte
	bases   []int64
	lasts   []int64
	segs    []int64 // segment base of each batch
}

// want returns the bytes Read must return for (off, max, minOne).
func (m *sectionModel) want(off int64, maxBytes int, minOne bool) []byte {
	i := 0
	for i < len(m.batches) && m.lasts[i] < off {
		i++
	}
	if i == len(m.batches) {
		return nil
	}
	var out []byte
	for j := i; j < len(m.batches) && m.segs[j] == m.segs[i]; j++ {
		if len(out)+len(m.batches[j]) > maxBytes {
			if j == i && minOne {
				out = append(out, m.batches[j]...)
			}
			break
		}
		out = append(out, m.batches[j]...)
	}
	return out
}

func openOSLog(t *testing.T, cfg LogConfig) (*Engine, *Log) {
	t.Helper()
	e, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncNever, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	l, err := e.OpenLog(tp0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, l
}

// fillModel appends batches of varying sizes, rolling segments and
// indexing densely.
func fillModel(t *testing.T, l *Log, n int) *sectionModel {
	t.Helper()
	m := &sectionModel{}
	for i := 0; i < n; i++ {
		res, b := appendSpec(t, l, plain(1+i%4, 10+(i*37)%300, 1, byte(i)))
		m.batches = append(m.batches, b)
		m.bases = append(m.bases, res.BaseOffset)
		m.lasts = append(m.lasts, res.LastOffset)
	}
	l.mu.Lock()
	segs := make([]*segment, len(l.segs))
	copy(segs, l.segs)
	l.mu.Unlock()
	for _, base := range m.bases {
		s := 0
		for s+1 < len(segs) && segs[s+1].base <= base {
			s++
		}
		m.segs = append(m.segs, segs[s].base)
	}
	if len(segs) < 3 {
		t.Fatalf("only %d segments; the test wants several", len(segs))
	}
	return m
}

func TestReadSectionMatchesRead(t *testing.T) {
	_, l := openOSLog(t, LogConfig{SegmentBytes: 8 << 10, IndexIntervalBytes: 700, RetentionBytes: -1, RetentionMs: -1})
	m := fillModel(t, l, 120)
	leo := l.LogEndOffset()
	for off := int64(0); off <= leo; off++ {
		for _, maxBytes := range []int{0, 1, 100, 500, 1000, 3000, 9000, 1 << 20} {
			for _, minOne := range []bool{false, true} {
				want := m.want(off, maxBytes, minOne)
				wantNext := int64(0) // the offset after the last batch
				if err := kafkaproto.SplitBatches(want, func(_ []byte, h kafkaproto.BatchHeader) error {
					wantNext = h.LastOffset() + 1
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				r, err := l.Read(off, maxBytes, minOne)
				if err != nil {
					t.Fatalf("read(%d,%d,%v): %v", off, maxBytes, minOne, err)
				}
				if !bytes.Equal(r.Data, want) {
					t.Fatalf("read(%d,%d,%v): %d bytes, model says %d", off, maxBytes, minOne, len(r.Data), len(want))
				}
				if len(want) > 0 && r.NextOffset != wantNext {
					t.Fatalf("read(%d,%d,%v): next offset %d, want %d", off, maxBytes, minOne, r.NextOffset, wantNext)
				}
				s, err := l.ReadSection(off, maxBytes, minOne)
				if err != nil {
					t.Fatalf("read section(%d,%d,%v): %v", off, maxBytes, minOne, err)
				}
				if s.Data != nil {
					t.Fatalf("read section(%d,%d,%v): copied %d bytes on OSFS", off, maxBytes, minOne, len(s.Data))
				}
				var got []byte
				if s.Section != nil {
					var buf bytes.Buffer
					if _, err := s.Section.WriteTo(&buf); err != nil {
						t.Fatal(err)
					}
					if err := s.Section.Close(); err != nil {
						t.Fatal(err)
					}
					got = buf.Bytes()
				}
				if !bytes.Equal(got, want) || s.HighWatermark != r.HighWatermark || s.LogStartOffset != r.LogStartOffset || (len(want) > 0 && s.NextOffset != wantNext) {
					t.Fatalf("read section(%d,%d,%v): %d bytes, model says %d", off, maxBytes, minOne, len(got), len(want))
				}
			}
		}
	}
}

// A section stays readable after retention deletes its segment: its handle
// keeps the unlinked file alive.
func TestSectionSurvivesSegmentDelete(t *testing.T) {
	_, l := openOSLog(t, LogConfig{SegmentBytes: 8 << 10, IndexIntervalBytes: 700, RetentionBytes: -1, RetentionMs: -1})
	m := fillModel(t, l, 120)
	want := m.want(0, 1<<20, true)
	r, err := l.ReadSection(0, 1<<20, true)
	if err != nil || r.Section == nil {
		t.Fatalf("read section: %v, %+v", err, r)
	}
	defer r.Section.Close()
	if _, err := l.DeleteRecordsBefore(l.HighWatermark()); err != nil {
		t.Fatal(err)
	}
	if r2, err := l.ReadSection(0, 1<<20, true); err == nil {
		t.Fatalf("read below the new log start: %+v", r2)
	}
	got, err := r.Section.Bytes()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("section after delete: %v, %d bytes, want %d", err, len(got), len(want))
	}
}

// Writing a section to a TCP connection (sendfile) delivers its bytes.
func TestSectionToTCP(t *testing.T) {
	_, l := openOSLog(t, LogConfig{SegmentBytes: 8 << 10, IndexIntervalBytes: 700, RetentionBytes: -1, RetentionMs: -1})
	m := fillModel(t, l, 120)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, off := range []int64{0, 7, 100} {
		r, err := l.ReadSection(off, 4000, true)
		if err != nil || r.Section == nil {
			t.Fatalf("read section at %d: %v", off, err)
		}
		if _, err := r.Section.WriteTo(c.(*net.TCPConn)); err != nil {
			t.Fatal(err)
		}
		if err := r.Section.Close(); err != nil {
			t.Fatal(err)
		}
		want = append(want, m.want(off, 4000, true)...)
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, want %d", len(b), len(want))
	}
}

// A Section reads through the segment's pooled descriptor (no descriptor
// opened per read), and sendfile to a socket the reader drains slowly (so
// the socket buffer fills and the send waits) delivers every byte.
func TestSectionPinnedSendfile(t *testing.T) {
	e, l := openOSLog(t, LogConfig{SegmentBytes: 256 << 10, IndexIntervalBytes: 4096, RetentionBytes: -1, RetentionMs: -1})
	m := fillModel(t, l, 3000)
	opens := e.FileStats().Opens
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var b []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
			if len(b) < 64<<10 {
				time.Sleep(time.Millisecond) // slow at first: the sender meets EAGAIN
			}
		}
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetWriteBuffer(8 << 10)
	var want []byte
	for _, off := range []int64{0, 1500, 2999} {
		r, err := l.ReadSection(off, 8<<20, true)
		if err != nil || r.Section == nil {
			t.Fatalf("read section at %d: %v", off, err)
		}
		if r.Section.h == nil {
			t.Fatalf("section at %d has a descriptor of its own, want the segment's pinned one", off)
		}
		if n, err := r.Section.WriteTo(c.(*net.TCPConn)); err != nil || n != r.Section.Len() {
			t.Fatalf("write section at %d: %d of %d bytes: %v", off, n, r.Section.Len(), err)
		}
		if err := r.Section.Close(); err != nil {
			t.Fatal(err)
		}
		want = append(want, m.want(off, 8<<20, true)...)
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, want %d", len(b), len(want))
	}
	if d := e.FileStats().Opens - opens; d != 0 {
		t.Fatalf("%d descriptors opened for three sections, want 0", d)
	}
}
