package broker

import "testing"

func TestFramePoolClasses(t *testing.T) {
	var p framePool
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, 1<<20 + 1, 16 << 20} {
		b := p.get(n)
		if b == nil || len(b) != 0 || cap(b) < n {
			t.Fatalf("get(%d): len %d cap %d", n, len(b), cap(b))
		}
		if c := cap(b); c&(c-1) != 0 || c > 2*n && c != 1<<minFrameShift {
			t.Fatalf("get(%d): cap %d is not the smallest power-of-two class", n, c)
		}
		p.put(b[:n])
	}
	if b := p.get(16<<20 + 1); b != nil {
		t.Fatalf("get(16 MiB + 1) = cap %d, want nil (not pooled)", cap(b))
	}
	// Foreign buffers are ignored.
	p.put(make([]byte, 5000))
	p.put(make([]byte, 100))
	p.put(make([]byte, 32<<20))
}
