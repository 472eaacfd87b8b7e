package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
)

func loadFixtures(t testing.TB) []*fixture.Fixture {
	t.Helper()
	fs, err := fixture.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no fixtures found in", fixture.Dir())
	}
	return fs
}

func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// checkResult compares one decode outcome with what the fixture expects.
func checkResult(t *testing.T, f *fixture.Fixture, how string, p *codec.Packet, err error) {
	t.Helper()
	if f.Err != nil {
		var ce *codec.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %s: want error %#x on %q, got %v", f.Where("error"), how, byte(f.Err.Code), f.Err.Field, err)
		}
		if ce.Code != f.Err.Code || ce.Field != f.Err.Field {
			t.Fatalf("%s: %s: want error %#x on %q, got %#x on %q (%v)", f.Where("error"), how, byte(f.Err.Code), f.Err.Field, byte(ce.Code), ce.Field, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %s: %v", f.Where("hex"), how, err)
	}
	got := fixture.Normalize(roundTripJSON(codec.ToMap(p, f.Level)))
	if !reflect.DeepEqual(got, f.Packet) {
		t.Fatalf("%s: %s: decoded packet differs\nwant: %s\ngot:  %s", f.Where("packet.json"), how, pretty(f.Packet), pretty(got))
	}
}

// roundTripJSON makes ToMap's output comparable with data read from JSON.
func roundTripJSON(m codec.Map) any {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		panic(err)
	}
	return v
}

func TestFixturesDecode(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			var p codec.Packet
			var err error
			if f.MaxPacketSize > 0 {
				r := codec.NewReader(bytes.NewReader(f.Bytes), 0)
				r.MaxPacketSize, r.Version = f.MaxPacketSize, f.Level
				err = r.ReadPacket(&p)
			} else {
				var n int
				n, err = codec.Decode(f.Bytes, f.Level, &p)
				if err == nil && n != len(f.Bytes) {
					t.Fatalf("%s: consumed %d of %d bytes", f.Where("hex"), n, len(f.Bytes))
				}
			}
			checkResult(t, f, "Decode", &p, err)
		})
	}
}

func TestFixturesEncode(t *testing.T) {
	for _, f := range loadFixtures(t) {
		if f.Err != nil {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			var p codec.Packet
			if _, err := codec.Decode(f.Bytes, f.Level, &p); err != nil {
				t.Fatal(err)
			}
			got, err := p.Append(make([]byte, 0, 8), f.Level)
			if err != nil {
				t.Fatalf("%s: encode decoded packet: %v", f.Where("hex"), err)
			}
			if !bytes.Equal(got, f.Canonical) {
				t.Fatalf("%s: encode decoded packet\nwant % x\ngot  % x", f.Where("hex"), f.Canonical, got)
			}
			// The data mapping, the other way: packet.json -> Packet -> bytes.
			q, err := codec.FromMap(f.Packet)
			if err != nil {
				t.Fatalf("%s: FromMap: %v", f.Where("packet.json"), err)
			}
			got, err = codec.Encode(q, f.Level)
			if err != nil {
				t.Fatalf("%s: encode packet.json: %v", f.Where("packet.json"), err)
			}
			if !bytes.Equal(got, f.Canonical) {
				t.Fatalf("%s: encode packet.json\nwant % x\ngot  % x", f.Where("packet.json"), f.Canonical, got)
			}
		})
	}
}

// TestFixturesStream feeds each fixture to the streaming reader one byte at a
// time and split in two at every position.
func TestFixturesStream(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			read := func(r io.Reader) (*codec.Packet, error) {
				cr := codec.NewReader(r, 0)
				cr.MaxPacketSize, cr.Version = f.MaxPacketSize, f.Level
				p := &codec.Packet{}
				err := cr.ReadPacket(p)
				return p, err
			}
			p, err := read(iotest.OneByteReader(bytes.NewReader(f.Bytes)))
			checkResult(t, f, "one byte at a time", p, err)
			for i := 1; i < len(f.Bytes); i++ {
				r := io.MultiReader(bytes.NewReader(f.Bytes[:i]), bytes.NewReader(f.Bytes[i:]))
				p, err := read(r)
				checkResult(t, f, "split at "+string(rune('0'+i%10)), p, err)
			}
		})
	}
}

// TestStreamBackToBack decodes every valid fixture of a level from one
// stream, in one read and one byte at a time.
func TestStreamBackToBack(t *testing.T) {
	fs := loadFixtures(t)
	for _, level := range []byte{codec.V31, codec.V311, codec.V5} {
		var stream []byte
		var want []*fixture.Fixture
		for _, f := range fs {
			if f.Err == nil && f.Level == level && f.Packet["type"] != int(codec.CONNECT) {
				stream = append(stream, f.Bytes...)
				want = append(want, f)
			}
		}
		for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream)), iotest.HalfReader(bytes.NewReader(stream))} {
			cr := codec.NewReader(r, 16)
			cr.Version = level
			var p codec.Packet
			for _, f := range want {
				err := cr.ReadPacket(&p)
				checkResult(t, f, "back to back", &p, err)
			}
			if err := cr.ReadPacket(&p); err != io.EOF {
				t.Fatalf("level %d: want io.EOF after the last packet, got %v", level, err)
			}
		}
	}
}

func TestFixtureCoverage(t *testing.T) {
	fs := loadFixtures(t)
	types := map[[2]int]bool{}
	props := map[string]bool{}
	bad := 0
	for _, f := range fs {
		if f.Err != nil {
			bad++
			continue
		}
		types[[2]int{int(f.Level), f.Packet["type"].(int)}] = true
		collectProps(f.Packet, props)
	}
	for _, level := range []int{3, 4, 5} {
		for typ := 1; typ <= 15; typ++ {
			if typ == 15 && level != 5 {
				continue
			}
			if !types[[2]int{level, typ}] {
				t.Errorf("no fixture for %s at level %d", codec.Type(typ), level)
			}
		}
	}
	for _, p := range codec.PropTable {
		if !props[p.Name] {
			t.Errorf("no fixture carries property %s", p.Name)
		}
	}
	if bad < 40 {
		t.Errorf("want at least 40 malformed-packet fixtures, have %d", bad)
	}
}

func collectProps(m codec.Map, into map[string]bool) {
	if p, ok := m["properties"].(codec.Map); ok {
		for k := range p {
			into[k] = true
		}
	}
	if w, ok := m["will"].(codec.Map); ok {
		collectProps(w, into)
	}
}
