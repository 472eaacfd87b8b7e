package script

import (
	"github.com/mqttlua/broker/codec"
	lua "github.com/yuin/gopher-lua"
)

// The mqtt module: constants, and packets to and from bytes.

func (vm *VM) openMQTT() *lua.LTable {
	L := vm.L
	t := L.NewTable()
	for i := 1; i < 16; i++ {
		t.RawSetString(codec.Type(i).String(), lua.LNumber(i))
	}
	t.RawSetString("MQTT_3_1", lua.LNumber(codec.V31))
	t.RawSetString("MQTT_3_1_1", lua.LNumber(codec.V311))
	t.RawSetString("MQTT_5_0", lua.LNumber(codec.V5))
	for _, r := range codec.Reasons {
		t.RawSetString(r.Name, lua.LNumber(r.Code))
	}
	L.SetFuncs(t, map[string]lua.LGFunction{
		"getAck": vm.mqttPack,
		"pack":   vm.mqttPack,
		"unpack": vm.mqttUnpack,
	})
	return t
}

// level returns the protocol level for mqtt.pack/getAck: the argument, or
// that of the connection being handled, or 3.1.1.
func (vm *VM) level(L *lua.LState, n int) byte {
	if L.Get(n) != lua.LNil {
		lv := L.CheckInt(n)
		if lv < 3 || lv > 5 {
			L.ArgError(n, "protocol level must be 3, 4 or 5")
		}
		return byte(lv)
	}
	if vm.cur != nil && vm.cur.Version() != 0 {
		return vm.cur.Version()
	}
	return codec.V311
}

// mqtt.pack(t [, level]) and mqtt.getAck(t [, level]) -> bytes
func (vm *VM) mqttPack(L *lua.LState) int {
	t := L.CheckTable(1)
	level := vm.level(L, 2)
	p, err := TablePacket(t, level)
	if err != nil {
		L.ArgError(1, err.Error())
	}
	b, err := codec.Encode(p, level)
	if err != nil {
		L.ArgError(1, err.Error())
	}
	L.Push(lua.LString(b))
	return 1
}

// mqtt.unpack(bytes [, level]) -> packet table, consumed | nil, err
func (vm *VM) mqttUnpack(L *lua.LState) int {
	b := []byte(L.CheckString(1))
	level := vm.level(L, 2)
	var p codec.Packet
	n, err := codec.Decode(b, level, &p)
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(PacketTable(L, &p, level))
	L.Push(lua.LNumber(n))
	return 2
}
