package transport

import "testing"

// TestNewBig: a new large buffer has room for what was asked, rounded up
// to a power of two.
func TestNewBig(t *testing.T) {
	for n, want := range map[int]int{1: 1, spareMax + 1: 128 << 10, 128 << 10: 128 << 10, 3 << 20: 4 << 20} {
		if b := newBig(n); cap(b) != want || len(b) != 0 {
			t.Errorf("newBig(%d): len %d cap %d, want cap %d", n, len(b), cap(b), want)
		}
	}
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
