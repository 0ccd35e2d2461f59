package uring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	if err := Probe(); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	r, err := New(entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func do(t *testing.T, r *Ring, ops ...Op) []Op {
	t.Helper()
	if err := r.Do(ops); err != nil {
		t.Fatal(err)
	}
	return ops
}

func TestProbe(t *testing.T) {
	if err := Probe(); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
}

func TestWriteReadBack(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	fd := int(f.Fd())
	data := bytes.Repeat([]byte("tusk"), 1024)
	ops := do(t, r, Write(fd, data, 0), Writev(fd, [][]byte{[]byte("ab"), []byte("cde")}, int64(len(data))))
	if ops[0].Res != int32(len(data)) || ops[1].Res != 5 {
		t.Fatalf("write results %d %d", ops[0].Res, ops[1].Res)
	}
	buf := make([]byte, len(data)+10)
	ops = do(t, r, Read(fd, buf, 0))
	if ops[0].Res != int32(len(data)+5) {
		t.Fatalf("read %d", ops[0].Res)
	}
	if !bytes.Equal(buf[:len(data)], data) || string(buf[len(data):len(data)+5]) != "abcde" {
		t.Fatal("read back differs")
	}
	// Read past the end returns 0.
	if ops = do(t, r, Read(fd, buf, 1<<20)); ops[0].Res != 0 {
		t.Fatalf("read at EOF: %d", ops[0].Res)
	}
}

func TestLinkedWriteFdatasync(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	fd := int(f.Fd())
	ops := do(t, r, Write(fd, []byte("hello"), 0).Linked(), Fdatasync(fd))
	if ops[0].Res != 5 || ops[1].Res != 0 {
		t.Fatalf("results %d %d", ops[0].Res, ops[1].Res)
	}
	// A failing write cancels its linked fdatasync.
	ro, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ops = do(t, r, Write(int(ro.Fd()), []byte("x"), 0).Linked(), Fdatasync(int(ro.Fd())), Fsync(fd))
	if !errors.Is(ops[0].Err(), syscall.EBADF) || !errors.Is(ops[1].Err(), syscall.ECANCELED) || ops[2].Res != 0 {
		t.Fatalf("results %v %v %v", ops[0].Err(), ops[1].Err(), ops[2].Err())
	}
}

// TestBatchLargerThanRing submits 256 writes and their fdatasyncs through a
// ring of 16 entries (32 CQ slots): Do splits the batch, never splits a
// linked pair, and waits for slots.
func TestBatchLargerThanRing(t *testing.T) {
	r := newRing(t, 16)
	if sq, cq := r.Entries(); sq != 16 || cq != 32 {
		t.Fatalf("entries %d %d", sq, cq)
	}
	f := tempFile(t)
	fd := int(f.Fd())
	var ops []Op
	for i := 0; i < 256; i++ {
		ops = append(ops, Write(fd, []byte{byte(i)}, int64(i)).Linked(), Fdatasync(fd))
	}
	do(t, r, ops...)
	for i, o := range ops {
		if want := int32(1 - i%2); o.Res != want {
			t.Fatalf("op %d: res %d", i, o.Res)
		}
	}
	b, err := os.ReadFile(f.Name())
	if err != nil || len(b) != 256 {
		t.Fatalf("read %d bytes: %v", len(b), err)
	}
	for i := range b {
		if b[i] != byte(i) {
			t.Fatalf("byte %d = %d", i, b[i])
		}
	}
	long := make([]Op, 17)
	for i := range long {
		long[i] = Nop().Linked()
	}
	if err := r.Do(long); err == nil {
		t.Fatal("chain longer than the ring accepted")
	}
}

// TestConcurrentDoWithSignals runs many goroutines' batches while the
// process is flooded with SIGURG (which Go uses for preemption): waits and
// submissions must retry EINTR, never surface it.
func TestConcurrentDoWithSignals(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	fd := int(f.Fd())
	stop := make(chan struct{})
	var sigWG sync.WaitGroup
	sigWG.Add(1)
	go func() {
		defer sigWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if err := unix.Kill(os.Getpid(), unix.SIGURG); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := 0; i < 200; i++ {
				off := int64(g*200+i) * 512
				ops := []Op{Write(fd, buf, off).Linked(), Fdatasync(fd), Read(fd, make([]byte, 512), off)}
				if err := r.Do(ops); err != nil {
					t.Error(err)
					return
				}
				for k, o := range ops {
					if o.Res < 0 {
						t.Errorf("op %d failed: %v (results %d %d %d)", k, o.Err(), ops[0].Res, ops[1].Res, ops[2].Res)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sigWG.Wait()
}

// TestCloseWithOpsInFlight closes the ring while goroutines submit: every
// Do returns with all its ops completed (successfully or -ECANCELED), none
// hangs, and later Do calls fail with ErrClosed.
func TestCloseWithOpsInFlight(t *testing.T) {
	if err := Probe(); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	r, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	f := tempFile(t)
	fd := int(f.Fd())
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ops := []Op{Write(fd, []byte("x"), int64(g)).Linked(), Fdatasync(fd), Nop(), Nop(), Nop(), Nop(), Nop(), Nop(), Nop()}
				err := r.Do(ops)
				once.Do(func() { close(started) })
				for _, o := range ops {
					if o.Res < 0 && !errors.Is(o.Err(), syscall.ECANCELED) {
						t.Errorf("op: %v", o.Err())
					}
				}
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("do: %v", err)
					}
					return
				}
			}
		}()
	}
	<-started
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := r.Do([]Op{Nop()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("do after close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func BenchmarkWrite4K(b *testing.B) {
	if err := Probe(); err != nil {
		b.Skip(err)
	}
	r, err := New(64)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	fd := int(f.Fd())
	b.Run("uring", func(b *testing.B) {
		ops := make([]Op, 1)
		for i := 0; b.Loop(); i++ {
			ops[0] = Write(fd, buf, int64(i%1024)*4096)
			if err := r.Do(ops); err != nil || ops[0].Res != 4096 {
				b.Fatal(err, ops[0].Res)
			}
		}
	})
	b.Run("pwrite", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := f.WriteAt(buf, int64(i%1024)*4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOps(b *testing.B) {
	if err := Probe(); err != nil {
		b.Skip(err)
	}
	r, err := New(64)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	fd := int(f.Fd())
	if _, err := f.WriteAt(make([]byte, 4<<20), 0); err != nil {
		b.Fatal(err)
	}
	b.Run("nop", func(b *testing.B) {
		ops := make([]Op, 1)
		for b.Loop() {
			ops[0] = Nop()
			if err := r.Do(ops); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read4k", func(b *testing.B) {
		ops := make([]Op, 1)
		for i := 0; b.Loop(); i++ {
			ops[0] = Read(fd, buf, int64(i%1024)*4096)
			if err := r.Do(ops); err != nil || ops[0].Res != 4096 {
				b.Fatal(err, ops[0].Res)
			}
		}
	})
	b.Run("pread4k", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := f.ReadAt(buf, int64(i%1024)*4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCancelledChains: what Do submits again after the kernel cancelled
// ops it never started.
func TestCancelledChains(t *testing.T) {
	canc := -int32(unix.ECANCELED)
	buf := make([]byte, 8)
	mk := func(res ...int32) []Op {
		ops := []Op{Write(3, buf, 0).Linked(), Fdatasync(3), Read(3, buf, 0), Write(3, buf, 8).Linked(), Nop()}
		for i := range ops {
			ops[i].Res = res[i]
		}
		return ops
	}
	for _, tc := range []struct {
		name  string
		res   []int32
		first []int // index of each resubmitted part's first op
		lens  []int
	}{
		{"all done", []int32{8, 0, 8, 8, 0}, nil, nil},
		{"write cancelled: its chain again", []int32{canc, canc, 8, 8, 0}, []int{0}, []int{2}},
		{"sync cancelled after a full write", []int32{8, canc, 8, 8, 0}, []int{1}, []int{1}},
		{"short write broke the chain: no retry", []int32{4, canc, 8, 8, 0}, nil, nil},
		{"failed write broke the chain: no retry", []int32{-5, canc, 8, 8, 0}, nil, nil},
		{"two chains", []int32{canc, canc, canc, 8, canc}, []int{0, 2, 4}, []int{2, 1, 1}},
	} {
		ops := mk(tc.res...)
		got := cancelledChains(ops)
		if len(got) != len(tc.first) {
			t.Fatalf("%s: %d parts, want %d", tc.name, len(got), len(tc.first))
		}
		for i, part := range got {
			if &part[0] != &ops[tc.first[i]] || len(part) != tc.lens[i] {
				t.Fatalf("%s: part %d is %d ops from a different op; want ops[%d:+%d]", tc.name, i, len(part), tc.first[i], tc.lens[i])
			}
		}
	}
}
