package transport

import (
	"math/bits"
	"sync"
)

// Outbound buffers past spareMax are not kept by their connection (an
// idle connection would hold a burst's memory for good), but a
// connection that writes that much every round would then grow a new
// buffer from nothing each round: 16 KB payloads to 16 subscribers spent
// twice as long in growslice's copies as in encoding the packets. Such
// buffers go back to size-class pools shared by all connections instead,
// and a round that wrote a large buffer starts the next one with a
// buffer of that class. The pools hold what the garbage collector lets
// them (sync.Pool), so idle connections hold nothing.
const (
	spareMax    = 64 << 10 // the largest buffer a connection keeps itself
	bigMinShift = 17       // 128 KiB, the smallest pooled class
	bigMaxShift = 24       // 16 MiB, the largest (above MaxOutbound's default)
)

var bigBufs [bigMaxShift - bigMinShift + 1]sync.Pool

// bigClass is the pool of buffers of at least n bytes, or -1 when n is
// beyond the largest class.
func bigClass(n int) int {
	shift := max(bits.Len(uint(n-1)), bigMinShift)
	if shift > bigMaxShift {
		return -1
	}
	return shift - bigMinShift
}

// getBig returns an empty buffer with room for n bytes or more.
func getBig(n int) []byte {
	c := bigClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := bigBufs[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<(c+bigMinShift))
}

// putBig gives a written buffer back to its class; a buffer whose
// capacity is not a class size (grown by append) goes to the class below,
// whose size it covers.
func putBig(b []byte) {
	shift := bits.Len(uint(cap(b))) - 1 // the largest class cap(b) covers
	if shift < bigMinShift {
		return
	}
	shift = min(shift, bigMaxShift)
	b = b[: 0 : 1<<shift]
	bigBufs[shift-bigMinShift].Put(&b)
}

// growOut returns b's bytes in a buffer of twice its capacity. append
// grows a large slice by a quarter at a time, so a queue that reaches a
// megabyte was copied some ten times over on the way; doubling ahead of
// the encoder copies each byte about once. b goes back to the pools.
func growOut(b []byte) []byte {
	nb := getBig(2 * cap(b))
	nb = append(nb, b...)
	if cap(b) > spareMax {
		putBig(b)
	}
	return nb
}
