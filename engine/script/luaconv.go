package script

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/mqttlua/broker/codec"
	lua "github.com/yuin/gopher-lua"
)

// The Lua side of codec's data mapping: codec.Fields names each scalar
// field of a packet type and says when it is present, and drives both
// directions here, straight between packets and Lua tables (no plain-data
// map on the way: PacketTable runs for every packet a handler gets,
// readTable for every message a script routes). The compound fields
// (will, topics, filters, codes, properties) go through codec.Compounds
// and codec.SetCompounds as plain data.

// PacketTable converts a decoded packet to the `data` table handlers get.
func PacketTable(L *lua.LState, p *codec.Packet, version byte) *lua.LTable {
	if p.Type == codec.CONNECT {
		version = p.ProtocolLevel
	}
	fields := codec.Fields(p.Type)
	var vals [maxScalars]lua.LValue
	vals[0] = typeValues[p.Type&15]
	n, present := 1, uint32(0)
	for i := range fields {
		f := &fields[i]
		if f.When != nil && !f.When(p, version) {
			continue
		}
		present |= 1 << i
		switch f.Kind {
		case codec.KindInt:
			vals[n] = smallNumber(f.Int(p))
		case codec.KindBool:
			vals[n] = lua.LBool(f.Bool(p))
		case codec.KindString:
			vals[n] = lua.LString(f.Str(p))
		case codec.KindBytes:
			vals[n] = lua.LString(f.Bytes(p))
		}
		n++
	}
	t := newShapedTable(shapeOf(p.Type, present), vals[:n])
	if hasCompounds(p, version) {
		codec.Compounds(p, version, func(name string, v any) { t.RawSetString(name, ToLua(L, v)) })
	}
	return t
}

// maxScalars bounds the scalar fields of one packet type, "type"
// included (CONNECT has the most).
const maxScalars = 16

// smallNumbers are the integers a packet's scalar fields usually hold
// (QoS, flags, reason codes, small packet ids), boxed once: boxing a
// float64 allocates.
var smallNumbers = func() (v [256]lua.LValue) {
	for i := range v {
		v[i] = lua.LNumber(i)
	}
	return v
}()

func smallNumber(n int) lua.LValue {
	if n >= 0 && n < len(smallNumbers) {
		return smallNumbers[n]
	}
	return lua.LNumber(n)
}

// typeValues are the packet types as Lua values, boxed once.
var typeValues = func() (v [16]lua.LValue) {
	copy(v[:], smallNumbers[:16])
	return v
}()

// hasCompounds reports whether p has compound fields to convert, so
// that the common packets (PUBLISH without properties, acks, PINGREQ)
// skip codec.Compounds and its closure.
func hasCompounds(p *codec.Packet, version byte) bool {
	switch p.Type {
	case codec.CONNECT:
		return p.Will != nil || (version == codec.V5 && !p.Properties.Empty())
	case codec.SUBSCRIBE, codec.SUBACK, codec.UNSUBSCRIBE, codec.UNSUBACK:
		return true
	case codec.PINGREQ, codec.PINGRESP:
		return false
	}
	return version == codec.V5 && !p.Properties.Empty()
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
// protocol level version. Missing fields are zero, but a CONNECT's
// protocol level (3.1.1), as codec.FromMap has it. Reason codes written
// with 5.0 names are mapped for 3.1/3.1.1 receivers, so one script serves
// both.
func TablePacket(t *lua.LTable, version byte) (*codec.Packet, error) {
	typ := t.RawGetString("type")
	if typ == lua.LNil {
		typ = t.RawGetString("cmd")
	}
	n, ok := typ.(lua.LNumber)
	if !ok || n < 1 || n > 15 || n != lua.LNumber(int(n)) {
		return nil, fmt.Errorf("type: want a packet type 1..15, got %s", typ.String())
	}
	p := &codec.Packet{Type: codec.Type(n)}
	if _, err := readTable(t, p); err != nil {
		return nil, err
	}
	if p.Type == codec.CONNECT && t.RawGetString("protocol_level") == lua.LNil {
		p.ProtocolLevel = codec.V311
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

// readTable fills p, whose Type is set, from a Lua table: the scalar
// fields of codec.Fields(p.Type), then the compound ones; it reports
// whether any compound field was there. Binary fields alias the Lua
// strings' bytes, which are never written (Go strings are immutable): the
// packet must not be written either.
func readTable(t *lua.LTable, p *codec.Packet) (compounds bool, err error) {
	fields := codec.Fields(p.Type)
	for i := range fields {
		f := &fields[i]
		lv := t.RawGetString(f.Name)
		if lv == lua.LNil {
			continue
		}
		switch f.Kind {
		case codec.KindInt:
			n := 0
			switch x := lv.(type) {
			case lua.LNumber:
				if x < 0 || x > lua.LNumber(f.Max) || x != lua.LNumber(int64(x)) {
					return false, fmt.Errorf("%s: want an integer 0..%d, got %s", f.Name, f.Max, x.String())
				}
				n = int(x)
			case lua.LBool:
				if x {
					n = 1
				}
			default:
				return false, fmt.Errorf("%s: want an integer, got %s", f.Name, lv.Type())
			}
			f.SetInt(p, n)
		case codec.KindBool:
			switch x := lv.(type) {
			case lua.LBool:
				f.SetBool(p, bool(x))
			case lua.LNumber:
				// Simps scripts write flags as 0/1.
				f.SetBool(p, x != 0)
			default:
				return false, fmt.Errorf("%s: want a boolean, got %s", f.Name, lv.Type())
			}
		case codec.KindString, codec.KindBytes:
			s, ok := lv.(lua.LString)
			if !ok {
				return false, fmt.Errorf("%s: want a string, got %s", f.Name, lv.Type())
			}
			if f.Kind == codec.KindString {
				f.SetStr(p, string(s))
			} else {
				f.SetBytes(p, unsafe.Slice(unsafe.StringData(string(s)), len(s)))
			}
		}
	}
	// Simps writes a SUBACK's codes as `payload`.
	simpsPayload := p.Type == codec.SUBACK && t.RawGetString("codes") == lua.LNil && t.RawGetString("payload") != lua.LNil
	for _, name := range codec.CompoundNames(p.Type) {
		if t.RawGetString(name) != lua.LNil {
			compounds = true
			break
		}
	}
	if !compounds && !simpsPayload {
		return false, nil
	}
	return true, codec.SetCompounds(p, func(name string) (any, error) {
		lv := t.RawGetString(name)
		if name == "codes" && simpsPayload {
			lv = t.RawGetString("payload")
		}
		if lv == lua.LNil {
			return nil, nil
		}
		v, err := FromLua(lv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return v, nil
	})
}
