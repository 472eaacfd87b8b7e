package codec_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
)

func seedFuzz(f *testing.F) {
	fs, err := fixture.LoadAll()
	if err != nil {
		f.Fatal(err)
	}
	for _, fx := range fs {
		f.Add(fx.Bytes, fx.Level)
	}
}

// roundTrip checks that a decoded packet encodes, that the encoding decodes
// to the same data, and that encoding is then stable.
func roundTrip(t *testing.T, p *codec.Packet, level byte) {
	if p.Type == codec.CONNECT {
		level = p.ProtocolLevel
	}
	enc, err := codec.Encode(p, level)
	if err != nil {
		t.Fatalf("decoded packet %v does not encode: %v", p, err)
	}
	var q codec.Packet
	n, err := codec.Decode(enc, level, &q)
	if err != nil || n != len(enc) {
		t.Fatalf("re-decode of % x: n=%d err=%v", enc, n, err)
	}
	if a, b := codec.ToMap(p, level), codec.ToMap(&q, level); !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip changed the packet:\n%v\n%v", a, b)
	}
	enc2, err := codec.Encode(&q, level)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable: % x vs % x (%v)", enc, enc2, err)
	}
}

// FuzzReader feeds arbitrary streams to the streaming reader: it must never
// panic or loop, every error must be typed, and whatever it accepts must
// round-trip.
func FuzzReader(f *testing.F) {
	seedFuzz(f)
	f.Fuzz(func(t *testing.T, data []byte, level byte) {
		level = codec.V31 + level%3
		r := codec.NewReader(bytes.NewReader(data), 8)
		r.MaxPacketSize = 4096
		r.Version = level
		var p codec.Packet
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatal("more packets than bytes")
			}
			err := r.ReadPacket(&p)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if err != nil {
				var ce *codec.Error
				if !errors.As(err, &ce) {
					t.Fatalf("untyped error %v", err)
				}
				return
			}
			roundTrip(t, &p, r.Version)
		}
	})
}

// FuzzDecodeRoundTrip decodes one packet and checks decode -> encode ->
// decode.
func FuzzDecodeRoundTrip(f *testing.F) {
	seedFuzz(f)
	f.Fuzz(func(t *testing.T, data []byte, level byte) {
		level = codec.V31 + level%3
		var p codec.Packet
		if _, err := codec.Decode(data, level, &p); err != nil {
			return
		}
		roundTrip(t, &p, level)
	})
}
