package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// sectionFS is implemented by file systems whose segment files are plain OS
// files, which a Section can then read through a handle of its own.
type sectionFS interface {
	openSection(name string) (*os.File, error)
}

func (osFS) openSection(name string) (*os.File, error) { return os.Open(name) }

// Section is a byte range of a segment file holding whole record batches,
// read through a file handle of its own. The bytes stay readable even if
// retention deletes the segment meanwhile: the file is renamed away, and
// the deleter shrinks it only after the Section is closed. Its private file offset is what lets
// (*net.TCPConn).ReadFrom send it with sendfile: an *os.File at its shared
// offset, wrapped in an io.LimitedReader.
//
// A Section is used by one goroutine at a time; Close it when done.
type Section struct {
	f   *os.File
	pos int64
	n   int64
	// release lets the deleter shrink the segment file (nil once called).
	release func()
}

// Len is the section's length in bytes.
func (s *Section) Len() int64 { return s.n }

// WriteTo writes the section's bytes to w. A *net.TCPConn receives them by
// sendfile(2), without copying them through user space. Writing fewer than
// Len bytes (the file shrank, or w failed) is an error.
func (s *Section) WriteTo(w io.Writer) (int64, error) {
	if _, err := s.f.Seek(s.pos, io.SeekStart); err != nil {
		return 0, fmt.Errorf("storage: section of %s: seek to %d: %w", s.f.Name(), s.pos, err)
	}
	var n int64
	var err error
	lr := &io.LimitedReader{R: s.f, N: s.n}
	if rf, ok := w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(lr)
	} else {
		n, err = io.Copy(w, lr)
	}
	if err == nil && n != s.n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, fmt.Errorf("storage: section of %s: wrote %d of %d bytes from %d: %w", s.f.Name(), n, s.n, s.pos, err)
	}
	return n, nil
}

// Bytes reads the section into memory (the copying fallback).
func (s *Section) Bytes() ([]byte, error) {
	b := make([]byte, s.n)
	if _, err := s.f.ReadAt(b, s.pos); err != nil {
		return nil, fmt.Errorf("storage: section of %s: read %d bytes at %d: %w", s.f.Name(), s.n, s.pos, err)
	}
	return b, nil
}

// Close releases the section's file handle.
func (s *Section) Close() error {
	if s.release != nil {
		defer s.release()
		s.release = nil
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
	f, err := sfs.openSection(segName(l.dir, seg.base, logSuffix))
	seg.closeMu.RUnlock()
	if err != nil {
		release()
		return res, fmt.Errorf("storage: read %s segment %d: open section: %w", l.tp, seg.base, err)
	}
	res.Section = &Section{f: f, pos: loc.pos, n: loc.n, release: release}
	return res, nil
}
