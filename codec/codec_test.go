package codec_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/mqttlua/broker/codec"
)

// endless is a hostile peer: a PUBLISH header claiming 256 MB, then an
// unending body. It counts what was read from it.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	hdr := []byte{0x30, 0xff, 0xff, 0xff, 0x7f}
	for i := range p {
		if e.n < len(hdr) {
			p[i] = hdr[e.n]
		} else {
			p[i] = 'x'
		}
		e.n++
	}
	return len(p), nil
}

func TestReaderRejectsOversizeBeforeBody(t *testing.T) {
	src := &endless{}
	r := codec.NewReader(src, 0)
	r.MaxPacketSize = 1 << 20
	var p codec.Packet
	err := r.ReadPacket(&p)
	if !errors.Is(err, codec.PacketTooLarge) {
		t.Fatalf("want PacketTooLarge, got %v", err)
	}
	if src.n > codec.DefaultReadBufferSize {
		t.Fatalf("read %d bytes of a packet it had to reject from its header", src.n)
	}
}

func TestReaderGrowsAndShrinks(t *testing.T) {
	big := &codec.Packet{Type: codec.PUBLISH, Topic: "t", Payload: bytes.Repeat([]byte{'b'}, 200000)}
	small := &codec.Packet{Type: codec.PUBLISH, Topic: "t", Payload: []byte("s")}
	var stream []byte
	for _, p := range []*codec.Packet{small, big, small, big} {
		stream, _ = p.Append(stream, codec.V311)
	}
	r := codec.NewReader(chunked{bytes.NewReader(stream)}, 0)
	r.Version = codec.V311
	var p codec.Packet
	for i, want := range []int{1, 200000, 1, 200000} {
		if err := r.ReadPacket(&p); err != nil || len(p.Payload) != want {
			t.Fatalf("packet %d: len %d err %v", i, len(p.Payload), err)
		}
	}
	if err := r.ReadPacket(&p); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// chunked hides bytes.Reader's WriterTo so reads come in small pieces.
type chunked struct{ r io.Reader }

func (i chunked) Read(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:1000]
	}
	return i.r.Read(p)
}

func TestFanoutMatchesEncode(t *testing.T) {
	msg := &codec.Packet{Type: codec.PUBLISH, Topic: "a/b", Payload: []byte("hello")}
	msg.Properties.SetString(codec.PropContentType, "text/plain")
	f := codec.NewFanout(msg)
	for _, level := range []byte{codec.V31, codec.V311, codec.V5} {
		for qos := byte(0); qos < 3; qos++ {
			for _, retain := range []bool{false, true} {
				for _, id := range []uint16{1, 258, 65535} {
					got, err := f.Append([]byte("prefix"), level, qos, retain, id)
					if err != nil {
						t.Fatal(err)
					}
					want := *msg
					want.QoS, want.Retain = qos, retain
					if qos > 0 {
						want.PacketID = id
					}
					if level != codec.V5 {
						want.Properties = codec.Properties{}
					}
					enc, err := codec.Encode(&want, level)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, append([]byte("prefix"), enc...)) {
						t.Fatalf("level %d qos %d retain %t id %d:\nwant % x\ngot  % x", level, qos, retain, id, enc, got[6:])
					}
				}
			}
		}
	}
}

func TestSimpsGetAckData(t *testing.T) {
	// The seed's onMqConnect answers with MQTT::getAck(['cmd' => 2,
	// 'code' => 0, 'session_present' => 0]).
	p, err := codec.FromMap(codec.Map{"cmd": 2, "code": 0, "session_present": 0})
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Encode(p, codec.V311)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("got % x", b)
	}
	// Lua numbers arrive as float64; a table of topics has no order, so
	// SUBSCRIBE filters from `topics` are sorted.
	p, err = codec.FromMap(codec.Map{"type": float64(8), "message_id": float64(1), "topics": codec.Map{"b": float64(1), "a": float64(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Subscriptions) != 2 || p.Subscriptions[0].Topic != "a" || p.Subscriptions[1].QoS != 1 {
		t.Fatalf("subscriptions %+v", p.Subscriptions)
	}
	if _, err := codec.FromMap(codec.Map{"type": 3, "topic": 5}); err == nil {
		t.Fatal("want an error for a numeric topic")
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	cases := []struct {
		name string
		p    *codec.Packet
		code codec.ReasonCode
	}{
		{"wildcard topic", &codec.Packet{Type: codec.PUBLISH, Topic: "a/+"}, codec.TopicNameInvalid},
		{"qos1 without id", &codec.Packet{Type: codec.PUBLISH, Topic: "a", QoS: 1}, codec.ProtocolError},
		{"empty subscribe", &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1}, codec.ProtocolError},
		{"bad filter", &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "a#"}}}, codec.TopicFilterInvalid},
		{"v5 code in v3 connack", &codec.Packet{Type: codec.CONNACK, ReasonCode: codec.NotAuthorized}, codec.ProtocolError},
		{"auth in 3.1.1", &codec.Packet{Type: codec.AUTH}, codec.MalformedPacket},
	}
	for _, c := range cases {
		if _, err := codec.Encode(c.p, codec.V311); !errors.Is(err, c.code) {
			t.Errorf("%s: want %v, got %v", c.name, c.code, err)
		}
	}
}

func TestV311Code(t *testing.T) {
	cases := map[codec.ReasonCode]codec.ReasonCode{
		codec.Success:                    codec.V3Accepted,
		codec.UnsupportedProtocolVersion: codec.V3UnacceptableProtocolVersion,
		codec.ClientIdentifierNotValid:   codec.V3IdentifierRejected,
		codec.BadUserNameOrPassword:      codec.V3BadUserNameOrPassword,
		codec.NotAuthorized:              codec.V3NotAuthorized,
		codec.Banned:                     codec.V3NotAuthorized,
		codec.ServerBusy:                 codec.V3ServerUnavailable,
		codec.MalformedPacket:            codec.V3ServerUnavailable,
	}
	for in, want := range cases {
		if got := codec.V311Code(codec.CONNACK, in); got != want {
			t.Errorf("CONNACK %v: want %#x, got %#x", in, byte(want), byte(got))
		}
	}
	if got := codec.V311Code(codec.SUBACK, codec.NotAuthorized); got != codec.V3SubackFailure {
		t.Errorf("SUBACK: got %#x", byte(got))
	}
}

func TestReasonTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range codec.Reasons {
		if seen[r.Name] {
			t.Errorf("duplicate reason name %s", r.Name)
		}
		seen[r.Name] = true
		if c, ok := codec.ReasonByName(r.Name); !ok || c != r.Code {
			t.Errorf("ReasonByName(%s) = %#x", r.Name, byte(c))
		}
	}
	if codec.MalformedPacket.String() != "Malformed Packet" || !codec.PacketTooLarge.ValidFor(codec.DISCONNECT) || codec.GrantedQoS1.ValidFor(codec.PUBACK) {
		t.Error("reason table lookups are wrong")
	}
	if len(codec.PropTable) != 27 {
		t.Errorf("want 27 properties, have %d", len(codec.PropTable))
	}
}
