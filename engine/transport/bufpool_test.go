package transport

import "testing"

// TestBigBufs: a pooled buffer has room for what was asked, a returned
// buffer serves requests its capacity covers and no larger, and sizes
// past the largest class are allocated as asked.
func TestBigBufs(t *testing.T) {
	for _, n := range []int{1, spareMax + 1, 128 << 10, 128<<10 + 1, 3 << 20, 16 << 20} {
		if b := getBig(n); cap(b) < n || len(b) != 0 {
			t.Errorf("getBig(%d): len %d cap %d", n, len(b), cap(b))
		}
	}
	if b := getBig(32 << 20); cap(b) != 32<<20 {
		t.Errorf("getBig(32 MiB): cap %d", cap(b))
	}
	// A buffer grown by append to 300 KiB covers the 256 KiB class only.
	grown := make([]byte, 10, 300<<10)
	putBig(grown)
	for range 4 { // the pool may drop it; whatever comes back must fit
		if b := getBig(256 << 10); cap(b) < 256<<10 || len(b) != 0 {
			t.Fatalf("getBig(256 KiB) after putBig(300 KiB): len %d cap %d", len(b), cap(b))
		}
		if b := getBig(257 << 10); cap(b) < 257<<10 {
			t.Fatalf("getBig(257 KiB): cap %d", cap(b))
		}
	}
	putBig(make([]byte, 0, 64<<10)) // too small to pool: ignored
}

// TestGrowOut: growing keeps the bytes and at least doubles the room.
func TestGrowOut(t *testing.T) {
	b := append(make([]byte, 0, 20<<10), make([]byte, 18<<10)...)
	b[0], b[len(b)-1] = 1, 2
	g := growOut(b)
	if len(g) != len(b) || g[0] != 1 || g[len(g)-1] != 2 || cap(g) < 2*cap(b) {
		t.Fatalf("growOut: len %d cap %d, first %d last %d", len(g), cap(g), g[0], g[len(g)-1])
	}
}
