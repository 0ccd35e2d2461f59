package uring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI constants (include/uapi/linux/io_uring.h).
const (
	opNop    = 0
	opWritev = 2
	opFsync  = 3
	opRead   = 22
	opWrite  = 23

	sqeIOLink     = 1 << 2
	fsyncDatasync = 1

	enterGetEvents = 1 << 0
	setupClamp     = 1 << 4
	featSingleMmap = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// stopTag is the user_data of the NOP that stops the reaper.
const stopTag = ^uint64(0)

// ErrClosed is returned by Do on a closed ring.
var ErrClosed = errors.New("uring: ring closed")

// Op is one operation. Build it with Write, Writev, Read, Fsync, Fdatasync
// or Nop; after Do returns, Res holds the kernel's result.
type Op struct {
	opcode  uint8
	flags   uint8
	fd      int32
	off     uint64
	opFlags uint32
	buf     []byte
	bufs    [][]byte

	// Res is the completion result: bytes transferred (0 for fsync and
	// NOP) or a negated errno. An op never submitted because the ring
	// closed gets -ECANCELED.
	Res int32
}

// Write writes b at off of fd (pwrite).
func Write(fd int, b []byte, off int64) Op {
	return Op{opcode: opWrite, fd: int32(fd), off: uint64(off), buf: b}
}

// Writev writes bufs back to back at off of fd (pwritev).
func Writev(fd int, bufs [][]byte, off int64) Op {
	return Op{opcode: opWritev, fd: int32(fd), off: uint64(off), bufs: bufs}
}

// Read reads into b from off of fd (pread).
func Read(fd int, b []byte, off int64) Op {
	return Op{opcode: opRead, fd: int32(fd), off: uint64(off), buf: b}
}

// Fdatasync is fdatasync(fd) (IORING_FSYNC_DATASYNC).
func Fdatasync(fd int) Op { return Op{opcode: opFsync, fd: int32(fd), opFlags: fsyncDatasync} }

// Fsync is fsync(fd).
func Fsync(fd int) Op { return Op{opcode: opFsync, fd: int32(fd)} }

// Nop does nothing; it completes with Res 0.
func Nop() Op { return Op{opcode: opNop, fd: -1} }

// Linked returns o with IOSQE_IO_LINK set: the next op in the same Do runs
// only after o succeeds (for reads and writes: transfers everything), and
// is otherwise completed with -ECANCELED.
func (o Op) Linked() Op {
	o.flags |= sqeIOLink
	return o
}

// Size is the number of bytes the op asks to transfer.
func (o *Op) Size() int {
	n := len(o.buf)
	for _, b := range o.bufs {
		n += len(b)
	}
	return n
}

// Err returns the errno of a failed op, nil if Res >= 0.
func (o *Op) Err() error {
	if o.Res < 0 {
		return syscall.Errno(-o.Res)
	}
	return nil
}

// batch is one Do call.
type batch struct {
	ops  []Op
	left int // guarded by Ring.mu: ops not yet completed
	done chan struct{}
}

// slot keeps an in-flight op's batch (and with it the op's buffers) and a
// writev's iovec array reachable until its completion is reaped.
type slot struct {
	b   *batch
	i   int
	iov []unix.Iovec
}

// Ring is an io_uring instance. See the package doc for the concurrency
// contract.
type Ring struct {
	fd        int
	sqMem     []byte // SQ ring (and CQ ring with IORING_FEAT_SINGLE_MMAP)
	cqMem     []byte // CQ ring if mapped separately, else nil
	sqeMem    []byte
	sqHead    *uint32 // written by the kernel
	sqTail    *uint32 // written by us
	sqMask    uint32
	sqEntries uint32
	sqes      []sqe
	cqHead    *uint32 // written by us
	cqTail    *uint32 // written by the kernel
	cqMask    uint32
	cqEntries uint32
	cqes      []cqe

	mu       sync.Mutex
	space    *sync.Cond // on mu: slots freed, ops in flight dropped
	tail     uint32     // our SQ tail, published to *sqTail before enter
	slots    []slot     // indexed by user_data-1
	free     []uint32   // free slot indexes
	inflight int
	closed   bool
	reapErr  error // first unexpected io_uring_enter error of the reaper

	cqMu       sync.Mutex // serializes reaping the CQ
	unmapped   bool       // guarded by cqMu: the rings are gone
	stopSeen   bool       // guarded by cqMu: a stop NOP was reaped (by anyone)
	reaperDone chan struct{}
}

// New sets up a ring with (at least, up to the kernel's limit) entries
// submission entries and twice as many completion entries.
func New(entries uint32) (*Ring, error) {
	var p params
	p.flags = setupClamp
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("uring: io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), reaperDone: make(chan struct{})}
	if err := r.mmap(&p); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	r.space = sync.NewCond(&r.mu)
	r.slots = make([]slot, r.cqEntries)
	r.free = make([]uint32, r.cqEntries)
	for i := range r.free {
		r.free[i] = uint32(len(r.free) - 1 - i)
	}
	r.tail = atomic.LoadUint32(r.sqTail)
	go r.reaper()
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("uring: mmap SQ ring: %w", err)
	}
	cqMem := r.sqMem
	if !single {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("uring: mmap CQ ring: %w", err)
		}
		cqMem = r.cqMem
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("uring: mmap SQEs: %w", err)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.sqEntries = *u32(r.sqMem, p.sqOff.ringEntries)
	array := unsafe.Slice(u32(r.sqMem, p.sqOff.array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i) // SQE i sits at SQ index i: fill sqes[tail&mask]
	}
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	r.cqHead = u32(cqMem, p.cqOff.head)
	r.cqTail = u32(cqMem, p.cqOff.tail)
	r.cqMask = *u32(cqMem, p.cqOff.ringMask)
	r.cqEntries = *u32(cqMem, p.cqOff.ringEntries)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), r.cqEntries)
	return nil
}

func (r *Ring) unmap() {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			unix.Munmap(m) // only fails for invalid arguments
		}
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
}

// Entries returns the sizes of the submission and completion queues.
func (r *Ring) Entries() (sq, cq uint32) { return r.sqEntries, r.cqEntries }

func enter(fd int, toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// chainEnd returns the end of the linked chain starting at ops[i].
func chainEnd(ops []Op, i int) int {
	for i < len(ops) && ops[i].flags&sqeIOLink != 0 {
		i++
	}
	return min(i+1, len(ops))
}

// Do submits ops (one io_uring_enter for as many as fit in the ring) and
// waits until all have completed; each op's Res is set. A linked chain
// (ops joined by Linked) must fit in the ring. The error is nil unless the
// ring failed as a whole: then the ops not submitted have Res -ECANCELED,
// and Do still waits for those that were.
//
// The kernel itself cancels an op it never started when it cannot create
// the io-wq worker to run it, which happens while signals are pending (Go
// sends SIGURG for preemption all the time): such an op, and the rest of
// its chain, is submitted again (see cancelledChains).
func (r *Ring) Do(ops []Op) error {
	if err := r.do(ops); err != nil {
		return err
	}
	for attempt := 0; attempt < maxResubmits; attempt++ {
		again := cancelledChains(ops)
		if len(again) == 0 {
			return nil
		}
		for _, c := range again {
			if err := r.do(c); err != nil {
				return err
			}
		}
	}
	return nil // still cancelled: the caller sees -ECANCELED
}

// maxResubmits bounds how often Do resubmits ops the kernel cancelled.
const maxResubmits = 100

// cancelledChains returns, for every linked chain of ops, the part from
// its first op the kernel cancelled (Res -ECANCELED) to the chain's end,
// when every op before that one in the chain completed in full: the
// cancelled op never ran (a short or failed op breaks a chain too, and
// then its followers' -ECANCELED is the answer, not a reason to retry).
func cancelledChains(ops []Op) [][]Op {
	var out [][]Op
	for i := 0; i < len(ops); {
		j := chainEnd(ops, i)
		for k := i; k < j; k++ {
			if ops[k].Res == -int32(unix.ECANCELED) {
				out = append(out, ops[k:j])
				break
			}
			if !ops[k].complete() {
				break
			}
		}
		i = j
	}
	return out
}

// complete reports whether an op succeeded in full (all its bytes, for
// reads and writes).
func (o *Op) complete() bool {
	switch o.opcode {
	case opWrite, opRead:
		return o.Res >= 0 && int(o.Res) == len(o.buf)
	case opWritev:
		n := 0
		for _, b := range o.bufs {
			n += len(b)
		}
		return o.Res >= 0 && int(o.Res) == n
	}
	return o.Res >= 0
}

// do is one submission of ops (see Do).
func (r *Ring) do(ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	for i := 0; i < len(ops); {
		j := chainEnd(ops, i)
		if uint32(j-i) > min(r.sqEntries, r.cqEntries) {
			return fmt.Errorf("uring: linked chain of %d ops exceeds ring of %d", j-i, r.sqEntries)
		}
		i = j
	}
	b := &batch{ops: ops, left: len(ops), done: make(chan struct{})}
	var err error
	r.mu.Lock()
	for i := 0; i < len(ops); {
		j := chainEnd(ops, i)
		n := uint32(j - i)
		for !r.closed && err == nil && (uint32(len(r.free)) < n || r.sqEntries-(r.tail-atomic.LoadUint32(r.sqHead)) < n) {
			if r.tail != atomic.LoadUint32(r.sqHead) {
				err = r.flushLocked()
				continue
			}
			r.space.Wait()
		}
		if r.closed && err == nil {
			err = ErrClosed
		}
		if err != nil {
			for k := i; k < len(ops); k++ {
				ops[k].Res = -int32(unix.ECANCELED)
			}
			b.left -= len(ops) - i
			if b.left == 0 {
				close(b.done)
			}
			break
		}
		for k := i; k < j; k++ {
			r.prepLocked(b, k)
		}
		i = j
	}
	// A closed ring has nothing of ours pending: closed is only observed
	// at the start or after a wait, and waits follow a flush.
	if !r.closed {
		if ferr := r.flushLocked(); err == nil {
			err = ferr
		}
	}
	r.mu.Unlock()
	// Ops the kernel completed inline (page-cache I/O) are already in the
	// CQ: reap them here instead of waiting for the reaper goroutine.
	r.reap()
	<-b.done
	if err != nil {
		return fmt.Errorf("uring: submit: %w", err)
	}
	return nil
}

// prepLocked fills the next SQE with b.ops[k] and takes a slot for it.
func (r *Ring) prepLocked(b *batch, k int) {
	o := &b.ops[k]
	idx := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	r.inflight++
	s := &r.slots[idx]
	s.b, s.i = b, k
	e := sqe{opcode: o.opcode, flags: o.flags, fd: o.fd, off: o.off, opFlags: o.opFlags, userData: uint64(idx) + 1}
	switch o.opcode {
	case opWrite, opRead:
		e.addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(o.buf))))
		e.len = uint32(len(o.buf))
	case opWritev:
		s.iov = make([]unix.Iovec, len(o.bufs))
		for i, p := range o.bufs {
			s.iov[i].Base = unsafe.SliceData(p)
			s.iov[i].SetLen(len(p))
		}
		e.addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.iov))))
		e.len = uint32(len(s.iov))
	}
	r.sqes[r.tail&r.sqMask] = e
	r.tail++
}

// flushLocked publishes the SQ tail and submits every SQE the kernel has not
// consumed yet, retrying on EINTR. On a hard error the unconsumed SQEs are
// withdrawn and their ops completed with -ECANCELED.
func (r *Ring) flushLocked() error {
	atomic.StoreUint32(r.sqTail, r.tail)
	for {
		pending := r.tail - atomic.LoadUint32(r.sqHead)
		if pending == 0 {
			return nil
		}
		_, err := enter(r.fd, pending, 0, 0)
		switch err {
		case nil, unix.EINTR:
			continue
		case unix.EAGAIN, unix.EBUSY:
			// Transient kernel allocation failure or a CQ backlog (the
			// reaper drains it concurrently).
			runtime.Gosched()
			continue
		}
		head := atomic.LoadUint32(r.sqHead)
		for k := head; k != r.tail; k++ {
			r.completeLocked(uint32(r.sqes[k&r.sqMask].userData-1), -int32(unix.ECANCELED))
		}
		r.tail = head
		atomic.StoreUint32(r.sqTail, r.tail)
		r.space.Broadcast()
		return fmt.Errorf("io_uring_enter: %w", err)
	}
}

// completeLocked records res for the op in slot idx and frees the slot.
func (r *Ring) completeLocked(idx uint32, res int32) {
	s := &r.slots[idx]
	b := s.b
	b.ops[s.i].Res = res
	b.left--
	if b.left == 0 {
		close(b.done)
	}
	*s = slot{}
	r.free = append(r.free, idx)
	r.inflight--
}

// reap dispatches every completion in the CQ; it reports whether the stop
// NOP was among them.
func (r *Ring) reap() (stop bool) {
	r.cqMu.Lock()
	defer r.cqMu.Unlock()
	if r.unmapped {
		return false
	}
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	if head == tail {
		return false
	}
	r.mu.Lock()
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		if c.userData == stopTag {
			// A submitter reaping inline may consume the stop meant for
			// the reaper; record it so the reaper still stops.
			stop = true
			r.stopSeen = true
			continue
		}
		r.completeLocked(uint32(c.userData-1), c.res)
	}
	r.mu.Unlock()
	atomic.StoreUint32(r.cqHead, head)
	r.space.Broadcast()
	return stop
}

// sawStop reports whether any reap consumed a stop NOP.
func (r *Ring) sawStop() bool {
	r.cqMu.Lock()
	defer r.cqMu.Unlock()
	return r.stopSeen
}

// reaper waits for completions until the stop NOP arrives.
func (r *Ring) reaper() {
	defer close(r.reaperDone)
	for {
		if r.reap() || r.sawStop() {
			return
		}
		if _, err := enter(r.fd, 0, 1, enterGetEvents); err != nil && err != unix.EINTR && err != unix.EAGAIN && err != unix.EBUSY {
			r.mu.Lock()
			if r.reapErr == nil {
				r.reapErr = fmt.Errorf("uring: wait for completions: %w", err)
			}
			r.mu.Unlock()
			runtime.Gosched()
		}
	}
}

// Close refuses new ops, waits for those in flight, stops the reaper,
// unmaps the rings and closes the ring descriptor. It is idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.space.Broadcast()
	for r.inflight > 0 {
		r.space.Wait()
	}
	r.sqes[r.tail&r.sqMask] = sqe{opcode: opNop, fd: -1, userData: stopTag}
	r.tail++
	if err := r.flushLocked(); err != nil {
		// The stop NOP could not be submitted: the reaper cannot be
		// stopped, so the rings stay mapped.
		r.mu.Unlock()
		return fmt.Errorf("uring: close: stop reaper: %w", err)
	}
	reapErr := r.reapErr
	r.mu.Unlock()
	// If a submitter's inline reap took the stop completion, the reaper may
	// sleep in io_uring_enter with nothing left to wake it: post another
	// stop NOP now and then until it is gone.
	for stopped := false; !stopped; {
		select {
		case <-r.reaperDone:
			stopped = true
		case <-time.After(20 * time.Millisecond):
			r.mu.Lock()
			r.sqes[r.tail&r.sqMask] = sqe{opcode: opNop, fd: -1, userData: stopTag}
			r.tail++
			if err := r.flushLocked(); err != nil {
				r.mu.Unlock()
				return fmt.Errorf("uring: close: stop reaper: %w", err)
			}
			r.mu.Unlock()
		}
	}
	r.cqMu.Lock()
	r.unmapped = true
	r.unmap()
	r.cqMu.Unlock()
	var err error
	if cerr := unix.Close(r.fd); cerr != nil {
		err = fmt.Errorf("uring: close ring fd: %w", cerr)
	}
	return errors.Join(reapErr, err)
}

// disabledPath is the sysctl that turns io_uring off (0 on, 1 only for
// io_uring_group, 2 off).
const disabledPath = "/proc/sys/kernel/io_uring_disabled"

// Probe reports whether io_uring is usable here: it sets up a tiny ring and
// runs a NOP through it. The error wraps the cause (ENOSYS on old kernels,
// EPERM under seccomp or kernel.io_uring_disabled).
func Probe() error {
	r, err := New(4)
	if err != nil {
		if b, rerr := os.ReadFile(disabledPath); rerr == nil && strings.TrimSpace(string(b)) != "0" {
			return fmt.Errorf("uring: probe (kernel.io_uring_disabled=%s): %w", strings.TrimSpace(string(b)), err)
		}
		return fmt.Errorf("uring: probe: %w", err)
	}
	ops := []Op{Nop()}
	err = r.Do(ops)
	if err == nil {
		err = ops[0].Err()
	}
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("uring: probe: %w", err)
	}
	return nil
}
