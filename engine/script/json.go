package script

import (
	"encoding/json"

	lua "github.com/yuin/gopher-lua"
)

func (vm *VM) openJSON() *lua.LTable {
	L := vm.L
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		// json.encode(value) -> string | nil, err
		"encode": func(L *lua.LState) int {
			v, err := FromLua(L.CheckAny(1))
			if err == nil {
				var b []byte
				if b, err = json.Marshal(v); err == nil {
					L.Push(lua.LString(b))
					return 1
				}
			}
			L.Push(lua.LNil)
			L.Push(lua.LString(err.Error()))
			return 2
		},
		// json.decode(string) -> value | nil, err
		"decode": func(L *lua.LState) int {
			var v any
			if err := json.Unmarshal([]byte(L.CheckString(1)), &v); err != nil {
				L.Push(lua.LNil)
				L.Push(lua.LString(err.Error()))
				return 2
			}
			L.Push(ToLua(L, v))
			return 1
		},
	})
}
