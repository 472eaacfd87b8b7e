package codec

import "testing"

// TestReaderRefusalResetsPacket: a packet refused from its fixed header
// (here a first packet that is not CONNECT) leaves nothing of what the
// reused Packet held before, only its type; a stale v5 CONNECT in it once
// made the broker answer a 3.1.1 client's PINGREQ with a v5 CONNACK.
func TestReaderRefusalResetsPacket(t *testing.T) {
	r := NewReader(nil, 0)
	r.FirstConnect = true
	copy(r.Space(), []byte{0xC0, 0x00}) // PINGREQ
	r.Advance(2)
	p := &Packet{Type: CONNECT, ProtocolLevel: V5, ClientID: "stale"}
	ok, err := r.Next(p)
	if ok || err == nil {
		t.Fatalf("a first PINGREQ: ok %v, err %v", ok, err)
	}
	if p.Type != PINGREQ || p.ProtocolLevel != 0 || p.ClientID != "" {
		t.Fatalf("the packet after the refusal: %+v", p)
	}
}
