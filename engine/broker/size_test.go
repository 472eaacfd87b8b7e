package broker

import (
	"testing"
	"unsafe"
)

// TestMessageSize: a Message is allocated per routed PUBLISH; it stays in
// the 80-byte size class.
func TestMessageSize(t *testing.T) {
	if n := unsafe.Sizeof(Message{}); n > 80 {
		t.Fatalf("Message is %d bytes, more than the 80-byte size class", n)
	}
}
