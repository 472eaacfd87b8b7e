package script

import (
	"reflect"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
	lua "github.com/yuin/gopher-lua"
)

// decodedFixture is a valid packet fixture, decoded.
type decodedFixture struct {
	name  string
	level byte
	p     codec.Packet
}

// validFixtures decodes every fixture that holds a valid packet.
func validFixtures(t *testing.T) []decodedFixture {
	t.Helper()
	fs, err := fixture.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []decodedFixture
	for _, f := range fs {
		if f.Err != nil {
			continue
		}
		d := decodedFixture{name: f.Name, level: f.Level}
		if _, err := codec.Decode(f.Bytes, f.Level, &d.p); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	if len(out) < 50 {
		t.Fatalf("only %d valid fixtures", len(out))
	}
	return out
}

// TestPacketTableMatchesDataMapping: the Lua tables handlers get hold
// exactly what the codec's data mapping gives, for every valid fixture.
func TestPacketTableMatchesDataMapping(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for _, f := range validFixtures(t) {
		direct, _ := FromLua(PacketTable(L, &f.p, f.level))
		generic, _ := FromLua(ToLua(L, codec.ToMap(&f.p, f.level)))
		if !reflect.DeepEqual(direct, generic) {
			t.Errorf("%s:\ndirect  %v\ngeneric %v", f.name, direct, generic)
		}
	}
}

// TestTablePacketRoundTrip: every valid fixture, turned into its Lua
// table and read back, is the same packet: it encodes, and decodes to the
// fixture's data (readTable reads what PacketTable writes; the bytes may
// differ where the encoding has a choice, such as an explicit success
// code).
func TestTablePacketRoundTrip(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for _, f := range validFixtures(t) {
		q, err := TablePacket(PacketTable(L, &f.p, f.level), f.level)
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
			continue
		}
		b, err := codec.Encode(q, f.level)
		if err != nil {
			t.Errorf("%s: encode: %v", f.name, err)
			continue
		}
		var r codec.Packet
		if _, err := codec.Decode(b, f.level, &r); err != nil {
			t.Errorf("%s: decode: %v", f.name, err)
			continue
		}
		if got, want := codec.ToMap(&r, f.level), codec.ToMap(&f.p, f.level); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %v\nwant %v", f.name, got, want)
		}
	}
}

// TestSetFieldNames: every scalar field name of the data mapping is one
// setField spells out, so building a table never boxes a key.
func TestSetFieldNames(t *testing.T) {
	known := map[string]bool{}
	for _, n := range setFieldNames {
		known[n] = true
	}
	for typ := codec.Type(1); typ <= 15; typ++ {
		for _, f := range codec.Fields(typ) {
			if !known[f.Name] {
				t.Errorf("%s: field %q is not in setFieldNames", typ, f.Name)
			}
		}
	}
}

// BenchmarkPacketTable: the table of a QoS 1 PUBLISH, built for every
// message a handler gets.
func BenchmarkPacketTable(b *testing.B) {
	L := lua.NewState()
	defer L.Close()
	p := &codec.Packet{Type: codec.PUBLISH, Topic: "bench/x", Payload: []byte("0123456789012345678901234567890123456789"), QoS: 1, PacketID: 7}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		PacketTable(L, p, codec.V311)
	}
}
