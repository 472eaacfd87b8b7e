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
