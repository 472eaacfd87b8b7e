package script

import (
	"maps"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/mqttlua/broker/codec"
	lua "github.com/yuin/gopher-lua"
)

// Building the `data` table of a packet was the largest single cost of a
// PUBLISH (a quarter of the broker's CPU under QoS 1 pairs): gopher-lua's
// RawSetString keeps, besides the key's value, an insertion-ordered key
// list and a key-to-index map for `next`, and grows both one key at a
// time, so seven fields cost about 25 map operations, four slice growths
// and a boxed key each. The tables of one packet type with the same
// fields present have the same key list and index map, so a shape holds
// them once, and each table gets its own copies in two allocations
// (cloning a one-group map is a copy, not seven inserts): the table
// gopher-lua would have built, key for key and in the same order, for
// about 60% of the time (BenchmarkPacketTable).
//
// gopher-lua has no API to size those two, so newShapedTable writes the
// table's unexported fields through ltableLayout, a copy of the struct's
// declaration. tableLayoutOK checks, field by field (name, type, offset),
// that the copy matches the gopher-lua this broker was built with; if it
// ever does not, tables are built with RawSetString as before (slower,
// the same tables) and TestTableLayout fails, so an upgrade is noticed.

// ltableLayout mirrors lua.LTable (gopher-lua v1.1.2, value.go).
type ltableLayout struct {
	Metatable lua.LValue

	array   []lua.LValue
	dict    map[lua.LValue]lua.LValue
	strdict map[string]lua.LValue
	keys    []lua.LValue
	k2i     map[lua.LValue]int
}

var tableLayoutOK = func() bool {
	got, want := reflect.TypeFor[lua.LTable](), reflect.TypeFor[ltableLayout]()
	if got.Size() != want.Size() || got.NumField() != want.NumField() {
		return false
	}
	for i := range got.NumField() {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || g.Type != w.Type || g.Offset != w.Offset {
			return false
		}
	}
	return true
}()

// tableShape is the key set of the tables of one packet type with the
// same scalar fields present: "type" first, then codec.Fields' order.
type tableShape struct {
	names []string
	keys  []lua.LValue       // names, boxed
	k2i   map[lua.LValue]int // gopher-lua's index of each key in keys
}

// shapes caches tableShapes by packet type and the bit set of present
// fields, one slot per possible set (a type has a handful of fields, so
// a few hundred slots in all). An array, not a sync.Map: boxing the key
// for a map lookup allocated on every packet. Loads are lock-free: every
// VM builds tables at once.
var shapes = func() (t [16][]atomic.Pointer[tableShape]) {
	for typ := range t {
		t[typ] = make([]atomic.Pointer[tableShape], 1<<len(codec.Fields(codec.Type(typ))))
	}
	return t
}()

func shapeOf(typ codec.Type, present uint32) *tableShape {
	slot := &shapes[typ&15][present]
	if s := slot.Load(); s != nil {
		return s
	}
	s := &tableShape{names: []string{"type"}, k2i: map[lua.LValue]int{}}
	for i, f := range codec.Fields(typ) {
		if present&(1<<i) != 0 {
			s.names = append(s.names, f.Name)
		}
	}
	for i, n := range s.names {
		s.keys = append(s.keys, lua.LString(n))
		s.k2i[s.keys[i]] = i
	}
	slot.CompareAndSwap(nil, s)
	return slot.Load()
}

// newShapedTable returns a table holding vals under the shape's names,
// the same as RawSetString of each in order would have made it.
func newShapedTable(s *tableShape, vals []lua.LValue) *lua.LTable {
	t := &lua.LTable{Metatable: lua.LNil}
	if !tableLayoutOK {
		for i, v := range vals {
			t.RawSetString(s.names[i], v)
		}
		return t
	}
	l := (*ltableLayout)(unsafe.Pointer(t))
	// Eight keys fit one map group: a PUBLISH's seven scalars and its
	// properties; more only for a CONNECT.
	l.strdict = make(map[string]lua.LValue, max(len(vals), 8))
	for i, v := range vals {
		l.strdict[s.names[i]] = v
	}
	l.keys = make([]lua.LValue, len(s.keys), len(s.keys)+2)
	copy(l.keys, s.keys)
	l.k2i = maps.Clone(s.k2i)
	return t
}
