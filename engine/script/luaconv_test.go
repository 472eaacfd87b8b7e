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

// TestTableLayout: the copy of gopher-lua's table struct that
// newShapedTable writes through matches the gopher-lua in go.mod. If an
// upgrade changes it, tables are still built (the slow way) and this
// fails, so the copy gets updated.
func TestTableLayout(t *testing.T) {
	if !tableLayoutOK {
		t.Fatal("ltableLayout no longer matches lua.LTable: update it from gopher-lua's value.go")
	}
}

// TestShapedTableIsPlainTable: a table built from a shape is the one
// RawSetString makes, to gopher-lua: the same values, the same order for
// `next`, and keys a script adds or removes afterwards behave as in any
// table.
func TestShapedTableIsPlainTable(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for _, f := range validFixtures(t) {
		got := PacketTable(L, &f.p, f.level)
		version := f.level
		if f.p.Type == codec.CONNECT {
			version = f.p.ProtocolLevel
		}
		// What RawSetString in the old order made: "type", the present
		// scalars in codec.Fields' order, then the compounds.
		want := L.NewTable()
		want.RawSetString("type", lua.LNumber(f.p.Type))
		for _, fl := range codec.Fields(f.p.Type) {
			if v := got.RawGetString(fl.Name); v != lua.LNil {
				want.RawSetString(fl.Name, v)
			}
		}
		codec.Compounds(&f.p, version, func(name string, _ any) { want.RawSetString(name, got.RawGetString(name)) })
		if g, w := nextKeys(got), nextKeys(want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: keys %v, a plain table's %v", f.name, g, w)
		}
	}
	p := &codec.Packet{Type: codec.PUBLISH, Topic: "a/b", Payload: []byte("x"), QoS: 1, PacketID: 300}
	L.SetGlobal("data", PacketTable(L, p, codec.V311))
	if err := L.DoString(`
		data.extra = 1
		data.topic = "c"
		data.dup = nil
		local seen = {}
		for k, v in pairs(data) do seen[#seen + 1] = k .. "=" .. tostring(v) end
		result = table.concat(seen, ",")
	`); err != nil {
		t.Fatal(err)
	}
	if got, want := L.GetGlobal("result").String(), "type=3,qos=1,retain=false,topic=c,message=x,message_id=300,extra=1"; got != want {
		t.Errorf("pairs after changes: %s, want %s", got, want)
	}
	// A second PUBLISH's table does not share the first one's keys.
	if err := L.DoString(`first = data`); err != nil {
		t.Fatal(err)
	}
	second := PacketTable(L, p, codec.V311)
	n := 0
	second.ForEach(func(lua.LValue, lua.LValue) { n++ })
	if n != 7 {
		t.Errorf("second table has %d keys, want 7", n)
	}
}

// nextKeys lists t's keys in the order `next` gives them.
func nextKeys(t *lua.LTable) []string {
	var keys []string
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		keys = append(keys, k.String())
	}
	return keys
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
