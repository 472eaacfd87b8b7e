package script

import (
	"fmt"
	"math"

	"github.com/mqttlua/broker/codec"
	lua "github.com/yuin/gopher-lua"
)

// PacketTable converts a decoded packet to the `data` table handlers get,
// with the field names of codec.ToMap. PUBLISH, the per-message case, is
// built directly; the rest go through the codec's data mapping.
func PacketTable(L *lua.LState, p *codec.Packet, version byte) *lua.LTable {
	if p.Type == codec.CONNECT && p.ProtocolLevel != codec.V5 {
		return connectTable(L, p)
	}
	if p.Type == codec.PINGREQ || (p.Type == codec.DISCONNECT && version != codec.V5) {
		// No fields but the type: every keep-alive ping, and the end of
		// every 3.1.1 connection, skip the generic conversion.
		t := L.CreateTable(0, 1)
		t.RawSetString("type", lua.LNumber(p.Type))
		return t
	}
	if p.Type != codec.PUBLISH || (version == codec.V5 && !p.Properties.Empty()) {
		return ToLua(L, codec.ToMap(p, version)).(*lua.LTable)
	}
	t := L.CreateTable(0, 8)
	t.RawSetString("type", lua.LNumber(codec.PUBLISH))
	t.RawSetString("dup", lua.LBool(p.Dup))
	t.RawSetString("qos", lua.LNumber(p.QoS))
	t.RawSetString("retain", lua.LBool(p.Retain))
	t.RawSetString("topic", lua.LString(p.Topic))
	t.RawSetString("message", lua.LString(p.Payload))
	if p.QoS > 0 {
		t.RawSetString("message_id", lua.LNumber(p.PacketID))
	}
	return t
}

// connectTable builds a 3.1/3.1.1 CONNECT's table directly, as ToMap
// would: one per connection, so it is worth skipping the map.
func connectTable(L *lua.LState, p *codec.Packet) *lua.LTable {
	// A hint of at most 8 keeps Go's map for the fields in one group,
	// which holds a CONNECT's usual six to eight; 10 made it allocate a
	// full table (10% slower to build).
	t := L.CreateTable(0, 8)
	t.RawSetString("type", lua.LNumber(codec.CONNECT))
	name := p.ProtocolName
	if name == "" {
		name = "MQTT"
		if p.ProtocolLevel == codec.V31 {
			name = "MQIsdp"
		}
	}
	t.RawSetString("protocol_name", lua.LString(name))
	t.RawSetString("protocol_level", lua.LNumber(p.ProtocolLevel))
	t.RawSetString("clean_session", lua.LBool(p.CleanSession))
	t.RawSetString("keep_alive", lua.LNumber(p.KeepAlive))
	t.RawSetString("client_id", lua.LString(p.ClientID))
	if w := p.Will; w != nil {
		wt := L.CreateTable(0, 4)
		wt.RawSetString("qos", lua.LNumber(w.QoS))
		wt.RawSetString("retain", lua.LBool(w.Retain))
		wt.RawSetString("topic", lua.LString(w.Topic))
		wt.RawSetString("message", lua.LString(w.Payload))
		t.RawSetString("will", wt)
	}
	if p.UsernameFlag || p.Username != "" {
		t.RawSetString("user_name", lua.LString(p.Username))
	}
	if p.PasswordFlag || p.Password != nil {
		t.RawSetString("password", lua.LString(p.Password))
	}
	return t
}

// ToLua converts plain data (codec.Map and friends) to Lua values.
func ToLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case int:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint32:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []byte:
		return lua.LString(x)
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, ToLua(L, e))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(ToLua(L, e))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}

// FromLua converts a Lua value to plain data: tables with only keys 1..n
// become lists, other tables maps with string keys; integral numbers
// become int64.
func FromLua(v lua.LValue) (any, error) {
	return fromLuaDepth(v, 0)
}

func fromLuaDepth(v lua.LValue, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("table nested too deeply (or a cycle)")
	}
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return f, nil
	case lua.LString:
		return string(x), nil
	case *lua.LTable:
		n := x.Len()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if n > 0 && count == n {
			l := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				e, err := fromLuaDepth(x.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, e)
			}
			return l, nil
		}
		m := make(map[string]any, count)
		var err error
		x.ForEach(func(k, val lua.LValue) {
			if err != nil {
				return
			}
			var key string
			switch kk := k.(type) {
			case lua.LString:
				key = string(kk)
			case lua.LNumber:
				key = kk.String()
			default:
				err = fmt.Errorf("table key of type %s", k.Type())
				return
			}
			m[key], err = fromLuaDepth(val, depth+1)
		})
		return m, err
	}
	return nil, fmt.Errorf("cannot convert a %s", v.Type())
}

// TablePacket builds a packet from a Lua table for a connection at
// protocol level version. Reason codes written with 5.0 names are mapped
// for 3.1/3.1.1 receivers, so one script serves both.
func TablePacket(t *lua.LTable, version byte) (*codec.Packet, error) {
	v, err := FromLua(t)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("packet table has no type field")
	}
	p, err := codec.FromMap(m)
	if err != nil {
		return nil, err
	}
	if version != codec.V5 {
		switch p.Type {
		case codec.CONNACK:
			if p.ReasonCode >= 0x80 {
				p.ReasonCode = codec.V311Code(codec.CONNACK, p.ReasonCode)
			}
		case codec.SUBACK:
			for i, c := range p.ReasonCodes {
				p.ReasonCodes[i] = codec.V311Code(codec.SUBACK, c)
			}
		}
		p.Properties = codec.Properties{}
	}
	return p, nil
}
