package codec_test

import (
	"bytes"
	"testing"

	"github.com/mqttlua/broker/codec"
)

func mustEncode(b *testing.B, p *codec.Packet, level byte) []byte {
	enc, err := codec.Encode(p, level)
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

var payload64 = bytes.Repeat([]byte("x"), 64)

func benchPackets() []struct {
	name  string
	level byte
	p     *codec.Packet
} {
	pub5 := &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 10, Topic: "sensors/42/temp", Payload: payload64}
	pub5.Properties.SetUint(codec.PropMessageExpiry, 60)
	pub5.Properties.SetString(codec.PropContentType, "text/plain")
	pub5.Properties.User = []codec.UserProperty{{"trace", "abc"}}
	connect := &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, CleanSession: true, KeepAlive: 60,
		ClientID: "bench-client-1", Username: "user", UsernameFlag: true, Password: []byte("password"), PasswordFlag: true}
	return []struct {
		name  string
		level byte
		p     *codec.Packet
	}{
		{"Connect311", codec.V311, connect},
		{"Publish64QoS1_311", codec.V311, &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 10, Topic: "sensors/42/temp", Payload: payload64}},
		{"Publish64QoS1_5", codec.V5, pub5},
		{"Subscribe4_311", codec.V311, &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 3, Subscriptions: []codec.Subscription{
			{Topic: "a/b", QoS: 0}, {Topic: "sensors/+/temp", QoS: 1}, {Topic: "home/#", QoS: 2}, {Topic: "x/y/z", QoS: 1}}}},
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range benchPackets() {
		enc := mustEncode(b, c.p, c.level)
		b.Run(c.name, func(b *testing.B) {
			var p codec.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for i := 0; i < b.N; i++ {
				if _, err := codec.Decode(enc, c.level, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range benchPackets() {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var err error
				if buf, err = c.p.Append(buf[:0], c.level); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// BenchmarkReaderPublish decodes a stream of 64-byte QoS 1 PUBLISHes
// through the streaming reader, as a connection's read loop does.
func BenchmarkReaderPublish(b *testing.B) {
	one := mustEncode(b, &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 10, Topic: "sensors/42/temp", Payload: payload64}, codec.V311)
	stream := bytes.Repeat(one, 1000)
	src := bytes.NewReader(stream)
	r := codec.NewReader(src, 4096)
	r.Version = codec.V311
	var p codec.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for i := 0; i < b.N; i++ {
		if i%1000 == 0 {
			src.Reset(stream)
		}
		if err := r.ReadPacket(&p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanout delivers one message to 100 subscribers at QoS 1.
func BenchmarkFanout(b *testing.B) {
	msg := &codec.Packet{Type: codec.PUBLISH, Topic: "sensors/42/temp", Payload: payload64}
	f := codec.NewFanout(msg)
	buf := make([]byte, 0, 128*100)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Reset(msg)
		buf = buf[:0]
		for s := 0; s < 100; s++ {
			var err error
			if buf, err = f.Append(buf, codec.V311, 1, false, uint16(s+1)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
