package script

import (
	"reflect"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
	lua "github.com/yuin/gopher-lua"
)

// TestPacketTableMatchesDataMapping: the direct table builders of the hot
// paths give exactly what the codec's data mapping gives, for every valid
// fixture.
func TestPacketTableMatchesDataMapping(t *testing.T) {
	fs, err := fixture.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	L := lua.NewState()
	defer L.Close()
	n := 0
	for _, f := range fs {
		if f.Err != nil {
			continue
		}
		var p codec.Packet
		if _, err := codec.Decode(f.Bytes, f.Level, &p); err != nil {
			t.Fatal(err)
		}
		direct, _ := FromLua(PacketTable(L, &p, f.Level))
		generic, _ := FromLua(ToLua(L, codec.ToMap(&p, f.Level)))
		if !reflect.DeepEqual(direct, generic) {
			t.Errorf("%s:\ndirect  %v\ngeneric %v", f.Name, direct, generic)
		}
		n++
	}
	if n < 50 {
		t.Fatalf("only %d fixtures compared", n)
	}
}

// TestTablePacketRoundTrip: every valid fixture, turned into its Lua
// table and read back, is the same packet: it encodes, and decodes to the
// fixture's data (readTable reads what PacketTable writes; the bytes may
// differ where the encoding has a choice, such as an explicit success
// code).
func TestTablePacketRoundTrip(t *testing.T) {
	fs, err := fixture.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	L := lua.NewState()
	defer L.Close()
	n := 0
	for _, f := range fs {
		if f.Err != nil {
			continue
		}
		var p codec.Packet
		if _, err := codec.Decode(f.Bytes, f.Level, &p); err != nil {
			t.Fatal(err)
		}
		q, err := TablePacket(PacketTable(L, &p, f.Level), f.Level)
		if err != nil {
			t.Errorf("%s: %v", f.Name, err)
			continue
		}
		b, err := codec.Encode(q, f.Level)
		if err != nil {
			t.Errorf("%s: encode: %v", f.Name, err)
			continue
		}
		var r codec.Packet
		if _, err := codec.Decode(b, f.Level, &r); err != nil {
			t.Errorf("%s: decode: %v", f.Name, err)
			continue
		}
		if got, want := codec.ToMap(&r, f.Level), codec.ToMap(&p, f.Level); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %v\nwant %v", f.Name, got, want)
		}
		n++
	}
	if n < 50 {
		t.Fatalf("only %d fixtures compared", n)
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
