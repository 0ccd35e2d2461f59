package broker

import (
	"math/bits"
	"sync"
)

// Produce request frames are recycled: a Produce handler keeps no
// reference into its frame once it has returned (the records are written to
// the segment file synchronously, and neither the response nor a deferred
// acknowledgement holds slices of the request), so the read loop hands the
// buffer back right after dispatch. Without this every Produce allocates a
// fresh, zeroed frame of up to several MiB: zeroing, page faults and GC cost
// about 10% of the broker's CPU per produced GB.
//
// Frames of other APIs are never recycled: kmsg decodes bytes fields as
// sub-slices of the frame, and handlers (JoinGroup, SyncGroup, ...) keep
// them.
const (
	minFrameShift = 12 // smallest pooled buffer: 4 KiB
	frameClasses  = 13 // largest pooled buffer: 4 KiB << 12 = 16 MiB
)

// framePool is a set of sync.Pools of byte buffers by power-of-two size
// class. The zero value is ready to use; it is safe for concurrent use.
type framePool struct {
	classes [frameClasses]sync.Pool // class i holds *[]byte with cap 1<<(minFrameShift+i)
}

// frameClass is the size class holding buffers of at least n bytes, or -1
// if n is too large to pool.
func frameClass(n int) int {
	if n <= 1<<minFrameShift {
		return 0
	}
	c := bits.Len(uint(n-1)) - minFrameShift
	if c >= frameClasses {
		return -1
	}
	return c
}

// get returns an empty buffer with capacity for n bytes, or nil when n is
// too large to pool (the caller allocates).
func (p *framePool) get(n int) []byte {
	c := frameClass(n)
	if c < 0 {
		return nil
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<(minFrameShift+c))
}

// put recycles a buffer obtained from get; the caller must not use it again.
func (p *framePool) put(b []byte) {
	c := cap(b)
	if c < 1<<minFrameShift || c&(c-1) != 0 {
		return // not one of ours
	}
	class := bits.Len(uint(c)) - 1 - minFrameShift
	if class >= frameClasses {
		return
	}
	b = b[:0]
	p.classes[class].Put(&b)
}
