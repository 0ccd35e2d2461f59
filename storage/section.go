package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sectionFS is implemented by file systems whose segment files are plain OS
// files, which a Section can then read through a handle of its own.
type sectionFS interface {
	openSection(name string) (*os.File, error)
}

func (osFS) openSection(name string) (*os.File, error) { return os.Open(name) }

// Section is a byte range of a segment file holding whole record batches.
// It reads through the segment's own descriptor, pinned open in the
// descriptor pool until Close (or, where the segment's file is not a
// pooled OS file, through a handle of its own). The bytes stay readable
// even if retention deletes the segment meanwhile: the file is renamed
// away, the descriptor stays open, and the deleter shrinks the file only
// after the Section is closed. WriteTo sends it to a socket with
// sendfile(2) at the section's offset, so no file position is shared
// and no descriptor is opened per read.
//
// A Section is used by one goroutine at a time; Close it when done.
type Section struct {
	f   *os.File
	h   *segFile // pinned (f is its descriptor); nil when f is the Section's own
	pos int64
	n   int64
	// release lets the deleter shrink the segment file (nil once called).
	release func()
}

// Len is the section's length in bytes.
func (s *Section) Len() int64 { return s.n }

// WriteTo writes the section's bytes to w. A socket (a syscall.Conn such
// as *net.TCPConn) receives them by sendfile(2), without copying them
// through user space; other writers get a copy. Writing fewer than Len
// bytes (the file shrank, or w failed) is an error.
func (s *Section) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	if sc, ok := w.(syscall.Conn); ok {
		n, err = sendfile(sc, s.f, s.pos, s.n)
	} else {
		n, err = io.Copy(w, io.NewSectionReader(s.f, s.pos, s.n))
		if err == nil && n != s.n {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		return n, fmt.Errorf("storage: section of %s: wrote %d of %d bytes from %d: %w", s.f.Name(), n, s.n, s.pos, err)
	}
	return n, nil
}

// sendfile sends n bytes of src from pos to the socket sc with
// sendfile(2) at an explicit offset (src's file position is neither used
// nor moved), waiting for the socket to take more as the runtime's own
// sendfile does, and honouring its write deadline.
func sendfile(sc syscall.Conn, src *os.File, pos, n int64) (int64, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	fc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	// The descriptor is used inside Control, so src cannot be closed
	// under the copy.
	cerr := fc.Control(func(srcFD uintptr) {
		off := pos
		werr := rc.Write(func(dst uintptr) bool {
			for written < n {
				chunk := min(n-written, 1<<30)
				m, err := unix.Sendfile(int(dst), int(srcFD), &off, int(chunk))
				if m > 0 {
					written += int64(m)
				}
				switch {
				case err == unix.EAGAIN:
					return false // wait until the socket takes more
				case err == unix.EINTR:
				case err != nil:
					serr = os.NewSyscallError("sendfile", err)
					return true
				case m == 0:
					serr = io.ErrUnexpectedEOF // the file ends before the section
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if serr == nil {
		serr = cerr
	}
	return written, serr
}

// Bytes reads the section into memory (the copying fallback).
func (s *Section) Bytes() ([]byte, error) {
	b := make([]byte, s.n)
	if _, err := s.f.ReadAt(b, s.pos); err != nil {
		return nil, fmt.Errorf("storage: section of %s: read %d bytes at %d: %w", s.f.Name(), s.n, s.pos, err)
	}
	return b, nil
}

// Close releases the section's descriptor.
func (s *Section) Close() error {
	if s.release != nil {
		defer s.release()
		s.release = nil
	}
	if s.h != nil {
		s.h.unpin()
		s.h, s.f = nil, nil
		return nil
	}
	if s.f == nil {
		return nil
	}
	if err := s.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("storage: close section of %s: %w", s.f.Name(), err)
	}
	return nil
}

// ReadSection is Read, except that where the file system allows it (OSFS)
// the batches come back as res.Section, a range of the segment file, rather
// than copied into res.Data. The bounds are Read's: whole batches, all
// below the high watermark. The caller must Close a returned Section.
func (l *Log) ReadSection(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return l.readSection(offset, maxBytes, minOneBatch, boundHW)
}

func (l *Log) readSection(offset int64, maxBytes int, minOneBatch bool, bound readBound) (ReadResult, error) {
	sfs, ok := l.fs.(sectionFS)
	if !ok {
		return l.read(offset, maxBytes, minOneBatch, bound)
	}
	loc, res, err := l.locate(offset, maxBytes, minOneBatch, bound)
	if err != nil || loc.seg == nil {
		return res, err
	}
	// Opened while closeMu pins the segment, so the file still exists;
	// counted there too, so the deleter shrinks it only after Close.
	seg := loc.seg
	seg.sections.acquire()
	l.sections.acquire()
	release := func() {
		seg.sections.release()
		l.sections.release()
	}
	sec, err := openSection(sfs, seg, segName(l.dir, seg.base, logSuffix))
	seg.closeMu.RUnlock()
	if err != nil {
		release()
		return res, fmt.Errorf("storage: read %s segment %d: open section: %w", l.tp, seg.base, err)
	}
	sec.pos, sec.n, sec.release = loc.pos, loc.n, release
	res.Section = sec
	return res, nil
}

// openSection returns a Section reading seg (whose closeMu the caller
// holds shared): its pooled descriptor pinned, or, where its file is not
// a pooled OS file, a handle of its own opened by name.
func openSection(sfs sectionFS, seg *segment, name string) (*Section, error) {
	if h, ok := seg.f.(*segFile); ok {
		f, err := h.pin()
		if err != nil {
			return nil, err
		}
		if of, ok := f.(osFiler); ok {
			return &Section{f: of.osHandle(), h: h}, nil
		}
		h.unpin()
	}
	f, err := sfs.openSection(name)
	if err != nil {
		return nil, err
	}
	return &Section{f: f}, nil
}
